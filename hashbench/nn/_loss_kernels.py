"""Hand-written CPU kernels behind :mod:`hashbench.nn.losses`.

:mod:`hashbench.nn.losses` holds the formulas (each public loss documents what it computes); this module holds how
the costly ones are computed: ``torch.autograd.Function`` classes whose gradients are formed during the forward,
reused per-thread scratch buffers, and a float64 log-sum that takes one log per 64 entries. Each kernel's value and
gradient equal the plain autograd formula of its public function (tests/nn/test_losses.py checks them against it).

Not an API: import the public functions from :mod:`hashbench.nn.losses`.
"""

from __future__ import annotations

import math
import threading

import torch
from torch import Tensor

__all__ = ["DifferenceSoftplusSum", "Log1pExp", "PairwiseLogisticNLL", "at_most_one_label"]

# log(1 + e^{-t}) rounds to exactly 0 in float32 and float64 once t > 80, so clamping t there changes no result.
# It keeps e^{-t} a normal float: torch's vectorised CPU exp takes a slow path for arguments below about -87 (where
# the result is subnormal or 0), measured 50-250x slower per element than in range (DTSH's padding sentinels at
# t = 10^4 once cost it about 1 ms a step that way).
_EXP_CUTOFF = 80.0


class Log1pExp(torch.autograd.Function):
    """Forward and backward of :func:`hashbench.nn.losses.log1p_exp`."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        # relu(x) + log(1 + e^{-|x|}): no overflow, and four cheap vectorised passes (F.softplus and log1p run
        # several times slower on CPU).
        return x.abs().clamp_max_(_EXP_CUTOFF).neg_().exp_().add_(1.0).log_().add_(x.clamp_min(0.0))

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        return torch.sigmoid(x).mul_(grad)


def at_most_one_label(labels: Tensor) -> bool:
    """True when every row is 0/1 with at most one 1 (single-label data, or rows not filled in yet)."""
    return bool(((labels == 0) | (labels == 1)).all()) and bool((labels.sum(1) <= 1).all())


_SCRATCH = threading.local()


def _scratch(slot: int, shape: tuple[int, ...], like: Tensor) -> Tensor:
    """A reusable buffer of ``shape`` (``like``'s dtype and device) for one thread's forward temporaries.

    Never returned and never saved for backward. A fresh megabyte-sized tensor per step costs more in page faults
    than the arithmetic done in it (glibc hands large blocks back to the OS on free, measured: a tanh into fresh
    memory took 5x as long), so each ``slot`` keeps one buffer per thread, reallocated only when it is too small.
    """
    buffers = _SCRATCH.__dict__.setdefault("buffers", {})
    buffer, view = buffers.get(slot, (None, None))
    if view is not None and view.shape == shape and view.dtype == like.dtype and view.device == like.device:
        return view  # the common case: the same shape as the last call
    numel = math.prod(shape)
    if buffer is None or buffer.numel() < numel or buffer.dtype != like.dtype or buffer.device != like.device:
        buffer = torch.empty(numel, dtype=like.dtype, device=like.device)
    view = buffer[:numel].view(shape)
    buffers[slot] = (buffer, view)
    return view


def _sum_log_small(x: Tensor) -> Tensor:
    """Σ log(x) in float64 for a contiguous tensor with entries in [1, 2].

    Logs are taken of products of 64 entries (at most 2^64, exact to a few float roundings), so the log pass runs
    over 1/64 of the data; the per-element error stays at float rounding, about 1e-7 in float32.
    """
    flat = x.view(-1)
    whole = flat.numel() - flat.numel() % 64
    total = flat[:whole].view(-1, 64).prod(1).log_().sum(dtype=torch.float64)
    return total + flat[whole:].log().sum(dtype=torch.float64) if whole < flat.numel() else total


def _sum_log1p_exp_neg_abs(t: Tensor, out: Tensor) -> Tensor:
    """Σ log(1 + e^{-|x|}) (float64) from t = tanh(x / 2), as Σ [log 2 − log(1 + |t|)]; ``out`` is overwritten."""
    return t.numel() * math.log(2.0) - _sum_log_small(torch.abs(t, out=out).add_(1.0))


def _compute_dtype(*tensors: Tensor) -> torch.dtype:
    """float32, or float64 if an input is: the fused losses below never run in half precision (under AMP a product
    of 64 factors of up to 2 overflows float16, and bfloat16 keeps 3 significant digits)."""
    dtype = torch.float32
    for tensor in tensors:
        dtype = torch.promote_types(dtype, tensor.dtype)
    return dtype


def _similarity_times(labels_a: Tensor, labels_b: Tensor, x: Tensor, single: bool) -> Tensor:
    """S x with S = label_similarity(labels_a, labels_b) [A, B] and x [B, K]; via class sums when single-label."""
    if single:
        la, lb = labels_a.to(x.dtype), labels_b.to(x.dtype)
        return la @ (lb.T @ x)  # S = La Lbᵀ exactly for 0/1 rows with at most one 1
    # S is defined once, in the formulas module (which imports this one, hence the import here).
    from hashbench.nn.losses import label_similarity

    return label_similarity(labels_a, labels_b).to(x.dtype) @ x


class PairwiseLogisticNLL(torch.autograd.Function):
    """Forward and backward of :func:`hashbench.nn.losses.pairwise_logistic_nll`.

    The gradients are formed during the forward (σ(Θ) is needed there anyway), so the [B, N] matrices live only in
    two reused scratch buffers and the saved state is the [B, K] / [N, K] gradients; S and S∘Θ are never built.
    """

    @staticmethod
    def forward(
        ctx,
        u: Tensor,
        v: Tensor,
        labels_u: Tensor,
        labels_v: Tensor,
        scale: float,
        single: bool,
        v_index: Tensor | None,
    ) -> Tensor:
        need_u, need_v = ctx.needs_input_grad[:2]
        u_dtype, v_dtype = u.dtype, v.dtype
        with torch.autocast(u.device.type, enabled=False):
            dtype = _compute_dtype(u, v)
            u, v = u.to(dtype), v.to(dtype)
            # Everything comes from T = tanh(Θ/2), one vectorised pass, since σ(Θ) = (1 + T)/2 and
            # log(1 + e^{-|Θ|}) = log 2 − log(1 + |T|). Θ is formed transposed, [N, B]: MKL writes that layout faster
            # for a thin u, and the element-wise passes do not care. Both [N, B] matrices live in reused buffers.
            rows, cols = v.shape[0], u.shape[0]
            half_theta = torch.mm(v, (0.5 * scale * u).T, out=_scratch(0, (rows, cols), u))
            t = torch.tanh(half_theta, out=_scratch(1, (rows, cols), u))
            s_v = _similarity_times(labels_u, labels_v, v, single)
            similar_sum = scale * (u * s_v).sum()  # Σ_ij S_ij Θ_ij
            # Σ log(1 + e^Θ) = Σ relu(Θ) + Σ log(1 + e^{-|Θ|}), relu(Θ) = (Θ + |Θ|) / 2 and ΣΘ = scale (Σu)·(Σv).
            u_sum, v_sum = u.sum(0), v.sum(0)
            theta_sum = scale * (u_sum @ v_sum)
            relu_sum = 0.5 * theta_sum + half_theta.abs_().sum()
            softplus_sum = relu_sum + _sum_log1p_exp_neg_abs(t, out=half_theta).to(u.dtype)
            # ∂/∂u = scale (σ(Θ) − S) v and ∂/∂v = scale (σ(Θ) − S)ᵀ u, with σ(Θ) = (1 + Tᵀ) / 2.
            grad_u = (0.5 * (t.T @ v + v_sum) - s_v).mul_(scale) if need_u else None
            if need_u and v_index is not None:
                # Rows v[v_index] hold u's own (detached) values: u_k's role as column v_index[k] of Θ adds
                # scale Σ_i (σ(Θ_ik) − S_ik) u_i, from the [B, B] block recomputed (cheaper than gathering columns).
                block = torch.sigmoid(scale * u @ v[v_index].T)
                column = block.T @ u - _similarity_times(labels_v[v_index], labels_u, u, single)
                grad_u.add_(column, alpha=scale)
            grad_v = (
                (0.5 * (t @ u + u_sum) - _similarity_times(labels_v, labels_u, u, single)).mul_(scale)
                if need_v
                else None
            )
        ctx.save_for_backward(
            grad_u.to(u_dtype) if grad_u is not None else None, grad_v.to(v_dtype) if grad_v is not None else None
        )
        return softplus_sum - similar_sum

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
        grad_u, grad_v = ctx.saved_tensors
        return (
            grad * grad_u if grad_u is not None else None,
            grad * grad_v if grad_v is not None else None,
            None,
            None,
            None,
            None,
            None,
        )


class DifferenceSoftplusSum(torch.autograd.Function):
    """Forward and backward of :func:`hashbench.nn.losses.difference_softplus_sum`; gradients formed in the forward."""

    @staticmethod
    def forward(ctx, a: Tensor, b: Tensor) -> Tensor:
        # x/2 = (a_ik − b_ij)/2 over [R, J, I]; σ(x) = (1 + T)/2 and log(1 + e^{-|x|}) = log 2 − log(1 + |T|)
        # with T = tanh(x/2): one vectorised transcendental pass, and no exp to take a slow path on the sentinels.
        a_dtype, b_dtype = a.dtype, b.dtype
        with torch.autocast(a.device.type, enabled=False):
            dtype = _compute_dtype(a, b)
            a, b = a.to(dtype), b.to(dtype)
            shape = (a.shape[0], b.shape[1], a.shape[1])
            half = torch.sub(0.5 * a[:, None, :], 0.5 * b[:, :, None], out=_scratch(0, shape, a))
            t = torch.tanh(half, out=_scratch(1, shape, a))
            relu_sum = 2.0 * half.clamp_min_(0.0).sum()
            total = relu_sum + _sum_log1p_exp_neg_abs(t, out=half).to(dtype)
            # ∂/∂a_ik = Σ_j σ(x_ijk) = (J + Σ_j T_ijk)/2 and ∂/∂b_ij = −Σ_k σ(x_ijk) = −(I + Σ_k T_ijk)/2.
            grad_a = t.sum(1).add_(b.shape[1]).mul_(0.5).to(a_dtype) if ctx.needs_input_grad[0] else None
            grad_b = t.sum(2).add_(a.shape[1]).mul_(-0.5).to(b_dtype) if ctx.needs_input_grad[1] else None
        ctx.save_for_backward(grad_a, grad_b)
        return total

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:
        grad_a, grad_b = ctx.saved_tensors
        return (grad * grad_a if grad_a is not None else None, grad * grad_b if grad_b is not None else None)
