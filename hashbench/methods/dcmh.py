"""DCMH: Deep Cross-Modal Hashing.

Qing-Yuan Jiang, Wu-Jun Li. "Deep Cross-Modal Hashing". CVPR 2017. https://arxiv.org/abs/1602.02255 — official code
(MatConvNet, TensorFlow; PyTorch port): https://github.com/jiangqy/DCMH-CVPR2017.

An image network gives F (one K-dim column per training item) and a text network (bag-of-words → FC 8192 → ReLU →
FC K) gives G. With Θ = ½FᵀG, the objective

    J = Σ_ij [log(1 + e^{Θ_ij}) − S_ij Θ_ij] + γ(‖B − F‖² + ‖B − G‖²) + η(‖F·1‖² + ‖G·1‖²)

ties the inner products of the two modalities to the cross-modal label similarity S (negative log-likelihood),
pulls both towards shared binary codes B (quantization) and balances each bit over the training set (balance).
It is minimised by alternating: the image network with G and B fixed, the text network with F and B fixed, and
B = sign(γ(F + G)) in closed form.

Deviations from the paper:
- Alternation granularity: the paper (and its code) runs a whole epoch of image-network updates, then a whole epoch
  of text-network updates, then updates B. hashbench alternates per mini-batch inside one Lightning epoch (manual
  optimisation: an image step with G, B fixed, then a text step with the just-updated F and B fixed) and updates
  B = sign(γ(F + G)) at the end of each epoch. F and G are memory banks over the training set holding each
  item's latest network output.
- Bank initialisation: F and G start at zero (``bank_init="zeros"``), so a column not yet written has Θ = 0 against
  everything and adds a constant to the likelihood and nothing to any gradient; B starts as sign(0) = +1. The
  authors' PyTorch port starts F and G from N(0, 1) (``bank_init="normal"``), which makes the first epoch fit
  random targets (measured below).
- Hash layers: a BatchNorm1d follows each modality's linear hash layer (``hash_bn=True``, hashbench's
  framework-wide default for image methods; ``hash_bn=False`` gives the paper's plain linear layers).
- Balance weight: η defaults to 0.1 (the paper's η = 1 is in ``paper_training``, so the ``paper`` profile uses it).
  On single-label data with 10 classes only 10 % of pairs are similar, so the class-dependent part of the
  likelihood's gradient is far weaker relative to the balance term than on the paper's dense multi-label data.
- The per-batch objective is divided by (n · batch size) as in the authors' PyTorch port, where n is the number
  of training items whose labels are known (the whole training set once the datamodule provides its labels at
  the start of training; in a bare ``compute_loss`` call only the items seen so far).
- Relaxed codes are tanh outputs (the paper's F, G are unbounded linear outputs), matching hashbench's other
  tanh-headed methods; B uses sign(0) = +1.
- Networks: the offline default image network is the framework's compact CNN (the paper uses CNN-F pretrained on
  ImageNet); the text MLP's hidden width defaults to 1024 (paper 8192; set ``text_hidden=8192``).
- Optimiser: the paper's SGD with a learning rate decaying log-uniformly from 10^-1.5 over 500 epochs is recorded
  in ``paper_training`` as SGD lr 10^-1.5 without that decay (the framework offers step/cosine schedules).

Known behaviour (measured on ``fashion-mnist-text``, Adam lr 1e-3, batch 128, mAP@all = mean of I→T and T→I on the
1,000 test queries against 2,000 database items, seed 0). With the paper's setting (plain linear hash layers,
N(0, 1) banks, η = 1) the codes collapse: after 1–3 epochs at 16 bits every test item gets one or two distinct
codes and mAP is 0.104 (chance 0.103). The cause is not the data's similarity density alone: the gradient of the
likelihood w.r.t. u_i is ½ Σ_j (σ(Θ_ij) − S_ij) g_j, whose component along the mean text code (weight ≈ 0.4 at
Θ ≈ 0) is about four times the class-dependent one (weight 0.1, the similar-pair fraction), so from-scratch
networks first grow a constant output in both modalities with opposite signs (with η = 0 and γ → 0: Θ = −2.2 for
every pair, likelihood 0.33 per pair, one code for every item); η = 1 suppresses that mode, but then the outputs
stay near the saddle Θ ≈ 0 (likelihood 0.69 per pair) with no class structure. Measured at 16 bits: BatchNorm
after the hash layers (which removes the constant mode) lifts 3 epochs to 0.17 (η = 1) / 0.29 (η = 0) / 0.45
(η = 0.1), and over 10 epochs (η = 1) to 0.15 with N(0, 1) banks, 0.48 with banks filled from the networks'
first outputs and 0.66 with zero banks; at 64 bits η = 1 still stalls (0.15 after 10 epochs with BatchNorm and
zero banks) while η = 0.1 reaches 0.60 after 3 epochs. Updating B after every batch (b_i = sign(f_i + g_i))
changed nothing measurable: with the objective divided by n·B, the quantization gradient is about 1/16 of the
likelihood's at the start (it is one term per item against n), so B hardly steers training.
With the defaults above and the full ``quick`` profile (10 epochs, full test protocol: 1,000 queries against the
64,000-item database, seed 0) test mAP@all (mean of I→T and T→I) was 0.726 / 0.735 / 0.702 at 16 / 32 / 64 bits
when these defaults were chosen; ``leaderboards/crossmodal-demo.md`` has the numbers of the current code.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from hashbench.methods._crossmodal import CrossModalHashingMethod
from hashbench.methods.base import Paper
from hashbench.nn.losses import pairwise_logistic_nll, sign_with_zero_positive
from hashbench.registry import register_method

__all__ = ["dcmh_loss", "DCMH"]


def dcmh_loss(
    u: Tensor,
    labels: Tensor,
    other_codes: Tensor,
    other_labels: Tensor,
    b: Tensor,
    rest_sum: Tensor,
    gamma: float = 1.0,
    eta: float = 1.0,
) -> dict[str, Tensor]:
    """DCMH's objective for a batch of one modality with the other modality and B fixed.

    For a batch of image outputs u_i (columns F_{*i}) against all text outputs g_j:
    Θ_ij = ½ u_iᵀ g_j, likelihood = Σ_ij [log(1 + e^{Θ_ij}) − S_ij Θ_ij], quantization = γ Σ_i ‖b_i − u_i‖²,
    balance = η ‖Σ_i u_i + Σ_{n∉batch} f_n‖² (F·1 with the batch's columns taken from the network). The same with the
    roles swapped for the text network. Every term is divided by (n · B).

    Args:
        u: relaxed codes of the batch [B, K] (this modality).
        labels: multi-hot labels of the batch [B, C].
        other_codes: the other modality's codes of n training items [n, K] (fixed).
        other_labels: their labels [n, C].
        b: the batch items' binary codes [B, K] (fixed).
        rest_sum: Σ of this modality's codes over the training items outside the batch [K] (fixed).
        gamma: quantization weight γ.
        eta: balance weight η.

    Returns:
        ``likelihood``, ``quantization``, ``balance`` and their sum ``loss``.
    """
    norm = other_codes.shape[0] * u.shape[0]
    likelihood = pairwise_logistic_nll(u, other_codes, labels, other_labels, scale=0.5) / norm  # Θ = ½ u gᵀ
    quantization = gamma * (b - u).pow(2).sum() / norm
    balance = eta * (u.sum(0) + rest_sum).pow(2).sum() / norm
    return {
        "likelihood": likelihood,
        "quantization": quantization,
        "balance": balance,
        "loss": likelihood + quantization + balance,
    }


@register_method
class DCMH(CrossModalHashingMethod):
    """Deep cross-modal hashing with alternating image / text / code updates (Jiang & Li, CVPR 2017).

    Overrides ``training_step`` (manual optimisation, two optimisers) because the objective is minimised by
    alternating updates of the two networks and a closed-form update of B, not by one loss per step.
    """

    paper = Paper(
        title="Deep Cross-Modal Hashing",
        authors="Qing-Yuan Jiang, Wu-Jun Li",
        venue="CVPR",
        year=2017,
        url="https://arxiv.org/abs/1602.02255",
        code="https://github.com/jiangqy/DCMH-CVPR2017",
    )
    supervision = "cross-modal"
    # Under DDP: per-sample: each item against the other modality's whole-training-set bank.
    ddp_batch = "per-sample"
    loss_function = staticmethod(dcmh_loss)
    paper_training = {
        "optimizer": "sgd",
        "lr": 10**-1.5,
        "weight_decay": 0.0,
        "max_epochs": 500,
        "batch_size": 128,
        "text_hidden": 8192,
        "eta": 1.0,
    }  # Sec. 4 / authors' code (lr decays log-uniformly there; see Deviations)

    def __init__(
        self,
        n_bits: int = 64,
        gamma: float = 1.0,  # γ: quantization weight, Eq. (2), value Sec. 4.1
        eta: float = 0.1,  # η: balance weight, Eq. (2); the paper's 1 is in paper_training (see Deviations)
        bank_init: str = "zeros",
        **kwargs: Any,
    ) -> None:
        """See the class and module docstrings.

        Args:
            n_bits: code length K.
            gamma: quantization weight γ.
            eta: balance weight η.
            bank_init: initial F and G banks: ``zeros`` (hashbench's default; items not yet seen contribute no
                gradient) or ``normal`` (N(0, 1), the authors' PyTorch port). See "Deviations from the paper".
            **kwargs: :class:`~hashbench.methods._crossmodal.CrossModalHashingMethod` arguments. ``hash_bn``
                (default True) puts a BatchNorm1d after both hash layers.
        """
        if gamma <= 0 or eta < 0:
            raise ValueError(f"DCMH needs gamma > 0 and eta >= 0, got gamma={gamma}, eta={eta}")
        if bank_init not in ("zeros", "normal"):
            raise ValueError(f"DCMH bank_init must be 'zeros' or 'normal', got {bank_init!r}")
        super().__init__(n_bits=n_bits, **kwargs)
        self.gamma, self.eta = gamma, eta
        self.automatic_optimization = False

    # ------------------------------------------------------------------ networks
    def _build_network(self, in_channels: int, image_size: int) -> None:
        super()._build_network(in_channels, image_size)
        if self.hparams.hash_bn:
            # Without it both networks settle in the constant "anti-aligned" mode (see Known behaviour).
            self.hash_layer = nn.Sequential(self.hash_layer, nn.BatchNorm1d(self.n_bits))

    def _build_text_network(self) -> None:
        super()._build_text_network()
        if self.hparams.hash_bn and self.text_hash_layer is not None:
            self.text_hash_layer = nn.Sequential(self.text_hash_layer, nn.BatchNorm1d(self.n_bits))

    # ------------------------------------------------------------------ banks
    def on_data_configured(self) -> None:
        k = self.n_bits
        image, text = self.add_memory_bank("image_codes", k), self.add_memory_bank("text_codes", k)
        codes = self.add_memory_bank("codes", k)
        self.add_memory_bank("labels", self.hparams.num_classes)
        if self.hparams.bank_init == "normal":
            # The authors' PyTorch port starts F and G from N(0, 1).
            image.values.normal_()
            text.values.normal_()
        # else zeros: a column not yet written gives Θ = 0 against everything, so it adds a constant to the
        # likelihood and nothing to any gradient (N(0, 1) columns are random targets that the first epoch fits).
        codes.values.copy_(sign_with_zero_positive(image.values + text.values))  # = sign(γ(F + G)) for γ > 0

    def on_train_start(self) -> None:
        # All training labels up front (as in the paper), when the datamodule can list them cheaply.
        dm = getattr(self.trainer, "datamodule", None)
        get = getattr(dm, "train_labels", None)
        if callable(get):
            labels = get().to(self.device)
            if labels.shape == self.memory_bank("labels").values.shape:
                self.memory_bank("labels").write(torch.arange(len(labels), device=self.device), labels)

    def _modality_terms(self, u: Tensor, batch: Any, modality: str) -> dict[str, Tensor]:
        own = self.memory_bank("image_codes" if modality == "image" else "text_codes").values
        other = self.memory_bank("text_codes" if modality == "image" else "image_codes").values
        label_bank = self.memory_bank("labels")
        known = label_bank.filled
        index = batch.index
        # Σ over the known items outside the batch (the batch's columns come from the network).
        rest = own[known].sum(0) - own[index].sum(0)
        return self.loss_function(
            u,
            batch.labels,
            other[known],
            label_bank.values[known],
            self.memory_bank("codes").values[index],
            rest,
            self.gamma,
            self.eta,
        )

    def compute_loss(self, batch: Any) -> dict[str, Tensor]:
        """Both modalities' objectives with the other network's bank fixed (image first, as in a training step)."""
        self.update_memory_bank("labels", batch.index, batch.labels)
        u = self(batch.image)
        image_terms = self._modality_terms(u, batch, "image")
        self.update_memory_bank("image_codes", batch.index, u)
        v = self.text_forward(batch.text)
        text_terms = self._modality_terms(v, batch, "text")
        self.update_memory_bank("text_codes", batch.index, v)
        out = {f"image_{k}": t for k, t in image_terms.items()} | {f"text_{k}": t for k, t in text_terms.items()}
        out["loss"] = image_terms["loss"] + text_terms["loss"]
        return out

    # ------------------------------------------------------------------ optimisation
    def _check_finite(self, terms: dict[str, Tensor]) -> None:
        if not torch.isfinite(terms["loss"]):
            values = {k: float(v.detach()) for k, v in terms.items()}
            raise FloatingPointError(
                f"DCMH: non-finite loss at epoch {self.current_epoch}, step {self.global_step}: {values}. "
                "Lower the learning rate or check the inputs."
            )

    def training_step(self, batch: Any, batch_idx: int) -> None:
        opt_image, opt_text = self.optimizers()
        self.update_memory_bank("labels", batch.index, batch.labels)
        logged: dict[str, Tensor] = {}
        # Image network step, G and B fixed.
        u = self(batch.image)
        terms = self._modality_terms(u, batch, "image")
        self._check_finite(terms)
        opt_image.zero_grad()
        self.manual_backward(terms["loss"])
        opt_image.step()
        self.update_memory_bank("image_codes", batch.index, u)
        logged |= {f"image_{k}": t.detach() for k, t in terms.items()}
        # Text network step, F (with this batch's new columns) and B fixed.
        v = self.text_forward(batch.text)
        terms = self._modality_terms(v, batch, "text")
        self._check_finite(terms)
        opt_text.zero_grad()
        self.manual_backward(terms["loss"])
        opt_text.step()
        self.update_memory_bank("text_codes", batch.index, v)
        logged |= {f"text_{k}": t.detach() for k, t in terms.items()}
        logged["loss"] = logged["image_loss"] + logged["text_loss"]
        for key, value in logged.items():
            self.log(f"train/{key}", value, prog_bar=key == "loss", batch_size=len(batch.index))

    def on_train_epoch_end(self) -> None:
        # B = sign(γ(F + G)): the closed-form minimiser of J over B (paper Eq. 7).
        f, g = self.memory_bank("image_codes").values, self.memory_bank("text_codes").values
        self.memory_bank("codes").values.copy_(sign_with_zero_positive(self.gamma * (f + g)))
        schedulers = self.lr_schedulers()
        for sched in schedulers if isinstance(schedulers, list) else [schedulers] if schedulers else []:
            sched.step()

    def _optimizer(self, groups: list[dict[str, Any]]) -> torch.optim.Optimizer:
        hp = self.hparams
        if hp.optimizer == "sgd":
            return torch.optim.SGD(groups, lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay)
        if hp.optimizer == "rmsprop":
            return torch.optim.RMSprop(groups, lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay)
        if hp.optimizer == "adamw":
            return torch.optim.AdamW(groups, lr=hp.lr, weight_decay=hp.weight_decay)
        return torch.optim.Adam(groups, lr=hp.lr, weight_decay=hp.weight_decay)

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        slow = {id(p) for p in self.pretrained_parameters()}

        def groups(modules: list[torch.nn.Module]) -> list[dict[str, Any]]:
            params = [p for m in modules for p in m.parameters() if p.requires_grad]
            fast = [p for p in params if id(p) not in slow]
            pre = [p for p in params if id(p) in slow]
            out = [{"params": fast, "lr": hp.lr, "name": "head"}]
            if pre:
                out.append({"params": pre, "lr": hp.backbone_lr or hp.lr, "name": "backbone"})
            return out

        image = self._optimizer(groups([self.backbone, self.hash_layer]))
        text = self._optimizer(groups([self._require_text(), self.text_hash_layer]))
        if hp.scheduler == "none":
            return [image, text]
        scheds = []
        for opt in (image, text):
            if hp.scheduler == "step":
                scheds.append(torch.optim.lr_scheduler.StepLR(opt, step_size=hp.lr_step, gamma=hp.lr_gamma))
            else:
                total = max(1, self.trainer.max_epochs if self._trainer is not None and self.trainer.max_epochs else 1)
                scheds.append(torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total))
        return [image, text], scheds
