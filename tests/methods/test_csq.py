"""CSQ: hash centres (Hadamard and Bernoulli fallback), multi-label centres, the loss against a per-bit loop."""

from __future__ import annotations

import math

import torch

from hashbench.methods.csq import CSQ, csq_hash_centers, csq_loss, csq_targets


def _hamming(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a.shape[-1] - a @ b.T) / 2


def test_hadamard_centres_for_power_of_two_bits() -> None:
    c = csq_hash_centers(10, 16)
    assert c.shape == (10, 16) and set(c.unique().tolist()) == {-1.0, 1.0}
    d = _hamming(c, c)
    off = ~torch.eye(10, dtype=torch.bool)
    # rows of [H; -H]: distance K/2 between different rows, K between a row and its negation
    assert set(d[off].unique().tolist()) <= {8.0, 16.0}
    assert torch.equal(c[:8], torch.from_numpy(__import__("scipy.linalg").linalg.hadamard(16)[:8]).float())


def test_bernoulli_fallback_is_seeded_and_far_apart() -> None:
    for k, n_classes in ((48, 10), (12, 10), (24, 40)):  # not a power of two / more classes than 2K
        c = csq_hash_centers(n_classes, k, seed=3)
        assert torch.equal(c, csq_hash_centers(n_classes, k, seed=3))
        d = _hamming(c, c)[torch.triu_indices(n_classes, n_classes, 1).unbind()]
        assert d.min() >= k / 4 and d.mean() >= k / 2
    # 40 centres of 16 bits at distance >= 4 are rarely drawn: the best draw is kept (still distinct centres)
    c = csq_hash_centers(40, 16, seed=3)
    assert _hamming(c, c)[torch.triu_indices(40, 40, 1).unbind()].min() >= 1
    assert not torch.equal(csq_hash_centers(10, 48, seed=0), csq_hash_centers(10, 48, seed=1))


def test_multilabel_centre_is_sign_of_sum_with_tie_break() -> None:
    centers = torch.tensor([[1.0, 1.0, -1.0, 1.0], [1.0, -1.0, -1.0, -1.0], [-1.0, -1.0, 1.0, 1.0]])
    tie = torch.tensor([-1.0, 1.0, 1.0, -1.0])
    labels = torch.tensor([[1.0, 0, 0], [1, 1, 0], [1, 1, 1]])
    t = csq_targets(labels, centers, tie)
    assert torch.equal(t[0], centers[0])
    assert torch.equal(t[1], torch.tensor([1.0, 1.0, -1.0, -1.0]))  # sums 2, 0, -2, 0 -> ties at bits 1 and 3
    assert torch.equal(t[2], torch.tensor([1.0, -1.0, -1.0, 1.0]))  # sums 1, -1, -1, 1


def test_csq_loss_matches_per_bit_loop() -> None:
    g = torch.Generator().manual_seed(0)
    z = 1.5 * torch.randn(4, 6, generator=g, dtype=torch.float64)
    targets = torch.where(torch.rand(4, 6, generator=g) < 0.5, -1.0, 1.0).double()
    terms = csq_loss(z, targets, lam=0.3)
    bce, quant = 0.0, 0.0
    for i in range(4):
        for k in range(6):
            u = math.tanh(float(z[i, k]))
            p, t = (u + 1) / 2, (float(targets[i, k]) + 1) / 2
            bce -= t * math.log(p) + (1 - t) * math.log(1 - p)
            quant += (abs(u) - 1) ** 2
    assert math.isclose(float(terms["central"]), bce / 24, rel_tol=1e-9)
    assert math.isclose(float(terms["quantization"]), 0.3 * quant / 24, rel_tol=1e-9)


def test_csq_loss_finite_for_saturated_outputs_and_gradcheck() -> None:
    z = torch.tensor([[40.0, -40.0]], dtype=torch.float64)
    assert torch.isfinite(csq_loss(z, torch.tensor([[-1.0, 1.0]], dtype=torch.float64))["loss"])
    zz = torch.randn(3, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(1)).requires_grad_()
    t = torch.tensor([[1.0, -1, 1, -1], [1, 1, 1, 1], [-1, -1, 1, 1]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: csq_loss(x, t, lam=0.5)["loss"], (zz,))


def test_csq_module_builds_centres_from_the_data() -> None:
    model = CSQ(n_bits=16)
    model.configure_data(num_classes=10, num_train=8, image_shape=(1, 28, 28))
    assert torch.equal(model.hash_centers, csq_hash_centers(10, 16))
    assert "hash_centers" in model.state_dict() and model.tie_break.shape == (16,)
