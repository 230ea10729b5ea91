"""DJSRH: Deep Joint-Semantics Reconstructing Hashing for large-scale unsupervised cross-modal retrieval.

Shupeng Su, Zhisheng Zhong, Chao Zhang. "Deep Joint-Semantics Reconstructing Hashing for Large-Scale Unsupervised
Cross-Modal Retrieval". ICCV 2019.
http://openaccess.thecvf.com/content_ICCV_2019/papers/Su_Deep_Joint-Semantics_Reconstructing_Hashing_for_Large-Scale_Unsupervised_Cross-Modal_Retrieval_ICCV_2019_paper.pdf
— official code: https://github.com/zs-zhong/DJSRH. The formulas and defaults below are those of the released code
(train.py, settings.py, models.py), which implements the abstract's joint-semantics affinity and reconstruction;
not a reconstruction.

An unsupervised method: no label is read. Per batch of m image–text pairs, the cosine similarities of fixed image
features (an ImageNet AlexNet's fc7) and of the bag-of-words texts, rescaled to S = 2·cos − 1, are fused into the
joint-semantics affinity S̃ = β·S_I + (1 − β)·S_T and diffused once, S = (1 − η)·S̃ + η·S̃S̃ᵀ/m. The codes
reconstruct μ·S with their cosine similarities, across modalities and within each:

    L = ‖μS − cos(B_I, B_T)‖² + λ₁·‖μS − cos(B_I, B_I)‖² + λ₂·‖μS − cos(B_T, B_T)‖²   (mean over the m² entries)

with B = tanh(a·h) and a = sqrt(epoch + 1). Binary codes are sign(h).

Deviations from the paper:
- Reduction: each reconstruction term is the mean over the m² entries (``F.mse_loss`` in the released code), not a
  sum; this only rescales the learning rate.
- Image features for S_I: a frozen copy of the image backbone as built (``image_features="backbone"``), which is
  the paper's fixed AlexNet fc7 only with ``backbone="alexnet", pretrained=True`` (the ``paper`` profile). The
  offline default network is the compact CNN from scratch, so its frozen copy gives random-network features;
  ``image_features="pixels"`` uses the pixels instead.
- Text features for S_T: the bag-of-words vector (the paper); for CLIP-protocol captions (token ids) a frozen copy
  of the text encoder (``text_features="auto"``), since those protocols have no bag-of-words vectors.
- The image hash layer trains at ``backbone_lr`` with the image backbone (LR_IMG in the released code), the text
  network at ``lr`` (LR_TXT). In the released code the image network's optimiser covers the whole AlexNet
  (MIRFlickr/NUS-WIDE settings); the same here.
- β defaults to the MIRFlickr value 0.9 (released code: 0.6 on NUS-WIDE, 0.3 on WIKI).
- The paper evaluates mAP@50; hashbench's tables use the protocol's cut-off (mAP@all on the cross-modal protocols).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from hashbench.methods._crossmodal import UnsupervisedCrossModalHashing, cosine_affinity
from hashbench.methods.base import Paper
from hashbench.registry import register_method

__all__ = ["djsrh_similarity", "djsrh_loss", "DJSRH"]


def djsrh_similarity(
    image_features: Tensor, text_features: Tensor, beta: float = 0.9, eta: float = 0.4, mu: float = 1.5
) -> Tensor:
    """The scaled joint-semantics affinity matrix μ·S [m, m] of one batch (no gradient flows into it).

    S_I, S_T = 2·cos − 1 of the image / text features; S̃ = β·S_I + (1 − β)·S_T; S = (1 − η)·S̃ + η·S̃S̃ᵀ/m.
    """
    with torch.no_grad():
        fused = beta * cosine_affinity(image_features) + (1 - beta) * cosine_affinity(text_features)
        joint = (1 - eta) * fused + eta * fused @ fused.T / fused.shape[0]
        return mu * joint


def djsrh_loss(
    codes_image: Tensor,
    codes_text: Tensor,
    image_features: Tensor,
    text_features: Tensor,
    beta: float = 0.9,
    eta: float = 0.4,
    mu: float = 1.5,
    lambda1: float = 0.1,
    lambda2: float = 0.1,
) -> dict[str, Tensor]:
    """DJSRH's reconstruction loss for one batch; labels are not an input.

    Args:
        codes_image: relaxed image codes B_I [m, K] (tanh outputs).
        codes_text: relaxed text codes B_T [m, K]; row i pairs with image i.
        image_features: fixed image features [m, D_I] for S_I.
        text_features: fixed text features [m, D_T] for S_T (the bag of words in the paper).
        beta: β, weight of S_I in S̃.
        eta: η, weight of the diffused term S̃S̃ᵀ/m.
        mu: μ, scale of the target.
        lambda1: λ₁, weight of the image–image term.
        lambda2: λ₂, weight of the text–text term.

    Returns:
        ``cross`` = mean (μS − cos(B_I, B_T))², ``intra_image`` = λ₁·mean (μS − cos(B_I, B_I))², ``intra_text`` =
        λ₂·mean (μS − cos(B_T, B_T))² and their sum ``loss``.
    """
    target = djsrh_similarity(image_features, text_features, beta, eta, mu).to(codes_image.dtype)
    b_i, b_t = F.normalize(codes_image, dim=1), F.normalize(codes_text, dim=1)
    terms = {
        "cross": F.mse_loss(b_i @ b_t.T, target),
        "intra_image": lambda1 * F.mse_loss(b_i @ b_i.T, target),
        "intra_text": lambda2 * F.mse_loss(b_t @ b_t.T, target),
    }
    terms["loss"] = terms["cross"] + terms["intra_image"] + terms["intra_text"]
    return terms


@register_method
class DJSRH(UnsupervisedCrossModalHashing):
    """Deep Joint-Semantics Reconstructing Hashing (Su, Zhong, Zhang, ICCV 2019): unsupervised, labels unused."""

    paper = Paper(
        title="Deep Joint-Semantics Reconstructing Hashing for Large-Scale Unsupervised Cross-Modal Retrieval",
        authors="Shupeng Su, Zhisheng Zhong, Chao Zhang",
        venue="ICCV",
        year=2019,
        url=(
            "http://openaccess.thecvf.com/content_ICCV_2019/papers/Su_Deep_Joint-Semantics_Reconstructing_Hashing_"
            "for_Large-Scale_Unsupervised_Cross-Modal_Retrieval_ICCV_2019_paper.pdf"
        ),
        code="https://github.com/zs-zhong/DJSRH",
    )
    supervision = "cross-modal"  # the family; the loss itself is unsupervised (labels are never read)
    ddp_batch = "global"  # in-batch similarities over every process's rows (base.HashingMethod.global_batch)
    loss_function = staticmethod(djsrh_loss)
    # Released code (settings.py, MIRFlickr / NUS-WIDE): SGD momentum 0.9, weight decay 5e-4, LR_IMG 0.001 (the
    # whole AlexNet + hash layer), LR_TXT 0.01, batch 32, 80 epochs, ImageNet AlexNet.
    paper_training = {
        "optimizer": "sgd",
        "lr": 0.01,
        "backbone_lr": 0.001,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "max_epochs": 80,
        "batch_size": 32,
    }

    def __init__(
        self,
        n_bits: int = 64,
        beta: float = 0.9,  # β of S̃ = βS_I + (1 − β)S_T (settings.py BETA: 0.9 MIRFlickr, 0.6 NUS-WIDE)
        eta: float = 0.4,  # η of S = (1 − η)S̃ + ηS̃S̃ᵀ/m (settings.py ETA)
        mu: float = 1.5,  # μ, scale of the reconstructed target μS (settings.py MU)
        lambda1: float = 0.1,  # λ₁, weight of the image-image term (settings.py LAMBDA1)
        lambda2: float = 0.1,  # λ₂, weight of the text-text term (settings.py LAMBDA2)
        **kwargs: Any,
    ) -> None:
        super().__init__(n_bits=n_bits, **kwargs)
        self.loss_kwargs = {"beta": beta, "eta": eta, "mu": mu, "lambda1": lambda1, "lambda2": lambda2}

    def compute_loss(self, batch: Any) -> dict[str, Tensor]:
        codes_image, codes_text = self.relaxed_codes(batch.image, batch.text)
        features = self.image_features(batch.image), self.text_features(batch.text)
        # Under DDP the batch's similarity matrix spans every process's rows (base.HashingMethod.global_batch).
        rows = self.global_batch(codes_image, codes_text, *features)
        return self.loss_function(*rows, **self.loss_kwargs)
