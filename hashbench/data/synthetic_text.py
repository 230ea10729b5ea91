"""``fashion-mnist-text``: an offline image–text protocol with SYNTHETIC text.

.. warning::
   The texts of this protocol are SYNTHETIC. No captions or tags exist for Fashion-MNIST; every image is paired with
   a bag of words generated from its class label. Numbers measured on this protocol test that a cross-modal
   pipeline works end to end without downloads; they are not comparable with any published cross-modal result
   (MIRFlickr-25K, NUS-WIDE, MS-COCO).

How a text is made. A fixed vocabulary of ``vocab_size`` words (``word000`` ...) is drawn once; every class owns
``words_per_class`` attribute words drawn from it (classes may share words, as real tags do). The text of pool item
``i`` is ``class_words`` distinct words of its class plus ``noise_words`` uniformly random vocabulary words; with
probability ``text_noise`` the class words come from another, random class (a mislabelled caption). The text is a
binary bag-of-words vector of length ``vocab_size`` (DCMH's format), or, with ``text_format="tokens"``, the words
joined by spaces and tokenised with CLIP's BPE tokenizer. All randomness is drawn once per pool item from
``PCG64([text_seed, 7])`` independently of the label, so an image keeps the same text in every split, epoch and
run.

Images and splits are those of the ``fashion-mnist`` protocol (query 100/class, train 500/class, database the other
64,000; validation carved from training), read through
:class:`~hashbench.data.fashion_mnist.FashionMNISTDataModule`. With ``image_source="synthetic"`` the images are
seeded class templates plus noise with the same per-class split rule at a configurable size, which the tests and the
CI use.

Batches are :class:`~hashbench.data.batch.CrossModalBatch` ``(image, text, labels, index)``; validation and test
return ``[query_loader, database_loader]``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, default_collate

from hashbench.data.base import HashingDataModule
from hashbench.data.batch import CrossModalBatch, HashBatch
from hashbench.data.protocols import Protocol
from hashbench.data.registry import register_datamodule

__all__ = ["SyntheticTexts", "FashionMNISTTextDataModule", "PROTOCOL_NAME"]

PROTOCOL_NAME = "fashion-mnist-text"
_IMAGE_PROTOCOL = "fashion-mnist"


class SyntheticTexts:
    """Class-conditioned synthetic texts for a pool of ``pool_size`` items (see the module docstring).

    Args:
        pool_size: number of items that can receive a text (rows ``0 .. pool_size-1``).
        num_classes: number of classes.
        vocab_size: vocabulary size V (the bag-of-words length).
        words_per_class: attribute words owned by each class.
        class_words: class words per text (at most ``words_per_class``).
        noise_words: uniformly random words per text.
        text_noise: probability that a text's class words come from another class.
        seed: seed of the vocabulary assignment and of the per-item draws.

    Example:
        >>> texts = SyntheticTexts(pool_size=10, num_classes=3, vocab_size=50)
        >>> bow = texts.bow(torch.arange(4), torch.eye(3)[[0, 1, 2, 0]])
        >>> bow.shape, bool(((bow == 0) | (bow == 1)).all())
        (torch.Size([4, 50]), True)
    """

    def __init__(
        self,
        pool_size: int,
        num_classes: int,
        vocab_size: int = 200,
        words_per_class: int = 12,
        class_words: int = 4,
        noise_words: int = 6,
        text_noise: float = 0.1,
        seed: int = 0,
    ) -> None:
        if not 1 <= words_per_class <= vocab_size:
            raise ValueError(f"words_per_class must lie in [1, vocab_size={vocab_size}], got {words_per_class}")
        if not 1 <= class_words <= words_per_class:
            raise ValueError(f"class_words must lie in [1, words_per_class={words_per_class}], got {class_words}")
        if noise_words < 0 or not 0.0 <= text_noise <= 1.0:
            raise ValueError(f"need noise_words >= 0 and text_noise in [0, 1]; got {noise_words}, {text_noise}")
        if num_classes < 2 and text_noise > 0:
            raise ValueError("text_noise > 0 needs at least two classes")
        self.pool_size, self.num_classes, self.vocab_size = pool_size, num_classes, vocab_size
        self.words_per_class, self.class_words, self.noise_words = words_per_class, class_words, noise_words
        self.text_noise = text_noise
        self.vocabulary = [f"word{j:03d}" for j in range(vocab_size)]
        rng = np.random.Generator(np.random.PCG64([seed, 7]))
        # Each class's attribute words: an independent draw without replacement (classes can share words).
        self.class_vocab = torch.as_tensor(
            np.stack([rng.choice(vocab_size, size=words_per_class, replace=False) for _ in range(num_classes)])
        )
        n = pool_size
        # Label-independent per-item draws, so a text depends only on (item, its label).
        self._pick = torch.as_tensor(np.argsort(rng.random((n, words_per_class)), axis=1)[:, :class_words])
        self._noise = torch.as_tensor(rng.integers(0, vocab_size, size=(n, noise_words)))
        self._swap = torch.as_tensor(rng.random(n) < text_noise)
        self._offset = torch.as_tensor(rng.integers(1, max(num_classes, 2), size=n))
        self._class_key = torch.as_tensor(rng.random((n, num_classes)), dtype=torch.float32)

    def word_ids(self, rows: Tensor, labels: Tensor) -> Tensor:
        """Word ids ``[B, class_words + noise_words]`` of the texts of pool items ``rows`` with ``labels``."""
        rows = rows.long()
        if rows.numel() and int(rows.max()) >= self.pool_size:
            raise IndexError(f"pool row {int(rows.max())} out of range for {self.pool_size} items")
        # One positive label per item (a random one for multi-label items), then the optional class swap.
        cls = ((labels.float() > 0) * (1.0 + self._class_key[rows])).argmax(1)
        cls = torch.where(self._swap[rows], (cls + self._offset[rows]) % self.num_classes, cls)
        own = self.class_vocab[cls].gather(1, self._pick[rows])
        return torch.cat([own, self._noise[rows]], dim=1)

    def bow(self, rows: Tensor, labels: Tensor) -> Tensor:
        """Binary bag-of-words vectors ``[B, vocab_size]`` (float32)."""
        ids = self.word_ids(rows, labels)
        out = torch.zeros(ids.shape[0], self.vocab_size)
        return out.scatter_(1, ids, 1.0)

    def captions(self, rows: Tensor, labels: Tensor) -> list[str]:
        """The texts as space-separated words (for display and for token-based text encoders)."""
        return [" ".join(self.vocabulary[j] for j in row) for row in self.word_ids(rows, labels).tolist()]


def _collate(items: Any) -> Any:
    if isinstance(items, (HashBatch, CrossModalBatch)):
        return items
    return default_collate(items)


def _image_batch(dataset: Dataset, positions: Sequence[int]) -> HashBatch:
    if hasattr(dataset, "__getitems__"):
        return dataset.__getitems__(positions)
    return default_collate([dataset[p] for p in positions])


class _PairedTextDataset(Dataset):
    """Adds the synthetic text of each item to an image dataset of one split (``rows`` = its pool positions)."""

    def __init__(
        self,
        images: Dataset,
        rows: np.ndarray,
        texts: SyntheticTexts,
        tokenizer: Callable[[list[str]], Tensor] | None = None,
    ) -> None:
        self.images, self.rows, self.texts, self.tokenizer = images, torch.as_tensor(rows).long(), texts, tokenizer

    def __len__(self) -> int:
        return len(self.images)

    def __getitems__(self, positions: Sequence[int]) -> CrossModalBatch:
        batch = _image_batch(self.images, positions)
        rows = self.rows[torch.as_tensor(batch.index).long()]
        if self.tokenizer is None:
            text = self.texts.bow(rows, batch.labels)
        else:
            text = torch.as_tensor(self.tokenizer(self.texts.captions(rows, batch.labels)), dtype=torch.int64)
        return CrossModalBatch(batch.image, text, batch.labels, torch.as_tensor(batch.index).long())

    def __getitem__(self, position: int) -> CrossModalBatch:
        b = self.__getitems__([position])
        return CrossModalBatch(b.image[0], b.text[0], b.labels[0], b.index[0])


class _SyntheticImagePool:
    """Seeded class templates + noise, split per class like ``fashion-mnist`` (query / train / the rest)."""

    def __init__(
        self,
        num_classes: int,
        image_shape: tuple[int, int, int],
        query_per_class: int,
        train_per_class: int,
        database_per_class: int,
        val_fraction: float,
        seed: int,
    ) -> None:
        per_class = query_per_class + train_per_class + database_per_class
        n = num_classes * per_class
        g = torch.Generator().manual_seed(1234)
        templates = torch.randn(num_classes, *image_shape, generator=g)
        self.class_ids = torch.arange(num_classes).repeat_interleave(per_class)
        self.labels = torch.nn.functional.one_hot(self.class_ids, num_classes).float()
        noise = torch.randn(n, *image_shape, generator=torch.Generator().manual_seed(seed + 1))
        self.images = templates[self.class_ids] + 0.8 * noise
        rng = np.random.Generator(np.random.PCG64([seed, 11]))
        parts: dict[str, list[np.ndarray]] = {"query": [], "train": [], "val_query": [], "database": []}
        n_val = int(round(val_fraction * train_per_class))
        for c in range(num_classes):
            members = rng.permutation(np.arange(c * per_class, (c + 1) * per_class))
            parts["query"].append(members[:query_per_class])
            train = members[query_per_class : query_per_class + train_per_class]
            parts["val_query"].append(train[:n_val])
            parts["train"].append(train[n_val:])
            parts["database"].append(members[query_per_class + train_per_class :])
        self.split_indices = {k: np.sort(np.concatenate(v)).astype(np.int64) for k, v in parts.items()}
        self.split_indices["val_database"] = self.split_indices["train"]
        self.pool_size = n

    def dataset(self, split: str) -> Dataset:
        return _PoolSplit(self.images, self.labels, self.split_indices[split])


class _PoolSplit(Dataset):
    def __init__(self, images: Tensor, labels: Tensor, rows: np.ndarray) -> None:
        self.images, self.labels, self.rows = images, labels, torch.as_tensor(rows)

    def __len__(self) -> int:
        return int(self.rows.numel())

    def __getitems__(self, positions: Sequence[int]) -> HashBatch:
        pos = torch.as_tensor(positions, dtype=torch.int64)
        rows = self.rows[pos]
        return HashBatch(self.images[rows], self.labels[rows], pos)

    def __getitem__(self, position: int) -> HashBatch:
        b = self.__getitems__([position])
        return HashBatch(b.image[0], b.labels[0], b.index[0])


@register_datamodule
class FashionMNISTTextDataModule(HashingDataModule):
    """Fashion-MNIST images paired with SYNTHETIC texts (protocol ``fashion-mnist-text``; see the module docstring).

    The shared arguments (:class:`~hashbench.data.base.HashingDataModule`'s) configure the Fashion-MNIST images
    and split: ``transform`` (``auto`` = native 1x28x28; ``clip`` for CLIP's image tower), the limits (``fashion-mnist``
    images only) and ``download``; ``class_aware_sampler`` must stay 0.

    Args:
        protocol: ``fashion-mnist-text`` (the default).
        vocab_size: vocabulary size (= ``text_dim`` for bag-of-words text).
        words_per_class: attribute words owned by each class.
        class_words: class words per text.
        noise_words: random words per text.
        text_noise: probability that a text describes another class.
        text_seed: seed of the texts.
        text_format: ``bow`` (binary bag-of-words float vectors) or ``tokens`` (CLIP BPE token ids).
        context_length: token sequence length for ``tokens``.
        image_source: ``fashion-mnist`` (the real images) or ``synthetic`` (template images, no files).
        synthetic_sizes: ``(query, train, database)`` items per class for ``image_source="synthetic"``.
        synthetic_image_shape: image shape for ``image_source="synthetic"``.
        **kwargs: the shared arguments of :class:`~hashbench.data.base.HashingDataModule`.
    """

    family = "fashion-mnist-text"
    default_protocol = PROTOCOL_NAME

    def __init__(
        self,
        protocol: str | Protocol | None = None,
        vocab_size: int = 200,
        words_per_class: int = 12,
        class_words: int = 4,
        noise_words: int = 6,
        text_noise: float = 0.1,
        text_seed: int = 0,
        text_format: str = "bow",
        context_length: int = 32,
        image_source: str = "fashion-mnist",
        synthetic_sizes: tuple[int, int, int] = (10, 50, 100),
        synthetic_image_shape: tuple[int, int, int] = (1, 28, 28),
        **kwargs: Any,
    ) -> None:
        if kwargs.get("class_aware_sampler"):
            raise ValueError("fashion-mnist-text has no class-aware sampler; use class_aware_sampler=0")
        super().__init__(protocol, **kwargs)
        if text_format not in ("bow", "tokens"):
            raise ValueError(f"text_format must be 'bow' or 'tokens', got {text_format!r}")
        if image_source not in ("fashion-mnist", "synthetic"):
            raise ValueError(f"image_source must be 'fashion-mnist' or 'synthetic', got {image_source!r}")
        self.text_format, self.image_source = text_format, image_source
        self.text_options = {
            "vocab_size": vocab_size,
            "words_per_class": words_per_class,
            "class_words": class_words,
            "noise_words": noise_words,
            "text_noise": text_noise,
            "seed": text_seed,
        }
        self.context_length = context_length
        #: bag-of-words length; 0 for token text (the text encoder's vocabulary is the tokenizer's).
        self.text_dim = vocab_size if text_format == "bow" else 0
        self.texts: SyntheticTexts | None = None
        self.split_indices: dict[str, np.ndarray] = {}
        self._datasets: dict[str, Dataset] = {}
        if image_source == "synthetic":
            self._images: Any = None
            self.image_shape = tuple(synthetic_image_shape)
            self._synthetic = {
                "image_shape": tuple(synthetic_image_shape),
                "sizes": tuple(synthetic_sizes),
                "val_fraction": self.val_fraction,
                "seed": self.seed,
            }
        else:
            from hashbench.data.fashion_mnist import FashionMNISTDataModule

            self._images = FashionMNISTDataModule(_IMAGE_PROTOCOL, **self.shared_arguments())
            self.image_shape = tuple(self._images.image_shape)

    @classmethod
    def make_example(cls, root: Path) -> dict[str, Any]:
        """Synthetic template images (no files): 2 queries, 6 training and 4 database items per class."""
        return {"image_source": "synthetic", "synthetic_sizes": (2, 6, 4), "synthetic_image_shape": (1, 16, 16)}

    def verify_data(self) -> list[str]:
        """The Fashion-MNIST files' checks (nothing to check for synthetic images; the texts are generated)."""
        return self._images.verify_data() if self._images is not None else []

    def prepare_data(self) -> None:
        if self._images is not None:
            self._images.prepare_data()

    def setup(self, stage: str | None = None) -> None:
        if self._datasets:
            return
        tokenizer = None
        if self.text_format == "tokens":
            from hashbench.nn.text import clip_tokenizer

            tokenizer = clip_tokenizer(self.context_length)
        names = ("train", "val_query", "val_database", "query", "database")
        if self._images is None:
            opts = self._synthetic
            q, t, d = opts["sizes"]
            pool = _SyntheticImagePool(
                self.num_classes, opts["image_shape"], q, t, d, opts["val_fraction"], opts["seed"]
            )
            image_sets = {name: pool.dataset(name) for name in names}
            self.split_indices = pool.split_indices
            pool_size = pool.pool_size
        else:
            dm = self._images
            dm.setup(stage)
            self.split_indices = dict(dm.split_indices)
            attrs = {
                "train": "train_dataset",
                "val_query": "val_query_dataset",
                "val_database": "val_database_dataset",
                "query": "query_dataset",
                "database": "database_dataset",
            }
            image_sets = {name: getattr(dm, attr) for name, attr in attrs.items()}
            pool = getattr(dm, "_pool", None)
            pool_size = len(pool) if pool is not None else 1 + max(int(v.max()) for v in self.split_indices.values())
        self.texts = SyntheticTexts(pool_size, self.num_classes, **self.text_options)
        for name in names:
            if image_sets[name] is not None and len(self.split_indices[name]):
                rows = self.split_indices[name]
                self._datasets[name] = _PairedTextDataset(image_sets[name], rows, self.texts, tokenizer)

    @property
    def num_train(self) -> int:
        """Training pairs actually trained on (after the validation carve-out)."""
        if not self._datasets:
            raise RuntimeError("FashionMNISTTextDataModule.num_train is known after setup(); call setup() first")
        return len(self._datasets["train"])

    def _loader(self, name: str, batch_size: int, shuffle: bool = False, drop_last: bool = False) -> DataLoader:
        if not self._datasets:
            self.setup()
        return DataLoader(
            self._datasets[name],
            batch_size=batch_size,
            shuffle=shuffle,
            drop_last=drop_last,
            num_workers=self.num_workers,
            collate_fn=_collate,
        )

    def train_dataloader(self) -> DataLoader:
        # Drop a ragged last batch (pairwise losses are noisy on a handful of items) unless it is the only batch.
        if not self._datasets:
            self.setup()
        drop = len(self._datasets["train"]) > self.batch_size
        return self._loader("train", self.batch_size, shuffle=True, drop_last=drop)

    def train_eval_dataloader(self) -> DataLoader:
        return self._loader("train", self.eval_batch_size)

    def val_dataloader(self) -> list[DataLoader]:
        if not self._datasets:
            self.setup()
        if "val_query" not in self._datasets:
            return []
        return [self._loader("val_query", self.eval_batch_size), self._loader("val_database", self.eval_batch_size)]

    def test_dataloader(self) -> list[DataLoader]:
        return [self._loader("query", self.eval_batch_size), self._loader("database", self.eval_batch_size)]

    def train_labels(self) -> Tensor:
        """Labels of the training pairs in index order ``[num_train, C]`` (memory-bank methods use them)."""
        if not self._datasets:
            self.setup()
        ds = self._datasets["train"]
        return torch.cat(
            [ds.__getitems__(list(range(i, min(i + 4096, len(ds))))).labels for i in range(0, len(ds), 4096)]
        )
