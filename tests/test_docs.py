"""The README and the manual in docs/: the README stays a front door, and every link between
them resolves inside the repository (a file that exists, and a heading where one is named)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README_MAX_LINES = 220
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)
CODE = re.compile(r"`[^`\n]*`")


def markdown_files() -> list[Path]:
    """README.md and every Markdown file under docs/."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def links(text: str) -> list[str]:
    """The targets of the Markdown links in ``text``, outside code blocks and code spans."""
    return LINK.findall(CODE.sub("", FENCE.sub("", text)))


def anchors(text: str) -> set[str]:
    """The anchors of ``text``'s headings as GitHub makes them: lower case, punctuation
    dropped, spaces as hyphens."""
    titles = re.findall(r"^#+\s+(.+?)\s*$", FENCE.sub("", text), re.M)
    return {re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-") for title in titles}


def problems(page: Path, root: Path) -> list[str]:
    """Each link of ``page`` that leaves ``root``, names a missing file or a missing heading."""
    found = []
    for target in links(page.read_text()):
        where = f"{page.relative_to(root)}: {target}"
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I) or target.startswith("/"):
            found.append(f"{where} leaves the repository")
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.is_relative_to(root):
            found.append(f"{where} leaves the repository")
        elif not file.exists():
            found.append(f"{where} does not exist")
        elif anchor and file.suffix == ".md" and anchor not in anchors(file.read_text()):
            found.append(f"{where} names no heading of {file.name}")
    return found


@pytest.mark.parametrize("page", markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_link_resolves_inside_the_repository(page: Path) -> None:
    assert problems(page, ROOT) == []


def test_readme_is_a_front_door() -> None:
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES
    assert "## The answer" in lines


def test_readme_indexes_every_page_of_the_manual() -> None:
    readme = links((ROOT / "README.md").read_text())
    pages = [str(p.relative_to(ROOT)) for p in markdown_files()[1:]]
    assert [p for p in pages if p not in readme] == []


def test_the_check_finds_each_kind_of_bad_link(tmp_path: Path) -> None:
    root = tmp_path / "repo"
    (root / "docs").mkdir(parents=True)
    (root / "docs" / "a.md").write_text("# A page\n\n## Its part\n")
    page = root / "README.md"
    page.write_text(
        "[ok](docs/a.md) [ok](docs/a.md#its-part) [ok](#top) `[code](../x)`\n"
        "# Top\n"
        "[gone](docs/b.md) [up](../shared/seed/) [web](https://example.org) "
        "[abs](/etc/passwd) [part](docs/a.md#no-such-part)\n"
        "```\n[fenced](../fenced)\n```\n"
    )
    found = problems(page, root)
    assert found == [
        "README.md: docs/b.md does not exist",
        "README.md: ../shared/seed/ leaves the repository",
        "README.md: https://example.org leaves the repository",
        "README.md: /etc/passwd leaves the repository",
        "README.md: docs/a.md#no-such-part names no heading of a.md",
    ]
