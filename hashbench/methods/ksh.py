"""KSH: Kernel-Based Supervised Hashing.

Wei Liu, Jun Wang, Rongrong Ji, Yu-Gang Jiang, Shih-Fu Chang. "Supervised Hashing with Kernels". CVPR 2012,
pp. 2074-2081. https://doi.org/10.1109/CVPR.2012.6247912 — official MATLAB code:
https://github.com/ColumbiaDVMM/Supervised-Hashing-with-Kernels.

Each bit thresholds a kernel function of the input, h_k(x) = sgn(a_kᵀ k̄(x)), with k̄(x) the RBF kernel values at
m anchors (random training points) minus their training means. KSH fits the codes' inner products, not their
Hamming distances, to the labels: with S_ij = +1 for labelled pairs sharing a label and −1 otherwise, it minimises
‖H_l H_lᵀ / r − S‖²_F over the l labelled samples' codes H_l = sgn(K̄_l A) (r = K bits). The bits are learned
greedily: with the residue R_{k−1} = rS − Σ_{t<k} b_t b_tᵀ, bit k minimises −sgn(K̄_l a)ᵀ R_{k−1} sgn(K̄_l a). Its
spectral relaxation — the top generalised eigenvector of K̄_lᵀ R_{k−1} K̄_l against K̄_lᵀ K̄_l, scaled so that
aᵀ K̄_lᵀ K̄_l a = l — initialises a gradient descent on the sigmoid-smoothed objective −φ(K̄_l a)ᵀ R_{k−1}
φ(K̄_l a), φ(x) = 2/(1 + e^{−x}) − 1; the better of the two (by the discrete objective) is kept.

Settings follow the paper and its official demo: m = 300 anchors; l = 2,000 labelled samples (the paper reports
l = 1,000 and 2,000); RBF kernel exp(−‖x − a‖² / (2σ²)) with σ² the mean squared distance between the training
points and the anchors; the smoothed problem solved by Nesterov's accelerated gradient with a backtracking step
size, at most 500 iterations, stopping once the objective changes by at most 1e-2 · l.

Deviations from the paper:
- The anchors and the labelled subset are drawn uniformly at random from the training set by ``seed`` (the
  official demo loads fixed index files); the kernel means are taken over the whole training set as there.
  With fewer than m (or l) training points all of them are used.
- The generalised eigenproblem is solved by a Cholesky reduction with a tiny ridge (1e-10 · tr/m) on
  K̄_lᵀ K̄_l, which is singular when l ≤ m (MATLAB's ``eig(A, B)`` handles that case by a QZ decomposition).
- sign(0) = +1 (the official code maps a projection of exactly 0 to −1).
- Multi-label data: S_ij = +1 when i and j share at least one label (as in the paper's NUS-WIDE-style use).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from hashbench.methods._shallow import KernelShallowHashingMethod, seeded_subset, squared_distances
from hashbench.methods.base import Paper
from hashbench.nn.losses import label_similarity, sign_with_zero_positive
from hashbench.registry import register_method

__all__ = ["ksh_loss", "ksh_smoothed_objective", "ksh_optimize_projection", "KSH"]


def ksh_loss(codes: Tensor, similarity: Tensor) -> dict[str, Tensor]:
    """KSH's objective ‖H Hᵀ / r − S‖²_F, averaged over the l² labelled pairs.

    Args:
        codes: ±1 codes H [l, r] of the labelled samples.
        similarity: pairwise labels S [l, l] in {−1, +1}.
    """
    r = codes.shape[1]
    reconstruction = (codes @ codes.T / r - similarity).pow(2).mean()
    return {"reconstruction": reconstruction, "loss": reconstruction}


def ksh_smoothed_objective(kernels: Tensor, residue: Tensor, a: Tensor) -> tuple[Tensor, Tensor]:
    """The smoothed greedy objective −φ(K̄a)ᵀ R φ(K̄a), φ(x) = 2/(1 + e^{−x}) − 1, and its gradient in a."""
    phi = 2 * torch.sigmoid(kernels @ a) - 1
    r_phi = residue @ phi
    # d/da of −φᵀRφ with R symmetric: −2 K̄ᵀ((Rφ) ⊙ φ'), φ' = (1 − φ²)/2
    return -(phi @ r_phi), -kernels.T @ (r_phi * (1 - phi * phi))


def ksh_optimize_projection(
    kernels: Tensor, residue: Tensor, a0: Tensor, max_iter: int = 500, tol: float = 1e-2
) -> tuple[Tensor, list[float]]:
    """Minimise the smoothed objective from ``a0`` by Nesterov's accelerated gradient with backtracking.

    The step size 1/β starts at the last accepted β and doubles β until the quadratic upper bound at the probe
    point holds; the run stops when no β up to 2^50 times the last is accepted, after ``max_iter`` steps, or
    when the objective changes by at most ``tol`` · l.

    Returns:
        The final projection a and the objective after every accepted step (first entry: at ``a0``).
    """
    l = kernels.shape[0]
    a_prev, a_cur = a0, a0
    delta_prev, delta = 0.0, 1.0
    beta = 1.0
    cost, _ = ksh_smoothed_objective(kernels, residue, a0)
    history = [float(cost)]
    for _ in range(max_iter):
        probe = a_cur + (delta_prev - 1) / delta * (a_cur - a_prev)
        value, grad = ksh_smoothed_objective(kernels, residue, probe)
        accepted = None
        for j in range(51):
            b = 2.0**j * beta
            z = probe - grad / b
            z_value, _ = ksh_smoothed_objective(kernels, residue, z)
            step = z - probe
            if z_value <= value + grad @ step + b * (step @ step) / 2:
                accepted = (b, z, float(z_value))
                break
        if accepted is None:
            break
        beta, z, z_value = accepted
        a_prev, a_cur = a_cur, z
        delta_prev, delta = delta, (1 + math.sqrt(1 + 4 * delta * delta)) / 2
        history.append(z_value)
        if abs(history[-1] - history[-2]) / l <= tol:
            break
    return a_cur, history


@register_method
class KSH(KernelShallowHashingMethod):
    """Kernel-based supervised hashing: greedy bit-wise fit of code inner products to pairwise labels."""

    paper = Paper(
        title="Supervised Hashing with Kernels",
        authors="Wei Liu, Jun Wang, Rongrong Ji, Yu-Gang Jiang, Shih-Fu Chang",
        venue="CVPR",
        year=2012,
        url="https://doi.org/10.1109/CVPR.2012.6247912",
        code="https://github.com/ColumbiaDVMM/Supervised-Hashing-with-Kernels",
    )
    uses_labels = True

    def __init__(
        self,
        n_bits: int = 48,
        features: str = "pixels",
        seed: int = 0,
        n_anchors: int = 300,  # m, Sec. 4 (and the official demo)
        n_labeled: int = 2000,  # l, Sec. 4 (the paper reports l = 1,000 and 2,000)
        max_iter: int = 500,  # gradient-descent iterations per bit (official code)
        tol: float = 1e-2,  # stop when the smoothed objective changes by <= tol * l (official code)
        **kwargs: Any,
    ) -> None:
        super().__init__(n_bits=n_bits, features=features, seed=seed, **kwargs)
        if n_anchors < 1 or n_labeled < 2 or max_iter < 0:
            raise ValueError(
                f"need n_anchors >= 1, n_labeled >= 2, max_iter >= 0; got {n_anchors}, {n_labeled}, {max_iter}"
            )
        self.n_anchors = n_anchors
        self.n_labeled = n_labeled
        self.max_iter = max_iter
        self.tol = tol
        self.bit_report: list[dict[str, float]] = []

    def fit_features(self, x: Tensor, labels: Tensor) -> None:
        g = self._generator()
        anchors = x[seeded_subset(x.shape[0], self.n_anchors, g)]
        labelled = seeded_subset(x.shape[0], self.n_labeled, g)
        d2 = squared_distances(x, anchors).double()
        sigma2 = float(d2.mean())  # σ² = mean squared distance to the anchors (official demo)
        kernel = torch.exp(-d2 / (2 * sigma2))
        kernel_mean = kernel.mean(0)
        kk = (kernel - kernel_mean)[labelled]  # K̄_l [l, m]
        l, m = kk.shape
        similarity = 2 * label_similarity(labels[labelled]).double() - 1
        residue = self.n_bits * similarity  # R_0 = rS
        rm = kk.T @ kk
        chol = torch.linalg.cholesky(
            rm + (1e-10 * float(rm.trace()) / m + 1e-300) * torch.eye(m, dtype=rm.dtype, device=rm.device)
        )
        lm = kk.T @ residue @ kk  # K̄_lᵀ R_{k−1} K̄_l, updated by rank one per bit
        projection = torch.zeros(m, self.n_bits, dtype=torch.float64, device=kk.device)
        self.bit_report = []
        for k in range(self.n_bits):
            # Spectral relaxation (Eq. 10): max aᵀ LM a s.t. aᵀ RM a = l, via RM = LLᵀ.
            c = torch.linalg.solve_triangular(chol, lm, upper=False)
            c = torch.linalg.solve_triangular(chol, c.T, upper=False)
            _, vecs = torch.linalg.eigh((c + c.T) / 2)
            a0 = torch.linalg.solve_triangular(chol.T, vecs[:, -1:], upper=True)[:, 0]
            a0 = a0 * math.sqrt(l / float(a0 @ rm @ a0))
            a1, history = ksh_optimize_projection(kk, residue, a0, self.max_iter, self.tol)
            b0, b1 = sign_with_zero_positive(kk @ a0), sign_with_zero_positive(kk @ a1)
            use_gd = bool(b1 @ residue @ b1 > b0 @ residue @ b0)
            a, b = (a1, b1) if use_gd else (a0, b0)
            projection[:, k] = a
            self.bit_report.append({"gd_iterations": len(history) - 1, "used_gradient_descent": float(use_gd)})
            residue = residue - torch.outer(b, b)
            kb = kk.T @ b
            lm = lm - torch.outer(kb, kb)
        codes = sign_with_zero_positive(kk @ projection)
        self.fit_terms = {key: float(value) for key, value in ksh_loss(codes, similarity).items()}
        # sgn(aᵀ(k(x) − μ)) = sgn(k(x)ᵀa − μᵀa): the kernel means become a bias.
        self.set_kernel_transform(anchors, sigma2, projection, -(kernel_mean @ projection))
