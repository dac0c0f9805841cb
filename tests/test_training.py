"""Splits, training and ensembling on a tiny dataset."""

from __future__ import annotations

import contextlib
import io
import re
from dataclasses import dataclass

import numpy as np
import pytest
from tensorflow import keras

from src.core.config import Config
from src.core.errors import UserError
from src.data.loading import as_features
from src.training.evaluation import predicted_labels as predict_labels
from src.training.prediction import predict_probabilities
from src.training.trainer import TrainingResult, split_rows, train, validation_scheme
from tests.synthetic import make_arrays


def test_single_split_holds_out_the_last_rows_like_keras():
    splits = split_rows(Config(validation_split=0.2), np.arange(103) % 10)
    ((train_rows, validation_rows),) = splits
    # Keras' fit(validation_split=0.2) trains on rows [:floor(0.8 * n)].
    np.testing.assert_array_equal(train_rows, np.arange(82))
    np.testing.assert_array_equal(validation_rows, np.arange(82, 103))


def test_folds_are_stratified_disjoint_and_cover_every_row_once():
    labels = np.repeat(np.arange(10), [30, 31, 32, 33, 34, 35, 36, 37, 38, 39])
    splits = split_rows(Config(folds=5, seed=3), labels)
    assert len(splits) == 5
    validation = np.concatenate([validation_rows for _, validation_rows in splits])
    np.testing.assert_array_equal(np.sort(validation), np.arange(len(labels)))
    overall = np.bincount(labels) / len(labels)
    for train_rows, validation_rows in splits:
        assert not set(train_rows) & set(validation_rows)
        assert len(train_rows) + len(validation_rows) == len(labels)
        share = np.bincount(labels[validation_rows], minlength=10) / len(validation_rows)
        np.testing.assert_allclose(share, overall, atol=0.02)


def test_folds_depend_on_the_seed():
    labels = np.arange(200) % 10
    first = split_rows(Config(folds=4, seed=1), labels)[0][1]
    assert np.array_equal(first, split_rows(Config(folds=4, seed=1), labels)[0][1])
    assert not np.array_equal(first, split_rows(Config(folds=4, seed=2), labels)[0][1])


@dataclass
class ThreeFolds:
    """A 3-fold run of the tutorial's network in the compiled loop, with what it printed."""

    config: Config
    images: np.ndarray
    labels: np.ndarray
    test_images: np.ndarray
    result: TrainingResult
    printed: list[str]


@pytest.fixture(scope="module")
def three_folds() -> ThreeFolds:
    images, labels, test_images = make_arrays(n_per_class=9)
    config = Config(folds=3, epochs=2, batch_size=16, scaling="unit")
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        result = train(config, images, labels, verbose=2)
    return ThreeFolds(config, images, labels, test_images, result, printed.getvalue().splitlines())


@pytest.mark.slow
def test_ensemble_trains_one_member_per_fold(three_folds):
    result, labels, test_images = three_folds.result, three_folds.labels, three_folds.test_images
    assert len(result.members) == 3
    for member in result.members:
        assert len(member.history["loss"]) == 2
        assert member.validation_probabilities.shape == (len(member.validation_rows), 10)
        np.testing.assert_array_equal(member.validation_labels, labels[member.validation_rows])
    assert sorted(result.validation_rows()) == list(range(len(labels)))

    probabilities = predict_probabilities(result.models, test_images / 255.0)
    each = [model.predict(test_images / 255.0, verbose=0) for model in result.models]
    np.testing.assert_allclose(probabilities, np.mean(each, axis=0), rtol=1e-5)
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)
    assert predict_labels(probabilities).tolist() == probabilities.argmax(axis=1).tolist()


@pytest.mark.slow
def test_training_learns_the_tiny_dataset():
    images, labels, _ = make_arrays(n_per_class=30)
    result = train(Config(epochs=20, scaling="unit", batch_size=32), images, labels, verbose=0)
    assert result.validation_accuracy(labels) >= 0.9


def rows_of(dataset) -> list[bytes]:
    """The feature rows a `tf.data` pipeline yields, in a fixed order (it shuffles them)."""
    return sorted(row.tobytes() for features, _ in dataset.as_numpy_iterator() for row in features)


def recorded_fits(monkeypatch) -> list[tuple[keras.Model, object, object]]:
    """Every `model.fit` call from now on: the model, its training pipeline and its validation pipeline."""
    fits = []
    keras_fit = keras.Model.fit

    def recording_fit(model, x, **settings):
        fits.append((model, x, settings["validation_data"]))
        return keras_fit(model, x, **settings)

    monkeypatch.setattr(keras.Model, "fit", recording_fit)
    return fits


@pytest.mark.slow
def test_plain_folds_train_the_members_one_after_another_each_on_its_own_rows(monkeypatch):
    images, labels, _ = make_arrays(n_per_class=9)
    config = Config(folds=3, epochs=2, batch_size=16, scaling="unit", plain=True)
    features = as_features(images, config)
    fits = recorded_fits(monkeypatch)
    result = train(config, images, labels, verbose=0)
    splits = split_rows(config, labels)
    # One fit per member, in fold order, each of its own fresh model.
    assert [id(model) for model, _, _ in fits] == [id(model) for model in result.models]
    assert len({id(model) for model in result.models}) == config.folds
    for member, (_, trained_on, validated_on), (train_rows, validation_rows) in zip(
        result.members, fits, splits, strict=True
    ):
        assert not set(train_rows) & set(validation_rows)
        assert rows_of(trained_on) == sorted(row.tobytes() for row in features[train_rows])
        assert rows_of(validated_on) == sorted(row.tobytes() for row in features[validation_rows])
        np.testing.assert_array_equal(member.validation_rows, validation_rows)
        np.testing.assert_array_equal(member.validation_labels, labels[validation_rows])
        # Its probabilities come from its final weights on its own fold, as fit's last validation did.
        accuracy = np.mean(member.validation_probabilities.argmax(axis=1) == labels[validation_rows])
        assert member.history["val_accuracy"][-1] == pytest.approx(accuracy)
        assert len(member.history["loss"]) == config.epochs


@pytest.mark.slow
@pytest.mark.parametrize(
    "changes",
    [
        {"family": "cnn", "filters": (4,), "head_units": 0},
        {"schedule": "cosine"},
        {"label_smoothing": 0.1},
        {"augment_rotation": 10.0},
    ],
    ids=["cnn", "schedule", "label-smoothing", "augmentation"],
)
def test_what_the_compiled_loop_does_not_mirror_trains_with_fit(monkeypatch, changes):
    images, labels, _ = make_arrays(n_per_class=6)
    fits = recorded_fits(monkeypatch)
    result = train(Config(epochs=1, scaling="unit", **changes), images, labels, verbose=0)
    assert [model for model, _, _ in fits] == result.models


@pytest.mark.slow
@pytest.mark.parametrize("changes", [{}, {"augment_rotation": 10.0}, {"folds": 2}], ids=["plain", "augmented", "folds"])
def test_fit_traces_each_models_training_step_once(monkeypatch, changes):
    # Python code inside the step runs only while TensorFlow traces it. A variable made in the first
    # trace (Keras builds the optimizer's and the metrics' there when it can) costs a second one.
    traces = []
    step = keras.Model.train_step
    monkeypatch.setattr(keras.Model, "train_step", lambda model, data: traces.append(model) or step(model, data))
    images, labels, _ = make_arrays(n_per_class=6)
    result = train(Config(epochs=2, scaling="unit", plain=True, **changes), images, labels, verbose=0)
    assert traces == result.models


@pytest.mark.slow
def test_the_tutorials_network_trains_in_the_compiled_loop(monkeypatch):
    images, labels, _ = make_arrays(n_per_class=6)
    fits = recorded_fits(monkeypatch)
    train(Config(epochs=1, members=2, scaling="unit"), images, labels, verbose=0)
    assert fits == []


@pytest.mark.slow
@pytest.mark.parametrize("plain", [False, True], ids=["compiled", "fit"])
def test_validation_split_zero_trains_on_every_row_and_reports_no_validation(plain):
    images, labels, _ = make_arrays(n_per_class=6)
    config = Config(epochs=2, scaling="unit", validation_split=0.0, plain=plain)
    result = train(config, images, labels, verbose=0)
    ((train_rows, validation_rows),) = split_rows(config, labels)
    np.testing.assert_array_equal(train_rows, np.arange(len(labels)))
    assert len(validation_rows) == 0
    (member,) = result.members
    assert not [name for name in member.history if name.startswith("val_")] and len(member.history["loss"]) == 2
    assert member.validation_probabilities.shape == (0, 10)
    assert member.validation_accuracy(labels) is None and result.validation_accuracy(labels) is None
    assert validation_scheme(config) == "no validation"


@pytest.mark.slow
def test_early_stopping_keeps_the_weights_of_the_best_epoch():
    images, labels, _ = make_arrays(n_per_class=10)
    config = Config(epochs=8, scaling="unit", learning_rate=0.05, batch_size=16, early_stopping=1)
    result = train(config, images, labels, verbose=0)
    (member,) = result.members
    losses = member.history["val_loss"]
    # It stops one epoch after the first that did not improve, and the model holds the best epoch's weights.
    worse = [epoch for epoch in range(1, len(losses)) if losses[epoch] >= min(losses[:epoch])]
    assert len(losses) == (worse[0] + 1 if worse else config.epochs)
    features = as_features(images, config)[member.validation_rows]
    targets = keras.utils.to_categorical(member.validation_labels, 10)
    assert member.model.evaluate(features, targets, verbose=0)[0] == pytest.approx(min(losses), rel=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("plain", [False, True], ids=["compiled-loop", "fit"])
def test_keep_best_keeps_each_members_epoch_of_lowest_validation_loss(plain):
    images, labels, _ = make_arrays(n_per_class=10)
    # A high learning rate and a light penalty, so that the validation loss rises again within the epochs.
    config = Config(
        epochs=8, scaling="unit", learning_rate=0.3, l2=1e-4, batch_size=16, folds=2, keep_best=True, plain=plain
    )
    result = train(config, images, labels, verbose=0)
    assert result.trained_together is not plain
    features = as_features(images, config)
    for member in result.members:
        losses = member.history["val_loss"]
        assert len(losses) == config.epochs and member.best_epoch == int(np.argmin(losses)) + 1
        targets = keras.utils.to_categorical(member.validation_labels, 10)
        kept = member.model.evaluate(features[member.validation_rows], targets, verbose=0)[0]
        assert kept == pytest.approx(min(losses), rel=1e-3)
        expected = predict_probabilities([member.model], features[member.validation_rows])
        np.testing.assert_allclose(member.validation_probabilities, expected, rtol=1e-5, atol=1e-6)
    assert any(member.best_epoch < config.epochs for member in result.members), "no member's best was earlier"


@pytest.mark.slow
def test_the_parameter_count_is_printed_once_and_kept(three_folds):
    lines = [line for line in three_folds.printed if "parameters" in line]
    assert lines == ["model: dense, 16,175 parameters and 16,130 multiply-adds per image, per member"]
    assert three_folds.result.parameters == 16_175


@pytest.mark.slow
def test_ensemble_progress_is_one_line_per_epoch_with_the_mean_and_each_fold(three_folds):
    config, result, lines = three_folds.config, three_folds.result, three_folds.printed
    progress = [line for line in lines if "val_accuracy" in line]
    assert len(progress) == config.epochs
    assert [line for line in lines if line.startswith("Epoch ")] == ["Epoch 1/2", "Epoch 2/2"]
    histories = [member.history for member in result.members]
    for epoch, line in enumerate(progress):
        shown = {name: float(value) for name, value in re.findall(r"(\w+): ([-+.\deE]+)", line)}
        expected = {f"fold{fold}_val_accuracy": h["val_accuracy"][epoch] for fold, h in enumerate(histories, 1)}
        for name in ("loss", "accuracy", "val_loss", "val_accuracy"):
            expected[f"mean_{name}"] = np.mean([history[name][epoch] for history in histories])
        assert sorted(shown) == sorted(expected)
        for name, value in expected.items():
            assert shown[name] == pytest.approx(value, abs=1e-4), name
    fold_lines = [line for line in lines if line.startswith("fold ")]
    assert [line.split(":")[0] for line in fold_lines] == ["fold 1/3", "fold 2/3", "fold 3/3"]
    # Trained together, the folds share one time: printed once, whole, not split into thirds.
    assert result.trained_together and not any(line.endswith(" s)") for line in fold_lines)
    shared = {member.seconds for member in result.members}
    assert len(shared) == 1 and f"folds trained together in {shared.pop():.1f} s" in lines


def test_settings_that_cannot_go_together_are_refused():
    with pytest.raises(UserError, match="--family cnn takes pixels scaled to 0..1: add --scaling unit"):
        Config(family="cnn")
    with pytest.raises(UserError, match="--early-stopping watches the held-out rows"):
        Config(early_stopping=3, validation_split=0.0)
    # A bag and folds hold rows out themselves, whatever validation_split says.
    assert Config(early_stopping=3, validation_split=0.0, members=2).members == 2
