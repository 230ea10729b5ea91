"""GreedyHash (unsupervised): loss vs an explicit loop, straight-through gradient, cubic penalty gradient."""

from __future__ import annotations

import pytest
import torch

from hashbench.methods.greedyhash_unsup import GreedyHashUnsup, greedyhash_unsup_loss


def test_loss_matches_explicit_loop() -> None:
    g = torch.Generator().manual_seed(0)
    h = torch.randn(5, 6, generator=g)
    c = torch.rand(5, 5, generator=g) * 2 - 1
    terms = greedyhash_unsup_loss(h, c, alpha=0.2)
    b = [[1.0 if float(x) >= 0 else -1.0 for x in row] for row in h]
    total = 0.0
    for i in range(5):
        for j in range(5):
            if i != j:
                cos_b = sum(b[i][m] * b[j][m] for m in range(6)) / 6
                total += (cos_b - float(c[i, j])) ** 2
    penalty = sum(abs(abs(float(x)) - 1) ** 3 for x in h.flatten()) / h.numel()
    assert float(terms["similarity"]) == pytest.approx(total / 20, rel=1e-5)
    assert float(terms["penalty"]) == pytest.approx(0.2 * penalty, rel=1e-5)


def test_straight_through_gradient_equals_gradient_at_the_codes() -> None:
    g = torch.Generator().manual_seed(1)
    h = torch.randn(4, 8, generator=g, dtype=torch.float64).requires_grad_()
    c = torch.rand(4, 4, generator=g, dtype=torch.float64)
    greedyhash_unsup_loss(h, c, alpha=0.0)["similarity"].backward()
    # The same similarity term as a function of continuous b, evaluated at b = sign(h).
    b = torch.sign(h.detach()).requires_grad_()
    off = ~torch.eye(4, dtype=torch.bool)
    ((b @ b.T / 8 - c)[off].pow(2).sum() / 12).backward()
    torch.testing.assert_close(h.grad, b.grad)


def test_penalty_gradcheck() -> None:
    g = torch.Generator().manual_seed(2)
    h = (torch.rand(3, 4, generator=g, dtype=torch.float64) * 2 + 0.1).requires_grad_()  # away from the |h| kink
    c = torch.zeros(3, 3, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: greedyhash_unsup_loss(x, c, alpha=0.1)["penalty"], (h,))


def test_codes_are_sign_of_raw_outputs() -> None:
    model = GreedyHashUnsup(n_bits=8)
    assert model.activation == "identity" and model.supervision == "unsupervised"
