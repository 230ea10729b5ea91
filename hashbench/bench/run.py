"""Run one cell: fit a method on a protocol, select the checkpoint on the validation split, test it.

This is the single code path that every reported number goes through (benchmarks, the table runner, the CLI's
``hashbench run``). The checkpoint rule: the epoch with the best validation mAP (validation queries carved from
the training split, never the query set); with ``val_fraction=0`` the last epoch.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import torch

from hashbench.registry import get_method

__all__ = ["PROFILES", "CellResult", "run_cell"]

#: Training profiles shared by every method so results are comparable. ``quick`` is the short CPU schedule of
#: the offline leaderboards; ``paper`` takes each method's ``paper_training`` recipe.
PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {
        "max_epochs": 1,
        "batch_size": 64,
        "optimizer": "adam",
        "lr": 1e-3,
        "train_limit": 256,
        "eval_limit": 512,
    },
    "quick": {"max_epochs": 10, "batch_size": 128, "optimizer": "adam", "lr": 1e-3},
    "paper": {},
}


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


def run_cell(
    method: str,
    protocol: str = "fashion-mnist",
    n_bits: int = 48,
    seed: int = 0,
    profile: str = "quick",
    datamodule: Any | None = None,
    method_kwargs: dict[str, Any] | None = None,
    data_kwargs: dict[str, Any] | None = None,
    trainer_kwargs: dict[str, Any] | None = None,
    root_dir: str | Path | None = None,
    logger: Any = False,
    progress: bool = False,
) -> CellResult:
    """Fit ``method`` on ``protocol`` with a training profile, select on validation, test, return the metrics.

    Args:
        method: registry name.
        protocol: data protocol name (see ``hashbench data list``); ignored when ``datamodule`` is given.
        n_bits: code length.
        seed: seeds Python/NumPy/torch (``L.seed_everything``) and the datamodule.
        profile: ``smoke`` | ``quick`` | ``paper`` (see :data:`PROFILES`).
        datamodule: an already-built datamodule (tests, custom data).
        method_kwargs / data_kwargs / trainer_kwargs: overrides applied after the profile.
        root_dir: where checkpoints and logs go (a temporary folder when None).
        logger: a Lightning logger (or False).
        progress: show Lightning's progress bar.
    """
    import tempfile

    cls = get_method(method)
    prof = dict(PROFILES[profile]) if profile != "paper" else dict(cls.paper_training)
    max_epochs = int(prof.pop("max_epochs", 10))
    batch_size = int(prof.pop("batch_size", 128))
    data_opts = {k: prof.pop(k) for k in ("train_limit", "eval_limit") if k in prof}
    # A paper recipe may hold datamodule options per protocol, e.g. DFEH's SVHN class-aware sampler.
    data_opts.update(prof.pop("data_kwargs", {}).get(protocol, {}))
    L.seed_everything(seed, workers=True, verbose=False)
    if datamodule is None:
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
    tkw = {
        "max_epochs": max_epochs,
        "logger": logger,
        "callbacks": callbacks,
        "enable_checkpointing": has_val,
        "enable_progress_bar": progress,
        "enable_model_summary": False,
        "default_root_dir": str(root_dir),
        "num_sanity_val_steps": 0,
        "deterministic": "warn",
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
    trainer.test(model, datamodule=datamodule, ckpt_path=ckpt_path, verbose=False)
    wall = time.perf_counter() - t0
    metrics = {k: float(v) for k, v in model.test_report.items() if isinstance(v, torch.Tensor) and v.numel() == 1}
    extra = {k: v.tolist() for k, v in model.test_report.items() if isinstance(v, torch.Tensor) and v.numel() > 1}
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
    )
