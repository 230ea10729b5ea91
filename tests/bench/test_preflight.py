"""Preflight: a table checks everything its cells need before cell 1; --plan; leaderboards are never made worse."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from hashbench.bench.cli import apply_settings, main
from hashbench.bench.grid import expand_grid
from hashbench.bench.preflight import plan, preflight
from hashbench.bench.render import LeaderboardKept, render_table
from hashbench.bench.runner import RunOptions, run_table
from hashbench.bench.spec import load_spec, parse_spec
from hashbench.bench.store import ResultStore

REPO = Path(__file__).resolve().parents[2]


def _empty_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HASHBENCH_", "TORCH_HOME"))}
    env.update(
        HASHBENCH_DATA=str(tmp_path / "no-data"),
        XDG_CACHE_HOME=str(tmp_path / "cache"),
        TORCH_HOME=str(tmp_path / "torch"),
        WANDB_MODE="disabled",
        HF_HUB_OFFLINE="1",
    )
    return env


def test_make_table_cifar10_without_data_stops_before_cell_one(tmp_path: Path) -> None:
    """`make table-cifar10` with no CIFAR-10 on disk: non-zero within 20 s, lists what is missing and how to get
    it, runs no cell, leaves the leaderboard files untouched."""
    out, results = tmp_path / "leaderboards", tmp_path / "results"
    out.mkdir()
    old = {suffix: f"previous {suffix} leaderboard\n".encode() for suffix in ("md", "csv", "png")}
    for suffix, content in old.items():
        (out / f"cifar10.{suffix}").write_bytes(content)
    repo_boards = {p: p.stat().st_mtime_ns for p in (REPO / "leaderboards").glob("cifar10.*")}
    if (REPO / ".venv" / "bin" / "hashbench").exists():
        cmd = ["make", "-s", "--no-print-directory", "table-cifar10", f"ARGS=--results {results} --out {out}"]
    else:  # an installed hashbench outside the repo's venv
        cmd = [sys.executable, "-m", "hashbench.cli", "table", "cifar10", "--results", str(results), "--out", str(out)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=_empty_env(tmp_path), capture_output=True, text=True, timeout=20)
    elapsed = time.perf_counter() - t0
    assert proc.returncode != 0, proc.stdout
    assert elapsed < 20
    err = proc.stderr
    assert "preflight found" in err and "no cell was run" in err
    assert "dataset 'cifar10' not found" in err and "hashbench data prepare cifar10" in err
    assert "cifar-10-python.tar.gz" in err and "--download" in err
    assert not list((results / "cells").glob("*.json"))  # no cell ran, no error records either
    for suffix, content in old.items():
        assert (out / f"cifar10.{suffix}").read_bytes() == content
    assert {p: p.stat().st_mtime_ns for p in (REPO / "leaderboards").glob("cifar10.*")} == repo_boards


def test_preflight_lists_every_problem_at_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in _empty_env(tmp_path).items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc W&B key
    spec = parse_spec(
        {
            "title": "t",
            "protocol": "nuswide21",
            "bits": [12],
            "methods": ["DPSH", "DCMH"],
            "metric": "mAP@5000",
            "backbone": "alexnet",
            "profiles": {"paper": {"base": "paper", "pretrained": True}},
        },
        name="t",
    )
    cells, _ = expand_grid(spec, "paper")
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    report = preflight(cells, ResultStore(tmp_path / "res"), not_a_dir / "out", wandb="online")
    text = "\n".join(p.what + "\n" + p.how for p in report.problems)
    assert "dataset 'nuswide21' not found" in text and "train.txt" in text
    assert "pretrained weights 'alexnet'" in text and "alexnet-owt-7be5be79.pth" in text
    assert text.count("pretrained weights 'alexnet'") == 1  # one need, checked once for both methods
    assert "output folder" in text and "not writable" in text
    assert "W&B API key" in text
    assert len(report.problems) == 4
    assert main(["nuswide21", "--results", str(tmp_path / "res"), "--out", str(tmp_path / "lb")]) == 3  # missing


def test_plan_prints_every_cell_with_cache_state_and_estimate(tmp_path: Path, capsys) -> None:
    spec = parse_spec(
        {"title": "t", "protocol": "fashion-mnist", "bits": [12, 24], "methods": ["DPSH", "DSH"], "metric": "mAP@all"},
        name="t",
    )
    store = ResultStore(tmp_path)
    cells, _ = expand_grid(spec)

    def executor(cell, options, root):
        return {"result": {"metrics": {"mAP@all": 0.5}, "train_time_s": 1.0}, "wandb": None}

    run_table(spec, RunOptions(results=tmp_path, wandb="disabled", methods=["DPSH"], bits=[12]), executor=executor)
    record_path = store.path(cells[0].key)
    record = json.loads(record_path.read_text())
    record["elapsed_s"] = 42.0
    record_path.write_text(json.dumps(record))
    lines = plan(cells, store)
    assert len(lines) == 2 + len(cells)
    states = {(line.split()[1], line.split()[2], line.split()[0]) for line in lines[1:-1]}
    assert ("DPSH", "12", "cached") in states and ("DPSH", "24", "pending") in states
    by_method = {line.split()[1]: line for line in lines[1:-1] if line.split()[0] == "pending"}
    assert "0m42s" in by_method["DPSH"]  # same method, protocol and profile: its recorded wall time
    assert "unknown" in by_method["DSH"]
    assert lines[-1].startswith("4 cells: 1 cached, 3 to run; estimated remaining time: at least 0m42s")
    assert main(["cifar10", "--plan", "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "204 cells: 0 cached, 204 to run" in out


def test_cifar10_plan_lists_204_cells() -> None:
    spec = load_spec("cifar10")
    cells, _ = expand_grid(spec)
    assert len(cells) == 204 == len({c.key for c in cells})  # 17 methods x 4 bit lengths x 3 seeds


def test_set_overrides_enter_the_cells_and_their_keys() -> None:
    spec = load_spec("cifar10")
    plain, _ = expand_grid(spec, "paper", methods=["DPSH"], bits=[12], seeds=[0])
    apply_settings(spec, "paper", [("max_steps", 3), ("data.eval_limit", 40), ("batch_size", 8)])
    short, _ = expand_grid(spec, "paper", methods=["DPSH"], bits=[12], seeds=[0])
    assert short[0].config["profile"]["max_steps"] == 3 and short[0].config["profile"]["batch_size"] == 8
    assert short[0].config["data_kwargs"] == {"transform": "imagenet", "eval_limit": 40}
    assert short[0].config["profile"]["optimizer"] == "sgd"  # the method's paper recipe is still the base
    assert short[0].key != plain[0].key


def test_render_never_replaces_a_leaderboard_with_a_worse_one(tmp_path: Path, capsys) -> None:
    raw = {"title": "t", "protocol": "fashion-mnist", "bits": [12, 24], "methods": ["DPSH"], "metric": "mAP@all"}
    spec = parse_spec(raw, name="t")
    store, out = ResultStore(tmp_path / "res"), tmp_path / "lb"

    def ok(cell, options, root):
        return {"result": {"metrics": {"mAP@all": 0.5}, "train_time_s": 1.0}, "wandb": None}

    run_table(spec, RunOptions(results=store.root, wandb="disabled"), executor=ok, log=lambda _: None)
    render_table(spec, store, out_dir=out, figure=False)
    before = (out / "t.md").read_text(), (out / "t.csv").read_text()
    # The 24-bit cell is lost (e.g. a code change makes it stale) and its rerun fails.
    cells, _ = expand_grid(spec)
    store.path(cells[1].key).unlink()
    store.put_error(cells[1].key, {"error": "RuntimeError: diverged"})
    with pytest.raises(LeaderboardKept, match="hold 2 finished cell"):
        render_table(spec, store, out_dir=out, figure=False)
    assert ((out / "t.md").read_text(), (out / "t.csv").read_text()) == before
    render_table(spec, store, out_dir=out, figure=False, replace=True)
    assert "failed" in (out / "t.md").read_text()


def test_spec_with_custom_datamodule_passes_preflight(tmp_path: Path) -> None:
    spec_file = tmp_path / "synthetic.yaml"
    spec_file.write_text(
        yaml.safe_dump(
            {
                "title": "synthetic",
                "protocol": "fashion-mnist",
                "datamodule": {"class_path": "hashbench.testing.SyntheticHashingDataModule", "init_args": {}},
                "bits": [8],
                "methods": ["DPSH"],
                "metric": "mAP@all",
            }
        )
    )
    cells, _ = expand_grid(load_spec(spec_file))
    report = preflight(cells, ResultStore(tmp_path / "res"), tmp_path / "lb", wandb="disabled")
    assert report.ok, report.problems
