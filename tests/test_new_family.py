"""A new dataset family is one file: define it in a temporary module, then train on it through the CLI and through a
table spec, with the module loaded from ``$HASHBENCH_PLUGINS``."""

from __future__ import annotations

import csv
import textwrap

import pytest

import hashbench.data.protocols as protocols
import hashbench.data.registry as data_registry
import hashbench.plugins as plugins

FAMILY_MODULE = '''
"""tinyset: 12x12 grey images of 4 classes in one .npz file (``images`` uint8 (N, 1, 12, 12), ``labels`` (N,))."""

from pathlib import Path

import numpy as np

from hashbench.data import HashingDataModule, Pool, Protocol, register_datamodule, register_protocol
from hashbench.data.roots import candidate_dirs, not_found

register_protocol(
    Protocol(
        name="tinyset",
        family="tinyset",
        num_classes=4,
        multi_label=False,
        map_k=None,
        query="4/class",
        train="12/class",
        database="the rest",
        image_size=12,
        modality="image",
        description="a test family",
        source="written by TinySetDataModule.make_example",
        data_dir="tinyset",
        channels=1,
        mean=(0.5,),
        std=(0.25,),
        query_per_class=4,
        train_per_class=12,
    )
)


@register_datamodule
class TinySetDataModule(HashingDataModule):
    family = "tinyset"
    default_protocol = "tinyset"

    def _file(self) -> Path:
        dirs = candidate_dirs("tinyset", self.root)
        for directory in dirs:
            if (directory / "tinyset.npz").is_file():
                return directory / "tinyset.npz"
        raise not_found("tinyset", dirs, "run TinySetDataModule.make_example(root)")

    def _prepare(self) -> None:
        self._file()

    def _load_pool(self) -> Pool:
        data = np.load(self._file())
        return self._tensor_pool(data["images"], data["labels"], split_dir=self._file().parent / "splits")

    @classmethod
    def make_example(cls, root):
        rng = np.random.default_rng(0)
        labels = np.repeat(np.arange(4), 40)
        templates = rng.integers(0, 256, (4, 1, 12, 12))
        noise = rng.integers(-40, 40, (labels.size, 1, 12, 12))
        images = np.clip(templates[labels] + noise, 0, 255).astype(np.uint8)
        directory = Path(root) / "tinyset"
        directory.mkdir(parents=True, exist_ok=True)
        np.savez(directory / "tinyset.npz", images=images, labels=labels)
        return {"protocol": "tinyset", "root": str(root)}
'''


@pytest.fixture
def tinyset(tmp_path, monkeypatch):
    """The family module on sys.path and in $HASHBENCH_PLUGINS, its example data in $HASHBENCH_DATA; the registries
    are restored afterwards."""
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "tinyset_family.py").write_text(textwrap.dedent(FAMILY_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path / "pkg"))
    monkeypatch.setenv("HASHBENCH_PLUGINS", "tinyset_family")
    monkeypatch.setenv("HASHBENCH_DATA", str(tmp_path / "data"))
    monkeypatch.setattr(protocols, "PROTOCOLS", dict(protocols.PROTOCOLS))
    monkeypatch.setattr(data_registry, "_REGISTRY", dict(data_registry._REGISTRY))
    monkeypatch.setattr(plugins, "_loaded", set())
    monkeypatch.delitem(__import__("sys").modules, "tinyset_family", raising=False)
    monkeypatch.chdir(tmp_path)
    data_registry.get_datamodule("tinyset").make_example(tmp_path / "data")
    return tmp_path


def test_the_family_is_found_by_protocol_name(tinyset):
    from hashbench.data import create_datamodule, list_datamodules

    assert "tinyset" in list_datamodules()
    dm = create_datamodule("tinyset", val_fraction=0.25)
    dm.setup()
    assert dm.facts.num_classes == 4 and dm.facts.image_shape == (1, 12, 12)
    assert dm.facts.num_train == 4 * 9  # 12 per class, a quarter held out for validation


def test_the_family_file_enters_the_cells_code_hash(tinyset):
    """A cell on a plugin family goes stale when the family's file changes (hashbench's own data code is shared)."""
    from hashbench.bench.grid import data_source_hash

    assert data_source_hash("cifar10") is None
    before = data_source_hash("tinyset")
    assert before is not None
    path = tinyset / "pkg" / "tinyset_family.py"
    path.write_text(path.read_text() + "\n# changed\n")
    assert data_source_hash("tinyset") not in (None, before)


def test_train_on_the_new_family_through_the_cli(tinyset):
    from hashbench.cli import main

    quiet = ["--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false", "--wandb", "disabled"]
    main(["fit", "--model", "DPSH", "--data", "tinyset", "--model.n_bits", "8", "--data.batch_size", "8", *quiet])
    metrics = (tinyset / "runs/csv/version_0/metrics.csv").read_text()
    assert "val/mAP" in metrics and "train/loss" in metrics
    assert {p.name for p in tinyset.glob("runs/csv/version_0/checkpoints/*.ckpt")} >= {"last.ckpt"}


def test_train_on_the_new_family_through_a_table_spec(tinyset):
    from hashbench.bench.cli import main

    spec = tinyset / "tinyset-table.yaml"
    spec.write_text(
        textwrap.dedent(
            """
            title: "tinyset: DPSH and LSH at 8 bits"
            source: {paper: "a test"}
            protocol: tinyset
            backbone: compact_cnn
            profile: smoke
            bits: [8]
            methods: [DPSH, LSH]
            seeds: [0]
            metric: mAP@all
            """
        )
    )
    results, out = tinyset / "results", tinyset / "leaderboards"
    argv = [str(spec), "--wandb", "disabled", "--results", str(results), "--out", str(out), "--no-figure"]
    assert main(argv) == 0
    rows = list(csv.DictReader((out / "tinyset-table.csv").open()))
    assert {row["method"] for row in rows} == {"DPSH", "LSH"}
    assert len(list((results / "cells").glob("*.json"))) == 2
