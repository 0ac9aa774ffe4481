"""The README is a front page, and every relative link of the documentation leads somewhere.

README.md stays short (at most 250 lines: what the operator is, the sample, the two commands,
how to install, where the rest is); the rest lives in docs/. Every relative link of README.md,
CHANGELOG.md and docs/*.md must name a file or folder of the repository, and a ``#anchor`` into
a Markdown file must name one of its headings, slugged as GitHub slugs them. Links inside code
(fenced blocks, inline code spans) are not links. No network: web addresses are not checked.
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

REPO = Path(__file__).resolve().parents[3]
README = REPO / "README.md"
PAGES = [README, REPO / "CHANGELOG.md", *sorted((REPO / "docs").glob("*.md"))]
MAX_README_LINES = 250

# Links that leave the repository on purpose, each with the reason.
OUTSIDE = {
    # The lab write-up the project started from, in the project's shared folder beside the clone.
    ("README.md", "../shared/reference/SCENARIO.md"),
}

FENCE = re.compile(r"^\s*(```|~~~)")
CODE_SPAN = re.compile(r"(`+).*?\1")
# [text](target) and ![alt](target); the text may hold one level of brackets ([`x`] or [a [b]]).
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def prose_lines(text: str) -> list[tuple[int, str]]:
    """The lines outside fenced code blocks, with their numbers."""
    lines, fenced = [], False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append((number, line))
    return lines


def links(path: Path) -> list[tuple[int, str]]:
    """Every link target of a Markdown file, with its line number; code spans dropped."""
    found = []
    for number, line in prose_lines(path.read_text()):
        for match in LINK.finditer(CODE_SPAN.sub("", line)):
            found.append((number, match.group(1)))
    return found


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: its text, lowercased, punctuation dropped, spaces hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in it: its text
    text = re.sub(r"<[^>]+>", "", text).lower()  # HTML tags
    text = re.sub(r"[^\w\- ]", "", text)  # \w keeps letters of any script, digits and _
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors of a Markdown file's headings; a repeated one gets -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    result = set()
    for _, line in prose_lines(path.read_text()):
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        result.add(base if count == 0 else f"{base}-{count}")
    return result


def broken(page: Path, root: Path = REPO) -> list[str]:
    """What is wrong with the relative links of one page, one line each."""
    problems = []
    name = page.relative_to(root).as_posix()
    for number, target in links(page):
        if not target or SCHEME.match(target) or target.startswith("//"):
            continue
        where = f"{name}:{number}: {target}"
        file_part, _, fragment = target.partition("#")
        dest = (page.parent / unquote(file_part)).resolve() if file_part else page
        if not dest.is_relative_to(root):
            if (name, target) not in OUTSIDE:
                problems.append(f"{where}: leaves the repository")
            continue
        if not dest.exists():
            problems.append(f"{where}: no such file")
        elif fragment and dest.suffix == ".md" and unquote(fragment) not in anchors(dest):
            problems.append(f"{where}: no heading with that anchor in {dest.relative_to(root)}")
    return problems


def test_readme_is_a_front_page() -> None:
    lines = len(README.read_text().splitlines())
    assert lines <= MAX_README_LINES, (
        f"README.md has {lines} lines, at most {MAX_README_LINES}: move the detail to docs/"
    )


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(REPO).as_posix())
def test_relative_links_lead_somewhere(page: Path) -> None:
    assert broken(page) == []


def test_every_page_is_linked_from_the_readme() -> None:
    targets = {(REPO / t.partition("#")[0]).resolve() for _, t in links(README)}
    missing = [p.relative_to(REPO).as_posix() for p in PAGES[1:] if p.resolve() not in targets]
    assert missing == []


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("Editing a live app: the rule", "editing-a-live-app-the-rule"),
        ("Backup and restore", "backup-and-restore"),
        ("`make test`: what it runs", "make-test-what-it-runs"),
        ("Faults and replicas", "faults-and-replicas"),
        ("See [the API](api.md) (v1alpha1)", "see-the-api-v1alpha1"),
        ("Layout of the repository", "layout-of-the-repository"),
    ],
)
def test_slug_as_github_makes_it(heading: str, anchor: str) -> None:
    assert slug(heading) == anchor


def test_the_checker_finds_what_is_broken(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n\n## Two words\n\n"
        "[ok](#two-words) [bad anchor](#three-words) [ok](#title)\n"
        "`[in code](nowhere.md)` [web](https://example.invalid/x)\n"
        "```\n[in a block](nowhere.md)\n# not a heading\n```\n"
        "[missing](nowhere.md) [also bad](#not-a-heading) [up](../x.md)\n"
        "![picture](pic.png) [folder](sub/) [there](sub/other.md#its-heading)\n"
    )
    (tmp_path / "pic.png").write_bytes(b"")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub/other.md").write_text("# Its heading\n")
    assert links(page) == [
        (5, "#two-words"),
        (5, "#three-words"),
        (5, "#title"),
        (6, "https://example.invalid/x"),
        (11, "nowhere.md"),
        (11, "#not-a-heading"),
        (11, "../x.md"),
        (12, "pic.png"),
        (12, "sub/"),
        (12, "sub/other.md#its-heading"),
    ]
    assert anchors(page) == {"title", "two-words"}
    assert broken(page, root=tmp_path) == [
        "page.md:5: #three-words: no heading with that anchor in page.md",
        "page.md:11: nowhere.md: no such file",
        "page.md:11: #not-a-heading: no heading with that anchor in page.md",
        "page.md:11: ../x.md: leaves the repository",
    ]
