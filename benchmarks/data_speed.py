"""Data-loading speed of the in-memory datamodules versus one small-CNN training step.

Prints training batches/s and images/s for Fashion-MNIST (the real data, if installed) and for a 32x32 protocol
(a CIFAR-10-format dataset of 6,500 random images generated in a temporary directory), plus the time of one
forward + backward pass of a small CNN on a batch of the same shape, so one can see whether loading is the
bottleneck. The issue's target: >= 5,000 images/s for 28x28 from memory on 2 cores.

Run: ``python benchmarks/data_speed.py [--threads 2] [--batches 200]``
"""

from __future__ import annotations

import argparse
import os
import pickle
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hashbench.data import CIFAR10DataModule, FashionMNISTDataModule
from hashbench.data.fashion_mnist import fashion_mnist_available


def small_cnn(channels: int, side: int, n_bits: int = 48) -> nn.Module:
    """A from-scratch hashing CNN of the size used on 28/32 px data (3 conv blocks + hash layer)."""
    return nn.Sequential(
        nn.Conv2d(channels, 32, 3, padding=1),
        nn.BatchNorm2d(32),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(64, 128, 3, padding=1),
        nn.BatchNorm2d(128),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(128, n_bits),
        nn.Tanh(),
    )


def time_loader(loader, max_batches: int) -> tuple[float, float, int]:
    """(batches/s, images/s, batches) over up to ``max_batches`` batches, re-iterating epochs as needed."""
    batches = images = 0
    start = time.perf_counter()
    while batches < max_batches:
        for batch in loader:
            batches += 1
            images += batch.image.shape[0]
            if batches >= max_batches:
                break
    elapsed = time.perf_counter() - start
    return batches / elapsed, images / elapsed, batches


def time_step(model: nn.Module, batch, repeats: int = 20) -> float:
    """Seconds of one forward + backward + SGD step of ``model`` on ``batch`` (median of ``repeats``)."""
    optimiser = torch.optim.SGD(model.parameters(), lr=0.01)
    times = []
    for _ in range(repeats + 1):
        start = time.perf_counter()
        codes = model(batch.image)
        loss = ((codes - (batch.labels @ torch.ones(batch.labels.shape[1], codes.shape[1]) > 0).float()) ** 2).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        times.append(time.perf_counter() - start)
    return float(np.median(times[1:]))  # the first step pays for allocator warm-up


def write_cifar_like(root: Path, per_class_train: int = 550, per_class_test: int = 100) -> None:
    """CIFAR-10 python batches with random pixels (same layout as the real archive)."""
    directory = root / "cifar10" / "cifar-10-batches-py"
    directory.mkdir(parents=True)
    rng = np.random.default_rng(0)
    labels = rng.permutation(np.repeat(np.arange(10), per_class_train))
    data = rng.integers(0, 256, (labels.size, 3072), dtype=np.uint8)
    for i, rows in enumerate(np.array_split(np.arange(labels.size), 5), start=1):
        entry = {b"labels": labels[rows].tolist(), b"data": data[rows]}
        (directory / f"data_batch_{i}").write_bytes(pickle.dumps(entry, protocol=4))
    test_labels = rng.permutation(np.repeat(np.arange(10), per_class_test))
    test = {b"labels": test_labels.tolist(), b"data": rng.integers(0, 256, (test_labels.size, 3072), dtype=np.uint8)}
    (directory / "test_batch").write_bytes(pickle.dumps(test, protocol=4))


def report(name: str, dm, batches: int, workers: tuple[int, ...]) -> None:
    dm.setup()
    slowest = float("inf")
    for num_workers in workers:
        dm.num_workers = num_workers
        loader = dm.train_dataloader()
        next(iter(loader))  # warm-up (and worker start-up) outside the timing
        bps, ips, n = time_loader(loader, batches)
        slowest = min(slowest, ips)
        print(
            f"{name:<34} workers={num_workers}  {bps:9.1f} batches/s  {ips:10.0f} images/s  ({n} batches)", flush=True
        )
    batch = next(iter(dm.train_dataloader()))
    model = small_cnn(batch.image.shape[1], batch.image.shape[-1])
    # Large inputs make each step slow on a CPU: fewer repeats keep the benchmark within a few minutes.
    step = time_step(model, batch, repeats=20 if batch.image[0].numel() < 10_000 else 3)
    load = batch.image.shape[0] / slowest  # the slower loader configuration, to be conservative
    print(
        f"{'':<34} small-CNN fwd+bwd on {tuple(batch.image.shape)}: {step * 1e3:7.2f} ms/batch "
        f"({batch.image.shape[0] / step:8.0f} images/s); loading one batch: {load * 1e3:6.2f} ms "
        f"= {100 * load / step:5.1f}% of the step"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (the issue's 2 cores)")
    parser.add_argument("--batches", type=int, default=200, help="training batches timed per configuration")
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, {args.threads} threads, batch size {args.batch_size}, cpus {os.cpu_count()}")
    if fashion_mnist_available():
        dm = FashionMNISTDataModule(batch_size=args.batch_size)
        report("fashion-mnist 1x28x28 (native)", dm, args.batches, (0, 2))
        dm = FashionMNISTDataModule(batch_size=32, transform="imagenet")
        report("fashion-mnist 3x224x224 (imagenet)", dm, max(5, args.batches // 20), (0,))
    else:
        print("fashion-mnist: not installed (apt-get install dataset-fashion-mnist); skipped")
    with tempfile.TemporaryDirectory() as tmp:
        write_cifar_like(Path(tmp))
        dm = CIFAR10DataModule(root=tmp, batch_size=args.batch_size, download=False)
        report("cifar10-format 3x32x32 (native)", dm, args.batches, (0, 2))


if __name__ == "__main__":
    main()
