"""Shared base of the shallow (closed-form) hashing methods: LSH, ITQ, SH, PCAH, CCA-ITQ, KSH, SDH.

A shallow method learns a fixed transform of feature vectors — a centring, a projection to K dimensions and, for
SH, a periodic function per bit; for the kernel methods (KSH, SDH) an RBF map onto anchor points first — in closed
form (or by a short deterministic optimisation) from the training set, instead of by gradient descent. It runs
through the same registry, Trainer, ``run_cell`` and retrieval evaluation as the deep methods:

- ``features="pixels"``: the flattened input image (centred by the training mean as part of the fit);
  ``features="backbone"``: the output of the method's backbone (``backbone=...``, ``pretrained=...``), kept in eval
  mode and never trained.
- Fitting happens once, in :meth:`ShallowHashingMethod.on_fit_start`, on the datamodule's
  ``train_eval_dataloader()`` (deterministic, no augmentation; ``train_dataloader()`` when it has none). Supervised
  shallow methods (``uses_labels = True``: CCA-ITQ, KSH, SDH) also receive the training labels (multi-hot rows, so
  multi-label data work as single-label data do) in the same pass. The training
  epoch that follows does nothing per step (``automatic_optimization = False``, ``training_step`` returns ``None``)
  and training stops after it, so validation/checkpointing/testing go through the base class as for every method.
- The fit counts as one (no-op) optimiser step, so Lightning's ``global_step`` is 1 after it and the
  validation-selected checkpoint is written as for any method.
- The fitted transform is stored in buffers (``feature_mean``, ``projection``, plus subclass buffers), so it is
  saved in and restored from checkpoints; loading resizes the buffers to the stored shapes.
- ``forward(x)`` returns the real-valued projections :meth:`ShallowHashingMethod.project` (``(f − μ)W`` unless a
  subclass maps the features first, e.g. onto kernel values at anchors) passed through
  :meth:`ShallowHashingMethod.transform`; ``encode`` (base class) thresholds them at zero.
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

__all__ = [
    "ShallowHashingMethod",
    "KernelShallowHashingMethod",
    "check_covariance_dim",
    "pca",
    "procrustes_quantization",
    "squared_distances",
    "rbf_kernel",
    "seeded_subset",
]

FEATURE_KINDS = ("pixels", "backbone")


#: Largest feature dimension :func:`pca` accepts: its D x D float64 covariance is 2 GiB at 16,384 (64 px RGB pixels
#: are 12,288-dim; 224 px pixels, 150,528-dim, would need 169 GiB).
MAX_PCA_DIM = 16384


def check_covariance_dim(dim: int, what: str) -> None:
    """Refuse a D x D float64 covariance over more than :data:`MAX_PCA_DIM` feature dimensions."""
    if dim > MAX_PCA_DIM:
        raise ValueError(
            f"{what} over {dim}-dim feature vectors would build a {dim} x {dim} float64 covariance "
            f"({dim * dim * 8 / 2**30:.0f} GiB; the limit is {MAX_PCA_DIM} dims). Pixel features of 224 px images are "
            "this large: fit on native-size images (data transform 'native') or on the backbone's feature vectors "
            "(features='backbone')."
        )


def pca(x: Tensor, n_components: int) -> tuple[Tensor, Tensor, Tensor]:
    """Principal directions of ``x`` [N, D] in float64.

    Returns:
        mean [D], the top ``n_components`` principal directions as columns [D, n_components] (largest variance
        first, each with its largest-magnitude entry made positive so the result does not depend on the
        eigensolver's sign choice) and their variances [n_components].
    """
    check_covariance_dim(x.shape[1], "PCA")
    x = x.double()
    mean = x.mean(0)
    xc = x - mean
    cov = xc.T @ xc / max(x.shape[0], 1)
    evals, evecs = torch.linalg.eigh(cov)
    order = torch.argsort(evals, descending=True)[:n_components]
    vecs = evecs[:, order]
    signs = sign_with_zero_positive(vecs.gather(0, vecs.abs().argmax(0, keepdim=True)))
    return mean, vecs * signs, evals[order]


def procrustes_quantization(
    v: Tensor, n_iter: int = 50, generator: torch.Generator | None = None
) -> tuple[Tensor, list[float]]:
    """The ITQ rotation (Gong & Lazebnik): min over B ∈ {±1}, orthogonal R of ‖B − VR‖²_F, by alternation.

    Shared by the methods that rotate an embedding before thresholding it (CCA-ITQ); starts from a random
    orthogonal R (QR of a Gaussian matrix drawn by ``generator``) and alternates B = sign(VR) with the orthogonal
    Procrustes solution R = ÛŴᵀ of the SVD VᵀB = ÛΣŴᵀ. Each step can only lower the loss.

    Returns:
        R [K, K] (float64) and the loss ‖sign(VR) − VR‖²_F / N before the first and after every iteration.
    """
    v = v.double()
    k = v.shape[1]
    rotation, _ = torch.linalg.qr(torch.randn(k, k, generator=generator, dtype=torch.float64).to(v.device))

    def quantization(r: Tensor) -> float:
        vr = v @ r
        return float((sign_with_zero_positive(vr) - vr).pow(2).sum() / max(v.shape[0], 1))

    history = [quantization(rotation)]
    for _ in range(n_iter):
        u_hat, _, w_hat_t = torch.linalg.svd(v.T @ sign_with_zero_positive(v @ rotation))
        rotation = u_hat @ w_hat_t
        history.append(quantization(rotation))
    return rotation, history


def squared_distances(x: Tensor, anchors: Tensor, chunk: int = 4096) -> Tensor:
    """‖x_i − a_j‖² [N, M] (float32 matrix products in chunks of rows, clamped at 0 against rounding)."""
    a = anchors.float()
    a2 = a.pow(2).sum(1)
    out = []
    for start in range(0, x.shape[0], chunk):
        xc = x[start : start + chunk].float()
        out.append((xc.pow(2).sum(1, keepdim=True) + a2 - 2 * xc @ a.T).clamp_min(0))
    return torch.cat(out) if out else x.new_zeros(0, anchors.shape[0])


def rbf_kernel(x: Tensor, anchors: Tensor, sigma2: float | Tensor) -> Tensor:
    """Gaussian RBF kernel values exp(−‖x − a_j‖² / (2σ²)) at every anchor a_j, [N, M] float32."""
    return torch.exp(-squared_distances(x, anchors) / (2 * sigma2))


def seeded_subset(n: int, k: int, generator: torch.Generator) -> Tensor:
    """``min(k, n)`` distinct indices of ``range(n)`` drawn uniformly by ``generator`` (sorted)."""
    return torch.randperm(n, generator=generator)[: min(k, n)].sort().values


class ShallowHashingMethod(HashingMethod):
    """Base class of closed-form hashing methods (see the module docstring).

    Subclasses implement :meth:`fit_features` (set ``feature_mean`` and ``projection``, plus their own buffers;
    ``fit_features(x, labels)`` when ``uses_labels`` is true), :meth:`project` if the projection does not act on
    the centred features themselves, and, if the bits are not the signs of the projections, :meth:`transform`.

    Args:
        n_bits: code length K.
        features: ``"pixels"`` (flattened images) or ``"backbone"`` (backbone features).
        seed: seed of every random choice of the fit (random projections, initial rotations).
        **kwargs: :class:`~hashbench.methods.base.HashingMethod` arguments (backbone, pretrained, ...).
    """

    supervision = "shallow"
    ddp_batch = "closed-form"  # fitted once on the whole training split, no gradient steps
    activation = "identity"
    paper_training: dict[str, Any] = {"max_epochs": 1}  # closed-form fit: one pass, no optimiser
    #: names of the buffers that hold the fitted transform (resized on checkpoint load)
    fitted_buffers: tuple[str, ...] = ("feature_mean", "projection")
    #: True for supervised shallow methods: the fit receives the training labels (multi-hot rows) too
    uses_labels: bool = False

    def __init__(self, n_bits: int = 48, features: str = "pixels", seed: int = 0, **kwargs: Any) -> None:
        if features not in FEATURE_KINDS:
            raise ValueError(f"features must be one of {FEATURE_KINDS}; got {features!r}")
        super().__init__(n_bits=n_bits, **kwargs)
        self.features = features
        self.seed = seed
        self.automatic_optimization = False
        self.fit_report: dict[str, float] = {}
        #: the method's own objective terms at the end of its fit (logged as ``train/fit_<term>``)
        self.fit_terms: dict[str, float] = {}
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

    def input_dim(self) -> int:
        """Dimension of the feature vectors the current transform takes (0 before anything was set)."""
        return self.feature_mean.shape[0]

    def project(self, f: Tensor) -> Tensor:
        """Projections [B, K] of feature vectors [B, D]: ``(f − μ)W`` (kernel methods map f onto anchors first)."""
        return (f - self.feature_mean) @ self.projection

    def forward(self, x: Tensor) -> Tensor:
        f = self.feature_vectors(x)
        if self.input_dim() != f.shape[1]:
            if bool(self.fitted):
                raise ValueError(
                    f"{type(self).__name__} was fitted on {self.input_dim()}-dim features, got {f.shape[1]}"
                )
            # Unfitted: plain LSH (seeded random hyperplanes through the origin), see the module docstring.
            self.feature_mean = torch.zeros(f.shape[1], device=f.device)
            self.projection = self.random_projection(f.shape[1]).to(f.device)
        return self.transform(self.project(f))

    # ------------------------------------------------------------------ fitting
    def fit_features(self, x: Tensor) -> None:
        """Fit the transform on training feature vectors ``x`` [N, D] (closed form).

        Supervised subclasses (``uses_labels = True``) take ``fit_features(x, labels)`` with ``labels`` [N, C]
        multi-hot float rows.
        """
        raise NotImplementedError

    @torch.no_grad()
    def collect(self, loader: Any) -> tuple[Tensor, Tensor]:
        """Feature vectors [N, D] and labels [N, C] (float) of every batch of ``loader`` (on this module's device)."""
        chunks, labels = [], []
        for batch in loader:
            chunks.append(self.feature_vectors(batch[0].to(self.device)))
            labels.append(batch[1].to(self.device).float())
        if not chunks:
            raise ValueError(f"{type(self).__name__}: the training loader yielded no batches to fit on")
        return torch.cat(chunks), torch.cat(labels)

    @torch.no_grad()
    def collect_features(self, loader: Any) -> Tensor:
        """Feature vectors [N, D] of every batch of ``loader`` (on this module's device)."""
        return self.collect(loader)[0]

    @torch.no_grad()
    def fit(self, loader: Any) -> ShallowHashingMethod:
        """Fit on every image (and, for supervised methods, label) of ``loader`` and mark the model fitted."""
        x, labels = self.collect(loader)
        if self.uses_labels:
            self.fit_features(x, labels)
        else:
            self.fit_features(x)
        self.fitted = torch.tensor(True, device=self.device)
        u = self.transform(self.project(x))
        self.fit_report = {
            "fit_quantization": float((sign_with_zero_positive(u) - u).pow(2).mean()),
            **{f"fit_{key}": value for key, value in self.fit_terms.items()},
        }
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


class KernelShallowHashingMethod(ShallowHashingMethod):
    """Shallow methods whose bits threshold a linear function of RBF kernel values at anchor points (KSH, SDH).

    The fitted transform is ``anchors`` [M, D] (training points), the kernel width ``sigma2`` (σ², the kernel
    is exp(−‖x − a‖² / (2σ²))), ``projection`` [M, K] and ``kernel_bias`` [K]: bits = sign(k(x) W + c). Until
    it is fitted (no anchors), the model hashes like every shallow model (seeded random hyperplanes).
    """

    fitted_buffers = ("feature_mean", "projection", "anchors", "sigma2", "kernel_bias")

    def __init__(self, n_bits: int = 48, features: str = "pixels", seed: int = 0, **kwargs: Any) -> None:
        super().__init__(n_bits=n_bits, features=features, seed=seed, **kwargs)
        self.register_buffer("anchors", torch.zeros(0, 0))
        self.register_buffer("sigma2", torch.tensor(1.0))
        self.register_buffer("kernel_bias", torch.zeros(0))

    def input_dim(self) -> int:
        return self.anchors.shape[1] if self.anchors.shape[0] else super().input_dim()

    def kernel_features(self, f: Tensor) -> Tensor:
        """RBF kernel values [B, M] of feature vectors [B, D] at the anchors."""
        return rbf_kernel(f, self.anchors, self.sigma2)

    def project(self, f: Tensor) -> Tensor:
        if not self.anchors.shape[0]:  # unfitted: the base class's random hyperplanes
            return super().project(f)
        return self.kernel_features(f) @ self.projection + self.kernel_bias

    def set_kernel_transform(self, anchors: Tensor, sigma2: float, projection: Tensor, bias: Tensor) -> None:
        """Store a fitted kernel transform (float32 buffers on this module's device)."""
        device = self.projection.device
        self.anchors = anchors.float().to(device)
        self.sigma2 = torch.tensor(float(sigma2), device=device)
        self.projection = projection.float().to(device)
        self.kernel_bias = bias.float().to(device)
        # No centring happens in the input space; the mean records the fitted input dimension only.
        self.feature_mean = torch.zeros(anchors.shape[1], device=device)
