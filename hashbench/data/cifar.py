"""CIFAR-10 protocols ``cifar10``, ``cifar10-1``, ``cifar10-2`` (train + test pooled, 60k images in memory).

Files: the python version, ``<root>/cifar10/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}``
(what torchvision's ``CIFAR10(root/cifar10, download=True)`` extracts). The pool is ``data_batch_1..5`` then
``test_batch``. The split is drawn from the labels on first use (``per-class-pcg64-v1``, see
:mod:`hashbench.data.splits`) and materialised with its checksum in ``<root>/cifar10/splits/``.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace
from pathlib import Path
from typing import Any

from hashbench.data.base import HashingDataModule, Pool
from hashbench.data.formats import CIFAR_TEST_FILE, CIFAR_TRAIN_FILES, read_cifar10
from hashbench.data.protocols import get_protocol
from hashbench.data.registry import register_datamodule
from hashbench.data.roots import DataChecksumError, candidate_dirs, download_dir, not_found

BATCHES_DIR = "cifar-10-batches-py"
HOW_TO_GET = (
    "run `hashbench data prepare cifar10` on a machine with internet (torchvision downloads cifar-10-python.tar.gz "
    "from https://www.cs.toronto.edu/~kriz/cifar.html), or extract that archive yourself so that "
    "$HASHBENCH_DATA/cifar10/cifar-10-batches-py/data_batch_1 ... test_batch exist"
)


def search_dirs(root: str | None = None) -> list[Path]:
    """Candidate ``cifar-10-batches-py`` directories, in search order."""
    return [d / BATCHES_DIR for d in candidate_dirs("cifar10", root)]


def locate(root: str | None = None) -> Path:
    """The first ``cifar-10-batches-py`` directory holding all six batches.

    Raises:
        DatasetNotFoundError: none found; the message lists every place searched.
    """
    dirs = search_dirs(root)
    for directory in dirs:
        if all((directory / name).is_file() for name in (*CIFAR_TRAIN_FILES, CIFAR_TEST_FILE)):
            return directory
    raise not_found("cifar10", dirs, HOW_TO_GET)


def md5_file(path: Path) -> str:
    """Hex md5 of a file (the checksum torchvision publishes for the CIFAR batches)."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def verify_files(directory: Path) -> list[str]:
    """Compare each batch's md5 with the values torchvision's ``CIFAR10`` class publishes.

    Returns:
        One report line per file.

    Raises:
        DataChecksumError: a mismatch (a ValueError).
    """
    from torchvision.datasets import CIFAR10

    lines = []
    for name, expected in [*CIFAR10.train_list, *CIFAR10.test_list]:
        actual = md5_file(directory / name)
        if actual != expected:
            raise DataChecksumError(
                f"{directory / name}: md5 {actual}, expected {expected} (torchvision's CIFAR10 record)"
            )
        lines.append(f"ok  {directory / name}  md5 {actual}")
    return lines


@register_datamodule
class CIFAR10DataModule(HashingDataModule):
    """CIFAR-10, pooled train+test (60k), 32x32 RGB held in memory as uint8.

    Protocols ``cifar10`` (default), ``cifar10-1`` and ``cifar10-2``. ``transform="auto"`` is ``native`` (3x32x32);
    ``imagenet`` gives 3x224x224. ``download`` lets ``prepare_data`` fetch CIFAR-10 with torchvision. The other
    arguments are :class:`~hashbench.data.base.HashingDataModule`'s.
    """

    family = "cifar10"
    default_protocol = "cifar10"

    def _prepare(self) -> None:
        try:
            locate(self.root)
            return
        except FileNotFoundError:
            if not self.download:
                raise
        try:
            from torchvision.datasets import CIFAR10

            CIFAR10(str(download_dir("cifar10", self.root)), train=True, download=True)
        except Exception as err:  # offline, proxy, disk: all end in the same advice
            raise not_found("cifar10", search_dirs(self.root), f"{HOW_TO_GET}. (download failed: {err})") from err
        locate(self.root)

    def _load_pool(self) -> Pool:
        directory = locate(self.root)
        images, labels = read_cifar10(directory)
        return self._tensor_pool(images, labels, split_dir=directory.parent / "splits")

    def verify_data(self) -> list[str]:
        """Check the batch files against torchvision's published md5 values."""
        return verify_files(locate(self.root))

    @classmethod
    def make_example(cls, root: Path) -> dict[str, Any]:
        """CIFAR-10 batches with 12 images per class, read under a ``cifar10`` row with 2 queries and 6 training
        images per class."""
        from hashbench.data.examples import write_cifar10

        write_cifar10(Path(root), per_class_train=8, per_class_test=4)
        small = replace(get_protocol("cifar10"), name="cifar10-example", query_per_class=2, train_per_class=6)
        return {"protocol": small, "root": str(root)}
