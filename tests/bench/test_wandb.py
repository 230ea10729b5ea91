"""Real W&B in offline mode: one run per cell with curves, tables, images and code statistics; a summary run per
table; `hashbench wandb sync --dry-run`. Everything is read back from the written runs with wandb's own protobuf
records (no mocks of wandb)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

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


@pytest.fixture(scope="module")
def offline_table(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """One real cell run through the default executor with W&B offline, and its stored record."""
    mp = pytest.MonkeyPatch()
    mp.setenv("WANDB_MODE", "offline")
    tmp = tmp_path_factory.mktemp("wb")
    spec = parse_spec(SPEC, name="wb")
    summary = run_table(spec, RunOptions(results=tmp, wandb="offline", accelerator="cpu"), log=lambda _: None)
    assert summary.ran == 1 and not summary.failed
    (record,) = [json.loads(p.read_text()) for p in ResultStore(tmp).cells_dir.glob("*.json")]
    yield tmp, record
    mp.undo()


def test_offline_wandb_run_per_cell(offline_table: tuple[Path, dict]) -> None:
    tmp_path, record = offline_table
    assert 0.0 <= record["result"]["metrics"]["mAP@all"] <= 1.0
    link = record["wandb"]
    assert link["mode"] == "offline" and link["id"] and link["project"] == "hashbench"
    run_dir = tmp_path / link["dir"]
    assert run_dir.is_dir() and run_dir.name.startswith("offline-run-") and run_dir.name.endswith(link["id"])
    assert record["hardware"]["cpu"] and record["code"]["method_source"]
    # the after_test hook stored the examples, P@N and code statistics (indices and numbers only)
    extra = record["result"]["extra"]
    assert len(extra["retrieval_examples"]["directions"]["I→I"]["queries"]) == 8
    assert extra["precision_at_n"]["I→I"]["n"][-1] == 32
    assert sum(extra["code_stats"]["image"]["weight_histogram"]) == 32


def test_cell_run_holds_curves_tables_images_and_config(offline_table: tuple[Path, dict]) -> None:
    from hashbench.bench.wandb_report import read_offline_run

    tmp_path, record = offline_table
    run_dir = tmp_path / record["wandb"]["dir"]
    run = read_offline_run(run_dir)
    assert run["run"]["group"] == "wb" and run["run"]["name"] == "wb/DPSH-8b-s3" and "seed3" in run["run"]["tags"]
    assert run["config"]["code_hash"] == record["code_hash"] and run["config"]["cell_key"] == record["key"]
    assert run["config"]["code"]["hashbench"] == record["code"]["hashbench"]
    # the plots are W&B custom charts over logged tables
    visualize = run["config"]["_wandb"]["visualize"]
    assert visualize["curves/pr"]["panel_config"]["panelDefId"] == "wandb/line/v0"
    assert {"curves/precision_at_n", "codes/bit_balance", "codes/weight_histogram"} <= set(visualize)
    (row,) = [h for h in run["history"] if "examples/top10" in h]
    assert row["examples/top10"]["_type"] == "images/separated" and row["examples/top10"]["count"] == 8
    images = sorted((run_dir / "files" / "media" / "images" / "examples").glob("top10_*.png"))
    assert len(images) == 8
    assert row["metrics"]["_type"] == "table-file" and row["curves/pr_table"]["nrows"] >= 1
    table = json.loads((run_dir / "files" / row["metrics"]["path"]).read_text())
    assert table["columns"] == ["metric", "value"]
    assert dict(table["data"])["mAP@all"] == pytest.approx(record["result"]["metrics"]["mAP@all"])
    pan = json.loads((run_dir / "files" / row["curves/precision_at_n_table"]["path"]).read_text())
    assert [r[1] for r in pan["data"]] == record["result"]["extra"]["precision_at_n"]["I→I"]["n"]
    summary = run["summary"]
    assert summary["codes/distinct_codes"] == record["result"]["extra"]["code_stats"]["image"]["distinct_codes"]
    assert summary["test/mAP@all"] == pytest.approx(record["result"]["metrics"]["mAP@all"])


def test_table_summary_run_and_sync_dry_run(offline_table: tuple[Path, dict], capsys: pytest.CaptureFixture) -> None:
    from hashbench.bench.render import render_table
    from hashbench.bench.wandb_report import finish_table, leaderboard_pointer, read_offline_run
    from hashbench.cli_wandb import main as wandb_main

    tmp_path, record = offline_table
    spec = parse_spec(SPEC, name="wb")
    store = ResultStore(tmp_path)
    paths = render_table(spec, store, out_dir=tmp_path / "lb")
    assert paths["examples"].stat().st_size > 5000 and "(wb-examples.png)" in paths["md"].read_text()
    line, ok = finish_table(spec, store, paths, "offline")
    assert ok and "hashbench wandb sync wb" in line
    link = json.loads(leaderboard_pointer(tmp_path, "wb").read_text())
    run_dir = tmp_path / link["dir"]
    summary = read_offline_run(run_dir)
    assert summary["run"]["name"] == "wb/leaderboard" and summary["run"]["job_type"] == "leaderboard"
    (row,) = [h for h in summary["history"] if "leaderboard" in h]
    table = json.loads((run_dir / "files" / row["leaderboard"]["path"]).read_text())
    assert table["columns"][:3] == ["method", "status", "n_bits"] and table["columns"][-1] == "runs"
    (dpsh,) = table["data"]
    assert dpsh[0] == "DPSH" and dpsh[5] == pytest.approx(record["result"]["metrics"]["mAP@all"], abs=1e-6)
    assert dpsh[-1] == record["wandb"]["id"]
    assert row["leaderboard/figure"]["_type"] == "image-file" and row["leaderboard/examples"]["_type"] == "image-file"
    # publishing an unchanged leaderboard again reuses the summary run
    assert finish_table(spec, store, paths, "offline")[1]
    assert len(list((tmp_path / "wandb" / "wandb").glob("offline-run-*lb-*"))) == 1
    capsys.readouterr()
    spec_file = tmp_path / "wb.yaml"
    import yaml

    spec_file.write_text(yaml.safe_dump(SPEC))
    assert wandb_main(["sync", str(spec_file), "--results", str(tmp_path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "2 offline W&B run(s) to upload" in out and "wb/DPSH-8b-s3" in out and "wb/leaderboard" in out
    assert "would run: wandb sync" in out and str(run_dir) in out


def test_workspace_for_the_table_group(monkeypatch: pytest.MonkeyPatch) -> None:
    from hashbench.bench.wandb_report import build_workspace
    from hashbench.errors import MissingExtraError

    spec = parse_spec(SPEC, name="wb")
    pytest.importorskip("wandb_workspaces")
    workspace = build_workspace(spec, "someone", "hashbench")
    view = workspace._to_model()  # the saved form, built offline
    assert workspace.name == "hashbench: wb" and [s.name for s in workspace.sections][:2] == ["Leaderboard", "Curves"]
    assert view is not None and "wb" in str(workspace.runset_settings.filters)
    import sys

    for name in [m for m in sys.modules if m.startswith("wandb_workspaces")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "wandb_workspaces", None)  # as if the optional package were not installed
    with pytest.raises(MissingExtraError, match=r"hashbench\[wandb\]"):
        build_workspace(spec, "someone")


def test_leaderboard_links_online_runs_only(tmp_path: Path) -> None:
    from hashbench.bench.render import render_table

    raw = {k: v for k, v in SPEC.items() if k not in ("datamodule",)}
    spec = parse_spec({**raw, "seeds": [0, 1]}, name="links")

    def executor(cell, options, root):
        wb = {"mode": "offline", "id": f"r{cell.seed}", "dir": f"wandb/wandb/offline-run-x-r{cell.seed}"}
        if cell.seed == 1:
            wb = {"mode": "online", "id": "r1", "url": "https://wandb.ai/me/hashbench/runs/r1"}
        return {"result": {"metrics": {"mAP@all": 0.5 + cell.seed / 10}, "best_epoch": 1}, "wandb": wb}

    run_table(spec, RunOptions(results=tmp_path, wandb="disabled"), executor=executor, log=lambda _: None)
    md = render_table(spec, ResultStore(tmp_path), out_dir=tmp_path / "lb", figure=False)["md"].read_text()
    assert "| code hash | W&B run |" in md
    assert "[run](https://wandb.ai/me/hashbench/runs/r1) |" in md
    assert "offline-run" not in md and md.count(" — |\n") >= 1


def test_wandb_command_errors(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from hashbench.cli import main
    from hashbench.errors import EXIT_CODES

    assert main(["wandb", "sync", "no-such-table", "--results", str(tmp_path)]) == EXIT_CODES["usage"]
    assert "available specs" in capsys.readouterr().err
    assert main(["wandb", "publish", "demo", "--out", str(tmp_path), "--results", str(tmp_path)]) == 3
    assert "render the table first" in capsys.readouterr().err
    assert main(["wandb"]) == EXIT_CODES["usage"]
    assert main(["wandb", "sync", "--results", str(tmp_path)]) == 0
    assert "no offline W&B run left to upload" in capsys.readouterr().out


def test_cross_modal_cell_logs_both_directions_and_draws_text_queries(tmp_path: Path, monkeypatch) -> None:
    from hashbench.bench.render import render_table
    from hashbench.bench.wandb_report import read_offline_run

    monkeypatch.setenv("WANDB_MODE", "offline")
    raw = {
        **SPEC,
        "protocol": "fashion-mnist-text",
        "methods": ["DCMH"],
        "datamodule": {
            "class_path": "hashbench.data.synthetic_text.FashionMNISTTextDataModule",
            "init_args": {"image_source": "synthetic", "synthetic_sizes": [3, 8, 6]},
        },
    }
    spec = parse_spec(raw, name="xm")
    summary = run_table(spec, RunOptions(results=tmp_path, wandb="offline", accelerator="cpu"), log=lambda _: None)
    assert summary.ran == 1 and not summary.failed
    (record,) = [json.loads(p.read_text()) for p in ResultStore(tmp_path).cells_dir.glob("*.json")]
    extra = record["result"]["extra"]
    assert set(extra["retrieval_examples"]["directions"]) == {"I→T", "T→I"} and set(extra["code_stats"]) == {
        "image",
        "text",
    }
    run_dir = tmp_path / record["wandb"]["dir"]
    (row,) = [h for h in read_offline_run(run_dir)["history"] if "examples/i2t" in h]
    i2t = json.loads((run_dir / "files" / row["examples/i2t"]["path"]).read_text())
    assert i2t["columns"][3] == "retrieved texts" and i2t["data"][0][3].count("\n") == 9
    assert all(line[0] in "✓✗" and "word" in line for line in i2t["data"][0][3].split("\n"))
    assert row["examples/t2i"]["count"] == len(extra["retrieval_examples"]["directions"]["T→I"]["queries"])
    paths = render_table(spec, ResultStore(tmp_path), out_dir=tmp_path / "lb")
    assert paths["examples"].stat().st_size > 5000
