"""DFH: Push for Quantization: Deep Fisher Hashing.

Yunqiang Li, Wenjie Pei, Yufei Zha, Jan van Gemert. "Push for Quantization: Deep Fisher Hashing". BMVC 2019.
https://bmvc2019.org/wp-content/papers/0938.html (doi:10.5244/C.33.182, arXiv:1909.00206) — official code
(PyTorch): https://github.com/liyunqianggyn/Push-for-Quantization-Deep-Fisher-Hashing.

DFH optimises class separability in the binary space. With u_i the network outputs, b_i ∈ {−1, +1}^K the binary
codes, Θ_ij = ½ u_iᵀu_j and s_ij = 1 when images i and j share a label, its objective has four parts:

- a pairwise likelihood with a margin m in the binary inner product (similar pairs pushed above +m, dissimilar
  below −m): Σ_ij s_ij log(1 + e^{m − Θ_ij}) + (1 − s_ij) log(1 + e^{m + Θ_ij}), over a mini-batch image i and every
  training image j (memory banks of outputs and labels, as in DPSH); m = 0 gives DPSH's likelihood;
- Fisher's within-class scatter in the binary space, Σ_i ‖b_i − C ŷ_i‖², the distance of each code to its class
  centre (C = [c_1 … c_C] ∈ {−1, +1}^{K×C} binary class centres; ŷ_i = y_i / |y_i|, so a multi-label image's centre
  is the mean of its labels' centres);
- the between-class term Σ_{c≠c'} c_cᵀc_{c'}, whose minimisation maximises the Hamming distances between centres
  (‖c_c − c_{c'}‖² = 2K − 2c_cᵀc_{c'});
- the quantisation "push" ‖b_i − u_i‖² that ties the outputs to the discrete codes.

It is minimised by alternating (each training step, in :meth:`DFH.compute_loss`): the B-step, b_i =
sign(η u_i + μ C ŷ_i) (:func:`dfh_b_step`, exact); the C-step, a discrete cyclic coordinate descent over the
classes, c_c = sign(q_c − Σ_{c'≠c} (ŷ^c·ŷ^{c'}) c_{c'} − ν Σ_{c'≠c} c_{c'}) with q_c = Σ_i ŷ_ic b_i
(:func:`dfh_center_step`, exact in each class with the others fixed); and the network step on
:func:`dfh_loss` with B and C fixed (only the likelihood and the quantisation term depend on u). As in the official
code the B- and C-steps use the batch's codes.

The batch objective (:func:`dfh_loss`): likelihood / (N·B) + η Σ_i‖b_i − u_i‖² / (B·K) + μ Σ_i‖b_i − C ŷ_i‖² / (B·K)
+ μν Σ_{c≠c'} c_cᵀc_{c'} / (B·K). The between-class term carries the batch's normalisation because the C-step
weighs it against the batch's within-class sum (as the official code's C-step does); the B- and C-steps are then
the exact minimisers of this objective in b and in each c_c.

Deviations from the paper:
- The paper's text was not readable from this session, so the loss is a reconstruction from the abstract (margin in
  the binary space, Fisher within- and between-class terms in the binary space, quantisation in the optimisation)
  and the authors' released code (Main.py, center.py, models/DFH_loss.py) plus the re-implementation its README
  points to (swuxyj/DeepHash-pytorch, DFH.py); the normalisations above are hashbench's.
- The likelihood is written on the relaxed outputs u (Θ = ½ uᵀu), as in both codes.
- The normalisations, and with them the B-step b = sign(η u + μ C ŷ) as the exact minimiser of the reported
  objective, are hashbench's (the codes' B-step differs, see below). The B- and C-steps run every training step on
  the batch's codes, as in the official code.
- Gradient of the in-batch pairs: the bank's batch rows are u itself, so u_k's role as bank row k carries gradient
  (as hashbench's DPSH); both codes treat the whole bank as a constant.
- Relaxed codes are the raw hash-layer outputs (``activation = "identity"``), as in both codes; hashbench's hash
  head adds a BatchNorm1d (``hash_bn``; a framework-wide choice). Class centres start at 0 (so the first B-step is
  b = sign(u)), as in the official code; sign(0) = +1 (hashbench's rule).

Paper and official code:
- Margin: the official Main.py sets ``margin = 0`` and trains on the margin-free likelihood (the margin form is a
  commented-out line of models/DFH_loss.py); DeepHash-pytorch uses the margin form with m = 3. hashbench implements
  the margin form and uses m = 3, the paper's central idea being the margin.
- B-step: both codes use b = sign(u + μ C ŷ) (no η there, η = 0.5 only in the network's loss); hashbench uses
  sign(η u + μ C ŷ), the minimiser of the objective it reports.
- C-step: the official code's default is this discrete DCC (``Discretecenter``); DeepHash-pytorch uses its
  alternative, 200 gradient steps on relaxed centres V with ‖VᵀV − K(2I − 11ᵀ)‖² as between-class term.
- Multi-label: the official code divides each label vector by its number of labels (ŷ); DeepHash-pytorch uses y.
  hashbench follows the official code.
- Values: ν = 1 and η = 0.5 in both codes; μ = 1 from the official Main.py (DeepHash-pytorch: 0.1); m = 3 from
  DeepHash-pytorch, since the official Main.py switches the margin off (m = 0). Training recipe
  (``paper_training``) from the official Main.py.
- Measured on fashion-mnist (``hashbench run --profile quick --epochs 3``: compact CNN, Adam 1e-3, seed 0,
  48 bits), mAP@all: m = 3, μ = 1 (the defaults) 0.689; m = 0, μ = 1 (official Main.py) 0.683; m = 3, μ = 0.1
  (DeepHash-pytorch) 0.612; m = 0, μ = 0.1 0.537; m = 3, μ = 0.5 (the same network step as the codes' B-step
  sign(u + μ C ŷ) with μ = 1) 0.682; tanh instead of raw outputs (m = 3, μ = 0.1) 0.556. With μ = 0.1 the codes
  are b ≈ sign(u) and the method is close to DPSH with a margin; with μ = 1 the B-step sets a bit to its class
  centre's unless |u| > 2 (single-label data), so the quantisation term pulls the outputs towards centres that
  the C-step keeps far apart. (The defaults were first DeepHash-pytorch's μ = 0.1; μ = 1 was adopted after these
  runs, as the official code's value.)
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from hashbench.methods.base import HashingMethod, Paper
from hashbench.nn.losses import label_similarity, log1p_exp, sign_with_zero_positive
from hashbench.registry import register_method

__all__ = ["dfh_label_weights", "dfh_b_step", "dfh_center_step", "dfh_loss", "DFH"]


def dfh_label_weights(labels: Tensor) -> Tensor:
    """ŷ_i = y_i / |y_i|: each image's labels with weights summing to one (rows without labels stay 0)."""
    labels = labels.float() if not labels.is_floating_point() else labels
    return labels / labels.sum(1, keepdim=True).clamp_min(1.0)


def dfh_b_step(u: Tensor, label_weights: Tensor, centers: Tensor, mu: float = 1.0, eta: float = 0.5) -> Tensor:
    """b_i = sign(η u_i + μ C ŷ_i): the minimiser of η‖b − u‖² + μ‖b − C ŷ‖² over b ∈ {−1, +1}^K (sign(0) = +1).

    Args:
        u: network outputs [B, K].
        label_weights: ŷ [B, C] (:func:`dfh_label_weights`).
        centers: class centres [C, K] (row c is c_c).
        mu: μ, weight of the within-class term.
        eta: η, weight of the quantisation term.
    """
    return sign_with_zero_positive(eta * u.detach() + mu * label_weights.to(u.dtype) @ centers)


def dfh_center_step(codes: Tensor, label_weights: Tensor, centers: Tensor, nu: float = 1.0, n_iter: int = 1) -> Tensor:
    """Discrete cyclic coordinate descent over the classes on ‖B − Ŷ C‖²_F + ν Σ_{c≠c'} c_cᵀc_{c'}, C ∈ {−1, +1}.

    The objective is linear in each centre (‖c_c‖² = K), so c_c = sign(q_c − Σ_{c'≠c} G_cc' c_c' − ν Σ_{c'≠c} c_c')
    with q_c = Σ_i ŷ_ic b_i and G = ŶᵀŶ is its exact minimiser with the other centres fixed; the classes are
    swept in order ``n_iter`` times.

    Args:
        codes: the batch's codes B [B, K].
        label_weights: ŷ [B, C].
        centers: the current centres [C, K] (not modified).
        nu: ν, weight of the between-class term.
        n_iter: number of sweeps over the classes.

    Returns:
        The new centres [C, K].
    """
    y = label_weights.to(codes.dtype)
    q = y.T @ codes
    gram = y.T @ y
    c = centers.clone().to(codes.dtype)
    for _ in range(n_iter):
        for i in range(c.shape[0]):
            within = gram[i] @ c - gram[i, i] * c[i]
            between = c.sum(0) - c[i]
            c[i] = sign_with_zero_positive(q[i] - within - nu * between)
    return c


def dfh_loss(
    u: Tensor,
    labels: Tensor,
    bank_u: Tensor,
    bank_labels: Tensor,
    codes: Tensor,
    centers: Tensor,
    margin: float = 3.0,
    mu: float = 1.0,
    nu: float = 1.0,
    eta: float = 0.5,
    bank_index: Tensor | None = None,
) -> dict[str, Tensor]:
    """DFH objective of a batch (module docstring): margin likelihood, quantisation, within- and between-class terms.

    likelihood = Σ_{i, j} [s_ij log(1 + e^{m − Θ_ij}) + (1 − s_ij) log(1 + e^{m + Θ_ij})] / (N B), Θ = ½ u vᵀ with v
    the bank (its rows ``bank_index`` replaced by u); quantization = η Σ_i ‖b_i − u_i‖² / (B K);
    within = μ Σ_i ‖b_i − C ŷ_i‖² / (B K); between = μ ν Σ_{c≠c'} c_cᵀc_{c'} / (B K). Only the first two depend on u.

    Args:
        u: network outputs of the batch [B, K].
        labels: multi-hot labels of the batch [B, C].
        bank_u: outputs of all N training images [N, K] (memory bank).
        bank_labels: their labels [N, C].
        codes: the batch's binary codes b [B, K].
        centers: class centres C [C, K].
        margin: m, the margin on Θ.
        mu: μ, weight of the within-class term.
        nu: ν, weight of the between-class term relative to the within-class term.
        eta: η, weight of the quantisation term.
        bank_index: where the batch sits in the bank: those rows are replaced by u, so that the gradient includes
            the batch's role as bank rows (``None``: the bank is a constant).

    Returns:
        ``likelihood``, ``quantization``, ``within``, ``between`` and their sum ``loss``.
    """
    n, bs, k = bank_u.shape[0], u.shape[0], u.shape[1]
    v = bank_u.to(u.dtype) if bank_index is None else bank_u.to(u.dtype).index_copy(0, bank_index, u)
    theta = 0.5 * u @ v.T
    s = label_similarity(labels, bank_labels).to(u.dtype)
    pair = s * log1p_exp(margin - theta) + (1.0 - s) * log1p_exp(margin + theta)
    likelihood = pair.sum() / (n * bs)
    quantization = eta * (codes - u).pow(2).sum() / (bs * k)
    centers = centers.to(u.dtype)
    within = mu * (codes - dfh_label_weights(labels).to(u.dtype) @ centers).pow(2).sum() / (bs * k)
    total = centers.sum(0)
    between = mu * nu * (total @ total - centers.pow(2).sum()) / (bs * k)  # Σ_{c≠c'} c_cᵀc_c' = ‖Σc‖² − Σ‖c‖²
    return {
        "likelihood": likelihood,
        "quantization": quantization,
        "within": within,
        "between": between,
        "loss": likelihood + quantization + within + between,
    }


@register_method
class DFH(HashingMethod):
    """Deep Fisher Hashing: margin likelihood + binary within/between-class terms + quantisation (Li et al., 2019).

    The codes B of the batch and the class centres C are discrete variables updated in closed form / by DCC inside
    each training step (module docstring); the network step is the usual one on ``dfh_loss``.

    Under DDP with n processes and a global batch B, pairs against the whole-training-set bank are global, but the
    gradient through the batch's own bank rows (and the discrete step) covers only this process's rows: the
    effective in-batch size of those terms is B/n (the one-process objective needs ``devices=1``).
    """

    paper = Paper(
        title="Push for Quantization: Deep Fisher Hashing",
        authors="Yunqiang Li, Wenjie Pei, Yufei Zha, Jan van Gemert",
        venue="BMVC",
        year=2019,
        url="https://arxiv.org/abs/1909.00206",
        code="https://github.com/liyunqianggyn/Push-for-Quantization-Deep-Fisher-Hashing",
        reconstruction=True,
    )
    supervision = "pairwise"
    ddp_batch = "per-process"  # see the class docstring
    loss_function = staticmethod(dfh_loss)
    # The relaxed codes are the raw hash-layer outputs, as in the official code (CNN.fc_plus, no tanh).
    activation = "identity"
    # Official Main.py: SGD momentum 0.9, lr 0.01, x0.1 every 50 epochs, weight decay 5e-4, 150 epochs, batch 128
    # (on an ImageNet-pretrained AlexNet, left out so that the recipe also runs on 1-channel data).
    paper_training = {
        "optimizer": "sgd",
        "lr": 0.01,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "scheduler": "step",
        "lr_step": 50,
        "lr_gamma": 0.1,
        "max_epochs": 150,
        "batch_size": 128,
    }

    def __init__(
        self,
        n_bits: int = 48,
        margin: float = 3.0,  # m, margin of the pairwise likelihood; DeepHash-pytorch (official Main.py: 0)
        mu: float = 1.0,  # μ, weight of the within-class term; official Main.py (DeepHash-pytorch: 0.1)
        nu: float = 1.0,  # ν (`vul` in both codes), weight of the between-class term
        eta: float = 0.5,  # η, weight of the quantisation term ‖b − u‖²; both codes
        center_iter: int = 1,  # DCC sweeps over the classes per C-step; one in the official code
        **kwargs: Any,
    ) -> None:
        if mu < 0 or nu < 0 or eta < 0:
            raise ValueError(f"DFH needs mu, nu, eta >= 0; got mu={mu}, nu={nu}, eta={eta}")
        if center_iter < 1:
            raise ValueError(f"DFH needs center_iter >= 1, got {center_iter}")
        super().__init__(n_bits=n_bits, **kwargs)
        self.margin, self.mu, self.nu, self.eta, self.center_iter = margin, mu, nu, eta, center_iter

    def on_data_configured(self) -> None:
        self.add_memory_bank("outputs", self.n_bits)
        self.add_memory_bank("labels", self.hparams.num_classes)
        self.register_buffer("centers", torch.zeros(self.hparams.num_classes, self.n_bits, device=self.device))

    @torch.no_grad()
    def discrete_step(self, u: Tensor, labels: Tensor) -> Tensor:
        """The B-step with the current centres, then the C-step with the new codes (the official code's order)."""
        weights = dfh_label_weights(labels)
        b = dfh_b_step(u, weights, self.centers, self.mu, self.eta)
        if self._trainer is not None and self.trainer.world_size > 1:
            # Every replica fits the centres to the whole global batch, so that they stay identical.
            b_all = self.all_gather(b).reshape(-1, b.shape[1])
            weights_all = self.all_gather(weights).reshape(-1, weights.shape[1])
        else:
            b_all, weights_all = b, weights
        self.centers.copy_(dfh_center_step(b_all, weights_all, self.centers, self.nu, self.center_iter))
        return b

    def compute_loss(self, batch: Any) -> dict[str, Tensor]:
        u = self(batch.image)
        self.update_memory_bank("outputs", batch.index, u)
        self.update_memory_bank("labels", batch.index, batch.labels)
        b = self.discrete_step(u, batch.labels)
        return self.loss_function(
            u,
            batch.labels,
            self.memory_bank("outputs").values,
            self.memory_bank("labels").values,
            b,
            self.centers,
            self.margin,
            self.mu,
            self.nu,
            self.eta,
            batch.index,
        )
