"""Shared loss pieces: the fused pairwise likelihood against the plain autograd formula."""

from __future__ import annotations

import pytest
import torch

from hashbench.nn.losses import difference_softplus_sum, label_similarity, log1p_exp, pairwise_logistic_nll


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


@pytest.mark.parametrize("single", [True, False])
def test_pairwise_logistic_nll_v_index_adds_the_rows_role_of_u(single: bool) -> None:
    """With v[v_index] = u (detached), the gradient is that of the plain loss with those rows *being* u."""
    g = torch.Generator().manual_seed(2)
    u = torch.randn(5, 4, generator=g, dtype=torch.float64).requires_grad_()
    v = torch.randn(12, 4, generator=g, dtype=torch.float64)
    lu = torch.nn.functional.one_hot(torch.randint(0, 3, (5,), generator=g), 3).double()
    lv = torch.nn.functional.one_hot(torch.randint(0, 3, (12,), generator=g), 3).double()
    index = torch.tensor([7, 0, 11, 3, 5])
    v[index], lv[index] = u.detach(), lu
    got = pairwise_logistic_nll(u, v, lu, lv, 0.5, single, v_index=index)
    (g_got,) = torch.autograd.grad(got, (u,))
    v_with_u = v.index_put((index,), u)
    want = _plain(u, v_with_u, lu, lv, 0.5)
    (g_want,) = torch.autograd.grad(want, (u,))
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(g_got, g_want, rtol=1e-12, atol=1e-12)


def test_pairwise_logistic_nll_calls_before_one_backward_do_not_share_state() -> None:
    """Two losses built before a single backward (as DCMH does per modality) keep their own gradients, even though
    both forwards reuse the same scratch buffers."""
    g = torch.Generator().manual_seed(3)
    u1 = torch.randn(6, 4, generator=g).requires_grad_()
    u2 = torch.randn(6, 4, generator=g).requires_grad_()
    v = torch.randn(9, 4, generator=g)
    lu = torch.nn.functional.one_hot(torch.randint(0, 3, (6,), generator=g), 3).float()
    lv = torch.nn.functional.one_hot(torch.randint(0, 3, (9,), generator=g), 3).float()
    total = pairwise_logistic_nll(u1, v, lu, lv) + 2.0 * pairwise_logistic_nll(u2, v, lu, lv)
    g1, g2 = torch.autograd.grad(total, (u1, u2))
    (w1,) = torch.autograd.grad(_plain(u1, v, lu, lv, 0.5), (u1,))
    (w2,) = torch.autograd.grad(2.0 * _plain(u2, v, lu, lv, 0.5), (u2,))
    torch.testing.assert_close(g1, w1, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(g2, w2, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_difference_softplus_sum_matches_the_broadcast_formula(dtype: torch.dtype) -> None:
    g = torch.Generator().manual_seed(4)
    a = (8 * torch.randn(6, 9, generator=g)).to(dtype)
    b = (8 * torch.randn(6, 5, generator=g)).to(dtype)
    a[0, 3], a[2, 0], b[1, 4], b[5, 0] = -1e4, -1e4, 1e4, 1e4  # padding sentinels: contribute exactly 0
    a.requires_grad_(), b.requires_grad_()
    got = difference_softplus_sum(a, b)
    x = a[:, None, :] - b[:, :, None]
    want = torch.logaddexp(torch.zeros_like(x), x).sum()
    tol = dict(rtol=1e-6, atol=1e-4) if dtype == torch.float32 else dict(rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(got, want, **tol)
    g_got = torch.autograd.grad(got, (a, b))
    g_want = torch.autograd.grad(want, (a, b))
    for x_got, x_want in zip(g_got, g_want, strict=True):
        torch.testing.assert_close(x_got, x_want, **tol)
    assert g_got[0][0, 3] == 0 and g_got[1][1, 4] == 0  # sentinels get no gradient


def test_difference_softplus_sum_gradcheck() -> None:
    g = torch.Generator().manual_seed(5)
    a = torch.randn(3, 4, generator=g, dtype=torch.float64).requires_grad_()
    b = torch.randn(3, 2, generator=g, dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(difference_softplus_sum, (a, b))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_fused_losses_compute_half_precision_inputs_in_float32(dtype: torch.dtype) -> None:
    """Under AMP the codes arrive in half precision; the fused losses upcast (a product of 64 factors of up to 2
    would overflow float16), return a float32 value and hand back gradients in the inputs' dtype."""
    g = torch.Generator().manual_seed(6)
    u = torch.randn(8, 16, generator=g).tanh().to(dtype).requires_grad_()
    v = (4 * torch.randn(300, 16, generator=g)).tanh().to(dtype)
    lu = torch.nn.functional.one_hot(torch.randint(0, 3, (8,), generator=g), 3).float()
    lv = torch.nn.functional.one_hot(torch.randint(0, 3, (300,), generator=g), 3).float()
    got = pairwise_logistic_nll(u, v, lu, lv)
    (g_got,) = torch.autograd.grad(got, (u,))
    u32 = u.detach().float().requires_grad_()
    want = _plain(u32, v.float(), lu, lv, 0.5)
    (g_want,) = torch.autograd.grad(want, (u32,))
    assert got.dtype == torch.float32 and g_got.dtype == dtype
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(g_got.float(), g_want, rtol=1e-2, atol=1e-2)

    a = (8 * torch.randn(4, 70, generator=g)).to(dtype).requires_grad_()
    b = (8 * torch.randn(4, 3, generator=g)).to(dtype)
    got = difference_softplus_sum(a, b)
    (g_got,) = torch.autograd.grad(got, (a,))
    x = a.detach().float()[:, None, :] - b.float()[:, :, None]
    assert got.dtype == torch.float32 and g_got.dtype == dtype and torch.isfinite(got)
    torch.testing.assert_close(got, torch.logaddexp(torch.zeros_like(x), x).sum(), rtol=1e-5, atol=1e-3)
