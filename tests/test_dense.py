"""The default network is the tutorial's, layer for layer."""

from __future__ import annotations

import pytest
from tensorflow import keras

from src.core.config import PRESETS, Config
from src.core.errors import UserError
from src.models.registry import build_model


def test_tutorial_architecture():
    model = build_model(Config())
    assert [layer.name for layer in model.layers] == ["l1", "l2", "output"]
    assert [layer.units for layer in model.layers] == [20, 15, 10]
    assert [layer.activation.__name__ for layer in model.layers] == ["relu", "relu", "softmax"]
    assert model.input_shape == (None, 784)
    assert model.count_params() == 16_175
    for layer in model.layers:
        assert isinstance(layer.kernel_regularizer, keras.regularizers.L2)
        assert layer.kernel_regularizer.l2 == pytest.approx(1e-2)
        assert layer.bias_regularizer is None


def test_tutorial_compile_settings():
    model = build_model(Config())
    assert isinstance(model.optimizer, keras.optimizers.Adam)
    assert float(model.optimizer.learning_rate) == pytest.approx(1e-3)
    assert model.loss == "categorical_crossentropy"
    assert model._compile_config.config["metrics"] == ["accuracy"]


def test_tutorial_fit_settings():
    config = PRESETS["tutorial"]
    assert config == Config()
    assert (config.batch_size, config.epochs, config.validation_split, config.scaling) == (128, 50, 0.2, "none")


def test_settings_change_the_network():
    model = build_model(Config(hidden_units=(64, 32, 16), l2=1e-4, learning_rate=3e-3))
    assert [layer.units for layer in model.layers] == [64, 32, 16, 10]
    assert model.layers[0].kernel_regularizer.l2 == pytest.approx(1e-4)
    assert float(model.optimizer.learning_rate) == pytest.approx(3e-3)


@pytest.mark.parametrize(
    "changes",
    [
        {"hidden_units": ()},
        {"hidden_units": (20, 0)},
        {"l2": -1.0},
        {"learning_rate": 0.0},
        {"batch_size": 0},
        {"epochs": 0},
        {"validation_split": 1.0},
        {"scaling": "zscore"},
        {"folds": 0},
    ],
)
def test_invalid_settings_are_rejected(changes):
    with pytest.raises(UserError):
        Config(**changes)


# The CNN presets' networks are checked in tests/test_presets.py.
@pytest.mark.parametrize("name", sorted(name for name in PRESETS if PRESETS[name].family == "dense"))
def test_every_dense_preset_builds(name):
    config = PRESETS[name]
    model = build_model(config)
    assert [layer.units for layer in model.layers] == [*config.hidden_units, 10]
