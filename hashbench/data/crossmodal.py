"""Cross-modal (image + text) protocols in the two .mat formats used by the hashing literature.

**DCMH format** (``mirflickr25k-dcmh``, ``nuswide10-dcmh``): images, bag-of-words text and multi-hot labels as
MATLAB variables, either in one file (DCMH's ``FLICKR-25K.mat``, MATLAB v7.3 with ``images``, ``YAll``,
``LAll``) or spread over several files in the protocol directory (e.g. ``*-iall.mat`` with ``IAll``,
``*-yall.mat`` with ``YAll``, ``*-lall.mat`` with ``LAll``). v7.3 files are read lazily with h5py (the image
array is several GB), v5 files with scipy. MATLAB stores ``H x W x 3 x N`` column-major, which h5py shows as
``(N, 3, W, H)``; text / label matrices may be stored either way round and are oriented by the item count.

**CLIP-based format** (``*-clip``, DCHMT -> DMsH-LN): ``index.mat`` (variable ``index``: image paths),
``caption.mat`` (``caption``: raw captions / tag strings; ``caption.txt`` with one caption per line works too)
and ``label.mat`` (``category``, or ``label``). Images are read with PIL and given CLIP's preprocessing; text
is the raw string, or token ids from ``tokenizer``.

Both draw their split with one seeded permutation (``random-pcg64-v1``: first ``num_query`` items = queries,
next ``num_train`` = training set, database = all but the queries), materialised with its checksum in
``<root>/<protocol>/splits/``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from hashbench.data.base import HashingDataModule, Pool
from hashbench.data.datasets import ArrayImageSource, CrossModalArrayDataset, CrossModalFileDataset
from hashbench.data.formats import (
    find_mat_variable,
    is_hdf5_mat,
    load_mat_variable,
    mat_strings,
    mat_variable_shape,
    orient_rows,
)
from hashbench.data.protocols import Protocol, get_protocol
from hashbench.data.registry import register_datamodule
from hashbench.data.roots import candidate_dirs, not_found
from hashbench.data.transforms import pil_transform, tensor_transform

IMAGE_KEYS = ("images", "IAll", "Image", "I_all")
TEXT_KEYS = ("YAll", "tags", "Tag", "T_all", "texts")
LABEL_KEYS = ("LAll", "labels", "Label", "L_all")


def _check_labels(labels: np.ndarray, num_classes: int, source: str) -> np.ndarray:
    if labels.shape[1] != num_classes:
        raise ValueError(f"{source}: labels have {labels.shape[1]} columns but the protocol has {num_classes} classes")
    return labels


@register_datamodule
class CrossModalMatDataModule(HashingDataModule):
    """Image + bag-of-words pairs in DCMH's .mat format.

    Protocols ``mirflickr25k-dcmh`` (default) and ``nuswide10-dcmh``. ``transform="auto"`` is ``native`` (the stored
    224x224 with ImageNet mean/std). Validation pairs are drawn at random; ``class_aware_sampler`` must stay 0
    (multi-label data); ``download`` has no effect (no public automatic download). ``text_dim`` is read from the
    files. The other arguments are :class:`~hashbench.data.base.HashingDataModule`'s.

    Args:
        protocol: a protocol of this family (default ``mirflickr25k-dcmh``).
        mat_file: the .mat file holding the variables (name inside the protocol directory or a path); ``None``
            searches every ``*.mat`` file there.
        **kwargs: the shared arguments of :class:`~hashbench.data.base.HashingDataModule`.
    """

    family = "crossmodal-mat"
    default_protocol = "mirflickr25k-dcmh"

    def __init__(self, protocol: str | Protocol | None = None, mat_file: str | None = None, **kwargs: Any) -> None:
        super().__init__(protocol, **kwargs)
        self.mat_file = mat_file

    def _files(self, directory: Path) -> list[Path]:
        if self.mat_file:
            return [directory / self.mat_file]
        return sorted(directory.glob("*.mat"))

    def locate(self) -> tuple[Path, dict[str, tuple[Path, str]]]:
        """The protocol directory and, per role (images / text / labels), the ``(file, variable)`` holding it.

        Raises:
            DatasetNotFoundError: no directory holds all three variables.
        """
        dirs = candidate_dirs(self.protocol.data_dir, self.root)
        looked: list[str] = []
        for directory in dirs:
            files = [f for f in self._files(directory) if f.is_file()]
            looked.append(f"{directory} ({', '.join(f.name for f in files) or 'no .mat files'})")
            if not files:
                continue
            found = {
                "images": find_mat_variable(files, IMAGE_KEYS),
                "text": find_mat_variable(files, TEXT_KEYS),
                "labels": find_mat_variable(files, LABEL_KEYS),
            }
            if all(found.values()):
                return directory, found  # type: ignore[return-value]
            absent = [role for role, hit in found.items() if hit is None]
            looked[-1] += f": no variable for {', '.join(absent)}"
        how = (
            f"{self.protocol.source}. Expected MATLAB variables: images one of {IMAGE_KEYS}, text one of "
            f"{TEXT_KEYS}, labels one of {LABEL_KEYS}"
        )
        raise not_found(self.protocol.name, looked, how)

    def _prepare(self) -> None:
        self.locate()

    def _load_pool(self) -> Pool:
        directory, found = self.locate()
        image_path, image_key = found["images"]
        shape = mat_variable_shape(image_path, image_key)
        source = f"{image_path}:{image_key}"
        if len(shape) != 4:
            raise ValueError(f"{source}: expected a 4-D image array, got shape {shape}")
        if is_hdf5_mat(image_path):
            if shape[1] != 3:
                raise ValueError(
                    f"{source}: expected MATLAB H x W x 3 x N images (h5py shape (N, 3, W, H)), got {shape}"
                )
            count = shape[0]
            images = ArrayImageSource(h5_path=str(image_path), key=image_key, swap_hw=True)
        else:
            array = load_mat_variable(image_path, image_key)
            if shape[2] == 3:  # MATLAB H x W x 3 x N
                array = array.transpose(3, 2, 0, 1)
            elif shape[3] == 3:  # N x H x W x 3
                array = array.transpose(0, 3, 1, 2)
            elif shape[1] != 3:
                raise ValueError(f"{source}: cannot find the 3-channel axis in image shape {shape}")
            array = np.ascontiguousarray(array, dtype=np.uint8)
            count = array.shape[0]
            images = ArrayImageSource(array=array)
        text_path, text_key = found["text"]
        label_path, label_key = found["labels"]
        texts = orient_rows(load_mat_variable(text_path, text_key), count, "the text matrix", f"{text_path}:{text_key}")
        label_array = orient_rows(
            load_mat_variable(label_path, label_key), count, "the label matrix", f"{label_path}:{label_key}"
        )
        _check_labels(label_array, self.num_classes, f"{label_path}:{label_key}")
        self.text_dim = int(texts.shape[1])
        labels = torch.from_numpy(np.asarray(label_array, dtype=np.float32))
        train_tf = tensor_transform(self.transform_name, self.protocol, self.image_size, train=True, flip=self.flip)
        eval_tf = tensor_transform(self.transform_name, self.protocol, self.image_size, train=False, flip=False)

        def make(indices: np.ndarray, train: bool) -> CrossModalArrayDataset:
            return CrossModalArrayDataset(images, texts, labels, indices, train_tf if train else eval_tf)

        return Pool(labels=labels, make_dataset=make, split_dir=directory / "splits")

    @classmethod
    def make_example(cls, root: Path) -> dict[str, Any]:
        """One MATLAB v7.3 file (40 pairs of 24x24 images, 30-word bags of words, 24 labels) read under a
        ``mirflickr25k-dcmh`` row with 8 queries and 20 training pairs."""
        from hashbench.data.examples import write_dcmh_v73

        rng = np.random.default_rng(0)
        n, classes = 40, 24
        labels = (rng.random((n, classes)) < 0.3).astype(np.float64)
        labels[np.arange(n), rng.integers(classes, size=n)] = 1
        directory = Path(root) / "mirflickr25k-dcmh"
        directory.mkdir(parents=True, exist_ok=True)
        images = rng.integers(0, 256, (n, 3, 24, 24), dtype=np.uint8)
        write_dcmh_v73(directory / "FLICKR-25K.mat", images, (rng.random((n, 30)) < 0.2).astype(np.float64), labels)
        small = replace(get_protocol("mirflickr25k-dcmh"), name="mirflickr25k-dcmh-example", num_query=8, num_train=20)
        return {"protocol": small, "root": str(root), "image_size": 24}


def clip_tokenizer(max_words: int) -> Callable[[list[str]], Tensor]:
    """open_clip's BPE tokenizer (vocabulary shipped with the package, no download) truncated to ``max_words``."""
    from hashbench.errors import optional_import

    open_clip = optional_import("open_clip", "clip", 'the CLIP tokenizer (tokenizer="clip")')

    def tokenize(texts: list[str]) -> Tensor:
        return open_clip.tokenize(texts, context_length=max_words)

    return tokenize


@register_datamodule
class CrossModalClipDataModule(HashingDataModule):
    """Image files + raw captions in the CLIP-based (DCHMT) .mat format.

    Protocols ``mirflickr25k-clip`` (default), ``nuswide21-clip`` and ``coco-clip``. ``transform="auto"`` is
    ``clip`` (224 with CLIP normalisation; no augmentation). Use several ``num_workers`` (PIL decoding).
    Validation pairs are drawn at random; ``class_aware_sampler`` must stay 0 (multi-label data); ``download`` has
    no effect (no public automatic download). The other arguments are
    :class:`~hashbench.data.base.HashingDataModule`'s.

    Args:
        protocol: a protocol of this family (default ``mirflickr25k-clip``).
        index_file: .mat with the image paths (variable ``index``).
        caption_file: .mat with the captions (variable ``caption``) or a .txt with one caption per line.
        label_file: .mat with the multi-hot labels (variable ``category`` or ``label``).
        image_root: where the images are. Relative paths are joined to it (default: the protocol directory);
            absolute paths (DCHMT stores its creator's absolute paths) have their common parent folder replaced
            by it.
        tokenizer: ``None`` (text = raw strings), ``"clip"`` (open_clip BPE ids, ``max_words`` long) or a callable
            mapping a list of strings to a LongTensor ``(len, L)``.
        max_words: token length for ``tokenizer="clip"`` (32 in DCHMT / DMsH-LN).
        **kwargs: the shared arguments of :class:`~hashbench.data.base.HashingDataModule`.
    """

    family = "crossmodal-clip"
    default_protocol = "mirflickr25k-clip"

    def __init__(
        self,
        protocol: str | Protocol | None = None,
        index_file: str = "index.mat",
        caption_file: str = "caption.mat",
        label_file: str = "label.mat",
        image_root: str | None = None,
        tokenizer: str | Callable[[list[str]], Tensor] | None = None,
        max_words: int = 32,
        **kwargs: Any,
    ) -> None:
        super().__init__(protocol, **kwargs)
        if isinstance(tokenizer, str) and tokenizer != "clip":
            raise ValueError(f"tokenizer must be None, 'clip' or a callable, got {tokenizer!r}")
        self.files = {"index": index_file, "caption": caption_file, "label": label_file}
        self.image_root = image_root
        self.tokenizer = clip_tokenizer(max_words) if tokenizer == "clip" else tokenizer
        self.max_words = max_words

    def locate(self) -> Path:
        """The first protocol directory holding the index, caption and label files.

        Raises:
            DatasetNotFoundError: none found; the message names the expected files.
        """
        dirs = candidate_dirs(self.protocol.data_dir, self.root)
        for directory in dirs:
            if all((directory / name).is_file() for name in self.files.values()):
                return directory
        looked = [directory / name for directory in dirs for name in self.files.values()]
        raise not_found(self.protocol.name, looked, self.protocol.source)

    def _prepare(self) -> None:
        self.locate()

    def _read(self, directory: Path) -> tuple[list[str], list[str], np.ndarray]:
        index_path = directory / self.files["index"]
        paths = mat_strings(_mat_one(index_path, ("index",)))
        caption_path = directory / self.files["caption"]
        if caption_path.suffix == ".txt":
            captions = caption_path.read_text(encoding="utf-8").splitlines()
        else:
            captions = mat_strings(_mat_one(caption_path, ("caption", "captions")))
        label_path = directory / self.files["label"]
        labels = np.asarray(_mat_one(label_path, ("category", "label", "labels")))
        if labels.ndim == 2 and labels.shape[0] != len(paths) and labels.shape[1] == len(paths):
            labels = labels.T
        if len(captions) != len(paths) or labels.shape[0] != len(paths):
            raise ValueError(
                f"{directory}: {index_path.name} lists {len(paths)} images, {caption_path.name} {len(captions)} "
                f"captions and {label_path.name} {labels.shape[0]} label rows; they must match one to one"
            )
        _check_labels(labels, self.num_classes, str(label_path))
        return paths, captions, labels

    def _resolve_paths(self, directory: Path, paths: list[str]) -> list[str]:
        base = Path(self.image_root).expanduser() if self.image_root else directory
        absolute = [p for p in paths if os.path.isabs(p)]
        common = os.path.commonpath([os.path.dirname(p) for p in absolute]) if absolute else ""
        resolved = []
        for p in paths:
            if not os.path.isabs(p):
                resolved.append(str(base / p.removeprefix("./")))
            elif self.image_root:
                resolved.append(str(base / os.path.relpath(p, common)))
            else:
                resolved.append(p)
        return resolved

    def _load_pool(self) -> Pool:
        directory = self.locate()
        paths, captions, label_array = self._read(directory)
        paths = self._resolve_paths(directory, paths)
        labels = torch.from_numpy(np.asarray(label_array, dtype=np.float32))
        train_tf = pil_transform(self.transform_name, self.protocol, self.image_size, train=True, flip=self.flip)
        eval_tf = pil_transform(self.transform_name, self.protocol, self.image_size, train=False, flip=False)

        def make(indices: np.ndarray, train: bool) -> CrossModalFileDataset:
            return CrossModalFileDataset(
                paths, captions, labels, indices, train_tf if train else eval_tf, tokenizer=self.tokenizer
            )

        return Pool(labels=labels, make_dataset=make, split_dir=directory / "splits")

    @classmethod
    def make_example(cls, root: Path) -> dict[str, Any]:
        """DCHMT's index / caption / label .mat files for 40 JPEGs (24 labels), read under a ``mirflickr25k-clip``
        row with 8 queries and 20 training pairs."""
        from hashbench.data.examples import write_clip_protocol

        directory = Path(root) / "mirflickr25k-clip"
        write_clip_protocol(directory, directory / "images", n=40, classes=24)
        small = replace(get_protocol("mirflickr25k-clip"), name="mirflickr25k-clip-example", num_query=8, num_train=20)
        return {"protocol": small, "root": str(root), "image_root": str(directory / "images"), "image_size": 32}


def _mat_one(path: Path, keys: tuple[str, ...]) -> np.ndarray:
    hit = find_mat_variable([path], keys)
    if hit is None:
        raise ValueError(f"{path}: expected a variable named one of {keys}")
    return load_mat_variable(*hit)
