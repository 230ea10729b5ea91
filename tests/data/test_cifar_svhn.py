"""CIFAR-10 and SVHN datamodules on tiny datasets written in the real on-disk formats (no network)."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

import hashbench.data.protocols as protocols
from hashbench.data import CIFAR10DataModule, DatasetNotFoundError, HashBatch, SplitChecksumError, SVHNDataModule
from hashbench.data.formats import read_cifar_batch, read_svhn_mat
from hashbench.data.splits import draw_per_class_split


@pytest.fixture
def small_protocols(monkeypatch):
    """Shrink per-class split sizes so the tiny fake datasets can hold them (the rules stay the same)."""
    table = dict(protocols.PROTOCOLS)
    for name, (q, t) in {"cifar10": (3, 10), "cifar10-1": (3, 10), "cifar10-2": (3, 10), "svhn": (4, 12)}.items():
        table[name] = replace(table[name], query_per_class=q, train_per_class=t)
    monkeypatch.setattr(protocols, "PROTOCOLS", table)
    return table


def test_cifar_reader(fake_cifar, isolated_root):
    images, labels = fake_cifar
    data, batch_labels = read_cifar_batch(isolated_root / "cifar10" / "cifar-10-batches-py" / "test_batch")
    assert data.shape == (100, 3, 32, 32)
    np.testing.assert_array_equal(data, images[-100:])
    np.testing.assert_array_equal(batch_labels, labels[-100:])


@pytest.mark.parametrize(
    ("name", "db_rule"), [("cifar10", "rest"), ("cifar10-1", "all_but_query"), ("cifar10-2", "train")]
)
def test_cifar_protocols(name, db_rule, fake_cifar, isolated_root, small_protocols):
    images, labels = fake_cifar
    dm = CIFAR10DataModule(protocol=name, batch_size=8, eval_batch_size=16, val_fraction=0.2)
    dm.prepare_data()
    dm.setup()
    expected = draw_per_class_split(labels, 10, 3, 10, db_rule, seed=0)
    np.testing.assert_array_equal(dm.split_indices["query"], expected.query)
    assert dm.num_train == 80 and dm.split_indices["val_query"].size == 20  # 2 of 10 per class held out
    # The split was materialised with its checksum next to the data.
    split_dir = isolated_root / "cifar10" / "splits"
    assert (split_dir / f"{name}.json").is_file() and name + ".json" in json.loads(
        (split_dir / "checksums.json").read_text()
    )
    batch = next(iter(dm.test_dataloader()[0]))
    assert isinstance(batch, HashBatch) and batch.image.shape == (16, 3, 32, 32)
    rows = dm.split_indices["query"][:16]
    assert batch.labels.argmax(1).tolist() == labels[rows].tolist()
    mean = torch.tensor(protocols.get_protocol(name).mean).view(1, 3, 1, 1)
    std = torch.tensor(protocols.get_protocol(name).std).view(1, 3, 1, 1)
    torch.testing.assert_close(batch.image, (torch.from_numpy(images[rows]).float() / 255 - mean) / std)
    train = next(iter(dm.train_dataloader()))
    assert train.image.shape == (8, 3, 32, 32) and int(train.index.max()) < dm.num_train


def test_cifar_split_tamper_refused(fake_cifar, isolated_root, small_protocols):
    CIFAR10DataModule().setup()
    path = isolated_root / "cifar10" / "splits" / "cifar10.json"
    record = json.loads(path.read_text())
    record["train"][0] = record["query"][0]
    path.write_text(json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n")
    with pytest.raises(SplitChecksumError, match="refusing to run"):
        CIFAR10DataModule().setup()


def test_cifar_missing(isolated_root):
    dm = CIFAR10DataModule(download=False)
    with pytest.raises(DatasetNotFoundError) as info:
        dm.prepare_data()
    assert str(isolated_root / "cifar10" / "cifar-10-batches-py") in str(info.value)
    assert "hashbench data prepare cifar10" in str(info.value)


def test_cifar_corrupt_batch(fake_cifar, isolated_root):
    (isolated_root / "cifar10" / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"not a pickle")
    with pytest.raises(OSError, match="data_batch_3"):
        CIFAR10DataModule().setup()


def test_cifar_imagenet_transform(fake_cifar, small_protocols):
    dm = CIFAR10DataModule(transform="imagenet", batch_size=4, eval_batch_size=4)
    dm.setup()
    assert next(iter(dm.train_dataloader())).image.shape == (4, 3, 224, 224)
    assert next(iter(dm.test_dataloader()[1])).image.shape == (4, 3, 224, 224)


def test_svhn_reader_maps_10_to_0(fake_svhn, isolated_root):
    images, digits = fake_svhn
    x, y = read_svhn_mat(isolated_root / "svhn" / "train_32x32.mat")
    n = x.shape[0]
    np.testing.assert_array_equal(x, images[:n])
    np.testing.assert_array_equal(y, digits[:n])
    assert y.min() == 0 and y.max() == 9


def test_svhn_datamodule_and_class_aware_sampler(fake_svhn, small_protocols):
    images, digits = fake_svhn
    dm = SVHNDataModule(class_aware_sampler=2, val_fraction=0.25)
    assert not dm.flip  # digits are not flipped
    dm.setup()
    assert dm.num_train == 90
    expected = draw_per_class_split(digits, 10, 4, 12, "all_but_query", seed=0)
    np.testing.assert_array_equal(dm.split_indices["query"], expected.query)
    assert dm.split_indices["database"].size == digits.size - 40
    batches = list(dm.train_dataloader())
    assert len(batches) == 5  # ceil(90 / 20)
    for batch in batches:
        assert batch.labels.sum(0).tolist() == [2.0] * 10
    # Training images come out unflipped and normalised from the right pool rows.
    train_rows = dm.split_indices["train"]
    b = batches[0]
    mean = torch.tensor(dm.protocol.mean).view(1, 3, 1, 1)
    std = torch.tensor(dm.protocol.std).view(1, 3, 1, 1)
    expected_images = (torch.from_numpy(images[train_rows[b.index.numpy()]]).float() / 255 - mean) / std
    torch.testing.assert_close(b.image, expected_images)


def test_svhn_bad_labels(isolated_root):
    from scipy.io import savemat

    (isolated_root / "svhn").mkdir()
    savemat(isolated_root / "svhn" / "train_32x32.mat", {"X": np.zeros((32, 32, 3, 2), np.uint8), "y": [[0], [3]]})
    with pytest.raises(ValueError, match="1..10"):
        read_svhn_mat(isolated_root / "svhn" / "train_32x32.mat")
