"""One real cell through the default in-process executor with W&B offline: one run per cell, linked."""

from __future__ import annotations

import json
from pathlib import Path

from hashbench.bench.runner import RunOptions, run_table
from hashbench.bench.spec import parse_spec
from hashbench.bench.store import ResultStore

SPEC = {
    "title": "synthetic",
    "protocol": "synthetic",
    "metric": "mAP@all",
    "bits": [8],
    "seeds": [3],
    "methods": ["DPSH"],
    "backbone": "compact_cnn",
    "datamodule": {
        "class_path": "hashbench.testing.SyntheticHashingDataModule",
        "init_args": {"num_train": 32, "num_query": 8, "num_database": 32},
    },
    "profile": "tiny",
    "profiles": {"tiny": {"max_epochs": 1, "batch_size": 16, "optimizer": "adam", "lr": 1e-3}},
}


def test_offline_wandb_run_per_cell(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    spec = parse_spec(SPEC, name="wb")
    summary = run_table(spec, RunOptions(results=tmp_path, wandb="offline", accelerator="cpu"), log=lambda _: None)
    assert summary.ran == 1 and not summary.failed
    (record,) = [json.loads(p.read_text()) for p in ResultStore(tmp_path).cells_dir.glob("*.json")]
    assert 0.0 <= record["result"]["metrics"]["mAP@all"] <= 1.0
    link = record["wandb"]
    assert link["mode"] == "offline" and link["id"]
    run_dir = tmp_path / link["dir"]
    assert run_dir.is_dir() and run_dir.name.startswith("offline-run-") and run_dir.name.endswith(link["id"])
    assert record["hardware"]["cpu"] and record["code"]["method_source"]
