"""The submission file: exact format, validation, and atomic replacement."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from src.core.errors import UserError
from src.data import submission
from src.data.submission import check_predictions, validate_submission, write_submission
from tests.helpers import assert_one_line_error, run_command


def test_writes_the_competition_format(tmp_path):
    path = write_submission(np.array([3, 0, 9]), tmp_path / "out" / "submission.csv")
    assert path.read_text() == "ImageId,Label\n1,3\n2,0\n3,9\n"
    assert validate_submission(path, n_rows=3)["Label"].tolist() == [3, 0, 9]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "Id,Label\n1,3\n",
            r"line 1: expected the header 'ImageId,Label'; column 1 is 'Id', not 'ImageId'",
        ),
        ("ImageId,Label\n", r"has a header but no data rows"),
        ("ImageId,Label\n1,3\n3,4\n", r"line 3, column ImageId: expected 2 \(ImageId runs 1\.\.N\), found 3"),
        ("ImageId,Label\n1,3\n2,10\n", r"line 3, column Label: expected a digit 0\.\.9, found 10"),
        ("ImageId,Label\n1,3\n2,x\n", r"line 3, column Label: expected a digit 0\.\.9, found 'x'"),
        ("ImageId,Label\n1,3\n2,4\n", r"has 2 rows, expected 3 \(one per test image\)"),
        (
            "ImageId,Label,Confidence\n1,3,0.9\n",
            r"line 1: expected the header 'ImageId,Label' \(2 fields\), found 3 fields: extra 'Confidence'",
        ),
        ("ImageId,Label\n1,3\n2,4,5\n3,1\n", r"line 3: expected 2 comma-separated fields, found 3"),
        ("ImageId,Label\n1,3.0\n", r"line 2, column Label: expected a digit 0\.\.9, found '3\.0'"),
        ("ImageId,Label\n1e0,3\n", r"line 2, column ImageId: expected an integer ImageId 1\.\.N, found '1e0'"),
        ("ImageId,Label\n+1,3\n", r"line 2, column ImageId: expected an integer ImageId 1\.\.N, found '\+1'"),
        ("ImageId,Label\n 1,3\n", r"line 2, column ImageId: expected an integer ImageId 1\.\.N, found ' 1'"),
        ("ImageId,Label\n1,-3\n", r"line 2, column Label: expected a digit 0\.\.9, found '-3'"),
        ("ImageId,Label\n1,\n", r"line 2, column Label: expected a digit 0\.\.9, found an empty value"),
        (
            "ImageId, Label\n1,3\n",
            r"line 1: expected the header 'ImageId,Label'; column 2 is ' Label': write names without quotes or spaces",
        ),
        (
            '"ImageId","Label"\n1,3\n',
            r"line 1: expected the header 'ImageId,Label'; column 1 is '\"ImageId\"': write names without",
        ),
        ("imageid,label\n1,3\n", r"line 1: expected the header 'ImageId,Label'; column 1 is 'imageid', not 'ImageId'"),
        (
            "ImageId;Label\n1;3\n",
            r"line 1: expected the header 'ImageId,Label', comma-separated; found 'ImageId;Label'",
        ),
        ("ImageId,Label\n1,3\n\n2,4\n", r"line 3: empty line"),
        ("", r"file is empty"),
    ],
)
def test_validation_names_the_problem(tmp_path, text, message):
    path = tmp_path / "submission.csv"
    path.write_text(text)
    with pytest.raises(UserError, match=message):
        validate_submission(path, n_rows=3)


def test_leading_zeros_byte_order_mark_and_crlf_are_accepted(tmp_path):
    path = tmp_path / "submission.csv"
    path.write_bytes(b"\xef\xbb\xbfImageId,Label\r\n01,3\r\n2,04\r\n")
    assert validate_submission(path, n_rows=2).to_numpy().tolist() == [[1, 3], [2, 4]]


def test_non_utf8_submission(tmp_path):
    path = tmp_path / "submission.csv"
    path.write_bytes(b"ImageId,Label\n1,3\n2,\xff\n")
    with pytest.raises(UserError, match=r"line 3: not UTF-8 text"):
        validate_submission(path)


def test_one_label_for_every_row_is_refused(tmp_path):
    rows = submission.MIN_ROWS_FOR_ONE_CLASS_CHECK
    path = tmp_path / "submission.csv"
    path.write_text("ImageId,Label\n" + "".join(f"{image_id},0\n" for image_id in range(1, rows + 1)))
    with pytest.raises(UserError, match=rf"every one of the {rows:,} rows has Label 0: a worthless submission"):
        validate_submission(path)
    # One row of another digit, or fewer rows than that, is a submission.
    path.write_text("ImageId,Label\n" + "".join(f"{image_id},0\n" for image_id in range(1, rows)) + f"{rows},1\n")
    validate_submission(path, n_rows=rows)
    write_submission(np.zeros(rows - 1, dtype=np.int64), path)


def test_predictions_that_no_submission_should_come_from():
    rng = np.random.default_rng(0)
    good = rng.dirichlet(np.ones(10), size=2000)
    check_predictions(good)
    diverged = good.copy()
    diverged[5:17] = np.nan
    with pytest.raises(UserError, match=r"probabilities are not finite \(NaN in 12 of 2,000 rows\): training diverged"):
        check_predictions(diverged)
    diverged[5:17] = np.inf
    with pytest.raises(UserError, match=r"\(infinity in 12 of 2,000 rows\)"):
        check_predictions(diverged)
    collapsed = np.tile(np.eye(10)[3], (2000, 1))
    with pytest.raises(UserError, match=r"every one of the 2,000 test images is predicted as digit 3: a worthless"):
        check_predictions(collapsed)
    check_predictions(collapsed[:20])  # a tiny test file may honestly be one digit
    with pytest.raises(ValueError, match=r"shape \(n, 10\)"):
        check_predictions(good[:, :9])


def test_upload_refuses_a_bad_file_in_one_line(tmp_path):
    path = tmp_path / "submission.csv"
    path.write_text("ImageId,Label,Extra\n1,3,x\n")
    # No credentials are needed: the file is refused before Kaggle is contacted.
    result = run_command(
        "-m", "src.upload", path, "-m", "test", "--data", tmp_path, env={"KAGGLE_CONFIG_DIR": str(tmp_path)}
    )
    assert_one_line_error(
        result,
        2,
        "submission.csv: line 1: expected the header 'ImageId,Label' (2 fields), found 3 fields: extra 'Extra'",
    )


def test_invalid_labels_never_replace_a_good_submission(tmp_path):
    path = write_submission(np.array([1, 2]), tmp_path / "submission.csv")
    good = path.read_bytes()
    with pytest.raises(UserError):
        write_submission(np.array([1, 12]), path)
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["submission.csv"]


def test_an_interrupted_write_leaves_the_previous_file(tmp_path, monkeypatch):
    path = write_submission(np.array([1, 2]), tmp_path / "submission.csv")
    good = path.read_bytes()

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(submission, "validate_submission", interrupt)
    with pytest.raises(KeyboardInterrupt):
        write_submission(np.array([4, 5, 6]), path)
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["submission.csv"]


def test_written_files_get_the_usual_permissions(tmp_path):
    previous = os.umask(0o022)
    try:
        path = write_submission(np.array([1, 2]), tmp_path / "submission.csv")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
