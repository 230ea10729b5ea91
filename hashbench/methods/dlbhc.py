"""DLBHC: Deep learning of binary hash codes for fast image retrieval.

Kevin Lin, Huei-Fang Yang, Jen-Hao Hsiao, Chu-Song Chen. "Deep Learning of Binary Hash Codes for Fast Image
Retrieval". CVPR Workshops (DeepVision) 2015.
https://openaccess.thecvf.com/content_cvpr_workshops_2015/W03/papers/Lin_Deep_Learning_of_2015_CVPR_paper.pdf —
official code (Caffe): https://github.com/kevinlin311tw/caffe-cvprw15.

DLBHC inserts a latent layer H with sigmoid activations between the last feature layer (AlexNet's F7) and the
classification layer, and fine-tunes the network with the ordinary classification loss: the latent units learn
hash-like "latent attributes" that the class labels depend on. No pairwise or triplet supervision is needed. An
image's code is its latent activations thresholded at 0.5; the paper then re-ranks the Hamming neighbours with F7
features (coarse-to-fine search).

How it maps onto hashbench: the latent layer is the hash layer, z = hash layer(features), h = σ(z) ∈ (0, 1), and
the relaxed code is u = 2h − 1 = tanh(z/2) ∈ (−1, 1). A linear classifier (with bias, as Caffe's inner-product
layer) reads h, and :func:`dlbhc_loss` is its softmax cross-entropy. The code sign(u) with sign(0) = +1 is the
paper's rule h ≥ 0.5 → 1 in ±1 form (bit 1 ↔ +1, bit 0 ↔ −1).

Deviations from the paper:
- Retrieval uses the Hamming ranking of the codes only; the paper's fine stage (re-ranking by F7 features) is not
  part of a hashing benchmark's metric.
- Threshold tie: h = 0.5 exactly (z = 0) is +1 (hashbench's sign(0) = +1); the official code's ``feat > 0.5``
  makes it 0.
- Multi-label data (which the paper does not treat): a per-label binary cross-entropy with logits instead of the
  softmax cross-entropy.
- hashbench's hash head puts a BatchNorm1d between the latent linear layer and the sigmoid (``hash_bn``, a
  framework-wide choice; ``hash_bn=False`` gives the paper's plain layer).

Paper and official code: the paper's text was not readable from this session. The network and loss above are the
official code's: its demo thresholds ``feat > 0.5``; its training network (latent layer ``fc8_kevin`` → sigmoid →
classifier → softmax loss) and solver were read in the copy kept by a Windows port (xiaowangdu/cvprw15-win), the
official repository's own prototxt files not being reachable. The solver: SGD, base lr 0.001, momentum
0.9, weight decay 5·10⁻⁴, lr × 0.1 after 25,000 of 50,000 iterations, batch 32, and the new classifier at 10× the
base lr (the latent layer at 1×). ``paper_training`` converts that for a 5,000-image training set (hashbench's
``cifar10`` protocol): 50,000 × 32 / 5,000 = 320 epochs, the step at epoch 160; hashbench's head group (latent layer
and classifier together) at lr 0.01 and the pretrained backbone at 0.001, so the latent layer trains at 10× where
the official code has 1×. The network (an ImageNet AlexNet) is set by the table specs' ``paper`` profile.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from hashbench.methods.base import HashingMethod, Paper
from hashbench.registry import register_method

__all__ = ["DLBHC", "dlbhc_loss"]


def dlbhc_loss(
    h: Tensor, labels: Tensor, classifier_weight: Tensor, classifier_bias: Tensor | None, multi_label: bool = False
) -> dict[str, Tensor]:
    """DLBHC's loss: classification of the latent sigmoid activations by a linear layer.

        logits = h Wᵀ + b,   loss = CE(logits, y)   (mean per-label BCE on multi-label data)

    Args:
        h: latent activations σ(z) [B, K] in (0, 1).
        labels: multi-hot labels [B, C] (one-hot for single-label data).
        classifier_weight: W [C, K].
        classifier_bias: b [C] (or None).
        multi_label: per-label binary cross-entropy with logits instead of the softmax cross-entropy.

    Returns:
        ``classification`` and the total ``loss`` (the same value).
    """
    logits = F.linear(h, classifier_weight, classifier_bias)
    if multi_label:
        classification = F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
    else:
        classification = F.cross_entropy(logits, labels.argmax(dim=1))
    return {"classification": classification, "loss": classification}


@register_method
class DLBHC(HashingMethod):
    """A sigmoid latent layer before the classifier, trained by classification (Lin et al., CVPRW 2015)."""

    paper = Paper(
        title="Deep Learning of Binary Hash Codes for Fast Image Retrieval",
        authors="Kevin Lin, Huei-Fang Yang, Jen-Hao Hsiao, Chu-Song Chen",
        venue="CVPR Workshops",
        year=2015,
        url="https://openaccess.thecvf.com/content_cvpr_workshops_2015/W03/papers/Lin_Deep_Learning_of_2015_CVPR_paper.pdf",
        code="https://github.com/kevinlin311tw/caffe-cvprw15",
    )
    supervision = "pointwise"
    ddp_batch = "per-sample"  # under DDP: classification of each image
    loss_function = staticmethod(dlbhc_loss)
    # The official Caffe solver (CIFAR-10), in epochs of a 5,000-image training set (module docstring).
    paper_training = {
        "optimizer": "sgd",
        "lr": 0.01,  # the classifier's 10x of the base lr (latent layer: same group)
        "backbone_lr": 0.001,  # base_lr
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "scheduler": "step",
        "lr_step": 160,  # stepsize 25,000 of 50,000 iterations
        "lr_gamma": 0.1,
        "batch_size": 32,
        "max_epochs": 320,  # 50,000 iterations x 32 images / 5,000 training images
    }

    def __init__(self, n_bits: int = 48, **kwargs: Any) -> None:  # the latent layer's width is the code length
        super().__init__(n_bits=n_bits, **kwargs)

    def activate(self, z: Tensor) -> Tensor:
        # u = 2σ(z) − 1 (= tanh(z/2)): the latent sigmoid rescaled to (−1, 1), so sign(u) is the paper's σ(z) ≥ 0.5
        return 2.0 * torch.sigmoid(z) - 1.0

    def on_data_configured(self) -> None:
        self.classifier = nn.Linear(self.n_bits, self.hparams.num_classes).to(self.device)

    def compute_loss(self, batch: Any) -> dict[str, Tensor]:
        h = torch.sigmoid(self.hash_logits(batch.image))
        return self.loss_function(h, batch.labels, self.classifier.weight, self.classifier.bias, self.multi_label)
