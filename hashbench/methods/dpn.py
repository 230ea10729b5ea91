"""DPN: Deep Polarized Network for Supervised Learning of Accurate Binary Hashing Codes.

Lixin Fan, Kam Woh Ng, Ce Ju, Tianyu Zhang, Chee Seng Chan. "Deep Polarized Network for Supervised Learning of
Accurate Binary Hashing Codes". IJCAI 2020. https://www.ijcai.org/proceedings/2020/115 — official code
(the authors' re-implementation, PyTorch): https://github.com/kamwoh/DPN.

Every class c gets a fixed target code t_c ∈ {−1, +1}^K, and each channel of the hash layer's raw output v is
pushed away from zero towards the sign of its target by the bit-wise hinge-like *polarization loss*

    ℓ_p(v, t) = Σ_k max(m − v_k t_k, 0),

with margin m. The paper shows that this pointwise loss bounds a pairwise Hamming-distance loss from above, so
no pairs are needed, and that target codes drawn at random per class suffice (random codes of K bits are about
K/2 apart). For a multi-label image the loss is summed over its labels: Σ_{c: y_c = 1} ℓ_p(v, t_c). Codes are
b = sign(v).

Targets (:func:`dpn_target_codes`, ``targets``):
- ``"random"`` (default): t_c = sign(g_c), g_c ~ N(0, I_K), i.e. independent fair ±1 bits, from a generator
  seeded with ``target_seed`` (the official code's default ``--centroid-method N``, unseeded there).
- ``"hadamard"``: the first C rows of [H_K; −H_K] when K is a power of two and C ≤ 2K (mutually K/2 or K apart),
  otherwise the random targets above. Not in the paper or its code (CSQ's centres); an option only.
Optional target update (``update_targets_every`` = T > 0, the official code's ``--centroid-update-time``; DPN-A
in DeepHash-pytorch): every T epochs, t_c = sign(Σ_{i: y_ic = 1} sign(v_i)) over the training outputs recorded
during the epoch (a memory bank), keeping t_c's old bit where that sum is 0.

Deviations from the paper:
- Hash layer: hashbench's hash head is a linear layer with bias followed by BatchNorm1d (the framework default
  ``hash_bn=True``); the official code's hash layer is a bias-free linear layer initialised from N(0, 0.01²).
- Target update: multi-label images count towards each of their labels (the official ``update_centroid`` takes
  ``labels.argmax``, i.e. the first label only); the official ``--centroid-update-rate`` (keep only the fraction
  of each class's codes closest to its target) is not offered: all of a class's codes are used (rate 1, the
  default).
- Not offered: the official code's optional cross-entropy head (``--ce``, default 0), output regulariser
  (``--reg``, default 0), optimised targets (``--centroid-method O``) and ternary evaluation (|v_k| < m → 0).
- Random targets are seeded (``target_seed``), so a run is reproducible.

Known behaviour (Fashion-MNIST, ``quick`` profile cut to 3 epochs: Adam lr 10⁻³, batch 128, compact CNN, 48 bits,
seed 0, test mAP@all when these defaults were chosen): 0.695.

Paper and official code:
- Multi-label loss. The official code sums the per-label polarization losses over an image's labels; hashbench
  follows it. DeepHash-pytorch's DPN instead builds one target per image from the label set, sign(Σ_c y_c t_c) with
  random ties (as CSQ does), a different loss.
- Normalisation. The official code sums over bits and averages over the batch; DeepHash-pytorch averages over bits
  too. hashbench follows the official code.
- Training recipe (official ``main.py`` defaults, stated by its README to reproduce the paper): SGD, momentum 0.9,
  weight decay 5·10⁻⁴, lr 10⁻⁴, batch 256, 200 epochs with lr × 0.1 at epoch 100, ImageNet AlexNet, margin
  m = 1. DeepHash-pytorch uses RMSprop lr 10⁻⁵, batch 32, m = 1.
- The paper's full text was read only as far as its abstract here; the loss, the targets and the multi-label rule
  above are those of the official code.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from hashbench.methods.base import HashingMethod, Paper
from hashbench.nn.losses import sign_with_zero_positive
from hashbench.registry import register_method

__all__ = ["dpn_target_codes", "dpn_update_targets", "dpn_loss", "DPN"]


def dpn_target_codes(num_classes: int, n_bits: int, method: str = "random", seed: int = 0) -> Tensor:
    """Target codes [C, K] in {−1, +1}: seeded random signs, or Hadamard rows where they fit.

    Args:
        num_classes: number of classes C.
        n_bits: code length K.
        method: ``"random"`` (t = sign of a standard normal draw) or ``"hadamard"`` (rows of [H_K; −H_K] when K is a
            power of two and C ≤ 2K, else ``"random"``).
        seed: seed of the random draw.
    """
    if num_classes < 1 or n_bits < 1:
        raise ValueError(f"need num_classes >= 1 and n_bits >= 1, got {num_classes} and {n_bits}")
    if method not in ("random", "hadamard"):
        raise ValueError(f"DPN targets must be 'random' or 'hadamard', got {method!r}")
    if method == "hadamard" and n_bits & (n_bits - 1) == 0 and num_classes <= 2 * n_bits:
        from scipy.linalg import hadamard

        h = hadamard(n_bits)
        return torch.from_numpy(np.concatenate([h, -h])[:num_classes].astype(np.float32))
    g = torch.Generator().manual_seed(seed)
    return sign_with_zero_positive(torch.randn(num_classes, n_bits, generator=g))


def dpn_update_targets(codes: Tensor, labels: Tensor, targets: Tensor) -> Tensor:
    """New targets t_c = sign(Σ_{i: y_ic = 1} sign(v_i)), keeping the old bit where the sum is 0.

    Args:
        codes: raw outputs v of training images [N, K] (rows of unseen images may be 0 with all-zero labels).
        labels: their multi-hot labels [N, C].
        targets: current targets [C, K].
    """
    # Unseen images (all-zero label rows) add nothing to any class's vote.
    votes = labels.to(codes.dtype).T @ sign_with_zero_positive(codes)
    return torch.where(votes > 0, 1.0, torch.where(votes < 0, -1.0, targets)).to(targets.dtype)


def dpn_loss(v: Tensor, labels: Tensor, targets: Tensor, margin: float = 1.0) -> dict[str, Tensor]:
    """Polarization loss: mean over the batch of Σ_{c: y_c = 1} Σ_k max(m − v_k t_ck, 0).

    Args:
        v: raw hash outputs [B, K].
        labels: multi-hot labels [B, C] (one-hot for single-label data).
        targets: target codes [C, K] in {−1, +1}.
        margin: m.

    Returns:
        ``polarization`` and ``loss`` (the same value).
    """
    hinge = torch.relu(margin - v[:, None, :] * targets.to(v.dtype)[None, :, :]).sum(2)  # [B, C]
    polarization = (hinge * labels.to(v.dtype)).sum(1).mean()
    return {"polarization": polarization, "loss": polarization}


@register_method
class DPN(HashingMethod):
    """Deep Polarized Network: bit-wise hinge towards per-class target codes (Fan et al., IJCAI 2020)."""

    paper = Paper(
        title="Deep Polarized Network for Supervised Learning of Accurate Binary Hashing Codes",
        authors="Lixin Fan, Kam Woh Ng, Ce Ju, Tianyu Zhang, Chee Seng Chan",
        venue="IJCAI",
        year=2020,
        url="https://www.ijcai.org/proceedings/2020/115",
        code="https://github.com/kamwoh/DPN",
    )
    supervision = "pointwise"
    # Under DDP: per-sample: polarization to fixed target codes (the target update reads the gathered bank).
    ddp_batch = "per-sample"
    loss_function = staticmethod(dpn_loss)
    # The polarization loss acts on the raw hash outputs; codes are their signs.
    activation = "identity"
    # Official main.py defaults (its README: the paper's settings): SGD momentum 0.9, wd 5e-4, lr 1e-4, batch 256,
    # 200 epochs, lr x0.1 at half of them.
    paper_training = {
        "optimizer": "sgd",
        "lr": 1e-4,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "scheduler": "step",
        "lr_step": 100,
        "lr_gamma": 0.1,
        "batch_size": 256,
        "max_epochs": 200,
    }

    def __init__(
        self,
        n_bits: int = 48,
        margin: float = 1.0,  # m of the polarization loss (official code's --margin default)
        targets: str = "random",  # "random" (official --centroid-method N) or "hadamard" (an option, not the paper's)
        target_seed: int = 0,  # seed of the random targets
        update_targets_every: int = 0,  # re-derive targets every T epochs (official --centroid-update-time; 0 = never)
        **kwargs: Any,
    ) -> None:
        if margin < 0:
            raise ValueError(f"DPN needs margin >= 0, got {margin}")
        if targets not in ("random", "hadamard"):
            raise ValueError(f"DPN targets must be 'random' or 'hadamard', got {targets!r}")
        if update_targets_every < 0:
            raise ValueError(f"DPN update_targets_every must be >= 0, got {update_targets_every}")
        super().__init__(n_bits=n_bits, **kwargs)
        self.margin, self.targets, self.target_seed = margin, targets, target_seed
        self.update_targets_every = update_targets_every

    def on_data_configured(self) -> None:
        # Reads hparams: when built from a checkpoint's hyper-parameters this runs inside the base __init__, before
        # this class's __init__ has set its attributes.
        hp = self.hparams
        codes = dpn_target_codes(hp.num_classes, self.n_bits, hp.targets, hp.target_seed)
        self.register_buffer("target_codes", codes.to(self.device))
        if hp.update_targets_every > 0:
            self.add_memory_bank("outputs", self.n_bits)
            self.add_memory_bank("labels", self.hparams.num_classes)

    def compute_loss(self, batch: Any) -> dict[str, Tensor]:
        v = self.hash_logits(batch.image)
        if self.update_targets_every > 0:
            self.update_memory_bank("outputs", batch.index, v)
            self.update_memory_bank("labels", batch.index, batch.labels)
        return self.loss_function(v, batch.labels, self.target_codes, self.margin)

    def on_train_epoch_end(self) -> None:
        every = self.update_targets_every
        if every > 0 and (self.current_epoch + 1) % every == 0:
            old = self.target_codes.clone()
            outputs, labels = self.memory_bank("outputs"), self.memory_bank("labels")
            self.target_codes.copy_(dpn_update_targets(outputs.values, labels.values, old))
            self.log("train/target_flips", (self.target_codes != old).float().mean())
