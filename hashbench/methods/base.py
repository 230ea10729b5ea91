"""The base class every hashing method derives from.

A method file holds its loss as a pure function and a small :class:`HashingMethod` subclass that implements
:meth:`HashingMethod.compute_loss`. Everything else lives here once: backbone + hash head, relaxed codes
(``forward``) and binary codes (``encode``), the training step (logs every loss term as ``train/<term>`` and
refuses non-finite losses), retrieval validation/test on ``[query, database]`` loaders through
:class:`hashbench.metrics.HashingRetrieval`, optimiser/scheduler set-up with separate backbone and head learning
rates, and memory banks sized from the datamodule for methods that need the whole training set.

Training recipe vs. method: a method's ``__init__`` defaults are the paper's *loss* hyperparameters. The
optimiser settings default to a recipe that trains the small offline networks well (Adam, lr 1e-3); each method's
paper recipe (optimiser, lr, schedule, batch size) is recorded in ``paper_training`` and used by the table
runner's ``paper`` profile.

Binarisation rule: ``encode`` returns ``sign(u)`` with ``sign(0) = +1`` (int8 codes in {-1, +1}).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import lightning as L
import torch
from torch import Tensor, nn

from hashbench.data.facts import DataFacts, facts_of
from hashbench.nn.backbones import Backbone, create_backbone
from hashbench.nn.distributed import gather_rows
from hashbench.nn.heads import HashHead
from hashbench.nn.losses import sign_with_zero_positive
from hashbench.nn.weights import WeightsNeed

__all__ = [
    "DEEPHASH_PYTORCH_TRAINING",
    "FINETUNE_TRAINING",
    "Paper",
    "HashingMethod",
    "MemoryBank",
    "SUPERVISION_KINDS",
    "DDP_BATCH_KINDS",
]

SUPERVISION_KINDS = ("pointwise", "pairwise", "triplet", "listwise", "unsupervised", "cross-modal", "shallow")
#: the values of :attr:`HashingMethod.ddp_batch`
DDP_BATCH_KINDS = ("global", "per-sample", "per-process", "closed-form")


#: The training recipe DeepHash-pytorch uses for its baselines (HashNet, DHN, CSQ, GreedyHash, DTSH;
#: hashbench's reconstruction): RMSprop lr 1e-5, weight decay 1e-5, batch 64, 150 epochs. Its backbone is an
#: ImageNet AlexNet (backbone="alexnet", pretrained=True), left out here so that the recipe also runs on 1-channel
#: data. Methods copy it into their ``paper_training``.
DEEPHASH_PYTORCH_TRAINING: dict[str, Any] = {
    "optimizer": "rmsprop",
    "lr": 1e-5,
    "weight_decay": 1e-5,
    "batch_size": 64,
    "max_epochs": 150,
}

#: hashbench's own recipe for fine-tuning an ImageNet-pretrained network, for methods whose paper gives no
#: optimiser settings (DHIH, DFEH): SGD with momentum 0.9, weight decay 5e-4, lr x0.1 every 40 epochs, 100 epochs,
#: batch 128. A method adds its ``lr`` and ``backbone_lr`` (a tenth of it for the pretrained layers).
FINETUNE_TRAINING: dict[str, Any] = {
    "optimizer": "sgd",
    "momentum": 0.9,
    "weight_decay": 5e-4,
    "scheduler": "step",
    "lr_step": 40,
    "lr_gamma": 0.1,
    "max_epochs": 100,
    "batch_size": 128,
}


@dataclass(frozen=True)
class Paper:
    """Bibliographic facts of the paper a method implements."""

    title: str
    authors: str
    venue: str
    year: int
    url: str = ""
    code: str = ""
    reconstruction: bool = False  # True when the loss is reconstructed from an abstract (spec marks it [R])

    def cite(self) -> str:
        return f"{self.authors}. {self.title}. {self.venue}, {self.year}." + (f" {self.url}" if self.url else "")


class MemoryBank(nn.Module):
    """A [N, D] buffer over the training set, indexed by the datamodule's ``index`` field.

    Under DDP every process sees a different shard of each batch, so :meth:`HashingMethod.update_memory_bank`
    gathers (index, value) pairs from all processes before writing: every replica keeps the same bank.
    """

    def __init__(self, size: int, dim: int, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        self.register_buffer("values", torch.zeros(size, dim, dtype=dtype))
        self.register_buffer("filled", torch.zeros(size, dtype=torch.bool))

    def write(self, index: Tensor, values: Tensor) -> None:
        self.values[index] = values.detach().to(self.values.dtype)
        self.filled[index] = True


class HashingMethod(L.LightningModule):
    """Base LightningModule for deep hashing methods.

    Args:
        n_bits: code length K.
        backbone: backbone name (see :func:`hashbench.nn.backbones.create_backbone`).
        pretrained: load ImageNet weights for the backbone (local files only unless downloads are allowed; see
            :mod:`hashbench.nn.weights` for where they are looked for).
        weights: path of a weights file for the backbone (implies ``pretrained``; loaded as given).
        in_channels: input channels; ``None`` = taken from the datamodule (3 until one is attached).
        image_size: input side in pixels for networks with fixed-size FC layers; ``None`` = from the datamodule.
        num_classes: number of labels; ``None`` = from the datamodule.
        num_train: training-set size (memory banks); ``None`` = from the datamodule.
        optimizer: ``adam`` | ``adamw`` | ``sgd`` | ``rmsprop``.
        lr: learning rate of the hash head and every method-specific parameter.
        backbone_lr: learning rate of the backbone (``None`` = ``lr``; pretrained backbones usually want lr/10).
        weight_decay: weight decay for all parameter groups.
        momentum: momentum (SGD, RMSprop).
        scheduler: ``none`` | ``step`` (×``lr_gamma`` every ``lr_step`` epochs) | ``cosine`` (over max_epochs).
        lr_step: epochs between step decays.
        lr_gamma: step decay factor.
        warmup_epochs: linear warm-up epochs (cosine schedule).
        hash_hidden: hidden width of the hash head (0 = linear).
        hash_bn: BatchNorm1d after the hash layer (default True; a framework-wide deviation from papers that
            use a plain linear hash layer: on from-scratch networks pairwise losses otherwise stall near u = 0,
            see :class:`hashbench.nn.heads.HashHead`). Set False for the papers' plain linear layer.
        map_k: mAP cut-off for validation/test; ``"auto"`` = the protocol's default (None = all).
        eval_radius: Hamming radius of the P@H<=r metric.
    """

    paper: ClassVar[Paper]
    supervision: ClassVar[str] = "pairwise"
    #: how ``forward`` turns the hash layer's output into relaxed codes: ``tanh`` or ``identity``
    activation: ClassVar[str] = "tanh"
    #: the paper's training recipe (optimiser, lr, schedule, batch size, epochs), used by the ``paper`` profile
    paper_training: ClassVar[dict[str, Any]] = {}
    #: the method's loss as a named, pure function (``dpsh_loss`` ...) that ``compute_loss`` calls; ``None`` only
    #: for methods fitted in closed form (the shallow baselines), which have no loss
    loss_function: ClassVar[Callable[..., dict[str, Tensor]] | None] = None
    method_name: ClassVar[str]
    #: what the training loss sees of the batch under DDP (n processes, global batch B, B/n rows per process):
    #: ``"global"``: in-batch pairs/triplets/proxies are formed over every process's rows (:meth:`global_batch`),
    #: so n processes optimise the one-process objective of the same global batch; ``"per-sample"``: the loss is a
    #: mean of per-sample terms (against fixed centres, proxies or whole-training-set memory banks), which DDP's
    #: gradient averaging already makes the global-batch objective; ``"per-process"``: in-batch terms see each
    #: process's B/n rows only, an effective in-batch size of B/n that the method's docstring states;
    #: ``"closed-form"``: fitted without gradient steps (the shallow baselines). See :data:`DDP_BATCH_KINDS`.
    ddp_batch: ClassVar[str | None] = None

    def __init__(
        self,
        n_bits: int = 48,
        backbone: str = "compact_cnn",
        pretrained: bool = False,
        weights: str | None = None,
        in_channels: int | None = None,
        image_size: int | None = None,
        num_classes: int | None = None,
        num_train: int | None = None,
        optimizer: str = "adam",
        lr: float = 1e-3,
        backbone_lr: float | None = None,
        weight_decay: float = 1e-5,
        momentum: float = 0.9,
        scheduler: str = "none",
        lr_step: int = 50,
        lr_gamma: float = 0.1,
        warmup_epochs: int = 0,
        hash_hidden: int = 0,
        hash_bn: bool = True,
        map_k: int | str | None = "auto",
        eval_radius: int = 2,
    ) -> None:
        super().__init__()
        if n_bits < 1:
            raise ValueError(f"n_bits must be a positive integer, got {n_bits}")
        if optimizer not in ("adam", "adamw", "sgd", "rmsprop"):
            raise ValueError(f"optimizer must be one of adam, adamw, sgd, rmsprop; got {optimizer!r}")
        if scheduler not in ("none", "step", "cosine"):
            raise ValueError(f"scheduler must be one of none, step, cosine; got {scheduler!r}")
        if self.activation not in ("tanh", "identity"):
            raise ValueError(f"{type(self).__name__}.activation must be 'tanh' or 'identity'")
        self.save_hyperparameters()
        self.n_bits = n_bits
        self._banks = nn.ModuleDict()
        self._data_configured = False
        self.multi_label = False
        #: the :class:`~hashbench.data.facts.DataFacts` of the data the model was configured for (None before)
        self.data_facts: DataFacts | None = None
        self.test_report: dict[str, Any] = {}
        self._build_network(in_channels or 3, image_size or 32)
        self._build_metrics(None if map_k == "auto" else map_k)
        if num_classes is not None and num_train is not None:
            # Enough is known to build everything now (e.g. when loading a checkpoint).
            self.configure_data(num_classes=num_classes, num_train=num_train)

    # ------------------------------------------------------------------ pretrained weights
    @classmethod
    def init_arg(cls, kwargs: Mapping[str, Any], name: str) -> Any:
        """The value constructor argument ``name`` takes for ``cls(**kwargs)``: given, else its default."""
        if name in kwargs:
            return kwargs[name]
        for klass in cls.__mro__:
            param = inspect.signature(klass.__init__).parameters.get(name) if "__init__" in vars(klass) else None
            if param is not None and param.default is not inspect.Parameter.empty:
                return param.default
        return None

    @classmethod
    def weights_needed(cls, kwargs: Mapping[str, Any]) -> list[WeightsNeed]:
        """The pretrained weights files ``cls(**kwargs)`` will read, without building it.

        The table runner's preflight checks them before the first cell runs. A method whose network reads other
        weights (CLIP towers, a fixed feature network) extends this list.
        """
        backbone, weights = cls.init_arg(kwargs, "backbone"), cls.init_arg(kwargs, "weights")
        if weights is not None or cls.init_arg(kwargs, "pretrained"):
            return [WeightsNeed(str(backbone), weights, why=f"the {backbone} backbone")]
        return []

    # ------------------------------------------------------------------ network
    def _build_network(self, in_channels: int, image_size: int) -> None:
        hp = self.hparams
        self._built_for = (in_channels, image_size)
        self.backbone: Backbone = create_backbone(
            hp.backbone, hp.pretrained, in_channels, image_size, weights=hp.weights
        )
        self.hash_layer = HashHead(self.backbone.feature_dim, self.n_bits, hidden=hp.hash_hidden, batch_norm=hp.hash_bn)

    def extract_features(self, x: Tensor) -> Tensor:
        """Backbone features [B, D] that the hash layer reads (override to insert blocks, e.g. DFEH)."""
        return self.backbone(x)

    def hash_logits(self, x: Tensor) -> Tensor:
        """Pre-activation hash outputs [B, K]."""
        return self.hash_layer(self.extract_features(x))

    def activate(self, z: Tensor) -> Tensor:
        return torch.tanh(z) if self.activation == "tanh" else z

    def forward(self, x: Tensor) -> Tensor:
        """Relaxed codes [B, K] (in (-1, 1) for tanh methods, raw outputs otherwise)."""
        return self.activate(self.hash_logits(x))

    @staticmethod
    def binarize(u: Tensor) -> Tensor:
        """sign(u) as float in {-1, +1}, sign(0) = +1; no gradient."""
        return sign_with_zero_positive(u.detach())

    @torch.no_grad()
    def encode(self, x: Tensor) -> Tensor:
        """Binary codes [B, K] as int8 in {-1, +1} (sign(0) = +1)."""
        return torch.where(self(x) >= 0, 1, -1).to(torch.int8)

    # ------------------------------------------------------------------ data
    def configure_data(self, facts: DataFacts | None = None, **fields: Any) -> None:
        """Adopt the facts a method learns from its data: called by ``setup`` with the datamodule's ``facts``, or
        by hand, with a :class:`~hashbench.data.facts.DataFacts` or its fields as keywords
        (``model.configure_data(num_classes=10, num_train=500, image_shape=(1, 28, 28))``).

        Rebuilds the network if the input channels differ from what it was built for (only when ``in_channels``
        was left to the data), resolves the mAP cut-off (keyword callers that leave ``map_k`` out keep the
        model's), and calls :meth:`on_data_configured` so a method can build label-sized layers and memory banks.
        Idempotent.
        """
        keep_map_k = facts is None and "map_k" not in fields
        if facts is None:
            facts = DataFacts(**{k: v for k, v in fields.items() if not (k == "map_k" and v == "auto")})
            keep_map_k = keep_map_k or fields.get("map_k") == "auto"
        elif fields:
            raise TypeError(f"configure_data takes a DataFacts or keywords, not both (got {sorted(fields)})")
        self._configure(facts, keep_map_k)

    def _configure(self, facts: DataFacts, keep_map_k: bool = False) -> None:
        hp = self.hparams
        if hp.num_classes is not None and hp.num_classes != facts.num_classes:
            raise ValueError(f"model was built for {hp.num_classes} classes but the data has {facts.num_classes}")
        if facts.image_shape is not None:
            want = (hp.in_channels or facts.image_shape[0], hp.image_size or facts.image_shape[-1])
            if want != self._built_for:
                if self._data_configured:
                    raise ValueError(f"model already configured for input {self._built_for}, data gives {want}")
                self._build_network(*want)
            hp.in_channels, hp.image_size = want
        hp.num_classes, hp.num_train = facts.num_classes, facts.num_train
        self.multi_label = facts.multi_label
        self.data_facts = facts
        if hp.map_k == "auto" and not keep_map_k:
            self._build_metrics(facts.map_k)
        if not self._data_configured:
            self._data_configured = True
            self.on_data_configured()

    def on_data_configured(self) -> None:
        """Hook: build layers that need ``self.hparams.num_classes`` / memory banks that need ``num_train``."""

    def setup(self, stage: str) -> None:
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if dm is None:
            if not self._data_configured:
                raise RuntimeError(
                    f"{type(self).__name__} needs num_classes/num_train: pass a hashbench datamodule to the "
                    "Trainer (trainer.fit(model, datamodule=dm)) or call model.configure_data(...) first"
                )
            return
        self.configure_data(facts_of(dm))

    # ------------------------------------------------------------------ memory banks
    def add_memory_bank(self, name: str, dim: int, dtype: torch.dtype = torch.float32) -> MemoryBank:
        """Create (once) a [num_train, dim] bank; it is saved in checkpoints."""
        if self.hparams.num_train is None:
            raise RuntimeError("add_memory_bank needs num_train: call it from on_data_configured()")
        if name not in self._banks:
            self._banks[name] = MemoryBank(self.hparams.num_train, dim, dtype).to(self.device)
        return self._banks[name]

    def memory_bank(self, name: str) -> MemoryBank:
        return self._banks[name]

    def update_memory_bank(self, name: str, index: Tensor, values: Tensor) -> None:
        """Write ``values`` at ``index``; under DDP the pairs of every process are gathered first."""
        index, values = gather_rows(index, values.detach())
        self._banks[name].write(index, values)

    # ------------------------------------------------------------------ training
    def global_batch(self, *tensors: Tensor) -> tuple[Tensor, ...]:
        """The global batch's rows of each tensor: every DDP process's rows in rank order (as is in one process).

        Methods whose loss forms pairs, triplets or proxies within the batch call this on the relaxed codes and the
        labels (and indices) before the loss, and set ``ddp_batch = "global"``: gradients flow back to this
        process's rows so that DDP's averaged gradient is the one-process gradient of the global batch (see
        :mod:`hashbench.nn.distributed`). BatchNorm statistics are per process unless the Trainer syncs them
        (the table runner sets ``sync_batchnorm`` for multi-GPU cells; CPU DDP cannot).
        """
        return gather_rows(*tensors)

    def compute_loss(self, batch: Any) -> dict[str, Tensor]:
        """Return named loss terms and ``"loss"`` (the total) for one training batch."""
        raise NotImplementedError

    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        terms = self.compute_loss(batch)
        if "loss" not in terms:
            raise KeyError(f"{type(self).__name__}.compute_loss must return a 'loss' entry; got {sorted(terms)}")
        loss = terms["loss"]
        if not torch.isfinite(loss):
            values = {k: float(v.detach()) for k, v in terms.items()}
            bad = [k for k, v in values.items() if k != "loss" and not math.isfinite(v)] or ["loss"]
            raise FloatingPointError(
                f"{type(self).__name__}: non-finite loss at epoch {self.current_epoch}, step {self.global_step}, "
                f"in the term(s) {', '.join(bad)} (terms: {values}); lower the learning rate or check the inputs"
            )
        batch_size = len(batch[0])
        for key, value in terms.items():
            self.log(f"train/{key}", value.detach(), prog_bar=key == "loss", batch_size=batch_size)
        return loss

    # ------------------------------------------------------------------ evaluation
    def _build_metrics(self, map_k: int | None) -> None:
        from hashbench.metrics import HashingRetrieval

        self._map_k = map_k
        ks = (None,) if map_k is None else (None, int(map_k))
        radius = self.hparams.eval_radius
        self.val_retrieval = HashingRetrieval(ks=ks, radius=radius)
        self.test_retrieval = HashingRetrieval(ks=ks, radius=radius, pr_curve=True)

    @property
    def map_key(self) -> str:
        """Name of the headline metric, e.g. ``mAP@all`` or ``mAP@5000``."""
        return "mAP@all" if self._map_k is None else f"mAP@{self._map_k}"

    def encode_eval_batch(self, batch: Any, dataloader_idx: int) -> Tensor:
        """Codes for an evaluation batch (cross-modal methods pick the modality by loader)."""
        return self.encode(batch[0])

    def _eval_step(self, metric: Any, batch: Any, dataloader_idx: int) -> None:
        role = "query" if dataloader_idx == 0 else "database"
        # Item ids let the metric drop the repeats that DDP's distributed sampler pads evaluation loaders with.
        metric.update(self.encode_eval_batch(batch, dataloader_idx), batch.labels, role=role, indexes=batch.index)

    def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(self.val_retrieval, batch, dataloader_idx)

    def test_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._eval_step(self.test_retrieval, batch, dataloader_idx)

    def _log_report(self, prefix: str, metric: Any) -> dict[str, Any]:
        report = metric.compute()
        metric.reset()
        for key, value in report.items():
            if isinstance(value, Tensor) and value.numel() == 1:
                self.log(f"{prefix}/{key}", value.float(), sync_dist=False, add_dataloader_idx=False)
        self.log(f"{prefix}/mAP", report[self.map_key].float(), prog_bar=True, add_dataloader_idx=False)
        return report

    def on_validation_epoch_end(self) -> None:
        self._log_report("val", self.val_retrieval)

    def on_test_epoch_end(self) -> None:
        self.test_report = self._log_report("test", self.test_retrieval)

    # ------------------------------------------------------------------ optimisation
    def parameter_groups(self) -> list[dict[str, Any]]:
        """Backbone parameters at ``backbone_lr``; everything else (hash head, method layers) at ``lr``."""
        hp = self.hparams
        backbone_ids = {id(p) for p in self.backbone.parameters()}
        backbone = [p for p in self.backbone.parameters() if p.requires_grad]
        rest = [p for p in self.parameters() if p.requires_grad and id(p) not in backbone_ids]
        groups = [{"params": rest, "lr": hp.lr, "name": "head"}]
        if backbone:
            groups.append({"params": backbone, "lr": hp.backbone_lr or hp.lr, "name": "backbone"})
        return groups

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        groups = self.parameter_groups()
        if hp.optimizer == "sgd":
            opt = torch.optim.SGD(groups, lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay)
        elif hp.optimizer == "rmsprop":
            opt = torch.optim.RMSprop(groups, lr=hp.lr, momentum=hp.momentum, weight_decay=hp.weight_decay)
        elif hp.optimizer == "adamw":
            opt = torch.optim.AdamW(groups, lr=hp.lr, weight_decay=hp.weight_decay)
        else:
            opt = torch.optim.Adam(groups, lr=hp.lr, weight_decay=hp.weight_decay)
        if hp.scheduler == "none":
            return opt
        if hp.scheduler == "step":
            sched = torch.optim.lr_scheduler.StepLR(opt, step_size=hp.lr_step, gamma=hp.lr_gamma)
        else:
            total = max(1, self.trainer.max_epochs if self._trainer is not None and self.trainer.max_epochs else 1)
            warm = min(hp.warmup_epochs, total - 1)

            def factor(epoch: int) -> float:
                if epoch < warm:
                    return (epoch + 1) / (warm + 1)
                return 0.5 * (1 + math.cos(math.pi * (epoch - warm) / max(1, total - warm)))

            sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
