"""The specs' ``reported`` blocks carry exactly the papers' numbers of the project's method specification.

The specification (``shared/specs/methods.md`` next to the repository, present in the development checkout and in
CI but not shipped to users) lists the numbers to reproduce in its section "Reported numbers to reproduce". Every
number there must sit in the right spec, row and bit column, and every number of a spec's ``reported`` block must
come from there. The parser fails loudly when a part of the section it expects is missing, so a reworded section
cannot make the test pass vacuously.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hashbench.bench.spec import list_specs, load_spec

METHODS_MD = Path(__file__).resolve().parents[3] / "shared" / "specs" / "methods.md"
SECTION = "## Reported numbers to reproduce"

#: dataset name as the specification writes it → table spec, for each kind of line
DFEH_TABLES = {"CIFAR-10": "cifar10", "NUS-WIDE": "nuswide21"}
DFEH_ABLATION = {
    "CIFAR-10": "dfeh-ablation-cifar10",
    "NUS-WIDE": "dfeh-ablation-nuswide21",
    "SVHN": "dfeh-ablation-svhn",
}
#: the ablation's code length is not stated; the specs place its numbers in this column (see their notes)
ABLATION_BITS = 48
DSH_TABLES = {"CIFAR-10": "dsh-cifar10", "NUS-WIDE": "dsh-nuswide21"}
DPSH_TABLE = "dpsh-cifar10"

_VALUES = r"\.\d+(?:/\.\d+)+"  # .1319/.1367/.1407/.1492
# Where one statement of the section ends: the start of the next one ("<Name> paper, ...", "<Name> ablation, ...",
# "<Name> training time ...", the closing "No result tables ...") or the end of the section.
_NEXT = r"(?=\b[A-Z][\w-]* (?:paper\b|ablation\b|training time\b)|\bNo result tables\b|\Z)"

Expected = dict[str, dict[str, dict[int, float]]]  # spec → row → bits → value


def _number(text: str) -> float:
    return float(text if not text.startswith(".") else "0" + text)


def _values(text: str, where: str) -> list[float]:
    if not re.fullmatch(_VALUES, text):
        pytest.fail(f"{METHODS_MD}: cannot read the values {text!r} of {where}")
    return [_number(v) for v in text.split("/")]


def _section(text: str) -> str:
    start = text.find(SECTION)
    if start < 0:
        pytest.fail(f"{METHODS_MD}: section {SECTION!r} not found")
    rest = text[start + len(SECTION) :]
    end = re.search(r"^## ", rest, flags=re.MULTILINE)
    body = rest[: end.start()] if end else rest
    # One line of text: the statements wrap freely in the file.
    return " ".join(body.split())


def _add(expected: Expected, spec: str, row: str, bits: int, value: float) -> None:
    cells = expected.setdefault(spec, {}).setdefault(row, {})
    if bits in cells and cells[bits] != value:
        pytest.fail(f"{METHODS_MD}: two values for {spec} / {row} / {bits} bits: {cells[bits]} and {value}")
    cells[bits] = value


def _dfeh_tables(section: str, expected: Expected) -> None:
    header = re.compile(rf"DFEH paper, (?P<ds>[\w-]+) mAP \((?P<bits>\d+(?:/\d+)+) bits\):(?P<body>.*?){_NEXT}")
    found = set()
    for match in header.finditer(section):
        ds, bits = match["ds"], [int(b) for b in match["bits"].split("/")]
        if ds not in DFEH_TABLES:
            pytest.fail(f"{METHODS_MD}: a DFEH comparison table for {ds!r}, which no spec is mapped to")
        entries = re.findall(rf"(?P<name>[A-Za-z][\w-]*) (?P<vals>{_VALUES})", match["body"])
        if len(entries) < 2:
            pytest.fail(f"{METHODS_MD}: no 'NAME .v/.v/...' entries read from the DFEH {ds} table")
        leftover = re.sub(rf"[A-Za-z][\w-]* {_VALUES}", "", match["body"])
        if re.search(r"\d", leftover):
            pytest.fail(f"{METHODS_MD}: unparsed numbers in the DFEH {ds} table: {leftover.strip()!r}")
        for name, vals in entries:
            values = _values(vals, f"{name} in the DFEH {ds} table")
            if len(values) != len(bits):
                pytest.fail(f"{METHODS_MD}: {name} has {len(values)} values for {len(bits)} bit lengths ({ds})")
            for b, v in zip(bits, values, strict=True):
                _add(expected, DFEH_TABLES[ds], name, b, v)
        found.add(ds)
    if found != set(DFEH_TABLES):
        pytest.fail(f"{METHODS_MD}: DFEH comparison tables found for {sorted(found)}, expected {sorted(DFEH_TABLES)}")


def _dfeh_ablation(section: str, expected: Expected) -> None:
    match = re.search(rf"DFEH ablation, regularisation weight → mAP \((?P<ds>[^)]*)\):(?P<body>.*?){_NEXT}", section)
    if match is None:
        pytest.fail(f"{METHODS_MD}: the 'DFEH ablation, regularisation weight → mAP (...)' statement is missing")
    datasets = [d.strip() for d in match["ds"].split("/")]
    if set(datasets) != set(DFEH_ABLATION):
        pytest.fail(f"{METHODS_MD}: the DFEH ablation covers {datasets}, expected {sorted(DFEH_ABLATION)}")
    entries = re.findall(rf"(?P<w>\d+(?:\.\d+)?) → (?P<vals>{_VALUES})", match["body"])
    if len(entries) < 2:
        pytest.fail(f"{METHODS_MD}: no 'w → .v/.v/.v' entries read from the DFEH ablation")
    for weight, vals in entries:
        values = _values(vals, f"the DFEH ablation at weight {weight}")
        if len(values) != len(datasets):
            pytest.fail(f"{METHODS_MD}: DFEH ablation weight {weight}: {len(values)} values for {datasets}")
        for ds, v in zip(datasets, values, strict=True):
            _add(expected, DFEH_ABLATION[ds], f"DFEH-w{weight}", ABLATION_BITS, v)


def _dpsh(section: str, expected: Expected) -> list[float]:
    match = re.search(
        rf"DPSH paper, CIFAR-10 \((?P<setting>[^)]*)\) (?P<bits>\d+(?:/\d+)+): (?P<vals>{_VALUES})(?P<body>.*?){_NEXT}",
        section,
    )
    if match is None:
        pytest.fail(f"{METHODS_MD}: the 'DPSH paper, CIFAR-10 (...) 12/24/32/48: ...' statement is missing")
    if "cifar10-1" not in match["setting"]:
        pytest.fail(f"{METHODS_MD}: the DPSH numbers are no longer on cifar10-1 ({match['setting']!r})")
    bits = [int(b) for b in match["bits"].split("/")]
    values = _values(match["vals"], "the DPSH paper row")
    if len(values) != len(bits):
        pytest.fail(f"{METHODS_MD}: DPSH: {len(values)} values for bits {bits}")
    for b, v in zip(bits, values, strict=True):
        _add(expected, DPSH_TABLE, "DPSH", b, v)
    port = re.search(rf"PyTorch port \w+ (?P<vals>{_VALUES})", match["body"])
    if port is None:
        pytest.fail(f"{METHODS_MD}: the DPSH authors' PyTorch port numbers are missing")
    return _values(port["vals"], "the DPSH PyTorch port")


def _dsh(section: str, expected: Expected) -> None:
    match = re.search(rf"DSH paper: (?P<body>.*?){_NEXT}", section)
    if match is None:
        pytest.fail(f"{METHODS_MD}: the 'DSH paper: ...' statement is missing")
    found = set()
    for part in match["body"].split(";"):
        group = re.match(r"\s*(?P<ds>[A-Z][\w-]*) (?P<cells>.*)", part)
        cells = re.findall(r"(\d+) bits (\.\d+)", group["cells"]) if group else []
        if not cells:
            pytest.fail(f"{METHODS_MD}: cannot read the DSH numbers {part.strip()!r}")
        if group["ds"] not in DSH_TABLES:
            pytest.fail(f"{METHODS_MD}: DSH numbers for {group['ds']!r}, which no spec is mapped to")
        for b, v in cells:
            _add(expected, DSH_TABLES[group["ds"]], "DSH", int(b), _number(v))
        found.add(group["ds"])
    if found != set(DSH_TABLES):
        pytest.fail(f"{METHODS_MD}: DSH numbers found for {sorted(found)}, expected {sorted(DSH_TABLES)}")


@pytest.fixture(scope="module")
def facts() -> tuple[Expected, list[float]]:
    if not METHODS_MD.is_file():
        pytest.skip(f"the method specification {METHODS_MD} is not available (it is not shipped with hashbench)")
    section = _section(METHODS_MD.read_text(encoding="utf-8"))
    expected: Expected = {}
    _dfeh_tables(section, expected)
    _dfeh_ablation(section, expected)
    port = _dpsh(section, expected)
    _dsh(section, expected)
    return expected, port


def test_the_parser_reads_every_statement(facts: tuple[Expected, list[float]]) -> None:
    expected, port = facts
    assert set(expected) == {*DFEH_TABLES.values(), *DFEH_ABLATION.values(), *DSH_TABLES.values(), DPSH_TABLE}
    assert len(expected["cifar10"]) == len(expected["nuswide21"]) == 13  # the DFEH comparison rows
    assert all(len(cells) == 4 for table in DFEH_TABLES.values() for cells in expected[table].values())
    assert all(len(expected[table]) == 4 for table in DFEH_ABLATION.values())  # weights 0, 0.1, 0.01, 0.001
    assert len(expected[DPSH_TABLE]["DPSH"]) == len(port) == 4


@pytest.mark.parametrize("table", [*DFEH_TABLES.values(), *DFEH_ABLATION.values(), *DSH_TABLES.values(), DPSH_TABLE])
def test_spec_reports_exactly_the_papers_numbers(table: str, facts: tuple[Expected, list[float]]) -> None:
    expected, _ = facts
    spec = load_spec(table)
    # Equality both ways: every number of the specification is in the spec, and the spec has no other.
    assert spec.reported == expected[table]


def test_ablation_rows_are_dfeh_with_alpha_and_beta_at_the_weight(facts: tuple[Expected, list[float]]) -> None:
    expected, _ = facts
    for table in DFEH_ABLATION.values():
        spec = load_spec(table)
        assert spec.bits == [ABLATION_BITS]
        for row in expected[table]:
            variant = spec.variant_for(row)
            assert variant is not None, f"{table}: row {row} is not a variant"
            weight = float(row.removeprefix("DFEH-w"))
            assert variant.method == "DFEH" and variant.kwargs == {"alpha": weight, "beta": weight}
        assert [spec.variant_for(m).name for m in spec.methods] == list(expected[table])


def test_dpsh_port_numbers_are_in_the_notes(facts: tuple[Expected, list[float]]) -> None:
    _, port = facts
    notes = load_spec(DPSH_TABLE).notes
    for value in port:
        assert f"{value:.4f}" in notes, f"{DPSH_TABLE}: the PyTorch port's {value} is not in the notes"


def test_no_other_spec_has_a_reported_block(facts: tuple[Expected, list[float]]) -> None:
    expected, _ = facts
    # A reported number that does not come from the specification would go unchecked. The anchor tables of the
    # newer baselines (CSQ, OrthoHash) are pinned to their sources by tests/bench/test_anchor_tables.py instead.
    from tests.bench.test_anchor_tables import EXPECTED as ANCHOR_TABLES
    from tests.bench.test_crossmodal_tables import EXPECTED as CROSSMODAL_TABLES

    checked = set(expected) | set(ANCHOR_TABLES) | set(CROSSMODAL_TABLES)
    unsourced = [name for name in list_specs() if load_spec(name).reported and name not in checked]
    assert unsourced == []
