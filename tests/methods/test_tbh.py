"""TBH: Hamming graph, graph layer and actor/critic losses against loops, gradient routing, label-free training."""

from __future__ import annotations

import math

import pytest
import torch

from hashbench.methods.tbh import TBH, TwinBottleneck, hamming_adjacency, tbh_loss
from hashbench.testing import SyntheticHashingDataModule
from tests.methods.unsupervised_fit import assert_label_free, map_after_training


def _codes(n: int, k: int, seed: int) -> torch.Tensor:
    return (torch.rand(n, k, generator=torch.Generator().manual_seed(seed)) < 0.5).double()


def test_hamming_adjacency_matches_loop() -> None:
    b = _codes(5, 7, 0)
    adj = hamming_adjacency(b, power=1.4)
    for i in range(5):
        for j in range(5):
            d = sum(int(b[i, m]) != int(b[j, m]) for m in range(7))
            assert math.isclose(float(adj[i, j]), (1 - d / 7) ** 1.4, rel_tol=1e-12, abs_tol=1e-15)
    assert torch.equal(torch.diagonal(adj), torch.ones(5, dtype=adj.dtype))  # self-connected


def test_graph_layer_matches_loop() -> None:
    torch.manual_seed(0)
    layer = TwinBottleneck(cont_dim=3).double()
    b, z = _codes(4, 6, 1), torch.rand(4, 3, dtype=torch.float64)
    out = layer(b, z)
    a = hamming_adjacency(b)
    fz = layer.fc(z)
    deg = [float(a[i].sum()) for i in range(4)]
    for i in range(4):
        for c in range(3):
            conv = sum(float(a[i, j]) / math.sqrt(deg[i] * deg[j]) * float(fz[j, c]) for j in range(4))
            assert math.isclose(float(out[i, c]), 1 / (1 + math.exp(-conv)), rel_tol=1e-6)


def test_loss_matches_explicit_formulas() -> None:
    g = torch.Generator().manual_seed(2)
    recon, target = torch.randn(3, 5, generator=g), torch.randn(3, 5, generator=g)
    logits = [torch.randn(3, 1, generator=g) for _ in range(6)]
    terms = tbh_loss(recon, target, *logits)

    def bce(x: float, y: float) -> float:
        p = 1 / (1 + math.exp(-x))
        return -(y * math.log(p) + (1 - y) * math.log(1 - p))

    def adv(real: torch.Tensor, fake: torch.Tensor) -> float:
        return sum(bce(float(r), 1) for r in real) / 3 + sum(bce(float(f), 0) for f in fake) / 3

    a_fb, a_fc, r_b, f_b, r_c, f_c = logits
    rec = 0.5 * sum((float(x) - float(y)) ** 2 for x, y in zip(recon.flatten(), target.flatten(), strict=True))
    actor = rec - adv(r_b, a_fb) - adv(r_c, a_fc)
    critic = adv(r_b, f_b) + adv(r_c, f_c)
    assert float(terms["reconstruction"]) == pytest.approx(rec, rel=1e-5)
    assert float(terms["actor"]) == pytest.approx(actor, rel=1e-5)
    assert float(terms["critic"]) == pytest.approx(critic, rel=1e-5)
    assert float(terms["loss"]) == pytest.approx(actor + critic, rel=1e-5)


def _model() -> TBH:
    torch.manual_seed(0)
    model = TBH(n_bits=8, cont_dim=16, middle_dim=32, feature_source="pixels")
    model.configure_data(num_classes=4, num_train=32, image_shape=(1, 28, 28))
    return model


def _batch():
    return next(iter(SyntheticHashingDataModule(num_classes=4, num_train=32, batch_size=8).train_dataloader()))


def test_one_backward_gives_each_player_its_own_gradient() -> None:
    model, batch = _model(), _batch()
    critics = [*model.critic_binary.parameters(), *model.critic_cont.parameters()]
    actors = [p for p in model.parameters() if all(p is not c for c in critics)]
    torch.manual_seed(5)
    terms = model.compute_loss(batch)
    actor_grads = torch.autograd.grad(terms["actor"], actors, retain_graph=True, allow_unused=True)
    critic_grads = torch.autograd.grad(terms["critic"], critics, retain_graph=True)
    assert all(g is None for g in torch.autograd.grad(terms["actor"], critics, retain_graph=True, allow_unused=True))
    assert all(
        g is None or g.abs().sum() == 0
        for g in torch.autograd.grad(terms["critic"], actors, retain_graph=True, allow_unused=True)
    )
    terms["loss"].backward()
    for p, g in zip(actors, actor_grads, strict=True):
        torch.testing.assert_close(p.grad if p.grad is not None else torch.zeros_like(p), g if g is not None else 0 * p)
    for p, g in zip(critics, critic_grads, strict=True):
        torch.testing.assert_close(p.grad, g)


def test_binary_neuron_forward_and_gradient() -> None:
    model = _model()
    h = torch.randn(4, 8, dtype=torch.float64, requires_grad=True)
    codes = model._binary_codes(h)
    assert torch.equal(codes.detach(), (h.detach() >= 0).double())
    (grad,) = torch.autograd.grad(codes.sum(), h)
    s = torch.sigmoid(h.detach())
    torch.testing.assert_close(grad, s * (1 - s))  # the official distributional derivative


def test_reconstruction_target_is_the_pixels_offline() -> None:
    model = _model()
    assert model.decoder[-1].out_features == 28 * 28


def test_bad_feature_source() -> None:
    with pytest.raises(ValueError, match="feature_source"):
        TBH(feature_source="simclr")


def _small() -> TBH:
    return TBH(n_bits=8, cont_dim=32, middle_dim=64, feature_source="pixels")


def test_training_is_label_free(tmp_path) -> None:
    assert_label_free(_small, tmp_path)


def test_short_training_beats_chance(tmp_path) -> None:
    # 4 balanced synthetic classes: the untrained network's codes give mAP 0.29 here.
    assert map_after_training(_small, tmp_path, epochs=6) > 0.5
