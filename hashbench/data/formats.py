"""Readers for the on-disk formats of the supported datasets (no torch, no network).

Every reader raises an error that names the offending file (and line, for text formats) and says what was
expected.
"""

from __future__ import annotations

import gzip
import io
import math
import os
import pickle
import re
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np

# --------------------------------------------------------------------------------------------------- IDX (MNIST)
_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx_bytes(path: str | os.PathLike[str]) -> bytes:
    """Raw (decompressed) bytes of an IDX file, gzipped (``.gz``) or not.

    Raises:
        OSError: the file cannot be read or is not a valid gzip stream (``cannot read IDX file <path>: ...``).
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            return handle.read()
    except (OSError, EOFError, zlib.error) as err:  # zlib.error: a corrupt deflate stream inside the .gz
        raise OSError(f"cannot read IDX file {path}: {err}") from err


def parse_idx(data: bytes, source: str = "<bytes>") -> np.ndarray:
    """Parse IDX bytes (the MNIST / Fashion-MNIST format) into an array.

    Raises:
        ValueError: bad magic number, a truncated header or a size that does not match the header; names
            ``source``.
    """
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in _IDX_DTYPES:
        raise ValueError(f"{source} is not an IDX file (bad magic number {data[:4]!r})")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{source}: truncated IDX header (expected {header} bytes for {ndim} dimensions)")
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    expected = math.prod(shape) * dtype.itemsize  # Python ints: np.prod would wrap around in int64
    if len(data) - header != expected:
        raise ValueError(
            f"{source}: header says shape {shape} ({expected} bytes) but the file has {len(data) - header}"
        )
    try:
        return np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    except ValueError as err:  # e.g. an empty array whose other dimensions are too large or too many for numpy
        raise ValueError(f"{source}: header shape {shape} is not a representable array ({err})") from None


# ---------------------------------------------------------------------------------------------- CIFAR-10 pickles
CIFAR_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR_TEST_FILE = "test_batch"


# What unpickling a damaged file can raise besides UnpicklingError (truncated or altered opcodes and arguments).
_UNPICKLING_ERRORS = (
    OSError,
    EOFError,
    pickle.UnpicklingError,
    AttributeError,
    ImportError,
    IndexError,
    KeyError,
    OverflowError,
    TypeError,
    ValueError,
    RecursionError,
)


def read_cifar_batch(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR-10 python batch (a pickled dict with ``data`` (N, 3072) uint8 and ``labels``).

    Returns:
        ``(images (N, 3, 32, 32) uint8, labels (N,) int64)``.

    Raises:
        OSError: the file cannot be read or unpickled.
        ValueError: the content is not such a dict (wrong keys, types, shapes or values); names the file.
    """
    try:
        with open(path, "rb") as handle:
            entry = pickle.load(handle, encoding="bytes")
    except _UNPICKLING_ERRORS as err:
        raise OSError(f"cannot read CIFAR batch {path}: {err}") from err
    if not isinstance(entry, dict):
        raise ValueError(f"{path}: expected a pickled dict with 'data' and 'labels', got {type(entry).__name__}")
    entry = {k.decode("utf-8", "replace") if isinstance(k, bytes) else k: v for k, v in entry.items()}
    if "data" not in entry or "labels" not in entry:
        found = ", ".join(sorted(map(repr, entry)))  # keys of any (mixed) types: sort their reprs
        raise ValueError(f"{path}: expected keys 'data' and 'labels', found [{found}]")
    data = _integer_array(entry["data"], np.uint8, "data", path)
    labels = _integer_array(entry["labels"], np.int64, "labels", path)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or labels.ndim != 1 or data.shape[0] != labels.shape[0]:
        raise ValueError(f"{path}: expected data (N, 3072) and N labels, got {data.shape} and {labels.shape}")
    return data.reshape(-1, 3, 32, 32), labels


def _integer_array(value: object, dtype: type[np.integer], what: str, path: str | os.PathLike[str]) -> np.ndarray:
    """``value`` as an array of ``dtype``, refusing (``ValueError`` naming ``path``) anything that is not integers
    (or booleans) within the range of ``dtype``; nothing is cast with wrap-around or truncation."""
    info = np.iinfo(dtype)
    try:
        array = np.asarray(value)
        integral = array.dtype.kind in "biu" or array.size == 0  # np.asarray([]) is float64
        in_range = integral and (array.size == 0 or (int(array.min()) >= info.min and int(array.max()) <= info.max))
    except (TypeError, ValueError, OverflowError, RecursionError) as err:  # ragged or otherwise not an array
        raise ValueError(f"{path}: {what} is not an array of integers ({type(err).__name__}: {err})") from None
    if not in_range:
        kind = f"dtype {array.dtype}" if not integral else f"values in [{array.min()}, {array.max()}]"
        raise ValueError(f"{path}: expected {what} to hold integers in [{info.min}, {info.max}], got {kind}")
    return array.astype(dtype, copy=False)


def read_cifar10(directory: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Read and pool CIFAR-10 (``data_batch_1..5`` then ``test_batch``) from ``cifar-10-batches-py``."""
    directory = Path(directory)
    parts = [read_cifar_batch(directory / name) for name in (*CIFAR_TRAIN_FILES, CIFAR_TEST_FILE)]
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


# ------------------------------------------------------------------------------------------------------ SVHN .mat
SVHN_FILES = ("train_32x32.mat", "test_32x32.mat")


def read_svhn_mat(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """Read an SVHN cropped-digits file (``X`` [32, 32, 3, N] uint8, ``y`` [N, 1] with 10 for digit 0).

    Returns:
        ``(images (N, 3, 32, 32) uint8, labels (N,) int64 in 0..9)``.
    """
    from scipy.io import loadmat

    try:
        mat = loadmat(path, variable_names=["X", "y"])
    except (OSError, ValueError) as err:
        raise OSError(f"cannot read SVHN file {path}: {err}") from err
    if "X" not in mat or "y" not in mat:
        raise ValueError(f"{path}: expected variables 'X' and 'y'")
    x, y = mat["X"], np.asarray(mat["y"]).reshape(-1).astype(np.int64)
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.shape[3] != y.size:
        raise ValueError(f"{path}: expected X of shape (32, 32, 3, N) and N labels, got {x.shape} and {y.size}")
    if y.size and (y.min() < 1 or y.max() > 10):
        raise ValueError(f"{path}: SVHN labels must lie in 1..10 (10 = digit 0), got [{y.min()}, {y.max()}]")
    return np.ascontiguousarray(x.transpose(3, 2, 0, 1)), y % 10


# ------------------------------------------------------------------------------------------------------ list files
_UNDECODABLE = re.compile("[\udc80-\udcff]")


def parse_list_file(path: str | os.PathLike[str], num_classes: int | None = None) -> tuple[list[str], np.ndarray]:
    """Parse a DeepHash-pytorch / HashNet list file: ``relative/path l1 l2 ... lC`` per line (0/1 labels).

    Blank lines are skipped.

    Args:
        path: the list file.
        num_classes: expected label count per line (``None``: take it from the first line).

    Returns:
        ``(paths, labels (N, C) uint8)``.

    Raises:
        ValueError: a malformed line or one that is not UTF-8 (reported as ``file:line``), a wrong label count, or
            an empty file (reported as ``file``).
    """
    paths: list[str] = []
    rows: list[list[int]] = []
    with open(path, "rb") as handle:
        text = handle.read().decode("utf-8", "surrogateescape")
    # Bytes that are not UTF-8 became lone surrogates U+DC80..U+DCFF (which valid UTF-8 never decodes to): the
    # first line holding one is reported like any other malformed line.
    undecodable = _UNDECODABLE.search(text) is not None
    # Universal newlines, exactly like iterating over a file opened in text mode (not str.splitlines, which also
    # breaks at \x0b, \x0c, \x1c-\x1e, \x85, \u2028, \u2029).
    with io.StringIO(text, newline=None) as handle:
        for lineno, line in enumerate(handle, start=1):
            where = f"{path}:{lineno}"
            if undecodable and (bad := _UNDECODABLE.search(line)):
                raise ValueError(f"{where}: not UTF-8 text (byte {ord(bad.group()) - 0xDC00:#04x})")
            fields = line.split()
            if not fields:
                continue
            if len(fields) < 2:
                raise ValueError(f"{where}: expected `relative/path l1 ... lC` (a path and 0/1 labels), got {line!r}")
            labels = fields[1:]
            if num_classes is None:
                num_classes = len(labels)
            if len(labels) != num_classes:
                raise ValueError(f"{where}: expected {num_classes} labels after the path, got {len(labels)}")
            try:
                values = [int(v) for v in labels]
            except ValueError:
                raise ValueError(f"{where}: labels must be 0 or 1, got {' '.join(labels)!r}") from None
            if any(v not in (0, 1) for v in values):
                raise ValueError(f"{where}: labels must be 0 or 1, got {' '.join(labels)!r}")
            paths.append(fields[0])
            rows.append(values)
    if not rows:
        raise ValueError(f"{path}: the list file is empty")
    return paths, np.asarray(rows, dtype=np.uint8)


# ------------------------------------------------------------------------------------------------------- .mat I/O
def is_hdf5_mat(path: str | os.PathLike[str]) -> bool:
    """Whether a ``.mat`` file is MATLAB v7.3 (HDF5)."""
    import h5py

    return bool(h5py.is_hdf5(path))


def mat_keys(path: str | os.PathLike[str]) -> list[str]:
    """Variable names stored in a ``.mat`` file (v5 or v7.3)."""
    if is_hdf5_mat(path):
        import h5py

        with h5py.File(path, "r") as handle:
            return [k for k in handle.keys() if not k.startswith("#")]
    from scipy.io import whosmat

    return [name for name, _, _ in whosmat(path)]


def find_mat_variable(files: Sequence[Path], candidates: Sequence[str]) -> tuple[Path, str] | None:
    """First ``(file, key)`` among ``files`` holding one of the variable names ``candidates``."""
    for path in files:
        keys = set(mat_keys(path))
        for key in candidates:
            if key in keys:
                return path, key
    return None


def load_mat_variable(path: Path, key: str) -> np.ndarray:
    """Load one variable from a ``.mat`` file; arrays from v7.3 files come back in h5py (reversed) axis order."""
    if is_hdf5_mat(path):
        import h5py

        with h5py.File(path, "r") as handle:
            return np.asarray(handle[key][()])
    from scipy.io import loadmat

    return loadmat(path, variable_names=[key])[key]


def mat_variable_shape(path: Path, key: str) -> tuple[int, ...]:
    """Shape of a variable without loading it (v7.3) or after loading it (v5)."""
    if is_hdf5_mat(path):
        import h5py

        with h5py.File(path, "r") as handle:
            return tuple(handle[key].shape)
    return tuple(load_mat_variable(path, key).shape)


def orient_rows(array: np.ndarray, count: int, what: str, source: str) -> np.ndarray:
    """Return a 2-D ``(count, D)`` view of a MATLAB matrix stored either way round.

    Raises:
        ValueError: neither axis has ``count`` entries.
    """
    array = np.asarray(array)
    if array.ndim == 1 and array.size == count:
        return array.reshape(count, 1)
    if array.ndim != 2:
        raise ValueError(f"{source}: expected {what} to be a 2-D matrix, got shape {array.shape}")
    if array.shape[0] == count:
        return array
    if array.shape[1] == count:
        return array.T
    raise ValueError(f"{source}: {what} has shape {array.shape}, but the images count {count} items")


def mat_strings(array: np.ndarray) -> list[str]:
    """Flatten a MATLAB char matrix / cell array / numpy string array into a list of Python strings.

    Padded char matrices lose their trailing blanks; a cell holding several strings is joined with spaces.
    """
    array = np.asarray(array, dtype=object) if np.asarray(array).dtype == object else np.asarray(array)
    if array.dtype.kind in "US":
        if array.ndim == 2 and array.shape[0] == 1 and array.shape[1] > 1:
            array = array[0]
        return [_to_str(v) for v in array.reshape(-1)]
    if array.ndim == 2 and array.shape[0] == 1:
        array = array[0]
    return [_to_str(v) for v in array.reshape(-1)]


def _to_str(value: object) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace").rstrip()
    if isinstance(value, str):
        return value.rstrip()
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "US":
            return " ".join(str(v).rstrip() for v in value.reshape(-1))
        if value.dtype == object:
            return " ".join(_to_str(v) for v in value.reshape(-1))
        if value.dtype.kind in "iu":  # h5py char arrays are uint16 code points
            return "".join(chr(int(c)) for c in value.reshape(-1)).rstrip()
    return str(value).rstrip()
