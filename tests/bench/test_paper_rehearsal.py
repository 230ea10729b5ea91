"""The ``paper`` profile rehearsed end to end: every paper table spec on tiny data in the real on-disk formats.

Each spec runs ``hashbench table SPEC --profile paper`` with the paper's own backbone architectures (AlexNet; CLIP
ViT-B/32 towers; VGG-16 features for the semantic-structure methods) built with random weights through the same
loading code as the real ones: a weights file the test saves in ``$HASHBENCH_WEIGHTS`` whose sha256 stands in for
the published one. Each cell takes two optimiser steps (``--set max_steps=2``, batch 8, a few dozen images), which
is the only change to the methods' ``paper_training`` recipes; the test then checks, from the recipe each cell
recorded, that the optimiser, learning rates, schedule, transform, sampler and weights file that actually ran are
the recipe's, and that the rendered leaderboard carries the spec's reported column next to cells that ran.

CI runs a representative subset (``cifar10``: every single-modal method's recipe on AlexNet; ``svhn`` with DFEH,
which runs the class-aware sampler; ``mirflickr25k-dcmh`` with DCMH, a cross-modal cell on AlexNet); every spec in
full is marked ``slow`` (``make test-all``).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import pytest
import torch

import hashbench.data.protocols as protocols
from hashbench.bench.cli import main
from hashbench.bench.run import resolve_method
from hashbench.bench.spec import list_specs, load_spec
from hashbench.bench.store import ResultStore
from hashbench.nn import weights as W
from tests.fake_data import (
    accept_generated_checksums,
    write_cifar10,
    write_clip_protocol,
    write_dcmh_v73,
    write_list_dataset,
    write_png,
    write_svhn,
)

STEPS, BATCH, TRAIN, EVAL = 2, 8, 16, 24
OPTIMIZERS = {"sgd": "SGD", "adam": "Adam", "adamw": "AdamW", "rmsprop": "RMSprop"}
SCHEDULERS = {"none": None, "step": "StepLR", "cosine": "LambdaLR"}
PAPER_SPECS = [name for name in list_specs() if "paper" in load_spec(name).profiles]
CI_SUBSET = {"cifar10": None, "svhn": ["DFEH"], "mirflickr25k-dcmh": ["DCMH"]}


# ----------------------------------------------------------------------------------------------- tiny data
def write_dcmh_mat(root: Path, n: int = 40, text_dim: int = 1386) -> None:
    """DCMH's FLICKR-25K.mat (MATLAB v7.3) with the protocol's 1,386-dim bag-of-words text and 24 labels."""
    rng = np.random.default_rng(0)
    labels = (rng.random((n, 24)) < 0.3).astype(np.float64)
    labels[np.arange(n), rng.integers(24, size=n)] = 1
    texts = (rng.random((n, text_dim)) < 0.02).astype(np.float64)
    images = rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8)
    (root / "mirflickr25k-dcmh").mkdir(parents=True)
    write_dcmh_v73(root / "mirflickr25k-dcmh" / "FLICKR-25K.mat", images, texts, labels)


# ----------------------------------------------------------------------------------------------- weights
def _save_weights(folder: Path, name: str, state: dict, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = folder / f"{name}.pth"
    torch.save(state, path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    monkeypatch.setitem(W.WEIGHTS, name, dataclasses.replace(W.WEIGHTS[name], sha256=digest))
    return path


def _weights_for(specs: list[str], methods: list[str] | None) -> set[str]:
    from hashbench.bench.grid import expand_grid

    names: set[str] = set()
    for spec_name in specs:
        cells, _ = expand_grid(load_spec(spec_name), "paper", methods=methods)
        for cell in cells:
            kwargs = {**cell.config["profile"], **cell.config["method_kwargs"]}
            names |= {need.name for need in resolve_method(cell.config["method"]).weights_needed(kwargs)}
    return names


def _state_dict(name: str) -> dict:
    import torchvision

    if name.startswith("clip-"):
        import open_clip

        model = name.removeprefix("clip-").rsplit("-", 1)[0]
        return open_clip.create_model(model).state_dict()
    return getattr(torchvision.models, name)().state_dict()


@pytest.fixture
def paper_world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A data root with every paper spec's protocol in its real format, and random-init weights files."""
    data, weights = tmp_path / "data", tmp_path / "weights"
    data.mkdir()
    weights.mkdir()
    monkeypatch.setenv("HASHBENCH_DATA", str(data))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv(W.ENV_VAR, str(weights))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("HASHBENCH_ALLOW_DOWNLOAD", raising=False)
    write_cifar10(data, per_class_train=510, per_class_test=100)  # cifar10*: 100 queries + 500 training per class
    write_svhn(data, per_class=(420, 200))
    write_list_dataset(data, "nuswide21", classes=21, sizes=(40, 12, 60))
    write_list_dataset(data, "coco", classes=80, sizes=(40, 12, 60))
    _write_single_label_lists(data / "imagenet100", classes=100, sizes=(40, 12, 60))
    write_dcmh_mat(data)
    image_root = tmp_path / "clip-images"
    write_clip_protocol(data / "nuswide21-clip", image_root, classes=21)
    accept_generated_checksums(monkeypatch, data)
    # The cross-modal protocols draw thousands of queries, cifar10-2 6,000 images per class; the tiny pools get
    # small splits drawn by the same rules.
    table = dict(protocols.PROTOCOLS)
    for name in ("mirflickr25k-dcmh", "nuswide21-clip"):
        table[name] = dataclasses.replace(table[name], num_query=8, num_train=20)
    table["cifar10-2"] = dataclasses.replace(table["cifar10-2"], query_per_class=100, train_per_class=500)
    monkeypatch.setattr(protocols, "PROTOCOLS", table)

    def save(names: set[str]) -> dict[str, Path]:
        return {n: _save_weights(weights, n, _state_dict(n), monkeypatch) for n in sorted(names) if n in W.WEIGHTS}

    return {"root": tmp_path, "image_root": image_root, "save_weights": save}


# ----------------------------------------------------------------------------------------------- checks
def _check_recipe(record: dict, files: dict[str, Path]) -> None:
    """The recipe a cell actually ran equals its method's ``paper_training`` (batch and steps aside)."""
    cls = resolve_method(record["config"]["method"])
    paper = dict(cls.paper_training)
    recipe = record["result"]["recipe"]
    label = f"{record['method']} ({record['table']})"
    if cls.supervision == "shallow":  # closed-form fit: one pass over the training set, no optimiser
        assert recipe["epochs"] <= paper["max_epochs"], label
        return
    assert recipe["steps"] == STEPS, label
    assert recipe["optimizer"] == OPTIMIZERS[paper.get("optimizer", "adam")], label
    groups = recipe["param_groups"]
    assert groups["head"]["lr"] == pytest.approx(paper.get("lr", 1e-3)), label
    if "backbone" in groups:
        expected = paper.get("backbone_lr") or paper.get("lr", 1e-3)
        assert groups["backbone"]["lr"] == pytest.approx(expected), label
    assert groups["head"]["weight_decay"] == pytest.approx(paper.get("weight_decay", 1e-5)), label
    if recipe["optimizer"] in ("SGD", "RMSprop"):
        assert recipe["momentum"] == pytest.approx(paper.get("momentum", 0.9)), label
    assert recipe["scheduler"] == SCHEDULERS[paper.get("scheduler", "none")], label
    data = record["config"]["data_kwargs"]
    assert recipe["transform"] == data.get("transform", recipe["transform"]), label
    sampler = data.get(
        "class_aware_sampler",
        paper.get("data_kwargs", {}).get(record["config"]["protocol"], {}).get("class_aware_sampler", 0),
    )
    assert recipe["class_aware_sampler"] == sampler, label
    mkw = {**record["config"]["profile"], **record["config"]["method_kwargs"]}
    wanted = [n.name for n in cls.weights_needed(mkw) if n.required and n.name in files]
    backbone_file = files.get(mkw.get("backbone")) or files.get(next(iter(wanted), ""))
    if wanted and backbone_file is not None:
        assert recipe["weights_file"] == str(backbone_file), label
        assert recipe["weights_sha256"] == hashlib.sha256(backbone_file.read_bytes()).hexdigest(), label


def _rehearse(spec_name: str, methods: list[str] | None, world: dict, capsys: pytest.CaptureFixture[str]) -> None:
    spec = load_spec(spec_name)
    files = world["save_weights"](_weights_for([spec_name], methods))
    results, out = world["root"] / "results", world["root"] / "leaderboards"
    argv = [spec_name, "--profile", "paper", "--seeds", "1", "--bits", str(spec.bits[0]), "--wandb", "disabled"]
    argv += ["--results", str(results), "--out", str(out), "--no-figure"]
    argv += ["--set", f"max_steps={STEPS}", "--set", f"batch_size={BATCH}"]
    argv += ["--set", f"eval_limit={EVAL}"]
    if "class_aware_sampler" in str(spec.profiles["paper"]):
        # one image per class per batch; 100 training images so that every class is present
        argv += ["--set", "data.class_aware_sampler=1", "--set", "train_limit=100"]
    else:
        argv += ["--set", f"train_limit={TRAIN}"]  # two batches: the epoch ends, validation and the schedule run
    if spec.protocol.endswith("-clip"):
        argv += ["--set", f"data.image_root={world['image_root']}"]
    if methods:
        argv += ["--methods", *methods]
    status = main(argv)
    captured = capsys.readouterr()
    assert status == 0, captured.err[-3000:]
    records = [r for r in (ResultStore(results).get(p.stem) for p in (results / "cells").glob("*.json")) if r]
    assert records, captured.out
    for record in records:
        assert record["profile_name"] == "paper"
        _check_recipe(record, files)
    rows = list(csv.DictReader((out / f"{spec_name}.csv").open()))
    bits = spec.bits[0]
    for row in rows:
        if int(row["n_bits"]) != bits:
            continue
        reported = spec.reported_for(row["method"]).get(bits)
        assert row["reported"] == ("" if reported is None else f"{reported:.6f}"), row
        if row["status"] == "reproduced" and (methods is None or row["method"] in methods):
            assert row["n_seeds"] == "1" and row["reproduced_mean"] != "", row
    ran = {r["method"] for r in records}
    assert ran == {row["method"] for row in rows if row["status"] == "reproduced" and row["n_seeds"] == "1"}
    md = (out / f"{spec_name}.md").read_text()
    assert "`paper`" in md and (f"{bits} bits reported" in md) == bool(spec.reported)


@pytest.mark.parametrize("spec_name", sorted(CI_SUBSET))
def test_paper_profile_rehearsal_ci_subset(spec_name, paper_world, capsys) -> None:
    _rehearse(spec_name, CI_SUBSET[spec_name], paper_world, capsys)


def _write_single_label_lists(directory: Path, classes: int, sizes: tuple[int, int, int]) -> None:
    """train/test/database.txt with one-hot labels (ImageNet-100's format) and the PNGs they list. Only the first
    four classes occur, so that each has enough training images for a validation carve-out (early stopping in a
    paper recipe needs one)."""
    rng = np.random.default_rng(1)
    counter = 0
    for list_name, size in zip(("train.txt", "test.txt", "database.txt"), sizes, strict=True):
        lines = []
        for _ in range(size):
            labels = np.zeros(classes, dtype=int)
            labels[rng.integers(4)] = 1
            rel = f"images/{counter:04d}.png"
            write_png(directory / rel, seed=counter)
            lines.append(f"./{rel} " + " ".join(map(str, labels)))
            counter += 1
        (directory / list_name).write_text("\n".join(lines) + "\n")


@pytest.mark.slow
@pytest.mark.parametrize("spec_name", PAPER_SPECS)
def test_paper_profile_rehearsal_every_spec(spec_name, paper_world, capsys) -> None:
    _rehearse(spec_name, None, paper_world, capsys)


def test_every_paper_table_is_rehearsed() -> None:
    assert set(CI_SUBSET) <= set(PAPER_SPECS)
    assert {"cifar10", "nuswide21", "dpsh-cifar10", "svhn", "dsh-cifar10", "mirflickr25k-dcmh"} <= set(PAPER_SPECS)
