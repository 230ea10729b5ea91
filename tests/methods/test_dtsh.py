"""DTSH: the loss against an explicit per-triplet loop, gradients, batches without triplets."""

from __future__ import annotations

import math

import pytest
import torch

from hashbench.methods.dtsh import dtsh_loss


def _loop_dtsh(u, labels, alpha, lam):
    b, k = u.shape
    total, count = 0.0, 0
    for i in range(b):
        for j in range(b):
            for m in range(b):
                pos = j != i and float(labels[i] @ labels[j]) > 0
                neg = float(labels[i] @ labels[m]) == 0
                if pos and neg:
                    d = 0.5 * float(u[i] @ u[j]) - 0.5 * float(u[i] @ u[m]) - alpha
                    total += -math.log(1 / (1 + math.exp(-d)))
                    count += 1
    quant = sum((float(u[i, t]) - (1.0 if u[i, t] >= 0 else -1.0)) ** 2 for i in range(b) for t in range(k))
    return (total / count if count else 0.0), lam * quant / (b * k)


@pytest.mark.parametrize("classes", [3, 12])  # few classes: negatives compacted; many: every column kept
def test_dtsh_loss_matches_per_triplet_loop(classes: int) -> None:
    g = torch.Generator().manual_seed(0)
    for multi in (False, True):
        u = torch.tanh(2 * torch.randn(7, 6, generator=g, dtype=torch.float64))
        if multi:
            labels = (torch.rand(7, classes, generator=g) < 1.2 / classes).double()
        else:
            labels = torch.nn.functional.one_hot(torch.randint(0, classes, (7,), generator=g), classes).double()
        terms = dtsh_loss(u, labels, alpha=1.5, lam=0.7)
        triplet, quant = _loop_dtsh(u, labels, 1.5, 0.7)
        assert math.isclose(float(terms["triplet"]), triplet, rel_tol=1e-10)
        assert math.isclose(float(terms["quantization"]), quant, rel_tol=1e-10)


def test_dtsh_without_valid_triplets_has_zero_triplet_term() -> None:
    u = torch.randn(4, 3, requires_grad=True)
    terms = dtsh_loss(u, torch.ones(4, 1))  # everything similar: no negatives
    assert float(terms["triplet"].detach()) == 0.0
    terms["loss"].backward()  # still differentiable (quantisation term)
    assert u.grad is not None


def test_dtsh_loss_gradcheck() -> None:
    g = torch.Generator().manual_seed(1)
    u = torch.tanh(torch.randn(5, 3, generator=g, dtype=torch.float64)).requires_grad_()
    labels = torch.tensor([[1, 0], [1, 0], [0, 1], [0, 1], [1, 1]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: dtsh_loss(x, labels, alpha=0.5, lam=0.0)["loss"], (u,))
