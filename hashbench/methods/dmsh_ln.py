"""DMsH-LN: Deep multi-similarity hashing via label-guided network for cross-modal retrieval.

Wu, Qin et al. "Deep multi-similarity hashing via label-guided network for cross-modal retrieval".
Neurocomputing 616, article 128830, 2025 (full author list on the article page).
https://www.sciencedirect.com/journal/neurocomputing/vol/616 — official code: https://github.com/QinLab-WFU/DMsH-LN.

An image network and a text network (CLIP ViT-B/32 towers in the paper, each followed by Linear → Dropout 0.2 →
tanh) produce relaxed codes H_img, H_txt. They are trained with the multi-similarity (MS) loss of Wang et al.
(CVPR 2019) applied three times, inside each modality and across them: L = MS(H_img) + MS(H_txt) + MS(H_img, H_txt).
MS mines informative pairs (a negative is kept when it is closer than the hardest positive minus ε, a positive when
it is farther than the hardest negative plus ε) and weights them by a soft-plus of their similarity (α for positives,
β for negatives, threshold λ; :func:`hashbench.nn.losses.multi_similarity_loss`). A label-guided network maps
each multi-hot label vector to label codes Y_L, whose similarity pattern [Y_L Y_Lᵀ > 0] decides which pairs count
as positive (see Deviations for how hashbench trains it and which mask it uses by default).

Deviations from the paper:
- The label network learns, and which mask the hash terms use is an argument. In the paper the label network's
  codes Y_L define the positives through the boolean mask [Y_L Y_Lᵀ > 0], which passes no gradient, so the network
  would stay at its random initialisation; the released training loop in fact builds the mask from the labels
  ([labels labelsᵀ > 0] in its MSLOSS). hashbench trains the label network with ``label_weight`` × MS(Y_L), the
  same MS loss on the label codes with ground-truth positives/negatives, but with threshold ``label_lam`` = 0 and
  without mining (``label_mining=False``): identical labels give identical codes (cosine 1), so with mining and
  λ = 0.5 the loss reaches 0 while dissimilar label codes still have cosine up to ~0.8 and the mask stays
  all-positive (measured). With λ = 0 and every pair weighted, dissimilar inner products become negative and
  [Y_L Y_Lᵀ > 0] converges to the label mask. The hash terms take their mask from the labels by default
  (``mask_source="labels"``, the released code); ``mask_source="label_net"`` uses [Y_L Y_Lᵀ > 0] as the paper
  describes. Measured caveat: at initialisation the mask is all-positive (the shared biases make every label
  code alike), so under ``label_net`` the hash terms are 0 until the label network separates the classes (about
  260 steps at 16 bits, 56 at 64 bits on single-label data with Adam lr 1e-3).
- Normalisation: the MS paper computes cosine similarities of L2-normalised embeddings; the released code
  L2-normalises the *rows of the similarity matrix* H_a H_bᵀ instead. Both are offered (``normalize="embeddings"``,
  default, or ``"similarity_rows"``).
- Self pairs: the released code drops self pairs by discarding similarities ≥ 1 − 1e-5 (which can also drop a
  genuine pair of identical codes); hashbench excludes j = i by index in the two within-modality terms. In the
  cross-modal term the image and text of the same item are a positive pair (as in the released code, where their
  similarity is below 1).
- Reduction: Σ_i ℓ_i / B over all anchors (as in the released code and the spec), including anchors whose mined
  sets are empty (ℓ_i = 0). pytorch-metric-learning's MultiSimilarityLoss averages over the anchors with ℓ_i > 0
  instead; the mining and ℓ_i agree (tests/methods/test_dmsh_ln.py checks both).
- The released code skips batches smaller than 128; hashbench's datamodules drop a ragged last training batch.
- The label network's tanh(a·h) uses a = sqrt(epoch + 1) with Lightning's epoch counter.
- Offline default networks are the framework's compact CNN and a bag-of-words MLP (DCMH-style) so the method runs
  without CLIP weights; ``backbone="clip", text_encoder="clip", clip_pretrained="openai"`` gives the paper's towers.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hashbench.methods._crossmodal import CrossModalHashingMethod
from hashbench.methods.base import Paper
from hashbench.nn.losses import label_similarity, multi_similarity_loss
from hashbench.registry import register_method

__all__ = ["similarity_matrix", "dmsh_ln_loss", "LabelNetwork", "DMsHLN"]


def similarity_matrix(a: Tensor, b: Tensor, normalize: str = "embeddings") -> Tensor:
    """Similarities [len(a), len(b)]: cosine of L2-normalised rows (``embeddings``) or the released code's
    row-normalised inner products F.normalize(a bᵀ, dim=1) (``similarity_rows``)."""
    if normalize == "embeddings":
        return F.normalize(a, dim=1) @ F.normalize(b, dim=1).T
    if normalize == "similarity_rows":
        return F.normalize(a @ b.T, dim=1)
    raise ValueError(f"normalize must be 'embeddings' or 'similarity_rows', got {normalize!r}")


def dmsh_ln_loss(
    h_img: Tensor,
    h_txt: Tensor,
    labels: Tensor,
    label_codes: Tensor | None = None,
    alpha: float = 2.0,
    beta: float = 40.0,
    lam: float = 0.5,
    epsilon: float = 0.1,
    normalize: str = "embeddings",
    mask_source: str = "labels",
    label_weight: float = 1.0,
    label_lam: float = 0.0,
    label_mining: bool = False,
) -> dict[str, Tensor]:
    """DMsH-LN's loss: MS(H_img) + MS(H_txt) + MS(H_img, H_txt) (+ label_weight · MS(Y_L)).

    Args:
        h_img: relaxed image codes [B, K].
        h_txt: relaxed text codes [B, K] (row i pairs with image i).
        labels: multi-hot labels [B, C].
        label_codes: the label network's codes Y_L [B, K], or ``None`` (no label network).
        alpha, beta, lam, epsilon: MS loss parameters (α, β, λ, ε).
        normalize: ``embeddings`` or ``similarity_rows`` (see :func:`similarity_matrix`).
        mask_source: ``label_net`` — positives of the hash terms are [Y_L Y_Lᵀ > 0] (the paper's label-guided mask;
            needs ``label_codes``); ``labels`` — [labels labelsᵀ > 0].
        label_weight: weight of MS(Y_L) with ground-truth positives, the term that trains the label network.
        label_lam: threshold λ of MS(Y_L) (0: dissimilar label codes are pushed to negative inner products).
        label_mining: mine pairs in MS(Y_L) with ε (off: every pair is weighted).

    Returns:
        ``ms_image``, ``ms_text``, ``ms_cross``, ``ms_label`` (when label codes are given) and ``loss``.
    """
    if mask_source not in ("label_net", "labels"):
        raise ValueError(f"mask_source must be 'label_net' or 'labels', got {mask_source!r}")
    truth = label_similarity(labels).bool()
    if mask_source == "label_net":
        if label_codes is None:
            raise ValueError("mask_source='label_net' needs label_codes (the label network's output)")
        with torch.no_grad():
            similar = label_codes @ label_codes.T > 0
    else:
        similar = truth
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    ms = {"alpha": alpha, "beta": beta, "lam": lam, "epsilon": epsilon}
    terms = {
        "ms_image": multi_similarity_loss(similarity_matrix(h_img, h_img, normalize), similar & ~eye, ~similar, **ms),
        "ms_text": multi_similarity_loss(similarity_matrix(h_txt, h_txt, normalize), similar & ~eye, ~similar, **ms),
        # Across modalities image i and text i are two items of a positive pair: the diagonal stays a positive.
        "ms_cross": multi_similarity_loss(similarity_matrix(h_img, h_txt, normalize), similar, ~similar, **ms),
    }
    loss = terms["ms_image"] + terms["ms_text"] + terms["ms_cross"]
    if label_codes is not None:
        sim = similarity_matrix(label_codes, label_codes, normalize)
        label_ms = ms | {"lam": label_lam, "epsilon": epsilon if label_mining else math.inf}
        terms["ms_label"] = multi_similarity_loss(sim, truth & ~eye, ~truth, **label_ms)
        loss = loss + label_weight * terms["ms_label"]
    terms["loss"] = loss
    return terms


class LabelNetwork(nn.Module):
    """Linear(C → ⌊(C+K)/2⌋) → ReLU → Linear(→ K) → tanh(a·h): DMsH-LN's label-guided network."""

    def __init__(self, num_classes: int, n_bits: int) -> None:
        super().__init__()
        hidden = (num_classes + n_bits) // 2
        self.net = nn.Sequential(nn.Linear(num_classes, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, n_bits))

    def forward(self, labels: Tensor, scale: float = 1.0) -> Tensor:
        return torch.tanh(scale * self.net(labels.float()))


@register_method(name="DMsH-LN")
class DMsHLN(CrossModalHashingMethod):
    """Deep multi-similarity hashing with a label-guided network (Wu, Qin et al., Neurocomputing 2025).

    Under DDP with n processes and a global batch B, the image-text pairs of the contrastive terms are formed within
    each process's rows: the effective in-batch size of those terms is B/n (the one-process objective needs
    ``devices=1``).
    """

    paper = Paper(
        title="Deep multi-similarity hashing via label-guided network for cross-modal retrieval",
        authors="Wu, Qin et al.",
        venue="Neurocomputing 616",
        year=2025,
        url="https://www.sciencedirect.com/journal/neurocomputing/vol/616",
        code="https://github.com/QinLab-WFU/DMsH-LN",
    )
    supervision = "cross-modal"
    ddp_batch = "per-process"  # see the class docstring
    loss_function = staticmethod(dmsh_ln_loss)
    # Released code (utils/get_args.py, train/hash_train.py): BertAdam (AdamW-style), lr 1e-3 heads / 1e-5 CLIP,
    # wd 0.2, 10 % linear warm-up then cosine, 100 epochs, batch 128, CLIP ViT-B/32 towers, 32 text tokens.
    paper_training = {
        "optimizer": "adamw",
        "lr": 1e-3,
        "backbone_lr": 1e-5,
        "weight_decay": 0.2,
        "scheduler": "cosine",
        "warmup_epochs": 10,
        "max_epochs": 100,
        "batch_size": 128,
    }

    def __init__(
        self,
        n_bits: int = 64,
        alpha: float = 2.0,  # MS positive scale α (released code: scale_pos)
        beta: float = 40.0,  # MS negative scale β (released code: scale_neg)
        lam: float = 0.5,  # MS threshold λ (released code: thresh)
        epsilon: float = 0.1,  # MS mining margin ε (released code: margin)
        normalize: str = "embeddings",  # MS paper's cosine; "similarity_rows" = released code
        label_net: bool = True,  # the label-guided network (paper Sec. 3)
        mask_source: str = "labels",  # positives from the labels (released code) or "label_net": [Y_L Y_Lᵀ > 0]
        label_weight: float = 1.0,  # hashbench: weight of MS(Y_L) that trains the label network
        label_lam: float = 0.0,  # hashbench: λ of MS(Y_L)
        label_mining: bool = False,  # hashbench: mining in MS(Y_L)
        head_dropout: float = 0.2,  # released code: LinearHash dropout p = 0.2
        **kwargs: Any,
    ) -> None:
        if normalize not in ("embeddings", "similarity_rows"):
            raise ValueError(f"normalize must be 'embeddings' or 'similarity_rows', got {normalize!r}")
        if mask_source not in ("label_net", "labels"):
            raise ValueError(f"mask_source must be 'label_net' or 'labels', got {mask_source!r}")
        if mask_source == "label_net" and not label_net:
            raise ValueError("mask_source='label_net' needs label_net=True")
        super().__init__(n_bits=n_bits, head_dropout=head_dropout, **kwargs)
        self.ms = {"alpha": alpha, "beta": beta, "lam": lam, "epsilon": epsilon}
        self.normalize, self.mask_source, self.label_weight = normalize, mask_source, label_weight
        self.label_ms = {"label_lam": label_lam, "label_mining": label_mining}

    def on_data_configured(self) -> None:
        if self.hparams.label_net:
            self.label_network = LabelNetwork(self.hparams.num_classes, self.n_bits).to(self.device)

    def label_scale(self) -> float:
        """a = sqrt(epoch + 1): the label network's tanh sharpens as training goes on."""
        epoch = self.current_epoch if self._trainer is not None else 0
        return math.sqrt(epoch + 1)

    def compute_loss(self, batch: Any) -> dict[str, Tensor]:
        h_img = self(batch.image)
        h_txt = self.text_forward(batch.text)
        y_l = self.label_network(batch.labels, self.label_scale()) if self.hparams.label_net else None
        return self.loss_function(
            h_img,
            h_txt,
            batch.labels,
            y_l,
            normalize=self.normalize,
            mask_source=self.mask_source,
            label_weight=self.label_weight,
            **self.label_ms,
            **self.ms,
        )
