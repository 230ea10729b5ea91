"""Run one cell: fit a method on a protocol, select the checkpoint on the validation split, test it.

This is the single code path that every reported number goes through (benchmarks, the table runner, the CLI's
``hashbench run``). The checkpoint rule: the epoch with the best validation mAP (validation queries carved from
the training split, never the query set); with ``val_fraction=0`` the last epoch. A profile with ``patience``
adds early stopping on that same validation mAP (stop once it has not improved by more than ``min_delta`` for
``patience`` consecutive epochs; ``max_epochs`` stays the cap).
"""

from __future__ import annotations

import importlib
import inspect
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch

# ``PROFILES`` and ``resolve_method`` are re-exported here for the benchmarks and older imports; they live in
# hashbench.bench.profiles and hashbench.registry.
from hashbench.bench.profiles import PROFILES, resolve_profile
from hashbench.registry import resolve_method

__all__ = [
    "PROFILES",
    "CellResult",
    "run_cell",
    "executed_recipe",
    "instantiate_datamodule",
    "per_device_batch_size",
    "resolve_method",
]


@dataclass
class CellResult:
    method: str
    protocol: str
    n_bits: int
    seed: int
    metrics: dict[str, float]
    best_epoch: int | None
    wall_time_s: float
    train_time_s: float
    extra: dict[str, Any] = field(default_factory=dict)
    #: what actually executed: optimiser and learning rates per group, scheduler, batch size and sampler,
    #: transform and input shape, backbone and the pretrained weights file (with its sha256); see
    #: :func:`executed_recipe`.
    recipe: dict[str, Any] = field(default_factory=dict)


def run_cell(
    method: str,
    protocol: str = "fashion-mnist",
    n_bits: int = 48,
    seed: int = 0,
    profile: Mapping[str, Any] | str = "quick",
    datamodule: Any | None = None,
    method_kwargs: dict[str, Any] | None = None,
    data_kwargs: dict[str, Any] | None = None,
    trainer_kwargs: dict[str, Any] | None = None,
    root_dir: str | Path | None = None,
    logger: Any = False,
    progress: bool = False,
    after_test: Callable[[Any, Any, Any], Mapping[str, Any]] | None = None,
) -> CellResult:
    """Fit ``method`` on ``protocol`` with a training profile, select on validation, test, return the metrics.

    Args:
        method: registry name, or the dotted import path of a HashingMethod subclass (out-of-tree methods).
        protocol: data protocol name (see ``hashbench data list``); ignored when ``datamodule`` is given.
        n_bits: code length.
        seed: seeds Python/NumPy/torch (``L.seed_everything``) and the datamodule.
        profile: the resolved training settings (a mapping, e.g. from
            :func:`hashbench.bench.profiles.resolve_profile`; what the table runner passes). For convenience a
            built-in profile name (``smoke`` | ``quick`` | ``paper``) is accepted too and resolved by that same
            function for ``method``. ``batch_size`` is the *global* batch: with ``trainer_kwargs["devices"] = n > 1``
            each process gets ``batch_size / n``.
        datamodule: an already-built datamodule (tests, custom data), or ``{"class_path": ..., "init_args": ...}``
            to build one (``batch_size`` and ``seed`` are filled in when its constructor takes them).
        method_kwargs / data_kwargs / trainer_kwargs: overrides applied after the profile.
        root_dir: where checkpoints and logs go (a temporary folder when None).
        logger: a Lightning logger (or False).
        progress: show Lightning's progress bar.
        after_test: called as ``after_test(model, datamodule, trainer)`` once the selected checkpoint has been
            tested (the model holds its weights); the JSON-serialisable mapping it returns is merged into
            ``CellResult.extra`` (the table runner uses it for retrieval examples and code statistics).
    """
    import tempfile

    cls = resolve_method(method)
    prof = resolve_profile(None, profile, cls)  # a mapping is copied as is
    max_epochs = int(prof.pop("max_epochs", 10))
    max_steps = prof.pop("max_steps", None)
    tk_in = trainer_kwargs or {}
    batch_size = per_device_batch_size(int(prof.pop("batch_size", 128)), tk_in.get("devices"), tk_in.get("num_nodes"))
    patience = prof.pop("patience", None)
    min_delta = float(prof.pop("min_delta", 0.0))
    data_opts = {k: prof.pop(k) for k in ("train_limit", "eval_limit") if k in prof}
    # A paper recipe may hold datamodule options per protocol, e.g. DFEH's SVHN class-aware sampler.
    data_opts.update(prof.pop("data_kwargs", {}).get(protocol, {}))
    L.seed_everything(seed, workers=True, verbose=False)
    if isinstance(datamodule, Mapping):
        datamodule = instantiate_datamodule(datamodule, batch_size=batch_size, seed=seed)
        datamodule.prepare_data()
    elif datamodule is None:
        from hashbench.data import create_datamodule

        data_opts.update(data_kwargs or {})
        datamodule = create_datamodule(protocol, batch_size=batch_size, seed=seed, **data_opts)
        datamodule.prepare_data()
    mkw = {**prof, **(method_kwargs or {})}
    model = cls(n_bits=n_bits, **mkw)
    tmp = None
    if root_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="hashbench-")
        root_dir = tmp.name
    datamodule.setup("fit")
    has_val = bool(datamodule.val_dataloader())
    callbacks = []
    ckpt = None
    if has_val:
        ckpt = L.pytorch.callbacks.ModelCheckpoint(
            dirpath=Path(root_dir) / "checkpoints", monitor="val/mAP", mode="max", save_top_k=1, save_last=False
        )
        callbacks.append(ckpt)
    early = None
    if patience is not None:
        if not has_val:
            raise ValueError(
                f"the profile asks for early stopping (patience={patience}) but the datamodule has no validation "
                "split (val_fraction=0); drop `patience` from the profile or keep a validation split"
            )
        if int(patience) < 1:
            raise ValueError(f"patience must be a positive number of epochs, got {patience!r}")
        early = L.pytorch.callbacks.EarlyStopping(
            monitor="val/mAP", mode="max", patience=int(patience), min_delta=min_delta, check_on_train_epoch_end=False
        )
        callbacks.append(early)
    tkw = {
        "max_epochs": max_epochs,
        # Lightning logs every 50 steps by default; an epoch with fewer batches would log no step at all.
        "log_every_n_steps": _logging_interval(datamodule),
        "logger": logger,
        "callbacks": callbacks,
        "enable_checkpointing": has_val,
        "enable_progress_bar": progress,
        "enable_model_summary": False,
        "default_root_dir": str(root_dir),
        "num_sanity_val_steps": 0,
        "deterministic": "warn",
        **({"max_steps": int(max_steps)} if max_steps is not None else {}),
        **(trainer_kwargs or {}),
    }
    trainer = L.Trainer(**tkw)
    t0 = time.perf_counter()
    trainer.fit(model, datamodule=datamodule)
    train_time = time.perf_counter() - t0
    best_epoch = None
    ckpt_path = None
    if ckpt is not None and ckpt.best_model_path:
        ckpt_path = ckpt.best_model_path
        best_epoch = int(torch.load(ckpt_path, map_location="cpu", weights_only=False)["epoch"])
    recipe = executed_recipe(model, trainer, datamodule)
    if early is not None:
        recipe["early_stopping"] = {
            "patience": int(patience),
            "min_delta": min_delta,
            "stopped_early": bool(early.stopped_epoch),
            "max_epochs": max_epochs,
        }
    trainer.test(model, datamodule=datamodule, ckpt_path=ckpt_path, verbose=False)
    wall = time.perf_counter() - t0
    metrics = {k: float(v) for k, v in model.test_report.items() if isinstance(v, torch.Tensor) and v.numel() == 1}
    extra = {k: v.tolist() for k, v in model.test_report.items() if isinstance(v, torch.Tensor) and v.numel() > 1}
    if after_test is not None:
        extra.update(after_test(model, datamodule, trainer) or {})
    if tmp is not None:
        tmp.cleanup()
    return CellResult(
        method,
        getattr(datamodule.protocol, "name", protocol),
        n_bits,
        seed,
        metrics,
        best_epoch,
        wall,
        train_time,
        extra,
        recipe,
    )


def _logging_interval(datamodule: Any, default: int = 50) -> int:
    """Lightning's ``log_every_n_steps``: its default of 50, or once per batch when an epoch has fewer batches."""
    try:
        n_batches = len(datamodule.train_dataloader())
    except TypeError:  # an iterable-style loader has no length
        return default
    return max(1, min(default, n_batches))


def executed_recipe(model: Any, trainer: Any, datamodule: Any) -> dict[str, Any]:
    """What a fit actually ran, read back from the live objects (not from the settings asked for).

    Returns optimiser class and per-group learning rates, scheduler class, optimiser steps taken, epochs, training
    batch size (or the class-aware sampler's images per class), transform and input shape, backbone name and the
    pretrained weights file with its sha256. The table runner stores it with every cell, and the paper-profile
    rehearsal compares it with each method's ``paper_training``.
    """
    recipe: dict[str, Any] = {}
    optimizers = getattr(trainer, "optimizers", None) or []
    if optimizers:
        opt = optimizers[0]
        recipe["optimizer"] = type(opt).__name__
        recipe["param_groups"] = {
            str(g.get("name", i)): {"lr": g.get("initial_lr", g["lr"]), "weight_decay": g.get("weight_decay")}
            for i, g in enumerate(opt.param_groups)
        }
        recipe["momentum"] = opt.param_groups[0].get("momentum")
    configs = getattr(trainer, "lr_scheduler_configs", None) or []
    recipe["scheduler"] = type(configs[0].scheduler).__name__ if configs else None
    recipe["steps"] = int(trainer.global_step)
    recipe["epochs"] = int(trainer.current_epoch)
    recipe["batch_size"] = getattr(datamodule, "batch_size", None)
    recipe["class_aware_sampler"] = getattr(datamodule, "class_aware_sampler", None)
    recipe["transform"] = getattr(datamodule, "transform_name", None)
    shape = getattr(datamodule, "image_shape", None)
    recipe["image_shape"] = list(shape) if shape is not None else None
    backbone = getattr(model, "backbone", None)
    recipe["backbone"] = getattr(backbone, "name", None)
    recipe["weights_file"] = getattr(backbone, "weights_file", None)
    recipe["weights_sha256"] = getattr(backbone, "weights_sha256", None)
    return recipe


def per_device_batch_size(batch_size: int, devices: Any, num_nodes: Any = None) -> int:
    """Split a global batch over ``devices x num_nodes`` processes so DDP keeps the profile's effective batch size.

    Raises:
        ValueError: the batch does not divide evenly.
    """

    def count(value: Any) -> int:
        return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 1

    n = count(devices) * count(num_nodes)
    if n <= 1:
        return batch_size
    if batch_size % n:
        raise ValueError(
            f"the global batch size {batch_size} does not split evenly over {n} processes "
            f"({count(devices)} devices x {count(num_nodes)} nodes); pick counts whose product divides it "
            "(or override batch_size in the profile)"
        )
    return batch_size // n


def instantiate_datamodule(spec: Mapping[str, Any], batch_size: int, seed: int) -> Any:
    """Build a datamodule from ``{"class_path": "pkg.mod.Class", "init_args": {...}}``.

    ``batch_size`` and ``seed`` are passed when the constructor accepts them and ``init_args`` does not set them.
    """
    if "class_path" not in spec:
        raise ValueError(
            "a datamodule spec needs 'class_path' (e.g. 'hashbench.testing.SyntheticHashingDataModule'), "
            f"got {dict(spec)}"
        )
    module_name, _, class_name = str(spec["class_path"]).rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError) as err:
        raise ValueError(f"cannot import datamodule class {spec['class_path']!r}: {err}") from err
    kwargs = dict(spec.get("init_args") or {})
    params = inspect.signature(cls).parameters
    if "batch_size" in params:
        kwargs.setdefault("batch_size", batch_size)
    if "seed" in params:
        kwargs.setdefault("seed", seed)
    return cls(**kwargs)
