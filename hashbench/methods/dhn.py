"""DHN: Deep Hashing Network for Efficient Similarity Retrieval.

Han Zhu, Mingsheng Long, Jianmin Wang, Yue Cao. "Deep Hashing Network for Efficient Similarity Retrieval".
AAAI 2016, pp. 2415-2421. https://ojs.aaai.org/index.php/AAAI/article/view/10235 — official code (Caffe):
https://github.com/thuml/hash-caffe; TensorFlow version by the same group: https://github.com/thulab/DeepHash.

DHN maximises the same pairwise label likelihood as DPSH, σ(Θ_ij)^S_ij (1 − σ(Θ_ij))^(1−S_ij) with
Θ_ij = ½ u_iᵀu_j, and controls the quantisation error with a smooth surrogate of the L1 distance to the binary
cube, log cosh(|u| − 1), which is quadratic near ±1 and linear far from it.

Deviations from the paper:
- Pairs are the ordered pairs (i, j), i ≠ j, of a mini-batch and both terms are means (the likelihood over pairs,
  the quantisation term over the B·K outputs), as hashbench specifies it; the paper sums over pairs.
- Relaxed codes u are the tanh outputs of the hash layer (hashbench's default activation).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from hashbench.methods.base import DEEPHASH_PYTORCH_TRAINING, HashingMethod, Paper
from hashbench.nn.losses import label_similarity, log1p_exp
from hashbench.registry import register_method

__all__ = ["dhn_loss", "log_cosh", "DHN"]


def log_cosh(x: Tensor) -> Tensor:
    """Numerically stable log(cosh(x)) = |x| + log(1 + e^(−2|x|)) − log 2."""
    a = x.abs()
    return a + torch.log1p(torch.exp(-2.0 * a)) - math.log(2.0)


def dhn_loss(u: Tensor, labels: Tensor, alpha: float = 0.1) -> dict[str, Tensor]:
    """DHN loss of a mini-batch: pairwise likelihood over in-batch pairs plus the log-cosh quantisation term.

    Args:
        u: relaxed codes [B, K].
        labels: multi-hot labels [B, C].
        alpha: weight of the quantisation term.

    Returns:
        ``likelihood``, ``quantization`` and their sum ``loss``.
    """
    b = u.shape[0]
    theta = 0.5 * u @ u.T
    s = label_similarity(labels)
    off_diag = ~torch.eye(b, dtype=torch.bool, device=u.device)
    pair = log1p_exp(theta) - s * theta
    likelihood = pair[off_diag].sum() / max(b * (b - 1), 1)
    quantization = alpha * log_cosh(u.abs() - 1.0).mean()
    return {"likelihood": likelihood, "quantization": quantization, "loss": likelihood + quantization}


@register_method
class DHN(HashingMethod):
    """Deep Hashing Network: pairwise likelihood + log-cosh quantisation (Zhu et al., AAAI 2016)."""

    paper = Paper(
        title="Deep Hashing Network for Efficient Similarity Retrieval",
        authors="Han Zhu, Mingsheng Long, Jianmin Wang, Yue Cao",
        venue="AAAI",
        year=2016,
        url="https://ojs.aaai.org/index.php/AAAI/article/view/10235",
        code="https://github.com/thuml/hash-caffe",
    )
    supervision = "pairwise"
    ddp_batch = "global"  # in-batch terms over every process\'s rows (base.HashingMethod.global_batch)
    loss_function = staticmethod(dhn_loss)
    paper_training = dict(DEEPHASH_PYTORCH_TRAINING)

    def __init__(
        self,
        n_bits: int = 48,
        alpha: float = 0.1,  # weight of the pairwise quantisation loss (log cosh) (hashbench's reconstruction)
        **kwargs: Any,
    ) -> None:
        super().__init__(n_bits=n_bits, **kwargs)
        self.alpha = alpha

    def compute_loss(self, batch: Any) -> dict[str, Tensor]:
        u, labels = self.global_batch(self(batch.image), batch.labels)
        return self.loss_function(u, labels, self.alpha)
