"""DMNSH: Deep multi-negative supervised hashing.

Liu et al. "Deep multi-negative supervised hashing" (title as hashbench's method list gives it). Expert Systems
with Applications 264, 125795, 2025. https://doi.org/10.1016/j.eswa.2024.125795 — no official code is public.

Each anchor is paired with one positive and *several* negatives at once (a multi-negative tuple, in the spirit of
the N-pair loss), and the tuples are built by re-using the images of one mini-batch every step, so no extra
sampling pass over the data is needed. The loss on relaxed codes preserves similarity with an adaptive margin that
stabilises training, and penalises the quantization error of the relaxation. Trained with SGD.

Deviations from the paper:
- The loss is a reconstruction: the paper's full text is not publicly reachable, so the formulas below are the
  most faithful well-defined reading of its abstract (hashbench's reconstruction, "DMNSH"). Reconstructed choices,
  each an argument:
  - tuples: every in-batch image is an anchor i; its positive p(i) is one other in-batch image sharing a label,
    drawn uniformly at random every step (torch's global RNG, so ``seed_everything`` fixes it); its negatives N(i)
    are all in-batch images sharing no label, or the ``num_negatives`` hardest ones (highest similarity); anchors
    without a positive or without a negative are skipped;
  - similarity s(a, b) = u_a·u_b / K in [-1, 1] for tanh codes;
  - multi-negative term L_mn = mean_i log(1 + Σ_{n∈N(i)} exp(γ·(s(i, n) − s(i, p(i)) + m))), γ = ``gamma`` = 10;
  - quantization term L_q = mean_i ||u_i − b_i||² / K, b = sign(u) with sign(0) = +1, weighted by λ = ``lam`` = 0.1;
  - adaptive margin m = m0·(1 − s̄⁺), m0 = ``margin`` = 0.2, where s̄⁺ is a running mean (no gradient) of the
    batch's mean positive similarity s(i, p(i)), updated after each training step as
    s̄⁺ ← μ·s̄⁺ + (1 − μ)·mean_i s(i, p(i)) with μ = ``margin_momentum`` = 0.9 and s̄⁺ = 0 at the start (so the
    first steps use m0). The margin shrinks as positives become tight, which is our reading of "adaptive margin
    stabilises training"; ``adaptive_margin=False`` keeps the constant m0.
- The relaxed codes are tanh outputs.
- The paper's SGD learning rate, momentum and schedule are not public: ``paper_training`` records SGD with our
  choice of the remaining settings.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from hashbench.methods.base import FINETUNE_TRAINING, HashingMethod, Paper
from hashbench.nn.losses import label_similarity, sign_with_zero_positive
from hashbench.registry import register_method

__all__ = ["dmnsh_loss", "sample_positives", "DMNSH"]


def sample_positives(labels: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Draw one in-batch positive per anchor, uniformly among the images sharing a label with it.

    Vectorised: random scores are masked to each row's positives and the arg-max is taken.

    Args:
        labels: multi-hot labels [B, C].
        generator: optional torch generator (default: torch's global RNG).

    Returns:
        Long tensor [B]: the positive's batch index, or -1 where the anchor has no positive.
    """
    b = labels.shape[0]
    pos = label_similarity(labels).bool()
    pos.fill_diagonal_(False)
    scores = torch.rand(b, b, generator=generator, device=labels.device)
    scores = torch.where(pos, scores, torch.full_like(scores, -1.0))
    choice = scores.argmax(dim=1)
    return torch.where(pos.any(dim=1), choice, torch.full_like(choice, -1))


def dmnsh_loss(
    u: Tensor,
    labels: Tensor,
    positive_index: Tensor,
    margin: float | Tensor = 0.2,
    gamma: float = 10.0,
    lam: float = 0.1,
    num_negatives: int | None = None,
) -> dict[str, Tensor]:
    """DMNSH multi-negative loss of one mini-batch (reconstruction, see the module docstring).

    Args:
        u: relaxed codes [B, K].
        labels: multi-hot labels [B, C].
        positive_index: [B] batch index of each anchor's positive, -1 = no positive (see :func:`sample_positives`).
        margin: the margin m (a float, or a scalar / [B] tensor of per-anchor margins m_i; no gradient).
        gamma: scale γ of the similarity differences.
        lam: weight λ of the quantization term.
        num_negatives: use only the M hardest negatives of each anchor (highest similarity); ``None`` = all.

    Returns:
        ``multi_negative`` (L_mn), ``quantization`` (λ·L_q), ``loss`` (their sum), and two detached statistics:
        ``positive_similarity`` (mean s(i, p(i)) over the anchors used; 0 when none) and ``anchors`` (how many
        anchors had both a positive and a negative).
    """
    b, k = u.shape
    if positive_index.shape != (b,):
        raise ValueError(f"positive_index must have shape [{b}], got {tuple(positive_index.shape)}")
    if num_negatives is not None and num_negatives < 1:
        raise ValueError(f"num_negatives must be a positive integer or None (all), got {num_negatives}")
    sim = u @ u.T / k
    neg = label_similarity(labels) == 0
    if num_negatives is not None and num_negatives < b:
        # The M hardest negatives: highest similarity to the anchor (chosen without gradient).
        hardness = torch.where(neg, sim.detach(), torch.full_like(sim, -torch.inf))
        top = hardness.topk(num_negatives, dim=1).indices
        chosen = torch.zeros_like(neg).scatter_(1, top, True)
        neg = neg & chosen
    has_pos = positive_index >= 0
    valid = has_pos & neg.any(dim=1)
    pos_sim = sim.gather(1, positive_index.clamp(min=0).unsqueeze(1)).squeeze(1)  # s(i, p(i)) [B]
    m = torch.as_tensor(margin, dtype=u.dtype, device=u.device).detach()
    m = m.expand(b) if m.ndim == 0 else m
    z = gamma * (sim - pos_sim.unsqueeze(1) + m.unsqueeze(1))
    z = torch.where(neg, z, torch.full_like(z, -torch.inf))
    # log(1 + Σ_n e^{z_n}) = logsumexp([0, z_1, ...]), stable for large γ.
    per_anchor = torch.logsumexp(torch.cat([torch.zeros_like(z[:, :1]), z], dim=1), dim=1)
    n_valid = valid.sum()
    if n_valid > 0:
        multi_negative = per_anchor[valid].mean()
        positive_similarity = pos_sim[valid].detach().mean()
    else:
        multi_negative = u.sum() * 0.0  # keeps the graph; nothing to learn from this batch's pairs
        positive_similarity = u.new_zeros(())
    quantization = lam * (u - sign_with_zero_positive(u.detach())).pow(2).sum(dim=1).mean() / k
    return {
        "multi_negative": multi_negative,
        "quantization": quantization,
        "loss": multi_negative + quantization,
        "positive_similarity": positive_similarity,
        "anchors": n_valid.to(u.dtype).detach(),
    }


@register_method
class DMNSH(HashingMethod):
    """Deep multi-negative supervised hashing (Liu et al., ESWA 2025), reconstructed loss.

    Under DDP with n processes and a global batch B, triplets (anchor, sampled positive, negatives) are drawn within
    each process's rows: the effective in-batch size of those terms is B/n (the one-process objective needs
    ``devices=1``).
    """

    paper = Paper(
        title="Deep multi-negative supervised hashing",
        authors="Liu et al.",
        venue="Expert Systems with Applications 264, 125795",
        year=2025,
        url="https://doi.org/10.1016/j.eswa.2024.125795",
        reconstruction=True,
    )
    supervision = "triplet"
    # Under DDP: triplets (anchor, sampled positive, negatives) are drawn within each process's rows.
    ddp_batch = "per-process"
    loss_function = staticmethod(dmnsh_loss)
    # Only "SGD" is known from the abstract; lr / momentum / schedule / epochs / batch size are our choice.
    # SGD is the paper's; the rest is hashbench's fine-tuning recipe (see the module docstring).
    paper_training = {**FINETUNE_TRAINING, "lr": 0.01}

    def __init__(
        self,
        n_bits: int = 48,
        gamma: float = 10.0,  # γ, scale of the similarity differences in L_mn [R]
        margin: float = 0.2,  # m0, base margin [R]
        lam: float = 0.1,  # λ, weight of the quantization term [R]
        num_negatives: int | None = None,  # M hardest negatives per anchor; None = all in-batch negatives [R]
        adaptive_margin: bool = True,  # m = m0·(1 − s̄⁺) (True) or the constant m0 (False) [R]
        margin_momentum: float = 0.9,  # μ of the running mean s̄⁺ of positive similarity [R]
        **kwargs: Any,
    ) -> None:
        super().__init__(n_bits=n_bits, **kwargs)
        if not 0.0 <= margin_momentum < 1.0:
            raise ValueError(f"margin_momentum must be in [0, 1), got {margin_momentum}")
        if num_negatives is not None and num_negatives < 1:
            raise ValueError(f"num_negatives must be a positive integer or None (all), got {num_negatives}")
        self.gamma, self.margin, self.lam = gamma, margin, lam
        self.num_negatives = num_negatives
        self.adaptive_margin = adaptive_margin
        self.margin_momentum = margin_momentum
        # s̄⁺, saved in checkpoints so a resumed run keeps its margin.
        self.register_buffer("positive_similarity_mean", torch.zeros(()))

    def current_margin(self) -> Tensor:
        """The margin m used by the next step: m0·(1 − s̄⁺), or m0 without the adaptive margin."""
        if not self.adaptive_margin:
            return torch.tensor(self.margin, device=self.positive_similarity_mean.device)
        return self.margin * (1.0 - self.positive_similarity_mean)

    def compute_loss(self, batch: Any) -> dict[str, Tensor]:
        u = self(batch.image)
        positive_index = sample_positives(batch.labels)
        margin = self.current_margin()
        terms = self.loss_function(u, batch.labels, positive_index, margin, self.gamma, self.lam, self.num_negatives)
        if self.training and terms["anchors"] > 0:
            with torch.no_grad():
                mu = self.margin_momentum
                self.positive_similarity_mean.mul_(mu).add_((1.0 - mu) * terms["positive_similarity"])
        terms["margin"] = margin.detach().to(u.dtype)
        return terms
