"""CIBHash: NT-Xent on binary codes and the views' KL against loops, straight-through gradient, augmentation."""

from __future__ import annotations

import math

import pytest
import torch

from hashbench.methods.cibhash import CIBHash, cibhash_augment, cibhash_loss
from tests.methods.unsupervised_fit import assert_label_free, map_after_training


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x))


def test_loss_matches_explicit_loop() -> None:
    g = torch.Generator().manual_seed(0)
    n, k, tau, beta = 4, 6, 0.3, 0.01
    h1 = torch.randn(n, k, generator=g, dtype=torch.float64)
    h2 = torch.randn(n, k, generator=g, dtype=torch.float64)
    p = [[_sigmoid(float(v)) for v in row] for row in torch.cat([h1, h2])]
    z = [[1.0 if v >= 0.5 else -1.0 for v in row] for row in p]
    contrastive = 0.0
    for a in range(2 * n):
        pos = (a + n) % (2 * n)

        def s(b: int, a: int = a) -> float:
            return sum(x * y for x, y in zip(z[a], z[b], strict=True)) / k / tau  # cos of ±1 vectors

        denominator = sum(math.exp(s(b)) for b in range(2 * n) if b != a)
        contrastive += -math.log(math.exp(s(pos)) / denominator) / (2 * n)

    def kl(pa: list[float], pb: list[float]) -> float:
        e = 1e-8
        return sum(
            x * (math.log(x + e) - math.log(y + e)) + (1 - x) * (math.log(1 - x + e) - math.log(1 - y + e))
            for x, y in zip(pa, pb, strict=True)
        )

    kl_term = sum(0.5 * (kl(p[i], p[i + n]) + kl(p[i + n], p[i])) for i in range(n)) / n
    terms = cibhash_loss(h1, h2, temperature=tau, beta=beta)
    assert math.isclose(float(terms["contrastive"]), contrastive, rel_tol=1e-9)
    assert math.isclose(float(terms["kl"]), kl_term, rel_tol=1e-9)
    assert math.isclose(float(terms["loss"]), contrastive + beta * kl_term, rel_tol=1e-9)


def test_identical_views_have_zero_kl() -> None:
    h = torch.randn(5, 8)
    assert float(cibhash_loss(h, h.clone())["kl"]) == pytest.approx(0.0, abs=1e-6)


def test_straight_through_gradient_passes_to_sigmoid() -> None:
    # b = sign(sigma(h) - 0.5) forward; dL/dh = dL/db * sigma'(h) (the official hash_layer returns grad_output).
    g = torch.Generator().manual_seed(1)
    h1 = torch.randn(4, 6, generator=g, dtype=torch.float64).requires_grad_()
    h2 = torch.randn(4, 6, generator=g, dtype=torch.float64)
    cibhash_loss(h1, h2, beta=0.0)["contrastive"].backward()
    b1 = torch.where(h1.detach() >= 0, 1.0, -1.0).to(torch.float64).requires_grad_()
    b2 = torch.where(h2 >= 0, 1.0, -1.0).to(torch.float64)
    z = torch.nn.functional.normalize(torch.cat([b1, b2]), dim=1)
    sim = (z @ z.T / 0.3).masked_fill(torch.eye(8, dtype=torch.bool), float("-inf"))
    torch.nn.functional.cross_entropy(sim, torch.tensor([4, 5, 6, 7, 0, 1, 2, 3])).backward()
    s = torch.sigmoid(h1.detach())
    torch.testing.assert_close(h1.grad, b1.grad * s * (1 - s))


def test_kl_gradient_treats_the_other_view_as_fixed() -> None:
    h1 = torch.zeros(2, 3, dtype=torch.float64, requires_grad=True)
    h2 = torch.full((2, 3), 2.0, dtype=torch.float64, requires_grad=True)
    terms = cibhash_loss(h1, h2, beta=1.0)
    (g1, g2) = torch.autograd.grad(terms["kl"], (h1, h2))
    # Only KL(p1 || sg p2) depends on h1 through its first argument; KL(p2 || sg p1) gives h1 no gradient. Per bit,
    # dKL(p || q)/dh = (logit p - logit q) * p(1 - p); the batch mean divides by the 2 rows.
    p1, q = torch.sigmoid(h1.detach()), torch.sigmoid(h2.detach())
    expected = 0.5 * (torch.log(p1 / (1 - p1)) - torch.log(q / (1 - q))) * p1 * (1 - p1) / 2  # mean over 2 rows
    torch.testing.assert_close(g1, expected, rtol=1e-6, atol=1e-9)
    assert g2.abs().sum() > 0


def test_augment_keeps_shape_is_seeded_and_random() -> None:
    x = torch.randn(6, 1, 28, 28)
    torch.manual_seed(3)
    a = cibhash_augment(x)
    torch.manual_seed(3)
    b = cibhash_augment(x)
    c = cibhash_augment(x)
    assert a.shape == x.shape and a.dtype == x.dtype and torch.isfinite(a).all()
    assert torch.equal(a, b) and not torch.allclose(a, c) and not torch.allclose(a, x)


def test_augment_grayscale_on_rgb() -> None:
    x = torch.randn(3, 3, 16, 16)
    out = cibhash_augment(x, grayscale_prob=1.0, jitter_prob=0.0, blur_prob=0.0)
    torch.testing.assert_close(out[:, 0], out[:, 1])
    torch.testing.assert_close(out[:, 1], out[:, 2])


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="temperature"):
        CIBHash(temperature=0.0)
    with pytest.raises(ValueError, match="min_scale"):
        CIBHash(min_scale=1.5)


def _model() -> CIBHash:
    return CIBHash(n_bits=8)


def test_training_is_label_free(tmp_path) -> None:
    assert_label_free(_model, tmp_path)


def test_short_training_beats_chance(tmp_path) -> None:
    # 4 balanced synthetic classes: the untrained network's codes give mAP 0.29 here; 6 epochs reach 0.58.
    assert map_after_training(_model, tmp_path, epochs=6) > 0.45
