"""Multi-label (and ImageNet-100) protocols defined by list files: ``nuswide21``, ``coco``, ``imagenet100``,
``mirflickr``.

List-file format (DeepHash-pytorch / HashNet): one line per image, ``relative/path l1 l2 ... lC`` with a 0/1
vector of ``C`` labels. ``train.txt`` = training set, ``test.txt`` = queries, ``database.txt`` = database, all in
``<root>/<protocol data_dir>/``. Relative image paths (a leading ``./`` is ignored) are resolved against
``image_root`` (default: the directory of the list files); absolute paths are used as they are. The split *is*
the list files: hashbench records their sha256 when it loads them (``hashbench data verify`` prints them and
compares them with :data:`KNOWN_LIST_CHECKSUMS` where a reference is recorded).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from hashbench.data.base import HashingDataModule, Pool
from hashbench.data.datasets import ImageFileDataset
from hashbench.data.formats import parse_list_file
from hashbench.data.protocols import Protocol
from hashbench.data.registry import register_datamodule
from hashbench.data.roots import DataChecksumError, candidate_dirs, not_found
from hashbench.data.splits import Split, sha256_file
from hashbench.data.transforms import pil_transform

#: protocol -> list file name -> sha256 of a reference copy. Empty until someone records the public lists'
#: checksums; ``hashbench data verify`` then flags copies that differ.
KNOWN_LIST_CHECKSUMS: dict[str, dict[str, str]] = {}


@register_datamodule
class ListFileDataModule(HashingDataModule):
    """Images listed in list files, read with PIL per item.

    Protocols ``nuswide21`` (default), ``coco``, ``imagenet100`` and ``mirflickr``. ``transform="auto"`` is
    ``imagenet`` (resize 256, crop 224); ``native`` gives 64x64. ``val_fraction`` is drawn at random (per class for
    single-label lists such as imagenet100). ``download`` has no effect (these datasets cannot be downloaded
    automatically). The arguments below are this family's own; the others are
    :class:`~hashbench.data.base.HashingDataModule`'s.

    Args:
        protocol: a protocol of this family (default ``nuswide21``).
        image_root: directory that relative image paths are resolved against (default: the list files' folder).
        train_list: training list file name (inside the protocol directory, or an absolute path).
        query_list: query list file name.
        database_list: database list file name.
        num_classes: label count per line when it differs from the protocol's (e.g. 38 for MIRFlickr ``_r1``).
        **kwargs: the shared arguments of :class:`~hashbench.data.base.HashingDataModule`.
    """

    family = "listfile"
    default_protocol = "nuswide21"

    def __init__(
        self,
        protocol: str | Protocol | None = None,
        image_root: str | None = None,
        train_list: str = "train.txt",
        query_list: str = "test.txt",
        database_list: str = "database.txt",
        num_classes: int | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(protocol, **kwargs)
        if num_classes is not None:
            if num_classes <= 0:
                raise ValueError(f"num_classes must be positive, got {num_classes}")
            self.num_classes = num_classes
        self.image_root = image_root
        self.list_names = {"train": train_list, "query": query_list, "database": database_list}
        self.list_checksums: dict[str, str] = {}

    def _list_paths(self, directory: Path) -> dict[str, Path]:
        return {role: directory / name for role, name in self.list_names.items()}

    def locate(self) -> Path:
        """The first protocol directory holding all three list files.

        Raises:
            DatasetNotFoundError: none found; the message names the expected files and where to get them.
        """
        dirs = candidate_dirs(self.protocol.data_dir, self.root)
        for directory in dirs:
            if all(p.is_file() for p in self._list_paths(directory).values()):
                return directory
        looked = [p for d in dirs for p in self._list_paths(d).values()]
        raise not_found(self.protocol.name, looked, self.protocol.source)

    def _prepare(self) -> None:
        self.locate()

    def _read_lists(self) -> tuple[Path, dict[str, tuple[list[str], np.ndarray]]]:
        directory = self.locate()
        lists = {role: parse_list_file(path) for role, path in self._list_paths(directory).items()}
        widths = {role: labels.shape[1] for role, (_, labels) in lists.items()}
        if len(set(widths.values())) > 1:
            detail = ", ".join(f"{self.list_names[r]} has {w}" for r, w in widths.items())
            raise ValueError(f"{directory}: the list files disagree on the number of labels per line ({detail})")
        width = next(iter(widths.values()))
        if width != self.num_classes:
            raise ValueError(
                f"{directory}: the list files have {width} labels per line but protocol {self.protocol.name!r} "
                f"expects {self.num_classes}; pass --data.num_classes {width} if this variant is intended"
            )
        self.list_checksums = {self.list_names[r]: sha256_file(p) for r, p in self._list_paths(directory).items()}
        return directory, lists

    def _resolve(self, directory: Path, path: str) -> str:
        if path.startswith("./"):
            path = path[2:]
        candidate = Path(path)
        if candidate.is_absolute():
            return str(candidate)
        base = Path(self.image_root).expanduser() if self.image_root else directory
        return str(base / candidate)

    def _load_pool(self) -> Pool:
        directory, lists = self._read_lists()
        order = ("train", "query", "database")
        paths = [self._resolve(directory, p) for role in order for p in lists[role][0]]
        label_array = np.concatenate([lists[role][1] for role in order])
        labels = torch.from_numpy(label_array.astype(np.float32))
        class_ids = None
        if not self.multi_label and np.all(label_array.sum(1) == 1):
            class_ids = label_array.argmax(1).astype(np.int64)
        sizes = [len(lists[role][0]) for role in order]
        starts = np.cumsum([0, *sizes])
        self._list_split = Split(
            query=np.arange(starts[1], starts[2]),
            train=np.arange(starts[0], starts[1]),
            database=np.arange(starts[2], starts[3]),
        )
        train_tf = pil_transform(self.transform_name, self.protocol, self.image_size, train=True, flip=self.flip)
        eval_tf = pil_transform(self.transform_name, self.protocol, self.image_size, train=False, flip=False)

        def make(indices: np.ndarray, train: bool) -> ImageFileDataset:
            return ImageFileDataset(paths, labels, indices, train_tf if train else eval_tf)

        self._paths = paths
        return Pool(labels=labels, make_dataset=make, class_ids=class_ids, split_dir=None)

    def _load_split(self, pool: Pool) -> Split:
        return self._list_split

    def verify_data(self) -> list[str]:
        """sha256 of each list file (compared with :data:`KNOWN_LIST_CHECKSUMS` where known) and a check that
        every listed image exists."""
        directory, lists = self._read_lists()
        known = KNOWN_LIST_CHECKSUMS.get(self.protocol.name, {})
        lines = []
        for name, digest in self.list_checksums.items():
            if name in known and known[name] != digest:
                raise DataChecksumError(
                    f"{directory / name}: sha256 {digest}, expected {known[name]} (reference lists)"
                )
            status = "ok " if name in known else "-- "
            note = "" if name in known else "  (no reference checksum recorded)"
            lines.append(f"{status} {directory / name}  sha256 {digest}{note}")
        missing = [self._resolve(directory, p) for _, (paths, _) in lists.items() for p in paths]
        missing = [p for p in dict.fromkeys(missing) if not Path(p).is_file()]
        if missing:
            shown = "\n".join(f"  - {p}" for p in missing[:10])
            raise FileNotFoundError(f"{len(missing)} listed images are missing, e.g.:\n{shown}")
        lines.append(f"ok  all listed images exist (image root {self.image_root or directory})")
        return lines

    @classmethod
    def make_example(cls, root: Path) -> dict[str, Any]:
        """``nuswide21`` list files (12 training, 6 query, 20 database images, 21 labels each) and their PNGs."""
        from hashbench.data.examples import write_list_dataset

        write_list_dataset(Path(root), name="nuswide21", classes=21)
        return {"protocol": "nuswide21", "root": str(root)}
