"""The README stays a short front door, and it and docs/ link only to files and headings that exist."""

from __future__ import annotations

import re
from pathlib import Path

from tests.helpers import REPO_ROOT

DOCS = sorted((REPO_ROOT / "docs").glob("*.md"))
PAGES = [REPO_ROOT / "README.md", *DOCS]
# [text](target) outside code; a target with a scheme (https:, mailto:) is not relative.
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", flags=re.MULTILINE | re.DOTALL)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading's anchor in a markdown file, with GitHub's -1, -2 suffixes for repeats."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for match in re.finditer(r"^#{1,6} +(.+?) *#*$", FENCE.sub("", path.read_text()), flags=re.MULTILINE):
        base = slug(match.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def relative_links(path: Path) -> list[str]:
    text = FENCE.sub("", path.read_text())
    text = re.sub(r"`[^`\n]*`", "", text)
    return [target for target in LINK.findall(text) if not re.match(r"^[a-z][a-z0-9+.-]*:", target)]


def test_slug_is_githubs():
    assert slug("The `cnn` figures") == "the-cnn-figures"
    assert slug("Bad input, output safety, exit codes, reproducibility") == (
        "bad-input-output-safety-exit-codes-reproducibility"
    )
    assert slug("Kaggle: download, submit, score") == "kaggle-download-submit-score"


def test_readme_is_short():
    assert len((REPO_ROOT / "README.md").read_text().splitlines()) <= 260


def test_every_relative_link_and_anchor_resolves():
    assert DOCS, "docs/ holds no markdown files"
    broken = []
    for page in PAGES:
        for target in relative_links(page):
            file_part, _, anchor = target.partition("#")
            linked = (page.parent / file_part).resolve() if file_part else page
            if not linked.exists():
                broken.append(f"{page.relative_to(REPO_ROOT)}: {target}: no such file")
            elif anchor and (linked.suffix != ".md" or anchor not in anchors(linked)):
                broken.append(f"{page.relative_to(REPO_ROOT)}: {target}: no such heading")
    assert broken == []


def test_every_table_has_a_header_row():
    headless = []
    for page in PAGES:
        lines = page.read_text().splitlines()
        for number, line in enumerate(lines):
            if re.match(r"^\|( *:?-{3,}:? *\|)+$", line) and (number == 0 or not lines[number - 1].startswith("|")):
                headless.append(f"{page.relative_to(REPO_ROOT)}: line {number + 1}")
    assert headless == []


def test_docs_name_no_local_paths_or_internal_words():
    offending = [
        f"{page.relative_to(REPO_ROOT)}: {word!r}"
        for page in PAGES
        for word in ("/work/", "/tmp/", "the issue")
        if word in page.read_text().lower()
    ]
    assert offending == []
