"""One reader per kind of file: every damaged JSON or `.npy` file a command reads back is one line and exit 2."""

from __future__ import annotations

import io
import json
import shutil
import time
import zipfile

import numpy as np
import pytest

from src.blend import main as blend_main
from src.core.config import Config
from src.core.errors import EXIT_USER
from src.core.readers import MAX_JSON_BYTES, UnreadableFile, json_depth, read_json, read_npy, read_npz
from src.pipeline.run import run
from src.predict import main as predict_main
from src.report import main as report_main
from src.upload import main as upload_main
from tests.fake_kaggle import FAKE_USER, FakeKaggle, run_with_fake
from tests.helpers import REPO_ROOT, assert_one_line_error, write_previous_pair
from tests.synthetic import write_dataset

KERNEL_ID = f"{FAKE_USER}/digit-recognizer-dense-network"
# Each damage a JSON file can have, as the bytes written in its place, and what the line says.
DAMAGES = {
    "malformed": (b'{"config": ', "not JSON: line 1"),
    "a list": (b"[1, 2]", "object"),
    "deeply nested": (b"[" * 100_000 + b"]" * 100_000, "nested 100000 levels deep"),
    "a 5,000-digit integer": (b'{"schema": ' + b"9" * 5000 + b"}", "an integer of 5000 digits"),
    "not UTF-8": (b'{"command": "\xff\xfe"}', "not UTF-8 text (byte 13)"),
    "oversized": (b'{"command": "' + b" " * MAX_JSON_BYTES + b'"}', "larger than 16.0 MiB"),
}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """One tiny real run folder, with its saved model."""
    base = tmp_path_factory.mktemp("readers")
    data = write_dataset(base / "data")
    config = Config(epochs=1, seed=1, scaling="unit", l2=1e-4)
    return run(config, data, base / "submissions" / "submission.csv", verbose=0, report=False).run_dir


def damaged_copy(run_dir, tmp_path, name, content):
    copy = shutil.copytree(run_dir, tmp_path / "run")
    (copy / name).write_bytes(content)
    return copy


def one_line(code, capsys, *fragments):
    error = capsys.readouterr().err
    assert code == EXIT_USER, error
    assert error.startswith("error: ") and error.count("\n") == 1 and "Traceback" not in error, error
    for fragment in fragments:
        assert fragment in error, error
    return error


@pytest.mark.slow
@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_run_record_is_one_line_for_every_command(run_dir, tmp_path, capsys, damage):
    content, reason = DAMAGES[damage]
    copy = damaged_copy(run_dir, tmp_path, "record.json", content)
    record = str(copy / "record.json")
    out = tmp_path / "out.csv"
    one_line(blend_main([str(run_dir), str(copy), "--out", str(out)]), capsys, record, reason)
    one_line(predict_main([str(copy), "--out", str(out)]), capsys, record, reason)
    one_line(report_main(["--compare", str(run_dir), str(copy)]), capsys, record, reason)
    assert not out.exists()


@pytest.mark.parametrize("damage", DAMAGES)
def test_a_damaged_record_beside_a_file_is_never_uploaded(tmp_path, capsys, damage):
    content, reason = DAMAGES[damage]
    submission = write_previous_pair(tmp_path)
    submission.with_suffix(".json").write_bytes(content)
    one_line(upload_main([str(submission), "-m", "test"]), capsys, str(submission.with_suffix(".json")), reason)


@pytest.mark.parametrize("damage", DAMAGES)
def test_damaged_histories_and_models_lists_are_one_line(run_dir, tmp_path, capsys, damage):
    content, reason = DAMAGES[damage]
    copy = damaged_copy(run_dir, tmp_path, "histories.json", content)
    # A list is the histories' own kind: the wrong list is named by what it lacks.
    reason = "member histories" if damage == "a list" else reason
    one_line(report_main([str(copy)]), capsys, str(copy / "histories.json"), reason)
    (copy / "histories.json").write_bytes((run_dir / "histories.json").read_bytes())
    (copy / "members.json").write_bytes(content)
    one_line(predict_main([str(copy), "--out", str(tmp_path / "out.csv")]), capsys, str(copy / "members.json"))


def test_a_huge_header_shape_is_refused_before_allocating(run_dir, tmp_path, capsys):
    copy = shutil.copytree(run_dir, tmp_path / "run")
    with open(copy / "test_probabilities.npy", "wb") as stream:
        header = {"shape": (10**12, 10), "fortran_order": False, "descr": "<f8"}
        np.lib.format.write_array_header_1_0(stream, header)
    started = time.monotonic()
    code = blend_main([str(run_dir), str(copy), "--out", str(tmp_path / "out.csv")])
    one_line(code, capsys, "test_probabilities.npy", "its header claims 72.8 TiB")
    assert time.monotonic() - started < 10


def test_a_wrong_shape_of_test_probabilities_is_one_line(run_dir, tmp_path, capsys):
    copy = shutil.copytree(run_dir, tmp_path / "run")
    np.save(copy / "test_probabilities.npy", np.full((20, 9), 0.1, dtype=np.float32))
    code = blend_main([str(run_dir), str(copy), "--out", str(tmp_path / "out.csv")])
    one_line(code, capsys, "test_probabilities.npy", "shape [20, 9] does not fit the other arrays' sizes")


def test_read_npy_checks_shape_kind_and_size_from_the_header(tmp_path):
    path = tmp_path / "a.npy"
    np.save(path, np.ones((5, 10), dtype=np.float32))
    assert read_npy(path, (None, 10)).shape == (5, 10)
    for shape, kinds, reason in [((None,), "f", "shape [5, 10]"), ((None, 10), "iu", "expected integers")]:
        with pytest.raises(UnreadableFile, match=reason.replace("[", r"\[")):
            read_npy(path, shape, kinds)
    path.write_bytes(path.read_bytes()[:-4])
    with pytest.raises(UnreadableFile, match="the file holds"):
        read_npy(path, (None, 10))
    np.save(path, np.array([{}], dtype=object), allow_pickle=True)
    with pytest.raises(UnreadableFile, match="holds object"):
        read_npy(path, None, None)


def test_brackets_inside_strings_do_not_count_as_nesting(tmp_path):
    value = {"a": '[[[[\\"[[[{{', "b": [[1]], "c": "\\\\"}
    assert json_depth(json.dumps(value)) == 3
    path = tmp_path / "a.json"
    path.write_text(json.dumps(value))
    assert read_json(path, "test file") == value


def test_damaged_kernel_output_is_one_line(tmp_path):
    submission = b"ImageId,Label\n" + b"".join(b"%d,%d\n" % (row, row % 10) for row in range(1, 21))
    for damage, (content, reason) in DAMAGES.items():
        files = {"submission.csv": submission, "submission.json": content}
        with FakeKaggle(kernel_files=files) as fake:
            kernel_dir = tmp_path / damage / "kernel"
            result = run_with_fake(
                *("-m", "src.kaggle", "kernel-wait", KERNEL_ID, "--kernel-dir", kernel_dir, "--timeout", "30"),
                url=fake.url,
                home=tmp_path / damage / "home",
            )
        assert_one_line_error(result, EXIT_USER, "submission.json: not a run record", reason)


def test_damaged_kernel_metadata_is_never_pushed(tmp_path):
    for damage, (content, reason) in DAMAGES.items():
        folder = tmp_path / damage / "kernel"
        folder.mkdir(parents=True)
        (folder / "digit_recognizer.py").write_text("print('hello')\n")
        (folder / "kernel-metadata.json").write_bytes(content)
        with FakeKaggle() as fake:
            result = run_with_fake("-m", "src.kaggle", "push-kernel", folder, url=fake.url, home=tmp_path / damage)
        assert_one_line_error(result, EXIT_USER, f"{folder / 'kernel-metadata.json'}: not a kernel metadata", reason)
        assert fake.requests == []


def npz_with(path, name: str, header: dict, data: bytes) -> None:
    """An `.npz` archive holding one entry `name.npy`: `header` as its `.npy` header, then `data`."""
    entry = io.BytesIO()
    np.lib.format.write_array_header_1_0(entry, header)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{name}.npy", entry.getvalue() + data)


def test_an_npz_archive_reads_back_as_written(tmp_path):
    path = tmp_path / "arrays.npz"
    with open(path, "wb") as stream:
        np.savez(stream, images=np.arange(6, dtype=np.uint8).reshape(2, 3), kind=np.array("train"))
    arrays = read_npz(path)
    assert sorted(arrays) == ["images", "kind"] and arrays["kind"].item() == "train"
    np.testing.assert_array_equal(arrays["images"], np.arange(6, dtype=np.uint8).reshape(2, 3))


@pytest.mark.parametrize(
    "header, data, reason",
    [
        ({"descr": "<f4", "fortran_order": False, "shape": (10**12,)}, b"\0" * 64, "its header claims 3.6 TiB"),
        ({"descr": "<f4", "fortran_order": False, "shape": (100,)}, b"\0" * 64, "the file holds 64 bytes"),
        ({"descr": "|O", "fortran_order": False, "shape": (1,)}, b"\x80\x04N.", "holds object"),
    ],
)
def test_a_damaged_npz_entry_is_refused_before_its_data_is_read(header, data, reason, tmp_path):
    path = tmp_path / "arrays.npz"
    npz_with(path, "images", header, data)
    with pytest.raises(UnreadableFile, match=f"{path}: not a cache entry: .*{reason}"):
        read_npz(path, "cache entry")


def test_a_file_that_is_not_an_npz_archive_is_one_error(tmp_path):
    path = tmp_path / "arrays.npz"
    path.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(UnreadableFile, match="not a array archive: File is not a zip file"):
        read_npz(path)


@pytest.mark.parametrize("call", ["np.load(", "json.loads(", "json.load("])
def test_only_the_readers_parse_arrays_and_json(call):
    """`np.load` trusts a file's header and `json.loads` its size and depth: every file the package reads back
    goes through `src.core.readers`."""
    readers = REPO_ROOT / "src" / "core" / "readers.py"
    sources = [path for path in (REPO_ROOT / "src").rglob("*.py") if path != readers]
    callers = [path for path in sources if call in path.read_text(encoding="utf-8")]
    assert callers == [], callers
