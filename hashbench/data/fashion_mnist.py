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
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from hashbench.data.base import HashingDataModule, Pool
from hashbench.data.formats import parse_idx, read_idx_bytes
from hashbench.data.protocols import get_protocol
from hashbench.data.registry import register_datamodule
from hashbench.data.roots import DataChecksumError, candidate_dirs, download_dir, not_found
from hashbench.data.splits import committed_split_path, sha256_bytes

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


@register_datamodule
class FashionMNISTDataModule(HashingDataModule):
    """Fashion-MNIST, pooled train+test (70k), 28x28 grey images held in memory as uint8.

    Protocol ``fashion-mnist`` (its split ships with hashbench). ``root`` = ``None`` searches ``$HASHBENCH_DATA``,
    then the Debian location, then the download cache. ``transform="auto"`` is ``native`` (1x28x28); ``imagenet``
    gives 3x224x224. ``download`` lets ``prepare_data`` try a torchvision download when no copy is found. The
    other arguments are :class:`~hashbench.data.base.HashingDataModule`'s.

    The files are checked against the original release (sha256 of the decompressed content) whenever the
    protocol's shipped split is used, since that split indexes the original files.
    """

    family = "fashion-mnist"
    default_protocol = "fashion-mnist"

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
        shipped_split = committed_split_path(self.protocol.name) is not None
        images, labels = read_fashion_mnist(locate_files(self.root), verify=shipped_split)
        return self._tensor_pool(images, labels, split_dir=None)

    def verify_data(self) -> list[str]:
        """Check the sha256 of each decompressed IDX file against :data:`FILES`."""
        lines = []
        for name, path in locate_files(self.root).items():
            actual = sha256_bytes(read_idx_bytes(path))
            if actual != FILES[name]:
                raise DataChecksumError(f"{path}: decompressed sha256 {actual}, expected {FILES[name]}. {HOW_TO_GET}")
            lines.append(f"ok  {path}  sha256(decompressed) {actual}")
        return lines

    @classmethod
    def make_example(cls, root: Path) -> dict[str, Any]:
        """Four gzipped IDX files with 12 random images per class, read under a ``fashion-mnist`` row with 2
        queries and 6 training images per class (its split is drawn, so the files need not be the original)."""
        from hashbench.data.examples import write_fashion_mnist

        write_fashion_mnist(Path(root) / "fashion-mnist")
        small = replace(
            get_protocol("fashion-mnist"), name="fashion-mnist-example", query_per_class=2, train_per_class=6
        )
        return {"protocol": small, "root": str(root)}


def fashion_mnist_available(root: str | None = None) -> bool:
    """Whether the four Fashion-MNIST files can be found (no download)."""
    try:
        locate_files(root if root is not None else os.environ.get("HASHBENCH_DATA"))
    except FileNotFoundError:
        return False
    return True
