"""The datamodule contract, checked for every registered family (and the synthetic test datamodule).

A new family gets these tests by registering its class: each family writes a tiny copy of its on-disk format with
``make_example``, and everything a method and the table runner rely on is checked on it.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch

from hashbench.data import CrossModalBatch, DataFacts, HashBatch, get_datamodule, list_datamodules
from hashbench.testing import SyntheticHashingDataModule

SETTINGS = {"batch_size": 4, "eval_batch_size": 8, "val_fraction": 0.25}


def _build(family, root):
    if family == "synthetic":
        return SyntheticHashingDataModule(num_train=24, num_query=8, num_database=16, batch_size=4)
    cls = get_datamodule(family)
    return cls(**{**SETTINGS, **cls.make_example(root)})


@pytest.fixture(params=[*list_datamodules(), "synthetic"])
def datamodule(request, isolated_root):
    dm = _build(request.param, isolated_root)
    dm.prepare_data()
    dm.setup("fit")
    return dm


def _indices(loader):
    return torch.cat([batch.index.reshape(-1) for batch in loader])


def test_every_registered_family_has_an_example():
    for family in list_datamodules():
        cls = get_datamodule(family)
        assert cls.family == family
        assert "make_example" in vars(cls), f"{cls.__name__} does not write an example of its format"


def test_facts(datamodule):
    facts = datamodule.facts
    assert isinstance(facts, DataFacts)
    with pytest.raises(dataclasses.FrozenInstanceError):
        facts.num_train = 1  # type: ignore[misc]
    assert facts.num_train == len(_indices(datamodule.train_eval_dataloader())) > 0
    assert facts.num_classes >= 2
    assert facts.modality in ("image", "image-text")
    protocol = getattr(datamodule, "protocol", None)
    if protocol is not None and not isinstance(datamodule, SyntheticHashingDataModule):
        assert (facts.protocol, facts.num_classes, facts.multi_label) == (
            protocol.name,
            protocol.num_classes,
            protocol.multi_label,
        )
        assert facts.modality == protocol.modality and facts.map_k == protocol.map_k


def test_training_batches(datamodule):
    facts = datamodule.facts
    batch = next(iter(datamodule.train_dataloader()))
    expected = CrossModalBatch if facts.modality == "image-text" else HashBatch
    assert isinstance(batch, expected)
    assert tuple(batch.image.shape[1:]) == facts.image_shape
    assert batch.labels.shape == (batch.image.shape[0], facts.num_classes) and batch.labels.dtype == torch.float32
    assert set(batch.labels.unique().tolist()) <= {0.0, 1.0}
    if not facts.multi_label:
        assert torch.all(batch.labels.sum(1) == 1)
    assert 0 <= int(batch.index.min()) and int(batch.index.max()) < facts.num_train
    if facts.text_dim is not None:
        assert batch.text.shape == (batch.image.shape[0], facts.text_dim)


def test_train_eval_loader_is_the_training_set_in_order(datamodule):
    assert _indices(datamodule.train_eval_dataloader()).tolist() == list(range(datamodule.facts.num_train))


def test_evaluation_loaders(datamodule):
    facts = datamodule.facts
    test = datamodule.test_dataloader()
    val = datamodule.val_dataloader()
    assert len(test) == 2 and len(val) in (0, 2)
    for loader in [*test, *val]:
        batches = list(loader)
        assert batches, "an evaluation loader is empty"
        for batch in batches:
            assert batch.labels.shape[1] == facts.num_classes
            assert tuple(batch.image.shape[1:]) == facts.image_shape


def test_setup_is_idempotent_and_a_method_takes_the_facts(datamodule):
    from hashbench.registry import get_method

    before = datamodule.facts
    datamodule.setup("fit")
    assert datamodule.facts == before
    model = get_method("DCMH" if before.text_dim else "DPSH")(n_bits=8)
    model.configure_data(before)
    assert model.data_facts == before
    assert (model.hparams.num_classes, model.hparams.num_train) == (before.num_classes, before.num_train)
