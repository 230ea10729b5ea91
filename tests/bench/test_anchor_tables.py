"""The anchor tables of the centre/proxy methods: csq-imagenet100, csq-nuswide21, csq-coco, orthohash-imagenet100.

Their ``reported`` blocks are copied below from the sources named in each spec (the CSQ authors' README, the
OrthoHash authors' README and the OrthoHash supplementary material), so an accidental edit of a spec fails here.
``hashbench table NAME --plan`` must list every cell and the preflight problems (no data, no weights) and run
nothing, without any dataset on disk.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from hashbench.bench.cli import main
from hashbench.bench.grid import expand_grid
from hashbench.bench.spec import list_specs, load_spec, resolve_methods
from hashbench.nn import weights as W
from hashbench.registry import normalize_name

#: the CSQ authors' README (yuanli2333/Hadamard-Matrix-for-hashing): the MAP table under "Test" (ResNet-50; its
#: third column, headed "MAP(16bit)", is 64 bits) and the table under "AlexNet as backbone"
CSQ_RESNET50 = {
    "imagenet100": {16: 0.851, 32: 0.865, 64: 0.873},
    "coco": {16: 0.796, 32: 0.838, 64: 0.861},
    "nuswide21": {16: 0.810, 32: 0.825, 64: 0.839},
}
CSQ_ALEXNET = {
    "imagenet100": {16: 0.601, 32: 0.653, 64: 0.695},
    "nuswide21": {16: 0.744, 32: 0.785, 64: 0.789},
}
#: OrthoHash, AlexNet: 0.711 at 64 bits is the published ImageNet100 value (the authors' README: "paper: 0.711");
#: 16/32 bits and MS-COCO are the row "Bernoulli Distribution" of Table 4 of the supplementary (docs/suppmat.pdf)
ORTHOHASH = {
    "imagenet100": {16: 0.608, 32: 0.679, 64: 0.711},
    "coco": {16: 0.706, 32: 0.759, 64: 0.776},
}

EXPECTED: dict[str, dict[str, dict[int, float]]] = {
    "csq-imagenet100": {
        "CSQ-ResNet50": CSQ_RESNET50["imagenet100"],
        "CSQ-AlexNet": CSQ_ALEXNET["imagenet100"],
        "OrthoHash": ORTHOHASH["imagenet100"],
    },
    "csq-nuswide21": {"CSQ-ResNet50": CSQ_RESNET50["nuswide21"], "CSQ-AlexNet": CSQ_ALEXNET["nuswide21"]},
    "csq-coco": {"CSQ-ResNet50": CSQ_RESNET50["coco"], "OrthoHash": ORTHOHASH["coco"]},
    "orthohash-imagenet100": {"OrthoHash": {64: 0.711}, "CSQ": {64: CSQ_ALEXNET["imagenet100"][64]}},
}
SETTINGS = {  # spec → (protocol, metric, bits)
    "csq-imagenet100": ("imagenet100", "mAP@1000", [16, 32, 64]),
    "csq-nuswide21": ("nuswide21", "mAP@5000", [16, 32, 64]),
    "csq-coco": ("coco", "mAP@5000", [16, 32, 64]),
    "orthohash-imagenet100": ("imagenet100", "mAP@1000", [64]),
}
#: the methods added together with these tables; every one is a row of each table
NEW_METHODS = ["OrthoHash", "MDSH", "DSDH", "DCH", "DFH", "ADSH", "DPN", "DBDH", "HyP2", "IDHN"]
#: reported rows that hashbench does not implement (rendered "reported only"); none so far
REPORTED_ONLY: dict[str, set[str]] = {name: set() for name in EXPECTED}
CSQ_TABLES = ["csq-imagenet100", "csq-nuswide21", "csq-coco"]


def test_the_anchor_specs_are_shipped() -> None:
    assert set(EXPECTED) <= set(list_specs())


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_spec_loads_with_its_setting(name: str) -> None:
    spec = load_spec(name)
    protocol, metric, bits = SETTINGS[name]
    assert (spec.name, spec.protocol, spec.metric, spec.bits) == (name, protocol, metric, bits)
    assert spec.profile == "quick" and "paper" in spec.profiles
    assert spec.seeds == [0, 1, 2]
    assert spec.reported_source and spec.source.get("url")
    rows = {normalize_name(m) for m in spec.methods}
    assert {normalize_name(m) for m in NEW_METHODS} <= rows


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_reported_numbers_are_the_sources(name: str) -> None:
    # Equality both ways: every number copied here is in the spec, and the spec has no other.
    assert load_spec(name).reported == EXPECTED[name]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_reported_row_is_registered_or_reported_only(name: str) -> None:
    spec = load_spec(name)
    registered, missing = resolve_methods(spec)
    assert missing == []  # every row of these tables is implemented
    known = {normalize_name(m) for m in registered}
    for row in spec.reported:
        if normalize_name(row) in known:
            continue
        assert row in REPORTED_ONLY[name], f"{name}: reported row {row!r} is neither registered nor reported-only"
        assert normalize_name(row) not in {normalize_name(m) for m in spec.methods}


@pytest.mark.parametrize("name", CSQ_TABLES)
def test_csq_rows_are_variants_with_their_backbones(name: str) -> None:
    spec = load_spec(name)
    for row in ("CSQ-ResNet50", "CSQ-AlexNet"):
        variant = spec.variant_for(row)
        assert variant is not None and variant.method == "CSQ" and variant.kwargs == {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        paper, _ = expand_grid(spec, "paper", seeds=[0], bits=[spec.bits[-1]])
        quick, _ = expand_grid(spec, "quick", seeds=[0], bits=[spec.bits[-1]])
    backbones = {c.method: c.config["backbone"] for c in paper}
    assert backbones.pop("CSQ-ResNet50") == "resnet50"
    assert set(backbones.values()) == {"alexnet"}  # CSQ-AlexNet and every other row
    for cell in paper:
        assert cell.config["profile"]["pretrained"] is True
        assert cell.config["data_kwargs"]["transform"] == "imagenet"
    # The cheap default: one compact CNN from scratch at 64 px for every row.
    assert {c.config["backbone"] for c in quick} == {"compact_cnn"}
    assert all(c.config["data_kwargs"] == {"transform": "native", "image_size": 64} for c in quick)


@pytest.fixture
def no_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Empty data, cache and weights folders: nothing a cell needs is on disk."""
    for sub in ("data", "cache", "weights", "torch"):
        (tmp_path / sub).mkdir()
    monkeypatch.setenv("HASHBENCH_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv(W.ENV_VAR, str(tmp_path / "weights"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("HASHBENCH_ALLOW_DOWNLOAD", raising=False)
    return tmp_path


@pytest.mark.parametrize("profile", ["quick", "paper"])
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_plan_lists_cells_and_problems_without_data(
    name: str, profile: str, no_data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = load_spec(name)
    results, out = no_data / "results", no_data / "leaderboards"
    argv = [name, "--plan", "--results", str(results), "--out", str(out), "--wandb", "disabled"]
    if profile != spec.profile:
        argv += ["--profile", profile]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    n = len(spec.methods) * len(spec.bits) * len(spec.seeds)
    assert f"table {name}: profile {profile}" in printed
    assert f"{n} cells: 0 cached, {n} to run" in printed
    assert sum(line.lstrip().startswith("pending ") for line in printed.splitlines()) == n
    assert "a run would stop before cell 1" in printed
    assert f"data for protocol '{spec.protocol}'" in printed
    if profile == "paper":
        assert "pretrained weights 'alexnet'" in printed
        if name in CSQ_TABLES:
            assert "pretrained weights 'resnet50'" in printed
    # Nothing ran and nothing was written.
    assert not (results / "cells").exists() or not any((results / "cells").iterdir())
    assert not out.exists() or not any(out.iterdir())
