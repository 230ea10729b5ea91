"""DHN: the loss against an explicit per-pair loop, the stable log cosh, gradients."""

from __future__ import annotations

import math

import torch

from hashbench.methods.dhn import dhn_loss, log_cosh


def _loop_dhn(u, labels, alpha):
    b, k = u.shape
    total, count = 0.0, 0
    for i in range(b):
        for j in range(b):
            if i == j:
                continue
            s = 1.0 if float(labels[i] @ labels[j]) > 0 else 0.0
            theta = 0.5 * float(u[i] @ u[j])
            total += math.log1p(math.exp(theta)) - s * theta
            count += 1
    quant = sum(math.log(math.cosh(abs(float(u[i, t])) - 1.0)) for i in range(b) for t in range(k)) / (b * k)
    return total / count, alpha * quant


def test_dhn_loss_matches_per_pair_loop() -> None:
    g = torch.Generator().manual_seed(0)
    u = torch.tanh(2 * torch.randn(6, 5, generator=g, dtype=torch.float64))
    labels = (torch.rand(6, 3, generator=g) < 0.4).double()
    terms = dhn_loss(u, labels, alpha=0.1)
    likelihood, quant = _loop_dhn(u, labels, 0.1)
    assert math.isclose(float(terms["likelihood"]), likelihood, rel_tol=1e-10)
    assert math.isclose(float(terms["quantization"]), quant, rel_tol=1e-10)


def test_log_cosh_is_exact_and_stable() -> None:
    x = torch.tensor([-3.0, -0.5, 0.0, 0.2, 7.0], dtype=torch.float64)
    assert torch.allclose(log_cosh(x), torch.log(torch.cosh(x)))
    big = log_cosh(torch.tensor([1000.0, -1000.0]))
    assert torch.isfinite(big).all() and torch.allclose(big, torch.tensor([1000 - math.log(2)] * 2))


def test_dhn_loss_gradcheck() -> None:
    g = torch.Generator().manual_seed(1)
    u = torch.tanh(torch.randn(4, 3, generator=g, dtype=torch.float64)).requires_grad_()
    labels = torch.tensor([[1, 0], [1, 0], [0, 1], [1, 1]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: dhn_loss(x, labels)["loss"], (u,))
