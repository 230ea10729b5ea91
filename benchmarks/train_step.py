"""Training-step cost of each deep baseline relative to plain cross-entropy classification.

One step = forward + loss + backward + optimiser step (Adam) on a batch of 128 synthetic 1×28×28 images with the
compact CNN and 48 bits; the reference is the same backbone with a linear 10-way classifier trained with
cross-entropy. A method whose network adds blocks before the hash layer (DFEH's feature-enhancement layer) is
also compared with cross-entropy on *its own* feature extractor, which isolates what the hashing loss adds (the
issue's target) from what the architecture adds. Methods are configured through ``configure_data`` (10 classes,
5,000 training images, so DPSH's memory bank is 5,000 × 48). Every method step runs next to a reference step
on the same batch (the order alternates by round), and the overhead is the median over rounds of the paired
ratio, with its quartiles: pairing cancels the slow drifts of a shared machine, which made medians of separately
collected step times wander by several percent between runs.
Unsupervised methods build their pseudo-similarity from the 5,000 images first (once per fit, not timed here;
see ``udmsh_memory.py``), as training does before the first step.
Shallow methods have no training step: their closed-form fit on the 5,000 images is timed instead.

Run: ``PYTHONPATH=. python benchmarks/train_step.py [--steps 30] [--threads 1]``
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch import nn

from hashbench.data.batch import HashBatch
from hashbench.methods.base import HashingMethod
from hashbench.nn.backbones import create_backbone
from hashbench.registry import create_method, get_method, list_methods

BATCH, BITS, CLASSES, NUM_TRAIN = 128, 48, 10, 5000


class _CrossEntropyReference(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.backbone = create_backbone("compact_cnn", in_channels=1)
        self.classifier = nn.Linear(self.backbone.feature_dim, CLASSES)

    def loss(self, batch: HashBatch) -> torch.Tensor:
        return nn.functional.cross_entropy(self.classifier(self.backbone(batch.image)), batch.labels.argmax(1))


class _CrossEntropyOnMethodFeatures(nn.Module):
    """Cross-entropy on a method's own ``extract_features`` (its backbone plus any extra block)."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.method = _configured(name)
        self.classifier = nn.Linear(self.method.backbone.feature_dim, CLASSES)

    def loss(self, batch: HashBatch) -> torch.Tensor:
        feats = self.method.extract_features(batch.image)
        return nn.functional.cross_entropy(self.classifier(feats), batch.labels.argmax(1))


def _configured(name: str) -> HashingMethod:
    model = create_method(name, n_bits=BITS)
    model.configure_data(num_classes=CLASSES, num_train=NUM_TRAIN, image_shape=(1, 28, 28))
    if hasattr(model, "build_pseudo_similarity"):
        # Unsupervised methods precompute their pseudo-similarity once per fit (on_fit_start), so a training step
        # reads stored targets; without this the benchmark would time the per-batch fallback instead.
        images = torch.randn(NUM_TRAIN, 1, 28, 28, generator=torch.Generator().manual_seed(2))
        loader = [(images[a : a + 256], torch.arange(a, min(a + 256, NUM_TRAIN))) for a in range(0, NUM_TRAIN, 256)]
        model.build_pseudo_similarity(loader, NUM_TRAIN)
    return model


def _has_own_features(name: str) -> bool:
    return get_method(name).extract_features is not HashingMethod.extract_features


def _batches(n: int, seed: int = 0) -> list[HashBatch]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        cls = torch.randint(0, CLASSES, (BATCH,), generator=g)
        out.append(
            HashBatch(
                torch.randn(BATCH, 1, 28, 28, generator=g),
                nn.functional.one_hot(cls, CLASSES).float(),
                torch.randperm(NUM_TRAIN, generator=g)[:BATCH],
            )
        )
    return out


def _stepper(name: str):
    if name == "CE (reference)" or name.startswith("CE on "):
        model = _CrossEntropyReference() if name == "CE (reference)" else _CrossEntropyOnMethodFeatures(name[6:])
        opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-5)
        loss_fn = model.loss
    else:
        model = _configured(name)
        opt = model.configure_optimizers()
        opt = opt["optimizer"] if isinstance(opt, dict) else opt

        def loss_fn(batch: HashBatch) -> torch.Tensor:
            return model.compute_loss(batch)["loss"]

    model.train()

    def step(batch: HashBatch) -> float:
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss_fn(batch).backward()
        opt.step()
        return time.perf_counter() - t0

    return step


def _fit_time(name: str, images: torch.Tensor) -> float:
    model = create_method(name, n_bits=BITS)
    model.configure_data(num_classes=CLASSES, num_train=NUM_TRAIN, image_shape=(1, 28, 28))
    loader = [(images[i : i + 500],) for i in range(0, len(images), 500)]
    t0 = time.perf_counter()
    model.fit(loader)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=30, help="timed steps per method (after 3 warm-up steps)")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    parser.add_argument("--methods", nargs="*", default=None, help="registry names (default: every image method)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    names = args.methods or [m for m in list_methods() if get_method(m).supervision != "cross-modal"]
    deep = [m for m in names if get_method(m).supervision != "shallow"]
    shallow = [m for m in names if get_method(m).supervision == "shallow"]
    runs = ["CE (reference)", *deep, *[f"CE on {m}" for m in deep if _has_own_features(m)]]
    steppers = {name: _stepper(name) for name in runs}
    batches = _batches(8)
    ref_name = "CE (reference)"
    times: dict[str, list[float]] = {name: [] for name in runs}
    # Paired ratios: each method step runs right next to a reference step on the same batch (order alternating
    # by round), so slow drifts of a shared machine cancel; the figure is the median of the per-round ratios.
    ratios: dict[str, list[float]] = {name: [] for name in deep}
    own_ratios: dict[str, list[float]] = {name: [] for name in deep if _has_own_features(name)}
    for r in range(3 + args.steps):
        batch = batches[r % len(batches)]
        for name in deep:
            refs = [ref_name] + ([f"CE on {name}"] if name in own_ratios else [])
            order = [*refs, name] if r % 2 == 0 else [name, *refs]
            dt = {n: steppers[n](batch) for n in order}
            if r >= 3:
                for n, t in dt.items():
                    times[n].append(t)
                ratios[name].append(dt[name] / dt[ref_name])
                if name in own_ratios:
                    own_ratios[name].append(dt[name] / dt[f"CE on {name}"])
    print(
        f"# Training-step time, batch {BATCH}, compact CNN, {BITS} bits, 1x28x28 synthetic, Adam; "
        f"{args.steps} rounds after 3 warm-up, each method step paired with a reference step on the same batch; "
        f"overhead = median over rounds of (method step / reference step) - 1 [quartiles]; "
        f"torch threads = {args.threads}, torch {torch.__version__}"
    )

    def fmt(values: list[float]) -> str:
        q1, med, q3 = statistics.quantiles(values, n=4) if len(values) > 1 else (values[0],) * 3
        return f"{100 * (med - 1):+.1f}% [{100 * (q1 - 1):+.1f}, {100 * (q3 - 1):+.1f}]"

    print(
        "\n| method | median step (ms) | overhead vs CE | overhead of the hashing loss "
        "(vs CE on the method's own network) |"
    )
    print("|---|---:|---:|---:|")
    print(f"| {ref_name} | {1000 * statistics.median(times[ref_name]):.1f} | | |")
    for name in deep:
        loss_only = fmt(own_ratios[name]) if name in own_ratios else "same"
        print(f"| {name} | {1000 * statistics.median(times[name]):.1f} | {fmt(ratios[name])} | {loss_only} |")
    if shallow:
        images = torch.randn(NUM_TRAIN, 1, 28, 28, generator=torch.Generator().manual_seed(1))
        print(f"\nShallow methods (no training step): closed-form fit on {NUM_TRAIN} images of 784 pixels")
        print("\n| method | fit time (s) |")
        print("|---|---:|")
        for name in shallow:
            print(f"| {name} | {_fit_time(name, images):.2f} |")


if __name__ == "__main__":
    main()
