"""The datamodules plug into Lightning: CLI schema from the signatures, and a short fit/validate/test run."""

from __future__ import annotations

from dataclasses import replace

import lightning.pytorch as pl
import pytest
import torch
from jsonargparse import ArgumentParser

import hashbench.data.protocols as protocols
from hashbench.data import CIFAR10DataModule, create_datamodule, datamodule_class_for, list_protocols


@pytest.mark.parametrize("name", list_protocols())
def test_cli_schema_builds(name):
    """LightningCLI builds its config schema from the constructor type hints; it must accept every class."""
    parser = ArgumentParser(exit_on_error=False)
    parser.add_class_arguments(datamodule_class_for(name), "data")
    config = parser.parse_args(["--data.protocol", name, "--data.batch_size", "7", "--data.eval_limit", "3"])
    assert config.data.protocol == name and config.data.batch_size == 7 and config.data.eval_limit == 3


class _Probe(pl.LightningModule):
    def __init__(self, num_train: int) -> None:
        super().__init__()
        self.net = torch.nn.Linear(3 * 32 * 32, 8)
        self.bank = torch.zeros(num_train, 8)  # memory bank sized from the datamodule
        self.seen_val = []

    def training_step(self, batch, batch_idx):
        codes = torch.tanh(self.net(batch.image.flatten(1)))
        self.bank[batch.index] = codes.detach()
        return codes.pow(2).mean()

    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        self.seen_val.append((dataloader_idx, batch.image.shape[0]))

    def test_step(self, batch, batch_idx, dataloader_idx=0):
        self.seen_val.append(("test", dataloader_idx, batch.image.shape[0]))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_fit_validate_test(fake_cifar, monkeypatch):
    table = dict(protocols.PROTOCOLS)
    table["cifar10"] = replace(table["cifar10"], query_per_class=2, train_per_class=8)
    monkeypatch.setattr(protocols, "PROTOCOLS", table)
    dm = create_datamodule("cifar10", batch_size=16, eval_batch_size=32, val_fraction=0.25)
    assert isinstance(dm, CIFAR10DataModule)
    dm.prepare_data()
    dm.setup()
    model = _Probe(dm.num_train)
    trainer = pl.Trainer(
        max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False
    )
    trainer.fit(model, datamodule=dm)
    assert trainer.global_step == dm.num_train // 16
    assert {idx for idx, _ in [s for s in model.seen_val if s[0] != "test"]} == {0, 1}
    trainer.test(model, datamodule=dm, verbose=False)
    assert sum(n for tag, idx, n in [s for s in model.seen_val if s[0] == "test"] if idx == 0) == 20
