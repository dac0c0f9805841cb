"""Saved models and `python -m src.predict`: reload equality, same bytes again, damaged folders."""

from __future__ import annotations

import functools
import json
import shutil

import numpy as np
import pytest
from tensorflow import keras

import src.training.prediction
from src.core.config import Config
from src.core.files import sha256
from src.data.loading import as_features, read_test, read_train
from src.models import cnn
from src.models.augmentation import Switchable, predict_with_tta
from src.models.schedules import learning_rate_schedule
from src.pipeline.run import run
from src.predict import main as predict_main
from src.runs.folders import INCOMPLETE_MARKER, MEMBERS_MANIFEST, member_files, save_members
from src.runs.record import DERIVED_PREDICT, DerivedRecord, RunRecord
from src.submit import main as submit_main
from src.training.evaluation import accuracy, predicted_labels
from src.training.prediction import held_out_probabilities, load_models, predict_probabilities, tta_validation_accuracy
from tests.helpers import assert_one_line_error, run_command, run_main
from tests.synthetic import make_arrays

UNIT = Config(scaling="unit")


@pytest.fixture
def runs(small_runs):
    """The shared tiny runs: a 2-fold ensemble on the compiled path, a single model with plain `fit`, and a CNN."""
    runs = {"stacked": small_runs["folds"], "plain": small_runs["plain"], "cnn": small_runs["cnn"]}
    return small_runs.data["data"], runs


def predict(capsys, *args):
    """`python -m src.predict ARGS`, in this process."""
    return run_main(capsys, predict_main, *args)


@pytest.mark.parametrize("name", ["stacked", "plain", "cnn"])
def test_saved_models_predict_the_same_probabilities_after_reload(runs, name):
    data_dir, results = runs
    result = results[name]
    paths = member_files(result.run_dir)
    assert [path.relative_to(result.run_dir).as_posix() for path in paths] == [
        f"members/member-{index}.keras" for index in range(1, len(result.training.members) + 1)
    ]
    features = as_features(read_test(data_dir / "test.csv"), result.record.config)
    reloaded = predict_probabilities(load_models(paths), features)
    np.testing.assert_array_equal(reloaded, result.test_probabilities)
    np.testing.assert_array_equal(reloaded, np.load(result.run_dir / "test_probabilities.npy"))


@pytest.mark.slow
def test_a_saved_cnn_with_a_schedule_predicts_the_same_after_reload(tmp_path):
    images, labels, test_images = make_arrays()
    features, test_features = as_features(images, UNIT), as_features(test_images, UNIT)
    schedule = learning_rate_schedule("one-cycle", 1e-3, steps_per_epoch=3, epochs=1)
    model = cnn.build(Config(family="cnn", scaling="unit", filters=(4, 8)), schedule)
    model.fit(features, keras.utils.to_categorical(labels, 10), epochs=1, batch_size=32, verbose=0)
    paths = save_members(tmp_path, [model])
    expected = predict_probabilities([model], test_features)
    np.testing.assert_array_equal(predict_probabilities(load_models(paths), test_features), expected)


def test_a_model_saved_with_the_distortions_inside_loads_and_predicts_without_them(tmp_path):
    # Runs made before the distortions moved to the input pipeline saved them as the model's first layer.
    _, _, test_images = make_arrays()
    test_features = as_features(test_images, UNIT)
    body = [keras.layers.Flatten(), keras.layers.Dense(10, activation="softmax")]
    saved = keras.Sequential([keras.Input((28, 28, 1)), Switchable(10.0, 0.1, 0.1, seed=1, name="augmentation"), *body])
    plain = keras.Sequential([keras.Input((28, 28, 1)), *body])
    paths = save_members(tmp_path, [saved])
    (loaded,) = load_models(paths)
    assert isinstance(loaded.get_layer("augmentation"), Switchable)
    pictures = test_features.reshape(-1, 28, 28, 1)
    np.testing.assert_array_equal(loaded.predict(pictures, verbose=0), plain.predict(pictures, verbose=0))


@pytest.mark.slow
def test_tta_averages_each_models_shifted_predictions_and_scores_the_held_out_rows(runs):
    data_dir, results = runs
    result = results["stacked"]
    models, members, config = result.training.models, result.training.members, result.record.config
    features = as_features(read_test(data_dir / "test.csv"), config)
    with_tta = predict_probabilities(models, features, tta=True)
    np.testing.assert_allclose(with_tta, np.mean([predict_with_tta(model, features) for model in models], axis=0))
    assert not np.allclose(with_tta, predict_probabilities(models, features))
    # Held out: each member on its own fold; without TTA, the probabilities it kept from training.
    images, labels = read_train(data_dir / "train.csv")
    train_features = as_features(images, config)
    for member, values in zip(members, held_out_probabilities(members, train_features), strict=True):
        np.testing.assert_allclose(values, member.validation_probabilities, atol=1e-6)
    rows = result.training.validation_rows()
    expected = accuracy(labels[rows], np.concatenate(held_out_probabilities(members, train_features, tta=True)))
    assert tta_validation_accuracy(result.training, train_features, labels) == expected


@pytest.mark.parametrize("name", ["stacked", "plain", "cnn"])
def test_with_no_shift_the_tta_accuracy_is_the_runs_own(runs, name, monkeypatch):
    data_dir, results = runs
    result = results[name]
    images, labels = read_train(data_dir / "train.csv")
    features = as_features(images, result.record.config)
    monkeypatch.setattr(
        src.training.prediction, "predict_with_tta", functools.partial(predict_with_tta, shifts=[(0, 0)])
    )
    assert tta_validation_accuracy(result.training, features, labels) == result.record.validation.accuracy


def test_predict_writes_the_runs_own_submission_bytes_and_a_record(runs, tmp_path, capsys):
    data_dir, results = runs
    result = results["stacked"]
    out = tmp_path / "again.csv"
    completed = predict(capsys, result.run_dir, "--data", data_dir, "--out", out)
    assert completed.returncode == 0, completed.stderr
    assert completed.stderr == "", completed.stderr
    assert out.read_bytes() == (result.run_dir / "submission.csv").read_bytes()
    record = DerivedRecord.from_json(tmp_path / "again.json")
    assert record.kind == DERIVED_PREDICT and not record.tta
    assert record.test.sha256 == result.record.inputs.test.sha256 and record.test.rows == 20
    assert [source.run_dir for source in record.sources] == [str(result.run_dir)]
    assert record.sources[0].validation_accuracy == result.record.validation.accuracy
    assert record.submission.rows == 20 and f"wrote {out}" in completed.stdout


@pytest.mark.slow
def test_a_sample_run_predicts_its_sample_again_without_data(tmp_path, capsys):
    """The sample's folder is gone after its run: the same images are made again from the recorded seed."""
    out = tmp_path / "sample.csv"
    completed = run_main(capsys, submit_main, "--sample", "--scaling", "unit", "--epochs", "2", "--out", out)
    assert completed.returncode == 0, completed.stderr
    run_dir = next((tmp_path / "runs").iterdir())
    completed = predict(capsys, run_dir, "--out", tmp_path / "again.csv")
    assert completed.returncode == 0, completed.stderr
    assert (tmp_path / "again.csv").read_bytes() == out.read_bytes()
    assert "of the run's own test file" in completed.stdout
    record = DerivedRecord.from_json(tmp_path / "again.json")
    assert (
        record.test.path is None
        and record.test.sha256 == RunRecord.from_json(out.with_suffix(".json")).inputs.test.sha256
    )
    # Made again with other library versions, the sample would differ: refused, not predicted.
    copy = tmp_path / "copy" / run_dir.name
    shutil.copytree(run_dir, copy)
    recorded = json.loads((copy / "record.json").read_text())
    recorded["inputs"]["test"]["sha256"] = "0" * 64
    (copy / "record.json").write_text(json.dumps(recorded))
    refused = predict(capsys, copy, "--out", tmp_path / "refused.csv")
    assert_one_line_error(refused, 2, "the embedded sample made again is not the one the run predicted")
    assert not (tmp_path / "refused.csv").exists()


@pytest.mark.slow
def test_predict_in_its_own_process_loads_a_cnn_starts_quietly_and_writes_the_same_bytes(runs, tmp_path):
    data_dir, results = runs
    result = results["cnn"]
    out = tmp_path / "again.csv"
    completed = run_command("-m", "src.predict", result.run_dir, "--data", data_dir, "--out", out)
    assert completed.returncode == 0, completed.stderr
    assert completed.stderr == "", completed.stderr
    assert out.read_bytes() == (result.run_dir / "submission.csv").read_bytes()
    assert f"wrote {out}" in completed.stdout


def damage_missing_manifest(run_dir, data_dir):
    (run_dir / MEMBERS_MANIFEST).unlink()


def damage_missing_model(run_dir, data_dir):
    (run_dir / "members" / "member-2.keras").unlink()


def damage_altered_model(run_dir, data_dir):
    path = run_dir / "members" / "member-1.keras"
    path.write_bytes(path.read_bytes()[:-10])


def damage_incomplete(run_dir, data_dir):
    (run_dir / INCOMPLETE_MARKER).touch()


def damage_manifest_elsewhere(run_dir, data_dir):
    manifest = json.loads((run_dir / MEMBERS_MANIFEST).read_text())
    manifest["members"][0]["file"] = "../../data/test.csv"
    (run_dir / MEMBERS_MANIFEST).write_text(json.dumps(manifest))


def damage_test_shape(run_dir, data_dir):
    # A train.csv in test.csv's place: a label column too many.
    shutil.copyfile(data_dir / "train.csv", data_dir / "test.csv")


def damage_test_columns(run_dir, data_dir):
    lines = (data_dir / "test.csv").read_text().splitlines()
    (data_dir / "test.csv").write_text("\n".join(",".join(line.split(",")[:-1]) for line in lines) + "\n")


@pytest.mark.parametrize(
    ("damage", "fragments"),
    [
        (damage_missing_manifest, ("no saved models", MEMBERS_MANIFEST)),
        (damage_missing_model, ("member-2.keras", "saved model is missing")),
        (damage_altered_model, ("member-1.keras", "saved model is damaged")),
        (damage_incomplete, ("incomplete run folder",)),
        (damage_manifest_elsewhere, (MEMBERS_MANIFEST, "expected the files members/member-1.keras")),
        (damage_test_shape, ("test.csv", "line 1")),
        (damage_test_columns, ("test.csv", "line 1")),
    ],
)
def test_a_damaged_run_folder_or_test_file_is_one_line(runs, tmp_path, damage, fragments, capsys):
    data_dir, results = runs
    run_dir = shutil.copytree(results["stacked"].run_dir, tmp_path / "run")
    test_dir = shutil.copytree(data_dir, tmp_path / "data")
    damage(run_dir, test_dir)
    out = tmp_path / "out.csv"
    completed = predict(capsys, run_dir, "--data", test_dir, "--out", out)
    assert_one_line_error(completed, 2, *fragments)
    assert not out.exists() and not out.with_suffix(".json").exists()


def test_a_model_file_keras_cannot_read_is_one_line(runs, tmp_path, capsys):
    data_dir, results = runs
    run_dir = shutil.copytree(results["stacked"].run_dir, tmp_path / "run")
    model = run_dir / "members" / "member-1.keras"
    model.write_bytes(b"not a zip file at all")
    # A manifest that matches the damaged file: only loading it can tell.
    manifest = json.loads((run_dir / MEMBERS_MANIFEST).read_text())
    manifest["members"][0]["sha256"] = sha256(model)
    (run_dir / MEMBERS_MANIFEST).write_text(json.dumps(manifest))
    out = tmp_path / "out.csv"
    completed = predict(capsys, run_dir, "--data", data_dir, "--out", out)
    assert_one_line_error(completed, 2, "member-1.keras", "cannot load the saved model")
    assert not out.exists()


@pytest.mark.parametrize("name", ["train.csv", "other run's model", "other run's probabilities"])
def test_out_never_replaces_the_training_file_or_another_run(runs, name, capsys):
    data_dir, results = runs
    target = {
        "train.csv": data_dir / "train.csv",
        "other run's model": results["plain"].run_dir / "members" / "member-1.keras",
        "other run's probabilities": results["plain"].run_dir / "test_probabilities.npy",
    }[name]
    before = target.read_bytes()
    completed = predict(capsys, results["stacked"].run_dir, "--data", data_dir, "--out", target)
    assert_one_line_error(completed, 2, "is an input file" if name == "train.csv" else "is inside the run folder")
    assert target.read_bytes() == before


@pytest.mark.parametrize("case", ["missing folder", "out in the run folder", "out is test.csv"])
def test_bad_paths_are_one_line(runs, tmp_path, case, capsys):
    data_dir, results = runs
    run_dir = results["stacked"].run_dir
    test_copy = tmp_path / "data"
    shutil.copytree(data_dir, test_copy)
    before = (test_copy / "test.csv").read_bytes()
    arguments, fragment = {
        "missing folder": ((tmp_path / "nowhere", "--out", tmp_path / "out.csv"), "not a folder"),
        "out in the run folder": ((run_dir, "--out", run_dir / "again.csv"), "inside the run folder"),
        "out is test.csv": ((run_dir, "--out", test_copy / "test.csv"), "is an input file"),
    }[case]
    completed = predict(capsys, *arguments, "--data", test_copy)
    assert_one_line_error(completed, 2, fragment)
    assert (test_copy / "test.csv").read_bytes() == before
    assert not (run_dir / "again.csv").exists()


@pytest.mark.slow
def test_a_deskewed_run_trains_and_predicts_on_deskewed_images_and_predict_repeats_its_bytes(
    tiny_data, tmp_path, capsys
):
    config = Config(scaling="unit", deskew=True, epochs=2)
    result = run(config, tiny_data, tmp_path / "s.csv", verbose=0, report=False)
    images, _ = read_train(tiny_data / "train.csv")
    test_images = read_test(tiny_data / "test.csv")
    models, members = result.training.models, result.training.members
    # Its held-out rows were scored, and its test rows predicted, from the deskewed images; not the raw ones.
    held_out = held_out_probabilities(members, as_features(images, config))
    for member, values in zip(members, held_out, strict=True):
        np.testing.assert_allclose(values, member.validation_probabilities, atol=1e-6)
    deskewed = predict_probabilities(models, as_features(test_images, config))
    np.testing.assert_allclose(deskewed, result.test_probabilities, atol=1e-6)
    raw = predict_probabilities(models, as_features(test_images, UNIT))
    # On raw images some test rows get other labels, so that `src.predict` repeats the bytes only if it deskews.
    assert (predicted_labels(raw) != predicted_labels(result.test_probabilities)).any()
    completed = predict(capsys, result.run_dir, "--data", tiny_data, "--out", tmp_path / "again.csv")
    assert completed.returncode == 0, completed.stderr
    assert (tmp_path / "again.csv").read_bytes() == (tmp_path / "s.csv").read_bytes()
