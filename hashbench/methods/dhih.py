"""DHIH: Deep highly interrelated hashing for fast image retrieval.

He, Feng, Liu, Huang. "Deep highly interrelated hashing for fast image retrieval". Journal of Computer Research
and Development 57(11):2375–2388, 2020. https://doi.org/10.7544/issn1000-1239.2020.20190498 — no official code is
public.

A unary (pointwise) supervised method: a hash layer on a CNN is trained from each image's own labels, with no
n×n similarity matrix, so the cost of a step does not depend on the training-set size. Its "highly interrelated"
loss changes the model's sensitivity to the classifier's weight matrix so that inter-class distances grow and
intra-class distances shrink; it works on top of many CNNs (CIFAR-10, NUS-WIDE, SVHN).

Deviations from the paper:
- The loss is a reconstruction: the paper's full text is not publicly reachable, so it is the most faithful
  well-defined reading of its abstract (hashbench's reconstruction, "DHIH"): a large-margin softmax on the codes.
  Reconstructed choices, each an argument:
  - h = tanh(hash layer); a bias-free classifier W ∈ R^{C×K} whose rows and h are L2-normalised, so the logits
    depend only on the angles θ_j between h and W_j (this removes the sensitivity to ||W||);
  - ``margin_type="cosface"`` (default): logits s·(cos θ_j − m·[j = y]), s = ``scale`` = 8, m = ``margin`` = 0.2;
  - ``margin_type="lsoftmax"``: the target logit is s·ψ(θ_y) with the L-Softmax function
    ψ(θ) = (−1)^k·cos(m'θ) − 2k for θ ∈ [kπ/m', (k+1)π/m'], k ∈ {0, …, m' − 1}, integer m' = ``lsoftmax_m`` = 2
    (cos(m'θ) evaluated as the Chebyshev polynomial T_m'(cos θ), k chosen without gradient, as in Liu et al.,
    ICML 2016); other logits s·cos θ_j;
  - multi-label: for each positive class y of an image the margin is applied to y alone and the
    cross-entropies are averaged over its positive classes, then over images; images without any label are
    skipped. By default (``exclude_other_positives=False``) the image's other positive classes stay in the
    softmax denominator, so the term for y also pushes h away from the image's other true classes;
    ``exclude_other_positives=True`` drops the logits of the other positive classes j ≠ y from the
    denominator of the term for y (only y and the image's negative classes compete). The abstract does not
    settle this; the option is a no-op on single-label data;
  - plus λ·mean_i ||h_i − b_i||² / K, λ = ``lam`` = 0.1, b = sign(h) with sign(0) = +1.
- Training recipe: the paper's optimiser settings are not reachable to us, so every entry of ``paper_training``
  (SGD, momentum 0.9, head lr 0.01 for the hash layer and W, backbone lr 0.001 = lr/10, weight decay 5e-4,
  lr ×0.1 every 40 epochs, 100 epochs, batch 128) is hashbench's choice for fine-tuning an ImageNet-pretrained
  AlexNet, not the paper's. The network is set by the table specs' ``paper`` profile, not by this recipe.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hashbench.methods.base import FINETUNE_TRAINING, HashingMethod, Paper
from hashbench.nn.losses import sign_with_zero_positive
from hashbench.registry import register_method

__all__ = ["dhih_loss", "lsoftmax_psi", "DHIH"]

MARGIN_TYPES = ("cosface", "lsoftmax")


def lsoftmax_psi(cos: Tensor, m: int) -> Tensor:
    """L-Softmax ψ(θ) = (−1)^k cos(mθ) − 2k on θ ∈ [kπ/m, (k+1)π/m], from cos θ (monotone, continuous).

    Args:
        cos: cos θ, any shape, values in [-1, 1].
        m: positive integer margin; m = 1 gives cos θ.
    """
    if m < 1 or int(m) != m:
        raise ValueError(f"the L-Softmax margin must be a positive integer, got {m}")
    cos = cos.clamp(-1.0, 1.0)
    # cos(mθ) = T_m(cos θ): a polynomial, so the gradient stays finite at θ = 0 and π (unlike acos).
    t_prev, t = torch.ones_like(cos), cos
    for _ in range(int(m) - 1):
        t_prev, t = t, 2.0 * cos * t - t_prev
    with torch.no_grad():
        k = torch.floor(torch.acos(cos) * m / math.pi).clamp(0, m - 1)
    sign = 1.0 - 2.0 * torch.remainder(k, 2)
    return sign * t - 2.0 * k


def dhih_loss(
    h: Tensor,
    labels: Tensor,
    weight: Tensor,
    scale: float = 8.0,
    margin: float = 0.2,
    margin_type: str = "cosface",
    lsoftmax_m: int = 2,
    lam: float = 0.1,
    exclude_other_positives: bool = False,
) -> dict[str, Tensor]:
    """DHIH loss of one mini-batch (reconstruction, see the module docstring); no n×n matrix.

    For image i and one of its positive classes y the cross-entropy is
    ce_iy = −s·t_iy + log(exp(s·t_iy) + Σ_{j ∈ D_iy} exp(s·cos_ij)), with t_iy the margin-adjusted target
    cosine, and D_iy = every class j ≠ y (default) or, with ``exclude_other_positives``, only the classes j ≠ y
    that are not labels of image i.

    Args:
        h: relaxed codes [B, K] (tanh outputs).
        labels: multi-hot labels [B, C].
        weight: classifier weights W [C, K] (no bias); rows are L2-normalised here.
        scale: s, the logit scale.
        margin: m of the CosFace form.
        margin_type: ``cosface`` or ``lsoftmax``.
        lsoftmax_m: integer m' of the L-Softmax form.
        lam: λ, weight of the quantization term.
        exclude_other_positives: leave image i's other positive classes out of the softmax denominator of the
            term for each positive class y (multi-label data; no effect on single-label data). Default False:
            all classes other than y are in the denominator.

    Returns:
        ``margin_softmax`` (the large-margin cross-entropy), ``quantization`` (λ·mean ||h − b||²/K), ``loss``.
    """
    if margin_type not in MARGIN_TYPES:
        raise ValueError(f"margin_type must be one of {MARGIN_TYPES}, got {margin_type!r}")
    b, k = h.shape
    if weight.shape != (labels.shape[1], k):
        raise ValueError(f"weight must have shape [num_classes, K] = [{labels.shape[1]}, {k}], got {weight.shape}")
    cos = F.normalize(h, dim=1) @ F.normalize(weight, dim=1).T  # [B, C]
    if margin_type == "cosface":
        target = cos - margin
    else:
        target = lsoftmax_psi(cos, lsoftmax_m)
    # For every (image i, class y) pair: logits s·cos_ij for j ≠ y and s·target_iy for j = y. [B, C(y), C(j)]
    c = cos.shape[1]
    eye = torch.eye(c, dtype=torch.bool, device=h.device)
    logits = scale * torch.where(eye, target.unsqueeze(2), cos.unsqueeze(1))
    if exclude_other_positives:
        # For target y drop the logits of the image's other labels j ≠ y; the diagonal (y itself) always stays,
        # so no row of the logsumexp is empty.
        other_pos = (labels > 0).unsqueeze(1) & ~eye  # [B, C(y), C(j)]
        logits = logits.masked_fill(other_pos, float("-inf"))
    ce = torch.logsumexp(logits, dim=2) - scale * target  # [B, C]: cross-entropy with class y as the target
    pos = labels.to(h.dtype)
    n_pos = pos.sum(dim=1)
    has = n_pos > 0
    per_image = (ce * pos).sum(dim=1) / n_pos.clamp(min=1)
    margin_softmax = per_image[has].mean() if bool(has.any()) else h.sum() * 0.0
    quantization = lam * (h - sign_with_zero_positive(h.detach())).pow(2).sum(dim=1).mean() / k
    return {"margin_softmax": margin_softmax, "quantization": quantization, "loss": margin_softmax + quantization}


@register_method
class DHIH(HashingMethod):
    """Deep highly interrelated hashing (He et al., J. Comput. Res. Dev. 2020), reconstructed large-margin loss.

    Args:
        n_bits: code length K.
        scale: s, the logit scale.
        margin: m of the CosFace form.
        margin_type: ``cosface`` or ``lsoftmax``.
        lsoftmax_m: integer m' of the L-Softmax form.
        lam: λ, weight of the quantization term.
        exclude_other_positives: on multi-label data, leave an image's other labels out of the softmax
            denominator of the term for each of its labels (default False: they stay in; see the module
            docstring).
        **kwargs: the :class:`HashingMethod` arguments (backbone, optimiser, schedule ...).
    """

    paper = Paper(
        title="Deep highly interrelated hashing for fast image retrieval",
        authors="He, Feng, Liu, Huang",
        venue="Journal of Computer Research and Development 57(11):2375-2388",
        year=2020,
        url="https://doi.org/10.7544/issn1000-1239.2020.20190498",
        reconstruction=True,
    )
    supervision = "pointwise"
    ddp_batch = "per-sample"  # under DDP: margin softmax against class weights
    loss_function = staticmethod(dhih_loss)
    # Every value is hashbench's choice for an ImageNet-pretrained AlexNet: the paper's recipe is not reachable to
    # us (see the module docstring). The backbone itself comes from the table specs' paper profile.
    paper_training: dict[str, Any] = {
        **FINETUNE_TRAINING,  # hashbench's choice
        "lr": 0.01,  # hash layer and classifier W; hashbench's choice
        "backbone_lr": 0.001,  # lr/10 for the pretrained layers; hashbench's choice
    }

    def __init__(
        self,
        n_bits: int = 48,
        scale: float = 8.0,  # s, logit scale of the normalised softmax [R]
        margin: float = 0.2,  # m, additive cosine margin (CosFace form) [R]
        margin_type: str = "cosface",  # "cosface" or "lsoftmax" [R]
        lsoftmax_m: int = 2,  # integer m' of ψ(θ) when margin_type="lsoftmax" [R]
        lam: float = 0.1,  # λ, weight of ||h − b||²/K [R]
        exclude_other_positives: bool = False,  # multi-label: other labels out of the denominator for y [R]
        **kwargs: Any,
    ) -> None:
        if margin_type not in MARGIN_TYPES:
            raise ValueError(f"margin_type must be one of {MARGIN_TYPES}, got {margin_type!r}")
        if lsoftmax_m < 1:
            raise ValueError(f"lsoftmax_m must be a positive integer, got {lsoftmax_m}")
        super().__init__(n_bits=n_bits, **kwargs)
        self.scale, self.margin, self.margin_type = scale, margin, margin_type
        self.lsoftmax_m, self.lam = lsoftmax_m, lam
        self.exclude_other_positives = exclude_other_positives

    def on_data_configured(self) -> None:
        # W ∈ R^{C×K}, no bias; trained at the head learning rate.
        w = torch.empty(self.hparams.num_classes, self.n_bits)
        nn.init.xavier_uniform_(w)
        self.class_weight = nn.Parameter(w.to(self.device))

    def compute_loss(self, batch: Any) -> dict[str, Tensor]:
        return self.loss_function(
            self(batch.image),
            batch.labels,
            self.class_weight,
            self.scale,
            self.margin,
            self.margin_type,
            self.lsoftmax_m,
            self.lam,
            exclude_other_positives=self.exclude_other_positives,
        )
