"""Backbones: feature extractors with one interface for every family.

A :class:`Backbone` exposes ``forward_map(x)`` (the last convolutional map, or ViT tokens), ``forward_head(m)``
(the pooled / fully connected feature vector the hash layer reads) and ``feature_dim``. Methods that act on the
conv map (DFEH's enhancement block, UDMSH's spatial features) use the two halves; everyone else calls the module.

Families:
- ``compact_cnn``: a small from-scratch CNN for 28/32 px offline runs (Fashion-MNIST, CIFAR at native size).
- ``dsh_cnn``: DSH's from-scratch network (Liu et al., CVPR 2016, Sec. 4.1), for 32/64 px.
- ``alexnet``, ``vgg11``, ``vgg16``, ``resnet18``, ``resnet50`` (torchvision) and any timm model name, e.g.
  ``vit_small_patch16_224`` or ``timm/<name>``.

Pretrained weights are only read from the local caches (torch hub / Hugging Face). Without network access a
missing file fails at once with a message naming the file and how to provide it; set
``HASHBENCH_ALLOW_DOWNLOAD=1`` to let torchvision/timm download them.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import Tensor, nn

__all__ = ["Backbone", "create_backbone", "list_backbones", "PretrainedWeightsUnavailable"]

_TORCHVISION = {
    "alexnet": ("alexnet", "AlexNet_Weights"),
    "vgg11": ("vgg11", "VGG11_Weights"),
    "vgg16": ("vgg16", "VGG16_Weights"),
    "resnet18": ("resnet18", "ResNet18_Weights"),
    "resnet50": ("resnet50", "ResNet50_Weights"),
}
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


def _allow_download() -> bool:
    return os.environ.get("HASHBENCH_ALLOW_DOWNLOAD", "").lower() in {"1", "true", "yes"}


def _torchvision(name: str, pretrained: bool) -> Backbone:
    import torchvision.models as tvm

    builder_name, weights_enum = _TORCHVISION[name]
    weights = None
    if pretrained:
        weights = getattr(tvm, weights_enum).DEFAULT
        cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
        if not cached.exists() and not _allow_download():
            raise PretrainedWeightsUnavailable(
                f"pretrained weights for backbone {name!r} are not in the local cache: expected {cached}. "
                f"Download {weights.url} to that path (or set TORCH_HOME to a folder holding hub/checkpoints/), "
                "or set HASHBENCH_ALLOW_DOWNLOAD=1 on a machine with internet, or use pretrained=False."
            )
    model = getattr(tvm, builder_name)(weights=weights)
    if name in ("alexnet", "vgg11", "vgg16"):
        # The hash layer replaces the last classifier layer (fc8), as in DPSH / DeepHash-pytorch.
        head = nn.Sequential(model.avgpool, nn.Flatten(), *list(model.classifier.children())[:-1])
        return Backbone(model.features, head, 4096, 256 if name == "alexnet" else 512, True, name)
    body = nn.Sequential(
        model.conv1, model.bn1, model.relu, model.maxpool, model.layer1, model.layer2, model.layer3, model.layer4
    )
    dim = model.fc.in_features
    return Backbone(body, nn.Sequential(model.avgpool, nn.Flatten()), dim, dim, True, name)


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


def _timm(name: str, pretrained: bool, in_channels: int) -> Backbone:
    import timm

    model_name = name.removeprefix("timm/")
    if pretrained and not _allow_download():
        cfg = timm.models.get_pretrained_cfg(model_name)
        hub_id = getattr(cfg, "hf_hub_id", None) if cfg is not None else None
        found = False
        if hub_id:
            from huggingface_hub import try_to_load_from_cache

            for fname in ("model.safetensors", "pytorch_model.bin"):
                if isinstance(try_to_load_from_cache(hub_id, fname), str):
                    found = True
        if not found:
            raise PretrainedWeightsUnavailable(
                f"pretrained weights for timm model {model_name!r} (hub id {hub_id!r}) are not in the Hugging Face "
                "cache. Run `huggingface-cli download <hub id>` on a machine with internet and copy the cache "
                "(HF_HOME), or set HASHBENCH_ALLOW_DOWNLOAD=1 (and unset HF_HUB_OFFLINE), or use pretrained=False."
            )
    model = timm.create_model(model_name, pretrained=pretrained, num_classes=0, in_chans=in_channels)
    is_cnn = getattr(model, "feature_info", None) is not None and "vit" not in model_name
    map_channels = model.num_features if is_cnn else None
    return Backbone(_TimmBody(model), _TimmHead(model), model.num_features, map_channels, True, name)


def create_backbone(name: str, pretrained: bool = False, in_channels: int = 3, image_size: int = 32) -> Backbone:
    """Build a backbone by name.

    Args:
        name: ``compact_cnn``, ``dsh_cnn``, a torchvision name (``alexnet``, ``vgg11``, ``vgg16``, ``resnet18``,
            ``resnet50``) or a timm model name (``vit_small_patch16_224``; prefix ``timm/`` to force timm).
        pretrained: load ImageNet weights (from the local cache only, unless HASHBENCH_ALLOW_DOWNLOAD=1).
        in_channels: input channels (1 for Fashion-MNIST).
        image_size: input side in pixels (used by networks with a fixed-size FC layer, e.g. ``dsh_cnn``).

    Example:
        >>> bb = create_backbone("compact_cnn", in_channels=1)
        >>> bb(torch.zeros(2, 1, 28, 28)).shape
        torch.Size([2, 256])
    """
    key = name.lower()
    if key in _SMALL:
        if pretrained:
            raise ValueError(f"backbone {name!r} is trained from scratch: it has no pretrained weights")
        return _compact_cnn(in_channels) if key == "compact_cnn" else _dsh_cnn(in_channels, image_size)
    if key in _TORCHVISION and not key.startswith("timm/"):
        if in_channels != 3:
            raise ValueError(f"backbone {name!r} expects 3-channel input; got in_channels={in_channels}")
        return _torchvision(key, pretrained)
    import timm

    if not timm.is_model(name.removeprefix("timm/")):
        raise ValueError(f"unknown backbone {name!r}: use one of {list_backbones()} or a timm model name")
    return _timm(name, pretrained, in_channels)
