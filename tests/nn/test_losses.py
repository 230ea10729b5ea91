"""Shared loss pieces: the fused pairwise likelihood against the plain autograd formula."""

from __future__ import annotations

import pytest
import torch

from hashbench.nn.losses import label_similarity, log1p_exp, pairwise_logistic_nll


def _plain(u: torch.Tensor, v: torch.Tensor, lu: torch.Tensor, lv: torch.Tensor, scale: float) -> torch.Tensor:
    # logaddexp(0, Θ) = log(1 + e^Θ) without softplus's linear cut-off above 20 (its gradient there is exactly 1,
    # off by e^-20 from σ(Θ)), so the reference is exact to float64 rounding.
    theta = scale * u @ v.T
    s = label_similarity(lu, lv)
    return (torch.logaddexp(torch.zeros_like(theta), theta) - s * theta).sum()


@pytest.mark.parametrize("kind", ["single", "single-with-empty-rows", "multi"])
@pytest.mark.parametrize("v_grad", [False, True])
def test_pairwise_logistic_nll_value_and_gradients(kind: str, v_grad: bool) -> None:
    g = torch.Generator().manual_seed(0)
    u = (3 * torch.randn(7, 5, generator=g, dtype=torch.float64)).requires_grad_()
    v = (3 * torch.randn(11, 5, generator=g, dtype=torch.float64)).requires_grad_(v_grad)
    if kind == "multi":
        lu = (torch.rand(7, 4, generator=g) < 0.4).double()
        lv = (torch.rand(11, 4, generator=g) < 0.4).double()
        lv[0] = torch.tensor([1.0, 1.0, 0.0, 1.0])  # several labels: the class-sum shortcut would be wrong
    else:
        lu = torch.nn.functional.one_hot(torch.randint(0, 3, (7,), generator=g), 4).double()
        lv = torch.nn.functional.one_hot(torch.randint(0, 4, (11,), generator=g), 4).double()
        if kind == "single-with-empty-rows":
            lv[[2, 5]] = 0  # memory-bank rows not filled in yet: similar to nothing
    got = pairwise_logistic_nll(u, v, lu, lv, scale=0.5)
    want = _plain(u, v, lu, lv, 0.5)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    inputs = (u, v) if v_grad else (u,)
    g_got = torch.autograd.grad(got, inputs)
    g_want = torch.autograd.grad(want, inputs)
    for a, b in zip(g_got, g_want, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_pairwise_logistic_nll_same_tensor_on_both_sides() -> None:
    """u against itself (in-batch pairs): both roles' gradients are summed, as with the plain formula."""
    g = torch.Generator().manual_seed(1)
    u = torch.randn(6, 4, generator=g, dtype=torch.float64).requires_grad_()
    labels = torch.nn.functional.one_hot(torch.randint(0, 3, (6,), generator=g), 3).double()
    (g_got,) = torch.autograd.grad(pairwise_logistic_nll(u, u, labels, labels), (u,))
    (g_want,) = torch.autograd.grad(_plain(u, u, labels, labels, 0.5), (u,))
    torch.testing.assert_close(g_got, g_want, rtol=1e-12, atol=1e-12)


def test_pairwise_logistic_nll_is_stable_for_huge_inner_products() -> None:
    u = torch.full((2, 64), 30.0, requires_grad=True)  # Θ = 28,800: e^Θ overflows a naive log(1 + e^Θ)
    labels = torch.eye(2)
    loss = pairwise_logistic_nll(u, u.detach(), labels, labels)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(u.grad).all()
    # Similar pairs cost ~0, dissimilar pairs cost ~Θ (float32 rounding of 28,800 is about 0.002).
    assert loss.item() == pytest.approx(2 * 0.5 * 64 * 900, rel=1e-6)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_log1p_exp_value_and_gradient(dtype: torch.dtype) -> None:
    x = torch.tensor([-1e4, -50.0, -17.0, -3.0, -1e-3, 0.0, 1e-3, 2.5, 19.0, 21.0, 80.0, 1e4], dtype=dtype)
    x.requires_grad_()
    got = log1p_exp(x)
    want = torch.logaddexp(torch.zeros_like(x), x)
    torch.testing.assert_close(got, want, rtol=0, atol=2e-7 if dtype == torch.float32 else 1e-15)
    (grad,) = torch.autograd.grad(got.sum(), (x,))
    torch.testing.assert_close(grad, torch.sigmoid(x.detach()), rtol=0, atol=0)
    assert torch.isfinite(got).all()
