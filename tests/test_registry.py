"""Registry behaviour, and the promise that adding a method is adding one file."""

from __future__ import annotations

import importlib
import sys
import textwrap

import lightning as L
import pytest

from hashbench import registry
from hashbench.testing import SyntheticHashingDataModule


def test_lookup_is_case_and_separator_insensitive() -> None:
    assert registry.get_method("dpsh") is registry.get_method("DPSH")
    assert "DPSH" in registry.list_methods("dp*")
    assert registry.list_methods("nothing-matches-*") == []


def test_unknown_method_lists_the_registered_ones() -> None:
    with pytest.raises(KeyError, match="DPSH"):
        registry.get_method("no-such-method")


def test_duplicate_name_raises() -> None:
    with pytest.raises(ValueError, match="already registered"):

        @registry.register_method(name="dpsh")
        class Other:  # noqa: F841
            pass


def test_method_in_a_new_module_registers_and_trains(tmp_path, monkeypatch) -> None:
    """A method defined in a brand-new module file is picked up by the registry and trains."""
    (tmp_path / "my_toy_hash.py").write_text(
        textwrap.dedent(
            '''
            """ToyHash: a toy method for the registry test.

            Deviations from the paper: none (there is no paper).
            """
            from typing import Any

            from hashbench.methods.base import HashingMethod, Paper
            from hashbench.registry import register_method


            def toy_hash_loss(u, labels):
                target = labels @ labels.T > 0
                sim = u @ u.T / u.shape[1]
                loss = ((sim - (2.0 * target.float() - 1.0)) ** 2).mean()
                return {"loss": loss}


            @register_method
            class ToyHash(HashingMethod):
                paper = Paper(title="ToyHash", authors="nobody", venue="none", year=2026)
                supervision = "pairwise"

                def __init__(self, n_bits: int = 16, **kwargs: Any) -> None:
                    super().__init__(n_bits=n_bits, **kwargs)

                def compute_loss(self, batch):
                    return toy_hash_loss(self(batch.image), batch.labels)
            '''
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        importlib.import_module("my_toy_hash")
        assert "ToyHash" in registry.list_methods()
        model = registry.create_method("toy-hash", n_bits=8)
        trainer = L.Trainer(max_epochs=1, logger=False, enable_checkpointing=False, enable_progress_bar=False)
        trainer.fit(model, datamodule=SyntheticHashingDataModule(num_train=32, batch_size=8))
        assert trainer.global_step == 4
    finally:
        registry._REGISTRY.pop("ToyHash", None)
        sys.modules.pop("my_toy_hash", None)
