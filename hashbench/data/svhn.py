"""SVHN protocol ``svhn`` (cropped digits, train + test pooled: 73,257 + 26,032 images in memory).

Files: ``<root>/svhn/train_32x32.mat`` and ``test_32x32.mat`` (what torchvision's ``SVHN(root/svhn, split,
download=True)`` writes). Label 10 in the files is digit 0. Horizontal flips are off (they do not preserve
digits). The split is drawn from the labels on first use (``per-class-pcg64-v1``) and materialised with its
checksum in ``<root>/svhn/splits/``. DFEH's class-aware sampling is ``class_aware_sampler=20``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hashbench.data.base import HashingDataModule, Pool
from hashbench.data.cifar import md5_file
from hashbench.data.formats import SVHN_FILES, read_svhn_mat
from hashbench.data.roots import candidate_dirs, download_dir, not_found

HOW_TO_GET = (
    "run `hashbench data prepare svhn` on a machine with internet (torchvision downloads train_32x32.mat and "
    "test_32x32.mat from http://ufldl.stanford.edu/housenumbers/), or put both files in $HASHBENCH_DATA/svhn/"
)


def locate(root: str | None = None) -> Path:
    """The first directory holding both SVHN files.

    Raises:
        DatasetNotFoundError: none found; the message lists every place searched.
    """
    dirs = candidate_dirs("svhn", root)
    for directory in dirs:
        if all((directory / name).is_file() for name in SVHN_FILES):
            return directory
    raise not_found("svhn", dirs, HOW_TO_GET)


class SVHNDataModule(HashingDataModule):
    """SVHN, pooled train+test (99,289), 32x32 RGB held in memory as uint8.

    Args:
        protocol: ``svhn``.
        root: data root (``None``: ``$HASHBENCH_DATA``, then the download cache).
        batch_size: training batch size (ignored with ``class_aware_sampler``).
        eval_batch_size: batch size of query / database / train-eval loaders.
        num_workers: DataLoader worker processes.
        val_fraction: fraction of the training split (per class) held out for validation; 0 disables it.
        seed: seed of the validation carve-out, the limits and the sampler.
        transform: ``auto`` (= ``native``: 3x32x32), ``native`` or ``imagenet`` (3x224x224).
        image_size: output side length override.
        class_aware_sampler: images per class per training batch (0 = off; DFEH uses 20).
        train_limit: keep at most this many training images (smoke runs).
        eval_limit: keep at most this many images per query / database set (smoke runs).
        augment: training augmentation (random crops for ``imagenet``; no flips for digits).
        download: let ``prepare_data`` download SVHN with torchvision when it is missing.
    """

    family = "svhn"
    flip_ok = False

    def __init__(
        self,
        protocol: str = "svhn",
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

    def _prepare(self) -> None:
        try:
            locate(self.root)
            return
        except FileNotFoundError:
            if not self.download:
                raise
        try:
            from torchvision.datasets import SVHN

            target = str(download_dir("svhn", self.root))
            for split in ("train", "test"):
                SVHN(target, split=split, download=True)
        except Exception as err:  # offline, proxy, disk: all end in the same advice
            dirs = candidate_dirs("svhn", self.root)
            raise not_found("svhn", dirs, f"{HOW_TO_GET}. (download failed: {err})") from err
        locate(self.root)

    def _load_pool(self) -> Pool:
        directory = locate(self.root)
        parts = [read_svhn_mat(directory / name) for name in SVHN_FILES]
        images = np.concatenate([p[0] for p in parts])
        labels = np.concatenate([p[1] for p in parts])
        return self._tensor_pool(images, labels, split_dir=directory / "splits")

    def verify_data(self) -> list[str]:
        """Check both files against the md5 values torchvision's ``SVHN`` class publishes."""
        from torchvision.datasets import SVHN

        directory = locate(self.root)
        lines = []
        for split in ("train", "test"):
            _, name, expected = SVHN.split_list[split]
            actual = md5_file(directory / name)
            if actual != expected:
                raise ValueError(f"{directory / name}: md5 {actual}, expected {expected} (torchvision's SVHN record)")
            lines.append(f"ok  {directory / name}  md5 {actual}")
        return lines
