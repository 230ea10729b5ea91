"""ADSH: Asymmetric Deep Supervised Hashing.

Qing-Yuan Jiang, Wu-Jun Li. "Asymmetric Deep Supervised Hashing". AAAI 2018. https://arxiv.org/abs/1707.08325
(https://cs.nju.edu.cn/lwj/paper/AAAI18_ADSH.pdf) — official code (MatConvNet and PyTorch):
https://github.com/jiangqy/ADSH-AAAI2018.

ADSH treats query and database points asymmetrically: a deep network F(·; Θ) hashes the query points, while the
binary codes V ∈ {−1, +1}^{n×c} of the n database points Γ are optimisation variables learned directly. Query
points Ω (m of them) are sampled from the database, so each has a code v_i, and with u_i = tanh(F(x_i; Θ))

    J(Θ, V) = Σ_{i∈Ω} Σ_{j∈Γ} (u_iᵀ v_j − c·S_ij)² + γ Σ_{i∈Ω} ‖v_i − u_i‖²,

c = K the code length. J is minimised by alternating: with V fixed, T_in epochs of SGD over the sampled points
train Θ; with Θ fixed, V is updated bit by bit in closed form. Writing J(V) = ‖V Uᵀ‖² + tr(V Qᵀ) + const with
Q = −2c SᵀU − 2γŪ (Ū: n×c, row i = u_i for i ∈ Ω, else 0), the k-th column is

    V_{*k} = −sign(2 V̂_k Û_kᵀ U_{*k} + Q_{*k}),

V̂_k, Û_k being V, U without their k-th column (the columns are updated in turn, each using the new earlier ones).
Each of T_out outer iterations samples a new Ω. At test time the paper hashes queries with the network and uses
the learned V as the database's codes.

How the paper's schedule maps onto hashbench (one Lightning epoch = one outer iteration):
- Ω = the whole training set (m = n = ``num_train``): every training image is a "query" point of every outer
  iteration, so T_in = 1 pass over Ω per outer iteration and T_out = ``max_epochs``. The paper samples m = 2,000
  points per outer iteration and passes over them T_in = 3 times (6,000 network samples per V-update against
  hashbench's n); the training loader is the datamodule's (shuffled mini-batches of the whole training set), which
  a method cannot subsample, so hashbench does not sample.
- Γ = the training set too (the paper's database *is* its training set): V is a [num_train, K] memory bank.
- Θ-step: every training step, with V fixed for the whole epoch, minimises the mini-batch's share of J (the terms
  of its B rows i against all n codes v_j); the batch's outputs u_i are written into a [num_train, K] bank U.
- V-step: at the end of each epoch (:meth:`ADSH.on_train_epoch_end`), V is updated with the U bank, i.e. with each
  image's output from when its batch was trained in this epoch, exactly as both official codes record U during the
  last inner epoch. Items not seen yet (a ``drop_last`` remainder in the first epoch) are left out of Ω and Γ.

How ADSH fits hashbench's evaluation: the table runner and ``test`` encode *every* database image with the trained
network, because hashbench's protocols' databases are not the training set (and a database must be encodable
without its labels). So ADSH's database codes come from the query network, sign(tanh(F(x))), not from V; the
training images' V codes are used only inside training (as the targets the network fits) and never at test time.
This is the main deviation from the paper's setting, where the database's codes are V (learned from the database's
own labels); expect lower mAP than the paper's asymmetric numbers.

Memory and cost (no n × n matrix anywhere): V and U are [n, K] banks. Both steps group the training items by their
M distinct label sets (M = C for single-label data). A Θ-step reads a summary of V made once per V-step
(:func:`summarize_codes`: VᵀV, Σ_j v_j and the per-label-set sums of V), so its loss costs O(B·M·(C + K) + B·K²)
and never forms [B, n]. The V-step needs SᵀU over Ω × Γ (:func:`similar_sum`), O(M²·(C + K) + n·K²) in blocks of at
most 2^24 similarity entries. Measured on one CPU thread, n = 64,000, K = 48, B = 128: loss + backward 12 ms and
V-step 0.4 s (10 classes); 3 ms and 0.4 s (21 labels, 1,383 distinct label sets); 74 ms and 41 s for 51,293
distinct label sets (80 random labels, a worst case).

Deviations from the paper:
- Schedule: one outer iteration per epoch with Ω = the whole training set and T_in = 1 (above); the paper's m
  (``num_samples`` = 2,000) and T_in = 3 are not used.
- Evaluation: database codes come from the network, not from V (above).
- Initial V: with ``init_codes="network"`` (default) one V-step is made before the first epoch, from the initial
  network's outputs on the training set (one extra forward pass over it, in training mode, without gradient). Both
  official codes start from V = 0 (``init_codes="zeros"``): then the whole first outer iteration trains the network
  through the quantisation term alone, towards u = 0 (with V = 0 the square term does not depend on u), which is
  1/50 of the paper's schedule but a third of a 3-epoch run; measured below.
- sign(0): V's entries are sign(−x) with sign(0) = +1 (hashbench's rule; ``−np.sign`` in the official code leaves a
  0 entry for x = 0).
- Normalisation: both terms are divided by n·B (training-set size × batch size), as in the official PyTorch code's
  loss; the paper writes sums. Only the scale changes.
- Relaxed codes are tanh outputs of hashbench's hash head (a linear layer followed by BatchNorm1d, the framework
  default ``hash_bn=True``); the paper's hash layer is a plain linear layer on CNN-F.

Paper and official code (the paper's method section could not be read from here, only its abstract: the paper's
side of the first two points is our recollection of its equations, and the objective, the gradient and the V-step
above are the ones both official codes implement):
- Similarity values. The paper's formulation has S_ij ∈ {−1, +1}. Both official codes (MATLAB ``process_ADSH.m``,
  PyTorch ``calc_sim``, commented "soft constraint") use S_ij = 1 for similar and −r for dissimilar pairs, with
  r = (number of similar pairs) / (number of dissimilar pairs) over the sampled Ω × Γ block. hashbench follows the
  code (``similarity="soft"``, r over Ω × Γ = training × training, recomputed at each V-step); ``similarity="hard"``
  gives ±1.
- V-step's S term. The PyTorch code uses the relaxed outputs U in −2c SᵀU, as the paper's Q does; the MATLAB code
  uses sign(U) there (and U in the Û term). hashbench follows the PyTorch code and the paper (U).
- Optimiser. The MATLAB code (the paper's experiments, CNN-F) uses plain SGD, weight decay 5·10⁻⁴ and a learning
  rate decaying log-uniformly from 10⁻⁴ to 10⁻⁶ over the T_out·T_in = 150 inner epochs (10^-4.5 for NUS-WIDE); the
  PyTorch code (ResNet-50) uses plain SGD, lr 10⁻³ divided by 10 every 10 outer iterations, weight decay 5·10⁻⁴.
  ``paper_training`` records the PyTorch recipe with one epoch per outer iteration.
- The two codes agree on γ = 200, m = 2,000, T_out = 50, T_in = 3 and batch 64.

Known behaviour (Fashion-MNIST, ``quick`` profile cut to 3 epochs: Adam lr 10⁻³, batch 128, compact CNN, 48 bits,
seed 0, test mAP@all when these defaults were chosen): 0.717 with the defaults; 0.635 with ``init_codes="zeros"``
(the official start, whose first epoch only pulls u towards 0); 0.665 with ``similarity="hard"`` (S = ±1: the
dissimilar pairs' target u_iᵀv_j = −K cannot be met by ten classes at once, where −r·K ≈ −0.11·K can).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor

from hashbench.methods.base import HashingMethod, Paper
from hashbench.nn.losses import label_similarity, sign_with_zero_positive
from hashbench.registry import register_method

__all__ = [
    "ADSH",
    "CodeSummary",
    "CodeUpdate",
    "adsh_dissimilar_weight",
    "adsh_loss",
    "adsh_similarity",
    "adsh_update_codes",
    "similar_sum",
    "summarize_codes",
]

#: largest number of similarity entries :func:`similar_sum` forms at once (64 MiB of float32)
_BLOCK_ELEMENTS = 2**24


def adsh_similarity(labels_a: Tensor, labels_b: Tensor, r: float = 1.0) -> Tensor:
    """S_ij = 1 if items share a label, else −r ([len(a), len(b)], in ``labels_a``'s floating dtype).

    ``r = 1`` is the paper's S ∈ {−1, +1}; the official codes' "soft constraint" uses r = #similar / #dissimilar.
    """
    dtype = labels_a.dtype if labels_a.is_floating_point() else torch.float32
    a = label_similarity(labels_a, labels_b).to(dtype)
    return (1.0 + r) * a - r


def similar_sum(row_labels: Tensor, col_labels: Tensor, values: Tensor) -> Tensor:
    """Σ_i [row j and column item i share a label] · values_i for every row j: [len(row_labels), D].

    Items are grouped by their distinct label sets first, so the similarity matrix formed is M_rows × M_cols over
    distinct label sets (in blocks of at most 2^24 entries), never rows × columns.

    Args:
        row_labels: multi-hot labels [N, C] of the rows.
        col_labels: multi-hot labels [M, C] of the summed items.
        values: [M, D] values of the summed items.
    """
    cols, col_group = torch.unique(col_labels, dim=0, return_inverse=True)
    grouped = values.new_zeros(cols.shape[0], values.shape[1]).index_add_(0, col_group, values)
    rows, row_group = torch.unique(row_labels, dim=0, return_inverse=True)
    out = values.new_empty(rows.shape[0], values.shape[1])
    step = max(1, _BLOCK_ELEMENTS // max(1, cols.shape[0]))
    cols_t = cols.to(values.dtype).T
    for start in range(0, rows.shape[0], step):
        block = (rows[start : start + step].to(values.dtype) @ cols_t > 0).to(values.dtype)
        out[start : start + step] = block @ grouped
    return out[row_group]


def adsh_dissimilar_weight(labels_omega: Tensor, labels: Tensor) -> float:
    """r = (number of similar pairs) / (number of dissimilar pairs) over Ω × Γ (the official "soft constraint").

    Returns 1.0 (the paper's S ∈ {−1, +1}) when there are no dissimilar pairs.
    """
    ones = labels.new_ones(labels.shape[0], 1, dtype=torch.float64)
    similar = float(similar_sum(labels_omega, labels, ones).sum())
    dissimilar = labels_omega.shape[0] * labels.shape[0] - similar
    return similar / dissimilar if dissimilar > 0 else 1.0


class CodeUpdate(NamedTuple):
    """Result of :func:`adsh_update_codes`: the new codes and the r of S that the step used."""

    codes: Tensor
    r: float


@torch.no_grad()
def adsh_update_codes(
    codes: Tensor,
    u: Tensor,
    omega: Tensor,
    labels_omega: Tensor,
    labels: Tensor,
    gamma: float = 200.0,
    r: float | None = 1.0,
) -> CodeUpdate:
    """One discrete V-step of ADSH: every column of V in turn, V_{*k} = −sign(2 V̂_k Û_kᵀ U_{*k} + Q_{*k}).

    Q = −2c SᵀU − 2γŪ with S [m, n] (1 similar, −r dissimilar) and Ū the n×c matrix holding u_i in row i ∈ Ω.
    Columns are updated in order, each with the already-updated earlier columns (as in the official code). With
    hashbench's rule sign(0) = +1, an entry whose argument 2 V̂_k Û_kᵀ U_{*k} + Q_{*k} is exactly 0 becomes +1.

    Args:
        codes: current database codes V [n, c] (±1, or 0 before the first step).
        u: relaxed codes of the query points [m, c].
        omega: database index of each query point [m] (distinct).
        labels_omega: labels of the query points [m, C].
        labels: labels of the database points [n, C].
        gamma: γ, weight of ‖v_i − u_i‖².
        r: value −r of S for dissimilar pairs (1 = the paper's ±1); ``None``: the official codes' soft constraint
            r = #similar / #dissimilar over Ω × Γ (:func:`adsh_dissimilar_weight`), counted in the same pass.

    Returns:
        The new codes [n, c] in {−1, +1} (a new tensor) and r.
    """
    c = codes.shape[1]
    u = u.to(codes.dtype)
    # One pass over the label sets gives Σ_{i∈Ω similar to j} u_i and, in the last column, how many i that is.
    with_count = torch.cat([u, u.new_ones(u.shape[0], 1)], dim=1)
    sums = similar_sum(labels, labels_omega, with_count)
    if r is None:
        similar = float(sums[:, -1].double().sum())
        dissimilar = u.shape[0] * codes.shape[0] - similar
        r = similar / dissimilar if dissimilar > 0 else 1.0
    # Σ_{i∈Ω} S_ij u_i = (1 + r) Σ_{i similar to j} u_i − r Σ_i u_i
    st_u = (1.0 + r) * sums[:, :-1] - r * u.sum(0, keepdim=True)
    q = -2.0 * c * st_u
    q.index_add_(0, omega, -2.0 * gamma * u)
    gram = u.T @ u  # column k without its diagonal entry is Û_kᵀ U_{*k}
    v = codes.clone()
    for k in range(c):
        x = 2.0 * (v @ gram[:, k] - v[:, k] * gram[k, k]) + q[:, k]
        v[:, k] = sign_with_zero_positive(-x)
    return CodeUpdate(v, float(r))


class CodeSummary(NamedTuple):
    """What a Θ-step needs of the database codes V [n, c] and their labels, grouped by distinct label set.

    Built once per V-step by :func:`summarize_codes` (V is fixed between V-steps); a step then costs
    O(B·M·(C + c) + B·c²) for M distinct label sets instead of O(B·n·c).

    Attributes:
        group_labels: the M distinct label sets [M, C].
        group_sums: Σ v_j over the database items of each label set [M, c].
        group_counts: number of database items with each label set [M].
        code_sum: Σ_j v_j [c].
        gram: VᵀV [c, c].
        n: number of database items n.
    """

    group_labels: Tensor
    group_sums: Tensor
    group_counts: Tensor
    code_sum: Tensor
    gram: Tensor
    n: int


def summarize_codes(codes: Tensor, code_labels: Tensor) -> CodeSummary:
    """The :class:`CodeSummary` of database codes V [n, c] with labels [n, C]."""
    groups, group = torch.unique(code_labels, dim=0, return_inverse=True)
    sums = codes.new_zeros(groups.shape[0], codes.shape[1]).index_add_(0, group, codes)
    counts = torch.bincount(group, minlength=groups.shape[0]).to(codes.dtype)
    return CodeSummary(groups, sums, counts, codes.sum(0), codes.T @ codes, codes.shape[0])


def adsh_loss(
    u: Tensor,
    labels: Tensor,
    database: CodeSummary,
    own_codes: Tensor,
    gamma: float = 200.0,
    r: float = 1.0,
) -> dict[str, Tensor]:
    """ADSH's objective for a mini-batch of query points against all n database codes (V fixed).

        square = Σ_i Σ_j (u_iᵀ v_j − c·S_ij)² / (n·B),   quantization = γ Σ_i ‖v_i − u_i‖² / (n·B),

    S_ij = 1 if query i and database item j share a label, else −r. The pair sum is evaluated exactly from the
    summary of V: Σ_j (u_iᵀv_j)² = u_iᵀ(VᵀV)u_i, Σ_j S_ij v_j = (1 + r) Σ_{j similar} v_j − r Σ_j v_j and
    Σ_j S_ij² = (1 − r²)·#{j similar} + r²·n, the similar sums taken over label sets (never a [B, n] matrix).

    Args:
        u: relaxed codes tanh(F(x_i)) of the batch [B, c].
        labels: multi-hot labels of the batch [B, C].
        database: :func:`summarize_codes` of the database codes V and their labels (rows of V not learned yet may
            be 0: they add a constant and no gradient).
        own_codes: the batch's own database codes v_i [B, c].
        gamma: γ, weight of the quantization term.
        r: S_ij = −r for dissimilar pairs (1 = the paper's S ∈ {−1, +1}).

    Returns:
        ``square``, ``quantization`` and their sum ``loss``.
    """
    n, b, c = database.n, u.shape[0], u.shape[1]
    dtype = u.dtype
    similar = (labels.to(dtype) @ database.group_labels.to(dtype).T > 0).to(dtype)  # [B, M]
    sv = (1.0 + r) * similar @ database.group_sums.to(dtype) - r * database.code_sum.to(dtype)  # Σ_j S_ij v_j
    s_sq = (1.0 - r * r) * (similar @ database.group_counts.to(dtype)) + r * r * n  # Σ_j S_ij²
    square = ((u @ database.gram.to(dtype)) * u).sum() - 2.0 * c * (u * sv).sum() + c * c * s_sq.sum()
    square = square / (n * b)
    quantization = gamma * (own_codes.to(dtype) - u).pow(2).sum() / (n * b)
    return {"square": square, "quantization": quantization, "loss": square + quantization}


@register_method
class ADSH(HashingMethod):
    """Asymmetric deep supervised hashing: network for queries, discrete codes V for the training set."""

    paper = Paper(
        title="Asymmetric Deep Supervised Hashing",
        authors="Qing-Yuan Jiang, Wu-Jun Li",
        venue="AAAI",
        year=2018,
        url="https://arxiv.org/abs/1707.08325",
        code="https://github.com/jiangqy/ADSH-AAAI2018",
    )
    supervision = "pairwise"
    ddp_batch = "per-sample"  # under DDP: each image against the database codes
    loss_function = staticmethod(adsh_loss)
    # The official PyTorch code (ADSH_pytorch/ADSH_CIFAR_10.py), one epoch per outer iteration: plain SGD (no
    # momentum), lr 1e-3 divided by 10 every 10 outer iterations, weight decay 5e-4, batch 64, T_out = 50.
    paper_training = {
        "optimizer": "sgd",
        "lr": 1e-3,
        "momentum": 0.0,
        "weight_decay": 5e-4,
        "scheduler": "step",
        "lr_step": 10,
        "lr_gamma": 0.1,
        "batch_size": 64,
        "max_epochs": 50,
    }

    def __init__(
        self,
        n_bits: int = 48,
        gamma: float = 200.0,  # γ, weight of ‖v_i − u_i‖² (both official codes' default)
        similarity: str = "soft",  # "soft": S = 1 / −r (official codes); "hard": S = ±1 (the paper's formula)
        init_codes: str = "network",  # V before the first epoch: "network" (one V-step) or "zeros" (official code)
        **kwargs: Any,
    ) -> None:
        if gamma < 0:
            raise ValueError(f"ADSH needs gamma >= 0, got {gamma}")
        if similarity not in ("soft", "hard"):
            raise ValueError(f"ADSH similarity must be 'soft' or 'hard', got {similarity!r}")
        if init_codes not in ("network", "zeros"):
            raise ValueError(f"ADSH init_codes must be 'network' or 'zeros', got {init_codes!r}")
        self._summary: CodeSummary | None = None
        super().__init__(n_bits=n_bits, **kwargs)
        self.gamma, self.similarity, self.init_codes = gamma, similarity, init_codes

    def on_data_configured(self) -> None:
        self.add_memory_bank("codes", self.n_bits)  # V
        self.add_memory_bank("outputs", self.n_bits)  # U, each item's latest output
        self.add_memory_bank("labels", self.hparams.num_classes)
        # r of the soft similarity, set at each V-step (1 = S ∈ {−1, +1} until then; V = 0 then anyway)
        self.register_buffer("dissimilar_weight", torch.ones((), device=self.device))

    # ------------------------------------------------------------------ Θ-step
    def database_summary(self) -> CodeSummary:
        """:func:`summarize_codes` of V and the training labels, cached until the next V-step.

        V only changes at V-steps. The labels are those known when the summary is made: all of them after the
        initial pass or the first epoch; before that V = 0 and r = 1, where the loss does not depend on them.
        """
        codes = self.memory_bank("codes").values
        cached = self._summary
        if cached is None or cached.gram.device != codes.device or cached.gram.dtype != codes.dtype:
            self._summary = summarize_codes(codes, self.memory_bank("labels").values)
        return self._summary

    def compute_loss(self, batch: Any) -> dict[str, Tensor]:
        u = self(batch.image)
        self.update_memory_bank("outputs", batch.index, u)
        self.update_memory_bank("labels", batch.index, batch.labels)
        return self.loss_function(
            u,
            batch.labels,
            self.database_summary(),
            self.memory_bank("codes").values[batch.index],
            self.gamma,
            float(self.dissimilar_weight),
        )

    # ------------------------------------------------------------------ V-step
    @torch.no_grad()
    def update_codes(self) -> dict[str, float]:
        """The V-step over the items seen so far (Ω = Γ = those items); returns what changed."""
        outputs, labels, codes = (self.memory_bank(name) for name in ("outputs", "labels", "codes"))
        index = outputs.filled.nonzero().squeeze(1)
        if index.numel() == 0:
            return {}
        y = labels.values[index]
        old = codes.values[index]
        local = torch.arange(index.numel(), device=index.device)
        soft = self.similarity == "soft"
        new, r = adsh_update_codes(old, outputs.values[index], local, y, y, self.gamma, None if soft else 1.0)
        codes.write(index, new)
        self.dissimilar_weight.fill_(r)
        self._summary = None
        return {
            "code_flips": float((new != old).float().mean()),
            "code_agreement": float((sign_with_zero_positive(outputs.values[index]) == new).float().mean()),
            "dissimilar_weight": r,
        }

    @torch.no_grad()
    def _initial_codes(self) -> None:
        dm = getattr(self.trainer, "datamodule", None)
        if dm is None:
            return
        loader = dm.train_eval_dataloader() if hasattr(dm, "train_eval_dataloader") else dm.train_dataloader()
        was_training = self.training
        self.train()  # batch statistics in BatchNorm, as in the training steps that follow
        for batch in loader:
            image, batch_labels, index = (t.to(self.device) for t in (batch[0], batch[1], batch[2]))
            self.update_memory_bank("outputs", index, self(image))
            self.update_memory_bank("labels", index, batch_labels)
        self.train(was_training)
        self.update_codes()

    def on_train_start(self) -> None:
        # A resumed run (V already learned) keeps its codes.
        if self.init_codes == "network" and not bool(self.memory_bank("codes").filled.any()):
            self._initial_codes()

    def on_train_epoch_end(self) -> None:
        for key, value in self.update_codes().items():
            self.log(f"train/{key}", value)
