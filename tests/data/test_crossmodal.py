"""Cross-modal datamodules on tiny files in DCMH's .mat layout (v7.3 / HDF5 and v5) and DCHMT's CLIP layout."""

from __future__ import annotations

from dataclasses import replace

import h5py
import numpy as np
import pytest
import torch
from scipy.io import savemat

import hashbench.data.protocols as protocols
from hashbench.data import CrossModalBatch, CrossModalClipDataModule, CrossModalMatDataModule, DatasetNotFoundError
from hashbench.data.datasets import ArrayImageSource
from hashbench.data.splits import draw_random_split
from tests.fake_data import write_clip_protocol, write_dcmh_v73

N, SIDE, TEXT_DIM = 40, 24, 30


@pytest.fixture
def small_protocols(monkeypatch):
    table = dict(protocols.PROTOCOLS)
    for name in ("mirflickr25k-dcmh", "nuswide10-dcmh", "mirflickr25k-clip", "coco-clip"):
        table[name] = replace(table[name], num_query=8, num_train=20)
    monkeypatch.setattr(protocols, "PROTOCOLS", table)


def _pairs(classes=24, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (N, 3, SIDE, SIDE), dtype=np.uint8)
    texts = (rng.random((N, TEXT_DIM)) < 0.2).astype(np.float64)
    labels = (rng.random((N, classes)) < 0.3).astype(np.float64)
    labels[np.arange(N), rng.integers(classes, size=N)] = 1
    return images, texts, labels


def test_dcmh_v73_single_file(isolated_root, small_protocols):
    images, texts, labels = _pairs()
    directory = isolated_root / "mirflickr25k-dcmh"
    directory.mkdir()
    write_dcmh_v73(directory / "FLICKR-25K.mat", images, texts, labels)
    dm = CrossModalMatDataModule(image_size=SIDE, batch_size=5, eval_batch_size=6, val_fraction=0.25, augment=False)
    dm.prepare_data()
    dm.setup()
    expected = draw_random_split(N, 8, 20, "all_but_query", seed=0)
    np.testing.assert_array_equal(dm.split_indices["query"], expected.query)
    assert dm.num_train == 15 and dm.text_dim == TEXT_DIM
    assert (directory / "splits" / "mirflickr25k-dcmh.json").is_file()
    batch = next(iter(dm.test_dataloader()[0]))
    assert isinstance(batch, CrossModalBatch)
    rows = dm.split_indices["query"][:6]
    mean = torch.tensor(protocols.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(protocols.IMAGENET_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(batch.image, (torch.from_numpy(images[rows]).float() / 255 - mean) / std)
    torch.testing.assert_close(batch.text, torch.from_numpy(texts[rows]).float())
    torch.testing.assert_close(batch.labels, torch.from_numpy(labels[rows]).float())
    train = next(iter(dm.train_dataloader()))
    assert train.image.shape == (5, 3, SIDE, SIDE) and train.text.shape == (5, TEXT_DIM)


def test_dcmh_default_size_and_workers(isolated_root, small_protocols):
    """Default native size is 224; the lazily opened HDF5 file also works in worker processes."""
    images, texts, labels = _pairs()
    (isolated_root / "mirflickr25k-dcmh").mkdir()
    write_dcmh_v73(isolated_root / "mirflickr25k-dcmh" / "FLICKR-25K.mat", images, texts, labels)
    dm = CrossModalMatDataModule(eval_batch_size=8, num_workers=1)
    dm.setup()
    batch = next(iter(dm.test_dataloader()[0]))
    assert batch.image.shape == (8, 3, 224, 224)


def test_dcmh_separate_v5_files(isolated_root, small_protocols):
    """Cleared-Set style: one variable per file (IAll / YAll / LAll), here as v5 files in MATLAB axis order."""
    images, texts, labels = _pairs(classes=10)
    directory = isolated_root / "nuswide10-dcmh"
    directory.mkdir()
    savemat(directory / "nus-iall.mat", {"IAll": images.transpose(2, 3, 1, 0)})  # H x W x 3 x N
    savemat(directory / "nus-yall.mat", {"YAll": texts})
    savemat(directory / "nus-lall.mat", {"LAll": labels})
    dm = CrossModalMatDataModule(protocol="nuswide10-dcmh", image_size=SIDE, eval_batch_size=4, augment=False)
    dm.setup()
    batch = next(iter(dm.test_dataloader()[1]))
    rows = dm.split_indices["database"][:4]
    mean = torch.tensor(protocols.IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(protocols.IMAGENET_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(batch.image, (torch.from_numpy(images[rows]).float() / 255 - mean) / std)
    torch.testing.assert_close(batch.labels, torch.from_numpy(labels[rows]).float())


def test_h5_orientation(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (3, 3, 10, 7), dtype=np.uint8)  # H=10, W=7
    with h5py.File(tmp_path / "x.mat", "w") as handle:
        handle["images"] = images.transpose(0, 1, 3, 2)
    source = ArrayImageSource(h5_path=str(tmp_path / "x.mat"), key="images", swap_hw=True)
    np.testing.assert_array_equal(source[2].numpy(), images[2])


def test_dcmh_errors(isolated_root, small_protocols):
    images, texts, labels = _pairs()
    directory = isolated_root / "mirflickr25k-dcmh"
    directory.mkdir()
    savemat(directory / "only-images.mat", {"images": images.transpose(2, 3, 1, 0)})
    with pytest.raises(DatasetNotFoundError, match="no variable for text, labels"):
        CrossModalMatDataModule().prepare_data()
    savemat(directory / "rest.mat", {"YAll": texts, "LAll": labels[:, :20]})
    with pytest.raises(ValueError, match="20 columns but the protocol has 24"):
        CrossModalMatDataModule().setup()
    savemat(directory / "rest.mat", {"YAll": texts[:30], "LAll": labels})
    with pytest.raises(ValueError, match="text matrix has shape"):
        CrossModalMatDataModule().setup()


def test_clip_format(isolated_root, small_protocols, tmp_path):
    directory = isolated_root / "mirflickr25k-clip"
    captions, labels = write_clip_protocol(directory, tmp_path / "imgs")
    dm = CrossModalClipDataModule(image_root=str(tmp_path / "imgs"), eval_batch_size=4, batch_size=4)
    dm.prepare_data()
    dm.setup()
    assert dm.num_train == 18 and dm.image_shape == (3, 224, 224)
    batch = next(iter(dm.test_dataloader()[0]))
    rows = dm.split_indices["query"][:4]
    assert isinstance(batch, CrossModalBatch) and batch.image.shape == (4, 3, 224, 224)
    assert list(batch.text) == [captions[r] for r in rows]
    torch.testing.assert_close(batch.labels, torch.from_numpy(labels[rows]).float())


def test_clip_tokenizer_and_txt_captions(isolated_root, small_protocols, tmp_path):
    directory = isolated_root / "mirflickr25k-clip"
    write_clip_protocol(directory, tmp_path / "imgs", with_txt=True)
    dm = CrossModalClipDataModule(
        image_root=str(tmp_path / "imgs"), caption_file="caption.txt", tokenizer="clip", eval_batch_size=4
    )
    dm.setup()
    batch = next(iter(dm.test_dataloader()[0]))
    assert batch.text.dtype == torch.int64 and batch.text.shape == (4, 32)


def test_clip_errors(isolated_root, small_protocols, tmp_path):
    directory = isolated_root / "mirflickr25k-clip"
    with pytest.raises(DatasetNotFoundError, match="index.mat"):
        CrossModalClipDataModule().prepare_data()
    write_clip_protocol(directory, tmp_path / "imgs")
    dm = CrossModalClipDataModule()  # no image_root: the creator's absolute paths do not exist here
    dm.setup()
    with pytest.raises(FileNotFoundError, match="/home/creator/datasets/mirflickr/im"):
        dm.query_dataset[0]
    savemat(directory / "label.mat", {"category": np.zeros((N - 1, 24))})
    with pytest.raises(ValueError, match="must match one to one"):
        CrossModalClipDataModule().setup()
