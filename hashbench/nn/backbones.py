"""Backbones: feature extractors with one interface for every family.

A :class:`Backbone` exposes ``forward_map(x)`` (the last convolutional map, or ViT tokens), ``forward_head(m)``
(the pooled / fully connected feature vector the hash layer reads) and ``feature_dim``. Methods that act on the
conv map (DFEH's enhancement block, UDMSH's spatial features) use the two halves; everyone else calls the module.

Families:
- ``compact_cnn``: a small from-scratch CNN for 28/32 px offline runs (Fashion-MNIST, CIFAR at native size).
- ``dsh_cnn``: DSH's from-scratch network (Liu et al., CVPR 2016, Sec. 4.1), for 32/64 px.
- ``alexnet``, ``vgg11``, ``vgg16``, ``resnet18``, ``resnet50`` (torchvision) and any timm model name, e.g.
  ``vit_small_patch16_224`` or ``timm/<name>``.

Pretrained weights are read from local files only (:mod:`hashbench.nn.weights`): an explicit ``weights`` path, the
``$HASHBENCH_WEIGHTS`` folder, or the torch hub cache, checked against the published sha256. A missing file fails at
once with a message naming every place looked in and how to get the file; ``HASHBENCH_ALLOW_DOWNLOAD=1`` lets
torchvision/timm download them. timm models also read the Hugging Face cache or ``$HASHBENCH_WEIGHTS/<model>.pth``.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor, nn

from hashbench.nn import weights as _weights

__all__ = [
    "Backbone",
    "create_backbone",
    "list_backbones",
    "PretrainedWeightsUnavailable",
    "read_state_dict",
    "timm_weights_present",
]

#: torchvision builders (their pretrained files are recorded in :data:`hashbench.nn.weights.WEIGHTS`)
_TORCHVISION = ("alexnet", "vgg11", "vgg16", "resnet18", "resnet50")
_SMALL = ("compact_cnn", "dsh_cnn")


class PretrainedWeightsUnavailable(FileNotFoundError):
    """Raised when pretrained weights are requested but are neither cached nor downloadable."""


def list_backbones() -> list[str]:
    """Names accepted by :func:`create_backbone` (besides any timm model name)."""
    return [*_SMALL, *_TORCHVISION]


class Backbone(nn.Module):
    """A feature extractor split into a map part and a head part.

    Attributes:
        feature_dim: size of the vector ``forward`` returns.
        map_channels: channels of the map ``forward_map`` returns (``None`` for token outputs).
        needs_imagenet_input: True for ImageNet-style networks (224 px, ImageNet normalisation).
    """

    def __init__(
        self,
        body: nn.Module,
        head: nn.Module,
        feature_dim: int,
        map_channels: int | None,
        needs_imagenet_input: bool,
        name: str,
    ) -> None:
        super().__init__()
        self.body = body
        self.head = head
        self.feature_dim = feature_dim
        self.map_channels = map_channels
        self.needs_imagenet_input = needs_imagenet_input
        self.name = name
        #: the pretrained weights file loaded into this backbone and its sha256 (``None`` for random init)
        self.weights_file: str | None = None
        self.weights_sha256: str | None = None

    def forward_map(self, x: Tensor) -> Tensor:
        return self.body(x)

    def forward_head(self, fmap: Tensor) -> Tensor:
        return self.head(fmap)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.body(x))


def _compact_cnn(in_channels: int) -> Backbone:
    # Two stride-2 convolutions (28 -> 14 -> 7 for Fashion-MNIST, 32 -> 16 -> 8 for CIFAR) then a 128-channel
    # conv: ~4.6 M multiply-adds per 28 px image and few large elementwise tensors, so an epoch of 4,500 images
    # trains in seconds and a 64k-image database encodes in about 6 s on two CPU cores.
    def stage(cin: int, cout: int, stride: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

    body = nn.Sequential(*stage(in_channels, 32, 2), *stage(32, 64, 2), *stage(64, 128, 1))
    head = nn.Sequential(
        nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(128 * 4, 256), nn.ReLU(inplace=True), nn.Dropout(0.2)
    )
    return Backbone(body, head, 256, 128, False, "compact_cnn")


def _dsh_cnn(in_channels: int, image_size: int) -> Backbone:
    # DSH paper, Sec. 4.1 (the Caffe CIFAR-10 "full" network): pooling uses ceil mode as Caffe does.
    body = nn.Sequential(
        nn.Conv2d(in_channels, 32, 5, padding=2),
        nn.MaxPool2d(3, 2, ceil_mode=True),
        nn.ReLU(inplace=True),
        nn.LocalResponseNorm(3, alpha=5e-5, beta=0.75),
        nn.Conv2d(32, 32, 5, padding=2),
        nn.ReLU(inplace=True),
        nn.AvgPool2d(3, 2, ceil_mode=True),
        nn.LocalResponseNorm(3, alpha=5e-5, beta=0.75),
        nn.Conv2d(32, 64, 5, padding=2),
        nn.ReLU(inplace=True),
        nn.AvgPool2d(3, 2, ceil_mode=True),
    )
    with torch.no_grad():
        flat = body(torch.zeros(1, in_channels, image_size, image_size)).numel()
    head = nn.Sequential(nn.Flatten(), nn.Linear(flat, 500), nn.ReLU(inplace=True))
    return Backbone(body, head, 500, 64, False, "dsh_cnn")


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, Tensor]:
    """A state dict from a ``.pth``/``.pt``/``.bin`` (torch.save) or ``.safetensors`` file.

    Raises:
        ValueError: the file cannot be read as a state dict (the message names it).
    """
    try:
        if str(path).endswith(".safetensors"):
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zip, pickle of another kind, ...: one clear message
        raise ValueError(f"cannot read weights file {path}: {type(err).__name__}: {err}") from err
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"weights file {path} holds a {type(state).__name__}, not a state dict")
    return state


def _load_into(module: nn.Module, path: Path, what: str) -> None:
    try:
        module.load_state_dict(read_state_dict(path))
    except RuntimeError as err:
        raise ValueError(f"weights file {path} does not fit backbone {what!r}: {err}") from err


def _registry_weights(name: str, explicit: str | None) -> tuple[Path | None, dict[str, Tensor] | None]:
    """(local file, None) or, when only a download can provide them, (hub cache path, downloaded state dict)."""
    path = _weights.find_weights(name, explicit)
    if path is not None:
        return path, None
    if not _weights.allow_download():
        raise PretrainedWeightsUnavailable(_weights.missing_message(name))
    source = _weights.get_source(name)
    state = torch.hub.load_state_dict_from_url(source.url, map_location="cpu", check_hash=True)
    return _weights.hub_checkpoint_dir() / source.filename, state


def _torchvision(name: str, pretrained: bool, weights: str | None = None) -> Backbone:
    import torchvision.models as tvm

    # Find (or refuse) the weights before building the network: a refused build must not have drawn the random
    # initialisation, which would shift the RNG stream of everything after it (UDMSH's 'auto' features fall back
    # to pixels when VGG-16's weights are missing, and the run must then be the one it always was).
    path, state = _registry_weights(name, weights) if (pretrained or weights is not None) else (None, None)
    model = getattr(tvm, name)(weights=None)
    if state is not None:
        model.load_state_dict(state)
    elif path is not None:
        _load_into(model, path, name)
    if name in ("alexnet", "vgg11", "vgg16"):
        # The hash layer replaces the last classifier layer (fc8), as in DPSH / DeepHash-pytorch.
        head = nn.Sequential(model.avgpool, nn.Flatten(), *list(model.classifier.children())[:-1])
        backbone = Backbone(model.features, head, 4096, 256 if name == "alexnet" else 512, True, name)
    else:
        body = nn.Sequential(
            model.conv1, model.bn1, model.relu, model.maxpool, model.layer1, model.layer2, model.layer3, model.layer4
        )
        dim = model.fc.in_features
        backbone = Backbone(body, nn.Sequential(model.avgpool, nn.Flatten()), dim, dim, True, name)
    _record_weights(backbone, path)
    return backbone


def _record_weights(backbone: Backbone, path: Path | None) -> None:
    if path is not None and path.is_file():
        backbone.weights_file = str(path)
        backbone.weights_sha256 = _weights.cached_sha256(path)


class _TimmBody(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return self.model.forward_features(x)


class _TimmHead(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, fmap: Tensor) -> Tensor:
        return self.model.forward_head(fmap, pre_logits=True)


def _timm_local_file(model_name: str, explicit: str | None) -> Path | None:
    if explicit is not None:
        return _weights.explicit_file(explicit, f"timm model {model_name!r}")
    folder = os.environ.get(_weights.ENV_VAR)
    if folder:
        for suffix in (".safetensors", ".pth", ".bin"):
            candidate = Path(folder).expanduser() / f"{model_name}{suffix}"
            if candidate.is_file():
                return candidate
    return None


def timm_weights_present(name: str, weights: str | None = None) -> Path | None:
    """Where the pretrained weights of timm model ``name`` are: a local file (returned), or the HF cache (None).

    Raises:
        PretrainedWeightsUnavailable: neither, and downloads are not allowed.
    """
    import timm

    model_name = name.removeprefix("timm/")
    local = _timm_local_file(model_name, weights)
    if local is not None or _weights.allow_download():
        return local
    cfg = timm.models.get_pretrained_cfg(model_name)
    hub_id = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
    if hub_id:
        from huggingface_hub import try_to_load_from_cache

        for fname in ("model.safetensors", "pytorch_model.bin"):
            if isinstance(try_to_load_from_cache(hub_id, fname), str):
                return None
    raise PretrainedWeightsUnavailable(
        f"pretrained weights for timm model {model_name!r} (hub id {hub_id!r}) are neither in "
        f"${_weights.ENV_VAR}/{model_name}.safetensors|.pth nor in the Hugging Face cache. Run "
        "`huggingface-cli download <hub id>` on a machine with internet and copy the cache (HF_HOME) or the "
        f"file into ${_weights.ENV_VAR}, pass weights=<file>, or set HASHBENCH_ALLOW_DOWNLOAD=1 (and unset "
        "HF_HUB_OFFLINE), or use pretrained=False."
    )


def _timm(name: str, pretrained: bool, in_channels: int, weights: str | None = None) -> Backbone:
    import timm

    model_name = name.removeprefix("timm/")
    local = timm_weights_present(name, weights) if (pretrained or weights is not None) else None
    if local is not None:
        # timm's own loader reads the file (and drops the classifier, num_classes=0).
        overlay = {"file": str(local)}
        model = timm.create_model(
            model_name, pretrained=True, pretrained_cfg_overlay=overlay, num_classes=0, in_chans=in_channels
        )
    else:
        model = timm.create_model(model_name, pretrained=pretrained, num_classes=0, in_chans=in_channels)
    is_cnn = getattr(model, "feature_info", None) is not None and "vit" not in model_name
    map_channels = model.num_features if is_cnn else None
    backbone = Backbone(_TimmBody(model), _TimmHead(model), model.num_features, map_channels, True, name)
    _record_weights(backbone, local)
    return backbone


def create_backbone(
    name: str, pretrained: bool = False, in_channels: int = 3, image_size: int = 32, weights: str | None = None
) -> Backbone:
    """Build a backbone by name.

    Args:
        name: ``compact_cnn``, ``dsh_cnn``, a torchvision name (``alexnet``, ``vgg11``, ``vgg16``, ``resnet18``,
            ``resnet50``) or a timm model name (``vit_small_patch16_224``; prefix ``timm/`` to force timm).
        pretrained: load ImageNet weights from a local file (see :mod:`hashbench.nn.weights`; downloads only with
            HASHBENCH_ALLOW_DOWNLOAD=1).
        in_channels: input channels (1 for Fashion-MNIST).
        image_size: input side in pixels (used by networks with a fixed-size FC layer, e.g. ``dsh_cnn``).
        weights: path of a weights file to load (implies ``pretrained``); loaded as given, without the checksum
            check that files found in the weights folder or hub cache get.

    Raises:
        PretrainedWeightsUnavailable: pretrained weights asked for but not on disk (and downloads not allowed).
        hashbench.nn.weights.WeightsChecksumError: a found file does not match its published sha256.

    Example:
        >>> bb = create_backbone("compact_cnn", in_channels=1)
        >>> bb(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 256])
    """
    key = name.lower()
    if key in _SMALL:
        if pretrained:
            raise ValueError(
                f"backbone {name!r} is trained from scratch: it has no published weights (pass weights=<file> to "
                "start from your own)"
            )
        backbone = _compact_cnn(in_channels) if key == "compact_cnn" else _dsh_cnn(in_channels, image_size)
        if weights is not None:
            path = _weights.explicit_file(weights, f"backbone {name!r}")
            _load_into(backbone, path, name)
            _record_weights(backbone, path)
        return backbone
    if key in _TORCHVISION and not key.startswith("timm/"):
        if in_channels != 3:
            raise ValueError(f"backbone {name!r} expects 3-channel input; got in_channels={in_channels}")
        return _torchvision(key, pretrained, weights)
    import timm

    if not timm.is_model(name.removeprefix("timm/")):
        raise ValueError(f"unknown backbone {name!r}: use one of {list_backbones()} or a timm model name")
    return _timm(name, pretrained, in_channels, weights)
