"""`python -m src.kaggle fan-out`: a bag's members (or a k-fold's folds) on several kernels, run for real by the
fake Kaggle, blended.

One story, told once because every kernel trains for real (slow on 2 cores):
a first call times out while the parts run; the second finds part 2 failed
(the fake ran it without the competition's data) and blends and submits
nothing; the third blends part 1 alone, as `--partial` asks; the fourth pushes
part 2 alone again and blends both parts into a submission equal to one local
run with every member; a damaged part's output is then refused. A k-fold's
folds, trained in two parts here, blend into the same submission as one local k-fold.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from src.core.config import PRESETS, Config
from src.core.errors import (
    EXIT_KAGGLE_FAILED,
    EXIT_OUTPUT_CLOSED,
    EXIT_TERMINATED,
    EXIT_TIMED_OUT,
    EXIT_USER,
    UserError,
)
from src.pipeline.fan_out import (
    FETCHED,
    STATE_FILE,
    FanOut,
    Part,
    blend_into,
    check_part,
    check_plan,
    member_ranges,
    new_fan_out,
    resume_or_start,
    save_state,
    summary_lines,
)
from src.runs.folders import load_run
from src.submit import main as submit_main
from tests.fake_kaggle import FAKE_USER, FakeKaggle, assert_no_secret_in_files, kaggle_env, run_with_fake
from tests.helpers import assert_one_line_error, call_main, script_parts, start_command
from tests.synthetic import write_dataset

# A small dense network: its members train side by side in the compiled loop, in seconds. That a part of a
# bag trained with Keras' fit equals the same members of the whole bag is checked below, without kernels.
NETWORK = ["--hidden-units", "16,8", "--scaling", "unit", "--batch-size", "16", "--epochs", "1", "--seed", "3"]
FLAGS = [*NETWORK, "--members", "4"]
FOLD_FLAGS = [*NETWORK, "--folds", "4"]
SLUG = "digit-recognizer-dense-network-part-{}-of-2"


def fan_out(fake, root: Path, *extra, flags=FLAGS, out="out"):
    return run_with_fake(
        *("-m", "src.kaggle", "fan-out", "--parts", "2", *flags, "--kernel-dir", root / "kernel"),
        *("--out", root / out / "submission.csv", *extra),
        url=fake.url,
        home=root / "home",
        extra={"DIGIT_RECOGNIZER_POLL_SECONDS": "0.5"},
    )


def pushes(fake, number: int) -> int:
    slug = SLUG.format(number)
    return sum(1 for request in fake.calls("SaveKernel") if request.json()["slug"].endswith("/" + slug))


def part_runs(root: Path, number: int) -> list[Path]:
    return sorted((root / "kernel" / f"part-{number}" / "output").glob("*/runs/*"))


def train_locally(root: Path, flags: list) -> Path:
    """The small data set in `root/data`, and one local run of every model of `flags` into `root/local`."""
    data = write_dataset(root / "data")
    out = root / "local" / "submission.csv"
    local = call_main(submit_main, "--data", data, "--out", out, *flags, "--verbose", "0", "--no-report")
    assert local.returncode == 0, local.stderr
    return data


@pytest.fixture(scope="module")
def story(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("fan-out")
    data = train_locally(root, FLAGS)
    told = {"root": root}
    with FakeKaggle(run_kernels=data, failing_runs={SLUG.format(2): 1}) as fake:
        told["timed_out"] = fan_out(fake, root, "--timeout", "1")
        told["pushes_after_time_out"] = (pushes(fake, 1), pushes(fake, 2))
        told["state_after_time_out"] = json.loads((root / "kernel" / STATE_FILE).read_text())
        told["failed"] = fan_out(fake, root, "--timeout", "300", "--submit", "-m", "fan-out")
        told["pushes_after_failure"] = (pushes(fake, 1), pushes(fake, 2))
        told["out_after_failure"] = (root / "out").exists()
        told["submissions_after_failure"] = len(fake.calls("StartSubmissionUpload") + fake.calls("CreateSubmission"))
        told["partial"] = fan_out(fake, root, "--timeout", "300", "--partial", out="partial")
        told["pushes_after_partial"] = (pushes(fake, 1), pushes(fake, 2))
        told["retried"] = fan_out(fake, root, "--timeout", "300", "--retry-failed")
        told["pushes_after_retry"] = (pushes(fake, 1), pushes(fake, 2))
        told["blend"] = (root / "out" / "submission.csv").read_bytes()
        told["part_probabilities"] = [np.load(part_runs(root, n)[-1] / "test_probabilities.npy") for n in (1, 2)]
        told["again"] = fan_out(fake, root, "--timeout", "300")
        told["pushes_in_the_end"] = (pushes(fake, 1), pushes(fake, 2))
        # A part's fetched output damaged: the next blend refuses it and leaves the last one as it was.
        np.save(part_runs(root, 1)[-1] / "test_probabilities.npy", np.zeros((3, 10), np.float32))
        told["damaged"] = fan_out(fake, root, "--timeout", "300")
        told["blend_after_damage"] = (root / "out" / "submission.csv").read_bytes()
    return told


@pytest.mark.slow
def test_a_first_call_times_out_and_says_how_to_resume(story):
    result = story["timed_out"]
    line = assert_one_line_error(result, EXIT_TIMED_OUT, "not every part finished within 1 s", "run again to resume")
    assert "fan-out --parts 2" in line
    assert story["pushes_after_time_out"] == (1, 1)
    states = [line for line in result.stdout.splitlines() if line.startswith("part 1/2 ")]
    assert states and all(" | part 2/2 " in line for line in states)  # one line per poll, every part's state
    state = story["state_after_time_out"]
    assert [part["version"] for part in state["parts"]] == [1, 1]
    assert state["parts"][0]["state"] in ("queued", "running")  # part 2, run without data, may have failed already


@pytest.mark.slow
def test_a_failed_part_is_reported_with_its_message_and_log_and_nothing_is_blended(story):
    result = story["failed"]
    assert_one_line_error(result, EXIT_KAGGLE_FAILED, "1 of 2 parts cannot be blended", "--retry-failed", "--partial")
    assert "part 2: fake-user/" + SLUG.format(2) + " version 1 failed: Your notebook tried to run" in result.stdout
    assert "no train.csv" in result.stdout  # its log's tail: the script's own error line
    assert story["pushes_after_failure"] == (1, 1)  # resuming pushes nothing again
    assert not story["out_after_failure"]
    assert story["submissions_after_failure"] == 0  # --submit sent nothing


@pytest.mark.slow
def test_partial_blends_the_parts_that_finished_and_its_record_names_the_missing_ones(story):
    result, root = story["partial"], story["root"]
    assert result.returncode == 0, result.stderr
    assert story["pushes_after_partial"] == (1, 1)  # the failed part is not pushed again
    assert "blend of 1 parts (2 of 4 members)" in result.stdout
    assert "warning: parts 2 are missing (--partial)" in result.stdout
    record = json.loads((root / "partial" / "submission.json").read_text())
    assert record["missing_parts"] == [2]
    assert [(p["kernel_id"], p["first_member"], p["last_member"]) for p in record["parts"]] == [
        (f"{FAKE_USER}/{SLUG.format(1)}", 1, 2)
    ]
    # Part 1 alone is its own two members: its kernel's submission and out-of-bag score, unchanged.
    part_run = part_runs(root, 1)[-1]
    part_output = part_run.parent.parent
    assert (root / "partial" / "submission.csv").read_bytes() == (part_output / "submission.csv").read_bytes()
    part_record = json.loads((part_output / "submission.json").read_text())
    assert record["validation_accuracy"] == pytest.approx(part_record["validation"]["accuracy"], abs=1e-12)
    assert record["validation_rows"] == len(np.load(part_run / "validation_rows.npy"))


@pytest.mark.slow
def test_retry_pushes_only_the_failed_part_and_the_blend_equals_one_local_run(story):
    result, root = story["retried"], story["root"]
    assert result.returncode == 0, result.stderr
    assert story["pushes_after_retry"] == (1, 2)
    assert "part 1: fake-user/" + SLUG.format(1) + " version 1 already pushed" in result.stdout
    assert "part 2: pushed fake-user/" + SLUG.format(2) + " version 2" in result.stdout
    local = root / "local" / "submission.csv"
    # The same members, so the same labels: the submissions are the same bytes.
    assert story["blend"] == local.read_bytes()
    # The same test probabilities: the parts' means weighted by their member counts are the bag's mean,
    # up to float32 rounding (the bag averages 4 arrays at once, the blend 2 means of 2).
    (local_run,) = (root / "local" / "runs").iterdir()
    parts = story["part_probabilities"]
    np.testing.assert_allclose((parts[0] + parts[1]) / 2, np.load(local_run / "test_probabilities.npy"), atol=1e-6)
    local_record = json.loads(local.with_suffix(".json").read_text())
    record = json.loads((root / "out" / "submission.json").read_text())
    assert record["kind"] == "fan-out"
    assert record["validation_accuracy"] == pytest.approx(local_record["validation"]["accuracy"], abs=1e-12)
    assert record["validation_rows"] == len(np.load(local_run / "validation_rows.npy"))
    assert [(p["kernel_id"], p["version"], p["first_member"], p["last_member"]) for p in record["parts"]] == [
        (f"{FAKE_USER}/{SLUG.format(1)}", 1, 1, 2),
        (f"{FAKE_USER}/{SLUG.format(2)}", 2, 3, 4),
    ]
    assert all(part["machine"]["cpus"] and part["machine"]["devices"] for part in record["parts"])
    assert "blend of 2 parts (4 of 4 members)" in result.stdout
    assert_no_secret_in_files(root / "kernel")


@pytest.mark.slow
def test_a_finished_fan_out_run_again_pushes_nothing(story):
    assert story["again"].returncode == 0, story["again"].stderr
    assert story["pushes_in_the_end"] == (1, 2)


@pytest.mark.slow
def test_a_damaged_part_output_is_refused_in_one_line_and_never_blended(story):
    result = story["damaged"]
    assert_one_line_error(result, EXIT_KAGGLE_FAILED, "1 of 2 parts cannot be blended")
    assert "refused: part 1 (" in result.stdout and "damaged output" in result.stdout
    assert story["blend_after_damage"] == story["blend"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("flags", "summary", "scored_rows"),
    [
        # Every row scored once, by the fold that held it out.
        (FOLD_FLAGS, "blend of 2 parts (4 of 4 folds): out-of-fold accuracy", 80),
        # The last 20% of the rows, by all four members: the whole bag's mean, as one local run scores it.
        ([*NETWORK, "--members", "4", "--bag-holdout"], "blend of 2 parts (4 of 4 members): validation accuracy", 16),
    ],
    ids=["k-fold", "bag-holdout"],
)
def test_an_ensembles_parts_blend_into_one_local_run_with_every_model(tmp_path, flags, summary, scored_rows):
    """A 4-model ensemble trained here in one run, and in 2 parts of 2 models each (as 2 kernels would), blended.

    The story above runs the kernels for real; a part's kernel is the same script with other settings,
    and a part trains exactly as the same models of the whole run (`test_a_parts_models_are_the_whole_ensembles`),
    so here the parts train locally and the fan-out's own checks and blend take them as fetched outputs.
    """
    data = train_locally(tmp_path, flags)
    (local_run,) = (tmp_path / "local" / "runs").iterdir()
    config = load_run(local_run)[1].config
    parts = []
    for number, (first, last) in enumerate(member_ranges(4, 2), start=1):
        output = tmp_path / f"part-{number}"
        part_flags = [*flags, "--first-member", first, "--last-member", last, "--verbose", "0", "--no-report"]
        trained = call_main(submit_main, "--data", data, "--out", output / "submission.csv", *part_flags)
        assert trained.returncode == 0, trained.stderr
        kernel_id = f"{FAKE_USER}/{SLUG.format(number)}"
        parts.append(Part(number, first, last, kernel_id, version=1, state=FETCHED, output=str(output)))
    fan_out = FanOut(config, "Digit Recognizer dense network", gpu=False, parts=parts)
    out = tmp_path / "out" / "submission.csv"
    record = blend_into(out, fan_out, [check_part(fan_out, part) for part in parts])

    assert summary in summary_lines(record, out)[0]
    local = tmp_path / "local" / "submission.csv"
    assert out.read_bytes() == local.read_bytes()
    probabilities = [
        np.load(next((tmp_path / f"part-{n}" / "runs").iterdir()) / "test_probabilities.npy") for n in (1, 2)
    ]
    np.testing.assert_allclose(sum(probabilities) / 2, np.load(local_run / "test_probabilities.npy"), atol=1e-6)
    local_record = json.loads(local.with_suffix(".json").read_text())
    assert record.validation_accuracy == pytest.approx(local_record["validation"]["accuracy"], abs=1e-12)
    assert record.validation_rows == len(np.load(local_run / "validation_rows.npy")) == scored_rows
    assert [(p.kernel_id, p.first_member, p.last_member) for p in record.parts] == [
        (f"{FAKE_USER}/{SLUG.format(1)}", 1, 2),
        (f"{FAKE_USER}/{SLUG.format(2)}", 3, 4),
    ]
    assert record.missing_parts == []


def test_parts_share_the_members_evenly_and_in_order():
    assert member_ranges(15, 4) == [(1, 4), (5, 8), (9, 12), (13, 15)]
    assert member_ranges(4, 2) == [(1, 2), (3, 4)]
    assert member_ranges(3, 3) == [(1, 1), (2, 2), (3, 3)]


@pytest.mark.parametrize(
    ("config", "parts", "words"),
    [
        (Config(folds=3), 4, r"--parts must be in 1\.\.3 \(one fold per part"),
        (Config(), 2, "fan-out splits a bag's members or a k-fold's folds"),
        (Config(members=4), 5, "--parts must be in 1..4"),
        (Config(members=4, first_member=2), 2, "drop --first-member"),
        (PRESETS["cnn-bag"].replace(pseudo_label=0.85), 2, "which no part has: add --pseudo-label 0 to fan it out"),
    ],
)
def test_plans_that_cannot_be_split_are_refused(config, parts, words):
    with pytest.raises(UserError, match=words):
        check_plan(config, parts)


def test_a_fan_out_resumes_with_the_settings_it_reads_and_no_other(tmp_path):
    # Begun with `--validation-split 0.2`, which a bag without --bag-holdout does not read (now refused).
    bag = PRESETS["cnn-bag"]
    begun = new_fan_out(bag.replace(validation_split=0.2), 2, "me", "bag", gpu=False)
    begun.parts[0].state = "running"
    save_state(tmp_path, begun)
    kept = resume_or_start(tmp_path, new_fan_out(bag, 2, "me", "bag", gpu=False))
    assert kept.config == begun.config and kept.parts[0].state == "running"  # the kept state, unread flag and all
    for other in (bag.replace(bag_share=0.8), bag.replace(members=4)):
        with pytest.raises(UserError, match="holds a fan-out of other settings or parts"):
            resume_or_start(tmp_path, new_fan_out(other, 2, "me", "bag", gpu=False))


def test_a_member_range_outside_the_bag_is_refused():
    with pytest.raises(UserError, match="within 1..4"):
        Config(members=4, first_member=3, last_member=2)
    with pytest.raises(UserError, match="need --members N >= 2"):
        Config(first_member=2)


def test_fan_out_refuses_bad_flags_before_anything_is_sent(tmp_path):
    with FakeKaggle() as fake:
        result = run_with_fake(
            *("-m", "src.kaggle", "fan-out", "--parts", "9", *FLAGS, "--kernel-dir", tmp_path / "kernel"),
            url=fake.url,
            home=tmp_path / "home",
        )
        assert_one_line_error(result, EXIT_USER, "--parts must be in 1..4")
        assert not fake.requests
    assert not (tmp_path / "kernel").exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("stop", "status", "verb"),
    [("sigterm", EXIT_TERMINATED, "terminated"), ("closed-output", EXIT_OUTPUT_CLOSED, "stopped (output closed)")],
)
def test_a_fan_out_stopped_while_its_parts_run_says_how_to_resume_with_its_own_exit_code(tmp_path, stop, status, verb):
    with FakeKaggle(kernel_states=["RUNNING"]) as fake:
        env = {**kaggle_env(os.environ, fake.url, tmp_path / "home"), "DIGIT_RECOGNIZER_POLL_SECONDS": "0.2"}
        process = start_command(
            *("-m", "src.kaggle", "fan-out", "--parts", "2", *FLAGS, "--kernel-dir", tmp_path / "kernel"),
            *("--out", tmp_path / "out" / "submission.csv"),
            env=env,
        )
        deadline = time.monotonic() + 120
        while len(fake.calls("GetKernelSessionStatus")) < 4 and time.monotonic() < deadline:
            time.sleep(0.05)
        if stop == "sigterm":
            process.send_signal(signal.SIGTERM)
        else:
            process.stdout.close()  # the next progress line meets the closed pipe
        stderr = process.stderr.read()
        process.wait(timeout=120)
    assert process.returncode == status, stderr
    assert stderr.startswith(f"{verb}: the parts keep running on Kaggle; resume with: python -m src.kaggle fan-out")
    assert len(stderr.splitlines()) == 1, stderr


def test_an_out_that_is_not_a_submission_is_refused_before_any_push(tmp_path):
    notes = tmp_path / "out" / "submission.csv"
    notes.parent.mkdir()
    notes.write_text("my notes\n")
    with FakeKaggle() as fake:
        result = fan_out(fake, tmp_path)
        assert_one_line_error(result, EXIT_USER, f"{notes}: is not a submission")
        assert not fake.calls("SaveKernel")
    assert notes.read_text() == "my notes\n"


def test_a_gpu_plan_beyond_the_quota_left_is_refused_before_any_push(tmp_path):
    with FakeKaggle(gpu_quota=(29.5, 30.0)) as fake:
        result = run_with_fake(
            *("-m", "src.kaggle", "fan-out", "--parts", "2", "--preset", "cnn-ensemble"),
            *("--kernel-dir", tmp_path / "kernel"),
            url=fake.url,
            home=tmp_path / "home",
        )
        assert_one_line_error(result, EXIT_USER, "GPU hours but 0.50 are left", "fewer --members")
        assert "2 part(s) x about" in result.stdout and "assumed" in result.stdout
        assert not fake.calls("SaveKernel")


# A small dense network; batches of 16, so that each member's shuffling counts.
SMALL = dict(hidden_units=(16, 8), scaling="unit", batch_size=16)


@pytest.mark.slow
@pytest.mark.parametrize(
    "settings",
    [
        # The compiled loop, every member at once.
        dict(**SMALL, members=4),
        dict(**SMALL, folds=4),
        # Keras' fit (`plain`), one by one: three members, the part being the last two.
        dict(**SMALL, plain=True, members=3),
        dict(**SMALL, plain=True, folds=3),
    ],
    ids=["together-bag", "together-folds", "fit-bag", "fit-folds"],
)
def test_a_parts_models_are_the_whole_ensembles(settings):
    from src.training.prediction import predict_probabilities
    from src.training.trainer import train
    from tests.synthetic import make_arrays

    images, labels, test = make_arrays(n_per_class=8, n_test=20)
    config = Config(**settings, epochs=2, seed=5)
    whole = train(config, images, labels, verbose=0)
    last = max(config.members, config.folds)
    part = train(dataclasses.replace(config, first_member=last - 1, last_member=last), images, labels, verbose=0)
    assert len(part.members) == 2
    same_members = whole.members[last - 2 :]
    assert [member.seed for member in part.members] == [member.seed for member in same_members]
    for ours, theirs in zip(part.members, same_members, strict=True):
        np.testing.assert_array_equal(ours.validation_rows, theirs.validation_rows)
        np.testing.assert_array_equal(ours.train_rows, theirs.train_rows)
    features = test.astype(np.float32) / 255
    # The compiled loop trains the members side by side: the same numbers up to float32 rounding.
    np.testing.assert_allclose(
        predict_probabilities(part.models, features),
        predict_probabilities([member.model for member in same_members], features),
        atol=1e-6,
    )


def test_a_k_folds_fan_out_pushes_each_part_with_its_folds(tmp_path):
    # Kernels not run here (see the story above for that): each part is planned from the flags, built and pushed
    # with the whole k-fold's settings and its own folds; their empty outputs are then refused, not blended.
    with FakeKaggle() as fake:
        result = fan_out(fake, tmp_path, "--timeout", "30", flags=FOLD_FLAGS)
        pushed = [request.json() for request in fake.calls("SaveKernel")]
    assert_one_line_error(result, EXIT_KAGGLE_FAILED, "2 of 2 parts cannot be blended")
    settings = [Config(**script_parts(push["text"])[0]) for push in sorted(pushed, key=lambda push: push["slug"])]
    assert [(s.folds, s.first_member, s.last_member) for s in settings] == [(4, 1, 2), (4, 3, 4)]
    assert settings[0].replace(first_member=3, last_member=4) == settings[1]  # every other setting the same
    assert settings[0].hidden_units == (16, 8) and settings[0].seed == 3
    assert not (tmp_path / "out").exists()
