"""Loss pieces shared by several methods, as formulas.

Each public function's docstring states what it computes. The costly ones (the pairwise likelihood against a memory
bank, DTSH's triplet sum, the stable softplus) run on hand-written kernels with their gradients formed in the
forward; those live in :mod:`hashbench.nn._loss_kernels`, and their results equal the plain autograd formulas
(tests/nn/test_losses.py).
"""

from __future__ import annotations

import torch
from torch import Tensor

from hashbench.nn._loss_kernels import DifferenceSoftplusSum, Log1pExp, PairwiseLogisticNLL, at_most_one_label

__all__ = [
    "contrastive_pair_loss",
    "difference_softplus_sum",
    "label_similarity",
    "log1p_exp",
    "multi_similarity_loss",
    "pairwise_logistic_nll",
    "sign_with_zero_positive",
]


def label_similarity(labels_a: Tensor, labels_b: Tensor | None = None) -> Tensor:
    """S_ij = 1 if items i and j share at least one label, else 0 (multi-hot inputs), as float."""
    labels_b = labels_a if labels_b is None else labels_b
    return (labels_a.float() @ labels_b.float().T > 0).float()


def log1p_exp(x: Tensor) -> Tensor:
    """Numerically stable log(1 + e^x) (softplus) with gradient σ(x): never overflows for large x.

    Accurate to float rounding in absolute terms (about 1e-7 in float32); for x below about -17 (float32) the
    tiny true value rounds to 0, which no loss sum notices. Unlike ``F.softplus`` there is no linear cut-off above
    x = 20: the gradient is σ(x) everywhere.
    """
    return Log1pExp.apply(x)


def sign_with_zero_positive(x: Tensor) -> Tensor:
    """sign(x) in {-1, +1} with sign(0) = +1, the rule hashbench uses everywhere a code is binarised."""
    return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))


def pairwise_logistic_nll(
    u: Tensor,
    v: Tensor,
    labels_u: Tensor,
    labels_v: Tensor,
    scale: float = 0.5,
    single_label: bool | None = None,
    v_index: Tensor | None = None,
) -> Tensor:
    """Σ_ij [log(1 + e^{Θ_ij}) − S_ij Θ_ij] with Θ = scale · u vᵀ and S_ij = [labels share a label].

    The pairwise negative log-likelihood of DPSH / DHN / DCMH, summed over all pairs of rows of ``u`` [B, K]
    and ``v`` [N, K]. Equal to ``(log1p_exp(Θ) - S * Θ).sum()`` (tested), but with a hand-written gradient
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
        v_index: for a memory bank ``v`` into which ``u`` has just been written (``v[v_index] == u``, detached):
            ``u``'s gradient then also includes its role as those columns, i.e. it is the gradient of the loss
            with ``v[v_index]`` replaced by ``u`` itself. The value is unchanged.
    """
    if single_label is None:
        single_label = at_most_one_label(labels_u) and at_most_one_label(labels_v)
    return PairwiseLogisticNLL.apply(u, v, labels_u, labels_v, scale, single_label, v_index)


def difference_softplus_sum(a: Tensor, b: Tensor) -> Tensor:
    """Σ_{r,j,i} log(1 + e^{a_ri − b_rj}) for a [R, I] and b [R, J]: every pair of an ``a`` and a ``b`` entry of a row.

    DTSH's triplet likelihood in compact form (row r an anchor, a its negatives' inner products plus the margin,
    b its positives'). Equal to ``log1p_exp(a[:, None, :] - b[:, :, None]).sum()`` (tested), without the autograd
    passes over the [R, J, I] tensor. A pair with a − b below about −40 (float32) contributes exactly 0 in value and
    gradient, so padding slots can be filled with sentinels (a = −10^4, b = +10^4).
    """
    return DifferenceSoftplusSum.apply(a, b)


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


def multi_similarity_loss(
    sim: Tensor,
    pos_mask: Tensor,
    neg_mask: Tensor,
    alpha: float = 2.0,
    beta: float = 40.0,
    lam: float = 0.5,
    epsilon: float = 0.1,
) -> Tensor:
    """Multi-similarity loss (Wang et al., CVPR 2019, Eq. 11 with the mining of Eq. 9-10) of a similarity matrix.

    DMsH-LN's loss is three (four, with its label network) of these (:func:`hashbench.methods.dmsh_ln.dmsh_ln_loss`).
    Row i is an anchor; P_i = {j : pos_mask[i, j]}, N_i = {k : neg_mask[i, k]}. Mining keeps negatives with
    S_ik + ε > min_{j∈P_i} S_ij and positives with S_ij − ε < max_{k∈N_i} S_ik (an empty P_i or N_i keeps nothing,
    since min ∅ = +∞ and max ∅ = −∞). Then

        ℓ_i = 1/α · log(1 + Σ_{j∈P̃_i} e^{−α(S_ij − λ)}) + 1/β · log(1 + Σ_{k∈Ñ_i} e^{β(S_ik − λ)}),
        L = Σ_i ℓ_i / B.

    The mining is a selection (no gradient through it); both sums use a stable log-sum-exp.

    Args:
        sim: similarities [B, M] (cosine).
        pos_mask: bool [B, M], candidate positives of each anchor (self pairs already removed).
        neg_mask: bool [B, M], candidate negatives.
        alpha: positive weighting scale α.
        beta: negative weighting scale β.
        lam: similarity threshold λ.
        epsilon: mining margin ε.

    Returns:
        The scalar loss.
    """
    pos_mask, neg_mask = pos_mask.bool(), neg_mask.bool()
    with torch.no_grad():
        inf = torch.tensor(float("inf"), dtype=sim.dtype, device=sim.device)
        hardest_pos = torch.where(pos_mask, sim, inf).amin(dim=1, keepdim=True)
        hardest_neg = torch.where(neg_mask, sim, -inf).amax(dim=1, keepdim=True)
        keep_neg = neg_mask & (sim + epsilon > hardest_pos)
        keep_pos = pos_mask & (sim - epsilon < hardest_neg)
    zero = sim.new_zeros(sim.shape[0], 1)
    neg_inf = sim.new_full((), float("-inf"))
    # log(1 + Σ_j e^{x_j}) = logsumexp([0, x_1, ...]); masked-out entries are −∞ and contribute e^{−∞} = 0.
    pos_term = torch.logsumexp(torch.cat([zero, torch.where(keep_pos, -alpha * (sim - lam), neg_inf)], 1), 1) / alpha
    neg_term = torch.logsumexp(torch.cat([zero, torch.where(keep_neg, beta * (sim - lam), neg_inf)], 1), 1) / beta
    return (pos_term + neg_term).sum() / sim.shape[0]
