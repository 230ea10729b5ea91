"""The base datamodule: protocol bookkeeping, validation carve-out, subsampling and the loaders.

A subclass reads one *family* of on-disk formats. It sets ``family`` and ``default_protocol``, is decorated with
:func:`hashbench.data.registry.register_datamodule`, and implements :meth:`HashingDataModule._prepare` (download or
check the files) and :meth:`HashingDataModule._load_pool` (read the pooled dataset and return a :class:`Pool`),
and, when the split is not drawn from labels, :meth:`HashingDataModule._load_split`; :meth:`verify_data` checks
checksums and :meth:`make_example` writes a tiny copy in the family's format for the contract tests. Everything
else (the constructor, the validation split, limits, samplers, loaders, the :class:`~hashbench.data.facts.DataFacts`
a method reads) lives here once: a subclass needs no ``__init__`` unless it has options of its own, and then takes
them before ``**kwargs`` and passes the rest on.

Validation: ``val_fraction`` of the protocol's *training* split (per class for single-label data, seeded by
``seed``) becomes the validation queries and is excluded from training; the validation database is the
remaining training set. Checkpoint selection therefore never looks at the query set. ``val_fraction=0``
disables validation (``val_dataloader()`` returns ``[]``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from lightning.pytorch import LightningDataModule
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from hashbench.data.datasets import collate
from hashbench.data.facts import DataFacts
from hashbench.data.protocols import Protocol, get_protocol, list_protocols
from hashbench.data.samplers import ClassAwareBatchSampler
from hashbench.data.splits import Split, resolve_split
from hashbench.data.transforms import output_shape, resolve_transform


@dataclass
class Pool:
    """A pooled dataset as read from disk.

    Attributes:
        labels: multi-hot labels ``(N, K)``, float32.
        make_dataset: ``make_dataset(indices, train)`` returns the dataset view of those pool positions, with
            training augmentation when ``train`` is true.
        class_ids: class id per item for single-label pools (drives per-class splits), else ``None``.
        split_dir: directory where a drawn split is materialised (``None``: keep it in memory).
    """

    labels: Tensor
    make_dataset: Callable[[np.ndarray, bool], Dataset]
    class_ids: np.ndarray | None = None
    split_dir: Path | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def multi_hot(class_ids: np.ndarray, num_classes: int) -> Tensor:
    """One-hot float matrix ``(N, num_classes)`` from class ids."""
    ids = torch.as_tensor(np.asarray(class_ids, dtype=np.int64))
    return torch.nn.functional.one_hot(ids, num_classes).float()


def carve_validation(
    train: np.ndarray, class_ids: np.ndarray | None, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Split training positions into (kept training, validation queries).

    For single-label data ``round(fraction * n_c)`` items of each class ``c`` are drawn; otherwise
    ``round(fraction * n)`` items at random. Seeded with ``PCG64([seed, 1])``.

    Returns:
        ``(train_kept, val_query)``, both sorted.
    """
    if fraction <= 0:
        return train, np.empty(0, dtype=np.int64)
    rng = np.random.Generator(np.random.PCG64([seed, 1]))
    if class_ids is None:
        count = int(round(fraction * train.size))
        val = rng.choice(train, size=count, replace=False)
    else:
        train_classes = class_ids[train]
        parts = []
        for c in np.unique(train_classes):
            members = train[train_classes == c]
            parts.append(rng.choice(members, size=int(round(fraction * members.size)), replace=False))
        val = np.concatenate(parts) if parts else np.empty(0, dtype=np.int64)
    val = np.sort(val.astype(np.int64))
    return np.setdiff1d(train, val, assume_unique=True), val


def subsample(indices: np.ndarray, limit: int | None, seed: int, stream: int) -> np.ndarray:
    """Deterministically keep at most ``limit`` positions (seeded by ``(seed, stream)``), sorted."""
    if limit is None or indices.size <= limit:
        return indices
    rng = np.random.Generator(np.random.PCG64([seed, stream]))
    return np.sort(rng.choice(indices, size=limit, replace=False))


class HashingDataModule(LightningDataModule):
    """Base class of every hashbench datamodule (see the module docstring for the split semantics).

    Args:
        protocol: protocol name (see ``hashbench data list``; ``None`` = the family's ``default_protocol``), or a
            :class:`~hashbench.data.protocols.Protocol` row of this family (e.g. a smaller variant for tests).
        root: data root; ``None`` reads ``$HASHBENCH_DATA``, then family-specific fallbacks.
        batch_size: training batch size (ignored when ``class_aware_sampler`` > 0).
        eval_batch_size: batch size of query / database / train-eval loaders.
        num_workers: DataLoader worker processes.
        val_fraction: fraction of the training split held out as validation queries (0 = no validation).
        seed: seed of the validation carve-out, the limits and the class-aware sampler.
        transform: ``auto``, ``native``, ``imagenet`` or ``clip`` (see :mod:`hashbench.data.transforms`).
        image_size: output side length override (``None`` = the pipeline's default).
        class_aware_sampler: images per class per training batch (0 = plain shuffled batches).
        train_limit: keep at most this many training items (deterministic subsample, for smoke runs).
        eval_limit: keep at most this many items in each query / database set (deterministic subsample).
        augment: training augmentation (random flip, and random crop for ``imagenet``); off = eval transform.
        download: let :meth:`prepare_data` download public datasets that are missing.
    """

    family: ClassVar[str] = ""
    #: The protocol built when none is named.
    default_protocol: ClassVar[str] = ""
    #: Whether horizontal flips preserve labels for this family (not for digits).
    flip_ok: ClassVar[bool] = True

    def __init__(
        self,
        protocol: str | Protocol | None = None,
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
    ) -> None:
        super().__init__()
        if protocol is None:
            if not self.default_protocol:
                raise ValueError(f"{type(self).__name__} has no default_protocol; pass protocol=...")
            protocol = self.default_protocol
        proto = protocol if isinstance(protocol, Protocol) else get_protocol(protocol)
        if self.family and proto.family != self.family:
            from hashbench.data.registry import datamodule_class_for

            owner = datamodule_class_for(proto.name).__name__ if isinstance(protocol, str) else "another family"
            raise ValueError(
                f"{type(self).__name__} reads the {self.family!r} family ({', '.join(list_protocols(self.family))}); "
                f"protocol {proto.name!r} belongs to {owner}"
            )
        for name, value in (("batch_size", batch_size), ("eval_batch_size", eval_batch_size)):
            if value <= 0:
                raise ValueError(f"{name} must be positive, got {value}")
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        if not 0.0 <= val_fraction < 1.0:
            raise ValueError(f"val_fraction must lie in [0, 1), got {val_fraction}")
        if class_aware_sampler < 0:
            raise ValueError(f"class_aware_sampler must be >= 0, got {class_aware_sampler}")
        if class_aware_sampler and proto.multi_label:
            raise ValueError(f"class_aware_sampler needs single-label data; {protocol!r} is multi-label")
        for name, value in (("train_limit", train_limit), ("eval_limit", eval_limit), ("image_size", image_size)):
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be positive or None, got {value}")
        self.protocol: Protocol = proto
        self.root = root
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.val_fraction = val_fraction
        self.seed = seed
        self.transform_name = resolve_transform(transform, proto)
        self.image_size = image_size
        self.class_aware_sampler = class_aware_sampler
        self.train_limit = train_limit
        self.eval_limit = eval_limit
        self.augment = augment
        self.download = download
        self.num_classes: int = proto.num_classes
        self.multi_label: bool = proto.multi_label
        self.map_k: int | None = proto.map_k
        #: bag-of-words length of image-text families (``None``: no bag-of-words text); a reader may set it
        #: from the files in ``_load_pool``.
        self.text_dim: int | None = proto.text_dim or None
        self.image_shape: tuple[int, int, int] = output_shape(self.transform_name, proto, image_size)
        self._pool: Pool | None = None
        self.split: Split | None = None
        self._train_class_ids: np.ndarray | None = None
        self.train_dataset: Dataset | None = None
        self.train_eval_dataset: Dataset | None = None
        self.val_query_dataset: Dataset | None = None
        self.val_database_dataset: Dataset | None = None
        self.query_dataset: Dataset | None = None
        self.database_dataset: Dataset | None = None

    def shared_arguments(self) -> dict[str, Any]:
        """The base-class constructor arguments this datamodule was built with (all but ``protocol``).

        ``transform`` is the resolved transform name (``"auto"`` already replaced by the protocol's default).
        """
        return {
            "root": self.root,
            "batch_size": self.batch_size,
            "eval_batch_size": self.eval_batch_size,
            "num_workers": self.num_workers,
            "val_fraction": self.val_fraction,
            "seed": self.seed,
            "transform": self.transform_name,
            "image_size": self.image_size,
            "class_aware_sampler": self.class_aware_sampler,
            "train_limit": self.train_limit,
            "eval_limit": self.eval_limit,
            "augment": self.augment,
            "download": self.download,
        }

    @property
    def facts(self) -> DataFacts:
        """What a method learns from this data (known after :meth:`setup`, which sizes the training set)."""
        return DataFacts(
            num_classes=self.num_classes,
            num_train=self.num_train,
            image_shape=tuple(self.image_shape),
            multi_label=self.multi_label,
            map_k=self.map_k,
            modality=self.protocol.modality,
            text_dim=self.text_dim,
            protocol=self.protocol.name,
        )

    @classmethod
    def make_example(cls, root: Path) -> dict[str, Any]:
        """Write a tiny dataset of this family in its real on-disk format under ``root``; return the constructor
        arguments that read it (the registry-parametrised datamodule contract tests build ``cls(**returned)``).

        A returned ``protocol`` may be a :class:`~hashbench.data.protocols.Protocol` row with small split sizes.
        """
        raise NotImplementedError(
            f"{cls.__name__}.make_example is missing: every registered family writes a tiny example of its format "
            "for the datamodule contract tests"
        )

    # ----------------------------------------------------------------------------------------- subclass hooks
    def _prepare(self) -> None:
        """Download or check the files (runs once per node in :meth:`prepare_data`)."""

    def _load_pool(self) -> Pool:
        """Read the pooled dataset."""
        raise NotImplementedError

    def _load_split(self, pool: Pool) -> Split:
        """The protocol split over ``pool``; by default drawn from the labels (see :mod:`hashbench.data.splits`)."""
        labels = pool.class_ids if pool.class_ids is not None else pool.labels.numpy()
        return resolve_split(self.protocol, labels, pool.split_dir)

    def verify_data(self) -> list[str]:
        """Check the dataset files against known checksums; one report line per file (``[]``: none known)."""
        return []

    def _tensor_pool(self, images: np.ndarray, class_ids: np.ndarray, split_dir: Path | None) -> Pool:
        """Pool of in-memory uint8 images ``(N, C, H, W)`` with single-label ``class_ids``."""
        from hashbench.data.datasets import TensorImageDataset
        from hashbench.data.transforms import tensor_transform

        tensor = torch.from_numpy(np.ascontiguousarray(images))
        labels = multi_hot(class_ids, self.num_classes)
        train_tf = tensor_transform(self.transform_name, self.protocol, self.image_size, train=True, flip=self.flip)
        eval_tf = tensor_transform(self.transform_name, self.protocol, self.image_size, train=False, flip=False)

        def make(indices: np.ndarray, train: bool) -> Dataset:
            return TensorImageDataset(tensor, labels, indices, train_tf if train else eval_tf)

        return Pool(
            labels=labels, make_dataset=make, class_ids=np.asarray(class_ids, dtype=np.int64), split_dir=split_dir
        )

    @property
    def flip(self) -> bool:
        """Whether training batches get random horizontal flips."""
        return self.augment and self.flip_ok

    # ------------------------------------------------------------------------------------------- lightning API
    def prepare_data(self) -> None:
        """Download (where the source is public and ``download`` is on) or check the dataset files."""
        self._prepare()

    def setup(self, stage: str | None = None) -> None:
        """Read the data, resolve and verify the split, carve out validation and build the datasets."""
        if self._pool is not None:
            return
        pool = self._load_pool()
        split = self._load_split(pool)
        class_ids = pool.class_ids
        train, val_query = carve_validation(split.train, class_ids, self.val_fraction, self.seed)
        train = subsample(train, self.train_limit, self.seed, 2)
        query = subsample(split.query, self.eval_limit, self.seed, 3)
        database = subsample(split.database, self.eval_limit, self.seed, 4)
        val_query = subsample(val_query, self.eval_limit, self.seed, 5)
        val_database = subsample(train, self.eval_limit, self.seed, 6)
        if train.size == 0:
            raise ValueError(f"protocol {self.protocol.name!r}: the training split is empty after the carve-out")
        self.train_dataset = pool.make_dataset(train, self.augment)
        self.train_eval_dataset = pool.make_dataset(train, False)
        self.query_dataset = pool.make_dataset(query, False)
        self.database_dataset = pool.make_dataset(database, False)
        if val_query.size:
            self.val_query_dataset = pool.make_dataset(val_query, False)
            self.val_database_dataset = pool.make_dataset(val_database, False)
        self._train_class_ids = class_ids[train] if class_ids is not None else None
        self.split_indices = {
            "train": train,
            "val_query": val_query,
            "val_database": val_database,
            "query": query,
            "database": database,
        }
        self.split = split
        self._pool = pool

    @property
    def num_train(self) -> int:
        """Size of the training set actually trained on (after the validation carve-out and ``train_limit``)."""
        if self.train_dataset is None:
            raise RuntimeError(f"{type(self).__name__}.num_train is known after setup(); call setup() first")
        return len(self.train_dataset)

    def _loader(self, dataset: Dataset, batch_size: int, shuffle: bool, **kwargs: Any) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            collate_fn=collate,
            persistent_workers=self.num_workers > 0,
            **kwargs,
        )

    def _require_setup(self) -> None:
        if self._pool is None:
            self.setup()

    def train_dataloader(self) -> DataLoader:
        """Shuffled training batches (:class:`HashBatch` / :class:`CrossModalBatch`, index in ``[0, num_train)``)."""
        self._require_setup()
        if self.class_aware_sampler:
            sampler = ClassAwareBatchSampler(
                self._train_class_ids, self.num_classes, self.class_aware_sampler, seed=self.seed
            )
            return DataLoader(
                self.train_dataset,
                batch_sampler=sampler,
                num_workers=self.num_workers,
                collate_fn=collate,
                persistent_workers=self.num_workers > 0,
            )
        # A last batch of a few items would make batch statistics (BatchNorm, pairwise losses) noisy: drop it
        # unless the whole training set fits in one batch.
        drop_last = len(self.train_dataset) > self.batch_size
        return self._loader(self.train_dataset, self.batch_size, shuffle=True, drop_last=drop_last)

    def train_eval_dataloader(self) -> DataLoader:
        """The training set in order, without augmentation (features of the whole training set)."""
        self._require_setup()
        return self._loader(self.train_eval_dataset, self.eval_batch_size, shuffle=False)

    def val_dataloader(self) -> list[DataLoader]:
        """``[val_query_loader, val_database_loader]``, or ``[]`` when ``val_fraction == 0``."""
        self._require_setup()
        if self.val_query_dataset is None:
            return []
        return [
            self._loader(self.val_query_dataset, self.eval_batch_size, shuffle=False),
            self._loader(self.val_database_dataset, self.eval_batch_size, shuffle=False),
        ]

    def test_dataloader(self) -> list[DataLoader]:
        """``[query_loader, database_loader]`` of the protocol."""
        self._require_setup()
        return [
            self._loader(self.query_dataset, self.eval_batch_size, shuffle=False),
            self._loader(self.database_dataset, self.eval_batch_size, shuffle=False),
        ]

    def describe(self) -> str:
        """One line with the protocol and, after setup, the split sizes."""
        text = f"{self.protocol.name}: {self.num_classes} classes, image {self.image_shape}, {self.transform_name}"
        if self._pool is not None:
            sizes = ", ".join(f"{k} {v.size}" for k, v in self.split_indices.items())
            text += f"; {sizes}"
        return text
