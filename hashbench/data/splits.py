"""Fixed query / train / database splits: drawing, storing, checksumming and loading.

A split is drawn once from the labels with a fixed seed and stored as a small JSON file (query and train
indices into the pooled dataset plus the rule that defines the database), so that every run and machine uses
the same images. Split files shipped with hashbench live in ``hashbench/data/splits/`` with their sha256 in
``hashbench/data/splits/checksums.json``. Protocols whose labels are not available when hashbench is built
(CIFAR-10, SVHN, the cross-modal sets) are *materialised* on first use: the split is drawn with the documented
algorithm below, written to ``<data dir>/splits/<protocol>.json`` and its sha256 recorded beside it in
``<data dir>/splits/checksums.json``; later runs verify it.

Per-class algorithm (``per-class-pcg64-v1``, single-label pools)::

    rng = numpy.random.Generator(numpy.random.PCG64(seed))
    for c in 0 .. num_classes-1:
        members = positions with label c, ascending
        perm = rng.permutation(members)
        queries += perm[:query_per_class]; train += perm[query_per_class:query_per_class + train_per_class]
    query, train = sorted(queries), sorted(train)

Random algorithm (``random-pcg64-v1``, multi-label pools; the DCMH / DCHMT recipe with a fixed seed)::

    perm = Generator(PCG64(seed)).permutation(pool_size)
    query = sorted(perm[:num_query]); train = sorted(perm[num_query:num_query + num_train])

Database rules: ``rest`` = all but query and train, ``all_but_query`` = all but query (train included),
``train`` = the training set.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hashbench.data.protocols import Protocol
from hashbench.nn.weights import file_sha256

PACKAGE_SPLIT_DIR = Path(__file__).resolve().parent / "splits"
CHECKSUMS_FILE = "checksums.json"
PER_CLASS_ALGORITHM = "per-class-pcg64-v1"
RANDOM_ALGORITHM = "random-pcg64-v1"
DATABASE_RULES = ("rest", "all_but_query", "train")


class SplitChecksumError(ValueError):
    """A split file does not match its recorded checksum (or the data it was drawn from): refuse to run."""


@dataclass(frozen=True)
class Split:
    """Index arrays (into the pooled dataset) of one protocol's split.

    Attributes:
        query: query positions, sorted.
        train: training positions, sorted.
        database: database positions, sorted.
    """

    query: np.ndarray
    train: np.ndarray
    database: np.ndarray


def sha256_bytes(data: bytes) -> str:
    """Hex sha256 of ``data``."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    return file_sha256(path)


def labels_digest(labels: np.ndarray) -> str:
    """Checksum of a label array (class ids or a multi-hot matrix), independent of its dtype.

    It is stored in split files so that a split is never applied to data whose labels differ from those it
    was drawn from.
    """
    canonical = np.ascontiguousarray(np.asarray(labels).astype("<i8"))
    return sha256_bytes(repr(canonical.shape).encode() + canonical.tobytes())


def _database(rule: str, pool_size: int, query: np.ndarray, train: np.ndarray) -> np.ndarray:
    everything = np.arange(pool_size, dtype=np.int64)
    if rule == "rest":
        return np.setdiff1d(everything, np.union1d(query, train), assume_unique=True)
    if rule == "all_but_query":
        return np.setdiff1d(everything, query, assume_unique=True)
    if rule == "train":
        return train.copy()
    raise ValueError(f"unknown database rule {rule!r}; expected one of {DATABASE_RULES}")


def draw_per_class_split(
    class_ids: np.ndarray,
    num_classes: int,
    query_per_class: int,
    train_per_class: int,
    database_rule: str,
    seed: int,
) -> Split:
    """Draw a per-class split (algorithm ``per-class-pcg64-v1``, see the module docstring).

    Args:
        class_ids: class id of each pooled item, ``(N,)``.
        num_classes: number of classes; ids must lie in ``[0, num_classes)``.
        query_per_class: queries drawn from each class.
        train_per_class: training items drawn from each class (disjoint from the queries).
        database_rule: ``rest``, ``all_but_query`` or ``train``.
        seed: PCG64 seed.

    Returns:
        The :class:`Split`.

    Raises:
        ValueError: a class has too few items, or labels fall outside ``[0, num_classes)``.
    """
    class_ids = np.asarray(class_ids).reshape(-1)
    if class_ids.size and (class_ids.min() < 0 or class_ids.max() >= num_classes):
        raise ValueError(f"class ids must lie in [0, {num_classes}); got range [{class_ids.min()}, {class_ids.max()}]")
    rng = np.random.Generator(np.random.PCG64(seed))
    queries, trains = [], []
    need = query_per_class + train_per_class
    for c in range(num_classes):
        members = np.flatnonzero(class_ids == c)
        if members.size < need:
            raise ValueError(
                f"class {c} has {members.size} items but the protocol draws {query_per_class} queries + "
                f"{train_per_class} training items per class"
            )
        perm = rng.permutation(members)
        queries.append(perm[:query_per_class])
        trains.append(perm[query_per_class:need])
    query = np.sort(np.concatenate(queries)).astype(np.int64)
    train = np.sort(np.concatenate(trains)).astype(np.int64)
    return Split(query, train, _database(database_rule, class_ids.size, query, train))


def draw_random_split(pool_size: int, num_query: int, num_train: int, database_rule: str, seed: int) -> Split:
    """Draw a random split from one seeded permutation (algorithm ``random-pcg64-v1``).

    Args:
        pool_size: number of pooled items.
        num_query: first ``num_query`` items of the permutation are the queries.
        num_train: the next ``num_train`` items are the training set.
        database_rule: ``rest``, ``all_but_query`` or ``train``.
        seed: PCG64 seed.

    Returns:
        The :class:`Split`.

    Raises:
        ValueError: the pool is smaller than ``num_query + num_train``.
    """
    if pool_size < num_query + num_train:
        raise ValueError(f"pool of {pool_size} items is smaller than {num_query} queries + {num_train} training items")
    perm = np.random.Generator(np.random.PCG64(seed)).permutation(pool_size)
    query = np.sort(perm[:num_query]).astype(np.int64)
    train = np.sort(perm[num_query : num_query + num_train]).astype(np.int64)
    return Split(query, train, _database(database_rule, pool_size, query, train))


def draw_split(protocol: Protocol, labels: np.ndarray) -> Split:
    """Draw ``protocol``'s split from the pooled labels with the protocol's own seed.

    Args:
        protocol: a protocol with per-class or random split sizes.
        labels: class ids ``(N,)`` for per-class protocols, anything with ``len == N`` otherwise.

    Returns:
        The :class:`Split`.
    """
    if protocol.query_per_class:
        return draw_per_class_split(
            labels,
            protocol.num_classes,
            protocol.query_per_class,
            protocol.train_per_class,
            protocol.database_rule,
            protocol.split_seed,
        )
    if protocol.num_query:
        return draw_random_split(
            len(labels), protocol.num_query, protocol.num_train, protocol.database_rule, protocol.split_seed
        )
    raise ValueError(f"protocol {protocol.name!r} defines its split through list files, not a drawn split")


def split_to_bytes(protocol: Protocol, split: Split, labels: np.ndarray) -> bytes:
    """Serialise a split to canonical JSON bytes (sorted keys, no whitespace), so its sha256 is stable."""
    record = {
        "protocol": protocol.name,
        "algorithm": PER_CLASS_ALGORITHM if protocol.query_per_class else RANDOM_ALGORITHM,
        "seed": protocol.split_seed,
        "pool_size": int(len(labels)),
        "labels_sha256": labels_digest(labels),
        "database_rule": protocol.database_rule,
        "query": split.query.tolist(),
        "train": split.train.tolist(),
    }
    return (json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n").encode()


def _index_array(record: dict, name: str, pool_size: int) -> np.ndarray:
    """``record[name]`` as 1-D int64 indices into the pool.

    Raises:
        ValueError: not a list of integers in ``[0, pool_size)``.
    """
    values = record[name]
    if not isinstance(values, list):
        raise ValueError(f"{name!r} must be a list of indices, got {type(values).__name__}")
    for value in values:  # exact Python ints: nothing wraps around in int64, no float or bool passes as an index
        if type(value) is not int or not 0 <= value < pool_size:
            raise ValueError(f"{name!r} holds {value!r}; indices must be integers in [0, {pool_size})")
    return np.asarray(values, dtype=np.int64).reshape(-1)  # reshape: [] is 1-D too


def split_from_bytes(data: bytes, source: str) -> tuple[Split, dict]:
    """Parse a split file written by :func:`split_to_bytes`; ``source`` names it in errors.

    Raises:
        SplitChecksumError: the bytes are not such a file (not a JSON object, a missing field, a ``pool_size`` that
            is no non-negative integer, index lists that are not lists of integers in ``[0, pool_size)``, an
            unknown database rule).
    """
    try:
        record = json.loads(data)
        if not isinstance(record, dict):
            raise ValueError(f"expected a JSON object, got {type(record).__name__}")
        pool_size = record["pool_size"]
        if type(pool_size) is not int or pool_size < 0:
            raise ValueError(f"'pool_size' must be a non-negative integer, got {pool_size!r}")
        query = _index_array(record, "query", pool_size)
        train = _index_array(record, "train", pool_size)
        split = Split(query, train, _database(record["database_rule"], pool_size, query, train))
    except (ValueError, KeyError, TypeError, RecursionError) as err:  # RecursionError: absurdly nested JSON
        detail = f"{type(err).__name__}: {err}" if isinstance(err, (KeyError, RecursionError)) else str(err)
        raise SplitChecksumError(f"split file {source} is malformed ({detail}); delete it to redraw it") from err
    return split, record


def _read_checksums(directory: Path) -> dict[str, str]:
    path = directory / CHECKSUMS_FILE
    if not path.is_file():
        return {}
    try:
        checksums = json.loads(path.read_bytes())
        if not isinstance(checksums, dict):
            raise ValueError(f"expected a JSON object mapping file names to sha256, got {type(checksums).__name__}")
    except (ValueError, RecursionError) as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise SplitChecksumError(
            f"checksum file {path} is corrupt ({err}); refusing to run with unverifiable splits. Restore it (git "
            "checkout for shipped splits) or delete it together with the materialised split files to redraw them."
        ) from err
    return checksums


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.chmod(tmp, 0o644)  # mkstemp creates 0600; split files are meant to be shared
    os.replace(tmp, path)


def committed_split_path(name: str) -> Path | None:
    """Path of the split file shipped with hashbench for protocol ``name``, or ``None``."""
    path = PACKAGE_SPLIT_DIR / f"{name}.json"
    return path if path.is_file() else None


def check_split_file(path: Path, checksums_dir: Path) -> tuple[Split, dict, str]:
    """Read a split file and check it against the sha256 recorded in ``checksums_dir/checksums.json``.

    Returns:
        ``(split, record, sha256)``.

    Raises:
        SplitChecksumError: no recorded checksum, or the file's sha256 differs from it.
    """
    data = path.read_bytes()
    digest = sha256_bytes(data)
    expected = _read_checksums(checksums_dir).get(path.name)
    if expected is None:
        raise SplitChecksumError(
            f"split file {path} has no checksum recorded in {checksums_dir / CHECKSUMS_FILE}; refusing to use an "
            "unverified split (delete the file to redraw it)"
        )
    if digest != expected:
        raise SplitChecksumError(
            f"split file {path} has sha256 {digest} but {checksums_dir / CHECKSUMS_FILE} records {expected}; "
            "the split was modified or corrupted, refusing to run. Restore the file (git checkout for shipped "
            "splits) or delete a materialised one to redraw it."
        )
    split, record = split_from_bytes(data, str(path))
    return split, record, digest


def _check_against_labels(split: Split, record: dict, labels: np.ndarray, source: Path) -> None:
    if "labels_sha256" not in record:
        raise SplitChecksumError(
            f"split file {source} records no labels_sha256, so it cannot be matched to the data on disk; refusing "
            "to run. Restore the file (git checkout for shipped splits) or delete a materialised one to redraw it."
        )
    if record["pool_size"] != len(labels) or record["labels_sha256"] != labels_digest(labels):
        raise SplitChecksumError(
            f"split file {source} was drawn from a pool of {record['pool_size']} items with labels sha256 "
            f"{record['labels_sha256']}, but the data on disk has {len(labels)} items with labels sha256 "
            f"{labels_digest(labels)}: the dataset files differ from the ones the split was made for"
        )


def resolve_split(protocol: Protocol, labels: np.ndarray, materialise_dir: Path | None) -> Split:
    """The split of ``protocol``: shipped file, else materialised file, else drawn now and materialised.

    Args:
        protocol: the protocol.
        labels: pooled labels the split indexes (class ids for per-class protocols, multi-hot matrix otherwise).
        materialise_dir: directory for materialised splits (``<data dir>/splits``); ``None`` or unwritable keeps
            a freshly drawn split in memory only (with a warning).

    Returns:
        The verified :class:`Split`.

    Raises:
        SplitChecksumError: a stored split fails its checksum or belongs to different data.
    """
    shipped = committed_split_path(protocol.name)
    if shipped is not None:
        split, record, _ = check_split_file(shipped, PACKAGE_SPLIT_DIR)
        _check_against_labels(split, record, labels, shipped)
        return split
    if materialise_dir is not None:
        path = materialise_dir / f"{protocol.name}.json"
        if path.is_file():
            split, record, _ = check_split_file(path, materialise_dir)
            _check_against_labels(split, record, labels, path)
            return split
    split = draw_split(protocol, labels)
    if materialise_dir is None:
        return split
    try:
        write_split(protocol, split, labels, materialise_dir)
    except OSError as err:
        warnings.warn(
            f"could not write the split of {protocol.name!r} to {materialise_dir} ({err}); using the freshly drawn "
            "(deterministic) split without storing it",
            stacklevel=2,
        )
    return split


def write_split(protocol: Protocol, split: Split, labels: np.ndarray, directory: Path) -> Path:
    """Write a split file into ``directory`` and record its sha256 in ``directory/checksums.json``.

    Raises:
        SplitChecksumError: the existing ``checksums.json`` is corrupt (then nothing is written).
    """
    data = split_to_bytes(protocol, split, labels)
    path = directory / f"{protocol.name}.json"
    checksums = _read_checksums(directory)  # before writing anything: a corrupt checksum file refuses the write
    _atomic_write(path, data)
    checksums[path.name] = sha256_bytes(data)
    _atomic_write(directory / CHECKSUMS_FILE, (json.dumps(checksums, indent=2, sort_keys=True) + "\n").encode())
    return path
