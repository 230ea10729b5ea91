"""DSDH: Deep Supervised Discrete Hashing.

Qi Li, Zhenan Sun, Ran He, Tieniu Tan. "Deep Supervised Discrete Hashing". NIPS 2017 (NeurIPS 30).
https://papers.nips.cc/paper/6842-deep-supervised-discrete-hashing — arXiv:1705.10999 — official code (MatConvNet):
https://github.com/liqi-casia/DSDH-HashingCode.

DSDH asks the binary codes to preserve the pairwise labels and to be good features for a linear classifier. With
u_i = F(x_i) the network outputs, b_i ∈ {−1, +1}^K the binary codes, y_i the label vector, W [K, C] the classifier
and Θ_ij = ½ u_iᵀu_j, it minimises over the network, B and W

    J = −Σ_{s_ij ∈ S} (s_ij Θ_ij − log(1 + e^{Θ_ij})) + μ Σ_i ‖y_i − Wᵀb_i‖² + ν ‖W‖²_F + η Σ_i ‖b_i − u_i‖²

by alternating three steps: the network by back-propagation (B, W fixed: the likelihood and the η term carry its
gradient); W in closed form, W = (B Bᵀ + (ν/μ) I)⁻¹ B Yᵀ (ridge regression of the labels on the codes); B by
discrete cyclic coordinate descent (DCC), one bit at a time: with P = W Y + (η/μ) U, the k-th bit of every code is
b^k = sign(p^k − B'ᵀ W' w_k) (B', W' the codes and classifier rows without bit k), which solves
min_B ‖Y − WᵀB‖² + (η/μ) ‖B − U‖² exactly in that bit. Pairs (i, j) run over a mini-batch image i and every training
image j, whose latest outputs and labels are kept in memory banks (as in DPSH). Multi-label data: y_i is the
multi-hot vector and s_ij = 1 when i and j share a label.

How the three steps run in hashbench's Lightning loop (each training step, in :meth:`DSDH.compute_loss`):
1. u = F(x) for the batch; u and the labels are written into the ``outputs`` and ``labels`` banks;
2. the batch's rows of the ``codes`` bank (the training set's B) are set to sign(u) (the official code's warm
   start), then W = :func:`dsdh_w_step` of the whole ``codes`` and ``labels`` banks (rows not yet visited are zero
   and add nothing), kept in the ``classifier`` buffer;
3. the batch's codes are refined by :func:`dsdh_b_step` (DCC, at most ``dcc_iter`` sweeps over the bits, stopping
   when a sweep changes nothing) and written back into ``codes``;
4. the network step on :func:`dsdh_loss` with those b and W.
The B-step objective is separable over images, so updating only the batch's codes is an exact block-coordinate
step of J; the codes of the other images are the ones of their last visit.

Deviations from the paper:
- The W- and B-steps run once per training step (above), not as separate passes over the training set; W is fitted
  to the codes of the whole training set as last visited (the official code fits it to the batch's codes only).
- Normalisation: the batch's terms of J are divided by N·B (training-set size × batch size) and ν‖W‖² by N², so
  the loss's scale does not grow with N (as hashbench's DPSH).
- The relaxed codes are tanh outputs (hashbench's default activation; TreezzZ/DSDH_PyTorch does the same), where the
  official code uses the raw fc8 output. Measured on fashion-mnist (demo command: compact CNN, Adam 1e-3, 3 epochs,
  seed 0, 48 bits), mAP@all 0.447 with raw outputs against 0.554 with tanh: raw outputs let the likelihood be met by
  a few large coordinates (after 105 steps similar pairs had Θ ≈ 13 while differing in 12 of 48 signs), which the
  signs do not keep. hashbench's hash head also puts a BatchNorm1d after the hash layer (``hash_bn``; a
  framework-wide choice).
- sign(0) = +1 in the B-step (hashbench's rule); MATLAB's sign(0) = 0 in the official code.

Paper and official code:
- The paper's PDF was not readable from this session. The objective, the W-step and the DCC B-step above are the
  ones the official code (train.m, RRC.m) and both re-implementations (TreezzZ/DSDH_PyTorch, swuxyj/DeepHash-pytorch
  DSDH.py) implement; they agree on them.
- Likelihood gradient: the likelihood term counts both orders (i, j) and (j, i) of each pair with a batch image
  against a constant bank (2 Σ_{i, j} ℓ_ij), so the network's gradient is the paper's ∂J/∂u_i =
  Σ_j (σ(Θ_ij) − s_ij) u_j + 2η(u_i − b_i), the one the official code forms ((S − A) U − 2η(u − b), train.m).
  A one-sided sum (hashbench's DPSH) halves the likelihood's weight against η; on the demo command the two gave
  0.553 (one-sided) and 0.554 mAP@all.
- Hyper-parameters: the official code uses η = 55 (setup.m), ν = 0.1 (``lambda`` of the ridge regression in
  train.m) and μ = 1 (implicit: P = η U + Y Wᵀ); hashbench uses these. The re-implementations use other scales
  (TreezzZ: μ = 0.01, ν = 1, η = 0.01 on mean-normalised terms; DeepHash-pytorch: μ = ν = 1, η = 55).
- The official code solves W and B for the mini-batch only, every step, and starts the DCC from B = 0; hashbench
  fits W to the whole code bank and starts the DCC from sign(u) (see above). TreezzZ/DSDH_PyTorch updates W and B
  once per epoch over the training set; DeepHash-pytorch runs ten W/DCC rounds over the whole training set every
  step and leaves the η term out of the network's loss (its classification term has no gradient).
- Measured on fashion-mnist (demo command above), mAP@all with η = 55 0.554, with η = 10 0.590; with η = 55 and
  the 10-epoch ``quick`` profile 0.701 (still improving at the last epoch). With η/μ = 55 the
  classifier has next to no say in the B-step: P = Y Wᵀ + 55 u with entries of W of 0.01-0.03, so a bit differs
  from sign(u) only where |u| < 6·10⁻⁴ (measured: 0.03 % of the bits at the first step, none after 35 steps); the
  codes are sign(u) and DSDH trains like DPSH with η = 55 on a likelihood of twice DPSH's weight.
- Training recipe (``paper_training``): the official code's plain SGD with the learning rate decayed log-uniformly
  from 10⁻² to 10⁻⁶ over 150 epochs (``logspace(-2, -6, 150)``: ×10^(−4/149) each epoch), weight decay 5·10⁻⁴,
  batch 128, gradients divided by batch × N as here. Its network is an ImageNet-pretrained CNN-F, left out so that
  the recipe also runs on 1-channel data.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from hashbench.methods.base import HashingMethod, Paper
from hashbench.nn.losses import pairwise_logistic_nll, sign_with_zero_positive
from hashbench.registry import register_method

__all__ = ["dsdh_w_step", "dsdh_b_step", "dsdh_loss", "DSDH"]


def dsdh_w_step(codes: Tensor, labels: Tensor, mu: float = 1.0, nu: float = 0.1) -> Tensor:
    """Closed-form classifier W [K, C] = (BᵀB + (ν/μ) I)⁻¹ BᵀY: the minimiser of μ‖Y − B W‖² + ν‖W‖².

    Args:
        codes: binary codes B [N, K] (rows of zeros, e.g. images not visited yet, add nothing).
        labels: label vectors Y [N, C].
        mu: μ, weight of the classification loss.
        nu: ν, weight of the regulariser ‖W‖²_F.
    """
    k = codes.shape[1]
    gram = codes.T @ codes + (nu / mu) * torch.eye(k, dtype=codes.dtype, device=codes.device)
    return torch.linalg.solve(gram, codes.T @ labels.to(codes.dtype))


def dsdh_b_step(
    u: Tensor,
    labels: Tensor,
    classifier: Tensor,
    codes: Tensor,
    mu: float = 1.0,
    eta: float = 55.0,
    n_iter: int = 10,
) -> Tensor:
    """Discrete cyclic coordinate descent on min_B ‖Y − B W‖² + (η/μ)‖B − U‖² over B ∈ {−1, +1}^[B, K].

    With P = Y Wᵀ + (η/μ) U and A = W Wᵀ, bit k of every code becomes sign(P[:, k] − Σ_{l≠k} b_l A_lk), the exact
    minimiser in that bit with the others fixed (sign(0) = +1); sweeps over the K bits repeat until one changes
    nothing, at most ``n_iter`` times. The objective never increases.

    Args:
        u: network outputs U [B, K].
        labels: label vectors Y [B, C].
        classifier: W [K, C].
        codes: the starting codes [B, K] in {−1, +1} (not modified).
        mu: μ, weight of the classification loss.
        eta: η, weight of the quantisation loss.
        n_iter: maximum number of sweeps.

    Returns:
        The new codes [B, K].
    """
    p = labels.to(u.dtype) @ classifier.T + (eta / mu) * u
    a = classifier @ classifier.T
    b = codes.to(u.dtype).clone()
    for _ in range(n_iter):
        before = b.clone()
        for k in range(b.shape[1]):
            rest = b @ a[:, k] - a[k, k] * b[:, k]
            b[:, k] = sign_with_zero_positive(p[:, k] - rest)
        if torch.equal(b, before):
            break
    return b


def dsdh_loss(
    u: Tensor,
    labels: Tensor,
    bank_u: Tensor,
    bank_labels: Tensor,
    codes: Tensor,
    classifier: Tensor,
    mu: float = 1.0,
    nu: float = 0.1,
    eta: float = 55.0,
    single_label: bool | None = None,
) -> dict[str, Tensor]:
    """DSDH objective of a batch against the whole training set (the batch's terms of J, divided by N·B).

    likelihood = 2 Σ_{i, j} [log(1 + e^{Θ_ij}) − s_ij Θ_ij] / (N B) with Θ = ½ u bank_uᵀ: a batch image i enters J
    through the pairs (i, j) and (j, i), equal for the stored j by symmetry, and the bank is a constant; so the
    gradient of u_i is the paper's ∂J/∂u_i = Σ_j (σ(Θ_ij) − s_ij) u_j + 2η(u_i − b_i), over N·B;
    classification = μ Σ_i ‖y_i − Wᵀb_i‖² / (N B); regularization = ν ‖W‖²_F / N²;
    quantization = η Σ_i ‖b_i − u_i‖² / (N B). Only the likelihood and the quantisation depend on u: b and W come
    from the discrete and closed-form steps (:func:`dsdh_b_step`, :func:`dsdh_w_step`).

    Args:
        u: network outputs of the batch [B, K].
        labels: label vectors of the batch [B, C] (multi-hot).
        bank_u: outputs of all N training images [N, K] (memory bank, the batch already written in).
        bank_labels: their labels [N, C].
        codes: the batch's binary codes b [B, K].
        classifier: W [K, C].
        mu: μ, weight of the classification loss.
        nu: ν, weight of ‖W‖²_F.
        eta: η, weight of the quantisation loss.
        single_label: whether all labels are one-hot (a shortcut; ``None`` checks the labels).

    Returns:
        ``likelihood``, ``classification``, ``regularization``, ``quantization`` and their sum ``loss``.
    """
    n, bs = bank_u.shape[0], u.shape[0]
    norm = n * bs
    likelihood = 2.0 * pairwise_logistic_nll(u, bank_u, labels, bank_labels, 0.5, single_label) / norm
    classification = mu * (labels.to(u.dtype) - codes @ classifier).pow(2).sum() / norm
    regularization = nu * classifier.pow(2).sum() / n**2
    quantization = eta * (codes - u).pow(2).sum() / norm
    return {
        "likelihood": likelihood,
        "classification": classification,
        "regularization": regularization,
        "quantization": quantization,
        "loss": likelihood + classification + regularization + quantization,
    }


@register_method
class DSDH(HashingMethod):
    """Deep Supervised Discrete Hashing: pairwise likelihood + linear classifier on discrete codes (Li et al., 2017).

    The binary codes B (a memory bank) and the classifier W are optimisation variables updated by DCC and in closed
    form inside each training step (see the module docstring); the network step is the usual one on ``dsdh_loss``.

    Under DDP with n processes and a global batch B, pairs against the whole-training-set bank are global, but the
    gradient through the batch's own bank rows (and the discrete step) covers only this process's rows: the
    effective in-batch size of those terms is B/n (the one-process objective needs ``devices=1``).
    """

    paper = Paper(
        title="Deep Supervised Discrete Hashing",
        authors="Qi Li, Zhenan Sun, Ran He, Tieniu Tan",
        venue="NIPS",
        year=2017,
        url="https://papers.nips.cc/paper/6842-deep-supervised-discrete-hashing",
        code="https://github.com/liqi-casia/DSDH-HashingCode",
    )
    supervision = "pairwise"
    ddp_batch = "per-process"  # see the class docstring
    loss_function = staticmethod(dsdh_loss)
    # Official code (DSDH.m, train.m, update.m): lr logspace(-2, -6, 150) per epoch, plain SGD, weight decay 5e-4,
    # batch 128, 150 epochs.
    paper_training = {
        "optimizer": "sgd",
        "lr": 1e-2,
        "momentum": 0.0,
        "weight_decay": 5e-4,
        "scheduler": "step",
        "lr_step": 1,
        "lr_gamma": 10 ** (-4 / 149),
        "max_epochs": 150,
        "batch_size": 128,
    }

    def __init__(
        self,
        n_bits: int = 48,
        mu: float = 1.0,  # μ, weight of the classification loss, Eq. (6); 1 in the official code (train.m)
        nu: float = 0.1,  # ν, weight of ‖W‖²_F; the ridge `lambda` = 0.1 of the official train.m
        eta: float = 55.0,  # η, weight of ‖b − u‖²; 55 in the official setup.m
        dcc_iter: int = 10,  # maximum DCC sweeps per B-step; 10 in the official train.m
        **kwargs: Any,
    ) -> None:
        if mu <= 0 or nu <= 0 or eta < 0:
            raise ValueError(f"DSDH needs mu > 0, nu > 0 and eta >= 0; got mu={mu}, nu={nu}, eta={eta}")
        if dcc_iter < 1:
            raise ValueError(f"DSDH needs dcc_iter >= 1, got {dcc_iter}")
        super().__init__(n_bits=n_bits, **kwargs)
        self.mu, self.nu, self.eta, self.dcc_iter = mu, nu, eta, dcc_iter

    def on_data_configured(self) -> None:
        self.add_memory_bank("outputs", self.n_bits)
        self.add_memory_bank("codes", self.n_bits)
        self.add_memory_bank("labels", self.hparams.num_classes)
        self.register_buffer("classifier", torch.zeros(self.n_bits, self.hparams.num_classes, device=self.device))

    @torch.no_grad()
    def discrete_step(self, u: Tensor, labels: Tensor, index: Tensor) -> Tensor:
        """The W-step on the whole code bank and the B-step for the batch (module docstring, steps 2-3)."""
        self.update_memory_bank("codes", index, self.binarize(u))
        codes = self.memory_bank("codes").values
        w = dsdh_w_step(codes, self.memory_bank("labels").values, self.mu, self.nu)
        self.classifier.copy_(w)
        b = dsdh_b_step(u.detach(), labels, w, codes[index], self.mu, self.eta, self.dcc_iter)
        self.update_memory_bank("codes", index, b)
        return b

    def compute_loss(self, batch: Any) -> dict[str, Tensor]:
        u = self(batch.image)
        self.update_memory_bank("outputs", batch.index, u)
        self.update_memory_bank("labels", batch.index, batch.labels)
        b = self.discrete_step(u, batch.labels, batch.index)
        return self.loss_function(
            u,
            batch.labels,
            self.memory_bank("outputs").values,
            self.memory_bank("labels").values,
            b,
            self.classifier,
            self.mu,
            self.nu,
            self.eta,
            not self.multi_label,
        )
