"""The docs stand alone (issue 18, item 5): every page or section they cite is in the repository,
and data.md's commands match the CLI."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
SOURCES = [*DOCS.glob("*.md"), *(ROOT / "src" / "selfdistill").rglob("*.py"),
           *(ROOT / "src" / "selfdistill" / "recipes").glob("*.yaml")]
LINK = re.compile(r"\]\(([^)#\s]+\.md)(#[^)]*)?\)")
SECTION = re.compile(r"methods\.md(?:\)|`)?,? (?:section|§)\s*(\d+)")


def _docs_pages() -> list[Path]:
    return sorted(DOCS.glob("*.md"))


@pytest.mark.parametrize("page", _docs_pages(), ids=lambda p: p.name)
def test_every_markdown_link_of_a_page_resolves(page):
    missing = [m[1] for m in LINK.finditer(page.read_text()) if not m[1].startswith("http")
               and not (page.parent / m[1]).exists()]
    assert not missing, f"{page.name} links to files that are not in the repository: {missing}"


def test_methods_md_exists_with_every_section_the_code_and_docs_cite():
    methods = DOCS / "methods.md"
    assert methods.is_file(), "docs/methods.md is cited by docs and code but missing"
    have = {int(n) for n in re.findall(r"^## (\d+)\.", methods.read_text(), re.M)}
    cited = {(path.relative_to(ROOT).as_posix(), int(n)) for path in SOURCES
             for n in SECTION.findall(path.read_text(encoding="utf-8"))}
    assert cited, "expected citations of methods.md sections"
    missing = sorted((path, n) for path, n in cited if n not in have)
    assert not missing, f"sections cited but not in docs/methods.md: {missing}"


def test_docs_cite_methods_md_as_a_link_or_a_docs_path():
    bare = []
    for page in _docs_pages():
        if page.name == "methods.md":
            continue
        for line in page.read_text().splitlines():
            rest = line.replace("[methods.md](methods.md)", "").replace("docs/methods.md", "")
            if "methods.md" in rest:
                bare.append(f"{page.name}: {line.strip()}")
    assert not bare, "\n".join(bare)


def test_data_md_usage_lines_match_the_parser():
    from selfdistill.cli import build_parser

    text = (DOCS / "data.md").read_text()
    parser = build_parser()
    data = next(a for a in parser._actions if a.dest == "command").choices["data"]
    actions = next(a for a in data._actions if a.dest == "data_command").choices
    for name in ("check", "show"):
        usage = next(line for line in text.splitlines() if line.startswith(f"selfdistill data {name} "))
        documented = set(re.findall(r"--[a-z-]+", usage))
        real = {o for a in actions[name]._actions for o in a.option_strings if o.startswith("--") and o != "--help"}
        assert documented == real, f"data {name}: documented {sorted(documented)}, real {sorted(real)}"
    assert "data.columns=" in text  # the train syntax of a column mapping is documented
