"""Fashion-MNIST (hashbench's offline default protocol).

Search order for the four IDX files (gzipped or not, directly in the directory or in torchvision's
``FashionMNIST/raw/`` layout): ``<root or $HASHBENCH_DATA>/fashion-mnist/``, the Debian package location
``/usr/share/datasets/fashion-mnist/`` (``apt-get install dataset-fashion-mnist``), the download cache
``~/.cache/hashbench/data/fashion-mnist/``; :meth:`prepare_data` finally tries a torchvision download. The
Debian ``.gz`` files differ from torchvision's byte for byte, so the files are verified on their decompressed
content.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from hashbench.data.base import HashingDataModule, Pool
from hashbench.data.formats import parse_idx, read_idx_bytes
from hashbench.data.roots import candidate_dirs, download_dir, not_found
from hashbench.data.splits import sha256_bytes

#: Where Debian's ``dataset-fashion-mnist`` package installs the original IDX .gz files.
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")

#: sha256 of the *decompressed* IDX files (measured on the Debian package files, which decompress to the
#: original Zalando release).
FILES: dict[str, str] = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}

HOW_TO_GET = (
    "`apt-get install dataset-fashion-mnist` (Debian/Ubuntu; files land in /usr/share/datasets/fashion-mnist), or "
    "copy train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
    "t10k-labels-idx1-ubyte.gz (https://github.com/zalandoresearch/fashion-mnist) into $HASHBENCH_DATA/fashion-mnist/, "
    "or run `hashbench data prepare fashion-mnist` on a machine with internet (torchvision download)"
)


def search_dirs(root: str | None = None) -> list[Path]:
    """Directories searched for the IDX files, in order."""
    dirs = candidate_dirs("fashion-mnist", root)
    ordered = [dirs[0], DEBIAN_DIR, *dirs[1:]] if len(dirs) > 1 else [DEBIAN_DIR, *dirs]
    return [p for d in ordered for p in (d, d / "FashionMNIST" / "raw")]


def _file_in(directory: Path, name: str) -> Path | None:
    for candidate in (directory / name, directory / f"{name}.gz"):
        if candidate.is_file():
            return candidate
    return None


def locate_files(root: str | None = None) -> dict[str, Path]:
    """Paths of the four IDX files from the first directory that holds all of them.

    Raises:
        DatasetNotFoundError: no directory holds all four; the message lists every place searched.
    """
    dirs = search_dirs(root)
    for directory in dirs:
        found = {name: _file_in(directory, name) for name in FILES}
        if all(found.values()):
            return found  # type: ignore[return-value]
    raise not_found("fashion-mnist", dirs, HOW_TO_GET)


def read_fashion_mnist(files: dict[str, Path], verify: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Read and pool Fashion-MNIST (train then test): ``(images (70000, 1, 28, 28) uint8, labels (70000,))``.

    Args:
        files: the four IDX files (see :func:`locate_files`).
        verify: compare the sha256 of each decompressed file with :data:`FILES`.

    Raises:
        ValueError: a checksum mismatch (names the file) or a malformed file.
    """
    arrays = {}
    for name, path in files.items():
        data = read_idx_bytes(path)
        if verify and sha256_bytes(data) != FILES[name]:
            raise ValueError(
                f"{path}: sha256 of the decompressed content is {sha256_bytes(data)}, expected {FILES[name]} "
                f"(the original Fashion-MNIST {name}); the file is corrupt or a different dataset. {HOW_TO_GET}"
            )
        arrays[name] = parse_idx(data, str(path))
    images = np.concatenate([arrays["train-images-idx3-ubyte"], arrays["t10k-images-idx3-ubyte"]])
    labels = np.concatenate([arrays["train-labels-idx1-ubyte"], arrays["t10k-labels-idx1-ubyte"]]).astype(np.int64)
    if images.shape[1:] != (28, 28) or images.shape[0] != labels.shape[0]:
        raise ValueError(
            f"Fashion-MNIST: expected 28x28 images with one label each, got {images.shape}, {labels.shape}"
        )
    return images[:, None], labels


def download(root: str | None = None) -> Path:
    """Download Fashion-MNIST with torchvision into ``<root>/fashion-mnist`` (or the cache); return the folder."""
    from torchvision.datasets import FashionMNIST

    target = download_dir("fashion-mnist", root)
    for train in (True, False):
        FashionMNIST(str(target), train=train, download=True)
    return target


class FashionMNISTDataModule(HashingDataModule):
    """Fashion-MNIST, pooled train+test (70k), 28x28 grey images held in memory as uint8.

    Args:
        protocol: ``fashion-mnist``.
        root: data root (``None``: ``$HASHBENCH_DATA``, then the Debian location, then the download cache).
        batch_size: training batch size.
        eval_batch_size: batch size of query / database / train-eval loaders.
        num_workers: DataLoader worker processes.
        val_fraction: fraction of the training split (per class) held out for validation; 0 disables it.
        seed: seed of the validation carve-out, the limits and the sampler.
        transform: ``auto`` (= ``native``: 1x28x28), ``native`` or ``imagenet`` (3x224x224).
        image_size: output side length override.
        class_aware_sampler: images per class per training batch (0 = off).
        train_limit: keep at most this many training images (smoke runs).
        eval_limit: keep at most this many images per query / database set (smoke runs).
        augment: random horizontal flips (and crops for ``imagenet``) on training batches.
        download: let ``prepare_data`` try a torchvision download when no copy is found.
    """

    family = "fashion-mnist"

    def __init__(
        self,
        protocol: str = "fashion-mnist",
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
            locate_files(self.root)
            return
        except FileNotFoundError:
            if not self.download:
                raise
        try:
            download(self.root)
        except Exception as err:  # offline, proxy, disk: all end in the same advice
            looked = search_dirs(self.root)
            error = not_found("fashion-mnist", looked, f"{HOW_TO_GET}. (torchvision download failed: {err})")
            raise error from err
        locate_files(self.root)

    def _load_pool(self) -> Pool:
        images, labels = read_fashion_mnist(locate_files(self.root))
        return self._tensor_pool(images, labels, split_dir=None)

    def verify_data(self) -> list[str]:
        """Check the sha256 of each decompressed IDX file against :data:`FILES`."""
        lines = []
        for name, path in locate_files(self.root).items():
            actual = sha256_bytes(read_idx_bytes(path))
            if actual != FILES[name]:
                raise ValueError(f"{path}: decompressed sha256 {actual}, expected {FILES[name]}. {HOW_TO_GET}")
            lines.append(f"ok  {path}  sha256(decompressed) {actual}")
        return lines


def fashion_mnist_available(root: str | None = None) -> bool:
    """Whether the four Fashion-MNIST files can be found (no download)."""
    try:
        locate_files(root if root is not None else os.environ.get("HASHBENCH_DATA"))
    except FileNotFoundError:
        return False
    return True
