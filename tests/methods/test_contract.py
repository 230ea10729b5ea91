"""Contract tests, parametrised over the registry: every registered method gets them for free."""

from __future__ import annotations

import ast
import inspect
import sys
from pathlib import Path

import lightning as L
import pytest
import torch

import hashbench.methods
from hashbench.methods.base import SUPERVISION_KINDS, HashingMethod
from hashbench.registry import get_method, list_methods
from hashbench.testing import SyntheticHashingDataModule
from tests.methods.test_crossmodal import _configured as _cross_modal_configured
from tests.methods.test_crossmodal import _dm as _cross_modal_dm

IMAGE_METHODS = [m for m in list_methods() if get_method(m).supervision != "cross-modal"]
#: every method trained by gradient: all but the closed-form (shallow) baselines
DEEP_METHODS = [m for m in list_methods() if get_method(m).supervision != "shallow"]


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
def test_builds_from_its_hyperparameters_as_a_checkpoint_does(name: str) -> None:
    # load_from_checkpoint passes the saved hparams, num_classes and num_train included: the base __init__ then
    # configures the data (and calls on_data_configured) before the subclass's __init__ has set its attributes
    trained = get_method(name)(n_bits=16)
    trained.configure_data(num_classes=6, num_train=32, image_shape=(1, 28, 28))
    hparams = {k: v for k, v in trained.hparams.items() if k not in ("in_channels", "image_size")}
    clone = type(trained)(**{**hparams, "in_channels": 1, "image_size": 28})
    missing, unexpected = clone.load_state_dict(trained.state_dict(), strict=False)
    assert not unexpected and not [k for k in missing if not k.startswith("_metric")], (missing, unexpected)


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


@pytest.mark.parametrize("name", DEEP_METHODS)
def test_loss_function_is_a_named_module_level_function(name: str) -> None:
    fn = get_method(name).loss_function
    assert fn is not None, f"{name} must name its loss: loss_function = staticmethod(<method>_loss)"
    assert inspect.isfunction(fn), f"{name}.loss_function must be a plain function, got {fn!r}"
    assert fn.__name__.endswith("_loss"), f"{name}.loss_function is {fn.__name__!r}; loss names end with '_loss'"
    assert fn.__qualname__ == fn.__name__, f"{name}.loss_function {fn.__qualname__!r} is not at module level"
    module = sys.modules[fn.__module__]
    assert getattr(module, fn.__name__, None) is fn, f"{fn.__module__}.{fn.__name__} is not that function"


@pytest.mark.parametrize("name", list_methods(supervision="shallow"))
def test_closed_form_methods_have_no_loss_function(name: str) -> None:
    assert get_method(name).loss_function is None


@pytest.mark.parametrize("name", DEEP_METHODS)
def test_compute_loss_calls_its_loss_function(name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """``compute_loss`` goes through ``self.loss_function`` (one place), and its total is that function's."""
    cls = get_method(name)
    if cls.supervision == "cross-modal":
        dm = _cross_modal_dm()
        model = _cross_modal_configured(name, dm)
        batch = next(iter(dm.train_dataloader()))
    else:
        model, batch = _configured(name), _batch()
    original = cls.loss_function
    results: list[dict[str, torch.Tensor]] = []

    def recording(*args, **kwargs):
        terms = original(*args, **kwargs)
        results.append(terms)
        return terms

    monkeypatch.setattr(cls, "loss_function", staticmethod(recording))
    model.train()
    terms = model.compute_loss(batch)
    assert results, f"{name}.compute_loss did not call {original.__name__} through self.loss_function"
    # One call (the image methods, DMsH-LN) or one per modality (DCMH): the total is the sum of what it returned.
    assert torch.equal(terms["loss"], sum(r["loss"] for r in results))


def test_no_method_module_imports_another() -> None:
    """Shared code of a family lives in an ``_``-module (``_shallow``, ``_crossmodal``, ``_semantic``) or in
    ``hashbench.nn``; a method file never imports another method's file, so that each method file can change
    without changing another method (the table runner's code hash follows a method's class hierarchy)."""
    folder = Path(hashbench.methods.__file__).parent
    method_modules = {p.stem for p in folder.glob("*.py") if not p.stem.startswith("_") and p.stem != "base"}
    offenders = []
    for stem in sorted(method_modules):
        for node in ast.walk(ast.parse((folder / f"{stem}.py").read_text())):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if isinstance(node, ast.ImportFrom) and node.module == "hashbench.methods":
                names = [f"hashbench.methods.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            for name in names:
                parts = name.split(".")
                if parts[:2] == ["hashbench", "methods"] and len(parts) > 2 and parts[2] in method_modules:
                    offenders.append(f"{stem}.py imports {name}")
    assert len(method_modules) > 10
    assert not offenders, offenders


@pytest.mark.parametrize("name", list_methods())
def test_states_what_its_loss_sees_under_ddp(name: str) -> None:
    """Every method declares ``ddp_batch``; ``global`` ones gather in ``compute_loss``; ``per-process`` ones say
    in their class docstring which in-batch terms see B/n rows; shallow ones are ``closed-form``."""
    from hashbench.methods.base import DDP_BATCH_KINDS

    cls = get_method(name)
    assert cls.ddp_batch in DDP_BATCH_KINDS, f"{name}: set ddp_batch to one of {DDP_BATCH_KINDS}"
    assert (cls.ddp_batch == "closed-form") == (cls.supervision == "shallow"), name
    if cls.ddp_batch == "global":
        assert "global_batch(" in inspect.getsource(cls.compute_loss), f"{name}: global but compute_loss never gathers"
    if cls.ddp_batch == "per-process":
        doc = " ".join((cls.__doc__ or "").split())
        assert "effective in-batch size" in doc and "B/n" in doc, f"{name}: state the effective batch in the docstring"
