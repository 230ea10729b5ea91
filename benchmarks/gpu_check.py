"""GPU check: one paper-table cell's training speed, a 2-process DDP cell and the evaluator at scale on CUDA.

Made for the occasional few minutes on a lent accelerator without internet: one command (estimated at a minute
or two on one modern GPU, not yet measured there; budget: under 8 minutes). Every section is guarded, so a
failure prints ``FAILED <section>: ...`` and the rest still runs; the exit status is 1 if any section failed, 2
if ``--device cuda`` finds no CUDA.

Sections:

1. ``train``: the cifar10 table's DPSH cell under its ``paper`` profile (``DPSH.paper_training``: SGD lr 0.05,
   momentum 0.9, weight decay 1e-5, step schedule, batch 128) with the paper backbone, torchvision AlexNet at
   224 x 224 in random init (``pretrained=False``: nothing is downloaded), 48 bits, once in fp32
   (``precision="32-true"``) and once under bf16 autocast (``precision="bf16-mixed"``). It goes through
   ``hashbench.bench.run.run_cell`` (the code path of every reported number, ``deterministic="warn"`` included)
   on ``hashbench.testing.SyntheticHashingDataModule`` (10 classes of template-plus-noise images, given as a
   ``{"class_path", "init_args"}`` spec) with ``max_steps = warm-up + timed steps`` and no validation or
   checkpointing. A Lightning callback calls ``torch.cuda.synchronize()`` at ``on_train_batch_start`` and
   ``on_train_batch_end`` of every step: the step time is forward + loss + backward + optimiser step with the
   batch already on the device (Lightning moves it before ``on_train_batch_start``); the first ``--warmup``
   steps are dropped. Printed: median step (ms) with quartiles, images/s = batch / median step, end-to-end
   images/s over the timed steps (adds the in-process DataLoader's collation and the host-to-device copy), and
   ``torch.cuda.max_memory_allocated`` over the fit (model, optimiser state, activations).
2. ``ddp``: with 2 or more CUDA devices visible, the same cell on 2 GPUs through the table runner
   (``hashbench.bench.runner.run_table`` with ``RunOptions(devices=2)``, which runs the cell in
   ``python -m hashbench.bench.worker``; Lightning's DDP launcher starts the second rank), one epoch of
   ``--ddp-steps`` global batches with validation, checkpoint selection and test. Prints its wall time.
   Otherwise it is skipped with the reason (``--ddp on --device cpu`` runs it as 2 CPU processes over gloo).
3. ``eval``: 10,000 query x 1,000,000 database random 64-bit codes (int8 +-1, one of 100 classes each) through
   ``hashbench.metrics.mean_average_precision`` (mAP@all, ``ties="expected"``) on the device: CUDA tensors take
   the evaluator's portable torch path (integer matmul + ``torch.bincount`` per tile); on the CPU the script
   forces that path with ``functional.HISTOGRAM_BACKEND = "torch"``. Prints the median time over
   ``--eval-repeats`` calls after a small warm-up call, the mAP (about 1/classes for random codes) and the
   peak extra device memory; on CUDA one more call with a 16x larger tile (``--eval-chunk-size``), then one full
   test-time ``retrieval_report`` (mAP@all, mAP@1000, P@H<=2, PR curve), and checks the device result against
   the CPU evaluator (its default backend) on a subset.

Downloads: none. The script sets ``HF_HUB_OFFLINE=1`` and ``WANDB_MODE=disabled`` and removes
``HASHBENCH_ALLOW_DOWNLOAD`` before importing hashbench; all data is generated in memory.

Run::

    python benchmarks/gpu_check.py                    # on the CUDA machine (defaults above)
    python benchmarks/gpu_check.py --steps 10 --eval-database 200000   # smaller
    python benchmarks/gpu_check.py --cpu-smoke        # every section tiny on CPU (tests/test_gpu_check.py)
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import logging
import math
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

#: Environment the script always runs under (set before hashbench, Lightning or W&B are imported).
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "WANDB_SILENT": "true"}
#: Wall-time budget of a default run on one GPU; exceeding it is reported (not a failure).
BUDGET_S = 480.0
METHOD = "DPSH"  # the cifar10 paper table's method; its recipe is DPSH.paper_training
BACKBONE = "alexnet"
CLASSES = 10  # CIFAR-10
EVAL_BITS = 64
POOL_BATCHES = 8  # the synthetic training set holds this many batches; longer runs cycle through epochs
PRECISIONS = {"fp32": "32-true", "bf16": "bf16-mixed"}

GPU_DEFAULTS: dict[str, Any] = {
    "steps": 30,
    "warmup": 5,
    "batch_size": 128,
    "image_size": 224,
    "eval_queries": 10_000,
    "eval_database": 1_000_000,
    "eval_repeats": 3,
    "ddp_steps": 20,
    "eval_chunk_size": [1 << 19, 1 << 23],  # the library's default tile, then one 16x larger (timed once)
}
SMOKE_DEFAULTS: dict[str, Any] = {
    "steps": 2,
    "warmup": 1,
    "batch_size": 4,
    "image_size": 64,
    "eval_queries": 200,
    "eval_database": 5_000,
    "eval_repeats": 1,
    "ddp_steps": 2,
    "eval_chunk_size": [1 << 19],
}
SECTIONS = ("train", "ddp", "eval")


class Skipped(Exception):
    """A section that does not apply on this machine (reported as skipped, not failed)."""


# ----------------------------------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------------------------------
def _cuda(device: str) -> bool:
    return device == "cuda"


def _sync(device: str) -> None:
    if _cuda(device):
        torch.cuda.synchronize()


def _gib(n_bytes: float) -> str:
    return f"{n_bytes / 2**30:.2f} GiB"


def _free_device_memory(device: str) -> None:
    gc.collect()
    if _cuda(device):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


@contextlib.contextmanager
def _restore_torch_globals() -> Iterator[None]:
    """``run_cell``'s Trainer sets ``torch.use_deterministic_algorithms`` process-wide; undo it afterwards."""
    det = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    benchmark = torch.backends.cudnn.benchmark
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(det, warn_only=warn_only)
        torch.backends.cudnn.benchmark = benchmark


def _quiet_lightning() -> None:
    # One Trainer per precision: Lightning's banners (GPU available, LOCAL_RANK ...) would bury the figures.
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*Consider setting `persistent_workers=True`.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")


def _synthetic_datamodule(image_size: int, num_train: int, num_query: int, num_database: int) -> dict[str, Any]:
    return {
        "class_path": "hashbench.testing.SyntheticHashingDataModule",
        "init_args": {
            "num_classes": CLASSES,
            "image_shape": [3, image_size, image_size],
            "num_train": num_train,
            "num_query": num_query,
            "num_database": num_database,
        },
    }


def _make_step_timer(device: str, warmup: int) -> Any:
    import lightning as L

    class StepTimer(L.Callback):
        """Synchronised wall time of every training step (batch already on the device) and peak memory."""

        def __init__(self) -> None:
            self.step_s: list[float] = []
            self.end_t: list[float] = []
            self.losses: list[float] = []
            self.peak_bytes: int | None = None
            self._t0 = 0.0

        def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
            _sync(device)
            self._t0 = time.perf_counter()

        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            _sync(device)
            now = time.perf_counter()
            self.step_s.append(now - self._t0)
            self.end_t.append(now)
            loss = outputs["loss"] if isinstance(outputs, dict) else outputs
            self.losses.append(float(loss.detach()))

        def on_train_end(self, trainer: Any, pl_module: Any) -> None:
            if _cuda(device):
                self.peak_bytes = torch.cuda.max_memory_allocated()

        def summary(self, batch_size: int) -> dict[str, Any]:
            timed = self.step_s[warmup:]
            if not timed:
                raise RuntimeError(f"no timed steps: the trainer ran {len(self.step_s)} steps, warm-up is {warmup}")
            q1, med, q3 = statistics.quantiles(timed, n=4) if len(timed) > 1 else (timed[0],) * 3
            # End-to-end: from the end of the last warm-up step to the end of the last step (data included).
            start = self.end_t[warmup - 1] if warmup > 0 else self.end_t[0] - timed[0]
            span = self.end_t[-1] - start
            return {
                "steps": len(timed),
                "median_ms": 1000 * med,
                "q1_ms": 1000 * q1,
                "q3_ms": 1000 * q3,
                "img_s": batch_size / med,
                "img_s_e2e": batch_size * len(timed) / span,
                "peak_bytes": self.peak_bytes,
                "loss_first": self.losses[0],
                "loss_last": self.losses[-1],
            }

    return StepTimer()


# ----------------------------------------------------------------------------------------------------------
# sections
# ----------------------------------------------------------------------------------------------------------
def print_header(args: argparse.Namespace) -> None:
    import lightning
    import torchvision

    print(f"# hashbench GPU check ({time.strftime('%Y-%m-%d %H:%M:%S %Z')}, host {platform.node()})")
    print(
        f"python {platform.python_version()}, torch {torch.__version__} (CUDA build {torch.version.cuda}, "
        f"cuDNN {torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else 'n/a'}), "
        f"torchvision {torchvision.__version__}, lightning {lightning.__version__}"
    )
    if torch.cuda.is_available():
        visible = os.environ.get("CUDA_VISIBLE_DEVICES", "unset")
        print(f"CUDA devices visible: {torch.cuda.device_count()} (CUDA_VISIBLE_DEVICES={visible})")
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            print(f"  cuda:{i} {p.name}, sm_{p.major}{p.minor}, {_gib(p.total_memory)}, {p.multi_processor_count} SMs")
    else:
        print("CUDA devices visible: 0")
    if torch.cuda.is_available():
        print(
            f"TF32: matmul {torch.backends.cuda.matmul.allow_tf32}, cuDNN {torch.backends.cudnn.allow_tf32} (torch "
            f"defaults: 'fp32' convolutions may run in TF32), float32_matmul_precision "
            f"{torch.get_float32_matmul_precision()!r}"
        )
    print(f"CPU: {os.cpu_count()} cores, torch threads {torch.get_num_threads()}; running on: {args.device}")
    print(
        "offline: " + ", ".join(f"{k}={os.environ[k]}" for k in OFFLINE_ENV) + f"; backbone {BACKBONE} "
        "pretrained=False (random init); all data generated in memory"
    )
    sizes = ", ".join(f"{k}={getattr(args, k)}" for k in (*GPU_DEFAULTS, "bits"))
    print(f"sizes: {sizes}{' (--cpu-smoke)' if args.cpu_smoke else ''}")


def section_train(args: argparse.Namespace) -> None:
    from hashbench.bench.run import run_cell
    from hashbench.registry import get_method

    recipe = dict(get_method(METHOD).paper_training)
    total = args.warmup + args.steps
    per_epoch = min(total, POOL_BATCHES)
    num_train = args.batch_size * per_epoch
    epochs = math.ceil(total / per_epoch)
    num_query, num_database = (100, 1000) if _cuda(args.device) else (16, 64)
    profile = {**recipe, "batch_size": args.batch_size}
    print(
        f"path: hashbench.bench.run.run_cell('{METHOD}', profile={METHOD}.paper_training with batch_size "
        f"{args.batch_size}), backbone {BACKBONE} pretrained=False at {args.image_size} px, {args.bits} bits; "
        f"datamodule {{class_path: hashbench.testing.SyntheticHashingDataModule}} ({num_train} training images = "
        f"DPSH memory bank size, {CLASSES} classes, test {num_query} x {num_database}); trainer_kwargs max_steps "
        f"{total}, limit_val_batches 0, no checkpointing, deterministic='warn' (run_cell's default)"
    )
    print(f"recipe: {recipe}")
    print(
        f"timing: Lightning callback, torch.cuda.synchronize at on_train_batch_start/end; "
        f"{args.warmup} warm-up step(s) dropped, {args.steps} timed"
    )
    failed = []
    for label in args.precision:
        precision = PRECISIONS[label]
        if label == "bf16" and _cuda(args.device) and not torch.cuda.is_bf16_supported():
            print(f"{label:5} ({precision}): skipped, torch.cuda.is_bf16_supported() is False on this device")
            continue
        _free_device_memory(args.device)
        timer = _make_step_timer(args.device, args.warmup)
        trainer_kwargs = {
            "accelerator": "gpu" if _cuda(args.device) else "cpu",
            "devices": 1,
            "precision": precision,
            "max_steps": total,
            "max_epochs": epochs,
            "limit_val_batches": 0,
            "callbacks": [timer],
            "enable_checkpointing": False,
        }
        try:
            with _restore_torch_globals():
                result = run_cell(
                    METHOD,
                    n_bits=args.bits,
                    seed=0,
                    profile=profile,
                    datamodule=_synthetic_datamodule(args.image_size, num_train, num_query, num_database),
                    method_kwargs={"backbone": BACKBONE, "pretrained": False},
                    trainer_kwargs=trainer_kwargs,
                )
            s = timer.summary(args.batch_size)
        except Exception as err:  # one precision failing must not hide the other's figures
            failed.append(f"{label}: {type(err).__name__}: {err}")
            print(f"{label:5} ({precision}): FAILED {type(err).__name__}: {err}")
            traceback.print_exc(limit=-6, file=sys.stdout)
            continue
        finally:
            _free_device_memory(args.device)
        peak = _gib(s["peak_bytes"]) if s["peak_bytes"] is not None else "n/a (CPU run)"
        print(
            f"{label:5} ({precision}): median step {s['median_ms']:.2f} ms [q1 {s['q1_ms']:.2f}, q3 {s['q3_ms']:.2f}] "
            f"over {s['steps']} steps | {s['img_s']:.1f} images/s (batch / median step) | "
            f"{s['img_s_e2e']:.1f} images/s end-to-end incl. data loading | peak GPU memory {peak}"
        )
        test_map = result.metrics.get("mAP@all", float("nan"))
        print(
            f"       loss {s['loss_first']:.4f} -> {s['loss_last']:.4f}, test mAP@all {test_map:.4f} (template-plus-"
            f"noise images), fit {result.train_time_s:.1f} s, fit + test {result.wall_time_s:.1f} s"
        )
        executed = getattr(result, "recipe", None)  # what the fit ran, read back (newer run_cell versions)
        if executed:
            keys = ("optimizer", "param_groups", "momentum", "scheduler", "steps", "backbone", "weights_file")
            print(f"       executed: { ({k: executed.get(k) for k in keys}) }")
    if failed:
        raise RuntimeError("; ".join(failed))


def section_ddp(args: argparse.Namespace) -> None:
    visible = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if args.ddp == "off":
        raise Skipped("--ddp off")
    if _cuda(args.device):
        if visible < 2:
            reason = f"needs >= 2 CUDA devices, {visible} visible"
            if args.ddp == "on":
                raise RuntimeError(f"--ddp on: {reason}")
            raise Skipped(reason)
        accelerator = "gpu"
    else:
        if args.ddp != "on":
            raise Skipped("CPU run: a 2-process CPU (gloo) DDP cell runs only with --ddp on")
        accelerator = "cpu"

    if args.batch_size % 2:
        raise RuntimeError(f"--batch-size {args.batch_size} is the global batch: DDP over 2 processes needs it even")

    from hashbench.bench.runner import RunOptions, run_table
    from hashbench.bench.spec import parse_spec

    num_query, num_database = (100, 1000) if _cuda(args.device) else (16, 64)
    num_train = args.batch_size * args.ddp_steps
    spec = parse_spec(
        {
            "title": "gpu_check DDP cell",
            "protocol": "synthetic",
            "datamodule": _synthetic_datamodule(args.image_size, num_train, num_query, num_database),
            "backbone": BACKBONE,
            "profile": "gpu-check",
            "profiles": {"gpu-check": {"base": "paper", "batch_size": args.batch_size, "max_epochs": 1}},
            "method_kwargs": {METHOD: {"pretrained": False}},
            "bits": [args.bits],
            "methods": [METHOD],
            "seeds": [0],
            "metric": "mAP@all",
        },
        name="gpu-check-ddp",
    )
    print(
        f"path: hashbench.bench.runner.run_table(RunOptions(devices=2, accelerator={accelerator!r})) -> "
        f"python -m hashbench.bench.worker; {METHOD} paper recipe, global batch {args.batch_size} "
        f"({args.batch_size // 2} per process), 1 epoch of {args.ddp_steps} steps + validation + test, "
        f"{args.image_size} px {BACKBONE}"
    )
    with tempfile.TemporaryDirectory(prefix="hashbench-gpu-check-") as tmp:
        options = RunOptions(devices=2, accelerator=accelerator, wandb="disabled", results=tmp)
        t0 = time.perf_counter()
        summary = run_table(spec, options, log=lambda line: print(f"  {line}", flush=True))
        wall = time.perf_counter() - t0
        cells = [p for p in (Path(tmp) / "cells").glob("*.json") if not p.name.endswith(".error.json")]
        if summary.failed or not cells:
            errors = [json.loads(p.read_text()).get("error", "?") for p in (Path(tmp) / "cells").glob("*.error.json")]
            raise RuntimeError(f"the DDP cell failed: {'; '.join(errors) or summary}")
        result = json.loads(cells[0].read_text())["result"]
    print(
        f"ddp 2 x {accelerator}: wall {wall:.1f} s (run_table: worker start, both ranks, fit, validation, "
        f"checkpoint, test) | fit {result['train_time_s']:.1f} s | fit + test {result['wall_time_s']:.1f} s | "
        f"test mAP@all {result['metrics'].get('mAP@all', float('nan')):.4f}"
    )


@contextlib.contextmanager
def _histogram_backend(name: str | None) -> Iterator[None]:
    from hashbench.metrics import functional

    before = functional.HISTOGRAM_BACKEND
    if name is not None:
        functional.HISTOGRAM_BACKEND = name
    try:
        yield
    finally:
        functional.HISTOGRAM_BACKEND = before


def section_eval(args: argparse.Namespace) -> None:
    from hashbench.metrics import functional, mean_average_precision, retrieval_report

    dev = torch.device(args.device)
    nq, nd, classes = args.eval_queries, args.eval_database, args.eval_classes
    chunk, *other_chunks = args.eval_chunk_size
    gen = torch.Generator(device=dev).manual_seed(0)

    def codes(n: int) -> torch.Tensor:
        return torch.randint(0, 2, (n, EVAL_BITS), generator=gen, device=dev, dtype=torch.int8).mul_(2).sub_(1)

    q, d = codes(nq), codes(nd)
    ql = torch.randint(0, classes, (nq,), generator=gen, device=dev)
    dl = torch.randint(0, classes, (nd,), generator=gen, device=dev)
    # CUDA tensors always take the torch path; on the CPU it is forced so that the same path is exercised.
    with _histogram_backend(None if dev.type == "cuda" else "torch"):
        path = "compiled popcount (CPU)" if functional._use_popcount(dev) else "torch matmul + bincount"
        print(
            f"{nq:,} queries x {nd:,} database, {EVAL_BITS}-bit int8 +-1 codes, {classes} classes (single-label), "
            f"on {dev}; histogram path: {path}; chunk_size {chunk:,} pairs per tile"
            + (" (the library default)" if chunk == functional.DEFAULT_CHUNK_SIZE else "")
        )
        mean_average_precision(q[:64], d[:4096], ql[:64], dl[:4096])  # warm-up: CUDA context, cuBLAS, kernels
        _sync(args.device)
        inputs_bytes = torch.cuda.memory_allocated() if dev.type == "cuda" else 0
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        times = []
        for _ in range(args.eval_repeats):
            t0 = time.perf_counter()
            m = mean_average_precision(q, d, ql, dl, k=None, chunk_size=chunk)
            _sync(args.device)
            times.append(time.perf_counter() - t0)
        if dev.type == "cuda":
            top = torch.cuda.max_memory_allocated()
            peak = f"peak GPU memory {_gib(top)} (+{_gib(top - inputs_bytes)} over the codes and labels)"
        else:
            peak = "peak GPU memory n/a (CPU run)"
        print(
            f"mean_average_precision (mAP@all, ties='expected'): eval time {statistics.median(times):.3f} s "
            f"(median of {len(times)}; min {min(times):.3f}, max {max(times):.3f}) | mAP@all {float(m):.5f} "
            f"(random codes: about 1/{classes} = {1 / classes:.5f}) | {peak}"
        )
        for other in other_chunks:
            t0 = time.perf_counter()
            m_other = mean_average_precision(q, d, ql, dl, k=None, chunk_size=other)
            _sync(args.device)
            print(
                f"  chunk_size {other:,}: eval time {time.perf_counter() - t0:.3f} s (one call), "
                f"mAP@all {float(m_other):.5f}"
            )
        t0 = time.perf_counter()
        report = retrieval_report(q, d, ql, dl, ks=(None, 1000), radius=2, pr_curve=True, chunk_size=chunk)
        _sync(args.device)
        full_s = time.perf_counter() - t0
        scalars = {k: round(float(v), 5) for k, v in report.items() if v.numel() == 1}
        print(f"retrieval_report (mAP@all, mAP@1000, P@H<=2, PR curve; as the test loop): {full_s:.3f} s {scalars}")
    # The device result against the CPU evaluator (its default backend: the compiled popcount kernels when numba
    # is installed) on a subset: the histograms are integer counts, so the two must agree to rounding.
    sq, sd = min(nq, 256), min(nd, 100_000)
    with _histogram_backend(None if dev.type == "cuda" else "torch"):
        on_dev = float(mean_average_precision(q[:sq], d[:sd], ql[:sq], dl[:sd]))
    cpu_path = "compiled popcount" if functional._use_popcount(torch.device("cpu")) else "torch"
    on_cpu = float(mean_average_precision(q[:sq].cpu(), d[:sd].cpu(), ql[:sq].cpu(), dl[:sd].cpu()))
    diff = abs(on_dev - on_cpu)
    print(f"cross-check on {sq} x {sd:,}: {dev} {on_dev:.10f} vs CPU ({cpu_path}) {on_cpu:.10f}, |diff| {diff:.1e}")
    if diff > 1e-9:
        raise AssertionError(f"device and CPU evaluators disagree on the subset: |diff| = {diff:.3e} > 1e-9")


# ----------------------------------------------------------------------------------------------------------
# driver
# ----------------------------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    def flags(defaults: dict[str, Any]) -> str:
        def text(v: Any) -> str:
            return " ".join(map(str, v)) if isinstance(v, list) else str(v)

        return ", ".join(f"--{k.replace('_', '-')} {text(v)}" for k, v in defaults.items())

    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=f"GPU defaults: {flags(GPU_DEFAULTS)}. --cpu-smoke defaults: {flags(SMOKE_DEFAULTS)}. Exit status: 0 "
        "every section passed or was skipped, 1 a section failed, 2 --device cuda without CUDA (or bad arguments).",
    )
    parser.add_argument("--device", choices=("cuda", "cpu"), default=None, help="where to run (default: cuda)")
    parser.add_argument(
        "--cpu-smoke", action="store_true", help="every section tiny on the CPU (implies --device cpu; for tests)"
    )
    parser.add_argument("--steps", type=int, default=None, help="timed training steps per precision")
    parser.add_argument("--warmup", type=int, default=None, help="untimed training steps before them")
    parser.add_argument("--batch-size", type=int, default=None, help="global training batch (DDP: split over 2)")
    parser.add_argument("--image-size", type=int, default=None, help="image side in pixels (AlexNet needs >= 63)")
    parser.add_argument("--bits", type=int, default=48, help="code length of the training cell")
    parser.add_argument(
        "--precision", nargs="+", choices=tuple(PRECISIONS), default=list(PRECISIONS), help="training precisions"
    )
    parser.add_argument(
        "--ddp",
        choices=("auto", "on", "off"),
        default="auto",
        help="auto: run when >= 2 CUDA devices are visible, else skip; on: always (2 CPU processes over gloo with "
        "--device cpu; a failure with fewer than 2 GPUs); off: skip",
    )
    parser.add_argument("--ddp-steps", type=int, default=None, help="global steps of the one DDP epoch")
    parser.add_argument("--eval-queries", type=int, default=None, help="query codes of the evaluator section")
    parser.add_argument("--eval-database", type=int, default=None, help="database codes of the evaluator section")
    parser.add_argument("--eval-classes", type=int, default=100, help="label classes of the random codes")
    parser.add_argument("--eval-repeats", type=int, default=None, help="timed mAP calls (median reported)")
    parser.add_argument(
        "--eval-chunk-size",
        type=int,
        nargs="+",
        default=None,
        help="pairs per tile: the first is timed --eval-repeats times, any others once each",
    )
    parser.add_argument(
        "--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS), help="sections to run (default: all)"
    )
    return parser


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.cpu_smoke:
        if args.device == "cuda":
            parser.error("--cpu-smoke runs on the CPU; drop --device cuda")
        args.device = "cpu"
    args.device = args.device or "cuda"
    defaults = SMOKE_DEFAULTS if args.cpu_smoke else GPU_DEFAULTS
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.image_size < 63:
        parser.error(f"--image-size {args.image_size}: AlexNet needs at least 63 px")
    for key in ("steps", "batch_size", "bits", "ddp_steps", "eval_queries", "eval_database", "eval_repeats"):
        if getattr(args, key) < 1:
            parser.error(f"--{key.replace('_', '-')} must be >= 1")
    if min(args.eval_chunk_size) < 1:
        parser.error("--eval-chunk-size must be >= 1")
    if args.warmup < 0:
        parser.error("--warmup must be >= 0")
    if args.eval_classes < 2:
        parser.error("--eval-classes must be >= 2")
    return args


def _run_section(name: str, fn: Callable[[argparse.Namespace], None], args: argparse.Namespace) -> str:
    print(f"\n## {name}", flush=True)
    t0 = time.perf_counter()
    try:
        fn(args)
    except Skipped as why:
        print(f"SKIPPED {name}: {why}", flush=True)
        return "skipped"
    except Exception as err:  # report, free the device, carry on with the next section
        print(f"FAILED {name}: {type(err).__name__}: {err}", flush=True)
        traceback.print_exc(limit=-8, file=sys.stdout)
        _free_device_memory(args.device)
        return "FAILED"
    finally:
        print(f"({name}: {time.perf_counter() - t0:.1f} s)", flush=True)
    return "ok"


def main(argv: list[str] | None = None) -> int:
    started = time.perf_counter()
    os.environ.update(OFFLINE_ENV)
    os.environ.pop("HASHBENCH_ALLOW_DOWNLOAD", None)
    args = parse_args(argv)
    if _cuda(args.device) and not torch.cuda.is_available():
        print(
            f"gpu_check: --device cuda but no CUDA device is available (torch {torch.__version__}, CUDA build "
            f"{torch.version.cuda}, torch.cuda.device_count() = {torch.cuda.device_count()}). Run it on the GPU "
            "machine, or check the script here with --cpu-smoke (or --device cpu).",
            file=sys.stderr,
        )
        return 2
    _quiet_lightning()
    print_header(args)
    functions = {"train": section_train, "ddp": section_ddp, "eval": section_eval}
    status = {name: _run_section(name, functions[name], args) for name in SECTIONS if name in args.sections}
    total = time.perf_counter() - started
    print("\n## summary")
    print(" | ".join(f"{name}: {state}" for name, state in status.items()))
    over = f" -- over the {BUDGET_S:.0f} s budget" if total > BUDGET_S and not args.cpu_smoke else ""
    print(f"total wall time {total:.1f} s{over}")
    return 1 if "FAILED" in status.values() else 0


if __name__ == "__main__":
    raise SystemExit(main())
