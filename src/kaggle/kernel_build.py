"""Build the Kaggle kernel: one script that carries the `src` package as a zip.

`kaggle kernels push` uploads only the code file that kernel-metadata.json
names, so that file must carry the package itself. The script is a short header
(what it is, the commit it was built from, the settings as Python), then the
modules the kernel needs as a base64 zip, which it writes to a temporary folder
and imports from. The modules keep their own files, imports and sub-packages,
and a traceback on Kaggle names them (`.../src.zip/src/pipeline/run.py`).
"""

from __future__ import annotations

import ast
import base64
import dataclasses
import io
import json
import re
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

from src.core.config import Config
from src.core.errors import UserError
from src.data.competition import COMPETITION

PACKAGE_DIR = Path(__file__).resolve().parent.parent
ENTRY_MODULE = "src.pipeline.kernel_entry"
ARCHIVE_NAME = "src.zip"
CODE_FILE = "digit_recognizer.py"
# The built script's first line says this; a push refuses a code file without it.
SCRIPT_MARK = "a Kaggle kernel built by `python -m src.kernel`"
METADATA_FILE = "kernel-metadata.json"
DEFAULT_KERNEL_DIR = Path("kernel")
DEFAULT_TITLE = "Digit Recognizer Dense Network"
# Besides the standard library, what Kaggle's Python image is sure to have.
KAGGLE_PACKAGES = frozenset({"tensorflow", "keras", "numpy", "pandas", "sklearn", "scipy", "matplotlib"})
# The zip format's earliest date, on every entry: the same tree builds the same bytes.
ZIP_TIMESTAMP = (1980, 1, 1, 0, 0, 0)
ZIP_FILE_MODE = 0o644 << 16
# Kaggle's accelerators by `machine_shape`; a GPU kernel gets the first unless told otherwise.
MACHINE_SHAPES = {"NvidiaTeslaT4": "GPU T4 x2"}
MIN_TITLE_LENGTH = 5
USERNAME_PATTERN = r"[A-Za-z0-9_-]+"

# What the script needs before it can import `src`, and the code that does it.
SCRIPT_IMPORTS = ("atexit", "base64", "shutil", "sys", "tempfile", "traceback")
BOOTSTRAP = '''
def main() -> int:
    """Write PACKAGE to a temporary src.zip, import src from it, run the kernel."""
    # Python's own hook cannot read source lines from a zip; the traceback module can, until
    # the folder is removed at exit.
    sys.excepthook = traceback.print_exception
    folder = tempfile.mkdtemp(prefix="digit-recognizer-")
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    archive = Path(folder) / "{archive}"
    archive.write_bytes(base64.b64decode(PACKAGE))
    sys.path.insert(0, str(archive))
    from src.core.config import Config
    from {entry} import main as run_kernel

    return run_kernel(Config(**SETTINGS))


if __name__ == "__main__":
    sys.exit(main())
'''


def module_file(package_dir: Path, name: str) -> Path | None:
    """The file of module `name` (`src.kaggle.kernel_entry`) under `package_dir`, if there is one."""
    parts = name.split(".")
    if parts[0] != package_dir.name:
        return None
    base = package_dir.joinpath(*parts[1:])
    for candidate in (base / "__init__.py", base.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _module_level_nodes(tree: ast.Module):
    """Every node that runs when the module is imported: not the bodies of functions."""
    pending = list(tree.body)
    while pending:
        node = pending.pop(0)
        yield node
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
            pending.extend(ast.iter_child_nodes(node))


def imported_names(name: str, path: Path, node: ast.AST) -> list[str]:
    """The absolute names of the modules an import statement may load."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if not isinstance(node, ast.ImportFrom):
        return []
    base = node.module or ""
    if node.level:
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
        base = f"{anchor}.{base}".rstrip(".")
    # `from package import name` may import the submodule `package.name`.
    return [base, *(f"{base}.{alias.name}" for alias in node.names if alias.name != "*")]


def check_packages(package_dir: Path, path: Path, tree: ast.Module) -> None:
    """Refuse a module-level import of a package that Kaggle's image may lack."""
    for node in _module_level_nodes(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names = [node.module or ""]
        else:
            continue
        for imported in names:
            top = imported.split(".")[0]
            if top not in sys.stdlib_module_names and top not in KAGGLE_PACKAGES and top != package_dir.name:
                raise UserError(
                    f"cannot build the kernel: {path.relative_to(package_dir.parent)} line {node.lineno} imports "
                    f"{imported}, which Kaggle's Python image may lack (it has the standard library and "
                    f"{', '.join(sorted(KAGGLE_PACKAGES))})"
                )


def collect_modules(package_dir: Path, entry: str) -> dict[str, Path]:
    """`entry`, every package module it imports (at module level or inside functions), and their packages."""
    modules: dict[str, Path] = {}
    pending = [entry]
    while pending:
        name = pending.pop()
        path = module_file(package_dir, name)
        if name in modules or path is None:
            continue
        modules[name] = path
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        check_packages(package_dir, path, tree)
        parents = [name.rsplit(".", depth)[0] for depth in range(1, name.count(".") + 1)]
        imports = [imported for node in ast.walk(tree) for imported in imported_names(name, path, node)]
        pending.extend(parents + imports)
    if entry not in modules:
        raise UserError(f"cannot build the kernel: its entry module {entry} is not in {package_dir}")
    return modules


def package_zip(package_dir: Path, files: list[Path]) -> bytes:
    """A zip of `files` named by their path from `package_dir`'s parent, in a fixed order and date."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in sorted(files):
            entry = zipfile.ZipInfo(path.relative_to(package_dir.parent).as_posix(), ZIP_TIMESTAMP)
            entry.compress_type = zipfile.ZIP_DEFLATED
            entry.external_attr = ZIP_FILE_MODE
            archive.writestr(entry, path.read_bytes())
    return buffer.getvalue()


def source_commit(directory: Path) -> str:
    """`git rev-parse HEAD` of the checkout holding `directory`, `-dirty` if it has changes; else `unknown`."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=directory, capture_output=True, text=True, check=True, timeout=30
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        changed = git("status", "--porcelain")
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit}-dirty" if changed else commit


def settings_source(config: Config) -> str:
    """`SETTINGS = {...}`: every `Config` field as a Python literal that rebuilds `config` exactly."""
    lines = []
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        lines.append(f'    "{field.name}": {json.dumps(value) if isinstance(value, str) else repr(value)},\n')
    literal = "{\n" + "".join(lines) + "}"
    try:
        rebuilt = Config(**ast.literal_eval(literal))
    except (ValueError, SyntaxError, TypeError):
        rebuilt = None
    if rebuilt != config:
        raise UserError(f"cannot build the kernel: its settings do not survive being written as Python: {config}")
    return f"SETTINGS = {literal}\n"


def build_script(
    config: Config,
    title: str = DEFAULT_TITLE,
    package_dir: Path = PACKAGE_DIR,
    entry: str = ENTRY_MODULE,
) -> str:
    """The kernel's one code file: a header, `SETTINGS`, the zipped package, and `main()`."""
    modules = collect_modules(package_dir, entry)
    names = sorted(path.relative_to(package_dir.parent).as_posix() for path in modules.values())
    encoded = base64.encodebytes(package_zip(package_dir, list(modules.values()))).decode("ascii")
    contents = (
        f"It carries {len(names)} modules of the `{package_dir.name}` package as a zip (PACKAGE, below): "
        f"{', '.join(names)}. It writes them to a temporary {ARCHIVE_NAME}, imports them from there "
        f"(tracebacks name .../{ARCHIVE_NAME}/{package_dir.name}/<module>.py) and runs {entry}.main "
        "with SETTINGS."
    )
    shown_title = title.replace("\\", "\\\\").replace('"', '\\"')  # safe inside the docstring
    docstring = (
        f"{shown_title}: {SCRIPT_MARK}; rebuild it, do not edit it.\n\n"
        f"{textwrap.fill(contents, width=100)}\n\n"
        f"Built from commit {source_commit(package_dir)}."
    )
    imports = "".join(f"import {name}\n" for name in SCRIPT_IMPORTS) + "from pathlib import Path\n"
    return (
        f'"""{docstring}\n"""\n\n{imports}\n'
        "# The settings of this build: the fields of src.core.config.Config.\n"
        f"{settings_source(config)}\n"
        f'PACKAGE = """\n{encoded}"""\n\n' + BOOTSTRAP.format(archive=ARCHIVE_NAME, entry=entry)
    )


def slugify(title: str) -> str:
    """The kernel's URL name as Kaggle derives it from the title."""
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def kernel_metadata(
    username: str, title: str = DEFAULT_TITLE, gpu: bool = False, public: bool = False, machine_shape: str | None = None
) -> dict:
    """`kernel-metadata.json` for a script kernel on the competition's data; a GPU when `gpu` or `machine_shape`."""
    gpu = gpu or machine_shape is not None
    metadata = {
        "id": f"{username}/{slugify(title)}",
        "title": title,
        "code_file": CODE_FILE,
        "language": "python",
        "kernel_type": "script",
        "is_private": not public,
        "enable_gpu": gpu,
        "enable_tpu": False,
        "enable_internet": False,
        "dataset_sources": [],
        "competition_sources": [COMPETITION],
        "kernel_sources": [],
        "model_sources": [],
    }
    if gpu:
        metadata["machine_shape"] = machine_shape or next(iter(MACHINE_SHAPES))
    check_metadata(metadata)
    return metadata


def check_metadata(metadata: dict) -> None:
    """Refuse metadata that Kaggle would reject or push under another name than its id."""
    title = str(metadata.get("title") or "")
    if not title.isprintable():
        # A lone surrogate (bytes that were not UTF-8 on the command line) or a control character cannot be
        # written into the metadata or the script; the message shows it escaped.
        raise UserError(f"the kernel title holds a character that is not printable text: {ascii(title)}")
    if len(title.strip()) < MIN_TITLE_LENGTH or not slugify(title):
        raise UserError(
            f"the kernel title needs at least {MIN_TITLE_LENGTH} characters and a letter or digit, got {title!r}"
        )
    kernel_id = str(metadata.get("id") or "")
    username, _, slug = kernel_id.partition("/")
    if not re.fullmatch(USERNAME_PATTERN, username) or not slug:
        raise UserError(
            f"the kernel id must be USER/SLUG, with a user name of letters, digits, '-' or '_', got {kernel_id!r}"
        )
    if slug != slugify(title):
        raise UserError(f"the kernel id {kernel_id} does not match its title {title!r} (slug {slugify(title)})")
    if COMPETITION not in metadata.get("competition_sources", []):
        raise UserError(f"the kernel's competition_sources must include {COMPETITION}")
    shape = metadata.get("machine_shape")
    if shape is not None and shape not in MACHINE_SHAPES:
        raise UserError(f"unknown machine_shape {shape!r}: use one of {', '.join(MACHINE_SHAPES)}")
