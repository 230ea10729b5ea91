"""Rendering from the store alone: reported / reproduced / Δ columns, header, row kinds, CSV, figure, CLI."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from hashbench.bench.cli import main
from hashbench.bench.grid import Cell
from hashbench.bench.render import render_table
from hashbench.bench.runner import RunOptions, run_table
from hashbench.bench.spec import parse_spec
from hashbench.bench.store import ResultStore

RAW = {
    "title": "Fake table",
    "source": {"paper": "Some et al. 2020", "table": "Table 9"},
    "protocol": "fashion-mnist",
    "bits": [12, 48],
    "methods": ["DPSH", "NotYet"],
    "metric": "mAP@all",
    "seeds": [0, 1],
    "reported": {"source": "Some et al. 2020, Table 9", "methods": {"KSH": {12: 0.3, 48: 0.4}, "DPSH": {12: 0.5}}},
}


def _executor(cell: Cell, options: RunOptions, root: Path) -> dict:
    if cell.n_bits == 48 and cell.seed == 1:
        raise RuntimeError("diverged")
    value = {0: 0.60, 1: 0.64}[cell.seed] if cell.n_bits == 12 else 0.70
    extra = {"pr_precision": [1.0, 0.9, math.nan], "pr_recall": [0.1, 0.5, 1.0]}
    result = {"metrics": {"mAP@all": value}, "best_epoch": 2, "train_time_s": 1.5, "extra": extra}
    run_dir = root / "wandb" / "wandb" / f"offline-run-{cell.key}"
    return {"result": result, "wandb": {"mode": "offline", "dir": str(run_dir.relative_to(root)), "id": "x"}}


@pytest.fixture
def rendered(tmp_path: Path) -> tuple[str, list[dict], Path]:
    spec = parse_spec(RAW, name="fake")
    with pytest.warns(UserWarning, match="NotYet"):
        run_table(spec, RunOptions(results=tmp_path / "res", wandb="disabled"), executor=_executor, log=lambda _: None)
    paths = render_table(spec, ResultStore(tmp_path / "res"), out_dir=tmp_path / "lb")
    rows = list(csv.DictReader(paths["csv"].open()))
    assert paths["png"].stat().st_size > 1000
    return paths["md"].read_text(), rows, tmp_path


def test_markdown_columns_and_rows(rendered: tuple[str, list[dict], Path]) -> None:
    md, _, _ = rendered
    assert "| Method | 12 bits reported | 12 bits reproduced | Δ | 48 bits reported | 48 bits reproduced | Δ |" in md
    # DPSH: mean 0.62, sample std of (0.60, 0.64) = 0.0283, Δ = 0.62 - 0.5; at 48 bits one seed failed.
    assert "| DPSH | 0.5000 | 0.6200 ± 0.0283 (n=2) | +0.1200 | — | 0.7000 (n=1 of 2) | — |" in md
    assert "| KSH *(reported only)* | 0.3000 | reported only | — | 0.4000 | reported only | — |" in md
    assert "| NotYet *(not implemented)* | — | not implemented | — |" in md
    assert md.index("| KSH") < md.index("| DPSH") < md.index("| NotYet")  # paper order, then hashbench's rows


def test_header_states_protocol_metric_checkpoint_seeds_significance_code(
    rendered: tuple[str, list[dict], Path],
) -> None:
    md, _, _ = rendered
    assert md.startswith("# Fake table\n")
    assert "never edit by hand" in md
    assert "- **Reported numbers**: Some et al. 2020, Table 9" in md
    assert "- **Protocol**: `fashion-mnist`" in md
    assert "ties: `expected`" in md and "the whole database" in md
    assert "best validation mAP" in md and "carved from the" in md
    assert "- **Seeds**: [0, 1]" in md
    assert "max_epochs=10" in md
    assert "paired t-test across seeds" in md and "rank range" in md
    assert "- **Code version**: hashbench 0.1.0; 1 code hash(es)" in md
    assert "`leaderboards/fake.provenance.json` in the results store" in md


def test_machine_and_time_dependent_provenance_goes_to_the_sidecar(rendered: tuple[str, list[dict], Path]) -> None:
    """Hostname, CPU, W&B folders, times and git commits never enter the Markdown/CSV; the sidecar has them."""
    import json
    import platform

    from hashbench.bench.runner import _cpu_model

    md, _, tmp_path = rendered
    csv_text = (tmp_path / "lb" / "fake.csv").read_text()
    for text in (md, csv_text):
        assert "offline-run-" not in text and "wandb" not in text.lower()
        assert platform.node() not in text and _cpu_model() not in text
        assert "UTC" not in text and "train s" not in text
    side = json.loads((tmp_path / "res" / "leaderboards" / "fake.provenance.json").read_text())
    assert side["table"] == "fake" and side["rendered_at"]
    (cell,) = [c for c in side["cells"] if c["n_bits"] == 48]
    assert cell["hardware"]["host"] == platform.node() and cell["hardware"]["cpu"] == _cpu_model()
    assert cell["wandb"].startswith(str(tmp_path / "res" / "wandb" / "wandb" / "offline-run-"))
    assert cell["train_time_s"] == 1.5 and cell["elapsed_s"] >= 0 and "commit" in cell["git"]
    assert len(side["cells"]) == 3


def test_csv_long_format(rendered: tuple[str, list[dict], Path]) -> None:
    _, rows, _ = rendered
    by = {(r["method"], r["n_bits"]): r for r in rows}
    dpsh12 = by[("DPSH", "12")]
    assert dpsh12["status"] == "reproduced" and dpsh12["reported"] == "0.500000"
    assert float(dpsh12["reproduced_mean"]) == pytest.approx(0.62) and dpsh12["n_seeds"] == "2"
    assert float(dpsh12["delta"]) == pytest.approx(0.12)
    assert by[("DPSH", "48")]["failed"] == "1"
    assert by[("KSH", "48")]["status"] == "reported only" and by[("KSH", "48")]["reproduced_mean"] == ""
    assert by[("NotYet", "12")]["status"] == "not implemented"


def test_render_only_cli_and_stale_cells(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spec_path = tmp_path / "fake.yaml"
    import yaml

    spec_path.write_text(yaml.safe_dump(RAW))
    res, lb = tmp_path / "res", tmp_path / "lb"
    argv = [str(spec_path), "--results", str(res), "--out", str(lb), "--render-only"]
    assert main(argv) == 0
    assert "0.6200" not in (lb / "fake.md").read_text() and "not run" in (lb / "fake.md").read_text()
    spec = parse_spec(RAW, name="fake")
    with pytest.warns(UserWarning):
        run_table(spec, RunOptions(results=res, wandb="disabled"), executor=_executor, log=lambda _: None)
    assert main(argv) == 0
    assert "0.6200 ± 0.0283 (n=2)" in (lb / "fake.md").read_text()
    # The shared code changes: cells of the old version are not used, unless --allow-stale (then marked †).
    store = ResultStore(res)
    for path in store.cells_dir.glob("*.json"):
        if not path.name.endswith(".error.json"):
            path.rename(path.with_name(path.name.split("-")[0] + "-000000000000.json"))
    # A render with fewer finished cells keeps the existing leaderboard; --replace overwrites it.
    before = (lb / "fake.md").read_text()
    assert main(argv) == 0
    assert (lb / "fake.md").read_text() == before
    assert "kept" in capsys.readouterr().err
    assert main([*argv, "--replace"]) == 0
    assert "0.6200" not in (lb / "fake.md").read_text()
    assert main([*argv, "--allow-stale"]) == 0
    assert "0.6200 ± 0.0283 (n=2, †)" in (lb / "fake.md").read_text()


def test_cli_errors_and_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--list"]) == 0
    assert "cifar10" in capsys.readouterr().out
    assert main(["no-such-table"]) == 2
    assert "available specs" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("title: x\nprotocol: p\nbits: [12]\nmethods: [DPSH]\nmetric: mAP@all\ncolour: red\n")
    assert main([str(bad), "--render-only"]) == 5  # a bad spec (hashbench.errors.EXIT_CODES["config"])
    assert "unknown key(s) ['colour']" in capsys.readouterr().err
    assert main(["cifar10", "--shard", "3/2"]) == 2
    assert main(["cifar10", "--seeds", "zero"]) == 2
    assert main([]) == 2


def test_rendering_twice_from_one_store_gives_identical_bytes(tmp_path: Path) -> None:
    """Same store → same .md/.csv/.png bytes; and the bytes do not change when only provenance differs (another
    host, CPU, git commit, times, W&B folder: what a re-run on another machine with equal numbers changes)."""
    import json

    spec = parse_spec(RAW, name="fake")
    store = ResultStore(tmp_path / "res")
    with pytest.warns(UserWarning):
        run_table(spec, RunOptions(results=store.root, wandb="disabled"), executor=_executor, log=lambda _: None)

    def render(out: str) -> dict[str, bytes]:
        paths = render_table(spec, store, out_dir=tmp_path / out)
        return {kind: paths[kind].read_bytes() for kind in ("md", "csv", "png")}

    first = render("a")
    assert render("b") == first
    for path in store.cells_dir.glob("*.json"):
        if path.name.endswith(".error.json"):
            continue
        record = json.loads(path.read_text())
        record["hardware"] = {"host": "elsewhere", "cpu": "Some Other CPU", "cpu_count": 64}
        record["code"]["git"] = {"commit": "f" * 40, "dirty": True}
        record["elapsed_s"], record["finished_at"] = 12345.0, "2030-01-01T00:00:00+00:00"
        record["result"]["train_time_s"] = 999.0
        record["wandb"] = {"mode": "offline", "id": "z", "dir": "/elsewhere/wandb/wandb/offline-run-z"}
        path.write_text(json.dumps(record))
    assert render("c") == first


def test_ranking_section_ranks_with_seed_noise() -> None:
    """Three methods over three seeds: A and B differ by less than their noise, C is clearly worst."""
    from hashbench.bench.render import collect_rows, rankings

    raw = {k: v for k, v in RAW.items() if k != "reported"}
    raw.update(methods=["DPSH", "DSH", "LSH"], bits=[12], seeds=[0, 1, 2])
    spec = parse_spec(raw, name="rk")
    values = {"DPSH": [0.70, 0.60, 0.66], "DSH": [0.64, 0.66, 0.62], "LSH": [0.31, 0.30, 0.32]}

    def executor(cell: Cell, options: RunOptions, root: Path) -> dict:
        return {"result": {"metrics": {"mAP@all": values[cell.method][cell.seed]}, "best_epoch": 1}, "wandb": None}

    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        store = ResultStore(tmp)
        run_table(spec, RunOptions(results=tmp, wandb="disabled"), executor=executor, log=lambda _: None)
        rows, _ = collect_rows(spec, store)
        ranked = rankings(spec, rows)[12]
        md = render_table(spec, store, out_dir=Path(tmp) / "lb", figure=False)["md"].read_text()
    assert [(r.name, r.rank, r.range_text) for r in ranked] == [("DPSH", 1, "1–2"), ("DSH", 2, "1–2"), ("LSH", 3, "3")]
    assert ranked[0].p_next > 0.05 and ranked[1].p_next < 0.05 and ranked[2].p_next is None
    assert "## Ranking at 12 bits" in md and "| 3 | LSH | 0.3100 ± 0.0100 (n=3) | 3 | — |" in md


def test_header_counts_cells_stopped_early_and_at_the_cap(tmp_path: Path) -> None:
    raw = {k: v for k, v in RAW.items() if k != "reported"}
    raw.update(methods=["DPSH"], bits=[12], seeds=[0, 1, 2], profile="converged")
    spec = parse_spec(raw, name="es")
    ends = {0: (8, 11, True), 1: (14, 15, False), 2: (11, 15, True)}  # best epoch, epochs run, stopped early

    def executor(cell: Cell, options: RunOptions, root: Path) -> dict:
        best, epochs, stopped = ends[cell.seed]
        stop = {"patience": 3, "min_delta": 0.0, "stopped_early": stopped, "max_epochs": 15}
        recipe = {"epochs": epochs, "early_stopping": stop}
        return {"result": {"metrics": {"mAP@all": 0.5}, "best_epoch": best, "recipe": recipe}, "wandb": None}

    run_table(spec, RunOptions(results=tmp_path, wandb="disabled"), executor=executor, log=lambda _: None)
    md = render_table(spec, ResultStore(tmp_path), out_dir=tmp_path / "lb", figure=False)["md"].read_text()
    assert "has not improved for 3 epochs, at most 15 epochs; 2 of 3 cells stopped early" in md
    assert "1 reached the cap while still improving" in md
    assert "| DPSH | 12 | 1 | 0.5000 | 14 | 15 | cap |" in md and "| DPSH | 12 | 2 | 0.5000 | 11 | 15 | early |" in md
