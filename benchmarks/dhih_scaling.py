"""DHIH's training step does not grow with the training set; DPSH's (memory bank over all N images) does.

For each method and num_train in {5,000, 50,000} the model is configured with ``configure_data`` (synthetic
Fashion-MNIST-shaped data: 1×28×28, 10 classes), then the median wall time of a full training step (forward,
loss, backward, Adam step) on a batch of 128 is measured, and separately the loss alone on fixed codes (where
the N-dependence lives). Indices are drawn from [0, N) so DPSH writes and reads its bank as in training.

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 python benchmarks/dhih_scaling.py [--steps 20] [--sizes 5000 50000]

Timings on a shared CPU are noisy; the ratio between the two sizes is the figure to read.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import torch

from hashbench.data.batch import HashBatch
from hashbench.registry import get_method
from hashbench.testing import synthetic_images


def _median_time(fn: Any, steps: int, warmup: int = 3) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def measure(method: str, num_train: int, steps: int, batch_size: int = 128, n_bits: int = 48) -> tuple[float, float]:
    """(median full-step seconds, median loss-only seconds) for one method and training-set size."""
    torch.manual_seed(0)
    model = get_method(method)(n_bits=n_bits)
    model.configure_data(num_classes=10, num_train=num_train, image_shape=(1, 28, 28))
    model.train()
    opt = model.configure_optimizers()
    opt = opt["optimizer"] if isinstance(opt, dict) else opt
    images, labels = synthetic_images(batch_size, 10, (1, 28, 28), False, seed=1)
    g = torch.Generator().manual_seed(2)

    def batch() -> HashBatch:
        return HashBatch(images, labels, torch.randperm(num_train, generator=g)[:batch_size])

    def step() -> None:
        opt.zero_grad()
        model.compute_loss(batch())["loss"].backward()
        opt.step()

    full = _median_time(step, steps)
    # Loss only: replace the network's output by fixed codes, so the time is the loss's own cost.
    fixed = torch.tanh(torch.randn(batch_size, n_bits)).requires_grad_()
    original_forward = model.forward
    model.forward = lambda x: fixed  # type: ignore[method-assign]

    def loss_only() -> None:
        model.compute_loss(batch())["loss"].backward()

    loss = _median_time(loss_only, steps)
    model.forward = original_forward  # type: ignore[method-assign]
    return full, loss


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--methods", nargs="+", default=["DHIH", "DPSH"])
    p.add_argument("--sizes", nargs="+", type=int, default=[5000, 50000])
    p.add_argument("--steps", type=int, default=20)
    args = p.parse_args(argv)
    rows = []
    for method in args.methods:
        res = {n: measure(method, n, args.steps) for n in args.sizes}
        rows.append((method, res))
    small, large = args.sizes[0], args.sizes[-1]
    print(
        f"Training-step time, batch 128, 48 bits, compact CNN, median of {args.steps} steps "
        f"(torch threads: {torch.get_num_threads()})\n"
    )
    head = (
        " | ".join(f"step ms N={n:,}" for n in args.sizes) + " | " + " | ".join(f"loss ms N={n:,}" for n in args.sizes)
    )
    print(f"| method | {head} | step ratio | loss ratio |")
    print("|" + "---|" * (2 * len(args.sizes) + 3))
    for method, res in rows:
        steps = " | ".join(f"{res[n][0] * 1e3:.1f}" for n in args.sizes)
        losses = " | ".join(f"{res[n][1] * 1e3:.2f}" for n in args.sizes)
        print(
            f"| {method} | {steps} | {losses} | {res[large][0] / res[small][0]:.2f}× | "
            f"{res[large][1] / res[small][1]:.2f}× |"
        )


if __name__ == "__main__":
    main()
