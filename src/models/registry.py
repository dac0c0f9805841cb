"""The model families by name, and what every run asks of its family: a model, a cost, a name.

A new family is a module declaring a `FAMILY` (see `src.models.family`) and one
line in `FAMILIES` below; its name must also be one of the `family` setting's
choices, which `tests/test_registry.py` holds equal to this table.
"""

from __future__ import annotations

from src.core.config import PRESETS, Config, format_default, member_indices, trains_together
from src.core.errors import UserError
from src.core.memory import available_memory
from src.models import cnn, dense
from src.models.family import Cost, Family

FAMILIES: dict[str, Family] = {family.name: family for family in (dense.FAMILY, cnn.FAMILY)}
# One image's forward pass beyond this is a setting gone wrong (a filter count typed with an extra digit),
# not an MNIST network: a step of it would hold the CPU for minutes, deaf to Ctrl-C and SIGTERM.
MAX_MULTIPLY_ADDS = 2_000_000_000


def family_of(config: Config) -> Family:
    return FAMILIES[config.family]


def model_cost(config: Config) -> Cost:
    """The cost of one member of `config`'s network; a `UserError` for a network that cannot build."""
    return family_of(config).cost(config)


def members_at_once(config: Config) -> int:
    """How many members train side by side: the fused dense trainer trains them all (a part's all) at once."""
    if trains_together(config):
        return len(member_indices(config))
    return 1


def training_bytes(config: Config) -> int:
    """A rough estimate of the memory training takes (see `Cost.training_bytes`)."""
    return model_cost(config).training_bytes(config.batch_size, members_at_once(config))


def check_buildable(config: Config) -> Cost:
    """Refuse a network that cannot build or is absurdly slow, on any machine; its cost otherwise."""
    cost = model_cost(config)
    if cost.multiply_adds > MAX_MULTIPLY_ADDS:
        cnn_preset_cost = model_cost(PRESETS["cnn"]).multiply_adds / 1e6
        raise UserError(
            f"this {config.family} network costs {cost.multiply_adds / 1e9:.1f} G multiply-adds per image "
            f"(the limit is {MAX_MULTIPLY_ADDS / 1e9:.0f} G; the cnn preset costs {cnn_preset_cost:.1f} M): "
            "use fewer or narrower layers"
        )
    return cost


def check_size(config: Config, available: int | None = None) -> Cost:
    """Refuse, before anything loads, a network that cannot build, is absurdly slow, or cannot fit in memory here.

    Returns:
        The network's cost, for the record.
    """
    cost = check_buildable(config)
    available = available_memory() if available is None else available
    needed = cost.training_bytes(config.batch_size, members_at_once(config))
    if available is not None and needed > available:
        raise UserError(
            f"{network_text(config)}, batch_size {config.batch_size} and {members_at_once(config)} member(s) at once "
            f"need about {needed / 2**30:.1f} GiB to train, but {available / 2**30:.1f} GiB of memory is available: "
            f"{smaller_hint(config)}"
        )
    return cost


def out_of_memory(config: Config) -> UserError:
    """The one line for a run that ran out of memory while training or predicting, though the estimate let it start.

    The estimate is rough (the libraries' own buffers are not in it), and a
    process may be allowed less memory than the machine reports free.
    """
    estimate = training_bytes(config) / 2**30
    return UserError(
        f"out of memory: training {network_text(config)} with batch_size {config.batch_size} and "
        f"{members_at_once(config)} member(s) at once did not fit (estimated at {estimate:.1f} GiB): "
        f"{smaller_hint(config)}"
    )


def network_text(config: Config) -> str:
    """The settings that size the network, as a message names them."""
    if config.family == "dense":
        return f"hidden_units {format_default(config.hidden_units)}"
    return f"filters {format_default(config.filters)}, head_units {config.head_units}"


def smaller_hint(config: Config) -> str:
    """What to change so that training needs less memory."""
    layers = "fewer or narrower --hidden-units" if config.family == "dense" else "fewer or narrower --filters"
    one_at_a_time = ["--plain (one member at a time)"] if members_at_once(config) > 1 else []
    options = ["a smaller --batch-size", layers, *one_at_a_time]
    return f"try {', '.join(options[:-1])} or {options[-1]}"


def build_model(config: Config, steps_per_epoch: int = 1):
    """Build and compile the model of `config.family`, with its schedule and label smoothing.

    Args:
        config: The run's settings.
        steps_per_epoch: Training steps in an epoch, which a schedule counts in.
    """
    from src.models.schedules import learning_rate_schedule

    learning_rate = learning_rate_schedule(
        config.schedule, config.learning_rate, steps_per_epoch, config.epochs, config.decay
    )
    return family_of(config).build(config, learning_rate)


def run_name(config: Config) -> str:
    """A compact, file-name-safe summary: `h20-15_e50_f1_s42`, or `cnn16-32-64_e15_m5_deskew_s42` for a bag of CNNs
    on deskewed images: a model that needs deskewed images says so where its files are."""
    ensemble = f"_m{config.members}" if config.members > 1 else f"_f{config.folds}"
    deskewed = "_deskew" if config.deskew else ""
    return f"{family_of(config).short_name(config)}_e{config.epochs}{ensemble}{deskewed}_s{config.seed}"
