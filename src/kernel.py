"""Command line: write the Kaggle kernel's script and its kernel-metadata.json.

python -m src.kernel --username NAME --folds 5    # then: kaggle kernels push -p kernel

The script carries the `src` package as an embedded zip (see `src.kaggle.kernel_build`).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from src.core.cli import ArgumentParser, exit_process, run_command
from src.core.config import GPU_PRESETS
from src.core.errors import UserError
from src.core.files import atomic_write, write_json
from src.core.flags import add_settings_arguments, config_from_args
from src.kaggle.credentials import kaggle_username
from src.kaggle.kernel_build import (
    CODE_FILE,
    DEFAULT_KERNEL_DIR,
    DEFAULT_TITLE,
    MACHINE_SHAPES,
    METADATA_FILE,
    build_script,
    kernel_metadata,
)
from src.models.registry import check_buildable


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="python -m src.kernel",
        description=(
            f"Write {DEFAULT_KERNEL_DIR}/{CODE_FILE} (one script carrying the src package) and "
            f"{DEFAULT_KERNEL_DIR}/{METADATA_FILE}, ready for `kaggle kernels push -p {DEFAULT_KERNEL_DIR}`."
        ),
        epilog="The model and training flags are those of python -m src.submit.",
    )
    kernel = parser.add_argument_group("kernel")
    kernel.add_argument("--username", help="your Kaggle user name (default: KAGGLE_USERNAME or kaggle.json)")
    kernel.add_argument("--title", default=DEFAULT_TITLE, help=f"the kernel's title (default: {DEFAULT_TITLE})")
    kernel.add_argument(
        "--gpu",
        action=argparse.BooleanOptionalAction,
        help=f"run the kernel on a GPU, or not (default: a GPU for the presets {', '.join(GPU_PRESETS)}, else CPU)",
    )
    shapes = ", ".join(f"{shape} is {name}" for shape, name in MACHINE_SHAPES.items())
    kernel.add_argument(
        "--machine-shape", choices=sorted(MACHINE_SHAPES), help=f"the GPU to run on; implies --gpu ({shapes})"
    )
    kernel.add_argument("--public", action="store_true", help="make the kernel public (default: private)")
    kernel.add_argument(
        "--out-dir", type=Path, default=DEFAULT_KERNEL_DIR, help=f"where to write (default: {DEFAULT_KERNEL_DIR}/)"
    )
    add_settings_arguments(parser, argv)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return run_command(build_kernel, argv)


def build_kernel(argv: Sequence[str] | None) -> int:
    args = build_parser(argv).parse_args(argv)
    config = config_from_args(args)
    # A network that cannot build fails here, not on Kaggle after queueing; its memory is Kaggle's to judge.
    check_buildable(config)
    username = args.username or kaggle_username()
    if not username:
        raise UserError("no Kaggle user name: pass --username NAME, or set KAGGLE_USERNAME or ~/.kaggle/kaggle.json")
    # Both are checked before either is written.
    gpu = args.preset in GPU_PRESETS if args.gpu is None else args.gpu
    if args.gpu is False and args.machine_shape:
        raise UserError("--machine-shape names a GPU: drop --no-gpu, or drop --machine-shape")
    metadata = kernel_metadata(username, args.title, gpu, args.public, args.machine_shape)
    script = build_script(config, args.title)
    atomic_write(args.out_dir / CODE_FILE, lambda temporary: temporary.write_text(script, encoding="utf-8"))
    write_json(args.out_dir / METADATA_FILE, metadata)
    print(f"wrote {args.out_dir / CODE_FILE} and {args.out_dir / METADATA_FILE} (id {metadata['id']})")
    print(f"next: kaggle kernels push -p {args.out_dir}")
    return 0


if __name__ == "__main__":
    exit_process(main())
