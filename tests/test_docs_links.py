"""Relative links in README.md and docs/ point at files that exist, and at headings those files have."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LINK = re.compile(r"\]\(([^)\s]+)\)")


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation but hyphens dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(md: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", md.read_text(), flags=re.S)  # a '#' comment in a code block is no heading
    return {slug(h) for h in re.findall(r"^#+ (.*)$", text, flags=re.M)}


def broken_links(files, root: Path = REPO) -> list[str]:
    out = []
    for md in files:
        where = md.relative_to(root)
        for target in LINK.findall(md.read_text()):
            if target.startswith(("http://", "https://", "mailto:")):
                continue
            path, _, anchor = target.partition("#")
            dest = (md.parent / path).resolve() if path else md.resolve()
            if not dest.exists():
                out.append(f"{where}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                out.append(f"{where}: {target} (no such heading)")
    return out


def test_the_slug_is_githubs():
    assert slug("All cores of one machine: `--workers`") == "all-cores-of-one-machine---workers"
    assert slug("Random controls") == "random-controls"


def test_every_relative_link_resolves(tmp_path):
    assert broken_links([REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]) == []
    # and the check can fail: a missing file and a missing heading are both caught
    (tmp_path / "a.md").write_text("# Top\n[x](b.md) [y](#top) [z](#nowhere) [w](#not-a-heading) [v](c.md#top)\n"
                                   "```\n# not a heading\n```\n")
    (tmp_path / "c.md").write_text("# Top\n")
    assert broken_links([tmp_path / "a.md"], tmp_path) == [
        "a.md: b.md (no such file)", "a.md: #nowhere (no such heading)", "a.md: #not-a-heading (no such heading)"]
