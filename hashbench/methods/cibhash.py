"""CIBHash: Unsupervised Hashing with Contrastive Information Bottleneck.

Zexuan Qiu, Qinliang Su, Zijing Ou, Jianxing Yu, Changyou Chen. "Unsupervised Hashing with Contrastive Information
Bottleneck". IJCAI 2021, pp. 959–965. https://doi.org/10.24963/ijcai.2021/133 — official code:
https://github.com/zexuanqiu/CIBHash

Idea: two random augmentations of an image should receive the same binary code while other images' codes are pushed
away: a SimCLR-style NT-Xent contrastive loss is applied directly to the binary codes of the two views (codes
b = sign(σ(h) − 0.5) with a straight-through gradient). Seen through the information bottleneck, the contrastive
term keeps the information the views share and a β-weighted KL term limits what the code keeps of the particular
view; the official code makes that term the symmetrised KL divergence between the two views' Bernoulli code
distributions σ(h¹), σ(h²), each side measured against the other side held fixed.

Deviations from the paper:
- The KL term is the official code's (``compute_kl``: KL(p¹ || sg p²) and KL(p² || sg p¹), averaged, with 1e-8
  inside the logs), not a KL to a fixed Bernoulli(0.5) prior; the paper's text was not read here, so its exact form
  of the bound is not reproduced beyond what the code computes.
- Augmentations run on the tensor batch inside the method (the datamodule gives one unaugmented image): the
  official pipeline is RandomResizedCrop(224, scale 0.5–1) → horizontal flip → colour jitter (0.4, 0.4, 0.4, 0.1)
  with p = 0.7 → grayscale p = 0.2 → 3×3 Gaussian blur (σ 0.1–2, p = 0.5). Here: random resized crop (area 0.5–1,
  aspect 3/4–4/3) at the native size, flip, brightness/contrast jitter with p = 0.7 (on the normalised tensor:
  contrast ×[0.6, 1.4] around the image mean, brightness as a shift of ±0.4 image standard deviations; saturation
  and hue are left out because Fashion-MNIST is grey), grayscale p = 0.2 on 3-channel inputs only, and the 3×3
  blur. Random draws come from torch's global generator (seeded by the run's seed).
- Network: hashbench's backbone + hash head (``compact_cnn`` trained end to end offline); the official code freezes
  VGG-16 and trains a 4096 → 1024 → K MLP (``hash_hidden=1024`` gives the hidden layer).
- The two views go through the network as one batch of 2B (the hash head's BatchNorm sees both).
- Optimiser: hashbench's shared profile; the official recipe (Adam lr 1e-3, batch 64, 60 epochs, at least 80 at 16
  bits, early stopping on validation) is recorded in ``paper_training`` without the early stopping.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from hashbench.methods.base import HashingMethod, Paper
from hashbench.nn.losses import sign_with_zero_positive
from hashbench.registry import register_method

__all__ = ["cibhash_augment", "cibhash_loss", "CIBHash"]


def _bernoulli_kl(p: Tensor, q: Tensor, eps: float = 1e-8) -> Tensor:
    """Σ_k KL(Bern(p_k) || Bern(q_k)) averaged over the batch, q held fixed (official ``compute_kl``)."""
    q = q.detach()
    kl = p * (torch.log(p + eps) - torch.log(q + eps)) + (1 - p) * (torch.log(1 - p + eps) - torch.log(1 - q + eps))
    return kl.sum(dim=1).mean()


def cibhash_loss(
    logits_1: Tensor, logits_2: Tensor, temperature: float = 0.3, beta: float = 0.001
) -> dict[str, Tensor]:
    """CIBHash's loss on the hash-layer outputs of two views of the same batch.

    Args:
        logits_1: hash-layer outputs h¹ [B, K] of the first views.
        logits_2: hash-layer outputs h² [B, K] of the second views (row i = the same image as in ``logits_1``).
        temperature: τ of the contrastive loss.
        beta: β, the weight of the KL term.

    Returns:
        ``contrastive``: NT-Xent over the 2B codes b = sign(σ(h) − 0.5) (straight-through: the gradient passes to
        σ(h) − 0.5 unchanged): for each code, −log of the softmax over the other 2B − 1 codes of cos/τ at its other
        view, averaged over the 2B codes; ``kl``: (KL(p¹ || sg p²) + KL(p² || sg p¹))/2 with p = σ(h), summed over
        bits and averaged over the batch; ``loss`` = contrastive + β·kl.
    """
    p1, p2 = torch.sigmoid(logits_1), torch.sigmoid(logits_2)
    c1, c2 = p1 - 0.5, p2 - 0.5
    z1 = c1 + (sign_with_zero_positive(c1.detach()) - c1).detach()
    z2 = c2 + (sign_with_zero_positive(c2.detach()) - c2).detach()
    n = z1.shape[0]
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / temperature
    self_pair = torch.eye(2 * n, dtype=torch.bool, device=z.device)
    sim = sim.masked_fill(self_pair, float("-inf"))
    positive = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    contrastive = F.cross_entropy(sim, positive)
    kl = 0.5 * (_bernoulli_kl(p1, p2) + _bernoulli_kl(p2, p1))
    return {"contrastive": contrastive, "kl": kl, "loss": contrastive + beta * kl}


def _gaussian_blur3(x: Tensor, sigma: Tensor) -> Tensor:
    """3×3 Gaussian blur with one σ per image (reflect padding)."""
    b, c, h, w = x.shape
    offsets = torch.tensor([-1.0, 0.0, 1.0], device=x.device, dtype=x.dtype)
    k1 = torch.exp(-(offsets.view(1, 3) ** 2) / (2 * sigma.view(b, 1).to(x.dtype) ** 2))
    k1 = k1 / k1.sum(dim=1, keepdim=True)
    k2 = (k1.view(b, 3, 1) * k1.view(b, 1, 3)).repeat_interleave(c, dim=0).view(b * c, 1, 3, 3)
    padded = F.pad(x.reshape(1, b * c, h, w), (1, 1, 1, 1), mode="reflect")
    return F.conv2d(padded, k2, groups=b * c).view(b, c, h, w)


def cibhash_augment(
    x: Tensor,
    min_scale: float = 0.5,
    flip_prob: float = 0.5,
    jitter_prob: float = 0.7,
    jitter_strength: float = 0.4,
    grayscale_prob: float = 0.2,
    blur_prob: float = 0.5,
) -> Tensor:
    """One random view of every image of a normalised batch (torch ops; draws from the global generator).

    Random resized crop (area fraction in [min_scale, 1], aspect ratio in [3/4, 4/3], bilinear, same output size)
    with a horizontal flip, brightness/contrast jitter, grayscale (3-channel inputs) and a 3×3 Gaussian blur
    (σ in [0.1, 2]), each applied to an image with its probability.

    Args:
        x: images [B, C, H, W] (already normalised by the datamodule).
        min_scale: smallest crop area as a fraction of the image.
        flip_prob: probability of a horizontal flip.
        jitter_prob: probability of brightness/contrast jitter.
        jitter_strength: contrast factor in [1 − s, 1 + s]; brightness shift in [−s, s] image standard deviations.
        grayscale_prob: probability of replacing the channels by their mean (only when C = 3).
        blur_prob: probability of the blur.

    Returns:
        the augmented batch, same shape and dtype.
    """
    b, c = x.shape[:2]
    dev, dt = x.device, x.dtype

    def uniform(lo: float, hi: float, *shape: int) -> Tensor:
        return lo + (hi - lo) * torch.rand(*shape, device=dev, dtype=dt)

    area = uniform(min_scale, 1.0, b)
    ratio = torch.exp(uniform(math.log(3 / 4), math.log(4 / 3), b))
    sw, sh = torch.sqrt(area * ratio).clamp(max=1.0), torch.sqrt(area / ratio).clamp(max=1.0)
    tx, ty = (1 - sw) * uniform(-1.0, 1.0, b), (1 - sh) * uniform(-1.0, 1.0, b)
    flip = torch.where(torch.rand(b, device=dev) < flip_prob, -1.0, 1.0).to(dt)
    zero = torch.zeros_like(sw)
    theta = torch.stack([torch.stack([sw * flip, zero, tx], 1), torch.stack([zero, sh, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)

    jitter = (torch.rand(b, 1, 1, 1, device=dev) < jitter_prob).to(dt)
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    std = out.std(dim=(1, 2, 3), keepdim=True)
    contrast = 1 + jitter * uniform(-jitter_strength, jitter_strength, b, 1, 1, 1)
    shift = jitter * uniform(-jitter_strength, jitter_strength, b, 1, 1, 1) * std
    out = (out - mean) * contrast + mean + shift

    if c == 3:
        grey = torch.rand(b, 1, 1, 1, device=dev) < grayscale_prob
        out = torch.where(grey, out.mean(dim=1, keepdim=True).expand_as(out), out)

    blur = torch.rand(b, 1, 1, 1, device=dev) < blur_prob
    blurred = _gaussian_blur3(out, uniform(0.1, 2.0, b))
    return torch.where(blur, blurred, out)


@register_method
class CIBHash(HashingMethod):
    """Contrastive information-bottleneck hashing (Qiu et al., IJCAI 2021): NT-Xent on the codes of two views."""

    paper = Paper(
        title="Unsupervised Hashing with Contrastive Information Bottleneck",
        authors="Zexuan Qiu, Qinliang Su, Zijing Ou, Jianxing Yu, Changyou Chen",
        venue="IJCAI",
        year=2021,
        url="https://doi.org/10.24963/ijcai.2021/133",
        code="https://github.com/zexuanqiu/CIBHash",
    )
    supervision = "unsupervised"
    ddp_batch = "global"  # NT-Xent negatives over every process's rows (base.HashingMethod.global_batch)
    loss_function = staticmethod(cibhash_loss)
    # Official main.py / base_model.py defaults: Adam lr 1e-3 (no weight decay), batch 64, 60 epochs.
    paper_training = {"optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0, "batch_size": 64, "max_epochs": 60}

    def __init__(
        self,
        n_bits: int = 48,
        temperature: float = 0.3,  # tau of NT-Xent (official --temperature default)
        beta: float = 0.001,  # weight of the KL term (official --weight default)
        min_scale: float = 0.5,  # RandomResizedCrop scale (0.5, 1.0), official data.py
        flip_prob: float = 0.5,  # RandomHorizontalFlip
        jitter_prob: float = 0.7,  # RandomApply([ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.7)
        jitter_strength: float = 0.4,  # ColorJitter brightness / contrast 0.4
        grayscale_prob: float = 0.2,  # RandomGrayscale(p=0.2)
        blur_prob: float = 0.5,  # GaussianBlur(3): applied with probability 0.5, sigma in [0.1, 2]
        **kwargs: Any,
    ) -> None:
        super().__init__(n_bits=n_bits, **kwargs)
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if not 0 < min_scale <= 1:
            raise ValueError(f"min_scale must be in (0, 1], got {min_scale}")
        self.temperature, self.beta = temperature, beta
        self.augment_kwargs = {
            "min_scale": min_scale,
            "flip_prob": flip_prob,
            "jitter_prob": jitter_prob,
            "jitter_strength": jitter_strength,
            "grayscale_prob": grayscale_prob,
            "blur_prob": blur_prob,
        }

    def compute_loss(self, batch: Any) -> dict[str, Tensor]:
        x = batch.image
        views = torch.cat([cibhash_augment(x, **self.augment_kwargs), cibhash_augment(x, **self.augment_kwargs)])
        logits_1, logits_2 = self.hash_logits(views).chunk(2)
        # Under DDP the contrastive loss sees the global batch (as in one process).
        logits_1, logits_2 = self.global_batch(logits_1, logits_2)
        return self.loss_function(logits_1, logits_2, self.temperature, self.beta)
