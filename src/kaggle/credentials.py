"""Which Kaggle credentials the official client will use, found without printing them.

The client itself ignores a `kaggle.json` it cannot parse and then reports "no
credentials"; reading the file here first names the real problem instead.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from src.core.errors import KaggleCredentialsError
from src.core.readers import UnreadableFile, read_json
from src.core.safe_text import SECRET_VARIABLES

TOKEN_URL = "https://www.kaggle.com/settings/api"
MAX_KAGGLE_JSON_BYTES = 64 << 10  # a user name and a key are under 200 bytes
TOKEN_FILES = ("access_token", "access_token.txt", "credentials.json")
NO_CREDENTIALS = (
    f"no Kaggle credentials found: create an API token at {TOKEN_URL}, then either save the downloaded "
    "kaggle.json as ~/.kaggle/kaggle.json (chmod 600), or set KAGGLE_USERNAME and KAGGLE_KEY, "
    "or set KAGGLE_API_TOKEN"
)


def config_dir() -> Path:
    """Where the kaggle client looks for `kaggle.json` (the same rule as kaggle 2.x)."""
    if os.environ.get("KAGGLE_CONFIG_DIR"):
        return Path(os.environ["KAGGLE_CONFIG_DIR"])
    legacy = Path.home() / ".kaggle"
    if legacy.exists() or not sys.platform.startswith("linux"):
        return legacy
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "kaggle"


def read_kaggle_json() -> dict[str, str]:
    """The user name and key stored in `kaggle.json`; empty when there is no such file.

    Raises:
        KaggleCredentialsError: The file exists but is not a JSON object of strings.
    """
    path = config_dir() / "kaggle.json"
    if not path.exists():
        return {}
    try:
        values = read_json(path, "kaggle.json", expect=object, max_bytes=MAX_KAGGLE_JSON_BYTES)
    except UnreadableFile as error:
        # The reason only, which never quotes the file: it holds the key.
        raise _malformed(path, error.reason) from None
    if not isinstance(values, dict) or not all(isinstance(value, str) for value in values.values()):
        raise _malformed(path, 'expected {"username": "...", "key": "..."}')
    return values


def _malformed(path: Path, reason: str) -> KaggleCredentialsError:
    return KaggleCredentialsError(f"malformed kaggle.json at {path} ({reason}); download a new token at {TOKEN_URL}")


def find_credentials() -> str | None:
    """Name the credentials the kaggle client will use (never their value), or None."""
    if os.environ.get("KAGGLE_API_TOKEN"):
        return "KAGGLE_API_TOKEN"
    for name in TOKEN_FILES:
        path = Path.home() / ".kaggle" / name
        if path.is_file() and _read_token(path).strip():
            return str(path)
    if os.environ.get("KAGGLE_USERNAME") and os.environ.get("KAGGLE_KEY"):
        return "KAGGLE_USERNAME/KAGGLE_KEY"
    stored = read_kaggle_json()
    if (os.environ.get("KAGGLE_USERNAME") or stored.get("username")) and (
        os.environ.get("KAGGLE_KEY") or stored.get("key")
    ):
        return str(config_dir() / "kaggle.json")
    return None


def _read_token(path: Path) -> str:
    """A token file's text; a file that is not UTF-8 is a `KaggleCredentialsError` that never quotes it."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise KaggleCredentialsError(
            f"unreadable Kaggle token at {path} (not UTF-8 text); create a new API token at {TOKEN_URL}"
        ) from None


def secret_values() -> list[str]:
    """Every secret the client may send (environment, token files, kaggle.json's key), to mask in messages."""
    values = [os.environ.get(name, "") for name in SECRET_VARIABLES]
    for name in TOKEN_FILES:
        path = Path.home() / ".kaggle" / name
        if path.is_file():
            values.append(path.read_text(encoding="utf-8", errors="replace"))
    try:
        values.append(read_kaggle_json().get("key", ""))
    except KaggleCredentialsError:
        pass  # a malformed kaggle.json is reported by require_credentials; nothing of it is quoted anywhere
    return [value for raw in values for value in (raw, raw.strip()) if value.strip()]


def check_credential_text() -> list[str]:
    """Make the credentials' text safe to send; return a note for each setting that was tidied.

    A secret pasted with its line end (a CI setting, a token file saved on Windows) is
    used without the surrounding whitespace, and the note says so. A character no Kaggle
    credential has (whitespace inside it, a control or non-ASCII character) is refused:
    the HTTP library would otherwise fail on it with the secret quoted in its message.

    Raises:
        KaggleCredentialsError: Names the setting, never its value.
    """
    notes = []
    for name in ("KAGGLE_USERNAME", *SECRET_VARIABLES):
        value = os.environ.get(name)
        if value is None or (name == "KAGGLE_API_TOKEN" and Path(value.strip()).is_file()):
            continue  # KAGGLE_API_TOKEN may name a token file: the client reads it and strips it
        if value != value.strip():
            os.environ[name] = value = value.strip()
            notes.append(f"note: {name} had spaces or line ends around it; they were left out")
        _check_plain(value, name, f"set {name} again, copied from {TOKEN_URL}")
    for name in TOKEN_FILES:
        path = Path.home() / ".kaggle" / name
        if path.is_file():
            _check_plain(_read_token(path).strip(), str(path), f"create a new API token at {TOKEN_URL}")
    for name, value in read_kaggle_json().items():
        if name in ("username", "key"):
            where = f"{config_dir() / 'kaggle.json'}'s {name}"
            _check_plain(value, where, f"download a new token at {TOKEN_URL}", allow_padding=False)
    return notes


def _check_plain(value: str, where: str, fix: str, allow_padding: bool = True) -> None:
    text = value.strip() if allow_padding else value
    if not (text.isascii() and text.isprintable() and not any(char.isspace() for char in text)):
        raise KaggleCredentialsError(
            f"{where} holds a character no Kaggle credential has (whitespace, a control or non-ASCII character); {fix}"
        )


def require_credentials() -> str:
    """The credentials' source, or a `KaggleCredentialsError` saying what to set.

    Whitespace around a secret in the environment is dropped first, with a note on stderr.
    """
    for note in check_credential_text():
        print(note, file=sys.stderr, flush=True)
    source = find_credentials()
    if source is None:
        raise KaggleCredentialsError(NO_CREDENTIALS)
    return source


def kaggle_username() -> str | None:
    """The Kaggle user name from KAGGLE_USERNAME or `kaggle.json`, if set."""
    return os.environ.get("KAGGLE_USERNAME") or read_kaggle_json().get("username") or None
