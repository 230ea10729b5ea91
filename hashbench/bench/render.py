"""Render a table from the results store alone: ``leaderboards/<name>.md``, ``.csv`` and ``.png``.

Rendering reads only the spec and the store, so cells produced by any number of shards (machines) sharing the
store combine into one table, and ``hashbench table SPEC --render-only`` works without running anything.

Beside them, ``leaderboards/<name>-examples.png`` shows retrieval examples: for 3 query items (the same for every
method), each method's top-10 database items, framed green when relevant and red when not. It is drawn from the
positions the cells stored (:mod:`hashbench.bench.examples`) and the protocol's data, which must be on disk to
draw it (without it the figure is left as it is, with a warning).

Row kinds (the ``status`` column of the CSV):
- ``reproduced``: a registered hashbench method; its cells are averaged over seeds (mean ± sample std).
- ``reported only``: a method in the paper's table that hashbench does not implement (its reported number only).
- ``not implemented``: a method the spec asks for that is not registered (yet).
- per bit length, a cell group with no stored result reads ``not run`` (or ``failed`` when the last attempt
  raised; see ``results/cells/<key>.error.json``).

Every reproduced value reads ``mean ± sample std (n=seeds)``; a *Ranking* section per bit length gives each
method's rank with the range of ranks the seed noise allows (paired t-tests across seeds, see
:mod:`hashbench.bench.stats`), and the figure shows every seed's value.

Byte for byte reproducible: the Markdown and the CSV depend only on the spec and the stored cells' numbers,
configurations and code hashes, so re-running a table on another machine (or after a fresh clone) rewrites the
same bytes whenever the numbers are the same. What differs from run to run — host and CPU, git commit, wall and
training times, W&B run folders, the render time — goes to the provenance sidecar in the results store,
``<results>/leaderboards/<name>.provenance.json``, never into the committed files. The one exception is W&B run
URLs: when cells ran online (or their offline runs were uploaded with ``hashbench wandb sync``), the Cells table
links each cell to its run; offline runs get no link (their folders are machine-specific).
"""

from __future__ import annotations

import csv
import io
import math
import os
import statistics
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hashbench.bench.grid import Cell, expand_grid
from hashbench.bench.spec import TableSpec, resolve_methods
from hashbench.bench.stats import ALPHA, Ranked, rank_with_ranges
from hashbench.bench.store import ResultStore, atomic_write_json

__all__ = [
    "LeaderboardKept",
    "Row",
    "collect_rows",
    "finished_cells",
    "render_table",
    "leaderboards_dir",
    "metric_definition",
    "provenance_path",
    "rankings",
    "record_for",
]


class LeaderboardKept(RuntimeError):
    """An existing leaderboard has more finished cells than the one a render would write: it is kept."""


def finished_cells(csv_path: Path) -> int:
    """Finished (reproduced) cells in a rendered leaderboard CSV: the sum of its ``n_seeds`` (0 when absent)."""
    try:
        with open(csv_path, newline="") as handle:
            return sum(int(row.get("n_seeds") or 0) for row in csv.DictReader(handle))
    except (OSError, ValueError):
        return 0


def leaderboards_dir() -> Path:
    return Path(__file__).resolve().parents[2] / "leaderboards"


@dataclass
class Entry:
    """One (method, bits) group of a row."""

    reported: float | None = None
    values: list[float] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    failed: int = 0
    missing: int = 0
    stale: int = 0

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.values else None

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.values) if len(self.values) > 1 else None

    @property
    def by_seed(self) -> dict[int, float]:
        return dict(zip(self.seeds, self.values, strict=True))

    @property
    def delta(self) -> float | None:
        return None if self.mean is None or self.reported is None else self.mean - self.reported


@dataclass
class Row:
    method: str
    status: str  # reproduced | reported only | not implemented
    entries: dict[int, Entry]


def metric_definition(metric: str) -> str:
    """The definition written into every leaderboard header."""
    if metric.startswith("mAP@"):
        cut = metric.split("@", 1)[1]
        cut_txt = "the whole database" if cut == "all" else f"the top {cut} items"
        return (
            f"`{metric}`: mean over all queries of AP@k, AP@k = (1/R_k)·Σ_r r/pos_r over the R_k relevant items "
            f"within the cut-off ({cut_txt}); a query with no relevant item counts as 0. Relevant = shares at "
            "least one label. Hamming-distance ties: `expected` (the exact expectation over a random order within "
            "each group of equal distance)."
        )
    if metric.startswith("P@H<="):
        return (
            f"`{metric}`: mean over queries of the precision within Hamming radius {metric[5:]} "
            "(0 for an empty ball). Relevant = shares at least one label."
        )
    return f"`{metric}` as reported by hashbench.metrics.retrieval_report"


def record_for(store: ResultStore, cell: Cell, allow_stale: bool) -> tuple[dict[str, Any] | None, bool]:
    """The stored record of ``cell`` and whether it is stale: with ``allow_stale``, when the cell's own key is
    missing, the newest record of the same configuration under any code version."""
    record = store.get(cell.key)
    if record is not None:
        return record, False
    if allow_stale:
        older = store.by_config(cell.config_hash[:20])
        if older:
            return older[0], True
    return None, False


def collect_rows(
    spec: TableSpec,
    store: ResultStore,
    profile: str | None = None,
    seeds: list[int] | None = None,
    allow_stale: bool = False,
    strict: bool = False,
) -> tuple[list[Row], list[Cell]]:
    """Gather the table's rows from the store (see the module docstring for the row kinds)."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the runner already warned about unregistered methods
        cells, missing = expand_grid(spec, profile, seeds, strict=strict)
    registered, _ = resolve_methods(spec)
    from hashbench.registry import normalize_name

    order: list[tuple[str, str]] = []
    seen: set[str] = set()

    def add(name: str, status: str) -> None:
        if normalize_name(name) not in seen:
            seen.add(normalize_name(name))
            order.append((name, status))

    in_spec = {normalize_name(m) for m in (*registered, *missing)}
    # Paper order first (the reported block lists the paper's rows), then hashbench's extra methods.
    for name in spec.reported:
        if normalize_name(name) in in_spec:
            canonical = next((m for m in registered if normalize_name(m) == normalize_name(name)), None)
            add(canonical or name, "reproduced" if canonical else "not implemented")
        else:
            add(name, "reported only")
    for name in registered:
        add(name, "reproduced")
    for name in missing:
        add(name, "not implemented")

    rows = []
    for name, status in order:
        entries = {b: Entry(reported=spec.reported_for(name).get(b)) for b in spec.bits}
        rows.append(Row(name, status, entries))
    by_method = {normalize_name(r.method): r for r in rows}
    for cell in cells:
        entry = by_method[normalize_name(cell.method)].entries[cell.n_bits]
        record, stale = record_for(store, cell, allow_stale)
        if record is None:
            if store.get_error(cell.key) is not None:
                entry.failed += 1
            else:
                entry.missing += 1
            continue
        value = record["result"]["metrics"].get(spec.metric)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            entry.failed += 1
            continue
        entry.values.append(float(value))
        entry.seeds.append(cell.seed)
        entry.records.append(record)
        entry.stale += int(stale)
    return rows, cells


def _fmt(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "—"
    return f"{value:+.4f}" if signed else f"{value:.4f}"


def _reproduced_text(row: Row, entry: Entry) -> str:
    if row.status == "reported only":
        return "reported only"
    if row.status == "not implemented":
        return "not implemented"
    if not entry.values:
        return "failed" if entry.failed else "not run"
    text = _fmt(entry.mean)
    if entry.std is not None:
        text += f" ± {entry.std:.4f}"
    notes = [f"n={len(entry.values)}"]
    if entry.missing or entry.failed:
        notes[0] += f" of {len(entry.values) + entry.missing + entry.failed}"
    if entry.stale:
        notes.append("†")
    return text + f" ({', '.join(notes)})"


def _profile_text(cells: list[Cell], profile: str) -> str:
    contents = {repr(sorted(c.config["profile"].items())) for c in cells}
    if len(contents) == 1 and cells:
        items = ", ".join(f"{k}={v}" for k, v in sorted(cells[0].config["profile"].items()))
        return f"`{profile}` ({items})"
    return f"`{profile}` (per method: each method's own recipe, see the CSV)" if cells else f"`{profile}`"


def _epochs(record: dict[str, Any]) -> tuple[int | None, str]:
    """(epochs run, how the fit ended: ``early`` | ``cap`` | ``fixed``) of a stored cell."""
    recipe = record["result"].get("recipe") or {}
    epochs = recipe.get("epochs")
    stop = recipe.get("early_stopping")
    if not stop:
        return epochs, "fixed"
    if stop.get("stopped_early") or (epochs is not None and epochs < stop.get("max_epochs", epochs + 1)):
        return epochs, "early"
    return epochs, "cap"


def _checkpoint_text(cells: list[Cell], records: list[dict[str, Any]]) -> str:
    text = (
        "the epoch with the best validation mAP; the validation queries are carved from the training split (the "
        "query set is never used for selection)."
    )
    patience = {c.config["profile"].get("patience") for c in cells}
    if patience == {None} or not cells:
        return text
    caps = sorted({c.config["profile"].get("max_epochs") for c in cells}, key=str)
    ends = [_epochs(r)[1] for r in records]
    text += (
        f" Early stopping: training ends once validation mAP has not improved for "
        f"{', '.join(str(p) for p in sorted(patience, key=str))} epochs, at most {', '.join(map(str, caps))} epochs"
    )
    if records:
        text += (
            f"; {ends.count('early')} of {len(ends)} cells stopped early (no improvement for that many epochs, or a "
            f"one-pass fit), {ends.count('cap')} reached the cap while still improving (`cap` in the Cells table)"
        )
    return text + "."


def _code_text(records: list[dict[str, Any]]) -> str:
    if not records:
        return "—"
    versions = sorted({str((rec.get("code") or {}).get("hashbench")) for rec in records})
    hashes = {str(rec.get("code_hash", ""))[:12] for rec in records}
    return (
        f"hashbench {', '.join(versions)}; {len(hashes)} code hash(es), one per cell in the Cells table (a hash of "
        "the method's source and of the shared training/evaluation code: equal hashes ran the same code)"
    )


def _link(record: dict[str, Any], store_root: Path | None = None) -> str:
    """The cell's W&B run: its URL (online) or its local run folder (absolute; provenance sidecar only)."""
    wb = record.get("wandb") or {}
    if wb.get("url"):
        return str(wb["url"])
    if not wb.get("dir"):
        return ""
    path = Path(wb["dir"])
    if not path.is_absolute() and store_root is not None:
        path = store_root / path
    return str(path)


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def provenance_path(store: ResultStore, name: str) -> Path:
    """Where :func:`render_table` writes a table's provenance sidecar (inside the results store)."""
    return store.root / "leaderboards" / f"{name}.provenance.json"


def rankings(spec: TableSpec, rows: list[Row]) -> dict[int, list[Ranked]]:
    """Per bit length, the reproduced methods ranked with their rank ranges (:func:`stats.rank_with_ranges`)."""
    out = {}
    for b in spec.bits:
        values = {r.method: r.entries[b].by_seed for r in rows if r.status == "reproduced" and r.entries[b].values}
        out[b] = rank_with_ranges(values)
    return out


def render_table(
    spec: TableSpec,
    store: ResultStore,
    out_dir: str | Path | None = None,
    profile: str | None = None,
    seeds: list[int] | None = None,
    allow_stale: bool = False,
    strict: bool = False,
    figure: bool = True,
    replace: bool = False,
) -> dict[str, Path]:
    """Write ``<out_dir>/<spec.name>.md``, ``.csv`` and (with ``figure``) ``.png``; return their paths.

    The provenance of the cells (hardware, git commit, wall time, W&B run) goes to
    :func:`provenance_path` in the store (key ``provenance`` of the result). A leaderboard is never replaced by one
    with fewer finished cells (a run whose cells failed, or a partial run of another profile): then nothing is
    written and :class:`LeaderboardKept` says why, unless ``replace``.
    """
    out = Path(out_dir) if out_dir is not None else leaderboards_dir()
    out.mkdir(parents=True, exist_ok=True)
    profile = profile or spec.profile
    seeds = list(seeds) if seeds is not None else list(spec.seeds)
    rows, cells = collect_rows(spec, store, profile, seeds, allow_stale, strict)
    records = [r for row in rows for e in row.entries.values() for r in e.records]
    has_reported = bool(spec.reported)
    paths = {"md": out / f"{spec.name}.md", "csv": out / f"{spec.name}.csv"}
    finished, before = len(records), finished_cells(paths["csv"])
    if not replace and before > finished:
        raise LeaderboardKept(
            f"kept {paths['md']} and its CSV/PNG: they hold {before} finished cell(s), this render would hold "
            f"{finished} (failed or not yet run cells). Run the missing cells, or pass --replace to overwrite."
        )
    ranks = rankings(spec, rows)
    _atomic_write_text(paths["md"], _markdown(spec, rows, cells, records, profile, seeds, has_reported, ranks))
    _atomic_write_text(paths["csv"], _csv(spec, rows, profile, ranks))
    if figure:
        paths["png"] = out / f"{spec.name}.png"
        tmp_png = paths["png"].with_name(f".{spec.name}.{os.getpid()}.tmp.png")
        _figure(spec, rows, tmp_png)
        os.replace(tmp_png, paths["png"])
        if _example_entries(spec, rows):
            examples = _examples_figure(spec, rows, out / f"{spec.name}-examples.png")
            if examples is not None:
                paths["examples"] = examples
    paths["provenance"] = provenance_path(store, spec.name)
    atomic_write_json(paths["provenance"], _provenance(spec, rows, store, paths))
    return paths


def _provenance(spec: TableSpec, rows: list[Row], store: ResultStore, paths: dict[str, Path]) -> dict[str, Any]:
    """What the committed files leave out: per cell its host, hardware, git commit, times and W&B run."""
    cells = []
    for row in rows:
        for b in spec.bits:
            for rec in row.entries[b].records:
                res = rec["result"]
                cells.append(
                    {
                        "method": row.method,
                        "n_bits": b,
                        "seed": rec["seed"],
                        "key": rec["key"],
                        "value": res["metrics"].get(spec.metric),
                        "hardware": rec.get("hardware"),
                        "git": (rec.get("code") or {}).get("git"),
                        "elapsed_s": rec.get("elapsed_s"),
                        "train_time_s": res.get("train_time_s"),
                        "finished_at": rec.get("finished_at"),
                        "wandb": _link(rec, store.root) or None,
                    }
                )
    elapsed = [c["elapsed_s"] for c in cells if isinstance(c["elapsed_s"], (int, float))]
    return {
        "table": spec.name,
        "rendered_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "files": {k: str(v) for k, v in paths.items() if k != "provenance"},
        "store": str(store.root),
        "cells_elapsed_s_total": sum(elapsed),
        "cells": cells,
    }


def _p_text(p: float | None) -> str:
    if p is None:
        return "—"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _markdown(
    spec: TableSpec,
    rows: list[Row],
    cells: list[Cell],
    records: list[dict[str, Any]],
    profile: str,
    seeds: list[int],
    has_reported: bool,
    ranks: dict[int, list[Ranked]],
) -> str:
    src = spec.source
    lines = [f"# {spec.title}", ""]
    lines.append(
        f"<!-- Generated by `hashbench table {spec.name} --render-only` from the results store; never edit by hand. -->"
    )
    lines.append("")
    if has_reported:
        text = spec.reported_source or src.get("table", "")
        paper = src.get("paper", "")
        if paper and paper not in text:
            text += f". Paper: {paper}"
        if src.get("url"):
            text += f", {src['url']}"
        lines.append(f"- **Reported numbers**: {text}")
    else:
        lines.append("- **Reported numbers**: none (no published table for this setting; hashbench's own runs only)")
    lines.append(f"- **Protocol**: `{spec.protocol}`")
    lines.append(f"- **Metric**: {metric_definition(spec.metric)}")
    lines.append(f"- **Checkpoint**: {_checkpoint_text(cells, records)}")
    backbone = spec.backbone or "each method's default"
    lines.append(f"- **Training profile**: {_profile_text(cells, profile)}; backbone `{backbone}`")
    delta = "; Δ = reproduced − reported" if has_reported else ""
    lines.append(f"- **Seeds**: {seeds} (reproduced = mean ± sample std over the n seeds that finished{delta})")
    lines.append(
        f"- **Telling methods apart**: a paired t-test across seeds for every pair of methods (two-sided, "
        f"α = {ALPHA}, no correction for the number of pairs); a method's *rank range* runs from 1 + the methods "
        "significantly better to N − the methods significantly worse, so overlapping ranges cannot be ordered "
        "beyond seed noise. With one seed nothing can be told apart."
    )
    lines.append(f"- **Code version**: {_code_text(records)}")
    lines.append(
        "- **Provenance** (hardware, git commit, wall time and W&B run of every cell): "
        f"`leaderboards/{spec.name}.provenance.json` in the results store that rendered this file"
    )
    lines.append("")
    header = ["Method"]
    for b in spec.bits:
        header += [f"{b} bits reported", f"{b} bits reproduced", "Δ"] if has_reported else [f"{b} bits"]
    lines.append("| " + " | ".join(header) + " |")
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|")
    for row in rows:
        label = row.method
        if row.status == "reported only":
            label += " *(reported only)*"
        elif row.status == "not implemented":
            label += " *(not implemented)*"
        cols = [label]
        for b in spec.bits:
            e = row.entries[b]
            if has_reported:
                cols += [_fmt(e.reported), _reproduced_text(row, e), _fmt(e.delta, signed=True)]
            else:
                cols.append(_reproduced_text(row, e))
        lines.append("| " + " | ".join(cols) + " |")
    lines.append("")
    statuses = {r.status for r in rows}
    entries = [e for r in rows if r.status == "reproduced" for e in r.entries.values()]
    legend = []
    if "reported only" in statuses:
        legend.append("*reported only*: hashbench does not implement this method; the number is the paper's.")
    if "not implemented" in statuses:
        legend.append("*not implemented*: the spec lists the method but it is not registered in hashbench.")
    if any(e.missing for e in entries):
        legend.append(f"*not run*: no stored result yet (run `hashbench table {spec.name}`).")
    if any(e.failed for e in entries):
        legend.append("*failed*: the last attempt raised; the error is in `results/cells/<key>.error.json`.")
    if any(e.missing or e.failed for e in entries):
        legend.append("*n=k of m*: k of the m seeds finished; the mean and std are over those k.")
    if any(e.stale for e in entries):
        legend.append("†: result of an older code version (rendered with --allow-stale).")
    lines += [f"- {x}" for x in legend]
    if spec.notes:
        lines += ["", spec.notes] if legend else [spec.notes]
    lines += ["", f"![{spec.metric} per method, every seed shown]({spec.name}.png)", ""]
    if _example_entries(spec, rows):
        bits, entries = _example_entries(spec, rows)
        lines += [
            f"![Retrieval examples: 3 queries, each method's top-10 at {bits} bits (seed {entries[0][1]['seed']}); "
            f"green = relevant, red = not]({spec.name}-examples.png)",
            "",
        ]
    for b, ranked in ranks.items():
        if not ranked:
            continue
        row_of = {r.method: r for r in rows}
        lines += [f"## Ranking at {b} bits", ""]
        lines.append(f"| Rank | Method | {spec.metric} | rank range | p vs next |")
        lines.append("|---:|---|---:|---:|---:|")
        for item in ranked:
            row = row_of[item.name]
            value = _reproduced_text(row, row.entries[b])
            lines.append(f"| {item.rank} | {item.name} | {value} | {item.range_text} | {_p_text(item.p_next)} |")
        lines.append("")
    if records:
        # W&B runs are linked when they have a URL (online, or uploaded); offline folders are machine-specific
        linked = any(_run_url(rec) for rec in records)
        lines += [
            "## Cells",
            "",
            f"| Method | bits | seed | {spec.metric} | best epoch | epochs run | stop | code hash |"
            + (" W&B run |" if linked else ""),
            "|---|---:|---:|---:|---:|---:|---|---|" + ("---|" if linked else ""),
        ]
        for row in rows:
            for b in spec.bits:
                for rec in row.entries[b].records:
                    res = rec["result"]
                    epochs, end = _epochs(rec)
                    lines.append(
                        f"| {row.method} | {b} | {rec['seed']} | {_fmt(res['metrics'].get(spec.metric))} | "
                        f"{res.get('best_epoch', '—')} | {'—' if epochs is None else epochs} | {end} | "
                        f"`{str(rec.get('code_hash', ''))[:12]}` |"
                        + ((f" [run]({_run_url(rec)}) |" if _run_url(rec) else " — |") if linked else "")
                    )
        lines.append("")
    return "\n".join(lines)


def _csv(spec: TableSpec, rows: list[Row], profile: str, ranks: dict[int, list[Ranked]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(
        [
            "table",
            "method",
            "status",
            "n_bits",
            "metric",
            "reported",
            "reproduced_mean",
            "reproduced_std",
            "n_seeds",
            "delta",
            "seeds",
            "values",
            "rank",
            "rank_low",
            "rank_high",
            "p_next",
            "failed",
            "not_run",
            "profile",
            "protocol",
            "code_hashes",
        ]
    )

    def num(x: float | None) -> str:
        return "" if x is None else f"{x:.6f}"

    for row in rows:
        for b in spec.bits:
            e = row.entries[b]
            place = next((r for r in ranks.get(b, []) if r.name == row.method), None)
            writer.writerow(
                [
                    spec.name,
                    row.method,
                    row.status,
                    b,
                    spec.metric,
                    num(e.reported),
                    num(e.mean),
                    num(e.std),
                    len(e.values),
                    num(e.delta),
                    " ".join(str(s) for s in e.seeds),
                    " ".join(num(v) for v in e.values),
                    place.rank if place else "",
                    place.low if place else "",
                    place.high if place else "",
                    "" if place is None or place.p_next is None else f"{place.p_next:.6f}",
                    e.failed,
                    e.missing,
                    profile,
                    spec.protocol,
                    " ".join(sorted({str(r.get("code_hash", ""))[:12] for r in e.records})),
                ]
            )
    return buf.getvalue()


def _figure(spec: TableSpec, rows: list[Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pr = _pr_curves(spec, rows)
    ncols = 2 if pr else 1
    fig, axes = plt.subplots(1, ncols, figsize=(6.5 * ncols, 4.8), squeeze=False)
    ax = axes[0][0]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    # Past one colour cycle, change the line style so every method stays distinguishable in the legend.
    styles = ["-", "--", ":", "-."]

    def style(i: int) -> str:
        return styles[(i // len(colors)) % len(styles)]

    plotted = [r for r in rows if any(e.mean is not None or e.reported is not None for e in r.entries.values())]
    if len(spec.bits) > 1:
        for i, row in enumerate(plotted):
            color = colors[i % len(colors)]
            xs = [b for b in spec.bits if row.entries[b].mean is not None]
            if xs:
                ys = [row.entries[b].mean for b in xs]
                err = [row.entries[b].std or 0.0 for b in xs]
                ax.errorbar(
                    xs, ys, yerr=err, marker="o", color=color, linestyle=style(i), label=f"{row.method}", capsize=3
                )
                # every seed's value, spread a little around its bit length so the points of methods stay apart
                offset = (i - (len(plotted) - 1) / 2) * 0.15
                px = [b + offset for b in xs for _ in row.entries[b].values]
                py = [v for b in xs for v in row.entries[b].values]
                ax.scatter(px, py, s=6, color=color, alpha=0.6, zorder=3)
            xr = [b for b in spec.bits if row.entries[b].reported is not None]
            if xr:
                ax.plot(
                    xr,
                    [row.entries[b].reported for b in xr],
                    linestyle="--",
                    marker="x",
                    color=color,
                    alpha=0.7,
                    label=f"{row.method} (reported)",
                )
        ax.set_xlabel("bits")
        ax.set_xticks(spec.bits)
        ax.set_ylabel(spec.metric)
        ax.set_title(f"{spec.metric} vs code length: mean ± std, dots = seeds; dashed: paper", fontsize=9)
    else:
        b = spec.bits[0]
        plotted = sorted(plotted, key=lambda r: -(r.entries[b].mean or r.entries[b].reported or 0.0))  # best on top
        names = [r.method for r in plotted]
        ys = list(range(len(plotted)))
        means = [r.entries[b].mean or 0.0 for r in plotted]
        errs = [r.entries[b].std or 0.0 for r in plotted]
        ax.barh(ys, means, xerr=errs, color=colors[0], alpha=0.5, label="hashbench (mean ± std)")
        seed_pts = [(v, y) for y, r in zip(ys, plotted, strict=True) for v in r.entries[b].values]
        if seed_pts:
            ax.scatter([v for v, _ in seed_pts], [y for _, y in seed_pts], s=10, color="k", alpha=0.7, label="one seed")
        rep = [
            (y, r.entries[b].reported) for y, r in zip(ys, plotted, strict=True) if r.entries[b].reported is not None
        ]
        if rep:
            ax.scatter([v for _, v in rep], [y for y, _ in rep], marker="x", color="k", label="reported", zorder=3)
        ax.set_yticks(ys)
        ax.set_yticklabels(names, fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel(f"{spec.metric} ({b} bits)")
        ax.set_title(f"{spec.title}", fontsize=9)
    if plotted:
        ax.legend(fontsize=6, ncol=2 if len(plotted) > 8 else 1)
    ax.grid(alpha=0.3)
    if pr:
        ax2 = axes[0][1]
        bits, curves = pr
        for i, (name, (recall, precision)) in enumerate(curves.items()):
            ax2.plot(recall, precision, color=colors[i % len(colors)], linestyle=style(i), label=name)
        ax2.set_xlabel("recall")
        ax2.set_ylabel("precision")
        ax2.set_title(f"Precision-recall by Hamming radius, {bits} bits (seed {curves_seed(rows, bits)})", fontsize=9)
        ax2.grid(alpha=0.3)
        ax2.legend(fontsize=6, ncol=2 if len(curves) > 8 else 1)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def curves_seed(rows: list[Row], bits: int) -> int | str:
    for row in rows:
        if row.entries[bits].records:
            return row.entries[bits].records[0]["seed"]
    return "—"


def _pr_curves(spec: TableSpec, rows: list[Row]) -> tuple[int, dict[str, tuple[list[float], list[float]]]] | None:
    """PR curves (first seed) at the largest bit length that has any, from the cells' ``pr_precision/pr_recall``."""
    for bits in sorted(spec.bits, reverse=True):
        curves = {}
        for row in rows:
            recs = row.entries[bits].records
            if not recs:
                continue
            extra = recs[0]["result"].get("extra") or {}
            p, r = extra.get("pr_precision"), extra.get("pr_recall")
            if p and r:
                pts = [(rr, pp) for pp, rr in zip(p, r, strict=True) if pp is not None and not math.isnan(pp)]
                if pts:
                    curves[row.method] = ([x for x, _ in pts], [y for _, y in pts])
        if curves:
            return bits, curves
    return None


def _run_url(record: dict[str, Any]) -> str | None:
    """The W&B run URL of a cell, if any (an online run, or an offline one uploaded by ``hashbench wandb sync``)."""
    url = (record.get("wandb") or {}).get("url")
    return str(url) if url else None


def _example_entries(spec: TableSpec, rows: list[Row]) -> tuple[int, list[tuple[str, dict[str, Any]]]] | None:
    """(bits, [(method, record)]) of the examples figure: the largest bit length with stored examples, one record
    per method, all of the smallest seed that has examples there."""
    for bits in sorted(spec.bits, reverse=True):
        with_examples = [
            (row.method, rec)
            for row in rows
            for rec in row.entries[bits].records
            if (rec["result"].get("extra") or {}).get("retrieval_examples")
        ]
        if with_examples:
            seed = min(rec["seed"] for _, rec in with_examples)
            return bits, [(m, rec) for m, rec in with_examples if rec["seed"] == seed]
    return None


def _examples_figure(spec: TableSpec, rows: list[Row], path: Path) -> Path | None:
    """Write ``path`` (see :func:`hashbench.bench.examples.write_examples_figure`); ``None`` (with a warning) when
    the protocol's data cannot be read here, in which case an existing figure is kept."""
    import warnings

    from hashbench.bench.examples import write_examples_figure

    found = _example_entries(spec, rows)
    if found is None:
        return None
    bits, entries = found
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp.png")
    try:
        notes = write_examples_figure(f"{spec.name}, {bits} bits", entries, tmp)
    except (OSError, ValueError, ImportError) as err:  # the data is not on this machine: keep what is there
        tmp.unlink(missing_ok=True)
        warnings.warn(f"{path.name} not drawn (the protocol's data is needed): {err}", stacklevel=3)
        return None
    for note in notes:
        warnings.warn(f"{path.name}: {note}", stacklevel=3)
    if not tmp.is_file():
        return None
    os.replace(tmp, path)
    return path
