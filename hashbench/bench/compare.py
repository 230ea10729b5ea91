"""``hashbench table SPEC --compare OTHER``: does a re-run reproduce a stored result, cell group by cell group?

The results store given by ``--results`` (default ``results/``) is the *re-run*; ``OTHER`` is the *stored*
reference (e.g. a copy of the store that produced a committed leaderboard). Cells are matched by their
configuration (method, bits, seed and every training/data setting), not by their code hash, so a re-run with
newer code is still compared; the output says when the code hashes differ. The verdicts are those of
:func:`hashbench.bench.stats.reproduction_verdict` (identical | within spread | differs | missing).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import Any

from hashbench.bench.grid import Cell, expand_grid
from hashbench.bench.render import record_for
from hashbench.bench.spec import TableSpec
from hashbench.bench.stats import reproduction_verdict
from hashbench.bench.store import ResultStore

__all__ = ["Comparison", "compare_stores", "format_comparison"]


@dataclass
class Comparison:
    """One (method, bits) cell group of a table in two stores."""

    method: str
    n_bits: int
    stored: dict[int, float]
    rerun: dict[int, float]
    verdict: str
    why: str
    same_code: bool | None  # None: nothing to compare

    @property
    def reproduced(self) -> bool:
        return self.verdict in ("identical", "within spread")


def _value(store: ResultStore, cell: Cell, metric: str) -> tuple[float | None, str | None]:
    """The cell's metric in ``store`` (any code version of its configuration, newest first) and its code hash."""
    record, _ = record_for(store, cell, allow_stale=True)
    if record is None:
        return None, None
    value = record["result"]["metrics"].get(metric)
    if not isinstance(value, (int, float)) or value != value:  # missing or NaN
        return None, record.get("code_hash")
    return float(value), record.get("code_hash")


def compare_stores(
    spec: TableSpec,
    rerun: ResultStore,
    stored: ResultStore,
    profile: str | None = None,
    seeds: list[int] | None = None,
    methods: list[str] | None = None,
    bits: list[int] | None = None,
) -> list[Comparison]:
    """Compare every (method, bits) of ``spec`` between ``rerun`` and ``stored`` (see the module docstring)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cells, _ = expand_grid(spec, profile, seeds, methods, bits)
    groups: dict[tuple[str, int], list[Cell]] = {}
    for cell in cells:
        groups.setdefault((cell.method, cell.n_bits), []).append(cell)
    out = []
    for (method, n_bits), group in groups.items():
        values: dict[str, dict[int, float]] = {"stored": {}, "rerun": {}}
        codes: dict[str, set[str]] = {"stored": set(), "rerun": set()}
        for cell in group:
            for side, store in (("stored", stored), ("rerun", rerun)):
                value, code = _value(store, cell, spec.metric)
                if value is not None:
                    values[side][cell.seed] = value
                    codes[side].add(str(code))
        verdict, why = reproduction_verdict(values["stored"], values["rerun"])
        same = codes["stored"] == codes["rerun"] if codes["stored"] and codes["rerun"] else None
        out.append(Comparison(method, n_bits, values["stored"], values["rerun"], verdict, why, same))
    return out


def _summary(values: dict[int, float]) -> str:
    if not values:
        return "—"
    mean = statistics.fmean(values.values())
    sd = f" ± {statistics.stdev(values.values()):.4f}" if len(values) > 1 else ""
    return f"{mean:.4f}{sd} (n={len(values)})"


def format_comparison(spec: TableSpec, comparisons: list[Comparison], stored_root: Any, rerun_root: Any) -> str:
    """A Markdown table of the verdicts and a one-line summary."""
    lines = [
        f"table {spec.name} ({spec.metric}): re-run {rerun_root} against stored {stored_root}",
        "",
        "| Method | bits | stored | re-run | verdict | why | code |",
        "|---|---:|---:|---:|---|---|---|",
    ]
    for c in comparisons:
        code = "—" if c.same_code is None else ("same" if c.same_code else "differs")
        lines.append(
            f"| {c.method} | {c.n_bits} | {_summary(c.stored)} | {_summary(c.rerun)} | {c.verdict} | {c.why} | {code} |"
        )
    counts = {v: sum(c.verdict == v for c in comparisons) for v in ("identical", "within spread", "differs", "missing")}
    lines += ["", ", ".join(f"{n} {v}" for v, n in counts.items()) + f" of {len(comparisons)} cell groups"]
    return "\n".join(lines)
