"""DJSRH: the joint-semantics affinity and the reconstruction loss against explicit loops, no labels, and the
shared label-free machinery (frozen feature networks, tanh(a·h), learning-rate groups)."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch

from hashbench.data.synthetic_text import FashionMNISTTextDataModule
from hashbench.methods.djsrh import DJSRH, djsrh_loss, djsrh_similarity
from hashbench.testing import quiet_trainer


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    dot = sum(float(x) * float(y) for x, y in zip(a, b, strict=True))
    na = math.sqrt(sum(float(x) ** 2 for x in a))
    nb = math.sqrt(sum(float(y) ** 2 for y in b))
    return dot / (na * nb)


def similarity_loop(f_i, f_t, beta, eta, mu) -> list[list[float]]:
    """μ·[(1 − η)·S̃ + η·S̃S̃ᵀ/m], S̃ = β·(2cos_I − 1) + (1 − β)·(2cos_T − 1), one entry at a time."""
    m = f_i.shape[0]
    fused = [
        [beta * (2 * _cos(f_i[i], f_i[j]) - 1) + (1 - beta) * (2 * _cos(f_t[i], f_t[j]) - 1) for j in range(m)]
        for i in range(m)
    ]
    out = []
    for i in range(m):
        row = []
        for j in range(m):
            diffused = sum(fused[i][k] * fused[j][k] for k in range(m)) / m
            row.append(mu * ((1 - eta) * fused[i][j] + eta * diffused))
        out.append(row)
    return out


def _batch(seed: int, m: int = 6, k: int = 5):
    g = torch.Generator().manual_seed(seed)
    u_i = torch.randn(m, k, generator=g, dtype=torch.float64).tanh()
    u_t = torch.randn(m, k, generator=g, dtype=torch.float64).tanh()
    f_i = torch.randn(m, 7, generator=g, dtype=torch.float64)
    f_t = (torch.rand(m, 9, generator=g, dtype=torch.float64) < 0.4).double()
    f_t[:, 0] = 1.0  # no empty bag of words
    return u_i, u_t, f_i, f_t


@pytest.mark.parametrize("seed", range(3))
def test_similarity_matches_explicit_loop(seed: int) -> None:
    _, _, f_i, f_t = _batch(seed)
    got = djsrh_similarity(f_i, f_t, beta=0.7, eta=0.3, mu=1.2)
    expected = similarity_loop(f_i, f_t, 0.7, 0.3, 1.2)
    assert got.dtype == torch.float64
    for i, row in enumerate(expected):
        for j, value in enumerate(row):
            assert float(got[i, j]) == pytest.approx(value, rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("seed", range(3))
def test_loss_matches_explicit_loop(seed: int) -> None:
    u_i, u_t, f_i, f_t = _batch(seed)
    beta, eta, mu, l1, l2 = 0.6, 0.4, 1.5, 0.3, 0.2
    target = similarity_loop(f_i, f_t, beta, eta, mu)
    m = u_i.shape[0]
    cross = intra_i = intra_t = 0.0
    for i in range(m):
        for j in range(m):
            cross += (target[i][j] - _cos(u_i[i], u_t[j])) ** 2 / m**2
            intra_i += (target[i][j] - _cos(u_i[i], u_i[j])) ** 2 / m**2
            intra_t += (target[i][j] - _cos(u_t[i], u_t[j])) ** 2 / m**2
    terms = djsrh_loss(u_i, u_t, f_i, f_t, beta=beta, eta=eta, mu=mu, lambda1=l1, lambda2=l2)
    assert float(terms["cross"]) == pytest.approx(cross, rel=1e-10)
    assert float(terms["intra_image"]) == pytest.approx(l1 * intra_i, rel=1e-10)
    assert float(terms["intra_text"]) == pytest.approx(l2 * intra_t, rel=1e-10)
    assert float(terms["loss"]) == pytest.approx(cross + l1 * intra_i + l2 * intra_t, rel=1e-10)


def test_target_has_no_gradient_and_codes_do() -> None:
    u_i, u_t, f_i, f_t = _batch(0)
    u_i.requires_grad_(True)
    f_i.requires_grad_(True)
    djsrh_loss(u_i, u_t, f_i, f_t)["loss"].backward()
    assert u_i.grad is not None and u_i.grad.abs().sum() > 0
    assert f_i.grad is None  # the affinity is a fixed target
    assert torch.autograd.gradcheck(
        lambda x: djsrh_loss(x, u_t, f_i.detach(), f_t)["loss"], (u_i.detach().requires_grad_(),)
    )


def _datamodule(**kw) -> FashionMNISTTextDataModule:
    opts = {"image_source": "synthetic", "batch_size": 32, "synthetic_sizes": (4, 16, 8), "seed": 0} | kw
    dm = FashionMNISTTextDataModule(**opts)
    dm.setup()
    return dm


def _configured(**kw) -> tuple[FashionMNISTTextDataModule, DJSRH]:
    dm = _datamodule()
    torch.manual_seed(0)
    model = DJSRH(n_bits=16, **kw)
    model.configure_data(dm.facts)
    return dm, model


def test_compute_loss_never_reads_labels() -> None:
    dm, model = _configured()
    model.eval()
    batch = next(iter(dm.train_dataloader()))
    scrambled = batch._replace(labels=batch.labels[torch.randperm(len(batch.labels))] * 0)
    a, b = model.compute_loss(batch), model.compute_loss(scrambled)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_compute_loss_uses_the_fixed_features_and_scaled_codes() -> None:
    dm, model = _configured(image_features="pixels")
    model.eval()
    batch = next(iter(dm.train_dataloader()))
    u_i, u_t = torch.tanh(model.hash_logits(batch.image)), torch.tanh(model.text_hash_logits(batch.text))
    expected = djsrh_loss(u_i, u_t, batch.image.flatten(1), batch.text)
    got = model.compute_loss(batch)
    assert float(got["loss"]) == pytest.approx(float(expected["loss"]), rel=1e-6)


def test_frozen_feature_network_stays_fixed_while_the_backbone_trains(tmp_path) -> None:
    dm, model = _configured()
    feature_net, backbone = model.image_feature_net, model.backbone
    assert feature_net is not None and feature_net is not backbone
    assert not any(p.requires_grad for p in feature_net.parameters())
    before_feat = [p.detach().clone() for p in feature_net.parameters()]
    before_bb = [p.detach().clone() for p in backbone.parameters()]
    model.train()
    assert not feature_net.training and backbone.training  # BatchNorm statistics of the copy stay put
    scales: list[float] = []

    class RecordScale(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            scales.append(pl_module.code_scale())

    trainer = quiet_trainer(tmp_path, max_epochs=2, callbacks=[RecordScale()])
    trainer.fit(model, datamodule=dm)
    assert all(torch.equal(b, a) for b, a in zip(before_feat, feature_net.parameters(), strict=True))
    assert any(not torch.equal(b, a) for b, a in zip(before_bb, backbone.parameters(), strict=True))
    assert model.text_feature_net is None  # bag-of-words text: the vector itself is the text feature
    assert sorted(set(scales)) == pytest.approx([1.0, math.sqrt(2)])  # a = sqrt(epoch + 1)
    assert DJSRH(scale_codes=False).code_scale() == 1.0


def test_image_network_trains_at_backbone_lr() -> None:
    _, model = _configured(lr=0.01, backbone_lr=0.001)
    groups = {g["name"]: g for g in model.parameter_groups()}
    slow = {id(p) for p in groups["backbone"]["params"]}
    assert {id(p) for p in model.hash_layer.parameters()} <= slow
    assert {id(p) for p in model.backbone.parameters()} <= slow
    fast = {id(p) for p in groups["head"]["params"]}
    assert {id(p) for p in model.text_encoder.parameters()} <= fast and groups["head"]["lr"] == 0.01
    assert not {id(p) for p in model.image_feature_net.parameters()} & (slow | fast)


def test_freeze_backbone_trains_only_the_heads() -> None:
    _, model = _configured(freeze_backbone=True)
    assert model.image_feature_net is None
    assert not any(p.requires_grad for p in model.backbone.parameters())
    model.train()
    assert not model.backbone.training


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="image_features"):
        DJSRH(image_features="fc7")
    with pytest.raises(ValueError, match="text_features"):
        DJSRH(text_features="bow")
    _, model = _configured(text_features="input")
    with pytest.raises(ValueError, match="bag-of-words"):
        model.text_features(torch.zeros(2, 5, dtype=torch.long))


def test_training_beats_chance_without_labels(tmp_path) -> None:
    torch.manual_seed(0)
    dm = _datamodule(synthetic_sizes=(6, 24, 12), batch_size=48)
    model = DJSRH(n_bits=16, image_features="pixels")
    trainer = quiet_trainer(tmp_path, max_epochs=8)
    trainer.fit(model, datamodule=dm)
    trainer.test(model, datamodule=dm, verbose=False)
    # 10 balanced classes: random codes give a mean AP of about 0.1 in both directions
    assert float(model.test_report["mAP@all I→T"]) > 0.2
    assert float(model.test_report["mAP@all T→I"]) > 0.2
