"""Reading the CSVs: good files parse, every kind of bad file gets a precise message."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest

from src.core.config import IMAGE_SIDE, N_PIXELS, Config
from src.core.errors import UserError
from src.data.csv_format import check_csv_start
from src.data.deskew import deskew, slants
from src.data.loading import TRAIN_HEADER, as_features, check_labels, load_datasets, read_test, read_train, write_sample
from src.data.submission import HEADER as SUBMISSION_HEADER
from src.data.submission import validate_submission
from src.submit import main as submit_main
from tests.helpers import assert_one_line_error, run_command, run_main

HEADER = "label," + ",".join(f"pixel{index}" for index in range(784))
TEST_HEADER = ",".join(f"pixel{index}" for index in range(784))
EXPECTED_HEADER = r"line 1: expected the header 'label,pixel0,pixel1,\.\.\.,pixel783'"


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
    with pytest.raises(
        UserError,
        match=r"train\.csv: " + EXPECTED_HEADER + r"; column 7 is 'pixel_5', not 'pixel5'",
    ):
        read_train(write(tmp_path, text))


def test_short_header(tmp_path):
    with pytest.raises(
        UserError,
        match=EXPECTED_HEADER + r" \(785 fields\), found 784 fields$",
    ):
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
    [
        ("abc", "'abc'"),
        ("", "an empty value"),
        ("NaN", "'NaN'"),
        ("1.5", "'1.5'"),
        ("3.0", "'3.0'"),
        ("1e0", "'1e0'"),
        ("+1", "'\\+1'"),
        (" 1", "' 1'"),
        ("1 ", "'1 '"),
        ("0x1", "'0x1'"),
    ],
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
    expected = r"test\.csv: line 2, column pixel0: expected an integer pixel 0\.\.255, found '-1'"
    with pytest.raises(UserError, match=expected):
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
    assert as_features(images, Config()).tolist() == [[0.0, 51.0, 255.0]]
    np.testing.assert_allclose(as_features(images, Config(scaling="unit")), [[0.0, 0.2, 1.0]])


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


def test_leading_zeros_are_plain_integers(tmp_path):
    pixels = ["0"] * 784
    pixels[3] = "007"
    images, _ = read_train(write(tmp_path, "\n".join([HEADER, row(pixels=pixels)]) + "\n"))
    assert images[0, 3] == 7


def test_byte_order_mark_and_crlf_read_as_plain(tmp_path):
    text = "\n".join([HEADER, row("1"), row("2")]) + "\n"
    plain = read_train(write(tmp_path, text, "plain.csv"))
    windows = tmp_path / "train.csv"
    windows.write_bytes(b"\xef\xbb\xbf" + text.replace("\n", "\r\n").encode())
    for expected, found in zip(plain, read_train(windows), strict=True):
        np.testing.assert_array_equal(found, expected)
    # The last line's end is optional.
    np.testing.assert_array_equal(read_train(write(tmp_path, text.rstrip("\n")))[1], [1, 2])


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (
            HEADER.replace("label,pixel0", "label, pixel0"),
            EXPECTED_HEADER + r"; column 2 is ' pixel0': write names without quotes or spaces",
        ),
        (
            '"label",' + HEADER.split(",", 1)[1],
            EXPECTED_HEADER + r"; column 1 is '\"label\"': write names without",
        ),
        (
            HEADER.replace(",", ";"),
            EXPECTED_HEADER + r", comma-separated; found 'label;pixel0;.*'\.\.\. \(6,",
        ),
        (
            HEADER + ",extra",
            EXPECTED_HEADER + r" \(785 fields\), found 786 fields: extra 'extra'",
        ),
    ],
    ids=["spaces", "quotes", "semicolons", "extra column"],
)
def test_header_problems_are_named_in_one_short_line(tmp_path, header, message):
    with pytest.raises(UserError, match=message) as raised:
        read_train(write(tmp_path, "\n".join([header, row()]) + "\n"))
    assert len(str(raised.value)) < len(str(tmp_path)) + 180


def test_semicolon_separated_rows_get_a_short_message(tmp_path):
    text = "\n".join([HEADER, row().replace(",", ";")]) + "\n"
    with pytest.raises(UserError, match=r"line 2: expected 785 comma-separated fields, found 1$"):
        read_train(write(tmp_path, text))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("\n".join([HEADER, row(), "", row()]) + "\n", r"line 3: empty line"),
        ("\n".join([HEADER, row(), row()]) + "\n\n", r"line 4: empty line"),
        ("\n".join([HEADER, "", row()]) + "\n", r"line 2: empty line"),
        ("\n".join([HEADER, row(), row() + "\r" + row()]) + "\n", r"line 3: expected 785 comma-separated fields"),
    ],
)
def test_empty_lines_and_stray_line_ends(tmp_path, text, message):
    with pytest.raises(UserError, match=message):
        read_train(write(tmp_path, text))


def test_a_folder_named_train_csv(tmp_path):
    (tmp_path / "train.csv").mkdir()
    with pytest.raises(UserError, match=r"train\.csv: is a folder, not a file$"):
        read_train(tmp_path / "train.csv")


def test_a_fifo_named_train_csv_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "train.csv")
    # Opening a FIFO with no writer would block forever: the timeout catches a regression.
    result = run_command("-m", "src.submit", "--data", tmp_path, "--out", tmp_path / "out.csv", timeout=120)
    assert_one_line_error(result, 2, "train.csv: is not a regular file (a FIFO)")


def test_a_path_through_a_file(tmp_path):
    (tmp_path / "data").write_text("not a folder")
    with pytest.raises(UserError, match=r"data/train\.csv: cannot be read: Not a directory"):
        read_train(tmp_path / "data" / "train.csv")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_an_unreadable_file(tmp_path):
    path = write(tmp_path, "\n".join([HEADER, row()]) + "\n")
    path.chmod(0)
    with pytest.raises(UserError, match=r"train\.csv: cannot be read: Permission denied"):
        read_train(path)


def test_a_file_larger_than_memory_is_refused_before_reading(tmp_path):
    # A sparse file: its size is a terabyte, but it takes no disk space and is never read.
    path = write(tmp_path, "\n".join([HEADER, row()]) + "\n")
    os.truncate(path, 10**12)
    message = r"train\.csv: file is 1\.0 TB; reading it needs about 10\.0 TB of memory, more than the .* available"
    with pytest.raises(UserError, match=message):
        read_train(path)
    write(tmp_path, TEST_HEADER + "\n" + ",".join(["0"] * 784) + "\n", "test.csv")
    with pytest.raises(UserError, match=message):
        load_datasets(tmp_path, cache_dir=None)  # refused before hashing a terabyte


def test_a_bad_file_is_one_line_from_the_command(tmp_path, tiny_data, capsys):
    # A header with spaces and a bad cell once gave a ValueError traceback.
    lines = (tiny_data / "train.csv").read_text().splitlines()
    lines[0] = lines[0].replace(",", ", ")
    lines[5] = lines[5].replace(",0,", ",x,", 1)
    (tiny_data / "train.csv").write_text("\n".join(lines) + "\n")
    result = run_main(capsys, submit_main, "--data", tiny_data, "--out", tmp_path / "out.csv", "--epochs", "1")
    assert_one_line_error(
        result, 2, "train.csv: line 1: expected the header 'label,pixel0,pixel1,...,pixel783'; column 2 is ' pixel0'"
    )
    assert not (tmp_path / "out.csv").exists()


SUBMISSION = "ImageId,Label\n1,3\n2,4\n"


@pytest.mark.parametrize(
    ("change", "accepted"),
    [
        (lambda text: text, True),
        (lambda text: "\ufeff" + text, True),
        (lambda text: text.replace("\n", "\r\n"), True),
        (lambda text: text.replace("\n", "\r\n").rstrip("\r\n"), True),
        (lambda text: text.split("\n", 1)[0].replace(",", ", ") + "\n" + text.split("\n", 1)[1], False),
        (lambda text: '"' + text.replace(",", '","', 1).replace("\n", '"\n', 1), False),
        (lambda text: text.split("\n", 1)[0].replace(",", ";") + "\n" + text.split("\n", 1)[1], False),
        (lambda text: text.split("\n", 1)[0] + "\n", False),
        (lambda text: text.split("\n", 1)[0] + "\n\n" + text.split("\n", 1)[1], False),
        (lambda text: "", False),
    ],
)
def test_data_submissions_and_the_download_check_agree_on_a_file(tmp_path, change, accepted):
    """The download's check (`check_csv_start`), the CSV reader and the submission check accept the same files."""
    train = tmp_path / "train.csv"
    train.write_text(change("\n".join([HEADER, row("1"), row("2")]) + "\n"), newline="")
    submission = tmp_path / "submission.csv"
    submission.write_text(change(SUBMISSION), newline="")
    checks = [
        lambda: check_csv_start(train, TRAIN_HEADER),
        lambda: read_train(train),
        lambda: check_csv_start(submission, SUBMISSION_HEADER),
        lambda: validate_submission(submission),
    ]
    outcomes = []
    for check in checks:
        try:
            check()
            outcomes.append(True)
        except UserError:
            outcomes.append(False)
    assert outcomes == [accepted] * len(checks)


def test_a_long_bad_value_is_cut_short(tmp_path):
    pixels = ["0"] * 784
    pixels[2] = "x" * 5000
    with pytest.raises(
        UserError, match=r"column pixel2: expected an integer pixel 0\.\.255, found 'x{40}'\.\.\. \(5,000 c"
    ):
        read_train(write(tmp_path, "\n".join([HEADER, row(pixels=pixels)]) + "\n"))


def test_a_number_beyond_64_bits(tmp_path):
    pixels = ["0"] * 784
    pixels[2] = "9" * 30
    message = r"train\.csv: line 2, column pixel2: '9{30}' is beyond 64-bit integers$"
    with pytest.raises(UserError, match=message):
        read_train(write(tmp_path, "\n".join([HEADER, row(pixels=pixels)]) + "\n"))


# Caps this process's address space a little above what it has loaded, then reads the file.
READ_UNDER_A_MEMORY_LIMIT = """
import resource, sys
from src.data.loading import read_train
from src.core.errors import UserError
with open("/proc/self/status") as status:
    loaded = int(next(line for line in status if line.startswith("VmSize")).split()[1]) * 1024
resource.setrlimit(resource.RLIMIT_AS, (loaded + 40_000_000, loaded + 40_000_000))
try:
    read_train(sys.argv[1])
except UserError as error:
    print(f"error: {error}", file=sys.stderr)
    sys.exit(2)
"""


def test_running_out_of_memory_while_parsing_is_one_line(tmp_path):
    # The size check passes (the machine has the memory), the process limit does not.
    path = write(tmp_path, "\n".join([HEADER, *[row()] * 8000]) + "\n")
    result = run_command("-c", READ_UNDER_A_MEMORY_LIMIT, path, timeout=120)
    assert_one_line_error(result, 2, "train.csv: ran out of memory reading this 12.6 MB file")


def slanted_stroke() -> np.ndarray:
    """A 3-pixel-wide stroke from row 4 to 23, leaning right as it rises (a column every two rows), off-centre."""
    image = np.zeros((IMAGE_SIDE, IMAGE_SIDE), np.uint8)
    for row in range(4, 24):
        image[row, 2 + (24 - row) // 2 : 5 + (24 - row) // 2] = 255
    return image.reshape(1, N_PIXELS)


def ink_centre(image: np.ndarray) -> tuple[float, float]:
    rows, cols = np.mgrid[:IMAGE_SIDE, :IMAGE_SIDE]
    ink = image.reshape(IMAGE_SIDE, IMAGE_SIDE).astype(float)
    return (rows * ink).sum() / ink.sum(), (cols * ink).sum() / ink.sum()


def test_deskewing_shears_a_slanted_stroke_upright_and_centres_it():
    stroke = slanted_stroke()
    assert slants(stroke)[0] == pytest.approx(-0.5, abs=0.05)
    assert ink_centre(stroke)[1] < 11
    upright = deskew(stroke)
    assert upright.dtype == np.uint8 and upright.shape == (1, N_PIXELS)
    assert abs(slants(upright)[0]) < 0.02
    assert ink_centre(upright) == pytest.approx((13.5, 13.5), abs=0.3)
    assert upright.sum() == pytest.approx(stroke.sum(), rel=0.05)  # the ink is moved, not lost
    # Each image on its own: a batch gives each image what it gives alone.
    batch = np.concatenate([stroke, np.zeros_like(stroke), stroke[:, ::-1]])
    np.testing.assert_array_equal(deskew(batch)[0], upright[0])


def test_an_image_without_ink_or_already_upright_and_centred_is_left_as_it_is():
    blank = np.zeros((2, N_PIXELS), np.uint8)
    np.testing.assert_array_equal(deskew(blank), blank)
    np.testing.assert_array_equal(deskew(blank[:0]), blank[:0])
    bar = np.zeros((IMAGE_SIDE, IMAGE_SIDE), np.uint8)
    bar[4:24, 12:16] = 200  # upright, its ink centred on (13.5, 13.5)
    np.testing.assert_array_equal(deskew(bar.reshape(1, N_PIXELS)), bar.reshape(1, N_PIXELS))
    # The features: deskewed first when the settings ask, then scaled.
    stroke = slanted_stroke()
    np.testing.assert_allclose(as_features(stroke, Config(scaling="unit", deskew=True)), deskew(stroke) / 255.0)
    np.testing.assert_array_equal(as_features(stroke, Config()), stroke.astype(np.float32))


def test_an_upright_bar_in_a_corner_moves_whole_to_the_centre_and_nothing_comes_in_from_beyond_the_frame():
    corner = np.zeros((IMAGE_SIDE, IMAGE_SIDE), np.uint8)
    corner[0:10, 0:4] = 180  # its ink centred on (4.5, 1.5): moved 9 rows down and 12 columns right, exactly
    centred = np.zeros_like(corner)
    centred[9:19, 12:16] = 180
    np.testing.assert_array_equal(deskew(corner.reshape(1, N_PIXELS)), centred.reshape(1, N_PIXELS))


def test_a_slanted_stroke_high_in_the_frame_is_sheared_about_its_own_centre():
    stroke = np.zeros((IMAGE_SIDE, IMAGE_SIDE), np.uint8)
    for row in range(0, 12):
        stroke[row, 16 + (12 - row) // 2 : 19 + (12 - row) // 2] = 255
    upright = deskew(stroke.reshape(1, N_PIXELS))
    assert slants(stroke.reshape(1, N_PIXELS))[0] < -0.4 and abs(slants(upright)[0]) < 0.02
    assert ink_centre(upright) == pytest.approx((13.5, 13.5), abs=0.3)


def test_ink_on_a_single_row_has_no_slant_and_keeps_its_ink():
    # Its variance is 0; a rounding error there would divide into an arbitrary slant.
    rng = np.random.default_rng(0)
    images = np.zeros((300, IMAGE_SIDE, IMAGE_SIDE), np.uint8)
    for image, row in zip(images, rng.integers(0, IMAGE_SIDE, len(images)), strict=True):
        # Columns 8 to 19: centring moves the ink at most 6 columns, so none of it leaves the frame.
        image[row, 8:20] = rng.integers(0, 256, 12) * (rng.random(12) < 0.5)
    flat = images.reshape(len(images), N_PIXELS)
    assert not slants(flat).any() and not slants(flat / 255.0).any()
    # Centred, the row's ink is split between rows 13 and 14 alike: a slant would shift one against the other.
    upright = deskew(flat).reshape(images.shape).astype(int)
    np.testing.assert_allclose(upright[:, 13], upright[:, 14], atol=1)
    np.testing.assert_allclose(upright.sum(axis=(1, 2)), flat.sum(axis=1), atol=IMAGE_SIDE)  # rounding only


def test_deskewed_bytes_are_the_ones_every_deskew_figure_was_measured_with():
    # Sixty-four random slanted strokes. The documented --deskew figures hold only for these bytes (with the
    # pinned numpy). Float pixels come back unrounded, so any change to the arithmetic's order shows there.
    rng = np.random.default_rng(0)
    images = np.zeros((64, IMAGE_SIDE, IMAGE_SIDE), np.uint8)
    for image in images:
        top, left, slant = rng.integers(2, 12), rng.integers(4, 16), rng.uniform(-0.6, 0.6)
        for row in range(top, top + 14):
            col = int(left + slant * (row - top))
            image[row, col : col + 3] = rng.integers(128, 256)
    flat = images.reshape(len(images), N_PIXELS)
    assert hashlib.sha256(deskew(flat).tobytes()).hexdigest() == (
        "577181b812775d013772487e1a49988a41f46eb9663422ba502cafaa9b91bf0b"
    )
    assert hashlib.sha256(deskew(flat / 255.0).tobytes()).hexdigest() == (
        "ee43b37aad830125d6dc11209546e5a25f2ad555c8e9d6c202c1b59421ed1f4e"
    )


def test_float_pixels_are_deskewed_on_their_own_scale_without_rounding():
    stroke = slanted_stroke()
    unit = deskew(stroke / 255.0)
    assert unit.dtype == np.float64 and 0 < unit.max() <= 1
    np.testing.assert_allclose(unit * 255, deskew(stroke), atol=0.5 + 1e-9)
