"""Scale a table out with submitit: one SLURM job array, one array task per uncached cell.

``hashbench table SPEC --launcher submitit`` expands the table, leaves out the cells the results store already holds
and those a live task is running (its lock's heartbeat is fresh), and submits the rest as one job array through
submitit's ``AutoExecutor``: on a machine with SLURM (``sbatch`` on the PATH) a SLURM array, elsewhere submitit's
local executor, which runs the same task function in one process per cell on this machine. Each task runs its cell
through :func:`hashbench.bench.runner.run_one_cell`, the code path of ``--shard`` runs: it takes the cell's lock,
trains, and writes the cell's record to the shared store. Re-submitting after failures (or a node that died)
submits only the cells still missing.

One cell over several GPUs or nodes (``--devices D --num-nodes N``): the array task gets ``N`` nodes with ``D`` SLURM
tasks (one process per GPU) on each, and Lightning's SLURM environment turns those ``D x N`` processes into one DDP
job. The rules that make it hang otherwise, all set here:

- tasks per node = devices: Lightning waits at the rendezvous until ``devices x num_nodes`` processes have joined;
  fewer SLURM tasks than that waits forever, more starts extra trainers;
- nodes = ``--num-nodes``, and one GPU per task (``--slurm-gpus-per-task 1``): Lightning's DDP is one process per GPU;
- the tasks start through ``srun`` (submitit does): a bare ``sbatch`` script starts one process, and rank 0 waits for
  the others forever;
- the job name is not ``bash`` or ``interactive`` (Lightning then ignores the SLURM environment and spawns processes
  itself); submitit names it ``hashbench-<table>``;
- only global rank 0 takes the cell's lock and writes the cell; it tells the other ranks whether to train through a
  decision file in the store, so a cell that another task holds or finished ends every rank at once, instead of
  leaving ranks > 0 waiting at the rendezvous.

Files: submitit's pickles and logs go to ``<results>/submitit/<job id>/``; every submission is recorded in
``<results>/launches/<table>-<time>.json`` (job ids, cell keys).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hashbench.bench.grid import Cell, expand_grid, shard_cells
from hashbench.bench.runner import (
    CellExecutor,
    RunOptions,
    _run_in_process,
    check_wandb_mode,
    execute_cell,
    run_one_cell,
)
from hashbench.bench.spec import TableSpec
from hashbench.bench.store import ResultStore, atomic_write_json

__all__ = ["LaunchOptions", "LaunchSummary", "launch_table", "run_cell_task", "parse_slurm_time"]

CLUSTERS = ("auto", "slurm", "local", "debug")


def parse_slurm_time(text: str | int) -> int:
    """Minutes from a SLURM time limit: ``MM``, ``HH:MM:SS``, ``D-HH[:MM[:SS]]`` (seconds round up)."""
    if isinstance(text, int):
        minutes = text
    else:
        match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", str(text).strip())
        if not match:
            raise ValueError(f"--slurm-time takes MM, HH:MM:SS or D-HH:MM:SS, got {text!r}")
        days, first, second, third = match.groups()
        if days is None and second is None:  # a bare number is minutes, as in sbatch --time
            minutes = int(first)
        else:
            hours = int(first)
            mins = int(second or 0)
            secs = int(third or 0)
            minutes = int(days or 0) * 1440 + hours * 60 + mins + (1 if secs else 0)
    if minutes < 1:
        raise ValueError(f"--slurm-time must be at least one minute, got {text!r}")
    return minutes


@dataclass
class LaunchOptions:
    """How to submit a table's cells (the ``--launcher submitit`` flags)."""

    #: ``auto`` (SLURM where ``sbatch`` exists, else local) | ``slurm`` | ``local`` | ``debug`` (in this process)
    cluster: str = "auto"
    partition: str | None = None
    #: GPUs per SLURM task, i.e. per DDP process: 1 on GPU clusters, 0 for CPU-only cells
    gpus_per_task: int = 1
    time_min: int = 240
    array_parallelism: int = 64
    cpus_per_task: int | None = None
    mem_gb: float | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    #: wait for the tasks and report each as it ends (False: submit and return; render later)
    wait: bool = True
    poll_s: float = 10.0
    #: dotted path ``module:function`` of a cell executor for the tasks (tests); None = the default one
    cell_executor: str | None = None
    #: submitit's folder (pickles, logs); None = ``<results>/submitit``
    folder: str | Path | None = None


@dataclass
class LaunchSummary:
    """What a :func:`launch_table` call did."""

    total: int = 0
    cached: int = 0
    running: list[str] = field(default_factory=list)  # cells a live task holds: not resubmitted
    submitted: list[str] = field(default_factory=list)
    job_ids: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    finished: list[str] = field(default_factory=list)
    manifest: Path | None = None
    cluster: str = ""


def _import_executor(path: str | None) -> CellExecutor | None:
    if not path:
        return None
    import importlib

    module, _, name = path.partition(":")
    return getattr(importlib.import_module(module), name)


def _job_environment() -> tuple[int, int, str]:
    """(global rank, number of tasks, job id) of this submitit task; (0, 1, pid) outside submitit."""
    try:
        import submitit

        env = submitit.JobEnvironment()
        return env.global_rank, env.num_tasks, str(env.job_id)
    except (ImportError, RuntimeError):
        return 0, 1, str(os.getpid())


def _decision_path(store: ResultStore, job_id: str, key: str) -> Path:
    return store.root / "launches" / "decisions" / f"{job_id}-{key}.json"


def run_cell_task(cell_data: dict[str, Any], options_data: dict[str, Any], cell_executor: str | None = None) -> dict:
    """One array task: run one cell into the shared store (what each SLURM array task executes).

    With one SLURM task per job it is :func:`run_one_cell`. With several (a multi-GPU or multi-node cell), global
    rank 0 runs :func:`run_one_cell` and the other ranks train alongside it once rank 0's decision file says the cell
    is theirs to run (see the module docstring).

    Raises:
        RuntimeError: the cell failed (the job is then marked failed; its traceback is in the store's
            ``<key>.error.json`` and the task's log).
    """
    cell = Cell(**cell_data)
    opts = dict(options_data)
    opts["shard"] = tuple(opts.get("shard", (0, 1)))
    options = RunOptions(**opts)
    store = ResultStore(options.results)
    check_wandb_mode(options.wandb)
    if options.wandb != "disabled":
        os.environ["WANDB_MODE"] = options.wandb
        os.environ.setdefault("WANDB_SILENT", "true")
    rank, ntasks, job_id = _job_environment()
    custom = _import_executor(cell_executor)
    executor: CellExecutor = custom or execute_cell
    if ntasks > 1:
        decision = _decision_path(store, job_id, cell.key)
        inner = custom or _run_in_process  # SLURM started every rank: Lightning must not spawn more
        if rank != 0:
            verdict = _await_decision(decision, timeout_s=600)
            if verdict == "run":
                inner(cell, options, store.root)
            return {"key": cell.key, "status": f"rank {rank}: {verdict}"}

        def executor(c: Cell, o: RunOptions, root: Path) -> dict[str, Any]:
            atomic_write_json(decision, {"verdict": "run"})
            return inner(c, o, root)

    outcome = run_one_cell(cell, options, store, executor, log=lambda line: print(line, flush=True))
    if ntasks > 1 and outcome.status in ("locked", "cached"):
        atomic_write_json(_decision_path(store, job_id, cell.key), {"verdict": "skip"})
    if outcome.status == "failed":
        raise RuntimeError(f"cell {cell.label()} ({cell.key}) failed: {outcome.error!r}") from outcome.error
    metrics = (outcome.record or {}).get("result", {}).get("metrics", {})
    return {"key": cell.key, "status": outcome.status, "metrics": metrics, "elapsed_s": outcome.elapsed_s}


def _await_decision(path: Path, timeout_s: float) -> str:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            return json.loads(path.read_text())["verdict"]
        except (OSError, ValueError, KeyError):
            time.sleep(1.0)
    return "skip (no decision from rank 0)"


def _executor_parameters(options: RunOptions, launch: LaunchOptions, cluster: str, table: str) -> dict[str, Any]:
    if launch.gpus_per_task not in (0, 1):
        raise ValueError(
            f"--slurm-gpus-per-task must be 0 or 1, got {launch.gpus_per_task}: Lightning's DDP runs one process per "
            "GPU, so a cell on N GPUs is --devices N (N tasks of one GPU each), not one task with N GPUs"
        )
    params: dict[str, Any] = {"name": f"hashbench-{table}", "timeout_min": launch.time_min}
    if launch.cpus_per_task:
        params["cpus_per_task"] = launch.cpus_per_task
    if launch.mem_gb:
        params["mem_gb"] = launch.mem_gb
    if cluster == "slurm":
        params.update(
            nodes=options.num_nodes,
            tasks_per_node=options.devices,
            gpus_per_node=options.devices * launch.gpus_per_task,
            slurm_array_parallelism=launch.array_parallelism,
        )
        if launch.partition:
            params["slurm_partition"] = launch.partition
        extra = {k: v for k, v in (("account", launch.account), ("qos", launch.qos)) if v}
        if launch.constraint:
            params["slurm_constraint"] = launch.constraint
        if extra:
            params["slurm_additional_parameters"] = extra
    elif options.num_nodes > 1:
        raise ValueError(f"--num-nodes {options.num_nodes} needs SLURM; submitit's {cluster} executor has one node")
    # On the local executor a multi-device cell is one task whose Lightning spawns the DDP processes itself.
    return params


def launch_table(
    spec: TableSpec,
    options: RunOptions,
    launch: LaunchOptions | None = None,
    log: Callable[[str], None] | None = None,
) -> LaunchSummary:
    """Submit the table's missing cells as one submitit job array; with ``launch.wait``, wait for them.

    Args:
        spec: the table.
        options: the run options every task uses (profile, seeds, devices, nodes, W&B mode, results store ...).
        launch: submission settings (cluster, partition, time limit, array parallelism ...).
        log: where progress lines go (default: print).

    Returns:
        A :class:`LaunchSummary` (failed cells are listed, not raised).
    """
    from hashbench.errors import optional_import

    launch = launch or LaunchOptions()
    log = log or (lambda line: print(line, flush=True))
    if launch.cluster not in CLUSTERS:
        raise ValueError(f"the submitit cluster must be one of {', '.join(CLUSTERS)}, got {launch.cluster!r}")
    check_wandb_mode(options.wandb)
    submitit = optional_import("submitit", extra="slurm", feature="--launcher submitit")
    store = ResultStore(options.results)
    cells, _missing = expand_grid(
        spec, options.profile, options.seeds, options.methods, options.bits, strict=options.strict_version
    )
    cells = shard_cells(cells, *options.shard)
    summary = LaunchSummary(total=len(cells))
    todo: list[Cell] = []
    seen: set[str] = set()
    for cell in cells:
        if cell.key in seen:
            continue
        seen.add(cell.key)
        if store.has(cell.key):
            summary.cached += 1
        elif store.live_lock(cell.key) is not None:
            summary.running.append(cell.key)
        else:
            todo.append(cell)
    folder = Path(launch.folder) if launch.folder else store.root / "submitit"
    executor = submitit.AutoExecutor(folder=folder / "%j", cluster=None if launch.cluster == "auto" else launch.cluster)
    summary.cluster = executor.cluster
    log(
        f"table {spec.name}: {len(cells)} cells ({summary.cached} cached, {len(summary.running)} running elsewhere, "
        f"{len(todo)} to submit) through submitit's {executor.cluster} executor, store {store.root}"
    )
    if not todo:
        return summary
    executor.update_parameters(**_executor_parameters(options, launch, executor.cluster, spec.name))
    opts = {**asdict(options), "results": str(store.root.resolve()), "shard": list(options.shard)}
    # The local executor has no array throttle: submit it in waves of array_parallelism (when waiting).
    waves = [todo]
    if executor.cluster != "slurm" and launch.wait:
        step = max(1, launch.array_parallelism)
        waves = [todo[i : i + step] for i in range(0, len(todo), step)]
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    summary.manifest = store.root / "launches" / f"{spec.name}-{stamp}.json"
    done = 0
    for wave in waves:
        jobs = executor.map_array(
            run_cell_task, [asdict(c) for c in wave], [opts] * len(wave), [launch.cell_executor] * len(wave)
        )
        summary.submitted += [c.key for c in wave]
        summary.job_ids += [str(job.job_id) for job in jobs]
        atomic_write_json(
            summary.manifest,
            {
                "table": spec.name,
                "cluster": executor.cluster,
                "submitted_at": stamp,
                "folder": str(folder),
                "jobs": [{"job_id": j, "key": k} for j, k in zip(summary.job_ids, summary.submitted, strict=True)],
            },
        )
        if not launch.wait:
            continue
        pending = dict(zip(jobs, wave, strict=True))
        while pending:
            for job in [j for j in pending if j.done()]:
                cell = pending.pop(job)
                done += 1
                prefix = f"[{done}/{len(todo)}] {cell.label()} (job {job.job_id})"
                try:
                    result = job.result()
                except Exception as err:  # a failed or killed task: report it, go on with the others
                    summary.failed.append(cell.key)
                    reason = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
                    log(f"{prefix}: FAILED ({reason}); log: {job.paths.stderr}")
                    continue
                summary.finished.append(cell.key)
                metric = (result.get("metrics") or {}).get(spec.metric)
                metric_txt = f"{spec.metric} {metric:.4f}" if isinstance(metric, (int, float)) else result["status"]
                log(f"{prefix}: {metric_txt}")
            if pending:
                time.sleep(launch.poll_s)
    if not launch.wait:
        log(
            f"submitted {len(todo)} tasks (jobs {summary.job_ids[0]} ..), recorded in {summary.manifest}; when they "
            f"are done: hashbench table {spec.name} --render-only --results {store.root}"
        )
    return summary
