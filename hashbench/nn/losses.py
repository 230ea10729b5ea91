"""Loss pieces shared by several methods."""

from __future__ import annotations

import threading

import torch
from torch import Tensor

__all__ = [
    "contrastive_pair_loss",
    "label_similarity",
    "log1p_exp",
    "pairwise_logistic_nll",
    "sign_with_zero_positive",
]


def label_similarity(labels_a: Tensor, labels_b: Tensor | None = None) -> Tensor:
    """S_ij = 1 if items i and j share at least one label, else 0 (multi-hot inputs), as float."""
    labels_b = labels_a if labels_b is None else labels_b
    return (labels_a.float() @ labels_b.float().T > 0).float()


class _Log1pExp(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        ctx.save_for_backward(x)
        # relu(x) + log(1 + e^{-|x|}): no overflow, and four cheap vectorised passes (F.softplus and log1p run
        # several times slower on CPU).
        return x.abs().neg_().exp_().add_(1.0).log_().add_(x.clamp_min(0.0))

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (x,) = ctx.saved_tensors
        return torch.sigmoid(x).mul_(grad)


def log1p_exp(x: Tensor) -> Tensor:
    """Numerically stable log(1 + e^x) (softplus) with gradient σ(x): never overflows for large x.

    Accurate to float rounding in absolute terms (about 1e-7 in float32); for x below about -17 (float32) the
    tiny true value rounds to 0, which no loss sum notices. Unlike ``F.softplus`` there is no linear cut-off above
    x = 20: the gradient is σ(x) everywhere.
    """
    return _Log1pExp.apply(x)


def sign_with_zero_positive(x: Tensor) -> Tensor:
    """sign(x) in {-1, +1} with sign(0) = +1, the rule hashbench uses everywhere a code is binarised."""
    return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))


def _at_most_one_label(labels: Tensor) -> bool:
    """True when every row is 0/1 with at most one 1 (single-label data, or rows not filled in yet)."""
    return bool(((labels == 0) | (labels == 1)).all()) and bool((labels.sum(1) <= 1).all())


_SCRATCH = threading.local()


def _scratch(rows: int, cols: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    """A reusable [rows, cols] buffer for one thread's forward temporaries (never returned, never saved).

    A fresh multi-megabyte tensor per step costs more in page faults than the arithmetic done in it (glibc hands
    large blocks back to the OS on free), so the scratch matrix is kept per thread for the last shape used.
    """
    key = (rows, cols, dtype, device)
    if getattr(_SCRATCH, "key", None) != key:
        _SCRATCH.key, _SCRATCH.buffer = key, torch.empty(rows, cols, dtype=dtype, device=device)
    return _SCRATCH.buffer


class _PairwiseLogisticNLL(torch.autograd.Function):
    """Forward and backward of :func:`pairwise_logistic_nll`, written out to avoid materialising S and S∘Θ."""

    @staticmethod
    def forward(ctx, u: Tensor, v: Tensor, labels_u: Tensor, labels_v: Tensor, scale: float, single: bool) -> Tensor:
        if single:
            # S = Lu Lvᵀ exactly, so S v and Sᵀ u are two thin products through the [C, K] class sums.
            lu, lv = labels_u.to(u.dtype), labels_v.to(u.dtype)
            s_v = lu @ (lv.T @ v)
            s_u = lv @ (lu.T @ u) if ctx.needs_input_grad[1] else None
        else:
            s = label_similarity(labels_u, labels_v).to(u.dtype)
            s_v = s @ v
            s_u = s.T @ u if ctx.needs_input_grad[1] else None
        similar_sum = scale * (u * s_v).sum()  # Σ_ij S_ij Θ_ij
        # Σ log(1 + e^Θ) = Σ relu(Θ) + Σ log(1 + e^{-|Θ|}), relu(Θ) = (Θ + |Θ|) / 2 and ΣΘ = scale (Σu)·(Σv).
        # log(1 + e) with e <= 1 is accurate to float rounding in absolute terms (log1p is several times slower
        # on CPU and only improves the relative accuracy of terms below 1e-7). Θ lives in a reused scratch buffer;
        # σ(Θ), saved for the backward, is the only fresh [B, N] tensor.
        theta = torch.mm(scale * u, v.T, out=_scratch(u.shape[0], v.shape[0], u.dtype, u.device))
        sigma = torch.sigmoid(theta)
        theta_sum = scale * (u.sum(0) @ v.sum(0))
        magnitude = theta.abs_()
        relu_sum = 0.5 * (theta_sum + magnitude.sum())
        softplus_sum = relu_sum + magnitude.neg_().exp_().add_(1.0).log_().sum()
        ctx.save_for_backward(u, v, sigma, s_v, s_u if s_u is not None else s_v)
        ctx.scale = scale
        return softplus_sum - similar_sum

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, ...]:
        u, v, sigma, s_v, s_u = ctx.saved_tensors
        g = grad * ctx.scale
        grad_u = g * (sigma @ v - s_v) if ctx.needs_input_grad[0] else None
        grad_v = g * (sigma.T @ u - s_u) if ctx.needs_input_grad[1] else None
        return grad_u, grad_v, None, None, None, None


def pairwise_logistic_nll(
    u: Tensor, v: Tensor, labels_u: Tensor, labels_v: Tensor, scale: float = 0.5, single_label: bool | None = None
) -> Tensor:
    """Σ_ij [log(1 + e^{Θ_ij}) − S_ij Θ_ij] with Θ = scale · u vᵀ and S_ij = [labels share a label].

    The pairwise negative log-likelihood of DPSH / DHN / DCMH, summed over all pairs of rows of ``u`` [B, K]
    and ``v`` [N, K]. Equal to ``(log1p_exp(Θ) - S * Θ).sum()`` (tested), but with a hand-written backward
    (∂/∂u = scale · (σ(Θ) − S) v) that never builds S or S∘Θ, and, for single-label data, gets S v from per-class
    sums. With a memory bank of N items this is most of the loss's cost, so it matters for step time.

    Args:
        u: [B, K] relaxed codes (gradients flow to it).
        v: [N, K] codes of the other side (a constant memory bank, or a tensor that also needs gradients).
        labels_u: [B, C] multi-hot labels of ``u``'s rows.
        labels_v: [N, C] multi-hot labels of ``v``'s rows (all-zero rows: similar to nothing).
        scale: Θ = scale · u vᵀ (½ in DPSH / DCMH).
        single_label: whether every label row is 0/1 with at most one 1 (then S = Lu Lvᵀ); ``None`` checks.
            Callers that know it (the datamodule says ``multi_label=False``) save the check's passes.
    """
    if single_label is None:
        single_label = _at_most_one_label(labels_u) and _at_most_one_label(labels_v)
    return _PairwiseLogisticNLL.apply(u, v, labels_u, labels_v, scale, single_label)


def contrastive_pair_loss(u: Tensor, labels: Tensor, margin: float) -> Tensor:
    """Σ_{i<j} [S_ij d_ij + (1 − S_ij) max(m − d_ij, 0)] / (B(B − 1)) with d_ij = ||u_i − u_j||² (DSH's form).

    Squared distances come from the Gram matrix (one [B, K] × [K, B] product instead of a [B, B, K] difference
    tensor), with round-off negatives clamped to 0; the diagonal never enters.
    """
    b = u.shape[0]
    s = label_similarity(labels).to(u.dtype)
    sq = u.pow(2).sum(1)
    dist = (sq[:, None] + sq[None, :] - 2.0 * u @ u.T).clamp_min(0.0)
    pair = s * dist + (1.0 - s) * (margin - dist).clamp_min(0.0)
    upper = torch.triu(torch.ones(b, b, dtype=torch.bool, device=u.device), diagonal=1)
    return pair[upper].sum() / max(b * (b - 1), 1)
