"""Where datasets live: the data root and the errors raised when a dataset cannot be found.

Datasets live in ``$HASHBENCH_DATA/<protocol data_dir>/...`` (or under the ``root`` argument of a datamodule
or of ``hashbench data``). When neither is set, downloads go to ``$XDG_CACHE_HOME/hashbench/data``
(``~/.cache/hashbench/data``), which is also searched.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

ENV_VAR = "HASHBENCH_DATA"


class DatasetNotFoundError(FileNotFoundError):
    """A dataset's files are missing; the message says where we looked and how to obtain them."""


class DataChecksumError(ValueError):
    """A dataset file's checksum differs from the published one; the message names the file and both digests."""


def user_root(root: str | os.PathLike[str] | None = None) -> Path | None:
    """The data root given by the user: ``root`` if set, else ``$HASHBENCH_DATA``, else ``None``."""
    if root is not None and str(root) != "":
        return Path(root).expanduser()
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else None


def cache_root() -> Path:
    """Fallback data root for downloads when no root is given: ``$XDG_CACHE_HOME/hashbench/data``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "hashbench" / "data"


def candidate_dirs(data_dir: str, root: str | os.PathLike[str] | None = None) -> list[Path]:
    """Directories searched for a dataset, in order: ``<user root>/<data_dir>``, then the cache fallback."""
    dirs = []
    base = user_root(root)
    if base is not None:
        dirs.append(base / data_dir)
    dirs.append(cache_root() / data_dir)
    return dirs


def download_dir(data_dir: str, root: str | os.PathLike[str] | None = None) -> Path:
    """Where a download of ``data_dir`` goes: the user root if one is set, else the cache fallback."""
    base = user_root(root)
    return (base if base is not None else cache_root()) / data_dir


def not_found(dataset: str, looked: Sequence[str | os.PathLike[str]], how: str) -> DatasetNotFoundError:
    """Build the error for a missing dataset.

    Args:
        dataset: protocol / dataset name.
        looked: every place that was searched (directories or files).
        how: how to obtain the files and where to put them.
    """
    places = "\n".join(f"  - {p}" for p in looked)
    return DatasetNotFoundError(
        f"dataset {dataset!r} not found. Looked in:\n{places}\nHow to obtain it: {how}\n"
        f"Set {ENV_VAR}=/path/to/data (datasets live in $HASHBENCH_DATA/<name>/) or pass the root explicitly "
        "(--data.root for fit/test, --root for `hashbench data`)."
    )
