"""The base class of cross-modal (image–text) hashing methods.

:class:`CrossModalHashingMethod` extends :class:`~hashbench.methods.base.HashingMethod` with a text network: the
image side is the framework's backbone + hash head (``self(x)`` / ``encode`` / ``encode_image``), the text side a
text encoder from :mod:`hashbench.nn.text` + its own hash head (``text_forward`` / ``encode_text``). Both heads end
in tanh. ``backbone="clip"`` and ``text_encoder="clip"`` take the two towers of one open_clip CLIP model (the
DMsH-LN paper's setting); otherwise the image network is any framework backbone and the text network DCMH's
bag-of-words MLP.

Evaluation (cross-modal protocol): validation/test loaders are ``[query, database]`` of
:class:`~hashbench.data.batch.CrossModalBatch`. Two retrieval metrics run per stage: I→T (query image codes
against database text codes) and T→I (query text codes against database image codes). Every scalar metric is
logged as ``<stage>/<key> I→T``, ``<stage>/<key> T→I`` and ``<stage>/<key>`` = their mean, so the checkpoint
monitor ``val/mAP`` (the mean of the headline mAP) works as for image methods.

:class:`UnsupervisedCrossModalHashing` adds what the label-free methods DJSRH and JDSH share: fixed feature
networks whose cosine similarities stand in for labels (:meth:`~UnsupervisedCrossModalHashing.image_features`,
:meth:`~UnsupervisedCrossModalHashing.text_features`), relaxed codes tanh(a·h) with a = sqrt(epoch + 1), and one
learning rate for the whole image network. :func:`cosine_affinity` is their ``2·cos − 1`` similarity.

This module's name starts with ``_`` so that it is not imported as a method by ``hashbench.methods``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from hashbench.data.facts import DataFacts
from hashbench.methods.base import HashingMethod
from hashbench.nn.backbones import create_backbone
from hashbench.nn.text import DEFAULT_BOW_HIDDEN, create_clip_towers, create_text_encoder
from hashbench.nn.weights import WeightsNeed, clip_weights_name

__all__ = ["CrossModalHashingMethod", "CodeHead", "DIRECTIONS", "UnsupervisedCrossModalHashing", "cosine_affinity"]

#: suffixes of the two retrieval directions in metric names
DIRECTIONS = ("I→T", "T→I")


class CodeHead(nn.Module):
    """Linear(in_dim → K) → Dropout: the pre-activation hash layer of DMsH-LN's ``LinearHash`` (tanh follows)."""

    def __init__(self, in_dim: int, n_bits: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.fc = nn.Linear(in_dim, n_bits)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.fc(x))


class CrossModalHashingMethod(HashingMethod):
    """Image network + text network, each with a tanh hash head; I→T and T→I evaluation.

    Args:
        n_bits: code length K.
        text_encoder: ``bow`` (bag-of-words MLP; the text is a BoW float vector) or ``clip`` (CLIP's text tower;
            the text is token ids). ``backbone="clip"`` selects CLIP's image tower (any other backbone name goes to
            :func:`~hashbench.nn.backbones.create_backbone`).
        text_dim: bag-of-words length; ``None`` = from the datamodule's ``text_dim``.
        text_hidden: hidden width of the BoW MLP (DCMH: 8192; default 1024, see :mod:`hashbench.nn.text`).
        clip_model: open_clip model name or config dict (a custom, randomly initialised architecture).
        clip_pretrained: open_clip pretrained tag or weights path; ``None`` = random initialisation. Weights come
            from the local caches only (fails at once otherwise; see :func:`~hashbench.nn.text.create_clip_towers`).
        head_dropout: dropout between each hash layer's linear map and its tanh.
        **kwargs: :class:`~hashbench.methods.base.HashingMethod` arguments (backbone, optimiser, ...). The text
            network is trained at ``lr`` when it is the BoW MLP and at ``backbone_lr`` when it is CLIP's tower.
            ``hash_bn`` is not applied by this base (its heads are the plain :class:`CodeHead` of DMsH-LN's
            released code); a subclass that wants it adds it (DCMH puts a BatchNorm1d after both heads).
    """

    supervision = "cross-modal"

    def __init__(
        self,
        n_bits: int = 64,
        text_encoder: str = "bow",
        text_dim: int | None = None,
        text_hidden: int = DEFAULT_BOW_HIDDEN,
        clip_model: str | dict[str, Any] = "ViT-B-32",
        clip_pretrained: str | None = None,
        head_dropout: float = 0.0,
        **kwargs: Any,
    ) -> None:
        if text_encoder not in ("bow", "clip"):
            raise ValueError(f"text_encoder must be 'bow' or 'clip', got {text_encoder!r}")
        super().__init__(n_bits=n_bits, **kwargs)

    # ------------------------------------------------------------------ networks
    @classmethod
    def weights_needed(cls, kwargs: Mapping[str, Any]) -> list[WeightsNeed]:
        """The image backbone's weights, or CLIP's when either tower is CLIP's and ``clip_pretrained`` is set."""
        clip = "clip" in (cls.init_arg(kwargs, "backbone"), cls.init_arg(kwargs, "text_encoder"))
        needs = [] if cls.init_arg(kwargs, "backbone") == "clip" else super().weights_needed(kwargs)
        tag, model = cls.init_arg(kwargs, "clip_pretrained"), cls.init_arg(kwargs, "clip_model")
        if clip and tag and isinstance(model, str):
            if Path(str(tag)).suffix:  # a file path, not an open_clip tag
                needs.append(WeightsNeed(f"clip-{model}", str(tag), why="the CLIP towers"))
            else:
                needs.append(WeightsNeed(clip_weights_name(model, tag), why="the CLIP towers"))
        return needs

    def _clip_towers(self) -> tuple[Any, Any]:
        # Built once per model: configure_data may rebuild the image network for another input size, which must not
        # re-create (or re-load) CLIP. Kept out of nn.Module registration on purpose.
        cached = self.__dict__.get("_clip_cache")
        if cached is None:
            hp = self.hparams
            cached = create_clip_towers(hp.clip_model, hp.clip_pretrained)
            self.__dict__["_clip_cache"] = cached
        return cached

    def _build_network(self, in_channels: int, image_size: int) -> None:
        hp = self.hparams
        self._built_for = (in_channels, image_size)
        if hp.backbone == "clip":
            if in_channels != 3:
                raise ValueError(
                    f"CLIP's image tower needs 3-channel input, the data has {in_channels}; use a 3-channel "
                    "transform (transform='clip') or another backbone"
                )
            self.backbone = self._clip_towers()[0]
        else:
            self.backbone = create_backbone(hp.backbone, hp.pretrained, in_channels, image_size, weights=hp.weights)
        self.hash_layer = CodeHead(self.backbone.feature_dim, self.n_bits, hp.head_dropout)
        self._build_text_network()

    def _build_text_network(self) -> None:
        hp = self.hparams
        if hp.text_encoder == "clip":
            self.text_encoder: nn.Module | None = self._clip_towers()[1]
        elif hp.text_dim:
            self.text_encoder = create_text_encoder("bow", hp.text_dim, hp.text_hidden)
        else:
            self.text_encoder = None  # built once the datamodule tells the vocabulary size
        self.text_hash_layer = (
            CodeHead(self.text_encoder.feature_dim, self.n_bits, hp.head_dropout)
            if self.text_encoder is not None
            else None
        )

    # ------------------------------------------------------------------ data
    def _configure(self, facts: DataFacts, keep_map_k: bool = False) -> None:
        """:meth:`HashingMethod.configure_data` plus ``facts.text_dim`` (bag-of-words length) for the BoW text
        network."""
        hp = self.hparams
        if facts.text_dim and hp.text_encoder == "bow":
            if hp.text_dim is not None and hp.text_dim != facts.text_dim:
                raise ValueError(
                    f"model was built for text_dim={hp.text_dim} but the data has text_dim={facts.text_dim}"
                )
            if self.text_encoder is None:
                hp.text_dim = facts.text_dim
                self._build_text_network()
        super()._configure(facts, keep_map_k)

    def setup(self, stage: str) -> None:
        super().setup(stage)
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if dm is not None and self.text_encoder is None:
            raise RuntimeError(
                f"{type(self).__name__}: the bag-of-words text network needs text_dim; the datamodule "
                f"{type(dm).__name__} has none (token-id text needs text_encoder='clip')"
            )

    # ------------------------------------------------------------------ codes
    def _require_text(self) -> nn.Module:
        if self.text_encoder is None:
            raise RuntimeError(
                f"{type(self).__name__}: the text network is not built yet; pass text_dim=... or call "
                "configure_data(..., text_dim=...)"
            )
        return self.text_encoder

    def text_hash_logits(self, text: Tensor) -> Tensor:
        """Pre-activation text hash outputs [B, K]."""
        return self.text_hash_layer(self._require_text()(text))

    def text_forward(self, text: Tensor) -> Tensor:
        """Relaxed text codes [B, K]: tanh outputs in (-1, 1), or raw outputs when ``activation = "identity"``."""
        return self.activate(self.text_hash_logits(text))

    @torch.no_grad()
    def encode_image(self, image: Tensor) -> Tensor:
        """Binary image codes [B, K], int8 in {-1, +1} (sign(0) = +1)."""
        return self.encode(image)

    @torch.no_grad()
    def encode_text(self, text: Tensor) -> Tensor:
        """Binary text codes [B, K], int8 in {-1, +1} (sign(0) = +1)."""
        return torch.where(self.text_hash_logits(text) >= 0, 1, -1).to(torch.int8)

    # ------------------------------------------------------------------ evaluation
    def _build_metrics(self, map_k: int | None) -> None:
        from hashbench.metrics import HashingRetrieval

        self._map_k = map_k
        ks = (None,) if map_k is None else (None, int(map_k))
        radius = self.hparams.eval_radius
        self.val_i2t = HashingRetrieval(ks=ks, radius=radius)
        self.val_t2i = HashingRetrieval(ks=ks, radius=radius)
        self.test_i2t = HashingRetrieval(ks=ks, radius=radius, pr_curve=True)
        self.test_t2i = HashingRetrieval(ks=ks, radius=radius, pr_curve=True)

    def _cross_eval_step(self, i2t: Any, t2i: Any, batch: Any, dataloader_idx: int) -> None:
        image_codes, text_codes = self.encode_image(batch.image), self.encode_text(batch.text)
        if dataloader_idx == 0:  # queries: image codes ask I→T, text codes ask T→I
            i2t.update(image_codes, batch.labels, role="query")
            t2i.update(text_codes, batch.labels, role="query")
        else:  # database: I→T retrieves text codes, T→I image codes
            i2t.update(text_codes, batch.labels, role="database")
            t2i.update(image_codes, batch.labels, role="database")

    def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._cross_eval_step(self.val_i2t, self.val_t2i, batch, dataloader_idx)

    def test_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        self._cross_eval_step(self.test_i2t, self.test_t2i, batch, dataloader_idx)

    def _log_cross_report(self, prefix: str, i2t: Any, t2i: Any) -> dict[str, Any]:
        reports = (i2t.compute(), t2i.compute())
        i2t.reset()
        t2i.reset()
        out: dict[str, Any] = {}
        for key in reports[0]:
            values = [r[key] for r in reports]
            for direction, value in zip(DIRECTIONS, values, strict=True):
                out[f"{key} {direction}"] = value
            if all(isinstance(v, Tensor) and v.numel() == 1 for v in values):
                out[key] = (values[0].float() + values[1].float()) / 2
        for key, value in out.items():
            if isinstance(value, Tensor) and value.numel() == 1:
                self.log(f"{prefix}/{key}", value.float(), sync_dist=False, add_dataloader_idx=False)
        self.log(f"{prefix}/mAP", out[self.map_key].float(), prog_bar=True, add_dataloader_idx=False)
        return out

    def on_validation_epoch_end(self) -> None:
        self._log_cross_report("val", self.val_i2t, self.val_t2i)

    def on_test_epoch_end(self) -> None:
        self.test_report = self._log_cross_report("test", self.test_i2t, self.test_t2i)

    # ------------------------------------------------------------------ optimisation
    def pretrained_parameters(self) -> list[nn.Parameter]:
        """Parameters trained at ``backbone_lr``: the image backbone, and CLIP's text tower when used."""
        params = list(self.backbone.parameters())
        if self.hparams.text_encoder == "clip" and self.text_encoder is not None:
            params += list(self.text_encoder.parameters())
        return [p for p in params if p.requires_grad]

    def parameter_groups(self) -> list[dict[str, Any]]:
        hp = self.hparams
        slow = self.pretrained_parameters()
        slow_ids = {id(p) for p in slow}
        rest = [p for p in self.parameters() if p.requires_grad and id(p) not in slow_ids]
        groups = [{"params": rest, "lr": hp.lr, "name": "head"}]
        if slow:
            groups.append({"params": slow, "lr": hp.backbone_lr or hp.lr, "name": "backbone"})
        return groups


# ---------------------------------------------------------------------------------------------- label-free methods
def cosine_affinity(features_a: Tensor, features_b: Tensor | None = None) -> Tensor:
    """2·cos(f_i, f_j) − 1 between the rows of ``features_a`` and ``features_b`` (default: ``features_a``).

    The rescaled cosine DJSRH and JDSH build their similarity matrices from (S_I from image features, S_T from
    text features). A zero row (an empty bag of words) has cosine 0 with everything, i.e. an affinity of −1.
    """
    a = F.normalize(_as_float(features_a), dim=1)
    b = a if features_b is None else F.normalize(_as_float(features_b), dim=1)
    return 2 * a @ b.T - 1


def _as_float(x: Tensor) -> Tensor:
    return x if x.is_floating_point() else x.float()


def _frozen_copy(module: nn.Module) -> nn.Module:
    frozen = copy.deepcopy(module).eval()
    for p in frozen.parameters():
        p.requires_grad_(False)
    return frozen


class UnsupervisedCrossModalHashing(CrossModalHashingMethod):
    """Shared machinery of the label-free cross-modal methods (DJSRH, JDSH): labels are never read in training.

    Their similarity targets come from fixed features of the batch: image features from a frozen copy of the image
    backbone as built (DJSRH and JDSH take an ImageNet AlexNet's fc7, so ``backbone="alexnet", pretrained=True``
    gives the papers' features) or the raw pixels, and text features from the bag-of-words vector itself (the
    papers) or, for token-id text, from a frozen copy of the text encoder (meaningful with pretrained CLIP).
    Both papers' networks output tanh(a·h) with a = sqrt(epoch + 1) (their released code's ``set_alpha``); the
    binary codes are sign(h) either way. The image hash layer trains at ``backbone_lr`` with the backbone, as both
    released codes train the whole image network at LR_IMG and the text network at LR_TXT (``lr``).

    Args:
        n_bits: code length K.
        image_features: ``backbone`` (a frozen copy of the image backbone at initialisation) or ``pixels`` (the
            flattened input image).
        text_features: ``input`` (the text vector itself; needs bag-of-words text), ``encoder`` (a frozen copy of
            the text encoder at initialisation) or ``auto`` (``input`` for the bag-of-words MLP, ``encoder`` for
            CLIP's text tower).
        freeze_backbone: keep the image backbone fixed (no gradient, eval mode) and train only the heads and the
            text network; the image features are then the backbone's own (JDSH's released code).
        scale_codes: relaxed codes tanh(a·h) with a = sqrt(epoch + 1) (``False``: a = 1).
        **kwargs: :class:`CrossModalHashingMethod` arguments.
    """

    def __init__(
        self,
        n_bits: int = 64,
        image_features: str = "backbone",
        text_features: str = "auto",
        freeze_backbone: bool = False,
        scale_codes: bool = True,
        **kwargs: Any,
    ) -> None:
        if image_features not in ("backbone", "pixels"):
            raise ValueError(f"image_features must be 'backbone' or 'pixels', got {image_features!r}")
        if text_features not in ("auto", "input", "encoder"):
            raise ValueError(f"text_features must be 'auto', 'input' or 'encoder', got {text_features!r}")
        super().__init__(n_bits=n_bits, **kwargs)

    # ------------------------------------------------------------------ networks
    def _build_network(self, in_channels: int, image_size: int) -> None:
        super()._build_network(in_channels, image_size)
        hp = self.hparams
        if hp.freeze_backbone:
            for p in self.backbone.parameters():
                p.requires_grad_(False)
        # A frozen copy, not the trained backbone: the targets must not drift with the codes (DJSRH's FeatNet_I).
        needs_copy = hp.image_features == "backbone" and not hp.freeze_backbone
        self.image_feature_net = _frozen_copy(self.backbone) if needs_copy else None

    def _text_feature_mode(self) -> str:
        mode = self.hparams.text_features
        if mode == "auto":
            return "encoder" if self.hparams.text_encoder == "clip" else "input"
        return mode

    def _build_text_network(self) -> None:
        super()._build_text_network()
        encoder = self.text_encoder
        self.text_feature_net = (
            _frozen_copy(encoder) if encoder is not None and self._text_feature_mode() == "encoder" else None
        )

    def _fixed_modules(self) -> list[nn.Module]:
        fixed = [m for m in (self.image_feature_net, self.text_feature_net) if m is not None]
        return fixed + ([self.backbone] if self.hparams.freeze_backbone else [])

    def train(self, mode: bool = True) -> UnsupervisedCrossModalHashing:
        """Switch to training mode, keeping the fixed feature networks (and a frozen backbone) in eval mode."""
        super().train(mode)
        for module in self._fixed_modules():
            module.eval()
        return self

    # ------------------------------------------------------------------ features and codes
    @torch.no_grad()
    def image_features(self, image: Tensor) -> Tensor:
        """Fixed image features [B, D] for the similarity targets (no gradient)."""
        if self.hparams.image_features == "pixels":
            return image.flatten(1).float()
        net = self.backbone if self.image_feature_net is None else self.image_feature_net
        return net(image).float()

    @torch.no_grad()
    def text_features(self, text: Tensor) -> Tensor:
        """Fixed text features [B, D] for the similarity targets (no gradient)."""
        if self._text_feature_mode() == "input":
            if not torch.is_tensor(text) or not text.is_floating_point():
                raise ValueError(
                    f"{type(self).__name__}: text_features='input' needs bag-of-words vectors; for token ids use "
                    "text_features='encoder' (or 'auto' with text_encoder='clip')"
                )
            return text.float()
        self._require_text()
        return self.text_feature_net(text).float()

    def code_scale(self) -> float:
        """a = sqrt(epoch + 1) of the relaxed codes tanh(a·h) (1 outside a Trainer or with ``scale_codes=False``)."""
        if not self.hparams.scale_codes or self._trainer is None:
            return 1.0
        return math.sqrt(self.current_epoch + 1)

    def relaxed_codes(self, image: Tensor, text: Tensor) -> tuple[Tensor, Tensor]:
        """(tanh(a·h_img), tanh(a·h_txt)) [B, K] each, the codes the losses compare."""
        scale = self.code_scale()
        return torch.tanh(scale * self.hash_logits(image)), torch.tanh(scale * self.text_hash_logits(text))

    # ------------------------------------------------------------------ optimisation
    def pretrained_parameters(self) -> list[nn.Parameter]:
        """Parameters trained at ``backbone_lr``: the whole image network (backbone and its hash layer, one LR_IMG
        in the papers' code) and CLIP's text tower when used."""
        params = list(self.backbone.parameters()) + list(self.hash_layer.parameters())
        if self.hparams.text_encoder == "clip" and self.text_encoder is not None:
            params += list(self.text_encoder.parameters())
        return [p for p in params if p.requires_grad]
