"""SVHN protocol ``svhn`` (cropped digits, train + test pooled: 73,257 + 26,032 images in memory).

Files: ``<root>/svhn/train_32x32.mat`` and ``test_32x32.mat`` (what torchvision's ``SVHN(root/svhn, split,
download=True)`` writes). Label 10 in the files is digit 0. Horizontal flips are off (they do not preserve
digits). The split is drawn from the labels on first use (``per-class-pcg64-v1``) and materialised with its
checksum in ``<root>/svhn/splits/``. DFEH's class-aware sampling is ``class_aware_sampler=20``.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from hashbench.data.base import HashingDataModule, Pool
from hashbench.data.cifar import md5_file
from hashbench.data.formats import SVHN_FILES, read_svhn_mat
from hashbench.data.protocols import get_protocol
from hashbench.data.registry import register_datamodule
from hashbench.data.roots import DataChecksumError, candidate_dirs, download_dir, not_found

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


@register_datamodule
class SVHNDataModule(HashingDataModule):
    """SVHN, pooled train+test (99,289), 32x32 RGB held in memory as uint8.

    Protocol ``svhn``. ``transform="auto"`` is ``native`` (3x32x32); ``imagenet`` gives 3x224x224. Training
    augmentation never flips (flips do not preserve digits). DFEH's class-aware sampling is
    ``class_aware_sampler=20``. ``download`` lets ``prepare_data`` fetch SVHN with torchvision. The other arguments
    are :class:`~hashbench.data.base.HashingDataModule`'s.
    """

    family = "svhn"
    default_protocol = "svhn"
    flip_ok = False

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
                raise DataChecksumError(
                    f"{directory / name}: md5 {actual}, expected {expected} (torchvision's SVHN record)"
                )
            lines.append(f"ok  {directory / name}  md5 {actual}")
        return lines

    @classmethod
    def make_example(cls, root: Path) -> dict[str, Any]:
        """SVHN .mat files with unbalanced digits (8 to 17 per class), read under an ``svhn`` row with 2 queries and
        4 training images per class."""
        from hashbench.data.examples import write_svhn

        write_svhn(Path(root), per_class=(4, 4))
        small = replace(get_protocol("svhn"), name="svhn-example", query_per_class=2, train_per_class=4)
        return {"protocol": small, "root": str(root)}
