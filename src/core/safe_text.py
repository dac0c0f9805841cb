"""Text made safe to print: credentials masked, control characters escaped.

Every one-line error passes through `safe_line` at the command-line boundary, and
the Kaggle client passes what came over the network through `printable`, so a
library message that quotes a token, or a reason from Kaggle that carries a
terminal escape sequence, reaches the console harmless.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable

MASK = "***"
# The environment variables that hold a Kaggle secret (the user name is not one).
SECRET_VARIABLES = ("KAGGLE_API_TOKEN", "KAGGLE_KEY")
# Shapes a Kaggle credential takes inside a library's message: an HTTP authorization value, a
# new-style token, a legacy 32-hex-digit key, or a name=value pair naming a secret.
TOKEN_SHAPED = re.compile(
    r"(?i)\b(?:bearer|basic)\s+[^\s'\"]+"
    r"|\bKGAT_[A-Za-z0-9_-]+"
    r"|(?<![0-9A-Fa-f])[0-9A-Fa-f]{32}(?![0-9A-Fa-f])"
    r"|\b(?:token|key|secret|password|authorization)(['\"]?\s*[:=]\s*['\"]?)[^\s'\",}]+"
)


def redact(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` with each of `secrets` (and anything token-shaped) replaced by `MASK`."""
    for secret in sorted({value for value in secrets if len(value) >= 4}, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return TOKEN_SHAPED.sub(_mask_match, text)


def _mask_match(match: re.Match) -> str:
    # A name=value pair keeps its name, so the message still says which setting was wrong.
    if match.group(1) is not None:
        return match.group(0)[: match.start(1) - match.start(0)] + match.group(1) + MASK
    return MASK


def printable(text: str) -> str:
    """`text` with control characters, escapes and lone surrogates written as Python escapes (`\\x1b`)."""
    return "".join(char if char.isprintable() else char.encode("unicode_escape").decode("ascii") for char in str(text))


def environment_secrets() -> list[str]:
    """The secret values set in the environment, as given and without surrounding whitespace."""
    values = [os.environ.get(name, "") for name in SECRET_VARIABLES]
    return [value for raw in values for value in (raw, raw.strip()) if value.strip()]
