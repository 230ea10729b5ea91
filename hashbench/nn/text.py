"""Text encoders for cross-modal hashing, and CLIP's two towers.

Every text encoder maps a batch of texts to a feature vector ``[B, feature_dim]`` that a hash head reads:

- :class:`BagOfWordsMLP` — DCMH's text network (Jiang & Li, CVPR 2017, Sec. 3.2: BoW → FC 8192 → ReLU → FC K) without
  its last layer (the hash head is that layer). The width is an argument: DCMH uses 8192; hashbench's default is
  1024, which trains as well on the ~200-word synthetic vocabulary of the offline protocol and keeps CPU runs short.
- :class:`CLIPTextTower` — the text transformer of an ``open_clip`` CLIP model (token ids in, the projected
  end-of-text embedding out). :func:`create_clip_towers` also returns the matching image tower as a
  :class:`~hashbench.nn.backbones.Backbone`, so an image network built from CLIP plugs into the same base class.

CLIP models are built from an ``open_clip`` model name (``"ViT-B-32"``, the DMsH-LN paper's choice) or from an
explicit config dict (``{"embed_dim": 32, "vision_cfg": {...}, "text_cfg": {...}}``) — the latter builds small
randomly initialised models for tests without any download. Pretrained weights are read from local files only
(``$HASHBENCH_WEIGHTS``, the torch hub cache, the Hugging Face cache and open_clip's ``~/.cache/clip``; a file
recorded in :mod:`hashbench.nn.weights` is checked against its sha256); when they are missing,
:func:`create_clip_towers` raises
:class:`~hashbench.nn.backbones.PretrainedWeightsUnavailable` at once, naming the file it looked for. Set
``HASHBENCH_ALLOW_DOWNLOAD=1`` to let open_clip download them.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from hashbench.nn import weights as weights_registry
from hashbench.nn.backbones import Backbone, PretrainedWeightsUnavailable

__all__ = [
    "BagOfWordsMLP",
    "CLIPTextTower",
    "create_clip_towers",
    "create_text_encoder",
    "clip_weights_cached",
    "clip_tokenizer",
    "DEFAULT_BOW_HIDDEN",
]

#: hidden width of the bag-of-words MLP when none is given (DCMH's own value is 8192).
DEFAULT_BOW_HIDDEN = 1024


class BagOfWordsMLP(nn.Module):
    """BoW vector → Linear(text_dim, hidden) → ReLU: DCMH's text network up to its hash layer.

    Args:
        text_dim: vocabulary size (length of the bag-of-words vector).
        hidden: width of the hidden layer (DCMH: 8192; default 1024 for the small offline protocol).
        dropout: dropout after the ReLU (0 in DCMH).

    Example:
        >>> enc = BagOfWordsMLP(200, hidden=64)
        >>> enc(torch.zeros(3, 200)).shape
        torch.Size([3, 64])
    """

    def __init__(self, text_dim: int, hidden: int = DEFAULT_BOW_HIDDEN, dropout: float = 0.0) -> None:
        super().__init__()
        if text_dim < 1 or hidden < 1:
            raise ValueError(f"BagOfWordsMLP needs text_dim >= 1 and hidden >= 1; got {text_dim}, {hidden}")
        layers: list[nn.Module] = [nn.Linear(text_dim, hidden), nn.ReLU(inplace=True)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        self.net = nn.Sequential(*layers)
        self.text_dim = text_dim
        self.feature_dim = hidden

    def forward(self, text: Tensor) -> Tensor:
        if text.ndim != 2 or text.shape[1] != self.text_dim:
            raise ValueError(
                f"BagOfWordsMLP expects bag-of-words vectors of shape [B, {self.text_dim}], got {tuple(text.shape)}; "
                "token-id text needs text_encoder='clip'"
            )
        return self.net(text.float())


class CLIPTextTower(nn.Module):
    """The text half of an open_clip ``CLIP`` model: token ids ``[B, L]`` → projected EOT embedding ``[B, D]``.

    The image tower is detached from the model first (it lives in the image :class:`Backbone`), so each parameter
    belongs to exactly one tower. ``logit_scale`` (CLIP's contrastive temperature) is unused by hashing and frozen.
    """

    def __init__(self, clip_model: nn.Module, feature_dim: int, context_length: int) -> None:
        super().__init__()
        clip_model.visual = nn.Identity()
        for name in ("logit_scale", "logit_bias"):
            param = getattr(clip_model, name, None)
            if isinstance(param, nn.Parameter):
                param.requires_grad_(False)
        self.clip = clip_model
        self.feature_dim = feature_dim
        self.context_length = context_length

    def forward(self, tokens: Tensor) -> Tensor:
        if tokens.dtype not in (torch.int32, torch.int64) or tokens.ndim != 2:
            raise ValueError(
                f"CLIPTextTower expects token ids [B, L] (int64), got {tuple(tokens.shape)} {tokens.dtype}; "
                "bag-of-words text needs text_encoder='bow'"
            )
        return self.clip.encode_text(tokens.long())


class _CLIPVisual(nn.Module):
    def __init__(self, visual: nn.Module) -> None:
        super().__init__()
        self.visual = visual

    def forward(self, x: Tensor) -> Tensor:
        return self.visual(x)


def _registry_clip_file(model: str, tag: str) -> Path | None:
    """The checked local file of a CLIP model/tag recorded in :data:`hashbench.nn.weights.WEIGHTS`, or ``None``."""
    name = weights_registry.clip_weights_name(model, tag)
    if name not in weights_registry.WEIGHTS:
        return None
    return weights_registry.find_weights(name)


def clip_weights_cached(model_name: str, pretrained: str) -> str | None:
    """Path of the cached weights of ``open_clip`` model ``model_name`` with tag ``pretrained``, or ``None``.

    Looks where open_clip itself would: the Hugging Face cache for the tag's ``hf_hub`` id (safetensors first) and
    open_clip's URL cache (``~/.cache/clip``). Never touches the network.
    """
    from hashbench.errors import optional_import

    open_clip = optional_import("open_clip", "clip", 'CLIP (backbone="clip" / text_encoder="clip")')

    cfg = open_clip.get_pretrained_cfg(model_name, pretrained)
    hub = cfg.get("hf_hub", "")
    if hub:
        from huggingface_hub import try_to_load_from_cache

        # open_clip's convention: "org/model/" = default file name, "org/model/file.bin" = that file.
        model_id, filename = os.path.split(hub)
        names = [filename] if filename else ["open_clip_pytorch_model.bin"]
        if names[0].endswith(".bin"):
            names.insert(0, names[0].removesuffix("pytorch_model.bin").removesuffix(".bin") + "model.safetensors")
        for name in names:
            found = try_to_load_from_cache(model_id, name)
            if isinstance(found, str):
                return found
    url = cfg.get("url", "")
    if url:
        local = Path(os.path.expanduser("~/.cache/clip")) / os.path.basename(url)
        if local.is_file():
            return str(local)
    return None


def _clip_model_from_config(config: dict[str, Any]) -> tuple[nn.Module, int, int]:
    from hashbench.errors import optional_import

    open_clip = optional_import("open_clip", "clip", 'CLIP (backbone="clip" / text_encoder="clip")')
    from open_clip.model import CLIPTextCfg, CLIPVisionCfg

    missing = {"embed_dim", "vision_cfg", "text_cfg"} - set(config)
    if missing:
        raise ValueError(f"a CLIP config dict needs keys embed_dim, vision_cfg, text_cfg; missing {sorted(missing)}")
    vision, text = CLIPVisionCfg(**config["vision_cfg"]), CLIPTextCfg(**config["text_cfg"])
    model = open_clip.CLIP(int(config["embed_dim"]), vision, text, quick_gelu=bool(config.get("quick_gelu", False)))
    return model, int(config["embed_dim"]), int(text.context_length)


def create_clip_towers(
    model: str | dict[str, Any] = "ViT-B-32", pretrained: str | None = None
) -> tuple[Backbone, CLIPTextTower]:
    """Build a CLIP model and split it into an image :class:`Backbone` and a :class:`CLIPTextTower`.

    Args:
        model: an ``open_clip`` model name (``"ViT-B-32"``) or a config dict with ``embed_dim``, ``vision_cfg`` and
            ``text_cfg`` (``open_clip.model.CLIPVisionCfg`` / ``CLIPTextCfg`` fields) for a custom architecture.
        pretrained: an ``open_clip`` pretrained tag (``"openai"``, ``"laion2b_s34b_b79k"`` ...), a path to a weights
            file, or ``None`` for random initialisation.

    Raises:
        PretrainedWeightsUnavailable: the tag's weights are not in a local cache and downloads are not allowed.
        ValueError: unknown model name or tag, or pretrained weights asked for a custom config.

    Example:
        >>> cfg = {"embed_dim": 16, "vision_cfg": {"layers": 1, "width": 16, "head_width": 8, "patch_size": 8,
        ...        "image_size": 16}, "text_cfg": {"context_length": 8, "vocab_size": 100, "width": 16,
        ...        "heads": 2, "layers": 1}}
        >>> image_tower, text_tower = create_clip_towers(cfg)
        >>> image_tower(torch.zeros(2, 3, 16, 16)).shape, text_tower(torch.zeros(2, 8, dtype=torch.long)).shape
        (torch.Size([2, 16]), torch.Size([2, 16]))
    """
    from hashbench.errors import optional_import

    open_clip = optional_import("open_clip", "clip", 'CLIP (backbone="clip" / text_encoder="clip")')

    if isinstance(model, dict):
        if pretrained:
            raise ValueError("pretrained weights need an open_clip model name, not a custom config dict")
        clip, dim, context = _clip_model_from_config(model)
    else:
        if model not in open_clip.list_models():
            raise ValueError(f"unknown open_clip model {model!r}; see open_clip.list_models()")
        cache_dir = None
        if pretrained and not Path(pretrained).is_file():
            tags = open_clip.list_pretrained_tags_by_model(model)
            if pretrained not in tags:
                raise ValueError(f"open_clip has no pretrained tag {pretrained!r} for {model!r}; known tags: {tags}")
            local = _registry_clip_file(model, pretrained)
            if local is not None:
                pretrained = str(local)
            elif clip_weights_cached(model, pretrained) is None and not weights_registry.allow_download():
                cfg = open_clip.get_pretrained_cfg(model, pretrained)
                raise PretrainedWeightsUnavailable(
                    f"pretrained CLIP weights {model}/{pretrained} are not in a local cache (looked for Hugging Face "
                    f"hub id {cfg.get('hf_hub', '')!r} in the HF cache and for "
                    f"~/.cache/clip/{os.path.basename(cfg.get('url', '')) or '<none>'} and "
                    f"${weights_registry.ENV_VAR}/{weights_registry.clip_weights_name(model, pretrained)}.pth). "
                    "On a machine with internet "
                    f"run `huggingface-cli download {cfg.get('hf_hub', '').rstrip('/')}` and copy the HF cache "
                    "(HF_HOME), or pass pretrained=<path to the weights file>, or set HASHBENCH_ALLOW_DOWNLOAD=1 "
                    "(and unset HF_HUB_OFFLINE), or use clip_pretrained=None for a randomly initialised model."
                )
        clip = open_clip.create_model(model, pretrained=pretrained or None, cache_dir=cache_dir)
        cfg = open_clip.get_model_config(model)
        dim, context = int(cfg["embed_dim"]), int(cfg["text_cfg"].get("context_length", 77))
    visual = clip.visual
    image = Backbone(_CLIPVisual(visual), nn.Identity(), dim, None, True, "clip")
    if isinstance(pretrained, str) and Path(pretrained).is_file():
        image.weights_file = pretrained
        image.weights_sha256 = weights_registry.cached_sha256(pretrained)
    return image, CLIPTextTower(clip, dim, context)


@functools.lru_cache(maxsize=4)
def clip_tokenizer(context_length: int = 32) -> Any:
    """CLIP's BPE tokenizer (bundled with open_clip, no download) truncating/padding to ``context_length``.

    DMsH-LN (like DCHMT) tokenises captions to 32 tokens. Cached: building the BPE tables takes seconds.
    """
    from open_clip.tokenizer import SimpleTokenizer

    return SimpleTokenizer(context_length=context_length)


def create_text_encoder(
    name: str, text_dim: int | None = None, hidden: int = DEFAULT_BOW_HIDDEN, dropout: float = 0.0
) -> nn.Module:
    """Build a text encoder by name; the result has a ``feature_dim`` attribute.

    Args:
        name: ``bow`` (bag-of-words MLP). CLIP's text tower comes with its image tower from
            :func:`create_clip_towers`.
        text_dim: vocabulary size for ``bow``.
        hidden: hidden width for ``bow``.
        dropout: dropout after the hidden layer for ``bow``.
    """
    if name == "bow":
        if text_dim is None:
            raise ValueError("the bag-of-words text encoder needs text_dim (the vocabulary size)")
        return BagOfWordsMLP(text_dim, hidden, dropout)
    raise ValueError(f"unknown text encoder {name!r}: use 'bow' or 'clip' (via create_clip_towers)")
