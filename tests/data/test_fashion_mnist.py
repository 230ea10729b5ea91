"""Fashion-MNIST: real data (installed by Debian's dataset-fashion-mnist), file search and errors."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
import torch

from hashbench.data import DatasetNotFoundError, FashionMNISTDataModule, HashBatch, SplitChecksumError
from hashbench.data import fashion_mnist as fm
from hashbench.data.splits import PACKAGE_SPLIT_DIR

REAL = fm.fashion_mnist_available(None) if fm.DEBIAN_DIR.is_dir() else False
needs_real = pytest.mark.skipif(
    not fm.DEBIAN_DIR.is_dir(), reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)"
)


@pytest.fixture
def real_dm(monkeypatch):
    monkeypatch.delenv("HASHBENCH_DATA", raising=False)
    dm = FashionMNISTDataModule(batch_size=64, eval_batch_size=256)
    dm.prepare_data()
    dm.setup()
    return dm


@needs_real
def test_real_split_sizes(real_dm):
    dm = real_dm
    sizes = {k: v.size for k, v in dm.split_indices.items()}
    assert sizes == {"train": 4500, "val_query": 500, "val_database": 4500, "query": 1000, "database": 64000}
    assert dm.num_train == 4500
    pool = dm._pool
    assert np.bincount(pool.class_ids[dm.split_indices["val_query"]]).tolist() == [50] * 10
    # Validation never touches the query set, and the validation queries are not trained on.
    assert not np.intersect1d(dm.split_indices["val_query"], dm.split_indices["query"]).size
    assert not np.intersect1d(dm.split_indices["val_query"], dm.split_indices["train"]).size
    assert not np.intersect1d(dm.split_indices["query"], dm.split_indices["database"]).size


@needs_real
def test_real_batches(real_dm):
    dm = real_dm
    batch = next(iter(dm.train_dataloader()))
    assert isinstance(batch, HashBatch)
    assert batch.image.shape == (64, 1, 28, 28) and batch.image.dtype == torch.float32
    assert batch.labels.shape == (64, 10) and torch.all(batch.labels.sum(1) == 1)
    assert batch.index.dtype == torch.int64 and 0 <= batch.index.min() and batch.index.max() < dm.num_train
    seen = torch.cat([b.index for b in dm.train_dataloader()])
    assert seen.unique().numel() == seen.numel() == (dm.num_train // 64) * 64  # shuffled, drop_last
    query, database = dm.test_dataloader()
    qb = next(iter(query))
    assert qb.index.tolist() == list(range(256))
    assert abs(float(qb.image.mean())) < 0.3 and 0.7 < float(qb.image.std()) < 1.3  # normalised
    assert len(dm.val_dataloader()) == 2
    assert sum(b.image.shape[0] for b in dm.train_eval_dataloader()) == dm.num_train
    # Items and batches agree (per-item access for code that iterates datasets directly).
    item = dm.query_dataset[3]
    torch.testing.assert_close(item.image, qb.image[3])
    assert int(item.index) == 3


@needs_real
def test_real_labels_match_classes(monkeypatch):
    """The one-hot labels are the IDX labels of the pooled image (train then test)."""
    monkeypatch.delenv("HASHBENCH_DATA", raising=False)
    images, labels = fm.read_fashion_mnist(fm.locate_files())
    dm = FashionMNISTDataModule(eval_limit=50, val_fraction=0.0, augment=False)
    dm.setup()
    rows = dm.split_indices["query"]
    batch = next(iter(dm.test_dataloader()[0]))
    assert batch.labels.argmax(1).tolist() == labels[rows].tolist()
    expected = (torch.from_numpy(images[rows]).float() / 255 - 0.2860) / 0.3530
    torch.testing.assert_close(batch.image, expected)
    assert dm.val_dataloader() == []


@needs_real
def test_real_imagenet_transform_and_limits(monkeypatch):
    monkeypatch.delenv("HASHBENCH_DATA", raising=False)
    dm = FashionMNISTDataModule(transform="imagenet", train_limit=100, eval_limit=40, batch_size=16)
    dm.setup()
    assert dm.num_train == 100 and len(dm.query_dataset) == 40
    batch = next(iter(dm.train_dataloader()))
    assert batch.image.shape == (16, 3, 224, 224)
    dm2 = FashionMNISTDataModule(transform="imagenet", train_limit=100, eval_limit=40)
    dm2.setup()
    np.testing.assert_array_equal(dm.split_indices["train"], dm2.split_indices["train"])


@needs_real
def test_real_class_aware_sampler(monkeypatch):
    monkeypatch.delenv("HASHBENCH_DATA", raising=False)
    dm = FashionMNISTDataModule(class_aware_sampler=3)
    dm.setup()
    batches = list(dm.train_dataloader())
    assert len(batches) == -(-dm.num_train // 30)
    assert all(b.labels.sum(0).tolist() == [3.0] * 10 for b in batches)


def _write_idx(path, array):
    dtype_code = {np.uint8: 0x08}[array.dtype.type]
    header = bytes([0, 0, dtype_code, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.tobytes())


def _fake_files(directory, n=40):
    directory.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for prefix in ("train", "t10k"):
        _write_idx(directory / f"{prefix}-images-idx3-ubyte.gz", rng.integers(0, 255, (n, 28, 28), dtype=np.uint8))
        _write_idx(directory / f"{prefix}-labels-idx1-ubyte.gz", (np.arange(n) % 10).astype(np.uint8))


def test_checksum_mismatch_names_file(isolated_root):
    """A file that is not the original Fashion-MNIST is refused (HASHBENCH_DATA is searched first)."""
    _fake_files(isolated_root / "fashion-mnist")
    dm = FashionMNISTDataModule()
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.*sha256"):
        dm.setup()


def test_idx_parsing_errors(tmp_path):
    with pytest.raises(ValueError, match="not an IDX file"):
        fm.parse_idx(b"\x01\x02\x03\x04", "x")
    with pytest.raises(ValueError, match="header says"):
        fm.parse_idx(bytes([0, 0, 8, 1]) + (5).to_bytes(4, "big") + b"abc", "x")


def test_missing_everywhere(isolated_root, monkeypatch, tmp_path):
    monkeypatch.setattr(fm, "DEBIAN_DIR", tmp_path / "no-debian")
    dm = FashionMNISTDataModule(download=False)
    with pytest.raises(DatasetNotFoundError) as info:
        dm.prepare_data()
    message = str(info.value)
    assert "fashion-mnist" in message and str(isolated_root / "fashion-mnist") in message
    assert "no-debian" in message and "apt-get install dataset-fashion-mnist" in message
    assert "HASHBENCH_DATA" in message


def test_missing_download_fails_offline(isolated_root, monkeypatch, tmp_path):
    """Download failure (simulated, no network touched) still ends in the full where-to-get-it message."""
    monkeypatch.setattr(fm, "DEBIAN_DIR", tmp_path / "no-debian")

    def offline(root=None):
        raise OSError("network unreachable")

    monkeypatch.setattr(fm, "download", offline)
    with pytest.raises(DatasetNotFoundError, match="network unreachable"):
        FashionMNISTDataModule().prepare_data()


@needs_real
def test_tampered_committed_split_refused(monkeypatch, tmp_path):
    """A shipped split whose checksum does not match is refused."""
    monkeypatch.delenv("HASHBENCH_DATA", raising=False)
    fake_dir = tmp_path / "splits"
    fake_dir.mkdir()
    record = json.loads((PACKAGE_SPLIT_DIR / "fashion-mnist.json").read_text())
    record["query"][0] += 1
    (fake_dir / "fashion-mnist.json").write_text(json.dumps(record))
    (fake_dir / "checksums.json").write_text((PACKAGE_SPLIT_DIR / "checksums.json").read_text())
    import hashbench.data.splits as splits

    monkeypatch.setattr(splits, "PACKAGE_SPLIT_DIR", fake_dir)
    with pytest.raises(SplitChecksumError, match="refusing to run"):
        FashionMNISTDataModule().setup()
