"""The submitit launcher: a table through submitit's local executor (the real library, one process per cell)
gives the same store and leaderboard as ``--shard`` runs; a task killed mid-cell is re-run by the next submission,
and no other cell is."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from hashbench.bench.launcher import LaunchOptions, _executor_parameters, launch_table, parse_slurm_time
from hashbench.bench.render import render_table
from hashbench.bench.runner import RunOptions, run_table
from hashbench.bench.spec import parse_spec
from hashbench.bench.store import ResultStore

pytest.importorskip("submitit")

SPEC = {
    "title": "launcher",
    "protocol": "synthetic",
    "metric": "mAP@all",
    "bits": [8, 16],
    "seeds": [0, 1],
    "methods": ["hashbench.bench.testing.PointwiseTestHash"],
    "backbone": "compact_cnn",
    "datamodule": {
        "class_path": "hashbench.testing.SyntheticHashingDataModule",
        "init_args": {"num_train": 32, "num_query": 8, "num_database": 32},
    },
    "profile": "tiny",
    "profiles": {"tiny": {"max_epochs": 1, "batch_size": 16, "optimizer": "adam", "lr": 3e-3}},
}
# What legitimately differs between two runs of a cell: when, how long, on which host, the W&B link.
VOLATILE = {"elapsed_s", "finished_at", "hardware", "wandb"}
VOLATILE_RESULT = {"wall_time_s", "train_time_s"}


def _spec(**changes):
    return parse_spec({**SPEC, **changes}, name="launcher")


def _records(root: Path) -> dict[str, dict]:
    out = {}
    for path in sorted((root / "cells").glob("*.json")):
        if path.name.endswith(".error.json"):
            continue
        record = {k: v for k, v in json.loads(path.read_text()).items() if k not in VOLATILE}
        record["result"] = {k: v for k, v in record["result"].items() if k not in VOLATILE_RESULT}
        out[path.name] = record
    return out


def _leaderboard(spec, root: Path, out: Path) -> list[dict]:
    paths = render_table(spec, ResultStore(root), out_dir=out, figure=False)
    with open(paths["csv"], newline="") as handle:
        return list(csv.DictReader(handle))


def _launch(spec, root: Path, **launch) -> object:
    options = RunOptions(results=root, wandb="disabled", accelerator="cpu")
    settings = {"cluster": "local", "poll_s": 0.5, "time_min": 10, **launch}
    return launch_table(spec, options, LaunchOptions(**settings), log=lambda _: None)


def test_local_executor_and_shards_give_identical_stores_and_leaderboards(tmp_path: Path) -> None:
    spec = _spec()
    launched = _launch(spec, tmp_path / "submitit-store", array_parallelism=4)
    assert launched.cluster == "local"
    assert len(launched.submitted) == 4 and not launched.failed
    assert len(set(launched.job_ids)) == 4  # one process (job) per cell
    for shard in (0, 1):
        run_table(
            spec,
            RunOptions(results=tmp_path / "shard-store", wandb="disabled", accelerator="cpu", shard=(shard, 2)),
            log=lambda _: None,
        )
    a, b = _records(tmp_path / "submitit-store"), _records(tmp_path / "shard-store")
    assert len(a) == 4 and a.keys() == b.keys()
    for name in a:
        assert a[name] == b[name], name
    assert _leaderboard(spec, tmp_path / "submitit-store", tmp_path / "lb-a") == _leaderboard(
        spec, tmp_path / "shard-store", tmp_path / "lb-b"
    )
    again = _launch(spec, tmp_path / "submitit-store")
    assert again.cached == 4 and again.submitted == []  # nothing left to submit


def test_a_killed_task_is_rerun_by_the_next_submission_and_no_other_cell(tmp_path: Path, monkeypatch) -> None:
    spec = _spec(seeds=[0], bits=[8, 16, 24])
    root = tmp_path / "store"
    from hashbench.bench.grid import expand_grid

    cells, _ = expand_grid(spec)
    victim = cells[1].key
    marker = tmp_path / "kill-once"
    marker.write_text(victim)
    monkeypatch.setenv("HASHBENCH_TEST_KILL_ONCE", str(marker))
    first = _launch(spec, root, cell_executor="hashbench.bench.testing:kill_once_executor")
    assert first.failed == [victim] and len(first.finished) == 2
    store = ResultStore(root)
    assert not store.has(victim) and store.lock(victim).path.exists()  # died holding its lock
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in store.cells_dir.glob("*.json")}
    second = _launch(spec, root, cell_executor="hashbench.bench.testing:kill_once_executor")
    assert second.submitted == [victim] and second.cached == 2 and not second.failed
    assert store.has(victim) and not store.lock(victim).path.exists()
    after = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in store.cells_dir.glob("*.json")}
    assert {k: v for k, v in after.items() if k in before} == before  # the other cells were not touched
    assert set(after) - set(before) == {f"{victim}.json"}


def test_a_live_lock_is_not_resubmitted(tmp_path: Path) -> None:
    spec = _spec(seeds=[0], bits=[8])
    from hashbench.bench.grid import expand_grid

    (cell,) = expand_grid(spec)[0]
    store = ResultStore(tmp_path)
    lock = store.lock(cell.key)
    assert lock.acquire()
    try:
        summary = _launch(spec, tmp_path)
        assert summary.running == [cell.key] and summary.submitted == []
    finally:
        lock.release()


def test_slurm_parameters_follow_lightnings_rules() -> None:
    options = RunOptions(devices=4, num_nodes=2)
    params = _executor_parameters(options, LaunchOptions(partition="gpu", time_min=90), "slurm", "cifar10")
    assert params["nodes"] == 2 and params["tasks_per_node"] == 4 and params["gpus_per_node"] == 4
    assert params["slurm_partition"] == "gpu" and params["timeout_min"] == 90 and params["name"] == "hashbench-cifar10"
    with pytest.raises(ValueError, match="one process per GPU"):
        _executor_parameters(options, LaunchOptions(gpus_per_task=2), "slurm", "t")
    with pytest.raises(ValueError, match="needs SLURM"):
        _executor_parameters(options, LaunchOptions(), "local", "t")


@pytest.mark.parametrize(
    ("text", "minutes"), [("90", 90), ("01:30:00", 90), ("1:00:01", 61), ("2-00:00:00", 2880), ("1-12", 2160)]
)
def test_parse_slurm_time(text: str, minutes: int) -> None:
    assert parse_slurm_time(text) == minutes


def test_parse_slurm_time_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="--slurm-time"):
        parse_slurm_time("soon")


def test_trainer_kwargs_carry_nodes_and_ddp() -> None:
    from hashbench.bench.runner import trainer_kwargs_for

    assert trainer_kwargs_for(RunOptions()) == {"accelerator": "auto", "devices": 1}
    two_nodes = trainer_kwargs_for(RunOptions(devices=2, num_nodes=2, accelerator="cpu"))
    assert two_nodes == {"accelerator": "cpu", "devices": 2, "num_nodes": 2, "strategy": "ddp"}  # no BN sync on CPU
