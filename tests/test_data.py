"""Reading the CSVs: good files parse, every kind of bad file gets a precise message."""

from __future__ import annotations

import numpy as np
import pytest

from src.config import UserError
from src.data import as_features, check_labels, read_test, read_train, write_sample

HEADER = "label," + ",".join(f"pixel{index}" for index in range(784))
TEST_HEADER = ",".join(f"pixel{index}" for index in range(784))


def row(label="3", pixels=None):
    pixels = pixels if pixels is not None else ["0"] * 784
    return ",".join([label, *pixels])


def write(tmp_path, text, name="train.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_reads_a_valid_file(tiny_data):
    images, labels = read_train(tiny_data / "train.csv")
    assert images.shape == (80, 784) and images.dtype == np.uint8
    assert labels.shape == (80,) and set(labels) == set(range(10))
    assert read_test(tiny_data / "test.csv").shape == (20, 784)


def test_missing_file_suggests_the_download(tmp_path):
    with pytest.raises(UserError, match=r"train\.csv: file not found; run scripts/download\.sh.*--sample"):
        read_train(tmp_path / "train.csv")


def test_empty_file(tmp_path):
    with pytest.raises(UserError, match=r"train\.csv: file is empty"):
        read_train(write(tmp_path, ""))


def test_header_only(tmp_path):
    with pytest.raises(UserError, match=r"train\.csv: has a header but no data rows"):
        read_train(write(tmp_path, HEADER + "\n"))


def test_wrong_header_names_the_column(tmp_path):
    text = HEADER.replace("pixel5,", "pixel_5,") + "\n" + row() + "\n"
    with pytest.raises(UserError, match=r"train\.csv: line 1, column 7: expected header 'pixel5', found 'pixel_5'"):
        read_train(write(tmp_path, text))


def test_short_header(tmp_path):
    with pytest.raises(UserError, match=r"line 1: expected 785 header fields"):
        read_train(write(tmp_path, HEADER.rsplit(",", 1)[0] + "\n" + row() + "\n"))


def test_swapped_files(tmp_path):
    test_text = TEST_HEADER + "\n" + ",".join(["0"] * 784) + "\n"
    with pytest.raises(UserError, match=r"train\.csv: line 1: this header belongs to test\.csv.*swapped"):
        read_train(write(tmp_path, test_text, "train.csv"))
    with pytest.raises(UserError, match=r"test\.csv: line 1: this header belongs to train\.csv.*swapped"):
        read_test(write(tmp_path, HEADER + "\n" + row() + "\n", "test.csv"))


def test_wrong_number_of_fields(tmp_path):
    text = "\n".join([HEADER, row(), row() + ",7", row()]) + "\n"
    with pytest.raises(UserError, match=r"train\.csv: line 3: expected 785 comma-separated fields, found 786"):
        read_train(write(tmp_path, text))


@pytest.mark.parametrize(
    ("value", "found"),
    [("abc", "'abc'"), ("", "an empty value"), ("NaN", "'NaN'"), ("1.5", "'1.5'"), ("3.0", "'3.0'")],
)
def test_non_integer_pixel(tmp_path, value, found):
    pixels = ["0"] * 784
    pixels[10] = value
    text = "\n".join([HEADER, row(), row(pixels=pixels)]) + "\n"
    expected = rf"train\.csv: line 3, column pixel10: expected an integer pixel 0\.\.255, found {found}"
    with pytest.raises(UserError, match=expected):
        read_train(write(tmp_path, text))


def test_non_utf8_bytes(tmp_path):
    path = tmp_path / "train.csv"
    path.write_bytes(("\n".join([HEADER, row(), row()]) + "\n").encode() + b"3,\xff" + b",0" * 783 + b"\n")
    with pytest.raises(UserError, match=r"train\.csv: line 4: not UTF-8 text"):
        read_train(path)


def test_pixel_out_of_range(tmp_path):
    pixels = ["0"] * 784
    pixels[783] = "256"
    text = "\n".join([HEADER, row(), row(), row(pixels=pixels)]) + "\n"
    with pytest.raises(UserError, match=r"line 4, column pixel783: expected a pixel 0\.\.255, found 256"):
        read_train(write(tmp_path, text))


def test_negative_pixel_in_test_file(tmp_path):
    pixels = ["0"] * 784
    pixels[0] = "-1"
    with pytest.raises(UserError, match=r"test\.csv: line 2, column pixel0: expected a pixel 0\.\.255, found -1"):
        read_test(write(tmp_path, TEST_HEADER + "\n" + ",".join(pixels) + "\n", "test.csv"))


def test_label_out_of_range(tmp_path):
    with pytest.raises(UserError, match=r"line 3, column label: expected a label 0\.\.9, found 10"):
        read_train(write(tmp_path, "\n".join([HEADER, row("1"), row("10")]) + "\n"))


def test_non_integer_label(tmp_path):
    with pytest.raises(UserError, match=r"line 2, column label: expected a label 0\.\.9, found 'x'"):
        read_train(write(tmp_path, "\n".join([HEADER, row("x")]) + "\n"))


def test_absent_class():
    with pytest.raises(UserError, match=r"no training rows for digit\(s\) 7, 9"):
        check_labels(np.array([0, 1, 2, 3, 4, 5, 6, 8]), folds=1)


def test_fewer_rows_than_folds():
    labels = np.repeat(np.arange(10), 2)
    check_labels(labels, folds=2)
    with pytest.raises(UserError, match=r"3 folds need at least 3 rows of every digit, but digit 0 has 2"):
        check_labels(labels, folds=3)


def test_scaling():
    images = np.array([[0, 51, 255]], dtype=np.uint8)
    assert as_features(images, "none").tolist() == [[0.0, 51.0, 255.0]]
    np.testing.assert_allclose(as_features(images, "unit"), [[0.0, 0.2, 1.0]])


def test_sample_is_in_the_competition_format(tmp_path):
    directory = write_sample(tmp_path)
    images, labels = read_train(directory / "train.csv")
    test_images = read_test(directory / "test.csv")
    assert len(images) + len(test_images) == 1797
    assert set(labels) == set(range(10))
    assert images.max() == 255 and images.min() == 0
    # Digits sit in the 20x20 centre, as in MNIST: the 4-pixel border is blank.
    frames = images.reshape(-1, 28, 28)
    assert frames[:, :4].max() == 0 and frames[:, :, -4:].max() == 0
    assert (directory / "sample_submission.csv").read_text().startswith("ImageId,Label\n1,0\n")
