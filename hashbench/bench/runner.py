"""The table runner: expand a spec into cells, run the ones the store lacks, store each result atomically.

Resume: a cell counts as done when its JSON file exists in the store, so a crashed or interrupted run loses at
most the cell in flight; re-running the same command skips every finished cell. A cell that raises is recorded
as ``<key>.error.json``, the run goes on with the next cell, and the command exits non-zero at the end; the
failed cell is retried on the next run. Ctrl-C stops at once (the lock of the cell in flight is released).

Multi-GPU: with ``devices > 1`` each cell runs in a child process (``python -m hashbench.bench.worker``) under
Lightning's DDP strategy. Lightning's DDP launcher re-executes the current command for every extra rank, which
is only safe for a program that runs exactly one training job, hence one process per cell, while this process
keeps the store, the locks and the progress display. The profile's ``batch_size`` stays the global batch.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hashbench.bench.grid import Cell, expand_grid, shard_cells
from hashbench.bench.spec import TableSpec
from hashbench.bench.store import ResultStore

__all__ = [
    "RunOptions",
    "RunSummary",
    "run_table",
    "run_one_cell",
    "CellOutcome",
    "execute_cell",
    "hardware_info",
    "check_wandb_mode",
    "format_duration",
    "trainer_kwargs_for",
]

WANDB_MODES = ("offline", "online", "disabled")


@dataclass
class RunOptions:
    """How to run a table's cells (the CLI flags)."""

    profile: str | None = None
    seeds: list[int] | None = None
    methods: list[str] | None = None
    bits: list[int] | None = None
    devices: int = 1
    num_nodes: int = 1
    accelerator: str = "auto"
    strategy: str | None = None  # None: "ddp" when devices > 1, Lightning's default otherwise
    shard: tuple[int, int] = (0, 1)
    wandb: str = "offline"
    results: str | Path | None = None
    strict_version: bool = False
    keep_going: bool = True


@dataclass
class RunSummary:
    """What a :func:`run_table` call did (counts are over this shard's cells)."""

    total: int = 0
    cached: int = 0
    ran: int = 0
    failed: list[str] = field(default_factory=list)
    locked: list[str] = field(default_factory=list)
    missing_methods: list[str] = field(default_factory=list)


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02d}m{secs:02d}s" if hours else f"{minutes}m{secs:02d}s"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware_info(accelerator: str = "auto", devices: int = 1) -> dict[str, Any]:
    """CPU model and core count, GPU names when CUDA is visible, library versions."""
    import lightning
    import torch

    info: dict[str, Any] = {
        "host": platform.node(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        # CPU results depend on the thread count (the order of float reductions): part of what made a number
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "accelerator": accelerator,
        "devices": devices,
    }
    if torch.cuda.is_available() and accelerator in ("auto", "gpu", "cuda"):
        info["gpu"] = [torch.cuda.get_device_name(i) for i in range(min(torch.cuda.device_count(), max(devices, 1)))]
    return info


def check_wandb_mode(mode: str) -> None:
    """Validate ``--wandb``; ``online`` needs an API key (``WANDB_API_KEY`` or a ``wandb login`` netrc entry).

    Raises:
        ValueError: unknown mode, or online without a key.
    """
    if mode not in WANDB_MODES:
        raise ValueError(f"--wandb must be one of {', '.join(WANDB_MODES)}, got {mode!r}")
    if mode != "online":
        return
    if os.environ.get("WANDB_API_KEY"):
        return
    import netrc

    host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1].split("/")[0]
    try:
        if netrc.netrc().authenticators(host):
            return
    except (OSError, netrc.NetrcParseError):
        pass
    raise ValueError(
        "--wandb online needs a W&B API key: export WANDB_API_KEY=... or run `wandb login` first "
        "(or use --wandb offline and `hashbench wandb sync SPEC` later)"
    )


def _wandb_logger(cell: Cell, mode: str, save_dir: Path) -> Any:
    from lightning.pytorch.loggers import WandbLogger

    from hashbench.quiet import without_anonymous_setting

    save_dir.mkdir(parents=True, exist_ok=True)
    tags = [
        cell.method,
        cell.config["protocol"],
        f"{cell.n_bits}bits",
        str(cell.config.get("backbone")),
        f"seed{cell.seed}",
    ]
    logger = WandbLogger(
        project=os.environ.get("WANDB_PROJECT", "hashbench"),
        group=cell.table,
        name=f"{cell.table}/{cell.method}-{cell.n_bits}b-s{cell.seed}",
        job_type=cell.profile,
        tags=tags,
        save_dir=str(save_dir),
        offline=mode == "offline",
        # the code version is part of the config, so the W&B runs table can filter and group by it
        config={"cell_key": cell.key, **cell.config, "code": cell.code, "code_hash": cell.code_hash},
    )
    return without_anonymous_setting(logger)


def _wandb_link(logger: Any, mode: str, results_root: Path) -> dict[str, Any]:
    run = logger.experiment
    link: dict[str, Any] = {"mode": mode, "id": getattr(run, "id", None), "project": getattr(run, "project", None)}
    if mode == "online":
        link["url"] = getattr(run, "url", None)
    run_dir = Path(run.dir).parent  # .../wandb/offline-run-<time>-<id>/files -> the run folder
    try:
        link["dir"] = str(run_dir.resolve().relative_to(results_root.resolve()))
    except ValueError:
        link["dir"] = str(run_dir)
    return link


def trainer_kwargs_for(options: RunOptions) -> dict[str, Any]:
    """The Lightning Trainer arguments of a cell run with ``options``: accelerator, devices, nodes, strategy.

    More than one process (``devices x num_nodes > 1``) means DDP (unless ``strategy`` says otherwise), and on GPUs
    BatchNorm statistics are synced over the processes (``sync_batchnorm``), so a BatchNorm layer sees the global
    batch as in one process; CPU DDP cannot (PyTorch's SyncBatchNorm needs a GPU), so there they stay per process.
    """
    kwargs: dict[str, Any] = {"accelerator": options.accelerator, "devices": options.devices}
    processes = options.devices * options.num_nodes
    if options.num_nodes > 1:
        kwargs["num_nodes"] = options.num_nodes
    strategy = options.strategy or ("ddp" if processes > 1 else None)
    if strategy:
        kwargs["strategy"] = strategy
    if processes > 1 and options.accelerator not in ("cpu",) and _gpu_visible():
        kwargs["sync_batchnorm"] = True
    return kwargs


def _gpu_visible() -> bool:
    import torch

    return torch.cuda.is_available()


def _run_in_process(cell: Cell, options: RunOptions, results_root: Path) -> dict[str, Any]:
    """Run one cell in this process through :func:`hashbench.bench.run.run_cell`; returns the stored payload."""
    from hashbench.bench.run import run_cell
    from hashbench.bench.wandb_report import cell_hook

    cfg = cell.config
    logger: Any = False
    if options.wandb != "disabled":
        logger = _wandb_logger(cell, options.wandb, results_root / "wandb")
    trainer_kwargs = trainer_kwargs_for(options)
    try:
        result = run_cell(
            cfg["method"],
            protocol=cfg["protocol"],
            n_bits=cfg["n_bits"],
            seed=cfg["seed"],
            profile=cfg["profile"],
            datamodule=cfg.get("datamodule"),
            method_kwargs=cfg["method_kwargs"],
            data_kwargs=cfg["data_kwargs"],
            trainer_kwargs=trainer_kwargs,
            logger=logger,
            # retrieval examples, precision@N and code statistics into the record, and the W&B panels of the run
            after_test=cell_hook(logger),
        )
        payload = {"result": asdict(result), "wandb": None}
        if logger is not False and _is_rank_zero():
            payload["wandb"] = _wandb_link(logger, options.wandb, results_root)
        return payload
    finally:
        if logger is not False and _is_rank_zero():
            import wandb

            wandb.finish()


def _is_rank_zero() -> bool:
    from lightning.pytorch.utilities import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


def _run_in_subprocess(cell: Cell, options: RunOptions, results_root: Path) -> dict[str, Any]:
    """Run one cell in ``python -m hashbench.bench.worker`` (one DDP job per process, see the module docstring)."""
    with tempfile.TemporaryDirectory(prefix="hashbench-cell-") as tmp:
        job = Path(tmp) / "cell.json"
        out = Path(tmp) / "result.json"
        job.write_text(
            json.dumps(
                {
                    "cell": asdict(cell),
                    "options": {**asdict(options), "results": str(results_root), "shard": list(options.shard)},
                }
            )
        )
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join([root, *filter(None, [env.get("PYTHONPATH")])])
        proc = subprocess.run([sys.executable, "-m", "hashbench.bench.worker", str(job), str(out)], env=env)
        if proc.returncode != 0 or not out.is_file():
            raise RuntimeError(f"cell worker exited with status {proc.returncode} (see its output above)")
        return json.loads(out.read_text())


def execute_cell(cell: Cell, options: RunOptions, results_root: Path) -> dict[str, Any]:
    """Default cell executor: in this process for one device, in a DDP child process for several (or any ddp*)."""
    if options.devices > 1 or options.num_nodes > 1 or (options.strategy or "").startswith("ddp"):
        return _run_in_subprocess(cell, options, results_root)
    return _run_in_process(cell, options, results_root)


CellExecutor = Callable[[Cell, RunOptions, Path], dict[str, Any]]


def run_table(
    spec: TableSpec,
    options: RunOptions | None = None,
    executor: CellExecutor | None = None,
    log: Callable[[str], None] | None = None,
) -> RunSummary:
    """Run every pending cell of this shard of ``spec`` and store the results.

    Args:
        spec: the table.
        options: run options (profile, seeds, devices, shard, W&B mode, results dir ...).
        executor: runs one cell and returns ``{"result": CellResult-as-dict, "wandb": link or None}``
            (default :func:`execute_cell`; tests pass a fake).
        log: where progress lines go (default: print to stdout, flushed).

    Returns:
        A :class:`RunSummary`.
    """
    options = options or RunOptions()
    executor = executor or execute_cell
    log = log or (lambda line: print(line, flush=True))
    check_wandb_mode(options.wandb)
    if options.wandb != "disabled":
        # The logger and every child process read the mode from the environment too; W&B's own console output
        # (a summary per run) would drown the one-line-per-cell progress, so it is silenced unless asked for.
        os.environ["WANDB_MODE"] = options.wandb
        os.environ.setdefault("WANDB_SILENT", "true")
    # One progress line per cell: Lightning's per-Trainer banners (GPU/TPU available, tips) would bury them.
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)
    store = ResultStore(options.results)
    cells, missing = expand_grid(
        spec, options.profile, options.seeds, options.methods, options.bits, strict=options.strict_version
    )
    mine = shard_cells(cells, *options.shard)
    summary = RunSummary(total=len(mine), missing_methods=missing)
    pending = [c for c in mine if not store.has(c.key)]
    summary.cached = len(mine) - len(pending)
    shard_txt = f" shard {options.shard[0]}/{options.shard[1]}:" if options.shard[1] > 1 else ""
    log(
        f"table {spec.name}:{shard_txt} {len(mine)} cells ({summary.cached} cached, {len(pending)} to run), "
        f"profile {options.profile or spec.profile}, store {store.root}"
    )
    started = time.perf_counter()
    durations: list[float] = []
    for i, cell in enumerate(pending, 1):
        prefix = f"[{i}/{len(pending)}] {cell.label()}"
        outcome = run_one_cell(cell, options, store, executor, log=lambda line, p=prefix: log(f"{p}: {line}"))
        if outcome.status in ("locked", "lost-lock"):
            summary.locked.append(cell.key)
            continue
        if outcome.status == "cached":
            summary.cached += 1
            continue
        if outcome.status == "failed":
            summary.failed.append(cell.key)
            if not options.keep_going:
                assert outcome.error is not None
                raise outcome.error
            continue
        summary.ran += 1
        durations.append(outcome.elapsed_s)
        remaining = len(pending) - i
        eta = remaining * sum(durations) / len(durations)
        metric = outcome.record["result"].get("metrics", {}).get(spec.metric) if outcome.record else None
        metric_txt = f"{spec.metric} {metric:.4f}" if isinstance(metric, (int, float)) else f"{spec.metric} n/a"
        log(
            f"{prefix}: {metric_txt} in {outcome.elapsed_s:.1f} s | elapsed "
            f"{format_duration(time.perf_counter() - started)}, ETA {format_duration(eta)}"
        )
    return summary


@dataclass
class CellOutcome:
    """What :func:`run_one_cell` did with one cell."""

    #: ``ran`` | ``cached`` (finished elsewhere meanwhile) | ``locked`` (a live process holds it) | ``failed`` |
    #: ``lost-lock`` (ran, but another process took the lock over meanwhile, so the result was not written)
    status: str
    record: dict[str, Any] | None = None
    elapsed_s: float = 0.0
    error: BaseException | None = None


_HARDWARE: dict[tuple[str, int, int], dict[str, Any]] = {}


def run_one_cell(
    cell: Cell,
    options: RunOptions,
    store: ResultStore,
    executor: CellExecutor | None = None,
    log: Callable[[str], None] | None = None,
) -> CellOutcome:
    """Run one cell under its lock and store the result: the single path of ``--shard`` runs and launcher tasks.

    The cell runs only when this process takes its lock and the store does not hold it yet; its record is written
    only while the lock is still this process's (see :class:`hashbench.bench.store.CellLock`). A failure is
    stored as ``<key>.error.json`` and returned (not raised).
    """
    executor = executor or execute_cell
    log = log or (lambda line: print(line, flush=True))
    with store.locked(cell.key) as lock:
        if lock is None:
            holder = store.lock(cell.key).read_holder()
            log(f"skipped, locked by {holder.get('host')}:{holder.get('pid')}")
            return CellOutcome("locked")
        if store.has(cell.key):  # another process finished it between our listing and our lock
            log("done elsewhere meanwhile")
            return CellOutcome("cached")
        t0 = time.perf_counter()
        try:
            payload = executor(cell, options, store.root)
        except Exception as err:  # a broken method must not stop the table; Ctrl-C still does
            store.put_error(
                cell.key,
                {
                    "key": cell.key,
                    "config": cell.config,
                    "error": f"{type(err).__name__}: {err}",
                    "traceback": traceback.format_exc(),
                    "failed_at": _now(),
                },
            )
            log(f"FAILED ({type(err).__name__}: {err})")
            return CellOutcome("failed", elapsed_s=time.perf_counter() - t0, error=err)
        elapsed = time.perf_counter() - t0
        hw_key = (options.accelerator, options.devices, options.num_nodes)
        if hw_key not in _HARDWARE:
            _HARDWARE[hw_key] = {**hardware_info(options.accelerator, options.devices), "num_nodes": options.num_nodes}
        record = {
            "key": cell.key,
            "table": cell.table,
            "method": cell.method,
            "n_bits": cell.n_bits,
            "seed": cell.seed,
            "profile_name": cell.profile,
            "config": cell.config,
            "config_hash": cell.config_hash,
            "code": cell.code,
            "code_hash": cell.code_hash,
            "result": payload["result"],
            "wandb": payload.get("wandb"),
            "hardware": _HARDWARE[hw_key],
            "elapsed_s": elapsed,
            "finished_at": _now(),
        }
        if not lock.still_held():
            log("ran, but its lock was taken over meanwhile (judged stale): result NOT written, the holder writes it")
            return CellOutcome("lost-lock", record, elapsed)
        store.put(cell.key, record)
        return CellOutcome("ran", record, elapsed)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
