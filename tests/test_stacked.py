"""The fused dense trainer (`src.training.stacked`) trains what the plain path trains.

Correctness only: no timings here (scripts/benchmark.py measures speed).
"""

from __future__ import annotations

import numpy as np
import pytest
from tensorflow import keras

from src.core.config import PRESETS, Config, fused_trainer_fits
from src.data.loading import as_features
from src.models.registry import build_model
from src.training.stacked import StackedDense, check_mirrored, epoch_batches
from src.training.trainer import seed_everything, split_rows, train
from tests.synthetic import make_arrays

UNIT = Config(scaling="unit")


def without_seconds(history: dict) -> dict:
    return {name: values for name, values in history.items() if name != "seconds"}


def weights_of(result):
    return [model.get_weights() for model in result.models]


@pytest.mark.slow
def test_stacked_members_train_only_on_their_own_training_rows(monkeypatch):
    images, labels, _ = make_arrays(n_per_class=10)
    config = Config(folds=3, epochs=3, batch_size=16, scaling="unit")
    splits = split_rows(config, labels)
    seen = []

    def recording_epoch_batches(*args):
        rows, mask = epoch_batches(*args)
        seen.append((rows, mask))
        return rows, mask

    monkeypatch.setattr("src.training.stacked.epoch_batches", recording_epoch_batches)
    train(config, images, labels, verbose=0)
    assert len(seen) == config.epochs
    for rows, mask in seen:
        for member, (train_rows, validation_rows) in enumerate(splits):
            used = rows[:, member][mask[:, member] == 1]
            # Every training row exactly once per epoch, and no row of its own fold.
            np.testing.assert_array_equal(np.sort(used), np.sort(train_rows))
            assert not set(used) & set(validation_rows)


def test_epoch_batches_shuffle_and_end_with_a_partial_batch():
    train_rows = [np.arange(10, 50), np.arange(100, 125)]
    rows, mask = epoch_batches([np.random.default_rng(0), np.random.default_rng(1)], train_rows, 16)
    assert rows.shape == mask.shape == (3, 2, 16)  # ceil(40 / 16) steps
    np.testing.assert_array_equal(mask[:, 0].sum(axis=1), [16, 16, 8])
    np.testing.assert_array_equal(mask[:, 1].sum(axis=1), [16, 9, 0])  # member 2 is done after 2 steps
    assert not np.array_equal(rows[0, 0], np.arange(10, 26))
    again, _ = epoch_batches([np.random.default_rng(2), np.random.default_rng(1)], train_rows, 16)
    assert not np.array_equal(rows[:, 0], again[:, 0])
    # Each member's order is its own shuffler's alone: member 2's is the same beside another member 1.
    np.testing.assert_array_equal(rows[:, 1], again[:, 1])


def stacked_network(models, images, labels, config=UNIT):
    return StackedDense(config, models, as_features(images, config), labels)


@pytest.mark.slow
def test_a_stacked_member_trains_as_a_separate_model_would():
    """Three members of unequal sizes side by side vs member 2 alone: same batches, same weights."""
    images, labels, _ = make_arrays(n_per_class=15)
    seed_everything(0)
    models = [build_model(Config()) for _ in range(3)]
    train_rows = [np.arange(0, 140), np.arange(20, 84), np.arange(50, 150)]  # 5, 3 and 4 steps of 32
    together = stacked_network(models, images, labels)
    alone = stacked_network(models[1:2], images, labels)
    validation_rows, validation_mask = np.array([[0], [1], [2]]), np.ones((3, 1), np.float32)
    shufflers = [np.random.default_rng(member) for member in range(3)]
    for _ in range(3):
        rows, mask = epoch_batches(shufflers, train_rows, 32)
        together.run_epoch(rows, mask, validation_rows, validation_mask)
        own_steps = mask[:, 1].sum(axis=1) > 0
        alone.run_epoch(rows[own_steps][:, 1:2], mask[own_steps][:, 1:2], validation_rows[1:2], validation_mask[1:2])
    for stacked, single in zip(together.member_weights(1), alone.member_weights(0), strict=True):
        np.testing.assert_allclose(stacked, single, rtol=1e-5, atol=1e-6)
    assert not np.allclose(together.member_weights(0)[0], together.member_weights(1)[0])


def assert_same_steps_as_keras(model, config):
    """Keras' own train_on_batch (its loss, L2 penalty and Adam) on the same batches gives the same weights."""
    images, labels, _ = make_arrays(n_per_class=10)
    network = stacked_network([model], images, labels, config)
    features, targets = as_features(images, config), np.eye(10)[labels]
    rows, mask = epoch_batches([np.random.default_rng(0)], [np.arange(70)], 32)  # 32, 32, then 6 rows
    for _ in range(2):
        network.run_epoch(rows, mask, np.array([[70]]), np.ones((1, 1), np.float32))
        for step in range(len(rows)):
            batch = rows[step, 0][mask[step, 0] == 1]
            model.train_on_batch(features[batch], targets[batch])
    for stacked, keras_weight in zip(network.member_weights(0), model.get_weights(), strict=True):
        np.testing.assert_allclose(stacked, keras_weight, rtol=1e-4, atol=1e-5)


# Three hidden layers take the longest: the fast tier checks one and two.
@pytest.mark.slow
@pytest.mark.parametrize(
    "hidden_units", [(20,), (20, 15), pytest.param((24, 16, 12), marks=pytest.mark.slow)], ids=["one", "two", "three"]
)
def test_the_stacked_loop_takes_the_same_steps_as_keras(hidden_units):
    config = Config(hidden_units=hidden_units, scaling="unit")
    seed_everything(0)
    model = build_model(config)
    assert len(model.layers) == len(hidden_units) + 1
    assert_same_steps_as_keras(model, config)


@pytest.mark.slow
def test_the_stacked_loop_reads_adams_constants_from_the_compiled_optimizer():
    config = Config(scaling="unit")
    seed_everything(0)
    model = build_model(config)
    adam = keras.optimizers.Adam(learning_rate=config.learning_rate, beta_1=0.5, beta_2=0.9, epsilon=1e-3)
    model.compile(optimizer=adam, loss="categorical_crossentropy")
    assert_same_steps_as_keras(model, config)


def dense_network(
    hidden_activation="relu",
    l2=1e-2,
    use_bias=True,
    dtype=None,
    extra_layer=None,
    optimizer=None,
    loss="categorical_crossentropy",
):
    """The tutorial's network, built by hand, with one thing changed."""
    regularizer = keras.regularizers.l2(l2)
    first = keras.layers.Dense(20, hidden_activation, use_bias=use_bias, kernel_regularizer=regularizer, dtype=dtype)
    layers = [keras.Input(shape=(784,)), first, *([extra_layer] if extra_layer else [])]
    layers += [
        keras.layers.Dense(15, "relu", kernel_regularizer=keras.regularizers.l2(1e-2)),
        keras.layers.Dense(10, "softmax", kernel_regularizer=keras.regularizers.l2(1e-2)),
    ]
    model = keras.Sequential(layers)
    model.compile(optimizer=optimizer or keras.optimizers.Adam(learning_rate=1e-3), loss=loss)
    return model


def functional_network():
    inputs = keras.Input(shape=(784,))
    outputs = keras.layers.Dense(10, "softmax", kernel_regularizer=keras.regularizers.l2(1e-2))(inputs)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=1e-3), loss="categorical_crossentropy")
    return model


DEVIATIONS = {
    "dropout": (lambda: dense_network(extra_layer=keras.layers.Dropout(0.2, name="drop")), "'drop' is a Dropout"),
    "activation": (lambda: dense_network(hidden_activation="tanh"), "activation='tanh' (expected 'relu')"),
    "l2 factor": (lambda: dense_network(l2=1e-3), "kernel_regularizer=L2(l2=0.001) (expected L2(l2=0.01))"),
    "no bias": (lambda: dense_network(use_bias=False), "use_bias=False"),
    "mixed precision": (lambda: dense_network(dtype="mixed_float16"), "mixed_float16"),
    "optimizer": (lambda: dense_network(optimizer=keras.optimizers.SGD()), "optimizer is SGD, not Adam"),
    "amsgrad": (lambda: dense_network(optimizer=keras.optimizers.Adam(1e-3, amsgrad=True)), "amsgrad=True"),
    "learning rate": (lambda: dense_network(optimizer=keras.optimizers.Adam(1e-2)), "learning_rate=0.01"),
    "weight decay": (lambda: dense_network(optimizer=keras.optimizers.Adam(1e-3, weight_decay=0.1)), "weight_decay"),
    "loss": (lambda: dense_network(loss="mse"), "its loss is 'mse'"),
    "label smoothing": (
        lambda: dense_network(loss=keras.losses.CategoricalCrossentropy(label_smoothing=0.1)),
        "label_smoothing=0.1",
    ),
    "functional": (functional_network, "the model is a Functional, not a keras.Sequential"),
}


def test_the_hand_built_network_is_the_mirrored_one():
    # So each refusal below is due to its one change alone.
    images, labels, _ = make_arrays(n_per_class=2)
    stacked_network([dense_network()], images, labels)


@pytest.mark.parametrize("name", sorted(DEVIATIONS))
def test_the_stacked_trainer_refuses_any_other_network(name):
    build, problem = DEVIATIONS[name]
    images, labels, _ = make_arrays(n_per_class=2)
    with pytest.raises(ValueError, match="the stacked trainer cannot train this model") as refused:
        stacked_network([dense_network(), build()], images, labels)
    message = str(refused.value)
    assert problem in message
    assert "--plain" in message


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_dense_preset_is_the_mirrored_network_and_no_other(name):
    config = PRESETS[name]
    if fused_trainer_fits(config):
        check_mirrored(build_model(config), config)
    else:
        with pytest.raises(ValueError, match="the stacked trainer cannot train this model"):
            check_mirrored(build_model(config), config)


@pytest.mark.slow
def test_plain_and_fast_paths_agree():
    # One batch holds every training row, so the shuffle order cannot matter.
    images, labels, _ = make_arrays(n_per_class=8)
    config = Config(epochs=6, scaling="unit", batch_size=128)
    fast = train(config, images, labels, verbose=0)
    plain = train(config.replace(plain=True), images, labels, verbose=0)
    for fast_weight, plain_weight in zip(weights_of(fast)[0], weights_of(plain)[0], strict=True):
        np.testing.assert_allclose(fast_weight, plain_weight, rtol=1e-4, atol=1e-5)
    # The epoch timer's wall seconds are the one entry the two paths cannot share.
    fast_history, plain_history = (without_seconds(result.members[0].history) for result in (fast, plain))
    assert sorted(fast_history) == sorted(plain_history) == ["accuracy", "loss", "val_accuracy", "val_loss"]
    for name in plain_history:
        np.testing.assert_allclose(fast_history[name], plain_history[name], rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(fast.validation_rows(), plain.validation_rows())
    np.testing.assert_allclose(fast.validation_probabilities(), plain.validation_probabilities(), atol=1e-4)


@pytest.mark.slow
def test_fast_path_is_reproducible():
    images, labels, _ = make_arrays(n_per_class=9)
    config = Config(folds=3, epochs=3, batch_size=16, scaling="unit", seed=5)
    first, second = (train(config, images, labels, verbose=0) for _ in range(2))
    for first_weights, second_weights in zip(weights_of(first), weights_of(second), strict=True):
        for a, b in zip(first_weights, second_weights, strict=True):
            assert a.tobytes() == b.tobytes()
    assert [without_seconds(m.history) for m in first.members] == [without_seconds(m.history) for m in second.members]
    for member in first.members:  # each Keras model holds its member's final weights
        predicted = member.model.predict(as_features(images, UNIT)[member.validation_rows], verbose=0)
        np.testing.assert_allclose(member.validation_probabilities, predicted, atol=1e-5)
    other = train(config.replace(seed=6), images, labels, verbose=0)
    assert not np.array_equal(weights_of(other)[0][0], weights_of(first)[0][0])


def test_plain_flag_selects_the_plain_path():
    from src.core.flags import config_from_args
    from src.submit import build_parser

    assert config_from_args(build_parser().parse_args(["--plain"])).plain is True
    assert config_from_args(build_parser().parse_args([])).plain is False
