"""Pseudo-similarity with semantic structure for unsupervised hashing (SSDH / UDMSH).

SSDH (Yang et al., IJCAI 2018) and UDMSH (Qin et al., IEEE TCSVT 2021) replace labels by a similarity structure
read off deep features of the training images. This module holds the pieces both share (and GreedyHash's
unsupervised variant reuses the fused cosine):

1. Features (:class:`FeatureSource`): a *global* vector and a *spatial* vector per image. UDMSH takes the global
   one from a CNN's penultimate layer and the spatial one from the last conv map pooled by average and max
   ("FCN" features). Sources: ``pretrained:<backbone>`` (the papers use VGG-16), ``pixels`` (global = the pixels,
   spatial = average- and max-pooled patches), ``random_cnn`` (a fixed randomly initialised compact CNN) and
   ``simclr`` (the compact CNN trained for a few epochs with a SimCLR-style contrastive objective on the
   unaugmented training images, augmented here). ``auto`` = pretrained VGG-16 when its weights are in the local
   cache, else ``pixels``. Each part is centred over the training set and L2-normalised.
2. Fused cosine similarity C = (C_g + C_s) / 2 and distances D = 1 − C.
3. Thresholds (:func:`fit_half_gaussian_thresholds`): from a histogram of the distances of a random sample of
   pairs, the mode d*; each side of the mode is mirrored around d* and fitted by a zero-mean-offset Gaussian, which
   gives μ_l = μ_r = d* and σ_l, σ_r (root mean square deviation from d* on that side); similar pairs have
   D < μ_l − α_l·σ_l, dissimilar ones D > μ_r + α_r·σ_r (α = 2).
4. Targets (:func:`pseudo_targets`): T = +1 / −1 on the two outer levels (weight 1); in the middle band either
   dropped (SSDH, weight 0) or kept as a continuous level (UDMSH multi-level), the distance mapped linearly from
   [lower, upper] onto [+1, −1], with weight ``mid_weight``.

Memory: nothing here forms the N×N matrix. :class:`PseudoSimilarity` stores the [N, D_g] and [N, D_s] feature
buffers and the thresholds; the targets of a batch are computed from the stored features of ``batch.index``
(B×B), and threshold fitting reads a random sample of pairs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "HalfGaussianThresholds",
    "fit_half_gaussian_thresholds",
    "fused_cosine",
    "pseudo_targets",
    "sample_pair_distances",
    "pixel_features",
    "map_features",
    "FeatureSource",
    "PseudoSimilarity",
    "FEATURE_SOURCES",
]

FEATURE_SOURCES = ("auto", "pixels", "random_cnn", "simclr", "pretrained:<backbone>")


# ---------------------------------------------------------------------------------------------- thresholds
@dataclass(frozen=True)
class HalfGaussianThresholds:
    """Result of the half-Gaussian fit on the distance histogram (SSDH Sec. 3.1, reconstructed)."""

    mode: float  # d*, the histogram mode
    mu_l: float  # location of the left half-Gaussian (= d*: the mirrored sample is symmetric around d*)
    sigma_l: float
    mu_r: float
    sigma_r: float
    lower: float  # D < lower: similar (+1)
    upper: float  # D > upper: dissimilar (−1)

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def _histogram_mode(d: Tensor, bins: int, smooth: int) -> float:
    lo, hi = float(d.min()), float(d.max())
    if hi - lo < 1e-12:
        return lo
    counts = torch.histc(d, bins=bins, min=lo, max=hi)
    if smooth > 1:
        # A short moving average keeps a noisy bin from winning the argmax.
        kernel = torch.ones(1, 1, smooth, dtype=counts.dtype) / smooth
        counts = F.conv1d(counts.view(1, 1, -1), kernel, padding=smooth // 2).view(-1)[:bins]
    width = (hi - lo) / bins
    return lo + (int(torch.argmax(counts)) + 0.5) * width


def fit_half_gaussian_thresholds(
    distances: Tensor, bins: int = 100, alpha_l: float = 2.0, alpha_r: float = 2.0, smooth: int = 3
) -> HalfGaussianThresholds:
    """Fit the two half-Gaussians around the mode of a distance sample and return the thresholds.

    Args:
        distances: 1-D sample of pair distances D = 1 − C (a random sample of pairs, not all N² of them).
        bins: histogram bins used to locate the mode d*.
        alpha_l: the similar threshold is d* − alpha_l·σ_l.
        alpha_r: the dissimilar threshold is d* + alpha_r·σ_r.
        smooth: width of the moving average applied to the histogram before taking its argmax (1 = none).

    Returns:
        The mode, the two half-Gaussians and the thresholds ``lower`` ≤ ``upper``.

    Raises:
        ValueError: on an empty or non-finite sample.
    """
    d = distances.detach().reshape(-1).double().cpu()
    if d.numel() < 2:
        raise ValueError(f"need at least 2 distances to fit the thresholds, got {d.numel()}")
    if not torch.isfinite(d).all():
        raise ValueError("distances contain NaN/inf: check the features (all-zero rows cannot be L2-normalised)")
    mode = _histogram_mode(d, bins, smooth)
    left, right = d[d <= mode], d[d >= mode]
    # Mirroring one side around d* gives a symmetric sample with mean d* and variance mean((d − d*)²) over the
    # side: the ML fit of a Gaussian centred at the mode to that half.
    sigma_l = math.sqrt(float(((left - mode) ** 2).mean())) if left.numel() else 0.0
    sigma_r = math.sqrt(float(((right - mode) ** 2).mean())) if right.numel() else 0.0
    return HalfGaussianThresholds(
        mode=mode,
        mu_l=mode,
        sigma_l=sigma_l,
        mu_r=mode,
        sigma_r=sigma_r,
        lower=mode - alpha_l * sigma_l,
        upper=mode + alpha_r * sigma_r,
    )


# ---------------------------------------------------------------------------------------------- similarity
def fused_cosine(g_a: Tensor, s_a: Tensor, g_b: Tensor | None = None, s_b: Tensor | None = None) -> Tensor:
    """C = (C_g + C_s) / 2 between rows of a and rows of b (features already L2-normalised); [A, B]."""
    g_b = g_a if g_b is None else g_b
    s_b = s_a if s_b is None else s_b
    return 0.5 * (g_a.float() @ g_b.float().T + s_a.float() @ s_b.float().T)


def sample_pair_distances(
    global_feats: Tensor, spatial_feats: Tensor, num_pairs: int, generator: torch.Generator | None = None
) -> Tensor:
    """Distances D = 1 − C of ``num_pairs`` random pairs (i ≠ j) of training items; memory O(num_pairs)."""
    n = global_feats.shape[0]
    if n < 2:
        raise ValueError(f"need at least 2 items to sample pairs, got {n}")
    i = torch.randint(0, n, (num_pairs,), generator=generator)
    j = (i + torch.randint(1, n, (num_pairs,), generator=generator)) % n  # j ≠ i
    out = torch.empty(num_pairs, dtype=torch.float32)
    # Pairs per block so that the gathered rows stay around 16 MB whatever the feature size.
    step = max(256, (1 << 22) // (global_feats.shape[1] + spatial_feats.shape[1]))
    for a in range(0, num_pairs, step):
        ia, ja = i[a : a + step].to(global_feats.device), j[a : a + step].to(global_feats.device)
        c = 0.5 * (
            (global_feats[ia].float() * global_feats[ja].float()).sum(1)
            + (spatial_feats[ia].float() * spatial_feats[ja].float()).sum(1)
        )
        out[a : a + step] = (1.0 - c).cpu()
    return out


def pseudo_targets(
    distances: Tensor, thresholds: HalfGaussianThresholds, multi_level: bool = True, mid_weight: float = 0.5
) -> tuple[Tensor, Tensor]:
    """Targets T and weights W for a block of pair distances.

    T = +1 (weight 1) where D < lower, −1 (weight 1) where D > upper. In the middle band: with ``multi_level``
    T = 1 − 2·(D − lower)/(upper − lower) ∈ [−1, 1] (continuous, monotone, equal to the outer levels at the band
    edges) with weight ``mid_weight``; without it (SSDH) T = 0 with weight 0.

    Returns:
        ``(targets, weights)``, both shaped like ``distances``.
    """
    lower, upper = thresholds.lower, thresholds.upper
    sim, dis = distances < lower, distances > upper
    mid = ~(sim | dis)
    t = torch.zeros_like(distances)
    t[sim], t[dis] = 1.0, -1.0
    w = (sim | dis).to(distances.dtype)
    if multi_level:
        span = upper - lower
        level = 1.0 - 2.0 * (distances - lower) / span if span > 0 else torch.zeros_like(distances)
        t = torch.where(mid, level.clamp(-1.0, 1.0), t)
        w = torch.where(mid, torch.full_like(w, mid_weight), w)
    return t, w


# ---------------------------------------------------------------------------------------------- features
def pixel_features(x: Tensor, patch: int = 4) -> tuple[Tensor, Tensor]:
    """Raw-pixel features: global = flattened pixels; spatial = avg- and max-pooled ``patch``×``patch`` patches."""
    g = x.flatten(1)
    k = max(1, min(patch, x.shape[-1], x.shape[-2]))
    s = torch.cat([F.avg_pool2d(x, k).flatten(1), F.max_pool2d(x, k).flatten(1)], dim=1)
    return g, s


def map_features(backbone: nn.Module, x: Tensor) -> tuple[Tensor, Tensor]:
    """CNN features: global = the backbone's head output; spatial = its last conv map, avg- and max-pooled."""
    fmap = backbone.forward_map(x)
    g = backbone.forward_head(fmap)
    s = torch.cat([fmap.mean(dim=(2, 3)), fmap.amax(dim=(2, 3))], dim=1)
    return g, s


def _augment(x: Tensor, generator: torch.Generator) -> Tensor:
    """SimCLR-style augmentations as batch tensor ops: random shift-crop, flip, contrast/brightness, noise."""
    b, _, h, w = x.shape
    pad = max(1, h // 7)
    padded = F.pad(x, (pad, pad, pad, pad), mode="replicate")
    dy = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (b,), generator=generator)
    rows = (dy.view(b, 1) + torch.arange(h).view(1, h)).view(b, 1, h, 1).expand(b, x.shape[1], h, w + 2 * pad)
    out = torch.gather(padded, 2, rows.to(x.device))
    cols = (dx.view(b, 1) + torch.arange(w).view(1, w)).view(b, 1, 1, w).expand(b, x.shape[1], h, w)
    out = torch.gather(out, 3, cols.to(x.device))
    flip = (torch.rand(b, generator=generator) < 0.5).to(x.device)
    out = torch.where(flip.view(b, 1, 1, 1), out.flip(3), out)
    contrast = (0.6 + 0.8 * torch.rand(b, 1, 1, 1, generator=generator)).to(x.device)
    bright = (0.4 * torch.rand(b, 1, 1, 1, generator=generator) - 0.2).to(x.device)
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    out = (out - mean) * contrast + mean + bright
    # Additive noise keeps the network from matching views by exact pixel values.
    noise = 0.1 * torch.randn(out.shape, generator=generator).to(x.device)
    return out + noise


def _nt_xent(z1: Tensor, z2: Tensor, temperature: float) -> Tensor:
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    n = z1.shape[0]
    logits = z @ z.T / temperature
    logits.fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)]).to(z.device)
    return F.cross_entropy(logits, target)


class FeatureSource:
    """Turns images into (global, spatial) feature pairs for the pseudo-similarity.

    Args:
        source: ``auto`` | ``pixels`` | ``random_cnn`` | ``simclr`` | ``pretrained:<backbone>`` (e.g.
            ``pretrained:vgg16``; weights from the local cache, see :func:`hashbench.nn.backbones.create_backbone`).
            ``auto`` tries ``pretrained:vgg16`` and falls back to ``pixels`` when the weights are unavailable.
        in_channels: image channels.
        image_size: image side.
        seed: seeds the random CNN / the SimCLR training (own RNG state; the global one is left untouched).
        simclr_epochs: SimCLR epochs over the training images.
        simclr_batch: SimCLR batch size.

    Attributes:
        resolved: the source actually used (after ``auto`` fell back), for reports.
    """

    def __init__(
        self,
        source: str = "auto",
        in_channels: int = 3,
        image_size: int = 32,
        seed: int = 0,
        simclr_epochs: int = 5,
        simclr_batch: int = 256,
    ) -> None:
        self.source = source
        self.in_channels, self.image_size, self.seed = in_channels, image_size, seed
        self.simclr_epochs, self.simclr_batch = simclr_epochs, simclr_batch
        self.network: nn.Module | None = None
        self.resolved = self._resolve(source)

    def _resolve(self, source: str) -> str:
        from hashbench.nn.backbones import PretrainedWeightsUnavailable, create_backbone

        if source in ("pixels", "random_cnn", "simclr"):
            if source != "pixels":
                with torch.random.fork_rng(devices=[]):
                    torch.manual_seed(self.seed)
                    self.network = create_backbone("compact_cnn", False, self.in_channels, self.image_size).eval()
            return source
        if source == "auto" or source.startswith("pretrained:"):
            name = "vgg16" if source == "auto" else source.split(":", 1)[1]
            try:
                self.network = create_backbone(name, True, 3, 224).eval()
            except PretrainedWeightsUnavailable:
                if source == "auto":
                    return "pixels"
                raise
            return f"pretrained:{name}"
        raise ValueError(f"unknown feature_source {source!r}; expected one of {', '.join(FEATURE_SOURCES)}")

    @property
    def needs_fitting(self) -> bool:
        return self.resolved == "simclr"

    def to(self, device: torch.device) -> FeatureSource:
        if self.network is not None:
            self.network.to(device)
        return self

    @torch.no_grad()
    def __call__(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Raw (uncentred, unnormalised) global and spatial features of an image batch."""
        if self.resolved == "pixels":
            return pixel_features(x)
        assert self.network is not None
        self.network.eval()
        if self.resolved.startswith("pretrained:"):
            # ImageNet networks want 3 channels at ~224 px; grey images are repeated, small ones upsampled.
            if x.shape[1] == 1:
                x = x.repeat(1, 3, 1, 1)
            if x.shape[-1] < 224:
                x = F.interpolate(x, size=224, mode="bilinear", align_corners=False)
        return map_features(self.network, x)

    def fit(self, images: Tensor, device: torch.device | str = "cpu") -> list[float]:
        """Train the SimCLR encoder on ``images`` (only for ``simclr``); returns the per-epoch losses."""
        if self.resolved != "simclr":
            return []
        assert self.network is not None
        # Dropout and initialisation draw from the global RNG: fork it so that building the pseudo-similarity
        # leaves the hashing network's training exactly as it would be without it.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.seed)
            return self._fit_simclr(self.network.to(device), images, device)

    def _fit_simclr(self, net: nn.Module, images: Tensor, device: torch.device | str) -> list[float]:
        gen = torch.Generator().manual_seed(self.seed)
        proj = nn.Sequential(nn.Linear(net.feature_dim, 256), nn.ReLU(), nn.Linear(256, 128)).to(device)
        opt = torch.optim.Adam([*net.parameters(), *proj.parameters()], lr=1e-3, weight_decay=1e-6)
        losses = []
        net.train()
        n = images.shape[0]
        for _ in range(self.simclr_epochs):
            perm = torch.randperm(n, generator=gen)
            total, count = 0.0, 0
            for a in range(0, n - 1, self.simclr_batch):
                idx = perm[a : a + self.simclr_batch]
                if idx.numel() < 2:
                    continue
                x = images[idx].to(device)
                z1, z2 = proj(net(_augment(x, gen))), proj(net(_augment(x, gen)))
                loss = _nt_xent(z1, z2, temperature=0.5)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total, count = total + float(loss.detach()), count + 1
            losses.append(total / max(count, 1))
        net.eval()
        return losses


def _batches_images(loader: Iterable[Any]) -> Iterable[tuple[Tensor, Tensor]]:
    for batch in loader:
        yield batch[0], batch[-1]  # HashBatch(image, labels, index): labels are never read


# ---------------------------------------------------------------------------------------------- storage
def _blockwise_mean(x: Tensor, block: int = 8192) -> Tensor:
    """Column mean in float32 without a float32 copy of the whole (possibly float16) matrix."""
    total = torch.zeros(x.shape[1], dtype=torch.float64, device=x.device)
    for b in x.split(block):
        total += b.double().sum(0)
    return (total / max(1, x.shape[0])).float()


class PseudoSimilarity(nn.Module):
    """Stored training features and fitted thresholds; gives the B×B targets of a batch from its indices.

    The features are non-persistent buffers (recomputed at every fit, not saved in checkpoints).

    Args:
        num_pairs: pairs sampled for the threshold histogram.
        bins: histogram bins.
        alpha: threshold multiplier (lower = d* − α·σ_l, upper = d* + α·σ_r).
        center: subtract the training mean of each feature before normalising.
        dtype: storage dtype of the feature buffers (``torch.float16`` halves the memory for large N).
        seed: seeds the pair sample.
    """

    def __init__(
        self,
        num_pairs: int = 200_000,
        bins: int = 100,
        alpha: float = 2.0,
        center: bool = True,
        dtype: torch.dtype = torch.float32,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.num_pairs, self.bins, self.alpha, self.center, self.seed = num_pairs, bins, alpha, center, seed
        self.dtype = dtype
        self.register_buffer("global_feats", torch.zeros(0, 0), persistent=False)
        self.register_buffer("spatial_feats", torch.zeros(0, 0), persistent=False)
        self.thresholds: HalfGaussianThresholds | None = None

    @property
    def ready(self) -> bool:
        return self.thresholds is not None and self.global_feats.numel() > 0

    def _normalise(self, x: Tensor, mean: Tensor | None) -> Tensor:
        x = x.float()
        if mean is not None:
            x = x - mean
        return F.normalize(x, dim=1)

    def set_features(self, global_feats: Tensor, spatial_feats: Tensor) -> HalfGaussianThresholds:
        """Centre, normalise and store raw [N, D] features, then fit the thresholds on a sample of pairs."""
        if global_feats.shape[0] != spatial_feats.shape[0]:
            raise ValueError(f"global ({global_feats.shape[0]}) and spatial ({spatial_feats.shape[0]}) rows differ")
        gm = _blockwise_mean(global_feats) if self.center else None
        sm = _blockwise_mean(spatial_feats) if self.center else None
        # Row blocks written into preallocated storage: no full-size float32 temporary, no concatenation copy.
        g = torch.empty(global_feats.shape, dtype=self.dtype, device=global_feats.device)
        s = torch.empty(spatial_feats.shape, dtype=self.dtype, device=spatial_feats.device)
        for a in range(0, global_feats.shape[0], 8192):
            g[a : a + 8192] = self._normalise(global_feats[a : a + 8192], gm)
            s[a : a + 8192] = self._normalise(spatial_feats[a : a + 8192], sm)
        self.global_feats, self.spatial_feats = g, s
        gen = torch.Generator().manual_seed(self.seed)
        d = sample_pair_distances(g, s, self.num_pairs, gen)
        self.thresholds = fit_half_gaussian_thresholds(d, bins=self.bins, alpha_l=self.alpha, alpha_r=self.alpha)
        return self.thresholds

    def build(
        self, loader: Iterable[Any], features: Callable[[Tensor], tuple[Tensor, Tensor]], num_items: int, device: Any
    ) -> HalfGaussianThresholds:
        """Run ``features`` over a loader of (image, ..., index) batches and store the features by index."""
        g_all: Tensor | None = None
        s_all: Tensor | None = None
        seen = torch.zeros(num_items, dtype=torch.bool)
        for images, index in _batches_images(loader):
            g, s = features(images.to(device))
            if g_all is None or s_all is None:
                g_all = torch.zeros(num_items, g.shape[1])
                s_all = torch.zeros(num_items, s.shape[1])
            idx = index.long().cpu()
            g_all[idx], s_all[idx] = g.float().cpu(), s.float().cpu()
            seen[idx] = True
        if g_all is None or s_all is None or not bool(seen.all()):
            missing = int((~seen).sum())
            raise ValueError(f"the training loader did not cover every index 0..{num_items - 1} ({missing} missing)")
        thr = self.set_features(g_all, s_all)
        self.global_feats = self.global_feats.to(device)
        self.spatial_feats = self.spatial_feats.to(device)
        return thr

    def similarity(self, index: Tensor) -> Tensor:
        """Fused cosine C [B, B] of the stored features of ``index``."""
        idx = index.long().to(self.global_feats.device)
        g, s = self.global_feats[idx], self.spatial_feats[idx]
        return fused_cosine(g, s)

    def targets(self, index: Tensor, multi_level: bool, mid_weight: float) -> tuple[Tensor, Tensor, Tensor]:
        """(C, T, W) for the pairs of a batch: fused cosine, targets and weights, each [B, B]."""
        if self.thresholds is None:
            raise RuntimeError("PseudoSimilarity has no features yet: call build() or set_features() first")
        c = self.similarity(index)
        t, w = pseudo_targets(1.0 - c, self.thresholds, multi_level, mid_weight)
        return c, t, w
