"""Shared checks of the unsupervised image methods' tests (BiHalf, CIBHash, TBH): a seeded fit on 4-class
synthetic data, with the training labels as they are or permuted (a label-free method must not notice)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import lightning as L
import torch

from hashbench.testing import SyntheticHashingDataModule, quiet_trainer


def fit_synthetic(
    make_model: Callable[[], Any], labels: str, tmp_path: Any, epochs: int = 1
) -> tuple[dict[str, torch.Tensor], Any, SyntheticHashingDataModule]:
    """Fit ``make_model()`` for ``epochs`` on seeded synthetic data; ``labels="permuted"`` shuffles the training
    labels first. Returns the trained state dict (copied), the model and the datamodule."""
    L.seed_everything(0, verbose=False)
    dm = SyntheticHashingDataModule(num_classes=4, num_train=64, batch_size=16)
    if labels == "permuted":
        train = dm.splits["train"]
        train.labels = train.labels[torch.randperm(len(train.labels), generator=torch.Generator().manual_seed(9))]
    L.seed_everything(0, verbose=False)
    model = make_model()
    quiet_trainer(tmp_path, max_epochs=epochs).fit(model, datamodule=dm)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}, model, dm


def assert_label_free(make_model: Callable[[], Any], tmp_path: Any) -> None:
    """Training on permuted labels gives bit-identical weights."""
    ref, _, _ = fit_synthetic(make_model, "original", tmp_path)
    other, _, _ = fit_synthetic(make_model, "permuted", tmp_path)
    for key in ref:
        assert torch.equal(ref[key], other[key]), key


def map_after_training(make_model: Callable[[], Any], tmp_path: Any, epochs: int = 6) -> float:
    """Test mAP@all of ``make_model()`` after ``epochs`` of training on the synthetic data."""
    _, model, dm = fit_synthetic(make_model, "original", tmp_path, epochs=epochs)
    quiet_trainer(tmp_path).test(model, datamodule=dm, verbose=False)
    return float(model.test_report["mAP@all"])
