"""No credential reaches the console or Kaggle by accident, and Kaggle's text is printed harmless.

Every command here signs in with the real kaggle client against the fake Kaggle;
`run_with_fake` also checks that neither fake secret appears in anything printed.
"""

from __future__ import annotations

import json
import os

import pytest

from src.core.errors import EXIT_KAGGLE_CREDENTIALS, EXIT_KAGGLE_FAILED, EXIT_USER
from src.core.safe_text import MASK, printable, redact
from src.kaggle.kernel_build import CODE_FILE, METADATA_FILE
from tests.fake_kaggle import FAKE_KEY, FAKE_TOKEN, FakeKaggle, run_with_fake
from tests.helpers import assert_one_line_error


def upload(url, tmp_path, good_file, tiny_data, **options):
    args = ("-m", "src.upload", good_file, "-m", "x", "--data", tiny_data, "--no-wait")
    return run_with_fake(*args, url=url, home=tmp_path / "home", **options)


@pytest.mark.parametrize("padding", ["\n", "\r\n", "  "], ids=["line-end", "windows-line-end", "spaces"])
def test_a_token_with_whitespace_around_it_is_used_without_it(padding, good_file, tiny_data, tmp_path):
    with FakeKaggle(accept_token=True) as fake:
        result = upload(
            fake.url,
            tmp_path,
            good_file,
            tiny_data,
            credentials=False,
            extra={"KAGGLE_API_TOKEN": FAKE_TOKEN + padding},
        )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "note: KAGGLE_API_TOKEN had spaces or line ends around it; they were left out"
    assert fake.uploads() == [good_file.read_bytes()]


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("KAGGLE_API_TOKEN", FAKE_TOKEN[:6] + " " + FAKE_TOKEN[6:]),
        ("KAGGLE_API_TOKEN", FAKE_TOKEN + "\u00e9"),
        ("KAGGLE_KEY", FAKE_KEY + "\u0142"),  # not Latin-1: the HTTP library's error would quote the key
        ("KAGGLE_KEY", FAKE_KEY[:5] + "\x1b" + FAKE_KEY[5:]),
    ],
    ids=["inner-space", "non-ascii-token", "non-latin1-key", "control-character"],
)
def test_a_credential_no_kaggle_secret_can_be_is_refused_unquoted(variable, value, good_file, tiny_data, tmp_path):
    with FakeKaggle(accept_token=True) as fake:
        result = upload(fake.url, tmp_path, good_file, tiny_data, extra={variable: value})
    line = assert_one_line_error(result, EXIT_KAGGLE_CREDENTIALS, f"{variable} holds a character no Kaggle credential")
    assert value not in line and value.strip()[-4:] not in line
    assert fake.requests == []


def test_a_key_in_kaggle_json_with_a_line_end_is_refused(good_file, tiny_data, tmp_path):
    config = tmp_path / "home" / ".kaggle"
    config.mkdir(parents=True)
    (config / "kaggle.json").write_text(json.dumps({"username": "fake-user", "key": FAKE_KEY + "\n"}))
    with FakeKaggle() as fake:
        result = upload(fake.url, tmp_path, good_file, tiny_data, credentials=False)
    assert_one_line_error(result, EXIT_KAGGLE_CREDENTIALS, "kaggle.json's key holds a character")
    assert fake.requests == []


def build_kernel(url, tmp_path):
    kernel = tmp_path / "kernel"
    result = run_with_fake("-m", "src.kernel", "--out-dir", kernel, url=url, home=tmp_path / "home")
    assert result.returncode == 0, result.stderr
    return kernel


def push(url, tmp_path, kernel):
    return run_with_fake("-m", "src.kaggle", "push-kernel", kernel, url=url, home=tmp_path / "home")


@pytest.mark.slow
def test_push_refuses_a_code_file_other_than_the_built_script(tmp_path):
    with FakeKaggle() as fake:
        kernel = build_kernel(fake.url, tmp_path)
        secret = tmp_path / "home" / ".kaggle" / "kaggle.json"
        secret.write_text(json.dumps({"username": "fake-user", "key": FAKE_KEY}))
        metadata = json.loads((kernel / METADATA_FILE).read_text())
        (kernel / METADATA_FILE).write_text(json.dumps({**metadata, "code_file": "../home/.kaggle/kaggle.json"}))
        result = push(fake.url, tmp_path, kernel)
    assert_one_line_error(result, EXIT_USER, f"code_file must be {CODE_FILE}")
    assert fake.calls("SaveKernel") == []


def test_push_refuses_a_script_that_links_out_of_the_kernel_folder(tmp_path):
    with FakeKaggle() as fake:
        kernel = build_kernel(fake.url, tmp_path)
        secret = tmp_path / "kaggle.json"
        secret.write_text(json.dumps({"username": "fake-user", "key": FAKE_KEY}))
        (kernel / CODE_FILE).unlink()
        os.symlink(secret, kernel / CODE_FILE)
        linked = push(fake.url, tmp_path, kernel)
        (kernel / CODE_FILE).unlink()
        (kernel / CODE_FILE).write_text("print('not built by the package')\n")
        foreign = push(fake.url, tmp_path, kernel)
    assert_one_line_error(linked, EXIT_USER, "is missing or a link")
    assert_one_line_error(foreign, EXIT_USER, "not a script built by python -m src.kernel")
    assert fake.calls("SaveKernel") == []


def test_a_scoring_error_with_terminal_escapes_is_printed_escaped(good_file, tiny_data, tmp_path):
    reason = "\x1b[31mbad file\x1b[0m\x07"
    with FakeKaggle(scoring=["ERROR"], scoring_error=reason) as fake:
        args = ("-m", "src.upload", good_file, "-m", "x", "--data", tiny_data)
        result = run_with_fake(*args, url=fake.url, home=tmp_path / "home")
    line = assert_one_line_error(result, EXIT_KAGGLE_FAILED)
    assert "\\x1b[31mbad file\\x1b[0m\\x07" in line
    assert "\x1b" not in result.stdout + result.stderr and "\x07" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    "message",
    [
        "Invalid header value b'Bearer KGAT_0123abcd\\n'",
        "auth failed: Basic ZmFrZTprZXk=",
        "key=0123456789abcdef0123456789abcdef rejected",
        '{"token": "opaque-value-here"}',
    ],
)
def test_token_shaped_text_is_masked(message):
    masked = redact(message)
    assert MASK in masked
    for secret in ("KGAT_0123abcd", "ZmFrZTprZXk=", "0123456789abcdef0123456789abcdef", "opaque-value-here"):
        assert secret not in masked


def test_known_secrets_are_masked_and_a_sha256_is_kept():
    digest = "ab" * 32
    assert redact(f"sent s3cret-value with {digest}", ["s3cret-value"]) == f"sent {MASK} with {digest}"


def test_printable_escapes_controls_and_lone_surrogates():
    assert printable("a\x1b[0mb\ud800c\u00e9") == "a\\x1b[0mb\\ud800c\u00e9"
