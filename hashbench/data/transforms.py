"""Image transforms: batched tensor transforms for in-memory data, PIL pipelines for image files.

Three named pipelines (``transform=`` of every datamodule):

* ``native``: native resolution (28/32/64 px, or ``image_size``), values scaled to [0, 1] and normalised with
  the protocol's per-channel mean/std (roughly zero mean); training adds a random horizontal flip where the
  protocol allows it. Fashion-MNIST keeps its single channel.
* ``imagenet``: the paper-faithful pipeline for ImageNet-pretrained backbones: train Resize 256 -> RandomCrop
  224 -> HorizontalFlip; test Resize 256 -> CenterCrop 224; ImageNet mean/std; 3 channels.
* ``clip``: Resize 224 (bicubic) -> CenterCrop 224 with CLIP's mean/std (the preprocessing CLIP was trained
  with), for train and test alike.

``auto`` resolves to the protocol's ``default_transform``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor
from torchvision import transforms as T

from hashbench.data.protocols import CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD, Protocol

TRANSFORMS = ("auto", "native", "imagenet", "clip")


def resolve_transform(name: str, protocol: Protocol) -> str:
    """Resolve ``auto`` to the protocol default and check the name."""
    if name not in TRANSFORMS:
        raise ValueError(f"unknown transform {name!r}; expected one of {TRANSFORMS}")
    return protocol.default_transform if name == "auto" else name


def output_shape(transform: str, protocol: Protocol, image_size: int | None) -> tuple[int, int, int]:
    """``(C, H, W)`` of the tensors a pipeline yields (``transform`` already resolved)."""
    if transform == "native":
        side = image_size or protocol.image_size
        return (protocol.channels, side, side)
    side = image_size or 224
    return (3, side, side)


class TensorBatchTransform:
    """Transform a uint8 batch ``(B, C, H, W)`` into a normalised float batch, all on tensors.

    Args:
        mean: per-channel mean (after scaling to [0, 1]).
        std: per-channel std.
        out_channels: 1 or 3; a single-channel input is repeated to 3 channels when 3 are asked for.
        resize: side length to resize to (bilinear, antialiased), or ``None`` to keep the input size.
        crop: side length of the crop taken after resizing (random per image when training, central otherwise),
            or ``None``.
        train: training mode (random crop / flip).
        flip: random horizontal flip (p = 0.5 per image) in training mode.
    """

    def __init__(
        self,
        mean: Sequence[float],
        std: Sequence[float],
        out_channels: int,
        resize: int | None = None,
        crop: int | None = None,
        train: bool = False,
        flip: bool = False,
    ) -> None:
        self.mean = torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1)
        self.scale = 1.0 / (255.0 * self.std)
        self.shift = self.mean / self.std
        self.out_channels = out_channels
        self.resize = resize
        self.crop = crop
        self.train = train
        self.flip = flip

    def __call__(self, images: Tensor) -> Tensor:
        x = images.float()
        if x.shape[1] == 1 and self.out_channels == 3:
            x = x.expand(-1, 3, -1, -1)
        if self.resize is not None and tuple(x.shape[-2:]) != (self.resize, self.resize):
            x = F.interpolate(x, size=(self.resize, self.resize), mode="bilinear", align_corners=False, antialias=True)
        if self.crop is not None and self.crop < x.shape[-1]:
            x = self._crop(x)
        if not x.is_contiguous() or x.data_ptr() == images.data_ptr():
            x = x.contiguous()
        if self.train and self.flip:
            flip = torch.nonzero(torch.rand(x.shape[0]) < 0.5).view(-1)
            x[flip] = x[flip].flip(-1)
        # (x / 255 - mean) / std as one scale and one shift, in place (fewer passes over the batch).
        return x.mul_(self.scale).sub_(self.shift)

    def _crop(self, x: Tensor) -> Tensor:
        c = self.crop
        height, width = x.shape[-2:]
        if not self.train:
            top, left = (height - c) // 2, (width - c) // 2
            return x[..., top : top + c, left : left + c].contiguous()
        tops = torch.randint(0, height - c + 1, (x.shape[0],)).tolist()
        lefts = torch.randint(0, width - c + 1, (x.shape[0],)).tolist()
        return torch.stack([img[:, t : t + c, s : s + c] for img, t, s in zip(x, tops, lefts, strict=True)])


def tensor_transform(
    transform: str, protocol: Protocol, image_size: int | None, train: bool, flip: bool
) -> TensorBatchTransform:
    """Batched tensor pipeline for in-memory (uint8) images (``transform`` already resolved).

    Args:
        transform: ``native``, ``imagenet`` or ``clip``.
        protocol: supplies native size, channels and normalisation statistics.
        image_size: override of the output side length.
        train: training mode.
        flip: whether horizontal flips preserve labels for this data (and augmentation is on).
    """
    if transform == "native":
        side = image_size or protocol.image_size
        return TensorBatchTransform(protocol.mean, protocol.std, protocol.channels, resize=side, train=train, flip=flip)
    side = image_size or 224
    if transform == "imagenet":
        # Resize 256 -> crop 224 keeps the paper pipeline's 256/224 ratio for other sizes too.
        return TensorBatchTransform(
            IMAGENET_MEAN, IMAGENET_STD, 3, resize=round(side * 256 / 224), crop=side, train=train, flip=flip
        )
    if transform == "clip":
        return TensorBatchTransform(CLIP_MEAN, CLIP_STD, 3, resize=side, train=train, flip=False)
    raise ValueError(f"unknown transform {transform!r}; expected one of {TRANSFORMS}")


def pil_transform(
    transform: str, protocol: Protocol, image_size: int | None, train: bool, flip: bool
) -> Callable[[Image.Image], Tensor]:
    """PIL pipeline for images read from files (``transform`` already resolved); same semantics as above."""
    if transform == "native":
        side = image_size or protocol.image_size
        steps: list = [T.Resize((side, side))]
        if train and flip:
            steps.append(T.RandomHorizontalFlip())
        mean, std = protocol.mean, protocol.std
    elif transform == "imagenet":
        side = image_size or 224
        resize = round(side * 256 / 224)
        if train:
            steps = [T.Resize(resize), T.RandomCrop(side)]
            if flip:
                steps.append(T.RandomHorizontalFlip())
        else:
            steps = [T.Resize(resize), T.CenterCrop(side)]
        mean, std = IMAGENET_MEAN, IMAGENET_STD
    elif transform == "clip":
        side = image_size or 224
        steps = [T.Resize(side, interpolation=T.InterpolationMode.BICUBIC), T.CenterCrop(side)]
        mean, std = CLIP_MEAN, CLIP_STD
    else:
        raise ValueError(f"unknown transform {transform!r}; expected one of {TRANSFORMS}")
    if len(mean) != 3:  # list-file images are read as RGB; a 1-channel protocol never reaches this path
        mean, std = IMAGENET_MEAN, IMAGENET_STD
    return T.Compose([*steps, T.ToTensor(), T.Normalize(mean, std)])
