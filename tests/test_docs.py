"""The documentation holds together: every relative link in README.md and docs/
leads to a file in the repository, and its #anchor to a heading of that file; the
README links to the design; and nothing in the repository points outside it."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
THIS_FILE = Path(__file__).resolve()

MARKDOWN_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]

OUTSIDE_NAMES = ("../shared", "DESIGN.md")
"""The design once lived beside the repository, in ../shared/DESIGN.md; it is
docs/design.md now, and nothing may name the old place."""
COMMON_PARENTS = {"/", "/tmp", "/var/tmp", "/home", "/root", "/opt", "/srv", "/usr/src"}
"""Directories a checkout may sit in whose names also appear in ordinary text
(`/opt/confide` in a systemd unit): not searched for."""

_FENCE = re.compile(r"^\s*(```|~~~)")
_CODE_SPAN = re.compile(r"`[^`\n]*`")
_INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE_DEFINITION = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M)
_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_HTML_ANCHOR = re.compile(r"<a\s+(?:name|id)=\"([^\"]+)\"")
_URL_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
_PARENT_STEPS = re.compile(r"(?<![\w.])(?:\.\./)+[\w.\-/]*")


def prose(markdown: str) -> str:
    """The text outside fenced code blocks, with inline code spans blanked: what
    GitHub renders as links and headings."""
    kept: list[str] = []
    fence: str | None = None
    for line in markdown.splitlines():
        opening = _FENCE.match(line)
        if fence is None and opening:
            fence = opening.group(1)
            kept.append("")
        elif fence is not None:
            if line.strip().startswith(fence):
                fence = None
            kept.append("")
        else:
            kept.append(line)
    return "\n".join(kept)


def slug(heading: str) -> str:
    """A heading's anchor as GitHub makes it: the rendered text in lower case, every
    character but letters, digits, `_`, `-` and spaces dropped, spaces made `-`."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    """Every anchor a file has: its headings' slugs (a repeated one gets -1, -2, ...)
    and explicit `<a name=...>` or `<a id=...>`."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for line in prose(markdown).splitlines():
        heading = _HEADING.match(line)
        if heading:
            base = slug(heading.group(2))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    found.update(_HTML_ANCHOR.findall(markdown))
    return found


def links(markdown: str) -> list[str]:
    """The targets of a file's inline links and images, and of its link definitions."""
    text = _CODE_SPAN.sub("", prose(markdown))
    return _INLINE_LINK.findall(text) + _REFERENCE_DEFINITION.findall(text)


def broken_links(source: Path) -> list[str]:
    """What is wrong with each relative link of one Markdown file, if anything."""
    problems: list[str] = []
    for target in links(source.read_text(encoding="utf-8")):
        if not target or _URL_SCHEME.match(target):
            continue
        path_part, _, anchor = target.partition("#")
        linked = (source.parent / unquote(path_part)).resolve() if path_part else source
        if not linked.is_relative_to(ROOT):
            problems.append(f"{target}: outside the repository")
            continue
        if not linked.exists():
            problems.append(f"{target}: no such file")
            continue
        if anchor:
            if linked.suffix != ".md":
                problems.append(f"{target}: an anchor in a file that is not Markdown")
            elif unquote(anchor) not in anchors(linked.read_text(encoding="utf-8")):
                problems.append(f"{target}: no heading #{anchor} in {linked.relative_to(ROOT)}")
    return problems


def repository_files() -> list[Path]:
    """The files git tracks, and new ones it does not ignore (not yet committed)."""
    try:
        listing = subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT, capture_output=True, check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    names = sorted({name for name in listing.decode().split("\0") if name})
    return [ROOT / name for name in names if (ROOT / name).is_file()]


def text_of(path: Path) -> str | None:
    data = path.read_bytes()
    if b"\0" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def outside_references(path: Path, text: str) -> list[str]:
    """Each place where one file's text names something outside the repository."""
    problems = [f"names {name}" for name in OUTSIDE_NAMES if name in text]
    parent = str(ROOT.parent)
    if parent not in COMMON_PARENTS and f"{parent}/" in text:
        problems.append(f"names {parent}/, the directory the checkout is in")
    if str(ROOT) in text:
        problems.append(f"names {ROOT}, the checkout's own absolute path")
    here = os.path.relpath(path.parent, ROOT)
    for climb in _PARENT_STEPS.findall(text):
        if os.path.normpath(os.path.join(here, climb)).split(os.sep)[0] == "..":
            problems.append(f"{climb} climbs out of the repository")
    return problems


@pytest.mark.parametrize("source", MARKDOWN_FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_leads_to_a_file_and_heading_in_the_repository(source: Path) -> None:
    problems = broken_links(source)
    assert not problems, "\n".join(problems)


def test_the_readme_links_to_the_design() -> None:
    assert "docs/design.md" in links((ROOT / "README.md").read_text(encoding="utf-8"))


def test_nothing_in_the_repository_points_outside_it() -> None:
    problems = []
    for path in repository_files():
        text = text_of(path)
        if text is None or path.resolve() == THIS_FILE:
            continue
        problems += [f"{path.relative_to(ROOT)}: {p}" for p in outside_references(path, text)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(("heading", "anchor"), [
    ("What the server stores", "what-the-server-stores"),
    ("What Confide promises, and against whom", "what-confide-promises-and-against-whom"),
    ("TURN with coturn from Debian's packages", "turn-with-coturn-from-debians-packages"),
    ("`/readyz`", "readyz"),
    ("Media plane, against Janus", "media-plane-against-janus"),
    ("[Figures](#figures) — last run", "figures--last-run"),
    ("snake_case and CAPS", "snake_case-and-caps"),
])
def test_anchors_follow_githubs_slug_rules(heading: str, anchor: str) -> None:
    assert slug(heading) == anchor


def test_a_repeated_heading_gets_a_numbered_anchor_and_code_blocks_have_none() -> None:
    markdown = "# Notes\n\n## Notes\n\n```ini\n# not a heading\n```\n"
    assert anchors(markdown) == {"notes", "notes-1"}


def test_links_in_code_are_not_links() -> None:
    markdown = "[a](a.md) `[b](b.md)`\n\n```\n[c](c.md)\n```\n\n[d]: d.md\n"
    assert links(markdown) == ["a.md", "d.md"]
