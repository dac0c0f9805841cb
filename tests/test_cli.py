"""`python -m src.submit` end to end, as a user runs it."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from src import submit as submit_module
from src.core.cli import MAX_MESSAGE_CHARS, TENSORFLOW_NOISE, Terminated
from src.core.cli import run_command as cli_run_command
from src.core.errors import EXIT_USER, KaggleRefusedError, UserError
from src.core.files import sha256
from src.data.submission import validate_submission
from tests.helpers import (
    REPO_ROOT,
    assert_one_line_error,
    run_main,
    run_module,
    snapshot_files,
    start_command,
    without_low_accuracy_warning,
    write_previous_pair,
)

FAST = ["--epochs", "3", "--verbose", "0"]
# What TensorFlow prints on its own when left to: none of it may reach a user.
# Every command line in the package, by module, each with a `main(argv)`.
COMMAND_MODULES = (
    "src.submit",
    "src.upload",
    "src.predict",
    "src.blend",
    "src.report",
    "src.ledger",
    "src.kernel",
    "src.kaggle.__main__",
)
LIBRARY_NOISE = ("cuInit", "NodeDef", "retracing", "absl", "XLA", "oneDNN", "cuda", "I0000", "WARNING")


def submit_here(capsys, *args):
    """`python -m src.submit ARGS` in this process: where the process boundary adds nothing to the check."""
    return run_main(capsys, submit_module.main, *args)


def assert_only_error_line(result, *fragments):
    """Exit 2 with one `error:` line, and nothing else on stderr: the problem was found before training."""
    assert_one_line_error(result, 2, *fragments)
    assert len(result.stderr.splitlines()) == 1, result.stderr


def start_submit(*args) -> subprocess.Popen:
    """`python -m src.submit` in the background, its output line by line as it comes."""
    return start_command("-m", "src.submit", *args)


def wait_for_output(process: subprocess.Popen, text: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while text not in process.stdout.readline():
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            pytest.fail(f"never printed {text!r}")


def files_under(folder: Path) -> list[str]:
    return sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))


@pytest.mark.slow
def test_single_model_run_writes_submission_and_record(tiny_data, tmp_path, capsys):
    out = tmp_path / "submissions" / "submission.csv"
    result = submit_here(capsys, "--data", tiny_data, "--out", out, *FAST)
    assert result.returncode == 0, result.stderr
    assert "single model; validation accuracy" in result.stdout
    assert f"wrote {out}" in result.stdout
    assert len(validate_submission(out, n_rows=20)) == 20

    record = json.loads(out.with_suffix(".json").read_text())
    assert record["config"]["epochs"] == 3 and record["config"]["hidden_units"] == [20, 15]
    assert record["inputs"]["train"]["sha256"] == sha256(tiny_data / "train.csv")
    assert record["inputs"]["test"]["rows"] == 20
    assert record["validation"]["members"][0]["validation_rows"] == 16  # the last 20% of 80 rows
    assert set(record["timings"]) == {"load", "train", "predict", "write", "total"}
    assert record["versions"]["tensorflow"]
    # The per-class table is printed, and the run keeps its own folder with the report.
    assert "per class, on the held-out rows:" in result.stdout
    run_dir = out.parent / "runs" / Path(record["run_dir"]).name
    assert f"report: {run_dir / 'report.html'}" in result.stdout
    assert (run_dir / "submission.csv").read_bytes() == out.read_bytes()


@pytest.mark.slow
def test_fold_ensemble_run(tiny_data, tmp_path, capsys):
    out = tmp_path / "submission.csv"
    result = submit_here(capsys, "--data", tiny_data, "--out", out, "--folds", "3", "--epochs", "3", "--verbose", "2")
    assert result.returncode == 0, result.stderr
    assert "Epoch 3/3" in result.stdout
    for fold in (1, 2, 3):
        assert f"fold {fold}/3: validation accuracy" in result.stdout
    assert "3-fold ensemble; out-of-fold accuracy" in result.stdout
    validate_submission(out, n_rows=20)
    record = json.loads(out.with_suffix(".json").read_text())
    assert record["validation"]["scheme"] == "stratified 3-fold"
    assert sum(member["validation_rows"] for member in record["validation"]["members"]) == 80


@pytest.mark.slow
def test_same_seed_gives_the_same_bytes_and_prints_no_library_noise(tiny_data, tmp_path):
    outs = [tmp_path / "a" / "a.csv", tmp_path / "b" / "b.csv"]
    flags = ["--folds", "2", "--epochs", "3", "--verbose", "2"]
    # Side by side, a new process and this one, where other tests have trained before: the bytes may depend
    # neither on what else the machine is doing nor on what the process did before.
    process = start_submit("--data", tiny_data, "--out", outs[0], *flags)
    here = run_module("src.submit", "--data", tiny_data, "--out", outs[1], *flags)
    assert here.returncode == 0 and without_low_accuracy_warning(here.stderr) == [], here.stderr
    stdout, stderr = process.communicate(timeout=600)
    assert process.returncode == 0, stderr
    # A successful run prints only the project's own lines: Keras' epoch lines, and nothing from the libraries.
    assert without_low_accuracy_warning(stderr) == []
    assert "Epoch 3/3" in stdout
    assert not [noise for noise in LIBRARY_NOISE if noise in stdout], stdout
    assert outs[0].read_bytes() == outs[1].read_bytes()
    records = [json.loads(out.with_suffix(".json").read_text()) for out in outs]
    accuracies = [[member["validation_accuracy"] for member in r["validation"]["members"]] for r in records]
    assert accuracies[0] == accuracies[1]
    assert records[0]["command"] == f"python -m src.submit --data {tiny_data} --out {outs[0]} {' '.join(flags)}"


@pytest.mark.slow
def test_sample_runs_without_any_download(tmp_path, capsys):
    out = tmp_path / "sample.csv"
    result = submit_here(capsys, "--sample", "--out", out, "--verbose", "0", "--scaling", "unit")
    assert result.returncode == 0, result.stderr
    # With --verbose 0, only the project's own lines: what was loaded and the closing summary.
    assert result.stderr == ""
    assert not [noise for noise in LIBRARY_NOISE if noise in result.stdout], result.stdout
    assert "1500 labelled rows, 297 test rows" in result.stdout
    validate_submission(out, n_rows=297)
    accuracy = json.loads(out.with_suffix(".json").read_text())["validation"]["accuracy"]
    assert accuracy >= 0.85


def test_missing_data_is_a_one_line_error(tmp_path, capsys):
    result = submit_here(capsys, "--data", tmp_path / "nowhere", "--out", tmp_path / "s.csv")
    assert_only_error_line(result, "train.csv: file not found", "scripts/download.sh", "--sample")


def test_bad_input_keeps_the_previous_submission(tiny_data, tmp_path, capsys):
    out = tmp_path / "submission.csv"
    out.write_text("ImageId,Label\n1,7\n")
    lines = (tiny_data / "test.csv").read_text().splitlines()
    lines[5] = lines[5].replace(",", ",300,", 1).rsplit(",", 1)[0]
    (tiny_data / "test.csv").write_text("\n".join(lines) + "\n")
    result = submit_here(capsys, "--data", tiny_data, "--out", out, *FAST)
    assert_only_error_line(result, "test.csv: line 6, column pixel1: expected a pixel 0..255, found 300")
    assert out.read_text() == "ImageId,Label\n1,7\n"
    assert not out.with_suffix(".json").exists()


def test_bad_flag_is_a_one_line_error(tiny_data, tmp_path, capsys):
    def submit_with(*flags):
        return submit_here(capsys, "--data", tiny_data, *flags)

    assert_only_error_line(submit_with("--epochs", "0"), "argument --epochs: value must be in 1..10000, got 0")
    assert_only_error_line(submit_with("--seed", "-1"), "argument --seed: value must be in 0..4294967295, got -1")
    assert_only_error_line(submit_with("--out", tmp_path / "s.json"), "must not be a .json file")
    assert_only_error_line(submit_with("--out", tmp_path), "is a folder")
    assert_only_error_line(submit_with("--folds", "9", *FAST), "9 folds need at least 9 rows")


def test_the_samples_labels_are_named_not_their_temporary_folder(tmp_path, capsys):
    result = submit_here(capsys, "--sample", "--folds", "1000", "--out", tmp_path / "s.csv")
    assert_only_error_line(result, "the --sample data's train.csv: 1000 folds need at least 1000 rows of every digit")
    assert "digit-sample-" not in result.stderr


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--learning-rate", "nan"], "argument --learning-rate: value must be a finite number, got nan"),
        (["--learning-rate", "inf"], "argument --learning-rate: value must be a finite number, got inf"),
        (["--l2=-inf"], "argument --l2: value must be a finite number, got -inf"),
        (["--l2=-1e-3"], "argument --l2: value must be >= 0, got -0.001"),
        (["--batch-size", "-5"], "argument --batch-size: value must be in 1..65536, got -5"),
        (
            ["--batch-size", "99999999999999999999"],
            "argument --batch-size: value must be in 1..65536, got 99999999999999999999",
        ),
        (["--epochs", "100000000000000000000"], "argument --epochs: value must be in 1..10000"),
        (["--validation-split", "1"], "argument --validation-split: value must be in [0, 1), got 1.0"),
        (["--validation-split", "0.99"], "validation_split 0.99 leaves no training row of 80"),
        (["--hidden-units", "20000,20000", "--folds", "5"], "GiB of memory is available"),
        (
            ["--hidden-units", "1000000,1000000"],
            "argument --hidden-units: value items must be in 1..65536, got 1000000",
        ),
        (["--family", "cnn", "--scaling", "unit", "--filters", "2000,2000"], "G multiply-adds per image"),
        (
            ["--family", "cnn", "--scaling", "unit", "--downsample", "pool", "--filters", "1,1,1,1,1,1"],
            "the image shrinks to nothing at block5_pool",
        ),
        (["--epochs", "2.5"], "argument --epochs: invalid int value: '2.5'"),
        (["--hidden-units", "20,x"], "expected comma-separated integers"),
        (["--scaling", "rgb"], "argument --scaling: invalid choice: 'rgb'"),
        (["--augment-rotation", "400"], "argument --augment-rotation: value must be in [0, 180], got 400.0"),
        (["--filters", "0,3"], "argument --filters: value items must be in 1..4096, got 0"),
        (["--preset"], "argument --preset: expected one argument"),
        (
            ["--filters", "32,64"],
            "--filters is read only with --family cnn, and this run has --family dense: "
            "use a cnn preset (--preset cnn-fast) or --family cnn --scaling unit, or leave --filters out",
        ),
        (["--preset", "cnn-fast", "--no-bag-holdout"], "--no-bag-holdout is read only with --members 2 or more"),
        (["--sample"], "--sample trains on the embedded sample, so --data"),
    ],
)
def test_bad_setting_is_refused_before_anything_is_written(tiny_data, tmp_path, flags, message, capsys):
    out = tmp_path / "submission.csv"
    out.write_text("ImageId,Label\n1,7\n")
    before = files_under(tmp_path)
    assert_only_error_line(submit_here(capsys, "--data", tiny_data, "--out", out, *flags), message)
    assert out.read_text() == "ImageId,Label\n1,7\n"
    assert files_under(tmp_path) == before


@pytest.mark.slow
def test_ctrl_c_while_tensorflow_imports_is_a_clean_exit(tiny_data, tmp_path):
    process = start_submit("--data", tiny_data, "--out", tmp_path / "s.csv", "--epochs", "1")
    maps = Path(f"/proc/{process.pid}/maps")
    deadline = time.monotonic() + 120
    # TensorFlow's shared library is mapped as soon as its import starts, seconds before it ends.
    while "tensorflow" not in maps.read_text():
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            pytest.fail("TensorFlow never started loading")
        time.sleep(0.01)
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert stderr == f"interrupted: {tmp_path / 's.csv'} was left as it was\n"
    assert stdout == "" and not (tmp_path / "s.csv").exists()


@pytest.mark.slow
def test_a_closed_output_stops_the_run_with_one_line_and_keeps_the_previous_submission(tmp_path):
    out = write_previous_pair(tmp_path / "out")
    before = snapshot_files(tmp_path)
    process = start_submit("--sample", "--scaling", "unit", "--out", out, "--no-report")
    wait_for_output(process, "Epoch 1/")
    process.stdout.close()  # as `| head -1` does once it has its line
    stderr = process.stderr.read()
    process.wait(timeout=120)
    assert process.returncode == 141, stderr
    assert stderr == f"stopped (output closed): {out} was left as it was\n"
    assert snapshot_files(tmp_path) == before


def test_ctrl_c_while_the_summary_prints_says_the_submission_was_written(monkeypatch, tmp_path, capsys):
    # The pipeline and TensorFlow stand in as fakes: the run writes the submission, then Ctrl-C comes.
    out = tmp_path / "s.csv"

    def run(config, data_dir, out, **options):
        out.write_text("ImageId,Label\n")
        return SimpleNamespace()

    def interrupted_summary(result, config):
        raise KeyboardInterrupt

    monkeypatch.setitem(sys.modules, "src.pipeline.run", SimpleNamespace(run=run))
    monkeypatch.setattr(submit_module, "import_tensorflow", lambda: None)
    monkeypatch.setattr(submit_module, "summarize", interrupted_summary)
    assert submit_module.main(["--sample", "--out", str(out)]) == 130
    assert capsys.readouterr().err == f"interrupted: after writing {out} and its record\n"


def test_help_lists_every_setting(capsys):
    with pytest.raises(SystemExit) as exited:  # argparse's --help ends the command, as it ends its process
        submit_module.main(["--help"])
    assert exited.value.code == 0
    result = capsys.readouterr()
    for flag in (
        "--data", "--out", "--folds", "--epochs", "--seed", "--sample", "--hidden-units", "--l2", "--learning-rate",
        "--batch-size", "--validation-split", "--scaling", "--preset", "--plain", "--verbose", "--no-report",
        "--submit", "--message",
    ):  # fmt: skip
        assert flag in result.out
    # A list is one comma-separated word: the usage does not invite `--filters 16 64`, which is refused.
    usage = " ".join(result.out.split("options:")[0].split())
    assert "[--hidden-units A,B,...] [--l2 X] [--filters A,B,...]" in usage


def boundary_of(failure: BaseException):
    def main(argv):
        raise failure

    return main


@pytest.mark.parametrize(
    "failure, exit_code, line",
    [
        (UserError("bad thing"), 2, "error: bad thing"),
        (KaggleRefusedError("rules not accepted"), 4, "error: rules not accepted"),
        (IsADirectoryError(21, "Is a directory", "out/s.csv"), 2, "error: out/s.csv: Is a directory"),
        (KeyboardInterrupt(), 130, "interrupted: nothing was finished"),
        # stdout is no closed pipe here: another pipe broke, which is the file system's or a library's error.
        (BrokenPipeError(32, "Broken pipe"), 2, "error: [Errno 32] Broken pipe"),
        (Terminated("s.csv was left as it was"), 143, "terminated: s.csv was left as it was"),
        (UserError("x" * 5000), 2, "error: " + "x" * (MAX_MESSAGE_CHARS - len("error: ") - 3) + "..."),
    ],
)
def test_the_boundary_ends_each_failure_with_its_code_and_one_line(capsys, failure, exit_code, line):
    assert cli_run_command(boundary_of(failure)) == exit_code
    captured = capsys.readouterr()
    assert captured.err == line + "\n" and captured.out == ""


def test_a_command_started_without_stdout_or_stderr_runs_and_fails_quietly(monkeypatch):
    monkeypatch.setattr(sys, "stdout", None)  # as Python sets them under `>&- 2>&-`
    monkeypatch.setattr(sys, "stderr", None)
    # print writes nothing where there is no stdout; Keras' progress bar writes to it itself.
    assert cli_run_command(lambda argv: print("nowhere") or sys.stdout.write("a progress bar") and 0) == 0
    assert cli_run_command(boundary_of(UserError("bad thing"))) == EXIT_USER


def test_output_left_in_the_buffer_for_a_closed_pipe_says_the_command_finished(monkeypatch, capsys):
    reading, writing = os.pipe()
    os.close(reading)
    pipe = open(writing, "w", buffering=1 << 16)  # a pipe is block-buffered: the line waits for the flush
    monkeypatch.setattr(sys, "stdout", pipe)
    try:
        assert cli_run_command(lambda argv: print("a line nobody reads") or 0) == 141
    finally:
        monkeypatch.undo()
        with contextlib.suppress(OSError):
            pipe.close()
    assert capsys.readouterr().err == (
        "stopped (output closed): the command finished; the rest of its output was not read\n"
    )


def test_sigterm_inside_the_boundary_runs_cleanups_and_exits_143(capsys):
    cleaned = []
    previous = signal.getsignal(signal.SIGTERM)

    def main(argv):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler interrupts this
        finally:
            cleaned.append(True)
        return 0

    assert cli_run_command(main) == 143
    assert cleaned == [True] and capsys.readouterr().err == "terminated: nothing was finished\n"
    assert signal.getsignal(signal.SIGTERM) is previous


def test_tensorflow_noise_pattern_matches_only_its_start_up_lines():
    noise = [
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR",
        "I0000 00:00:1796003010.245378    7338 port.cc:153] oneDNN custom operations are on.",
        "E0000 00:00:1796003015.463651    7338 cuda_platform.cc:52] failed call to cuInit: INTERNAL",
        "To enable the following instructions: AVX2 AVX512F FMA, in other operations, rebuild TensorFlow",
    ]
    assert all(TENSORFLOW_NOISE.match(line) for line in noise)
    assert not TENSORFLOW_NOISE.match("error: data/train.csv: file not found")
    assert not TENSORFLOW_NOISE.match("ImportError: libcudart.so.12: cannot open shared object file")


@pytest.mark.parametrize("module", COMMAND_MODULES)
def test_a_bad_argument_is_one_line_in_every_command_line(module, capsys):
    status = importlib.import_module(module).main(["--no-such-flag"])
    error = capsys.readouterr().err
    assert status == 2 and error.startswith("error: ") and error.count("\n") == 1, error
    assert "--help)" in error, error


def c_locale(utf8_mode: str | None) -> dict[str, str]:
    """This environment under the C locale, PYTHONIOENCODING unset; `utf8_mode` "0" turns Python's UTF-8 mode off."""
    environment = {name: value for name, value in os.environ.items() if name not in ("PYTHONIOENCODING", "PYTHONUTF8")}
    environment |= {"LC_ALL": "C", "LANG": "C", **({"PYTHONUTF8": utf8_mode} if utf8_mode else {})}
    return environment


# Python's default under LC_ALL=C is its UTF-8 mode; with it off (PYTHONUTF8=0) the console is ASCII and strict.
@pytest.mark.parametrize("utf8_mode, shown", [(None, "première 数字"), ("0", "premi\\xe8re \\u6570\\u5b57")])
def test_the_c_locale_prints_non_ascii_paths_and_text_without_failing(utf8_mode, shown, tmp_path):
    from src.runs.ledger import COLUMNS, Row, write_ledger

    folder = tmp_path / "数字é"
    cells = {"kaggle_ref": "7", "local_accuracy": "0.97", "public_score": "0.96", "message": "première 数字"}
    write_ledger(folder / "ledger.csv", [Row(**(dict.fromkeys(COLUMNS, "") | cells))])
    command = [sys.executable, "-m", "src.ledger", "--offline", "--ledger", str(folder / "ledger.csv")]
    result = subprocess.run(command, cwd=REPO_ROOT, env=c_locale(utf8_mode), capture_output=True, timeout=120)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    assert result.stderr == b""
    # The folder's name goes out as the bytes it was given; text the console cannot show, as escapes.
    assert f"wrote {folder / 'ledger.png'}: 1 submissions".encode() in result.stdout
    assert shown.encode() in result.stdout

    (folder / "bad.csv").write_text("not,a,ledger\n")
    command[-1] = str(folder / "bad.csv")
    refused = subprocess.run(command, cwd=REPO_ROOT, env=c_locale(utf8_mode), capture_output=True, timeout=120)
    assert refused.returncode == EXIT_USER and refused.stdout == b""
    assert refused.stderr.startswith(b"error: ") and refused.stderr.count(b"\n") == 1, refused.stderr
