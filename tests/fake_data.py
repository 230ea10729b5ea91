"""Tiny datasets written in the real on-disk formats (CIFAR-10 pickles, SVHN .mat, list files + images, DCMH's
v7.3 .mat, DCHMT's CLIP layout), for the data, table and paper-rehearsal tests."""

from __future__ import annotations

import pickle
from pathlib import Path

import h5py
import numpy as np


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


def write_list_dataset(root: Path, name: str = "nuswide21", classes: int = 21, sizes=(12, 6, 20)) -> Path:
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


def write_dcmh_v73(path, images, texts, labels):
    """What MATLAB's `save -v7.3` of images (H x W x 3 x N), YAll (N x D), LAll (N x C) looks like to h5py."""
    with h5py.File(path, "w", userblock_size=512) as handle:
        handle["images"] = images.transpose(0, 1, 3, 2)  # (N, 3, W, H)
        handle["YAll"] = texts.T
        handle["LAll"] = labels.T
    with open(path, "r+b") as handle:
        handle.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: test HDF5 schema 1.00 .")


def write_clip_protocol(directory, image_dir, with_txt=False, n=40, classes=24):
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


def accept_generated_checksums(monkeypatch, data_root) -> None:
    """Record the md5 of generated CIFAR-10 / SVHN files under ``data_root`` as the published ones.

    Tests write small files in the real on-disk formats; their checksums differ from the real datasets', which
    the table preflight (rightly) refuses. This stands in for the real files' records, for one test.
    """
    from pathlib import Path

    from torchvision.datasets import CIFAR10, SVHN

    from hashbench.data.cifar import md5_file

    batches = Path(data_root) / "cifar10" / "cifar-10-batches-py"
    if batches.is_dir():
        monkeypatch.setattr(CIFAR10, "train_list", [[n, md5_file(batches / n)] for n, _ in CIFAR10.train_list])
        monkeypatch.setattr(CIFAR10, "test_list", [[n, md5_file(batches / n)] for n, _ in CIFAR10.test_list])
    svhn = Path(data_root) / "svhn"
    if svhn.is_dir():
        table = {k: [url, name, md5_file(svhn / name)] for k, (url, name, _) in SVHN.split_list.items() if k != "extra"}
        monkeypatch.setattr(SVHN, "split_list", {**SVHN.split_list, **table})
