"""The reference docs (docs/evaluation.md, docs/protocols.md, docs/methods.md) stay complete and self-contained.

- every protocol of the protocol registry has a section in docs/protocols.md;
- every registered method has a section in docs/methods.md (this test is meant to fail when a method is added
  without one: its message lists the names that need a section);
- every relative link in docs/*.md resolves to a file or folder of the repository (and an anchor into docs/ to a
  heading);
- nothing in docs/ points outside the repository.

Headings are anchors that README and docstrings link to (``docs/methods.md#dpsh``), so a section's heading is the
registered name itself (``## DPSH``, ``### cifar10-1``).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hashbench.data.protocols import get_protocol, list_protocols
from hashbench.data.registry import datamodule_class_for
from hashbench.metrics import functional
from hashbench.registry import get_method, list_methods

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
REFERENCE = ("evaluation.md", "protocols.md", "methods.md")

_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_REFERENCE_LINK = re.compile(r"^\s*\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$")
_CODE_SPAN = re.compile(r"`[^`]*`")
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def _doc_files() -> list[Path]:
    return sorted(DOCS.glob("*.md"))


def _prose_lines(path: Path) -> list[str]:
    """The file's lines outside fenced code blocks."""
    lines, fenced = [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(line)
    return lines


def _headings(path: Path) -> list[str]:
    """Heading texts of a Markdown file (backticks removed), in order."""
    out = []
    for line in _prose_lines(path):
        match = _HEADING.match(line)
        if match:
            out.append(match.group(2).replace("`", "").strip())
    return out


def _slug(text: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = text.strip().lower()
    return "".join(ch for ch in text if ch.isalnum() or ch in " -_").replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    """Every anchor of a file, with GitHub's ``-1``, ``-2`` suffixes for repeated headings."""
    seen: dict[str, int] = {}
    anchors = set()
    for heading in _headings(path):
        slug = _slug(heading)
        count = seen.get(slug, 0)
        anchors.add(slug if count == 0 else f"{slug}-{count}")
        seen[slug] = count + 1
    return anchors


def _links(path: Path) -> list[str]:
    """Link targets of a file (inline and reference-style), outside code blocks and code spans."""
    targets = []
    for line in _prose_lines(path):
        ref = _REFERENCE_LINK.match(line)
        if ref:
            targets.append(ref.group(1))
            continue
        # A code span as link text still leaves "[](target)" behind, which the pattern finds.
        targets += _INLINE_LINK.findall(_CODE_SPAN.sub("", line))
    return targets


def _builtin_protocols() -> list[str]:
    """Protocols of the registry read by a hashbench family (plugins' protocols document themselves)."""
    return [name for name in list_protocols() if datamodule_class_for(name).__module__.startswith("hashbench.")]


def _builtin_methods() -> list[str]:
    return [name for name in list_methods() if get_method(name).__module__.startswith("hashbench.methods.")]


def _missing_sections(doc: str, names: list[str]) -> list[str]:
    path = DOCS / doc
    headings = set(_headings(path))
    anchors = _anchors(path)
    # The heading must be the name itself, and its anchor must not be taken by an earlier heading.
    return [name for name in names if name not in headings or _slug(name) not in anchors]


@pytest.mark.parametrize("doc", REFERENCE)
def test_reference_doc_exists(doc: str) -> None:
    path = DOCS / doc
    assert path.is_file(), f"{path.relative_to(ROOT)} is missing"
    assert _headings(path), f"{path.relative_to(ROOT)} has no headings"


def test_every_registered_protocol_has_a_section() -> None:
    names = _builtin_protocols()
    assert names, "the protocol registry returned no protocols"
    missing = _missing_sections("protocols.md", names)
    assert not missing, (
        f"docs/protocols.md has no section for the protocol(s) {', '.join(missing)}: add a heading that is exactly "
        "the protocol name (e.g. `### cifar10-1`) under its family, with sizes, split, cut-off, transform, files "
        "and source, and a row in the summary table"
    )


def test_every_registered_method_has_a_section() -> None:
    """Fails for every registered method without a heading of its own in docs/methods.md (by design)."""
    names = _builtin_methods()
    assert names, "the method registry returned no methods"
    missing = _missing_sections("methods.md", names)
    assert not missing, (
        f"docs/methods.md has no section for the registered method(s) {', '.join(missing)}: add a heading that is "
        "exactly the registered name (e.g. `## DPSH`) in its group (proposed / supervised / unsupervised / "
        "cross-modal / shallow) with the paper, the loss as formulas, the defaults, the [R] parts and deviations "
        "(from the module docstring) and the paper_training recipe"
    )


def _tables(path: Path) -> list[list[list[str]]]:
    """Markdown tables of a file as lists of rows of cell texts (separator rows dropped)."""
    tables: list[list[list[str]]] = []
    current: list[list[str]] = []
    for line in [*_prose_lines(path), ""]:
        if line.startswith("|"):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if not set("".join(cells)) <= set("-: "):
                current.append(cells)
        elif current:
            tables.append(current)
            current = []
    return tables


def test_summary_table_cut_offs_match_the_protocol_table() -> None:
    """The mAP cut-off column of docs/protocols.md's summary table is each protocol's ``map_k``."""
    summary = [t for t in _tables(DOCS / "protocols.md") if "mAP cut-off" in t[0]]
    assert len(summary) == 1, "docs/protocols.md needs one summary table with an `mAP cut-off` column"
    header, *body = summary[0]
    column = header.index("mAP cut-off")
    rows = {re.sub(r"\[([^\]]+)\]\([^)]*\)", r"\1", row[0]).strip("`"): row for row in body}
    for name in _builtin_protocols():
        assert name in rows, f"docs/protocols.md: no summary-table row for {name}"
        k = get_protocol(name).map_k
        assert rows[name][column] == ("all" if k is None else str(k)), (
            f"docs/protocols.md: cut-off of {name} is {rows[name][column]!r}, the protocol table says {k}"
        )


def test_evaluation_doc_names_every_tie_rule_the_code_offers() -> None:
    text = (DOCS / "evaluation.md").read_text(encoding="utf-8")
    missing = [mode for mode in functional._TIES_MODES if f'ties="{mode}"' not in text]
    assert not missing, f"docs/evaluation.md does not describe the tie rule(s) {missing}"


def test_relative_links_resolve_inside_the_repository() -> None:
    problems = []
    for path in _doc_files():
        own = path.relative_to(ROOT)
        for target in _links(path):
            if _SCHEME.match(target):
                continue  # a web address
            file_part, _, anchor = target.partition("#")
            if file_part.startswith("/"):
                problems.append(f"{own}: absolute path {target!r} (use a path relative to the file)")
                continue
            resolved = (path.parent / file_part).resolve() if file_part else path
            if not resolved.is_relative_to(ROOT.resolve()):
                problems.append(f"{own}: {target!r} points outside the repository")
                continue
            if not resolved.exists():
                problems.append(f"{own}: {target!r} does not exist ({resolved.relative_to(ROOT.resolve())})")
                continue
            in_docs = resolved.suffix == ".md" and resolved.parent == DOCS.resolve()
            if anchor and in_docs and anchor not in _anchors(resolved):
                problems.append(f"{own}: {target!r}: no heading with anchor #{anchor} in {resolved.name}")
    assert not problems, "broken links in docs/:\n" + "\n".join(problems)


def test_docs_do_not_point_outside_the_repository() -> None:
    forbidden = ("shared/", "/work/", "file://", "specs/")
    problems = []
    for path in _doc_files():
        own = path.relative_to(ROOT)
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            for needle in forbidden:
                if needle in line:
                    problems.append(f"{own}:{number}: mentions {needle!r}")
        for target in _links(path):
            file_part = target.partition("#")[0]
            if _SCHEME.match(target) or not file_part:
                continue
            escapes = not (path.parent / file_part).resolve().is_relative_to(ROOT.resolve())
            if file_part.startswith(("/", "~")) or escapes:
                problems.append(f"{own}: link {target!r} leaves the repository")
    assert not problems, "docs/ must be self-contained:\n" + "\n".join(problems)
