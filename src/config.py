"""Every setting of a run, in one dataclass, and the named presets."""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass

from .errors import UserError

N_PIXELS = 784
N_CLASSES = 10
SCALINGS = ("none", "unit")


# What a command line catches and prints as one line: the user's problems, and the
# file system's (a folder given as --out, a full disk, a file without read permission).
USER_ERRORS = (UserError, OSError)


def user_error_message(error: Exception) -> str:
    """The one line a command line prints for one of `USER_ERRORS`."""
    if isinstance(error, OSError) and error.filename:
        return f"error: {error.filename}: {error.strerror or error}"
    return f"error: {error}"


@dataclass(frozen=True)
class Config:
    """Settings of one training run.

    The defaults are the Keras tutorial's dense network exactly: two hidden
    layers of 20 and 15 ReLU units, L2(1e-2) on every kernel, Adam, batch 128,
    50 epochs, the last 20% of rows held out, raw 0..255 pixels.

    Attributes:
        hidden_units: Width of each hidden Dense layer, in order.
        l2: L2 regularisation factor on every kernel.
        learning_rate: Adam's learning rate.
        batch_size: Rows per training step.
        epochs: Passes over the training rows.
        validation_split: Fraction of rows (the last ones, as Keras takes
            them) held out when `folds` is 1.
        scaling: "none" feeds raw 0..255 pixels; "unit" divides them by 255.
        folds: 1 trains one model; K >= 2 trains a stratified K-fold ensemble.
        seed: Seeds Python, NumPy and TensorFlow, and the fold split.
        plain: Train with Keras' plain `model.fit`, one model after another,
            instead of the compiled loop that trains every member at once.
    """

    hidden_units: tuple[int, ...] = (20, 15)
    l2: float = 1e-2
    learning_rate: float = 1e-3
    batch_size: int = 128
    epochs: int = 50
    validation_split: float = 0.2
    scaling: str = "none"
    folds: int = 1
    seed: int = 42
    plain: bool = False

    def __post_init__(self):
        object.__setattr__(self, "hidden_units", tuple(self.hidden_units))
        if not self.hidden_units or any(units < 1 for units in self.hidden_units):
            raise UserError(f"hidden_units must be positive integers, got {self.hidden_units}")
        if self.l2 < 0:
            raise UserError(f"l2 must be >= 0, got {self.l2}")
        if self.learning_rate <= 0:
            raise UserError(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.batch_size < 1:
            raise UserError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.epochs < 1:
            raise UserError(f"epochs must be >= 1, got {self.epochs}")
        if not 0 < self.validation_split < 1:
            raise UserError(f"validation_split must be in (0, 1), got {self.validation_split}")
        if self.scaling not in SCALINGS:
            raise UserError(f"scaling must be one of {', '.join(SCALINGS)}, got {self.scaling!r}")
        if self.folds < 1:
            raise UserError(f"folds must be >= 1, got {self.folds}")
        if not 0 <= self.seed < 2**32:
            raise UserError(f"seed must be in 0..{2**32 - 1} (NumPy's range), got {self.seed}")

    def replace(self, **changes) -> Config:
        """A copy with `changes` applied; `None` values are ignored."""
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def short_name(self) -> str:
        """A compact, file-name-safe summary, e.g. `h20-15_e50_f1_s42`."""
        hidden = "-".join(str(units) for units in self.hidden_units)
        return f"h{hidden}_e{self.epochs}_f{self.folds}_s{self.seed}"


PRESETS = {
    # The tutorial's network, exactly.
    "tutorial": Config(),
    # Same network on pixels scaled to 0..1. The tutorial's L2(1e-2) then weighs
    # ~255 times heavier against the (now larger) weights, so it is lightened too.
    "tutorial-scaled": Config(scaling="unit", l2=1e-4),
    # A wider dense network with a lighter penalty.
    "wide": Config(hidden_units=(256, 128), l2=1e-4, scaling="unit", epochs=30),
    # Five of the wide networks, one per stratified fold, their softmax averaged.
    "wide-ensemble": Config(hidden_units=(256, 128), l2=1e-4, scaling="unit", epochs=30, folds=5),
}


def parse_hidden_units(text: str) -> tuple[int, ...]:
    try:
        units = tuple(int(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 20,15, got {text!r}") from None
    if not units or min(units) < 1:
        raise argparse.ArgumentTypeError(f"hidden layer sizes must be positive, got {text!r}")
    return units


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """Add a flag for every `Config` field (and `--preset`) to `parser`.

    `python -m src.submit` and `python -m src.kernel` take the same ones.
    """
    settings = parser.add_argument_group("model and training")
    settings.add_argument(
        "--preset", choices=sorted(PRESETS), default="tutorial", help="named starting settings (default: tutorial)"
    )
    settings.add_argument(
        "--folds", type=int, help="K >= 2 trains a stratified K-fold ensemble; 1 a single model (default 1)"
    )
    settings.add_argument("--epochs", type=int, help="passes over the training rows (default 50)")
    settings.add_argument("--batch-size", type=int, help="rows per training step (default 128)")
    settings.add_argument("--hidden-units", type=parse_hidden_units, help="hidden layer widths, e.g. 20,15 (default)")
    settings.add_argument("--l2", type=float, help="L2 factor on every kernel (default 1e-2)")
    settings.add_argument("--learning-rate", type=float, help="Adam's learning rate (default 1e-3)")
    settings.add_argument(
        "--validation-split", type=float, help="share of rows held out by a single model (default 0.2)"
    )
    settings.add_argument(
        "--scaling", choices=SCALINGS, help="pixel scaling: none (raw 0..255, default) or unit (0..1)"
    )
    settings.add_argument("--seed", type=int, help="seed for weights, shuffling and folds (default 42)")
    settings.add_argument(
        "--plain",
        action="store_true",
        default=None,
        help="train with Keras' plain model.fit, one model after another (slower; for comparison)",
    )


def config_from_args(args: argparse.Namespace) -> Config:
    """The preset named by `args.preset`, with every flag that was given applied."""
    return PRESETS[args.preset].replace(
        folds=args.folds,
        epochs=args.epochs,
        batch_size=args.batch_size,
        hidden_units=args.hidden_units,
        l2=args.l2,
        learning_rate=args.learning_rate,
        validation_split=args.validation_split,
        scaling=args.scaling,
        seed=args.seed,
        plain=args.plain,
    )
