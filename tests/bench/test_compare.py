"""``hashbench table SPEC --compare OTHER_STORE``: cell by cell, does a re-run reproduce a stored result?"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from hashbench.bench.cli import main
from hashbench.bench.grid import Cell
from hashbench.bench.runner import RunOptions, run_table
from hashbench.bench.spec import parse_spec
from hashbench.bench.store import ResultStore

RAW = {
    "title": "Compare",
    "protocol": "fashion-mnist",
    "bits": [16],
    "methods": ["DPSH", "DSH", "LSH", "ITQ"],
    "metric": "mAP@all",
    "seeds": [0, 1, 2],
}
STORED = {"DPSH": [0.60, 0.64, 0.62], "DSH": [0.50, 0.52, 0.54], "LSH": [0.30, 0.31, 0.32], "ITQ": [0.4, 0.4, 0.4]}
RERUN = {"DPSH": [0.60, 0.64, 0.62], "DSH": [0.52, 0.53, 0.55], "LSH": [0.40, 0.41, 0.42]}  # ITQ not re-run


def _fill(root: Path, table: dict[str, list[float]]) -> None:
    def executor(cell: Cell, options: RunOptions, _: Path) -> dict:
        return {"result": {"metrics": {"mAP@all": table[cell.method][cell.seed]}, "best_epoch": 1}, "wandb": None}

    spec = parse_spec(RAW, name="cmp")
    run_table(spec, RunOptions(results=root, wandb="disabled", methods=list(table)), executor, log=lambda _: None)


def test_compare_tells_each_cell_group(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _fill(tmp_path / "stored", STORED)
    _fill(tmp_path / "rerun", RERUN)
    spec_path = tmp_path / "cmp.yaml"
    spec_path.write_text(yaml.safe_dump(RAW))
    argv = [str(spec_path), "--results", str(tmp_path / "rerun"), "--compare", str(tmp_path / "stored")]
    assert main(argv) == 1  # LSH differs, ITQ is missing from the re-run
    out = capsys.readouterr().out
    verdicts = {line.split("|")[1].strip(): line.split("|")[5].strip() for line in out.splitlines() if "| 16 |" in line}
    assert verdicts == {"DPSH": "identical", "DSH": "within spread", "LSH": "differs", "ITQ": "missing"}
    assert "1 identical, 1 within spread, 1 differs, 1 missing of 4 cell groups" in out
    assert main([*argv, "--methods", "DPSH", "DSH"]) == 0  # all reproduced: exit 0
    capsys.readouterr()
    # A re-run of newer code is matched by configuration, and the output says the code differs.
    store = ResultStore(tmp_path / "rerun")
    for path in store.cells_dir.glob("*.json"):
        record = json.loads(path.read_text())
        record["code_hash"] = "0" * 64
        path.unlink()
        path.with_name(path.name.split("-")[0] + "-000000000000.json").write_text(json.dumps(record))
    assert main([*argv, "--methods", "DPSH"]) == 0
    (line,) = [x for x in capsys.readouterr().out.splitlines() if x.startswith("| DPSH |")]
    assert line.startswith("| DPSH | 16 | 0.6200 ± 0.0200 (n=3) | 0.6200 ± 0.0200 (n=3) | identical |")
    assert line.endswith("| differs |")  # the code column
    assert main([*argv[:3], "--compare", str(tmp_path / "nowhere")]) == 2
    assert "no results store there" in capsys.readouterr().err
