"""DCHMT: Differentiable Cross-modal Hashing via Multimodal Transformers.

Junfeng Tu, Xueliang Liu, Zongxiang Lin, Richang Hong, Meng Wang. "Differentiable Cross-Modal Hashing via
Multimodal Transformers". ACM MM 2022, pp. 453–461. https://doi.org/10.1145/3503161.3548187 — official code:
https://github.com/kalenforn/DCHMT (the paper and code call the method DCMHT; hashbench registers it as DCHMT).

CLIP's image and text transformers (ViT-B/32) encode the two modalities; each is followed by a *selecting
mechanism* instead of sign(·): Linear(D → 128) → ReLU, then for every bit k its own Linear(128 → 2) and a softmax,
so bit k is a 2-vector p_k = (p_k⁻, p_k⁺) and the code is the index of its larger entry (+1 for the second). The
2K-dimensional concatenations P are compared by Euclidean distance D_ij = ‖P_i − P_j‖ in a similarity-preserving
loss, applied across modalities and within each:

    ℓ(A, B) = mean_ij [S_ij·D_ij]² + mean_ij [(1 − S_ij)·(m − min(D_ij, m))]²,   m = sqrt(2K·ϑ),

with S_ij = [labels_i · labels_j > 0] and L = ℓ(P_I, P_T) + ℓ(P_I, P_I) + ℓ(P_T, P_T). Similar pairs are pulled to
distance 0, dissimilar pairs pushed to at least m, the distance at which a fraction ϑ of the bits differ (a bit
that differs fully contributes 2 to D²). No quantization term: the code is read off the selection.

The loss follows the released code (train/hash_train.py ``similarity_loss`` / ``our_loss`` with the defaults
``--similarity-function euclidean --loss-type l2``); the paper's text was not read (its Table 1 is reproduced in
the authors' README as an image). Not a reconstruction.

Deviations from the paper:
- The selecting head is parameterised as in the released code (K separate Linear(128 → 2) layers, stored as one
  Linear(128 → 2K) with each 2×128 block initialised like its own layer), but hashbench's relaxed code of bit k is
  u_k = p_k⁺ − p_k⁻ = tanh((z_k⁺ − z_k⁻)/2), so that ``forward``/``encode`` work as for every method; the loss reads
  the probabilities P = ((1 − u)/2, (1 + u)/2), which are exactly the softmax outputs.
- Binarisation: bit k = +1 when z_k⁺ ≥ z_k⁻ (hashbench's sign(0) = +1); the released argmax gives −1 on an exact tie.
- ``similarity="cosine"`` (1 − cos, with the positive margin ``threshold``) and ``loss_type="l1"`` are the released
  code's other options; the defaults are its defaults.
- Offline default networks: the compact CNN and the bag-of-words MLP, each with the selecting head;
  ``backbone="clip", text_encoder="clip", clip_pretrained="openai"`` gives the paper's CLIP ViT-B/32 towers. The
  released code tokenises captions to 32 tokens; hashbench's CLIP text tower takes its full context (77).
- Optimiser: AdamW with linear warm-up then cosine decay (the released code's BertAdam has no bias correction and
  clips the gradient norm at 1.0; neither is reproduced).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from hashbench.methods._crossmodal import CrossModalHashingMethod
from hashbench.methods.base import Paper
from hashbench.nn.losses import label_similarity
from hashbench.registry import register_method

__all__ = ["selection_probabilities", "dchmt_loss", "SelectingHead", "DCHMT"]


def selection_probabilities(u: Tensor) -> Tensor:
    """The selecting mechanism's 2-vectors [B, K, 2] = ((1 − u)/2, (1 + u)/2) from relaxed codes u = p⁺ − p⁻."""
    return torch.stack(((1 - u) / 2, (1 + u) / 2), dim=-1)


def _pair_terms(
    a: Tensor, b: Tensor, similar: Tensor, vartheta: float, similarity: str, loss_type: str, threshold: float
) -> tuple[Tensor, Tensor]:
    if similarity == "euclidean":
        dist = torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist")
        margin = math.sqrt(a.shape[1] * vartheta)  # a is [B, 2K]: m = sqrt(2K·ϑ)
        positive = dist * similar
        negative = (margin - torch.clamp(dist, max=margin)) * (1 - similar)
    else:  # cosine distance 1 − cos: positives tolerated up to ``threshold``, negatives pushed to distance ≥ 1
        a_n = a / a.norm(dim=1, keepdim=True)
        b_n = b / b.norm(dim=1, keepdim=True)
        dist = 1 - a_n @ b_n.T
        positive = torch.clamp(dist * similar, min=threshold) - threshold
        negative = (1 - torch.clamp(dist, max=1.0)) * (1 - similar)
    if loss_type == "l2":
        return positive.pow(2).mean(), negative.pow(2).mean()
    return positive.mean(), negative.mean()


def dchmt_loss(
    probs_image: Tensor,
    probs_text: Tensor,
    labels: Tensor,
    vartheta: float = 0.5,
    similarity: str = "euclidean",
    loss_type: str = "l2",
    threshold: float = 0.1,
) -> dict[str, Tensor]:
    """DCHMT's similarity-preserving loss on the selecting mechanism's outputs.

    Args:
        probs_image: image selections [B, K, 2] (or flattened [B, 2K]); each bit's pair sums to 1.
        probs_text: text selections, same shape; row i pairs with image i.
        labels: multi-hot labels [B, C]; S_ij = 1 when items i and j share a label.
        vartheta: ϑ, the fraction of differing bits beyond which a dissimilar pair costs nothing (Euclidean).
        similarity: ``euclidean`` (D = ‖P_i − P_j‖) or ``cosine`` (D = 1 − cos(P_i, P_j)).
        loss_type: ``l2`` (squared terms) or ``l1``.
        threshold: positive margin of the cosine form (``sim_threshold`` in the released code).

    Returns:
        ``cross_positive``, ``cross_negative`` (image–text pairs), ``image_positive``, ``image_negative``,
        ``text_positive``, ``text_negative`` (within each modality) and their sum ``loss``.
    """
    if similarity not in ("euclidean", "cosine"):
        raise ValueError(f"similarity must be 'euclidean' or 'cosine', got {similarity!r}")
    if loss_type not in ("l2", "l1"):
        raise ValueError(f"loss_type must be 'l2' or 'l1', got {loss_type!r}")
    p_i, p_t = probs_image.flatten(1), probs_text.flatten(1)
    similar = label_similarity(labels).to(p_i.dtype)
    terms: dict[str, Tensor] = {}
    for name, (a, b) in {"cross": (p_i, p_t), "image": (p_i, p_i), "text": (p_t, p_t)}.items():
        terms[f"{name}_positive"], terms[f"{name}_negative"] = _pair_terms(
            a, b, similar, vartheta, similarity, loss_type, threshold
        )
    terms["loss"] = sum(terms.values())  # type: ignore[assignment]
    return terms


class SelectingHead(nn.Module):
    """DCHMT's selecting mechanism: Linear(D → hidden) → ReLU → K × Linear(hidden → 2), returned as the half logit
    differences (z_k⁺ − z_k⁻)/2 [B, K] (tanh of which is p_k⁺ − p_k⁻ of the K softmaxes).

    Initialisation as in the released code: Kaiming-uniform with ``mode="fan_out"`` and zero biases, each bit's
    2×hidden block with the fan-out of its own 2-output layer.
    """

    def __init__(self, in_dim: int, n_bits: int, hidden: int = 128) -> None:
        super().__init__()
        self.n_bits = n_bits
        self.fc = nn.Linear(in_dim, hidden)
        self.select = nn.Linear(hidden, 2 * n_bits)
        nn.init.kaiming_uniform_(self.fc.weight, mode="fan_out")
        nn.init.zeros_(self.fc.bias)
        # kaiming_uniform_(fan_out=2) of each Linear(hidden, 2): bound = sqrt(2)·sqrt(3 / 2) = sqrt(3)
        nn.init.uniform_(self.select.weight, -math.sqrt(3.0), math.sqrt(3.0))
        nn.init.zeros_(self.select.bias)

    def pair_logits(self, x: Tensor) -> Tensor:
        """The K 2-way logits [B, K, 2] (index 1 = the +1 choice)."""
        return self.select(torch.relu(self.fc(x))).view(x.shape[0], self.n_bits, 2)

    def forward(self, x: Tensor) -> Tensor:
        z = self.pair_logits(x)
        return (z[..., 1] - z[..., 0]) / 2


@register_method
class DCHMT(CrossModalHashingMethod):
    """Differentiable cross-modal hashing via multimodal transformers (Tu et al., ACM MM 2022)."""

    paper = Paper(
        title="Differentiable Cross-Modal Hashing via Multimodal Transformers",
        authors="Junfeng Tu, Xueliang Liu, Zongxiang Lin, Richang Hong, Meng Wang",
        venue="ACM MM",
        year=2022,
        url="https://doi.org/10.1145/3503161.3548187",
        code="https://github.com/kalenforn/DCHMT",
    )
    supervision = "cross-modal"
    ddp_batch = "global"  # in-batch pairs over every process's rows (base.HashingMethod.global_batch)
    loss_function = staticmethod(dchmt_loss)
    # Released code (utils/get_args.py, train/hash_train.py): BertAdam, lr 1e-3 heads / 1e-5 CLIP, weight decay
    # 0.2, 10 % linear warm-up then cosine, 100 epochs, batch 64, CLIP ViT-B/32 towers (OpenAI weights).
    paper_training = {
        "optimizer": "adamw",
        "lr": 1e-3,
        "backbone_lr": 1e-5,
        "weight_decay": 0.2,
        "scheduler": "cosine",
        "warmup_epochs": 10,
        "max_epochs": 100,
        "batch_size": 64,
    }

    def __init__(
        self,
        n_bits: int = 64,
        vartheta: float = 0.5,  # ϑ of m = sqrt(2K·ϑ) (get_args.py --vartheta; README's COCO command: 0.75)
        similarity: str = "euclidean",  # distance between selections (get_args.py --similarity-function)
        loss_type: str = "l2",  # squared (l2) or plain (l1) terms (get_args.py --loss-type)
        threshold: float = 0.1,  # positive margin of the cosine form (get_args.py --sim-threshold)
        select_hidden: int = 128,  # width of the selecting head's first layer (hash_model.py LINEAR_EMBED)
        **kwargs: Any,
    ) -> None:
        if similarity not in ("euclidean", "cosine"):
            raise ValueError(f"similarity must be 'euclidean' or 'cosine', got {similarity!r}")
        if loss_type not in ("l2", "l1"):
            raise ValueError(f"loss_type must be 'l2' or 'l1', got {loss_type!r}")
        if not 0 < vartheta <= 1:
            raise ValueError(f"vartheta must lie in (0, 1], got {vartheta}")
        super().__init__(n_bits=n_bits, **kwargs)
        self.loss_kwargs = {"vartheta": vartheta, "similarity": similarity, "loss_type": loss_type}
        self.loss_kwargs["threshold"] = threshold

    def _build_network(self, in_channels: int, image_size: int) -> None:
        super()._build_network(in_channels, image_size)
        self.hash_layer = SelectingHead(self.backbone.feature_dim, self.n_bits, self.hparams.select_hidden)

    def _build_text_network(self) -> None:
        super()._build_text_network()
        if self.text_encoder is not None:
            hidden = self.hparams.select_hidden
            self.text_hash_layer = SelectingHead(self.text_encoder.feature_dim, self.n_bits, hidden)

    def compute_loss(self, batch: Any) -> dict[str, Tensor]:
        # Relaxed codes u = p⁺ − p⁻ (tanh of the heads' half logit differences) → the softmax pairs.
        u_img, u_txt, labels = self.global_batch(self(batch.image), self.text_forward(batch.text), batch.labels)
        probs = selection_probabilities(u_img), selection_probabilities(u_txt)
        return self.loss_function(*probs, labels, **self.loss_kwargs)
