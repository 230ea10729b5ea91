"""Dataset views over a pooled dataset: each yields items of one split with ``index`` = position in the split.

In-memory datasets (uint8 tensors) implement ``__getitems__``: torch's DataLoader hands them the whole list of
batch indices and they build the batch with one tensor gather and one batched transform (no PIL, no per-item
Python work); :func:`collate` passes such ready batches through.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor
from torch.utils.data import Dataset, default_collate

from hashbench.data.batch import CrossModalBatch, HashBatch


def collate(items: Any) -> Any:
    """Collate function of all hashbench loaders: ready batches pass through, lists of items are collated."""
    if isinstance(items, (HashBatch, CrossModalBatch)):
        return items
    return default_collate(items)


def _as_index(indices: np.ndarray | Sequence[int]) -> Tensor:
    return torch.as_tensor(np.asarray(indices, dtype=np.int64))


class TensorImageDataset(Dataset):
    """Images held in memory as a uint8 tensor ``(N, C, H, W)``; yields :class:`HashBatch` items.

    Args:
        images: pooled uint8 images.
        labels: pooled multi-hot float labels ``(N, K)``.
        indices: pool positions of this split (item ``i`` is pool item ``indices[i]``).
        transform: batched transform applied to uint8 batches.
    """

    def __init__(
        self, images: Tensor, labels: Tensor, indices: np.ndarray, transform: Callable[[Tensor], Tensor]
    ) -> None:
        self.images = images
        self.labels = labels
        self.indices = _as_index(indices)
        self.transform = transform

    def __len__(self) -> int:
        return int(self.indices.numel())

    def __getitems__(self, positions: Sequence[int]) -> HashBatch:
        pos = torch.as_tensor(positions, dtype=torch.int64)
        rows = self.indices[pos]
        return HashBatch(self.transform(self.images[rows]), self.labels[rows], pos)

    def __getitem__(self, position: int) -> HashBatch:
        if not -len(self) <= position < len(self):
            raise IndexError(f"index {position} out of range for a split of {len(self)} items")
        batch = self.__getitems__([position % len(self)])
        return HashBatch(batch.image[0], batch.labels[0], batch.index[0])


def load_rgb(path: str | os.PathLike[str]) -> Image.Image:
    """Open an image file as RGB; unreadable or missing files raise an error that names the path."""
    try:
        with Image.open(path) as img:
            return img.convert("RGB")
    except FileNotFoundError as err:
        raise FileNotFoundError(f"image file not found: {path}") from err
    except (UnidentifiedImageError, OSError) as err:
        raise OSError(f"cannot read image {path}: {err}") from err


class ImageFileDataset(Dataset):
    """Images read from files with PIL; yields :class:`HashBatch` items.

    Args:
        paths: pooled image paths.
        labels: pooled multi-hot float labels ``(N, K)``.
        indices: pool positions of this split.
        transform: PIL -> tensor pipeline.
    """

    def __init__(
        self, paths: Sequence[str], labels: Tensor, indices: np.ndarray, transform: Callable[[Image.Image], Tensor]
    ) -> None:
        self.paths = paths
        self.labels = labels
        self.indices = _as_index(indices)
        self.transform = transform

    def __len__(self) -> int:
        return int(self.indices.numel())

    def __getitem__(self, position: int) -> HashBatch:
        row = int(self.indices[position])
        image = self.transform(load_rgb(self.paths[row]))
        return HashBatch(image, self.labels[row], torch.tensor(position, dtype=torch.int64))


class ArrayImageSource:
    """Random access to uint8 images ``(N, C, H, W)`` held in memory or in an HDF5 (MATLAB v7.3) file.

    HDF5 datasets are opened lazily in each process (h5py handles must not cross a fork). MATLAB stores an
    ``H x W x 3 x N`` array column-major, which h5py exposes as ``(N, 3, W, H)``; ``swap_hw`` undoes that.
    """

    def __init__(
        self, array: np.ndarray | None = None, h5_path: str | None = None, key: str = "", swap_hw: bool = False
    ) -> None:
        self.array = array
        self.h5_path = h5_path
        self.key = key
        self.swap_hw = swap_hw
        self._h5: Any = None
        self._pid = -1

    def _dataset(self) -> Any:
        if self._h5 is None or self._pid != os.getpid():
            import h5py

            self._h5 = h5py.File(self.h5_path, "r")
            self._pid = os.getpid()
        return self._h5[self.key]

    def __getitem__(self, row: int) -> Tensor:
        item = self.array[row] if self.array is not None else self._dataset()[row]
        tensor = torch.from_numpy(np.ascontiguousarray(item))
        return tensor.transpose(-1, -2) if self.swap_hw else tensor

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_h5"] = None
        return state


class CrossModalArrayDataset(Dataset):
    """Image + bag-of-words text pairs (DCMH ``.mat`` format); yields :class:`CrossModalBatch` items.

    Args:
        images: image source (uint8 ``(C, H, W)`` per row).
        texts: pooled text vectors ``(N, D)`` (any numeric dtype; converted to float per batch).
        labels: pooled multi-hot float labels ``(N, K)``.
        indices: pool positions of this split.
        transform: batched tensor transform.
    """

    def __init__(
        self,
        images: ArrayImageSource,
        texts: np.ndarray,
        labels: Tensor,
        indices: np.ndarray,
        transform: Callable[[Tensor], Tensor],
    ) -> None:
        self.images = images
        self.texts = texts
        self.labels = labels
        self.indices = _as_index(indices)
        self.transform = transform

    def __len__(self) -> int:
        return int(self.indices.numel())

    def __getitems__(self, positions: Sequence[int]) -> CrossModalBatch:
        pos = torch.as_tensor(positions, dtype=torch.int64)
        rows = self.indices[pos]
        images = torch.stack([self.images[int(r)] for r in rows])
        texts = torch.from_numpy(np.asarray(self.texts[rows.numpy()], dtype=np.float32))
        return CrossModalBatch(self.transform(images), texts, self.labels[rows], pos)

    def __getitem__(self, position: int) -> CrossModalBatch:
        batch = self.__getitems__([position])
        return CrossModalBatch(batch.image[0], batch.text[0], batch.labels[0], batch.index[0])


class CrossModalFileDataset(Dataset):
    """Image files + raw captions (CLIP-based ``.mat`` format); yields :class:`CrossModalBatch` items.

    ``text`` is the raw caption string, or the tokenizer's LongTensor of token ids when a tokenizer is set.

    Args:
        paths: pooled image paths.
        captions: pooled captions.
        labels: pooled multi-hot float labels ``(N, K)``.
        indices: pool positions of this split.
        transform: PIL -> tensor pipeline.
        tokenizer: maps a list of strings to a LongTensor ``(len, L)``, or ``None`` for raw strings.
    """

    def __init__(
        self,
        paths: Sequence[Path | str],
        captions: Sequence[str],
        labels: Tensor,
        indices: np.ndarray,
        transform: Callable[[Image.Image], Tensor],
        tokenizer: Callable[[list[str]], Tensor] | None = None,
    ) -> None:
        self.paths = paths
        self.captions = captions
        self.labels = labels
        self.indices = _as_index(indices)
        self.transform = transform
        self.tokenizer = tokenizer

    def __len__(self) -> int:
        return int(self.indices.numel())

    def __getitem__(self, position: int) -> CrossModalBatch:
        row = int(self.indices[position])
        image = self.transform(load_rgb(self.paths[row]))
        text: Any = self.captions[row]
        if self.tokenizer is not None:
            text = torch.as_tensor(self.tokenizer([text])[0], dtype=torch.int64)
        return CrossModalBatch(image, text, self.labels[row], torch.tensor(position, dtype=torch.int64))
