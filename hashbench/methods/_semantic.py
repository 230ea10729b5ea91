"""The semantic-structure family: SSDH, UDMSH and GreedyHash-U learn from label-free pseudo-similarity.

:class:`SemanticStructureHashing` is their shared base: it computes deep features of every training image at fit
start, fits the half-Gaussian thresholds of SSDH (Yang et al., IJCAI 2018) on the distribution of their cosine
distances, and gives each training batch its pseudo-similarity targets (:mod:`hashbench.nn.pseudo_similarity` holds
the feature sources and the threshold fit). :func:`semantic_structure_loss` is the loss of SSDH and UDMSH (the
pair weights select which of the two it is); GreedyHash-U keeps its own loss and reads only the fused cosine.

The methods themselves live in ``ssdh.py``, ``udmsh.py`` and ``greedyhash_unsup.py``. This module's name starts with
``_`` so that it is not imported as a method by ``hashbench.methods``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor
from torch.utils.data import DataLoader

from hashbench.methods.base import HashingMethod
from hashbench.nn.losses import sign_with_zero_positive
from hashbench.nn.pseudo_similarity import (
    FeatureSource,
    PseudoSimilarity,
    fit_half_gaussian_thresholds,
    fused_cosine,
    pseudo_targets,
)
from hashbench.nn.weights import WeightsNeed

__all__ = ["semantic_structure_loss", "SemanticStructureHashing"]


def semantic_structure_loss(u: Tensor, targets: Tensor, weights: Tensor, lam: float = 0.1) -> dict[str, Tensor]:
    """Multi-level pairwise Hamming-isometric loss with a quantization penalty: the loss of SSDH and UDMSH.

    The two methods differ only in the pair weights they pass: UDMSH gives the middle band of the distance histogram
    weight ``mid_weight`` and targets between −1 and +1 (multi-similarity), SSDH gives it weight 0, so only the
    confidently similar (T = +1) and dissimilar (T = −1) pairs enter. One function serves both, under a name that
    is true for both; :mod:`hashbench.methods.udmsh` also exports it as ``udmsh_loss``.

    Args:
        u: relaxed codes of the batch [B, K].
        targets: pseudo-similarity targets T [B, B] in [−1, 1].
        weights: pair weights W [B, B] (1 on the ±1 levels, w_mid in the middle band; 0 drops a pair).
        lam: weight λ of the quantization term.

    Returns:
        ``similarity`` = Σ_{i≠j} W_ij (u_i·u_j/K − T_ij)² / (B(B−1)), ``quantization`` = λ·Σ_i ||u_i − b_i||²/(B·K)
        with b = sign(u) (sign(0) = +1, no gradient), and their sum ``loss``.
    """
    b, k = u.shape
    inner = u @ u.T / k
    off = ~torch.eye(b, dtype=torch.bool, device=u.device)
    sq = weights * (inner - targets).pow(2)
    similarity = sq[off].sum() / max(1, b * (b - 1))
    quantization = lam * (u - sign_with_zero_positive(u.detach())).pow(2).sum() / (b * k)
    return {"similarity": similarity, "quantization": quantization, "loss": similarity + quantization}


class SemanticStructureHashing(HashingMethod):
    """Shared machinery of SSDH / UDMSH / GreedyHash-U: label-free pseudo-similarity from stored features.

    At fit start the features of every training image are computed from the datamodule's
    ``train_eval_dataloader()`` (unaugmented; falls back to the training set in order), stored as [N, D] buffers
    (never an N×N matrix) and the half-Gaussian thresholds are fitted on a random sample of pairs. Each training
    batch then reads the targets of its pairs from the stored features of ``batch.index``. Labels are never read.

    Without a fitted pseudo-similarity (``compute_loss`` called outside ``trainer.fit``) the features and thresholds
    are computed from the batch itself.

    Args:
        n_bits: code length K.
        feature_source: ``auto`` | ``pixels`` | ``random_cnn`` | ``simclr`` | ``pretrained:<backbone>``.
        multi_level: keep the middle band as continuous targets (UDMSH) instead of dropping it (SSDH).
        mid_weight: weight of middle-band pairs when ``multi_level``.
        lam: quantization weight λ.
        sigma_mult: α of the thresholds d* ∓ α·σ.
        num_pairs: pairs sampled for the threshold histogram.
        center_features: centre features over the training set before the cosine.
        simclr_epochs: SimCLR epochs for ``feature_source="simclr"``.
        feature_seed: seed of the pair sample / random or SimCLR feature network.
    """

    supervision = "unsupervised"
    loss_function = staticmethod(semantic_structure_loss)

    @classmethod
    def weights_needed(cls, kwargs: Mapping[str, Any]) -> list[WeightsNeed]:
        """The backbone's weights plus the fixed feature network's: ImageNet VGG-16 for ``auto`` (without it the
        features fall back to pixels, so it is not required) and the named backbone for ``pretrained:<name>``."""
        needs = super().weights_needed(kwargs)
        source = str(cls.init_arg(kwargs, "feature_source"))
        if source == "auto":
            needs.append(WeightsNeed("vgg16", required=False, why="the 'auto' features (else pixel features)"))
        elif source.startswith("pretrained:"):
            needs.append(WeightsNeed(source.split(":", 1)[1], why=f"feature_source={source!r}"))
        return needs

    def __init__(
        self,
        n_bits: int = 48,
        feature_source: str = "auto",
        multi_level: bool = True,
        mid_weight: float = 0.5,
        lam: float = 0.1,
        sigma_mult: float = 2.0,
        num_pairs: int = 200_000,
        center_features: bool = True,
        simclr_epochs: int = 5,
        feature_seed: int = 0,
        **kwargs: Any,
    ) -> None:
        super().__init__(n_bits=n_bits, **kwargs)
        if mid_weight < 0:
            raise ValueError(f"mid_weight must be >= 0, got {mid_weight}")
        if sigma_mult < 0:
            raise ValueError(f"sigma_mult must be >= 0, got {sigma_mult}")
        if feature_source not in ("auto", "pixels", "random_cnn", "simclr") and not feature_source.startswith(
            "pretrained:"
        ):
            raise ValueError(
                f"unknown feature_source {feature_source!r}; expected auto, pixels, random_cnn, simclr or "
                "pretrained:<backbone> (e.g. pretrained:vgg16)"
            )
        self.feature_source = feature_source
        self.multi_level, self.mid_weight, self.lam = multi_level, mid_weight, lam
        self.sigma_mult, self.center_features = sigma_mult, center_features
        self.simclr_epochs, self.feature_seed = simclr_epochs, feature_seed
        self.pseudo = PseudoSimilarity(num_pairs=num_pairs, alpha=sigma_mult, center=center_features, seed=feature_seed)
        self.pseudo_report: dict[str, Any] = {}
        self._batch_source: FeatureSource | None = None

    # ------------------------------------------------------------------ pseudo-similarity
    def _feature_source(self) -> FeatureSource:
        hp = self.hparams
        return FeatureSource(
            self.feature_source,
            in_channels=hp.in_channels or 3,
            image_size=hp.image_size or 32,
            seed=self.feature_seed,
            simclr_epochs=self.simclr_epochs,
        )

    def _train_eval_loader(self) -> Any:
        dm = self.trainer.datamodule
        if hasattr(dm, "train_eval_dataloader"):
            return dm.train_eval_dataloader()
        train = dm.train_dataloader()
        return DataLoader(train.dataset, batch_size=train.batch_size or 256, shuffle=False)

    @torch.no_grad()
    def build_pseudo_similarity(self, loader: Any, num_items: int) -> dict[str, Any]:
        """Compute and store the training features and thresholds from a loader of (image, labels, index)."""
        src = self._feature_source()
        history: list[float] = []
        if src.needs_fitting:
            chunks = [(batch[0], batch[-1]) for batch in loader]
            images = torch.zeros(num_items, *chunks[0][0].shape[1:])
            for x, idx in chunks:
                images[idx.long()] = x.float().cpu()
            with torch.enable_grad():
                history = src.fit(images, self.device)
            loader = [(images[a : a + 256], torch.arange(a, min(a + 256, num_items))) for a in range(0, num_items, 256)]
        src.to(self.device)
        thr = self.pseudo.build(loader, src, num_items, self.device)
        self.pseudo_report = {
            "feature_source": src.resolved,
            "num_items": num_items,
            "simclr_losses": history,
            **thr.as_dict(),
        }
        rank_zero_info(
            f"{type(self).__name__}: pseudo-similarity from '{src.resolved}' features of {num_items} training images; "
            f"mode d*={thr.mode:.4f}, sigma_l={thr.sigma_l:.4f}, sigma_r={thr.sigma_r:.4f}, "
            f"similar D<{thr.lower:.4f}, dissimilar D>{thr.upper:.4f}"
        )
        return self.pseudo_report

    def on_fit_start(self) -> None:
        self.build_pseudo_similarity(self._train_eval_loader(), int(self.hparams.num_train))

    def batch_targets(self, batch: Any) -> tuple[Tensor, Tensor, Tensor]:
        """(C, T, W) [B, B] for a training batch: from the stored features, else from the batch's own images."""
        if self.pseudo.ready and self.pseudo.global_feats.shape[0] == self.hparams.num_train:
            return self.pseudo.targets(batch.index, self.multi_level, self.mid_weight)
        if self._batch_source is None:
            self._batch_source = self._feature_source()
        g, s = self._batch_source.to(batch.image.device)(batch.image)
        if self.center_features:
            g, s = g - g.mean(0), s - s.mean(0)
        g, s = torch.nn.functional.normalize(g.float(), dim=1), torch.nn.functional.normalize(s.float(), dim=1)
        c = fused_cosine(g, s)
        off = ~torch.eye(c.shape[0], dtype=torch.bool, device=c.device)
        thr = fit_half_gaussian_thresholds(1.0 - c[off], alpha_l=self.sigma_mult, alpha_r=self.sigma_mult)
        t, w = pseudo_targets(1.0 - c, thr, self.multi_level, self.mid_weight)
        return c, t, w

    def compute_loss(self, batch: Any) -> dict[str, Tensor]:
        _, t, w = self.batch_targets(batch)
        return self.loss_function(self(batch.image), t, w, self.lam)
