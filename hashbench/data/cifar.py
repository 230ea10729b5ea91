"""CIFAR-10 protocols ``cifar10``, ``cifar10-1``, ``cifar10-2`` (train + test pooled, 60k images in memory).

Files: the python version, ``<root>/cifar10/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta}``
(what torchvision's ``CIFAR10(root/cifar10, download=True)`` extracts). The pool is ``data_batch_1..5`` then
``test_batch``. The split is drawn from the labels on first use (``per-class-pcg64-v1``, see
:mod:`hashbench.data.splits`) and materialised with its checksum in ``<root>/cifar10/splits/``.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from hashbench.data.base import HashingDataModule, Pool
from hashbench.data.formats import CIFAR_TEST_FILE, CIFAR_TRAIN_FILES, read_cifar10
from hashbench.data.roots import candidate_dirs, download_dir, not_found

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
        ValueError: a mismatch.
    """
    from torchvision.datasets import CIFAR10

    lines = []
    for name, expected in [*CIFAR10.train_list, *CIFAR10.test_list]:
        actual = md5_file(directory / name)
        if actual != expected:
            raise ValueError(f"{directory / name}: md5 {actual}, expected {expected} (torchvision's CIFAR10 record)")
        lines.append(f"ok  {directory / name}  md5 {actual}")
    return lines


class CIFAR10DataModule(HashingDataModule):
    """CIFAR-10, pooled train+test (60k), 32x32 RGB held in memory as uint8.

    Args:
        protocol: ``cifar10``, ``cifar10-1`` or ``cifar10-2``.
        root: data root (``None``: ``$HASHBENCH_DATA``, then the download cache).
        batch_size: training batch size.
        eval_batch_size: batch size of query / database / train-eval loaders.
        num_workers: DataLoader worker processes.
        val_fraction: fraction of the training split (per class) held out for validation; 0 disables it.
        seed: seed of the validation carve-out, the limits and the sampler.
        transform: ``auto`` (= ``native``: 3x32x32), ``native`` or ``imagenet`` (3x224x224).
        image_size: output side length override.
        class_aware_sampler: images per class per training batch (0 = off).
        train_limit: keep at most this many training images (smoke runs).
        eval_limit: keep at most this many images per query / database set (smoke runs).
        augment: random horizontal flips (and crops for ``imagenet``) on training batches.
        download: let ``prepare_data`` download CIFAR-10 with torchvision when it is missing.
    """

    family = "cifar10"

    def __init__(
        self,
        protocol: str = "cifar10",
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
