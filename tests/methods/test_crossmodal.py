"""Contract tests for cross-modal methods (the image-only contract tests skip them), parametrised over the registry:
shapes, ±1 codes, finite named losses, gradients into both networks, a fast_dev_run, the I→T / T→I report, and
the CLIP path with a tiny randomly initialised CLIP."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from hashbench.data.synthetic_text import FashionMNISTTextDataModule
from hashbench.methods._crossmodal import CrossModalHashingMethod
from hashbench.registry import get_method, list_methods

CROSS_MODAL = list_methods(supervision="cross-modal")

TINY_CLIP = {
    "embed_dim": 16,
    "vision_cfg": {"layers": 1, "width": 16, "head_width": 8, "patch_size": 8, "image_size": 16},
    "text_cfg": {"context_length": 12, "vocab_size": 49408, "width": 16, "heads": 2, "layers": 1},
}


def _dm(**kw) -> FashionMNISTTextDataModule:
    opts = {"image_source": "synthetic", "batch_size": 16, "synthetic_sizes": (3, 8, 6), "seed": 0} | kw
    dm = FashionMNISTTextDataModule(**opts)
    dm.setup()
    return dm


def _configured(name: str, dm: FashionMNISTTextDataModule, **kw) -> CrossModalHashingMethod:
    torch.manual_seed(0)
    model = get_method(name)(n_bits=12, **kw)
    model.configure_data(
        num_classes=dm.num_classes,
        num_train=dm.num_train,
        image_shape=dm.image_shape,
        text_dim=dm.text_dim or None,
        map_k=None,
    )
    return model


def _trainer(tmp_path, **kw) -> L.Trainer:
    return L.Trainer(
        logger=False, enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path, **kw
    )


def test_cross_modal_methods_are_registered() -> None:
    assert {"DMsH-LN", "DCMH"} <= set(CROSS_MODAL)
    for name in CROSS_MODAL:
        assert issubclass(get_method(name), CrossModalHashingMethod)


@pytest.mark.parametrize("name", CROSS_MODAL)
def test_shapes_codes_and_finite_named_losses(name: str) -> None:
    dm = _dm()
    model = _configured(name, dm)
    batch = next(iter(dm.train_dataloader()))
    model.train()
    assert model(batch.image).shape == (16, 12)
    assert model.text_forward(batch.text).shape == (16, 12)
    for codes in (model.encode_image(batch.image), model.encode_text(batch.text)):
        assert codes.shape == (16, 12) and codes.dtype == torch.int8
        assert set(codes.unique().tolist()) <= {-1, 1}
    terms = model.compute_loss(batch)
    assert "loss" in terms and len(terms) >= 2
    for key, value in terms.items():
        assert value.ndim == 0 and torch.isfinite(value), f"{name}: term {key} = {value}"


@pytest.mark.parametrize("name", CROSS_MODAL)
def test_gradients_reach_both_networks(name: str) -> None:
    dm = _dm()
    model = _configured(name, dm)
    batch = next(iter(dm.train_dataloader()))
    model.train()
    model.compute_loss(batch)["loss"].backward()
    for part in (model.backbone, model.hash_layer, model.text_encoder, model.text_hash_layer):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters()), type(part).__name__


@pytest.mark.parametrize("name", CROSS_MODAL)
def test_fast_dev_run_reports_both_directions(name: str, tmp_path) -> None:
    dm = _dm()
    model = get_method(name)(n_bits=12)
    trainer = _trainer(tmp_path, fast_dev_run=2)
    trainer.fit(model, datamodule=dm)
    trainer.test(model, datamodule=dm, verbose=False)
    report = model.test_report
    for key in ("mAP@all I→T", "mAP@all T→I", "mAP@all"):
        assert 0.0 <= float(report[key]) <= 1.0
    assert float(report["mAP@all"]) == pytest.approx((float(report["mAP@all I→T"]) + float(report["mAP@all T→I"])) / 2)


def test_test_report_is_image_queries_vs_text_database_and_back(tmp_path) -> None:
    from hashbench.metrics import HashingRetrieval

    dm = _dm()
    model = get_method("DMsH-LN")(n_bits=12)
    trainer = _trainer(tmp_path, max_epochs=1, limit_val_batches=0, enable_checkpointing=False)
    trainer.fit(model, datamodule=dm)
    trainer.test(model, datamodule=dm, verbose=False)
    model.eval()
    query, database = dm.test_dataloader()
    q = [(model.encode_image(b.image), model.encode_text(b.text), b.labels) for b in query]
    d = [(model.encode_image(b.image), model.encode_text(b.text), b.labels) for b in database]
    cat = torch.cat
    for direction, (qi, di) in {"I→T": (0, 1), "T→I": (1, 0)}.items():
        metric = HashingRetrieval()
        metric.update(cat([x[qi] for x in q]), cat([x[2] for x in q]), role="query")
        metric.update(cat([x[di] for x in d]), cat([x[2] for x in d]), role="database")
        expected = float(metric.compute()["mAP@all"])
        assert float(model.test_report[f"mAP@all {direction}"]) == pytest.approx(expected, abs=1e-6)


def test_text_network_needs_text_dim() -> None:
    model = get_method("DMsH-LN")(n_bits=8)
    model.configure_data(num_classes=10, num_train=8, image_shape=(1, 28, 28))
    with pytest.raises(RuntimeError, match="text_dim"):
        model.text_forward(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="text_dim"):
        built = get_method("DMsH-LN")(n_bits=8, text_dim=20)
        built.configure_data(num_classes=10, num_train=8, text_dim=30)


def test_bow_text_hidden_width_is_an_argument() -> None:
    model = get_method("DCMH")(n_bits=8, text_dim=50, text_hidden=32)
    assert model.text_encoder.feature_dim == 32
    assert model.text_encoder.net[0].in_features == 50


# ---------------------------------------------------------------------------------------------- the CLIP path
@pytest.mark.parametrize("name", CROSS_MODAL)
def test_tiny_clip_towers_train_and_evaluate(name: str, tmp_path) -> None:
    dm = _dm(text_format="tokens", context_length=12, synthetic_image_shape=(3, 16, 16))
    model = get_method(name)(n_bits=12, backbone="clip", text_encoder="clip", clip_model=TINY_CLIP, backbone_lr=1e-4)
    batch = next(iter(dm.train_dataloader()))
    assert batch.text.dtype == torch.int64 and batch.text.shape == (16, 12)
    model.configure_data(num_classes=10, num_train=dm.num_train, image_shape=dm.image_shape, map_k=None)
    model.train()
    model.compute_loss(batch)["loss"].backward()
    for part in (model.backbone, model.text_encoder):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters())
    # The two towers share no parameter, and both train at backbone_lr.
    image_ids = {id(p) for p in model.backbone.parameters()}
    assert not image_ids & {id(p) for p in model.text_encoder.parameters()}
    groups = {g["name"]: g for g in model.parameter_groups()}
    slow = {id(p) for p in groups["backbone"]["params"]}
    assert image_ids <= slow and groups["backbone"]["lr"] == 1e-4
    model = get_method(name)(n_bits=12, backbone="clip", text_encoder="clip", clip_model=TINY_CLIP)
    trainer = _trainer(tmp_path, fast_dev_run=1)
    trainer.fit(model, datamodule=dm)
    trainer.test(model, datamodule=dm, verbose=False)
    assert 0.0 <= float(model.test_report["mAP@all"]) <= 1.0


def test_clip_image_tower_rejects_grey_images() -> None:
    model = get_method("DMsH-LN")(n_bits=8, backbone="clip", text_encoder="clip", clip_model=TINY_CLIP)
    with pytest.raises(ValueError, match="3-channel"):
        model.configure_data(num_classes=10, num_train=8, image_shape=(1, 16, 16))
