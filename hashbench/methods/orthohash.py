"""OrthoHash: One Loss for All: Deep Hashing with a Single Cosine Similarity based Learning Objective.

Jiun Tian Hoe, Kam Woh Ng, Tianyu Zhang, Chee Seng Chan, Yi-Zhe Song, Tao Xiang. "One Loss for All: Deep Hashing
with a Single Cosine Similarity based Learning Objective". NeurIPS 2021. https://arxiv.org/abs/2109.14449
(supplementary material: https://github.com/kamwoh/orthohash/blob/main/docs/suppmat.pdf) — official code:
https://github.com/kamwoh/orthohash (also in the authors' framework https://github.com/CISiPLab/cisip-FIRe).

Every class c gets a fixed binary orthogonal target o_c ∈ {−1, +1}^K (the rows of O ∈ {−1, +1}^{C×K}). The
continuous codes v of an image (the hash layer followed by a BatchNorm layer, which zero-centres every bit and so
balances the codes) are compared with every target by cosine similarity, cos θ_c = vᵀo_c / (‖v‖ ‖o_c‖). The scaled
cosines with a margin on the true class are the logits of a softmax cross-entropy, which is the only loss: pulling
v towards o_y in angle both makes the codes discriminative and lowers the quantisation error
‖v − sign(v)‖² = 2K(1 − cos θ) (for ‖v‖ = √K; supplementary, App. B). Two margins:

- OrthoCos (``variant="cos"``, the default): logit_c = s·(cos θ_c − m·y_c) (CosFace-style additive cosine margin);
- OrthoArc (``variant="arc"``): logit_c = s·cos(θ_c + m·y_c) (ArcFace-style additive angular margin).

Multi-label data use label smoothing over the label set (supplementary, Alg. 1 and App. D.4): the target
distribution is y / Σ_c y_c, so L = −Σ_c (y_c / Σ_j y_j) log softmax(logits)_c, which for a one-hot y is the usual
cross-entropy. The margin is applied to every positive label. Codes are sign(v), so the relaxed output here is the
raw BatchNorm output (``activation = "identity"``), with no tanh.

Orthogonal targets (:func:`orthohash_codebook`): ``"bernoulli"`` (the default of the paper's Alg. 1 and of the
official code: every bit an independent fair ±1 draw, seeded by ``codebook_seed``) or ``"hadamard"`` (rows of
[H_K; −H_K] when K is a power of two and C ≤ 2K, otherwise the Bernoulli draw, as the supplementary describes the
Hadamard construction of CSQ). The targets are fixed (not learned).

Deviations from the paper:
- Scale s: defaults to √K (``scale=None``), the value in the paper (Eq. 7 of the supplementary and its Table 1).
  The official code uses a fixed s = 8, which equals √K only at K = 64 (the setting of the published ImageNet100
  64-bit number); pass ``scale=8`` for the code's value at other lengths.
- The hash layer is hashbench's shared head: a linear layer with a bias followed by ``BatchNorm1d(K)`` (affine).
  The official code uses a bias-free linear layer (weights ~ N(0, 0.01²)) before the same BatchNorm; a bias in
  front of a BatchNorm has no effect on its output, and the initialisation is PyTorch's default. The BatchNorm is
  part of the method: keep ``hash_bn=True`` (the base-class default); ``hash_bn=False`` is the paper's "OrthoCos
  without BN" ablation.
- Multi-label images without any label (all-zero label rows) contribute zero to the loss (the official code
  would divide by zero); they still count in the batch mean.
- The paper's third target construction, MaxHD (supplementary Alg. 3, a greedy rejection sampler), is not
  implemented; the paper reports it within about 1% of Bernoulli targets from 32 bits on (supplementary Table 4).
- Duplicate Bernoulli targets (possible at very short codes, e.g. two of 100 16-bit targets are equal with
  probability about 7%) are kept as drawn, as in the official code.

Paper and official code:
- Scale: paper s = √K, code s = 8 (see above); hashbench follows the paper.
- Margin: paper m = 0.2 (main experiments; supplementary Table 1 and D.1), official ``main.py`` default 0.2 (its
  README's CIFAR-10 example and the FIRe OrthoCos template use 0.3); hashbench uses 0.2.
- Arc margin: the code clamps cos θ to ±0.99999 before arccos (so arccos stays differentiable) and has no
  "easy margin" rule for θ + m > π; hashbench does the same.
- Multi-label: the official ``main.py`` switches the label-smoothing loss on for NUS-WIDE only
  (``'multiclass': args.ds == 'nuswide'``), so its MS-COCO runs train a plain cross-entropy on the first positive
  label (``labels.argmax(1)``); the supplementary (Table 5) reports MS-COCO with label smoothing. hashbench
  follows the paper: label smoothing for every multi-label data set.
- Quantisation term: the code has an optional extra term (weight ``quan``, default 0); the paper has one loss.
  hashbench has no such term.
- Recipe (supplementary C.1 and official ``main.py`` agree): Adam, lr 1e-4 (backbone lr 1e-5: "one-tenth"),
  β = (0.9, 0.999), weight decay 5e-4, 100 epochs, lr ×0.1 after 80 epochs, batch 256, on an ImageNet-pretrained
  AlexNet with a new 4096 → K hash layer. The FIRe templates use batch 64; hashbench follows the paper and
  ``main.py``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from hashbench.methods.base import HashingMethod, Paper
from hashbench.registry import register_method

__all__ = ["CODEBOOKS", "VARIANTS", "orthohash_codebook", "orthohash_logits", "orthohash_loss", "OrthoHash"]

#: the orthogonal target constructions
CODEBOOKS = ("bernoulli", "hadamard")
#: OrthoCos (additive cosine margin) and OrthoArc (additive angular margin)
VARIANTS = ("cos", "arc")
#: the official code clamps cos θ to ±(1 − 1e-5) before arccos
_ARC_CLAMP = 1.0 - 1e-5


def orthohash_codebook(num_classes: int, n_bits: int, method: str = "bernoulli", seed: int = 0) -> Tensor:
    """Binary orthogonal targets O [C, K] in {−1, +1}.

    Args:
        num_classes: number of classes C.
        n_bits: code length K.
        method: ``"bernoulli"`` (every bit an independent fair ±1 draw) or ``"hadamard"`` (rows of [H_K; −H_K]
            when K is a power of two and C ≤ 2K, else the Bernoulli draw).
        seed: seed of the Bernoulli draw (a NumPy ``default_rng``).

    Example:
        >>> orthohash_codebook(3, 4, "hadamard").tolist()
        [[1.0, 1.0, 1.0, 1.0], [1.0, -1.0, 1.0, -1.0], [1.0, 1.0, -1.0, -1.0]]
    """
    if num_classes < 1 or n_bits < 1:
        raise ValueError(f"need num_classes >= 1 and n_bits >= 1, got {num_classes} and {n_bits}")
    if method not in CODEBOOKS:
        raise ValueError(f"codebook method must be one of {CODEBOOKS}, got {method!r}")
    if method == "hadamard" and n_bits & (n_bits - 1) == 0 and num_classes <= 2 * n_bits:
        from scipy.linalg import hadamard

        h = hadamard(n_bits)
        return torch.from_numpy(np.concatenate([h, -h])[:num_classes].astype(np.float32))
    rng = np.random.default_rng(seed)
    return torch.from_numpy(np.where(rng.random((num_classes, n_bits)) < 0.5, -1.0, 1.0).astype(np.float32))


def orthohash_logits(
    v: Tensor, labels: Tensor, codebook: Tensor, scale: float, margin: float, variant: str = "cos"
) -> Tensor:
    """Margin logits [B, C]: s·(cos θ − m·y) (``"cos"``) or s·cos(θ + m·y) (``"arc"``), θ the angle to each o_c."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    cos = F.normalize(v, dim=1) @ F.normalize(codebook.to(v.dtype), dim=1).T
    y = labels.to(v.dtype)
    if variant == "cos":
        return scale * (cos - margin * y)
    theta = torch.acos(cos.clamp(-_ARC_CLAMP, _ARC_CLAMP))
    return scale * torch.cos(theta + margin * y)


def orthohash_loss(
    v: Tensor,
    labels: Tensor,
    codebook: Tensor,
    scale: float | None = None,
    margin: float = 0.2,
    variant: str = "cos",
) -> dict[str, Tensor]:
    """OrthoHash loss: label-smoothed softmax cross-entropy over scaled margin cosines to the targets.

    L = −1/B Σ_i Σ_c (y_ic / Σ_j y_ij) log softmax_c(logit_i), with logit_ic = s·(cos θ_ic − m·y_ic) (OrthoCos) or
    s·cos(θ_ic + m·y_ic) (OrthoArc) and cos θ_ic = v_iᵀo_c / (‖v_i‖ ‖o_c‖). For one-hot labels this is the
    cross-entropy with the true class; rows without any label contribute 0.

    Args:
        v: continuous codes [B, K] (the BatchNorm output of the hash layer).
        labels: multi-hot labels [B, C] (one-hot for single-label data).
        codebook: binary orthogonal targets O [C, K].
        scale: s; ``None`` = √K.
        margin: m, the additive cosine (``"cos"``) or angular (``"arc"``, radians) margin on the true classes.
        variant: ``"cos"`` (OrthoCos) or ``"arc"`` (OrthoArc).

    Returns:
        ``cross_entropy`` and ``loss`` (the same value: the method has one loss).
    """
    s = math.sqrt(v.shape[1]) if scale is None else scale
    y = labels.to(v.dtype)
    log_p = F.log_softmax(orthohash_logits(v, y, codebook, s, margin, variant), dim=1)
    target = y / y.sum(dim=1, keepdim=True).clamp_min(1.0)
    ce = -(target * log_p).sum(dim=1).mean()
    return {"cross_entropy": ce, "loss": ce}


@register_method
class OrthoHash(HashingMethod):
    """OrthoHash (OrthoCos / OrthoArc): one cosine-margin cross-entropy to fixed orthogonal targets (NeurIPS 2021).

    Args:
        n_bits: code length K.
        variant: ``"cos"`` (OrthoCos, additive cosine margin) or ``"arc"`` (OrthoArc, additive angular margin).
        scale: s, the scale of the cosine logits; ``None`` = √K (the paper; the official code uses 8).
        margin: m.
        codebook: ``"bernoulli"`` or ``"hadamard"`` orthogonal targets (see :func:`orthohash_codebook`).
        codebook_seed: seed of the Bernoulli targets.
        **kwargs: the :class:`HashingMethod` arguments (backbone, optimiser, schedule ...).
    """

    paper = Paper(
        title="One Loss for All: Deep Hashing with a Single Cosine Similarity based Learning Objective",
        authors="Jiun Tian Hoe, Kam Woh Ng, Tianyu Zhang, Chee Seng Chan, Yi-Zhe Song, Tao Xiang",
        venue="NeurIPS",
        year=2021,
        url="https://arxiv.org/abs/2109.14449",
        code="https://github.com/kamwoh/orthohash",
    )
    supervision = "pointwise"
    ddp_batch = "per-sample"  # under DDP: cross-entropy against the fixed codebook
    loss_function = staticmethod(orthohash_loss)
    # The codes are sign(v) of the BatchNorm output; there is no tanh relaxation.
    activation = "identity"
    # ImageNet100, AlexNet (supplementary C.1; official main.py/configs.py agree). The backbone (an ImageNet AlexNet,
    # backbone="alexnet", pretrained=True) comes from the table specs' paper profile.
    paper_training = {
        "optimizer": "adam",  # Adam, β = (0.9, 0.999)
        "lr": 1e-4,  # hash layer
        "backbone_lr": 1e-5,  # "one-tenth of the learning rate of the latent layer"
        "weight_decay": 5e-4,
        "scheduler": "step",
        "lr_step": 80,  # lowered to 1e-5 after 80 epochs
        "lr_gamma": 0.1,
        "max_epochs": 100,
        "batch_size": 256,
    }

    def __init__(
        self,
        n_bits: int = 48,
        variant: str = "cos",  # OrthoCos (the paper's main model); "arc" = OrthoArc
        scale: float | None = None,  # s = √K (supplementary Eq. 7 / Table 1); the official code uses 8
        margin: float = 0.2,  # m = 0.2 (supplementary Table 1, D.1; official main.py)
        codebook: str = "bernoulli",  # Bern(0.5) targets (Alg. 1; official --codebook-method B)
        codebook_seed: int = 0,  # seed of the Bernoulli targets
        **kwargs: Any,
    ) -> None:
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        if codebook not in CODEBOOKS:
            raise ValueError(f"codebook must be one of {CODEBOOKS}, got {codebook!r}")
        super().__init__(n_bits=n_bits, **kwargs)
        self.variant, self.scale, self.margin = variant, scale, margin
        self.codebook_method, self.codebook_seed = codebook, codebook_seed

    def on_data_configured(self) -> None:
        # hparams: when a checkpoint is loaded this hook runs inside the base __init__, before OrthoHash's own
        h = self.hparams
        targets = orthohash_codebook(h.num_classes, self.n_bits, h.codebook, h.codebook_seed)
        self.register_buffer("codebook", targets.to(self.device))

    def compute_loss(self, batch: Any) -> dict[str, Tensor]:
        v = self.hash_logits(batch.image)
        return self.loss_function(v, batch.labels, self.codebook, self.scale, self.margin, self.variant)
