"""Output safety, as a user meets it: no output replaces an input or a file it should not, and a
failed run leaves the previous submission and its record byte for byte as they were."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from src.core.errors import UserError
from src.core.files import sha256
from src.data.submission import validate_submission
from src.runs.outputs import check_pair, plan_outputs, prepared_pair
from src.submit import main as submit_main
from tests.fake_kaggle import FakeKaggle, run_with_fake
from tests.helpers import assert_one_line_error, run_main, snapshot_files, write_previous_pair

ONE_EPOCH = ["--epochs", "1", "--verbose", "0", "--no-report"]


@pytest.fixture
def submit(capsys):
    """`python -m src.submit ARGS` in this process: the process boundary adds nothing to these checks."""
    return lambda *args: run_main(capsys, submit_main, *args)


def assert_refused_before_training(result, *fragments):
    """Exit 2, one `error:` line and nothing else, not even a line of training: refused before training."""
    assert_one_line_error(result, 2, *fragments)
    assert len(result.stderr.splitlines()) == 1 and result.stdout == "", result.stderr


@pytest.fixture
def previous(tmp_path):
    """The previous run's submission and record in `tmp_path/out`."""
    return write_previous_pair(tmp_path / "out")


def make_link(kind: str, link: Path, target: Path) -> Path:
    (os.symlink if kind == "symbolic" else os.link)(target, link)
    return link


@pytest.mark.parametrize("kind", ["the same name", "symbolic", "hard"])
# sample_submission.csv is not read, but it is one of the competition's files beside them: Kaggle's, kept too.
@pytest.mark.parametrize("input_name", ["train.csv", "test.csv", "sample_submission.csv"])
def test_an_output_that_is_an_input_is_refused(tiny_data, tmp_path, kind, input_name, submit):
    (tiny_data / "sample_submission.csv").write_text("ImageId,Label\n1,0\n")
    out = (
        tiny_data / input_name
        if kind == "the same name"
        else make_link(kind, tmp_path / "s.csv", tiny_data / input_name)
    )
    before = snapshot_files(tmp_path)
    result = submit("--data", tiny_data, "--out", out, *ONE_EPOCH)
    file = "one of the competition's files" if input_name == "sample_submission.csv" else "an input file"
    which = f"is {file}" if kind == "the same name" else f"leads to {tiny_data / input_name}, {file} (a {kind} link)"
    assert_refused_before_training(result, f"{out}: {which}", "the submission must never replace an input")
    assert snapshot_files(tmp_path) == before


@pytest.mark.parametrize("linked_side", ["--out", "--data"])
def test_an_output_and_an_input_that_meet_through_a_linked_folder_are_refused(tiny_data, tmp_path, submit, linked_side):
    linked = make_link("symbolic", tmp_path / "linked", tiny_data)
    data, out = (tiny_data, linked / "test.csv") if linked_side == "--out" else (linked, tiny_data / "test.csv")
    before = snapshot_files(tmp_path)
    result = submit("--data", data, "--out", out, *ONE_EPOCH)
    which = (
        f"leads to {tiny_data / 'test.csv'}, an input file (through a linked folder)"
        if linked_side == "--out"
        else f"is an input file, which the run reads through a link as {linked / 'test.csv'}"
    )
    assert_refused_before_training(result, f"{out}: {which}", "must never replace an input")
    assert snapshot_files(tmp_path) == before


@pytest.mark.parametrize("name", ["test.csv", "sample_submission.csv"])
def test_a_sample_run_never_replaces_the_competition_files_in_data(tiny_data, tmp_path, monkeypatch, submit, name):
    # A --sample run reads none of data/, but the files there are the user's download.
    shutil.copytree(tiny_data, tmp_path / "project" / "data")
    (tmp_path / "project" / "data" / "sample_submission.csv").write_text("ImageId,Label\n1,0\n")
    monkeypatch.chdir(tmp_path / "project")
    before = snapshot_files(tmp_path)
    result = submit("--sample", "--out", f"data/{name}", *ONE_EPOCH)
    assert_refused_before_training(result, f"data/{name}: is one of the competition's files")
    assert snapshot_files(tmp_path) == before


# In upper case too: on a disk that ignores case it is the same file.
@pytest.mark.parametrize("name", ["sample_submission.csv", "SAMPLE_SUBMISSION.CSV"])
def test_an_absent_competition_file_keeps_its_place_in_the_data_folder(tiny_data, tmp_path, submit, name):
    assert not (tiny_data / "sample_submission.csv").exists()
    before = snapshot_files(tmp_path)
    result = submit("--data", tiny_data, "--out", tiny_data / name, *ONE_EPOCH)
    assert_refused_before_training(result, "is where the competition's sample_submission.csv belongs")
    assert snapshot_files(tmp_path) == before


def test_the_competition_files_beside_linked_inputs_are_kept(tiny_data, tmp_path, submit):
    (tiny_data / "sample_submission.csv").write_text("ImageId,Label\n1,0\n")
    links = tmp_path / "links"
    links.mkdir()
    for name in ("train.csv", "test.csv"):
        make_link("symbolic", links / name, tiny_data / name)
    before = snapshot_files(tmp_path)
    result = submit("--data", links, "--out", tiny_data / "sample_submission.csv", *ONE_EPOCH)
    assert_refused_before_training(result, "is one of the competition's files")
    assert snapshot_files(tmp_path) == before


def test_a_submission_never_takes_the_record_of_another(tmp_path, tiny_data, submit):
    first = tmp_path / "out" / "foo"
    assert submit("--data", tiny_data, "--out", first, *ONE_EPOCH).returncode == 0
    before = snapshot_files(tmp_path)
    result = submit("--data", tiny_data, "--out", tmp_path / "out" / "foo.csv", *ONE_EPOCH)
    assert_refused_before_training(result, f"{tmp_path / 'out' / 'foo.json'}: is the record of {first}")
    assert snapshot_files(tmp_path) == before
    # Once that submission is gone (renamed with its record, say), its old record may be replaced.
    first.unlink()
    assert submit("--data", tiny_data, "--out", tmp_path / "out" / "foo.csv", *ONE_EPOCH).returncode == 0


def test_a_record_that_leads_to_an_input_is_refused(tiny_data, tmp_path, submit):
    (tmp_path / "out").mkdir()
    record = make_link("symbolic", tmp_path / "out" / "s.json", tiny_data / "train.csv")
    before = snapshot_files(tmp_path)
    result = submit("--data", tiny_data, "--out", tmp_path / "out" / "s.csv", *ONE_EPOCH)
    assert_refused_before_training(
        result, f"{record}: leads to {tiny_data / 'train.csv'}, an input file", "its record must"
    )
    assert snapshot_files(tmp_path) == before


def test_a_read_only_submission_is_not_replaced(tiny_data, tmp_path, previous, submit):
    previous.chmod(0o444)
    before = snapshot_files(tmp_path)
    result = submit("--data", tiny_data, "--out", previous, *ONE_EPOCH)
    assert_refused_before_training(
        result, f"{previous}: is read-only (mode -r--r--r--), so the submission was not replaced", "chmod u+w"
    )
    assert snapshot_files(tmp_path) == before


@pytest.mark.parametrize(
    ("make", "fragment"),
    [
        (lambda out: (out / "submission.json").unlink() or (out / "submission.json").mkdir(), "is a folder, where its"),
        (lambda out: (out / "runs").write_text("x"), "runs: is not a folder; the run folders go there"),
        (lambda out: os.mkfifo(out / "fifo.csv"), "fifo.csv: is not a regular file"),
    ],
    ids=["record-is-a-folder", "runs-is-a-file", "out-is-a-fifo"],
)
def test_an_output_that_cannot_be_a_file_is_refused(tiny_data, tmp_path, previous, make, fragment, submit):
    make(previous.parent)
    out = previous.parent / ("fifo.csv" if "fifo" in fragment else "submission.csv")
    before = snapshot_files(tmp_path)
    assert_refused_before_training(submit("--data", tiny_data, "--out", out, *ONE_EPOCH), fragment)
    assert snapshot_files(tmp_path) == before


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("train.csv", "train.csv: is not a submission (its first line is not ImageId,Label)"),
        ("notes.csv", "notes.csv: is not a submission"),
        ("README.md", "README.md: is not a submission"),
        ("settings.csv", "settings.json: is not a run record"),
    ],
    ids=["a-copy-of-train.csv", "notes", "no-csv-suffix", "its-record-is-not-a-run-record"],
)
def test_an_existing_file_that_is_not_a_submission_is_never_replaced(tiny_data, tmp_path, submit, name, fragment):
    """Only the data folder's files are inputs; a copy elsewhere, or any other file, is the user's all the same."""
    folder = tmp_path / "elsewhere"
    folder.mkdir()
    shutil.copyfile(tiny_data / "train.csv", folder / "train.csv")
    (folder / "notes.csv").write_text("my notes\n")
    (folder / "README.md").write_text("# A project\n")
    (folder / "settings.json").write_text('{"learning_rate": 0.1}')
    before = snapshot_files(tmp_path)
    assert_refused_before_training(submit("--data", tiny_data, "--out", folder / name, *ONE_EPOCH), fragment)
    assert snapshot_files(tmp_path) == before


@pytest.mark.parametrize(
    "content",
    [
        "",
        "ImageId,Label\n",
        "\ufeffImageId,Label\r\n1,3\r\n",
        '"ImageId","Label"\n"1","3"\n',  # R's write.csv, pandas' QUOTE_ALL
        ",ImageId,Label\n0,1,3\n",  # pandas' to_csv with its index
        "ImageId, Label \n",
    ],
    ids=["empty", "header", "bom-crlf", "quoted", "pandas-index", "spaced"],
)
def test_an_empty_file_or_any_submission_may_be_replaced(tmp_path, content):
    out = tmp_path / "submission.csv"
    out.write_text(content, encoding="utf-8", newline="")
    record = out.with_suffix(".json")
    record.write_text("")
    assert plan_outputs(out).submission == out


@pytest.mark.parametrize(
    ("record", "fragment"),
    [('{"submission": ', "not JSON: line 1"), ("[1, 2]", "expected an object")],
    ids=["damaged", "a-list"],
)
def test_a_record_that_cannot_be_read_as_one_is_never_replaced(tmp_path, record, fragment):
    out = tmp_path / "submission.csv"
    out.write_text("ImageId,Label\n1,3\n")
    out.with_suffix(".json").write_text(record)
    with pytest.raises(UserError, match=fragment) as refused:
        plan_outputs(out)
    assert "the submission's record would replace it" in str(refused.value)


def test_an_out_below_a_file_is_refused(tiny_data, tmp_path, submit):
    (tmp_path / "plain.txt").write_text("x")
    result = submit("--data", tiny_data, "--out", tmp_path / "plain.txt" / "s.csv", *ONE_EPOCH)
    assert_refused_before_training(result, f"{tmp_path / 'plain.txt'}: is a file, not a folder")


@pytest.fixture
def small_disk(tmp_path):
    """A 512 KB tmpfs at `tmp_path/disk`, or a skip where mounting is not allowed."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", disk], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip() or 'mount failed'}); needs root")
    yield disk
    subprocess.run(["umount", disk], check=True)


def fill(disk: Path, leave: int) -> None:
    """Fill `disk` but for `leave` bytes."""
    status = os.statvfs(disk)
    (disk / "filler").write_bytes(b"\0" * (status.f_bavail * status.f_frsize - leave))


def test_a_read_only_file_system_is_refused(tiny_data, small_disk, submit):
    previous = write_previous_pair(small_disk)
    subprocess.run(["mount", "-o", "remount,ro", small_disk], check=True)
    before = snapshot_files(small_disk)
    result = submit("--data", tiny_data, "--out", previous, *ONE_EPOCH)
    assert_refused_before_training(result, f"{small_disk}: read-only file system")
    assert snapshot_files(small_disk) == before


def test_too_little_room_is_refused_before_training(tiny_data, small_disk, submit):
    previous = write_previous_pair(small_disk)
    fill(small_disk, leave=16 * 1024)
    before = snapshot_files(small_disk)
    result = submit("--data", tiny_data, "--out", previous, *ONE_EPOCH)
    assert_refused_before_training(result, f"{small_disk}: only 16 KB free; the submission and its record need about")
    assert snapshot_files(small_disk) == before


# Another user may not write in /proc at all, which is refused first, and so as permission denied.
@pytest.mark.skipif(not Path("/proc/self").is_dir() or os.geteuid() != 0, reason="needs Linux's /proc, as root")
def test_a_file_system_that_keeps_no_files_is_refused_before_training(tiny_data, submit):
    result = submit("--data", tiny_data, "--out", "/proc/submission.csv", *ONE_EPOCH)
    assert_refused_before_training(result, "/proc: cannot hold files (an empty test file could not be made there: ")


@pytest.mark.slow
def test_a_disk_that_fills_during_the_write_keeps_the_previous_pair(tiny_data, small_disk, submit):
    previous = write_previous_pair(small_disk)
    # Room for the submission and its record (the check passes), not for the run folder and its report.
    fill(small_disk, leave=96 * 1024)
    before = snapshot_files(small_disk)
    result = submit("--data", tiny_data, "--out", previous, "--epochs", "1", "--verbose", "0")
    assert_one_line_error(result, 2, "No space left on device; ", f"{previous} and its record were left as they were")
    after = snapshot_files(small_disk)
    # The run folder stays, marked incomplete; everything that was there before is as it was.
    assert {name: after[name] for name in before} == before
    assert not [name for name in after if name.endswith(".tmp")], sorted(after)


@pytest.mark.slow
def test_a_symbolic_link_out_is_followed_and_kept(tiny_data, tmp_path, previous, submit):
    link = make_link("symbolic", tmp_path / "latest.csv", previous)
    result = submit("--data", tiny_data, "--out", link, *ONE_EPOCH)
    assert result.returncode == 0, result.stderr
    assert link.is_symlink() and os.readlink(link) == str(previous)
    validate_submission(previous, n_rows=20)
    check_pair(previous)
    assert f"wrote {previous} (record: {previous.with_suffix('.json')})" in result.stdout
    assert (previous.parent / "runs").is_dir() and not (tmp_path / "latest.json").exists()


def write_pair(plan, submission_text: str) -> None:
    """What a run does: the pair written to temporary files, then swapped in."""
    with prepared_pair(plan) as pair:
        pair.submission.write_text(submission_text)
        pair.record.write_text(f'{{"submission": {{"sha256": "{sha256(pair.submission)}"}}}}')
        pair.swap()


def test_the_pair_is_swapped_in_together(tmp_path, previous):
    write_pair(plan_outputs(previous), "ImageId,Label\n1,4\n")
    assert previous.read_text() == "ImageId,Label\n1,4\n"
    check_pair(previous)
    assert sorted(path.name for path in previous.parent.iterdir()) == ["submission.csv", "submission.json"]


def test_a_failed_swap_puts_the_previous_record_back(tmp_path, previous):
    plan = plan_outputs(previous)
    before = snapshot_files(tmp_path)
    # The submission's rename fails after the record's has succeeded.
    previous.unlink()
    previous.mkdir()
    with pytest.raises(UserError, match=f"{previous}: Is a directory; {previous} and its record were left as they"):
        write_pair(plan, "ImageId,Label\n1,4\n")
    after = snapshot_files(tmp_path)
    assert after["out/submission.json"] == before["out/submission.json"]
    assert sorted(after) == sorted(before)


def test_a_mismatched_pair_is_refused_and_never_sent(tmp_path, previous, tiny_data):
    previous.write_text(previous.read_text().replace("20,0", "20,1"))
    with FakeKaggle() as fake:
        result = run_with_fake(
            "-m", "src.upload", previous, "-m", "edited", "--data", tiny_data, url=fake.url, home=tmp_path / "home"
        )
        assert fake.uploads() == []
    assert_one_line_error(result, 2, f"{previous}: does not match its record {previous.with_suffix('.json')}")
    with pytest.raises(UserError, match="does not match its record"):
        check_pair(previous)


def test_a_matching_pair_is_sent(tmp_path, previous, tiny_data):
    with FakeKaggle() as fake:
        result = run_with_fake(
            "-m", "src.upload", previous, "-m", "kept", "--data", tiny_data, url=fake.url, home=tmp_path / "home"
        )
        assert fake.uploads() == [previous.read_bytes()]
    assert result.returncode == 0, result.stderr
