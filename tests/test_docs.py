"""The README stays a ten-minute read, its headline tables are the ones in docs/results.md, and
every relative link in the README and docs/ reaches a file (and a heading, for #anchors)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def tables(text: str) -> list[str]:
    """Each Markdown table that starts with a `| group |` header, as one string."""
    out, current = [], []
    for line in text.splitlines():
        if line.startswith("| group |") or (current and line.startswith("|")):
            current.append(line)
        elif current:
            out.append("\n".join(current))
            current = []
    return out + (["\n".join(current)] if current else [])


def anchors(path: Path) -> set[str]:
    """GitHub's heading anchors: lower case, punctuation dropped, spaces to hyphens."""
    heads = [
        line.lstrip("#").strip()
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.startswith("#")
    ]
    return {re.sub(r"[^\w\- ]", "", h.lower()).replace(" ", "-") for h in heads}


def test_readme_is_short() -> None:
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 350


def test_readme_tables_are_the_results_tables() -> None:
    results = (ROOT / "docs" / "results.md").read_text(encoding="utf-8")
    found = tables(README.read_text(encoding="utf-8"))
    assert found, "the README's 'What we found' has no table"
    for table in found:
        assert table in results, "a README table differs from docs/results.md:\n" + table


@pytest.mark.parametrize("page", [README, *DOCS], ids=lambda p: p.name)
def test_relative_links_resolve(page: Path) -> None:
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        if target.startswith(("http://", "https://", "mailto:")):
            continue
        file, _, anchor = target.partition("#")
        path = (page.parent / file).resolve() if file else page
        assert path.exists(), f"{page.name}: {target} does not exist"
        if anchor and path.suffix == ".md":
            assert anchor in anchors(path), f"{page.name}: no heading for #{anchor} in {path.name}"
