"""JDSH: Joint-modal Distribution-based Similarity Hashing for large-scale unsupervised deep cross-modal retrieval.

Song Liu, Shengsheng Qian, Yang Guan, Jiawei Zhan, Long Ying. "Joint-modal Distribution-based Similarity Hashing
for Large-scale Unsupervised Deep Cross-modal Retrieval". SIGIR 2020. https://doi.org/10.1145/3397271.3401086 —
official code: https://github.com/KaiserLew/JDSH.

An unsupervised method: no label is read. From fixed image features and bag-of-words texts of a batch, S_I and
S_T (2·cos − 1) are combined with their joint-modal product S_high = n(S_I)·n(S_T)ᵀ (n = L2-normalised rows) into

    S̃ = α·S_I + β·S_T + λ·(S_high + S_highᵀ)/2.

Distribution-based Similarity Decision and Weighting (DSDW; the code's DSW) then sharpens S̃ from the shape of its
value distribution: entries below a left threshold t_l = loc_l − k_l·σ_l (a Gaussian fitted to the left part) are
judged dissimilar and pushed down, S ← (1 + γ_l·e^{−(S − min)})·S, entries above a right threshold
t_r = loc_r + k_r·b_r (a Laplace distribution fitted to the right part) are judged similar and weighted
S ← (1 + γ_r·e^{S − max})·S. The target is μ·DSW(S̃) and, with B = n(tanh(a·h)) (a = sqrt(epoch + 1)),

    L = ‖B_I B_Tᵀ − μS‖² + ‖B_T B_Iᵀ − μS‖² − mean_i ⟨B_I,i, B_T,i⟩ + w·(‖B_I B_Iᵀ − μS‖² + ‖B_T B_Tᵀ − μS‖²)

(each ‖·‖² the mean over the m² entries, w = INTRA).

This module is partly a RECONSTRUCTION. The paper's text was not available; the similarity, the weighting rule and
the loss follow the released code (JDSH.py, config/*.json), where the distribution parameters (loc, scale, min,
max) are hard-coded per dataset. How they were obtained is reconstructed from the method's description (a Gaussian
fit to the left side of the distribution of S̃, a Laplace fit to its right side): hashbench fits them at the start
of training on the S̃ values of the first ``dsw_fit_batches`` training batches (:func:`fit_dsw_parameters`), or takes
them from ``dsw`` (e.g. the released MIRFlickr constants, :data:`RELEASED_DSW`).

Deviations from the paper:
- Reconstructed distribution fit (see above): location = the mode of a 100-bin histogram of the S̃ values, shared
  by both sides (the released constants have loc_l = loc_r); σ_l = root mean square deviation from the mode of the
  values below it (the ML half-Gaussian fit), b_r = mean deviation of the values above it (the ML half-Laplace
  fit); min / max = the extreme values. All entries of S̃ (diagonal included) enter the fit, as DSW is applied to
  all of them.
- The two weighting rules are applied to the original S̃ values (the released code rewrites S̃ in place, so the
  right rule sees already-weighted values; the two agree whenever t_l < t_r and the left values are negative).
- Reduction: means over the m² entries (``F.mse_loss`` in the released code).
- The released code keeps the ImageNet AlexNet fixed (``torch.no_grad``) and trains only the image hash layer;
  hashbench trains the image backbone by default (``freeze_backbone=False``, so the offline compact CNN learns) and
  takes S_I from a frozen copy of it; ``freeze_backbone=True`` is the released setting (the ``paper`` profile).
- Image features: as in DJSRH's hashbench module, a frozen copy of the backbone as built (the paper's fc7 features
  only with ``backbone="alexnet", pretrained=True``) or ``image_features="pixels"``; text features: the bag of
  words (the paper) or a frozen copy of the text encoder for token-id captions.
- Defaults are the released MIRFlickr configuration (α 0.5, β 0.1, λ 0.4, μ 1.4, INTRA 0.1, k_l 2, k_r 4, γ_l 0.1,
  γ_r 0.2); the NUS-WIDE one is α 0.4, β 0.3, λ 0.3, γ_l 0.2. The paper evaluates mAP@50; hashbench's tables use
  the protocol's cut-off.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor

from hashbench.methods._crossmodal import UnsupervisedCrossModalHashing, cosine_affinity
from hashbench.methods.base import Paper
from hashbench.registry import register_method

__all__ = ["DSW_KEYS", "RELEASED_DSW", "jdsh_joint_similarity", "fit_dsw_parameters", "dsw", "jdsh_loss", "JDSH"]

#: the distribution parameters of DSW, in the order of the ``dsw_stats`` buffer
DSW_KEYS = ("loc_left", "scale_left", "loc_right", "scale_right", "min", "max")

#: the released code's constants (config/JDSH_MIRFlickr.json and JDSH_NUSWIDE.json), for ``dsw=...``
RELEASED_DSW: dict[str, dict[str, float]] = {
    "mirflickr": {
        "loc_left": -0.49,
        "scale_left": 0.019,
        "loc_right": -0.49,
        "scale_right": 0.088,
        "min": -0.52,
        "max": 0.68,
    },
    "nuswide": {
        "loc_left": -0.62,
        "scale_left": 0.0128,
        "loc_right": -0.62,
        "scale_right": 0.086,
        "min": -0.64,
        "max": 0.75,
    },
}


def jdsh_joint_similarity(
    image_features: Tensor, text_features: Tensor, alpha: float = 0.5, beta: float = 0.1, lam: float = 0.4
) -> Tensor:
    """The joint-modal similarity S̃ = α·S_I + β·S_T + λ·(S_high + S_highᵀ)/2 of one batch [m, m] (no gradient).

    S_I, S_T are 2·cos − 1 of the features; S_high = n(S_I)·n(S_T)ᵀ with L2-normalised rows: the cosine between
    row i of S_I (image i's similarities to the batch) and row j of S_T (text j's).
    """
    with torch.no_grad():
        s_i, s_t = cosine_affinity(image_features), cosine_affinity(text_features)
        s_high = F.normalize(s_i, dim=1) @ F.normalize(s_t, dim=1).T
        return alpha * s_i + beta * s_t + lam * (s_high + s_high.T) / 2


def fit_dsw_parameters(values: Tensor, bins: int = 100) -> dict[str, float]:
    """Fit DSW's distribution parameters to a sample of S̃ values (hashbench's reconstruction).

    The location is the mode of a ``bins``-bin histogram; the left part (values ≤ mode) gets the ML half-Gaussian
    scale sqrt(mean((v − mode)²)), the right part (values ≥ mode) the ML half-Laplace scale mean(v − mode).

    Args:
        values: 1-D (or any shape) sample of S̃ entries.
        bins: histogram bins for the mode.

    Returns:
        ``{"loc_left", "scale_left", "loc_right", "scale_right", "min", "max"}`` as floats.
    """
    v = values.detach().reshape(-1).double().cpu()
    if v.numel() < 2 or not torch.isfinite(v).all():
        raise ValueError(f"need at least 2 finite similarity values to fit DSW, got {v.numel()}")
    lo, hi = float(v.min()), float(v.max())
    if hi - lo < 1e-12:
        mode = lo
    else:
        counts = torch.histc(v, bins=bins, min=lo, max=hi)
        mode = lo + (int(torch.argmax(counts)) + 0.5) * (hi - lo) / bins
    left, right = v[v <= mode], v[v >= mode]
    scale_left = float((left - mode).pow(2).mean().sqrt()) if left.numel() else 0.0
    scale_right = float((right - mode).mean()) if right.numel() else 0.0
    return {
        "loc_left": mode,
        "scale_left": scale_left,
        "loc_right": mode,
        "scale_right": scale_right,
        "min": lo,
        "max": hi,
    }


def dsw(
    similarity: Tensor,
    params: dict[str, float],
    left_k: float = 2.0,
    right_k: float = 4.0,
    gamma_left: float = 0.1,
    gamma_right: float = 0.2,
) -> Tensor:
    """Distribution-based similarity decision and weighting of S̃ (elementwise, no gradient).

    t_l = loc_l − k_l·σ_l, t_r = loc_r + k_r·b_r; S < t_l → (1 + γ_l·e^{−(S − min)})·S, S > t_r →
    (1 + γ_r·e^{S − max})·S, other entries unchanged. Both rules read the unweighted S̃.
    """
    with torch.no_grad():
        left = params["loc_left"] - left_k * params["scale_left"]
        right = params["loc_right"] + right_k * params["scale_right"]
        s = similarity
        down = (1 + gamma_left * torch.exp(-(s - params["min"]))) * s
        up = (1 + gamma_right * torch.exp(s - params["max"])) * s
        return torch.where(s < left, down, torch.where(s > right, up, s))


def jdsh_loss(
    codes_image: Tensor,
    codes_text: Tensor,
    image_features: Tensor,
    text_features: Tensor,
    dsw_params: dict[str, float] | None = None,
    alpha: float = 0.5,
    beta: float = 0.1,
    lam: float = 0.4,
    mu: float = 1.4,
    intra: float = 0.1,
    left_k: float = 2.0,
    right_k: float = 4.0,
    gamma_left: float = 0.1,
    gamma_right: float = 0.2,
) -> dict[str, Tensor]:
    """JDSH's loss for one batch; labels are not an input.

    Args:
        codes_image: relaxed image codes [m, K] (tanh outputs).
        codes_text: relaxed text codes [m, K]; row i pairs with image i.
        image_features: fixed image features [m, D_I].
        text_features: fixed text features [m, D_T] (the bag of words in the paper).
        dsw_params: DSW's distribution parameters (:data:`DSW_KEYS`); ``None`` fits them on this batch's S̃.
        alpha, beta, lam: weights of S_I, S_T and the joint-modal term in S̃.
        mu: μ, scale of the target μ·DSW(S̃).
        intra: weight w of the two within-modality terms.
        left_k, right_k: threshold multipliers k_l (Gaussian side) and k_r (Laplace side).
        gamma_left, gamma_right: DSW weights γ_l, γ_r (the released code's L1, L2).

    Returns:
        ``cross`` = mean (B_I B_Tᵀ − μS)² + mean (B_T B_Iᵀ − μS)², ``paired`` = −mean_i ⟨B_I,i, B_T,i⟩,
        ``intra_image`` = w·mean (B_I B_Iᵀ − μS)², ``intra_text`` = w·mean (B_T B_Tᵀ − μS)², and ``loss``.
    """
    joint = jdsh_joint_similarity(image_features, text_features, alpha, beta, lam)
    params = fit_dsw_parameters(joint) if dsw_params is None else dsw_params
    target = (mu * dsw(joint, params, left_k, right_k, gamma_left, gamma_right)).to(codes_image.dtype)
    b_i, b_t = F.normalize(codes_image, dim=1), F.normalize(codes_text, dim=1)
    terms = {
        "cross": F.mse_loss(b_i @ b_t.T, target) + F.mse_loss(b_t @ b_i.T, target),
        "paired": -(b_i * b_t).sum(dim=1).mean(),
        "intra_image": intra * F.mse_loss(b_i @ b_i.T, target),
        "intra_text": intra * F.mse_loss(b_t @ b_t.T, target),
    }
    terms["loss"] = terms["cross"] + terms["paired"] + terms["intra_image"] + terms["intra_text"]
    return terms


@register_method
class JDSH(UnsupervisedCrossModalHashing):
    """Joint-modal Distribution-based Similarity Hashing (Liu et al., SIGIR 2020): unsupervised, labels unused."""

    paper = Paper(
        title="Joint-modal Distribution-based Similarity Hashing for Large-scale Unsupervised Deep Cross-modal "
        "Retrieval",
        authors="Song Liu, Shengsheng Qian, Yang Guan, Jiawei Zhan, Long Ying",
        venue="SIGIR",
        year=2020,
        url="https://doi.org/10.1145/3397271.3401086",
        code="https://github.com/KaiserLew/JDSH",
        reconstruction=True,  # the fit of DSW's distribution parameters (the released code hard-codes them)
    )
    supervision = "cross-modal"  # the family; the loss itself is unsupervised (labels are never read)
    ddp_batch = "global"  # in-batch similarities over every process's rows (base.HashingMethod.global_batch)
    loss_function = staticmethod(jdsh_loss)
    # Released code (config/JDSH_MIRFlickr.json, JDSH.py): SGD momentum 0.9, weight decay 5e-4, LR_IMG = LR_TXT =
    # 0.01, batch 32, 300 epochs, ImageNet AlexNet kept fixed (only its hash layer trains).
    paper_training = {
        "optimizer": "sgd",
        "lr": 0.01,
        "backbone_lr": 0.01,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "max_epochs": 300,
        "batch_size": 32,
    }

    def __init__(
        self,
        n_bits: int = 64,
        alpha: float = 0.5,  # α, weight of S_I in S̃ (config/JDSH_MIRFlickr.json "alpha")
        beta: float = 0.1,  # β, weight of S_T in S̃ (config "beta")
        lam: float = 0.4,  # λ, weight of the joint-modal term (S_high + S_highᵀ)/2 (config "lamb")
        mu: float = 1.4,  # μ, scale of the target μ·DSW(S̃) (config "mu")
        intra: float = 0.1,  # weight of the within-modality terms (config "INTRA")
        left_k: float = 2.0,  # k_l of t_l = loc_l − k_l·σ_l (config "ALPHA")
        right_k: float = 4.0,  # k_r of t_r = loc_r + k_r·b_r (config "BETA")
        gamma_left: float = 0.1,  # γ_l, DSW weight below t_l (config "L1")
        gamma_right: float = 0.2,  # γ_r, DSW weight above t_r (config "L2")
        dsw: dict[str, float] | None = None,  # hashbench: fixed DSW parameters (DSW_KEYS); None = fit them
        dsw_fit_batches: int = 20,  # hashbench: training batches whose S̃ values the fit reads
        **kwargs: Any,
    ) -> None:
        if dsw is not None and set(dsw) != set(DSW_KEYS):
            raise ValueError(f"dsw must have exactly the keys {DSW_KEYS}, got {sorted(dsw)}")
        if dsw_fit_batches < 1:
            raise ValueError(f"dsw_fit_batches must be >= 1, got {dsw_fit_batches}")
        super().__init__(n_bits=n_bits, **kwargs)
        self.loss_kwargs = {
            "alpha": alpha,
            "beta": beta,
            "lam": lam,
            "mu": mu,
            "intra": intra,
            "left_k": left_k,
            "right_k": right_k,
            "gamma_left": gamma_left,
            "gamma_right": gamma_right,
        }
        self.dsw_fit_batches = dsw_fit_batches
        # The parameters live in buffers so that a checkpoint keeps the fitted values (and a resumed fit skips it).
        fixed = dsw is not None
        stats = [float(dsw[k]) for k in DSW_KEYS] if fixed else [0.0] * len(DSW_KEYS)
        self.register_buffer("dsw_stats", torch.tensor(stats, dtype=torch.float64))
        self.register_buffer("dsw_ready", torch.tensor(fixed))

    def dsw_parameters(self) -> dict[str, float] | None:
        """The DSW parameters in use (``None`` before they are fitted: each batch then fits its own)."""
        if not bool(self.dsw_ready):
            return None
        return dict(zip(DSW_KEYS, self.dsw_stats.tolist(), strict=True))

    def joint_similarity(self, batch: Any) -> Tensor:
        """S̃ of a batch from its fixed image and text features."""
        kw = self.loss_kwargs
        feats = self.image_features(batch.image), self.text_features(batch.text)
        return jdsh_joint_similarity(*feats, kw["alpha"], kw["beta"], kw["lam"])

    @torch.no_grad()
    def fit_dsw(self, loader: Any) -> dict[str, float]:
        """Fit the DSW parameters on the S̃ values of the first ``dsw_fit_batches`` batches of ``loader``."""
        was_training = self.training
        self.eval()
        values = []
        for i, batch in enumerate(loader):
            if i >= self.dsw_fit_batches:
                break
            text = batch.text.to(self.device) if torch.is_tensor(batch.text) else batch.text
            moved = batch._replace(image=batch.image.to(self.device), text=text)
            values.append(self.joint_similarity(moved).reshape(-1).cpu())
        self.train(was_training)
        params = fit_dsw_parameters(torch.cat(values))
        self.dsw_stats.copy_(torch.tensor([params[k] for k in DSW_KEYS], dtype=torch.float64))
        self.dsw_ready.fill_(True)
        kw = self.loss_kwargs
        rank_zero_info(
            f"JDSH: DSW fitted on {len(values)} training batches: mode {params['loc_left']:.4f}, sigma_l "
            f"{params['scale_left']:.4f}, b_r {params['scale_right']:.4f}, range [{params['min']:.4f}, "
            f"{params['max']:.4f}]; thresholds {params['loc_left'] - kw['left_k'] * params['scale_left']:.4f} / "
            f"{params['loc_right'] + kw['right_k'] * params['scale_right']:.4f}"
        )
        return params

    def on_fit_start(self) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        if not bool(self.dsw_ready) and dm is not None:
            self.fit_dsw(dm.train_dataloader())

    def compute_loss(self, batch: Any) -> dict[str, Tensor]:
        codes_image, codes_text = self.relaxed_codes(batch.image, batch.text)
        features = self.image_features(batch.image), self.text_features(batch.text)
        # Under DDP the batch's similarity matrix spans every process's rows (base.HashingMethod.global_batch).
        rows = self.global_batch(codes_image, codes_text, *features)
        return self.loss_function(*rows, self.dsw_parameters(), **self.loss_kwargs)
