"""Every relative link of the docs, `[text](path#anchor)`, names a file of the tree and, for a markdown file, one of
its headings (GitHub's anchor rule: lower case, punctuation but `-` and `_` dropped, spaces to `-`)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import ROOT

DOCS = sorted({ROOT / "README.md", *ROOT.glob("*/README.md"), *ROOT.glob("configs/*/README.md"),
               *ROOT.glob("docs/*.md")})
FENCE = re.compile(r"^```.*?^```", flags=re.MULTILINE | re.DOTALL)


def anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives the headings of ``markdown`` (outside code blocks). Time and memory: linear in its
    length."""
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*$", FENCE.sub("", markdown), flags=re.MULTILINE)
    return {re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-") for heading in headings}


def broken_links(doc: Path) -> list[str]:
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", FENCE.sub("", doc.read_text())):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        dest = (doc.parent / path) if path else doc
        if not dest.exists():
            broken.append(f"{target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest.read_text()):
            broken.append(f"{target}: no heading with that anchor in {dest.name}")
    return broken


def test_anchors_follow_githubs_rule():
    text = "# Set-up: two commands\n```\n# not a heading\n```\n## On a GPU: `tools/gpu_check.py`\n"
    assert anchors(text) == {"set-up-two-commands", "on-a-gpu-toolsgpu_checkpy"}


def test_a_broken_link_is_found(tmp_path):
    doc = tmp_path / "x.md"
    doc.write_text("## Here\n[a](#here) [b](#there) [c](missing.md) [d](x.md#here) [e](https://example.com/#x)\n"
                   "```\n[f](in_code.md)\n```\n")
    assert broken_links(doc) == ["#there: no heading with that anchor in x.md", "missing.md: no such file"]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_of_the_docs_resolves(doc):
    assert not broken_links(doc), broken_links(doc)
