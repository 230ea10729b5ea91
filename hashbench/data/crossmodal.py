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
from pathlib import Path

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
from hashbench.data.roots import candidate_dirs, not_found
from hashbench.data.transforms import pil_transform, tensor_transform

IMAGE_KEYS = ("images", "IAll", "Image", "I_all")
TEXT_KEYS = ("YAll", "tags", "Tag", "T_all", "texts")
LABEL_KEYS = ("LAll", "labels", "Label", "L_all")


def _check_labels(labels: np.ndarray, num_classes: int, source: str) -> np.ndarray:
    if labels.shape[1] != num_classes:
        raise ValueError(f"{source}: labels have {labels.shape[1]} columns but the protocol has {num_classes} classes")
    return labels


class CrossModalMatDataModule(HashingDataModule):
    """Image + bag-of-words pairs in DCMH's .mat format.

    Args:
        protocol: ``mirflickr25k-dcmh`` or ``nuswide10-dcmh``.
        root: data root (``None``: ``$HASHBENCH_DATA``, then the download cache).
        batch_size: training batch size.
        eval_batch_size: batch size of query / database / train-eval loaders.
        num_workers: DataLoader worker processes.
        val_fraction: fraction of the training pairs held out for validation (random); 0 disables it.
        seed: seed of the validation carve-out and the limits.
        transform: ``auto`` (= ``native``: the stored 224x224 with ImageNet mean/std), ``native`` or ``imagenet``.
        image_size: output side length override.
        class_aware_sampler: must stay 0 (multi-label data).
        train_limit: keep at most this many training pairs (smoke runs).
        eval_limit: keep at most this many pairs per query / database set (smoke runs).
        augment: random flip (and crop for ``imagenet``) on training images.
        download: unused (no public automatic download); kept for a uniform signature.
        mat_file: the .mat file holding the variables (name inside the protocol directory or a path); ``None``
            searches every ``*.mat`` file there.
    """

    family = "crossmodal-mat"

    def __init__(
        self,
        protocol: str = "mirflickr25k-dcmh",
        root: str | None = None,
        batch_size: int = 128,
        eval_batch_size: int = 512,
        num_workers: int = 0,
        val_fraction: float = 0.1,
        seed: int = 0,
        transform: str = "auto",
        image_size: int | None = None,
        class_aware_sampler: int = 0,
        train_limit: int | None = None,
        eval_limit: int | None = None,
        augment: bool = True,
        download: bool = True,
        mat_file: str | None = None,
    ) -> None:
        super().__init__(
            protocol=protocol,
            root=root,
            batch_size=batch_size,
            eval_batch_size=eval_batch_size,
            num_workers=num_workers,
            val_fraction=val_fraction,
            seed=seed,
            transform=transform,
            image_size=image_size,
            class_aware_sampler=class_aware_sampler,
            train_limit=train_limit,
            eval_limit=eval_limit,
            augment=augment,
            download=download,
        )
        self.mat_file = mat_file
        self.text_dim: int | None = self.protocol.text_dim or None

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


def clip_tokenizer(max_words: int) -> Callable[[list[str]], Tensor]:
    """open_clip's BPE tokenizer (vocabulary shipped with the package, no download) truncated to ``max_words``."""
    import open_clip

    def tokenize(texts: list[str]) -> Tensor:
        return open_clip.tokenize(texts, context_length=max_words)

    return tokenize


class CrossModalClipDataModule(HashingDataModule):
    """Image files + raw captions in the CLIP-based (DCHMT) .mat format.

    Args:
        protocol: ``mirflickr25k-clip``, ``nuswide21-clip`` or ``coco-clip``.
        root: data root (``None``: ``$HASHBENCH_DATA``, then the download cache).
        batch_size: training batch size.
        eval_batch_size: batch size of query / database / train-eval loaders.
        num_workers: DataLoader worker processes (PIL decoding: use several).
        val_fraction: fraction of the training pairs held out for validation (random); 0 disables it.
        seed: seed of the validation carve-out and the limits.
        transform: ``auto`` (= ``clip``: 224 with CLIP normalisation), ``clip``, ``imagenet`` or ``native``.
        image_size: output side length override.
        class_aware_sampler: must stay 0 (multi-label data).
        train_limit: keep at most this many training pairs (smoke runs).
        eval_limit: keep at most this many pairs per query / database set (smoke runs).
        augment: random flip / crop where the transform has them (``clip`` has none).
        download: unused (no public automatic download); kept for a uniform signature.
        index_file: .mat with the image paths (variable ``index``).
        caption_file: .mat with the captions (variable ``caption``) or a .txt with one caption per line.
        label_file: .mat with the multi-hot labels (variable ``category`` or ``label``).
        image_root: where the images are. Relative paths are joined to it (default: the protocol directory);
            absolute paths (DCHMT stores its creator's absolute paths) have their common parent folder replaced
            by it.
        tokenizer: ``None`` (text = raw strings), ``"clip"`` (open_clip BPE ids, ``max_words`` long) or a callable
            mapping a list of strings to a LongTensor ``(len, L)``.
        max_words: token length for ``tokenizer="clip"`` (32 in DCHMT / DMsH-LN).
    """

    family = "crossmodal-clip"

    def __init__(
        self,
        protocol: str = "mirflickr25k-clip",
        root: str | None = None,
        batch_size: int = 128,
        eval_batch_size: int = 512,
        num_workers: int = 0,
        val_fraction: float = 0.1,
        seed: int = 0,
        transform: str = "auto",
        image_size: int | None = None,
        class_aware_sampler: int = 0,
        train_limit: int | None = None,
        eval_limit: int | None = None,
        augment: bool = True,
        download: bool = True,
        index_file: str = "index.mat",
        caption_file: str = "caption.mat",
        label_file: str = "label.mat",
        image_root: str | None = None,
        tokenizer: str | Callable[[list[str]], Tensor] | None = None,
        max_words: int = 32,
    ) -> None:
        super().__init__(
            protocol=protocol,
            root=root,
            batch_size=batch_size,
            eval_batch_size=eval_batch_size,
            num_workers=num_workers,
            val_fraction=val_fraction,
            seed=seed,
            transform=transform,
            image_size=image_size,
            class_aware_sampler=class_aware_sampler,
            train_limit=train_limit,
            eval_limit=eval_limit,
            augment=augment,
            download=download,
        )
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


def _mat_one(path: Path, keys: tuple[str, ...]) -> np.ndarray:
    hit = find_mat_variable([path], keys)
    if hit is None:
        raise ValueError(f"{path}: expected a variable named one of {keys}")
    return load_mat_variable(*hit)
