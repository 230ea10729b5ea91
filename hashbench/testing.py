"""Helpers for tests and examples: a tiny synthetic datamodule that needs no files.

Images are class templates plus noise, so a hashing network can learn them in a few steps; labels are one-hot
(or multi-hot with ``multi_label=True``). It follows the datamodule contract of ``hashbench.data`` (the
datamodule contract tests check it): ``facts`` gives the :class:`~hashbench.data.facts.DataFacts` a method reads,
training batches are :class:`~hashbench.data.batch.HashBatch` ``(image, labels, index)`` with ``index`` in
``[0, num_train)``, ``train_eval_dataloader`` yields the training set in order, and validation/test return
``[query_loader, database_loader]``.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset

from hashbench.data.batch import HashBatch
from hashbench.data.facts import DataFacts

__all__ = ["SyntheticHashingDataModule", "loss_before_and_after_fit", "quiet_trainer", "synthetic_images"]


def synthetic_images(
    n: int, num_classes: int, shape: tuple[int, int, int], multi_label: bool, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` images of ``shape`` and their multi-hot labels, drawn from a seeded generator."""
    g = torch.Generator().manual_seed(seed)
    templates = torch.randn(num_classes, *shape, generator=torch.Generator().manual_seed(1234))
    cls = torch.randint(0, num_classes, (n,), generator=g)
    labels = torch.nn.functional.one_hot(cls, num_classes).float()
    if multi_label:
        extra = torch.randint(0, num_classes, (n,), generator=g)
        keep = torch.rand(n, generator=g) < 0.5
        labels[keep, extra[keep]] = 1.0
    images = labels @ templates.flatten(1) / labels.sum(1, keepdim=True)
    images = images.view(n, *shape) + 0.5 * torch.randn(n, *shape, generator=g)
    return images, labels


class _TensorSplit(Dataset):
    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        self.images, self.labels = images, labels

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> HashBatch:
        return HashBatch(self.images[i], self.labels[i], torch.tensor(i))


class SyntheticHashingDataModule(L.LightningDataModule):
    """Seeded synthetic retrieval data: train / [val query, val db] / [query, db]."""

    def __init__(
        self,
        num_classes: int = 4,
        image_shape: tuple[int, int, int] = (1, 28, 28),
        num_train: int = 64,
        num_query: int = 16,
        num_database: int = 64,
        batch_size: int = 16,
        multi_label: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.num_classes, self.image_shape, self.multi_label = num_classes, tuple(image_shape), multi_label
        self.num_train, self.batch_size = num_train, batch_size
        self.protocol = SimpleNamespace(name="synthetic", map_k=None, num_classes=num_classes, multi_label=multi_label)
        sizes = {"train": num_train, "val_query": num_query, "query": num_query, "database": num_database}
        self.splits = {
            name: _TensorSplit(*synthetic_images(n, num_classes, self.image_shape, multi_label, seed + i))
            for i, (name, n) in enumerate(sizes.items())
        }
        self.splits["val_database"] = self.splits["train"]

    @property
    def facts(self) -> DataFacts:
        """What a method learns from this data."""
        return DataFacts(
            num_classes=self.num_classes,
            num_train=self.num_train,
            image_shape=self.image_shape,
            multi_label=self.multi_label,
            map_k=None,
            protocol="synthetic",
        )

    def prepare_data(self) -> None:
        """Nothing to download: the data is generated in the constructor."""

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.splits["train"], batch_size=self.batch_size, shuffle=True, drop_last=True)

    def train_eval_dataloader(self) -> DataLoader:
        return DataLoader(self.splits["train"], batch_size=self.batch_size)

    def val_dataloader(self) -> list[DataLoader]:
        return [DataLoader(self.splits[s], batch_size=64) for s in ("val_query", "val_database")]

    def test_dataloader(self) -> list[DataLoader]:
        return [DataLoader(self.splits[s], batch_size=64) for s in ("query", "database")]


def quiet_trainer(root_dir: Any, max_epochs: int = 1, **overrides: Any) -> L.Trainer:
    """A CPU-friendly Lightning ``Trainer`` for tests: no logger, progress bar, model summary, checkpoints or
    validation loop (``limit_val_batches=0``); ``overrides`` replace any of these."""
    settings: dict[str, Any] = {
        "max_epochs": max_epochs,
        "logger": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "enable_checkpointing": False,
        "limit_val_batches": 0,
        "default_root_dir": root_dir,
    }
    return L.Trainer(**(settings | overrides))


def loss_before_and_after_fit(
    model: Any, datamodule: Any, batch: Any, root_dir: Any, max_epochs: int = 4, term: str = "loss"
) -> tuple[float, float, L.Trainer]:
    """The loss term ``term`` of ``batch`` in eval mode before and after ``max_epochs`` of :func:`quiet_trainer`
    training on ``datamodule``; returns ``(before, after, trainer)`` (the trainer, e.g. to test the model next)."""
    import torch

    def measure() -> float:
        model.eval()
        with torch.no_grad():
            return float(model.compute_loss(batch)[term])

    before = measure()
    model.train()
    trainer = quiet_trainer(root_dir, max_epochs=max_epochs)
    trainer.fit(model, datamodule=datamodule)
    return before, measure(), trainer
