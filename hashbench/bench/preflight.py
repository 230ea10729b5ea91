"""Preflight: before cell 1, check once everything a table's cells will need, and plan the run.

:func:`preflight` resolves the whole grid and checks, per distinct need:

- every protocol's data files (present; checksums where a reference is recorded) and its split (the committed or
  materialised split file against its recorded sha256) — by building each datamodule once with downloads off and
  running its ``prepare_data``, ``verify_data`` and ``setup``;
- the pretrained weights of every backbone (and CLIP tower, fixed feature network) the profile uses, as each
  method declares them (``HashingMethod.weights_needed``), against their published sha256;
- that the results store and the output folder can be written;
- a W&B key when ``--wandb online``.

It returns every problem at once, each with how to fix it, so a user learns in seconds what a 108-cell run lacks
instead of watching 108 cells fail. :func:`plan` lists the cells with their cache state and an estimate of the
remaining time from the wall times recorded in the store.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hashbench.bench.grid import Cell
from hashbench.bench.store import ResultStore

__all__ = ["Problem", "PreflightReport", "preflight", "plan", "format_problems"]

#: dataset families whose datamodules can download their files (``--download``)
PUBLIC_FAMILIES = ("cifar10", "svhn", "fashion-mnist", "fashion-mnist-text")


@dataclass
class Problem:
    """Something a table's cells need that is missing or wrong."""

    what: str
    how: str = ""
    #: the kind of failure, a key of :data:`hashbench.errors.EXIT_CODES` (it sets ``hashbench table``'s exit status)
    kind: str = "missing"


@dataclass
class PreflightReport:
    """What :func:`preflight` found: blocking problems, and warnings that do not stop the run."""

    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def exit_code(self) -> int:
        """The exit status for these problems: their kind's (:data:`hashbench.errors.EXIT_CODES`), or "missing"'s
        when they are of several kinds."""
        from hashbench.errors import EXIT_CODES

        kinds = {p.kind for p in self.problems}
        return EXIT_CODES[kinds.pop() if len(kinds) == 1 else "missing"]


def _data_key(cell: Cell) -> str:
    cfg = cell.config
    return json.dumps([cfg["protocol"], cfg.get("data_kwargs"), cfg.get("datamodule")], sort_keys=True, default=str)


def _check_data(cell: Cell, download: bool) -> tuple[list[Problem], str]:
    """Build the cell's datamodule once (downloads off unless ``download``), check its files and split."""
    from hashbench.data import DatasetNotFoundError, SplitChecksumError, create_datamodule

    cfg = cell.config
    protocol = cfg["protocol"]
    try:
        if cfg.get("datamodule"):
            from hashbench.bench.run import instantiate_datamodule

            dm = instantiate_datamodule(cfg["datamodule"], batch_size=64, seed=cell.seed)
            label = f"datamodule {cfg['datamodule']['class_path']}"
        else:
            kwargs = {k: v for k, v in (cfg.get("data_kwargs") or {}).items() if k != "download"}
            dm = create_datamodule(protocol, download=download, **kwargs)
            label = f"protocol {protocol!r}"
        dm.prepare_data()
        lines = dm.verify_data() if hasattr(dm, "verify_data") else []
        dm.setup("fit")
    except DatasetNotFoundError as err:
        text = str(err)
        what, _, how = text.partition("\n")
        if not download and _public(protocol):
            how += "\nOr rerun with --download to let the preflight fetch it (needs internet)."
        return [Problem(f"data for protocol {protocol!r}: {what}", how)], ""
    except SplitChecksumError as err:
        return [
            Problem(
                f"split of protocol {protocol!r}: {err}", f"`hashbench data verify {protocol}` explains", "checksum"
            )
        ], ""
    except (OSError, ValueError, KeyError, ImportError) as err:
        return [Problem(f"data for protocol {protocol!r}: {type(err).__name__}: {err}")], ""
    checked = f"{label}: files found" + (f", {len(lines)} checksum line(s) ok" if lines else "") + ", split ok"
    return [], checked


def _public(protocol: str) -> bool:
    from hashbench.data.protocols import PROTOCOLS

    proto = PROTOCOLS.get(protocol)
    return proto is not None and proto.family in PUBLIC_FAMILIES


def _check_weights(need: Any, method: str) -> tuple[Problem | None, str]:
    from hashbench.nn import weights as W
    from hashbench.nn.backbones import PretrainedWeightsUnavailable, timm_weights_present

    why = f"{method}: {need.why}" if need.why else method
    try:
        if need.name in W.WEIGHTS:
            path = W.find_weights(need.name, need.explicit)
            if path is not None:
                return None, f"weights {need.name}: {path}"
            if W.allow_download():
                return None, f"weights {need.name}: not on disk, will be downloaded (HASHBENCH_ALLOW_DOWNLOAD=1)"
            what, how = W.missing_parts(need.name)
            return Problem(f"{what} (needed by {why})", how), ""
        if need.explicit is not None:
            if Path(need.explicit).expanduser().is_file():
                return None, f"weights for {need.name}: {need.explicit}"
            return Problem(f"weights file {need.explicit} (given for {need.name}, needed by {why}) does not exist"), ""
        timm_weights_present(need.name)
        return None, f"weights for {need.name}: found"
    except W.WeightsChecksumError as err:
        return Problem(f"{err} (needed by {why})", kind="checksum"), ""
    except (PretrainedWeightsUnavailable, FileNotFoundError, ValueError) as err:
        return Problem(f"{err} (needed by {why})"), ""


def _check_writable(path: Path, what: str) -> Problem | None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".hashbench-write-check-", dir=path)
        os.close(fd)
        os.unlink(tmp)
    except OSError as err:
        return Problem(
            f"the {what} {path} is not writable: {err}", "pass another folder or fix its permissions", "output"
        )
    return None


def preflight(
    cells: list[Cell],
    store: ResultStore,
    out_dir: Path,
    wandb: str = "offline",
    download: bool = False,
    pending: Callable[[Cell], bool] | None = None,
) -> PreflightReport:
    """Check once what ``cells`` need (see the module docstring); never trains anything.

    Args:
        cells: the resolved grid (:func:`hashbench.bench.grid.expand_grid`).
        store: the results store the run writes to.
        out_dir: where the leaderboard files go.
        wandb: the W&B mode of the run.
        download: let the data check download public datasets (CIFAR-10, SVHN, Fashion-MNIST) that are missing.
        pending: which cells will run (default: those the store lacks); cached cells need no data or weights.
    """
    from hashbench.bench.runner import check_wandb_mode
    from hashbench.registry import resolve_method

    report = PreflightReport()
    todo = [c for c in cells if (pending(c) if pending else not store.has(c.key))]
    seen_data: set[str] = set()
    seen_weights: set[tuple[str, str | None]] = set()
    for cell in todo:
        key = _data_key(cell)
        if key not in seen_data:
            seen_data.add(key)
            problems, checked = _check_data(cell, download)
            report.problems += problems
            if checked:
                report.checked.append(checked)
        cls = resolve_method(cell.config["method"])
        kwargs = {**cell.config["profile"], **cell.config["method_kwargs"]}
        for need in cls.weights_needed(kwargs):
            wkey = (need.name, need.explicit)
            if wkey in seen_weights:
                continue
            seen_weights.add(wkey)
            problem, checked = _check_weights(need, cell.method)
            if problem is None:
                report.checked.append(checked)
            elif need.required:
                report.problems.append(problem)
            else:
                report.warnings.append(f"{problem.what}; the run goes on without it")
    for path, what in ((store.cells_dir, "results store"), (out_dir, "output folder")):
        problem = _check_writable(path, what)
        if problem is not None:
            report.problems.append(problem)
    try:
        check_wandb_mode(wandb)
    except ValueError as err:
        report.problems.append(Problem(str(err), kind="usage"))
    return report


def format_problems(table: str, report: PreflightReport) -> str:
    """The one message listing every missing item with how to get it."""
    lines = [f"hashbench table {table}: preflight found {len(report.problems)} problem(s); no cell was run:"]
    for i, problem in enumerate(report.problems, 1):
        lines.append(f"  {i}. {problem.what}")
        for line in problem.how.strip().splitlines():
            lines.append(f"     {line.strip()}")
    for warning in report.warnings:
        lines.append(f"  warning: {warning}")
    lines.append("Fix these and run the same command again (finished cells are kept); `--plan` lists the cells.")
    return "\n".join(lines)


def _recorded_times(store: ResultStore) -> dict[tuple, list[float]]:
    """Wall times of the store's finished cells, indexed from the most to the least specific match."""
    index: dict[tuple, list[float]] = {}
    for path in store.cells_dir.glob("*.json"):
        if path.name.endswith(".error.json"):
            continue
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            record = json.loads(path.read_text())
            seconds = float(record["elapsed_s"])
            cfg = record.get("config") or {}
            keys = [
                ("config", str(record.get("config_hash", ""))[:20]),
                ("cell", record.get("method"), cfg.get("protocol"), record.get("profile_name"), record.get("n_bits")),
                ("method", record.get("method"), cfg.get("protocol"), record.get("profile_name")),
            ]
            for key in keys:
                index.setdefault(key, []).append(seconds)
    return index


def _estimate(cell: Cell, index: dict[tuple, list[float]]) -> float | None:
    cfg = cell.config
    for key in (
        ("config", cell.config_hash[:20]),
        ("cell", cell.method, cfg["protocol"], cell.profile, cell.n_bits),
        ("method", cell.method, cfg["protocol"], cell.profile),
    ):
        if key in index:
            return statistics.median(index[key])
    return None


def plan(cells: list[Cell], store: ResultStore) -> list[str]:
    """Lines describing every cell (cached or to run, with a time estimate) and the remaining-time estimate.

    An estimate is the median recorded wall time of the same configuration (any code version), else of the same
    method, protocol, profile and bit length, else of the same method, protocol and profile; else unknown.
    """
    from hashbench.bench.runner import format_duration

    index = _recorded_times(store)
    width = max([6, *(len(c.method) for c in cells)])
    lines = [f"  {'state':<7} {'method':<{width}} {'bits':>4} {'seed':>4}  {'key':<33} estimate"]
    total, unknown, cached = 0.0, 0, 0
    for cell in cells:
        if store.has(cell.key):
            cached += 1
            state, est_text = "cached", "—"
        else:
            state = "pending"
            estimate = _estimate(cell, index)
            if estimate is None:
                unknown += 1
                est_text = "unknown"
            else:
                total += estimate
                est_text = format_duration(estimate)
        lines.append(f"  {state:<7} {cell.method:<{width}} {cell.n_bits:>4} {cell.seed:>4}  {cell.key:<33} {est_text}")
    to_run = len(cells) - cached
    if to_run == 0:
        remaining = "nothing to run"
    elif unknown == to_run:
        remaining = "unknown (no recorded wall time for these cells in the store)"
    elif unknown:
        remaining = f"at least {format_duration(total)} ({unknown} of {to_run} cells without a recorded wall time)"
    else:
        remaining = format_duration(total)
    lines.append(f"{len(cells)} cells: {cached} cached, {to_run} to run; estimated remaining time: {remaining}")
    return lines
