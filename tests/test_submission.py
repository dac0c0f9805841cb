"""The submission file: exact format, validation, and atomic replacement."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest

from src import submission
from src.config import UserError
from src.submission import validate_submission, write_submission


def test_writes_the_competition_format(tmp_path):
    path = write_submission(np.array([3, 0, 9]), tmp_path / "out" / "submission.csv")
    assert path.read_text() == "ImageId,Label\n1,3\n2,0\n3,9\n"
    assert validate_submission(path, n_rows=3)["Label"].tolist() == [3, 0, 9]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("Id,Label\n1,3\n", r"line 1: expected the header 'ImageId,Label', found 'Id,Label'"),
        ("ImageId,Label\n", r"has a header but no rows"),
        ("ImageId,Label\n1,3\n3,4\n", r"line 3, column ImageId: expected 2 \(ImageId runs 1\.\.N\), found 3"),
        ("ImageId,Label\n1,3\n2,10\n", r"line 3, column Label: expected a digit 0\.\.9, found 10"),
        ("ImageId,Label\n1,3\n2,x\n", r"line 3, column Label: expected an integer, found 'x'"),
        ("ImageId,Label\n1,3\n2,4\n", r"has 2 rows, expected 3 \(one per test image\)"),
    ],
)
def test_validation_names_the_problem(tmp_path, text, message):
    path = tmp_path / "submission.csv"
    path.write_text(text)
    with pytest.raises(UserError, match=message):
        validate_submission(path, n_rows=3)


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
