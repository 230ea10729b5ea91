"""Tiny datasets written in the real on-disk formats: CIFAR-10 pickles, SVHN .mat, list files + images, DCMH's
v7.3 .mat and DCHMT's CLIP layout.

Each family's :meth:`~hashbench.data.base.HashingDataModule.make_example` writes one of these, so the datamodule
contract tests (and the data, table and paper-rehearsal tests) exercise the readers on real formats without the
real datasets. The images are random pixels: nothing learnt on them means anything.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np

__all__ = ["write_cifar10", "write_clip_protocol", "write_dcmh_v73", "write_list_dataset", "write_png", "write_svhn"]


def _images(n: int, side: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 3, side, side), dtype=np.uint8)


def write_cifar10(root: Path, per_class_train: int = 30, per_class_test: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """CIFAR-10 python batches (``data_batch_1..5``, ``test_batch``, ``batches.meta``) as the real archive has them.

    Returns the pooled ``(images (N, 3, 32, 32), labels)`` in pool order (train batches, then test).
    """
    directory = root / "cifar10" / "cifar-10-batches-py"
    directory.mkdir(parents=True)
    rng = np.random.default_rng(0)
    train_labels = rng.permutation(np.repeat(np.arange(10), per_class_train))
    test_labels = rng.permutation(np.repeat(np.arange(10), per_class_test))
    train_images = _images(train_labels.size, 32, 1)
    test_images = _images(test_labels.size, 32, 2)
    chunks = np.array_split(np.arange(train_labels.size), 5)
    for i, rows in enumerate(chunks, start=1):
        batch = {
            b"batch_label": f"training batch {i} of 5".encode(),
            b"labels": train_labels[rows].tolist(),
            b"data": train_images[rows].reshape(len(rows), -1),
            b"filenames": [f"img_{r}.png".encode() for r in rows],
        }
        (directory / f"data_batch_{i}").write_bytes(pickle.dumps(batch, protocol=2))
    test = {
        b"batch_label": b"testing batch 1 of 1",
        b"labels": test_labels.tolist(),
        b"data": test_images.reshape(-1, 3072),
    }
    (directory / "test_batch").write_bytes(pickle.dumps(test, protocol=2))
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse", b"ship", b"truck"]
    (directory / "batches.meta").write_bytes(pickle.dumps({b"label_names": names, b"num_vis": 3072}, protocol=2))
    return np.concatenate([train_images, test_images]), np.concatenate([train_labels, test_labels])


def write_svhn(root: Path, per_class: tuple[int, int] = (40, 20)) -> tuple[np.ndarray, np.ndarray]:
    """SVHN ``train_32x32.mat`` / ``test_32x32.mat`` (X [32, 32, 3, N], y [N, 1] with 10 for digit 0).

    Classes are deliberately unbalanced (digit d has ``per_class + d`` items) like real SVHN.
    Returns the pooled ``(images (N, 3, 32, 32), digit labels 0..9)``.
    """
    from scipy.io import savemat

    directory = root / "svhn"
    directory.mkdir(parents=True)
    pooled_images, pooled_labels = [], []
    for seed, (name, count) in enumerate(zip(("train_32x32.mat", "test_32x32.mat"), per_class, strict=True)):
        digits = np.random.default_rng(seed).permutation(np.repeat(np.arange(10), [count + d for d in range(10)]))
        images = _images(digits.size, 32, 10 + seed)
        y = np.where(digits == 0, 10, digits).astype(np.uint8).reshape(-1, 1)
        savemat(directory / name, {"X": images.transpose(2, 3, 1, 0), "y": y})
        pooled_images.append(images)
        pooled_labels.append(digits)
    return np.concatenate(pooled_images), np.concatenate(pooled_labels)


def write_png(path: Path, side: int = 20, seed: int = 0) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(seed).integers(0, 256, (side, side + 4, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)


def write_list_dataset(
    root: Path, name: str = "nuswide21", classes: int = 21, sizes: tuple[int, int, int] = (12, 6, 20)
) -> Path:
    """``train.txt`` / ``test.txt`` / ``database.txt`` in DeepHash-pytorch format plus the PNGs they list."""
    directory = root / name
    rng = np.random.default_rng(0)
    counter = 0
    for list_name, size in zip(("train.txt", "test.txt", "database.txt"), sizes, strict=True):
        lines = []
        for _ in range(size):
            labels = (rng.random(classes) < 0.2).astype(int)
            labels[rng.integers(classes)] = 1
            rel = f"images/{counter:04d}.png"
            write_png(directory / rel, seed=counter)
            lines.append(f"./{rel} " + " ".join(map(str, labels)))
            counter += 1
        directory.mkdir(parents=True, exist_ok=True)
        (directory / list_name).write_text("\n".join(lines) + "\n")
    return directory


def write_dcmh_v73(path: Path, images: np.ndarray, texts: np.ndarray, labels: np.ndarray) -> None:
    """What MATLAB's `save -v7.3` of images (H x W x 3 x N), YAll (N x D), LAll (N x C) looks like to h5py."""
    import h5py

    with h5py.File(path, "w", userblock_size=512) as handle:
        handle["images"] = images.transpose(0, 1, 3, 2)  # (N, 3, W, H)
        handle["YAll"] = texts.T
        handle["LAll"] = labels.T
    with open(path, "r+b") as handle:
        handle.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: test HDF5 schema 1.00 .")


def write_clip_protocol(
    directory: Path, image_dir: Path, with_txt: bool = False, n: int = 40, classes: int = 24
) -> tuple[list[str], np.ndarray]:
    """DCHMT-style index.mat (image paths), caption.mat (or caption.txt), label.mat, plus the JPEGs; returns
    (captions, labels)."""
    from PIL import Image
    from scipy.io import savemat

    rng = np.random.default_rng(0)
    image_dir.mkdir(parents=True)
    paths, captions = [], []
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)).save(image_dir / f"im{i}.jpg")
        paths.append(f"/home/creator/datasets/mirflickr/im{i}.jpg")  # DCHMT keeps its creator's absolute paths
        captions.append(" ".join(f"tag{j}" for j in rng.integers(0, 50, size=1 + i % 4)))
    labels = (rng.random((n, classes)) < 0.3).astype(np.uint8)
    directory.mkdir(parents=True, exist_ok=True)
    savemat(directory / "index.mat", {"index": paths})
    if with_txt:
        (directory / "caption.txt").write_text("\n".join(captions) + "\n")
    else:
        savemat(directory / "caption.mat", {"caption": captions})
    savemat(directory / "label.mat", {"category": labels})
    return captions, labels


def write_fashion_mnist(directory: Path, per_class: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """The four gzipped IDX files of Fashion-MNIST (``per_class`` random 28x28 images per class, split 3:1 between
    the ``train-*`` and ``t10k-*`` files) in ``directory``; returns the pooled ``(images (N, 28, 28), labels)``."""
    import gzip

    directory.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(3)
    labels = rng.permutation(np.repeat(np.arange(10, dtype=np.uint8), per_class))
    images = rng.integers(0, 256, (labels.size, 28, 28), dtype=np.uint8)
    cut = labels.size * 3 // 4
    parts = {"train": (images[:cut], labels[:cut]), "t10k": (images[cut:], labels[cut:])}
    for prefix, (imgs, labs) in parts.items():
        for kind, array in (("images-idx3", imgs), ("labels-idx1", labs)):
            header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
            with gzip.open(directory / f"{prefix}-{kind}-ubyte.gz", "wb") as handle:
                handle.write(header + array.tobytes())
    return images, labels.astype(np.int64)
