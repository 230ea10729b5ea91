"""Contract tests, parametrised over the registry: every registered method gets them for free."""

from __future__ import annotations

import inspect
import sys

import lightning as L
import pytest
import torch

from hashbench.methods.base import SUPERVISION_KINDS, HashingMethod
from hashbench.registry import get_method, list_methods
from hashbench.testing import SyntheticHashingDataModule

IMAGE_METHODS = [m for m in list_methods() if get_method(m).supervision != "cross-modal"]


def _configured(name: str, n_bits: int = 12, num_classes: int = 4, multi_label: bool = False) -> HashingMethod:
    torch.manual_seed(0)
    model = get_method(name)(n_bits=n_bits)
    model.configure_data(num_classes=num_classes, num_train=32, image_shape=(1, 28, 28), multi_label=multi_label)
    return model


def _batch(n: int = 8, num_classes: int = 4, multi_label: bool = False):
    dm = SyntheticHashingDataModule(num_classes=num_classes, num_train=32, batch_size=n, multi_label=multi_label)
    return next(iter(dm.train_dataloader()))


@pytest.mark.parametrize("name", list_methods())
def test_docstring_cites_paper_and_lists_deviations(name: str) -> None:
    cls = get_method(name)
    doc = sys.modules[cls.__module__].__doc__ or ""
    assert cls.paper.title and cls.paper.year and cls.paper.venue
    assert cls.paper.title.split(":")[0][:20].lower() in doc.lower(), "module docstring must name the paper"
    assert "Deviations from the paper:" in doc
    assert cls.supervision in SUPERVISION_KINDS
    if cls.paper.reconstruction:
        assert "reconstruct" in doc.lower(), "a reconstructed loss must say so in the docstring"


@pytest.mark.parametrize("name", list_methods())
def test_init_signature_is_typed_and_has_defaults(name: str) -> None:
    sig = inspect.signature(get_method(name).__init__)
    for p in sig.parameters.values():
        if p.name == "self" or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        assert p.default is not inspect.Parameter.empty, f"{name}.{p.name} needs a default (the paper's value)"
        assert p.annotation is not inspect.Parameter.empty, f"{name}.{p.name} needs a type hint (CLI schema)"


@pytest.mark.parametrize("name", IMAGE_METHODS)
@pytest.mark.parametrize("multi_label", [False, True])
def test_shapes_codes_and_finite_named_losses(name: str, multi_label: bool) -> None:
    model = _configured(name, multi_label=multi_label)
    batch = _batch(multi_label=multi_label)
    model.train()
    assert model(batch.image).shape == (8, 12)
    codes = model.encode(batch.image)
    assert codes.shape == (8, 12)
    assert set(codes.unique().tolist()) <= {-1, 1}
    terms = model.compute_loss(batch)
    assert "loss" in terms and len(terms) >= 1
    for key, value in terms.items():
        assert value.ndim == 0 and torch.isfinite(value), f"{name}: term {key} = {value}"


@pytest.mark.parametrize("name", IMAGE_METHODS)
def test_gradients_reach_backbone_and_head(name: str) -> None:
    model = _configured(name)
    if not model.automatic_optimization:
        pytest.skip(f"{name} has no automatic gradient step (closed-form fit or its own optimisation)")
    batch = _batch()
    model.train()
    terms = model.compute_loss(batch)
    if not terms["loss"].requires_grad:
        pytest.skip(f"{name} has no gradient-trained network (shallow method)")
    terms["loss"].backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.hash_layer.parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.backbone.parameters())


@pytest.mark.parametrize("name", IMAGE_METHODS)
def test_fast_dev_run_on_synthetic_datamodule(name: str, tmp_path) -> None:
    model = get_method(name)(n_bits=12)
    dm = SyntheticHashingDataModule(num_classes=4, num_train=32, batch_size=8)
    trainer = L.Trainer(
        fast_dev_run=2, logger=False, enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path
    )
    trainer.fit(model, datamodule=dm)
    trainer.test(model, datamodule=dm, verbose=False)
    assert 0.0 <= float(model.test_report["mAP@all"]) <= 1.0
