"""Shared base of the shallow (closed-form) hashing methods: LSH, ITQ, SH.

A shallow method learns a fixed transform of feature vectors — a centring, a projection to K dimensions and, for
SH, a periodic function per bit — in closed form from the training set, instead of by gradient descent. It runs
through the same registry, Trainer, ``run_cell`` and retrieval evaluation as the deep methods:

- ``features="pixels"``: the flattened input image (centred by the training mean as part of the fit);
  ``features="backbone"``: the output of the method's backbone (``backbone=...``, ``pretrained=...``), kept in eval
  mode and never trained.
- Fitting happens once, in :meth:`ShallowHashingMethod.on_fit_start`, on the datamodule's
  ``train_eval_dataloader()`` (deterministic, no augmentation; ``train_dataloader()`` when it has none). The training
  epoch that follows does nothing per step (``automatic_optimization = False``, ``training_step`` returns ``None``)
  and training stops after it, so validation/checkpointing/testing go through the base class as for every method.
- The fit counts as one (no-op) optimiser step, so Lightning's ``global_step`` is 1 after it and the
  validation-selected checkpoint is written as for any method.
- The fitted transform is stored in buffers (``feature_mean``, ``projection``, plus subclass buffers), so it is
  saved in and restored from checkpoints; loading resizes the buffers to the stored shapes.
- ``forward(x)`` returns the real-valued projections; ``encode`` (base class) thresholds them at zero.
- ``compute_loss(batch)`` returns the quantisation error mean((sign(v) − v)²) of the batch's projections v under
  the current transform as a diagnostic (no gradient, no fitting); there is nothing to train by gradient.
- Before it is fitted, a shallow model hashes with a seeded Gaussian random projection of the uncentred features
  (i.e. plain LSH), so ``forward``/``encode`` work at any time without ever looking at evaluation data.

This module starts with ``_`` so the method package does not register it as a method.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from hashbench.methods.base import HashingMethod
from hashbench.nn.losses import sign_with_zero_positive

__all__ = ["ShallowHashingMethod", "pca"]

FEATURE_KINDS = ("pixels", "backbone")


#: Largest feature dimension :func:`pca` accepts: its D x D float64 covariance is 2 GiB at 16,384 (64 px RGB pixels
#: are 12,288-dim; 224 px pixels, 150,528-dim, would need 169 GiB).
MAX_PCA_DIM = 16384


def pca(x: Tensor, n_components: int) -> tuple[Tensor, Tensor, Tensor]:
    """Principal directions of ``x`` [N, D] in float64.

    Returns:
        mean [D], the top ``n_components`` principal directions as columns [D, n_components] (largest variance
        first, each with its largest-magnitude entry made positive so the result does not depend on the
        eigensolver's sign choice) and their variances [n_components].
    """
    dim = x.shape[1]
    if dim > MAX_PCA_DIM:
        raise ValueError(
            f"PCA over {dim}-dim feature vectors would build a {dim} x {dim} float64 covariance "
            f"({dim * dim * 8 / 2**30:.0f} GiB; the limit is {MAX_PCA_DIM} dims). Pixel features of 224 px images are "
            "this large: fit on native-size images (data transform 'native') or on the backbone's feature vectors "
            "(features='backbone')."
        )
    x = x.double()
    mean = x.mean(0)
    xc = x - mean
    cov = xc.T @ xc / max(x.shape[0], 1)
    evals, evecs = torch.linalg.eigh(cov)
    order = torch.argsort(evals, descending=True)[:n_components]
    vecs = evecs[:, order]
    signs = sign_with_zero_positive(vecs.gather(0, vecs.abs().argmax(0, keepdim=True)))
    return mean, vecs * signs, evals[order]


class ShallowHashingMethod(HashingMethod):
    """Base class of closed-form hashing methods (see the module docstring).

    Subclasses implement :meth:`fit_features` (set ``feature_mean`` and ``projection``, plus their own buffers)
    and, if the bits are not the signs of the projections themselves, :meth:`transform`.

    Args:
        n_bits: code length K.
        features: ``"pixels"`` (flattened images) or ``"backbone"`` (backbone features).
        seed: seed of every random choice of the fit (random projections, initial rotations).
        **kwargs: :class:`~hashbench.methods.base.HashingMethod` arguments (backbone, pretrained, ...).
    """

    supervision = "shallow"
    activation = "identity"
    paper_training: dict[str, Any] = {"max_epochs": 1}  # closed-form fit: one pass, no optimiser
    #: names of the buffers that hold the fitted transform (resized on checkpoint load)
    fitted_buffers: tuple[str, ...] = ("feature_mean", "projection")

    def __init__(self, n_bits: int = 48, features: str = "pixels", seed: int = 0, **kwargs: Any) -> None:
        if features not in FEATURE_KINDS:
            raise ValueError(f"features must be one of {FEATURE_KINDS}; got {features!r}")
        super().__init__(n_bits=n_bits, **kwargs)
        self.features = features
        self.seed = seed
        self.automatic_optimization = False
        self.fit_report: dict[str, float] = {}
        self.register_buffer("feature_mean", torch.zeros(0))
        self.register_buffer("projection", torch.zeros(0, n_bits))
        self.register_buffer("fitted", torch.tensor(False))
        for p in self.parameters():
            # Nothing here is trained by gradient (the backbone is a fixed feature extractor).
            p.requires_grad_(False)

    # ------------------------------------------------------------------ features and transform
    def train(self, mode: bool = True) -> ShallowHashingMethod:
        super().train(mode)
        # The backbone is a fixed feature extractor: batch-norm statistics and dropout stay in eval mode.
        self.backbone.eval()
        return self

    def feature_vectors(self, x: Tensor) -> Tensor:
        """The vectors a shallow method hashes: flattened pixels or backbone features, [B, D] float."""
        if self.features == "pixels":
            return x.flatten(1).float()
        with torch.no_grad():
            return self.backbone(x).flatten(1).float()

    def _generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed)

    def random_projection(self, dim: int) -> Tensor:
        """Seeded Gaussian matrix [dim, K] (same seed, same matrix)."""
        return torch.randn(dim, self.n_bits, generator=self._generator())

    def transform(self, v: Tensor) -> Tensor:
        """Map projections [B, K] to the real values whose signs are the bits (identity for LSH/ITQ)."""
        return v

    def forward(self, x: Tensor) -> Tensor:
        f = self.feature_vectors(x)
        if self.projection.shape[0] != f.shape[1]:
            if bool(self.fitted):
                raise ValueError(
                    f"{type(self).__name__} was fitted on {self.projection.shape[0]}-dim features, got {f.shape[1]}"
                )
            # Unfitted: plain LSH (seeded random hyperplanes through the origin), see the module docstring.
            self.feature_mean = torch.zeros(f.shape[1], device=f.device)
            self.projection = self.random_projection(f.shape[1]).to(f.device)
        return self.transform((f - self.feature_mean) @ self.projection)

    # ------------------------------------------------------------------ fitting
    def fit_features(self, x: Tensor) -> None:
        """Fit the transform on training feature vectors ``x`` [N, D] (closed form)."""
        raise NotImplementedError

    @torch.no_grad()
    def collect_features(self, loader: Any) -> Tensor:
        """Feature vectors [N, D] of every batch of ``loader`` (on this module's device)."""
        chunks = []
        for batch in loader:
            chunks.append(self.feature_vectors(batch[0].to(self.device)))
        if not chunks:
            raise ValueError(f"{type(self).__name__}: the training loader yielded no batches to fit on")
        return torch.cat(chunks)

    @torch.no_grad()
    def fit(self, loader: Any) -> ShallowHashingMethod:
        """Fit on every image of ``loader`` and mark the model fitted; returns ``self``."""
        x = self.collect_features(loader)
        self.fit_features(x)
        self.fitted = torch.tensor(True, device=self.device)
        u = self.transform((x - self.feature_mean) @ self.projection)
        self.fit_report = {"fit_quantization": float((sign_with_zero_positive(u) - u).pow(2).mean())}
        return self

    def on_fit_start(self) -> None:
        if bool(self.fitted):
            return
        dm = getattr(self.trainer, "datamodule", None)
        if dm is None:
            raise RuntimeError(
                f"{type(self).__name__} fits in closed form on the training set of trainer.datamodule: call "
                "trainer.fit(model, datamodule=dm), or call model.fit(loader) yourself before validating/testing"
            )
        loader = dm.train_eval_dataloader() if hasattr(dm, "train_eval_dataloader") else dm.train_dataloader()
        self.fit(loader)

    # ------------------------------------------------------------------ the (empty) training loop
    @torch.no_grad()
    def compute_loss(self, batch: Any) -> dict[str, Tensor]:
        u = self(batch[0])
        q = (sign_with_zero_positive(u) - u).pow(2).mean()
        return {"quantization": q, "loss": q}

    def training_step(self, batch: Any, batch_idx: int) -> None:
        if batch_idx == 0:
            # Count the closed-form fit as one optimiser step: Lightning keys checkpointing on global_step and
            # never saves a checkpoint of a run that made no step (the step itself changes nothing, see below).
            self.optimizers().step()
        return None

    def configure_optimizers(self) -> Any:
        # A no-op optimiser (lr 0, every parameter frozen so none has a gradient): it only exists so that the fit
        # can be counted as a step (see training_step).
        return torch.optim.SGD(self.parameters(), lr=0.0)

    def on_train_epoch_end(self) -> None:
        for key, value in self.fit_report.items():
            self.log(f"train/{key}", value)
        # One pass is all a closed-form method needs: stop after the first epoch (validated and checkpointed).
        self.trainer.should_stop = True

    # ------------------------------------------------------------------ checkpoints
    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        # The fitted buffers' shapes depend on the data (feature dimension), so adopt the stored shapes.
        for name in self.fitted_buffers:
            key = prefix + name
            if key in state_dict and getattr(self, name).shape != state_dict[key].shape:
                setattr(self, name, torch.empty_like(state_dict[key], device=getattr(self, name).device))
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
