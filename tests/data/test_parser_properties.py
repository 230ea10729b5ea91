"""Property-based robustness tests (hypothesis) of hashbench's data-file readers.

Contracts under test (from the docstrings):

* :mod:`hashbench.data.formats`: "Every reader raises an error that names the offending file (and line, for text
  formats) and says what was expected." -- ``parse_list_file`` raises ``ValueError`` (``file:line`` for a malformed
  line, the file for an empty one); ``parse_idx`` raises ``ValueError`` (bad magic number, size not matching the
  header) naming its ``source``; ``read_idx_bytes`` raises ``OSError`` ("cannot read IDX file <path>");
  ``read_cifar_batch`` raises ``OSError`` (unreadable pickle) or ``ValueError`` (unexpected content) naming the file.
* :mod:`hashbench.data.splits`: a malformed split file raises :class:`SplitChecksumError` (a ``ValueError``) naming
  it; ``check_split_file`` / ``resolve_split`` raise :class:`SplitChecksumError` when a checksum is missing or wrong
  or the split belongs to other data.

Each reader gets (a) arbitrary input -- bytes, text built from the characters that matter to the format, JSON
documents with wrong types -- and must either return a well-formed result or raise the documented class (any
other exception fails the test), and (b) well-formed generated input, which must round-trip exactly.

Bugs found this way are kept as minimal regression tests at the end of this file (section ``REGRESSIONS``); the
properties above generate their inputs too.

Hypothesis runs under the settings profile ``hashbench-parsers`` registered below (derandomised, bounded example
counts, no example database on disk). ``HASHBENCH_HYPOTHESIS_EXAMPLES`` scales the example counts.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import pickle
import re
import zlib
from dataclasses import replace
from pathlib import Path

import hypothesis  # noqa: F401  (a declared dev dependency: without it these tests must fail, never skip)
import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from hashbench.data.formats import parse_idx, parse_list_file, read_cifar_batch, read_idx_bytes
from hashbench.data.protocols import get_protocol
from hashbench.data.splits import (
    CHECKSUMS_FILE,
    SplitChecksumError,
    check_split_file,
    draw_per_class_split,
    draw_random_split,
    labels_digest,
    resolve_split,
    sha256_bytes,
    split_from_bytes,
    split_to_bytes,
    write_split,
)

_SCALE = float(os.environ.get("HASHBENCH_HYPOTHESIS_EXAMPLES", "1"))
settings.register_profile(
    "hashbench-parsers",
    max_examples=max(1, int(40 * _SCALE)),
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PROFILE = settings.get_profile("hashbench-parsers")
#: For the cheapest properties (pure functions on small inputs): twice the examples.
MORE = settings(PROFILE, max_examples=max(1, int(80 * _SCALE)))


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One directory per module (hypothesis runs many examples per test; each overwrites its own files)."""
    return tmp_path_factory.mktemp("parser-properties")


def _re(path: Path) -> str:
    return re.escape(str(path))


def _fresh_dir(base: Path, name: str) -> Path:
    directory = base / name
    if directory.exists():
        for child in directory.iterdir():
            child.unlink()
    directory.mkdir(exist_ok=True)
    return directory


# ============================================================================================== list files ====
# Whitespace that str.split() splits on but that is no line break for Python's universal-newline file reading.
_INLINE_SPACES = [" ", "\t", "  ", "\x0b", "\x0c", "\xa0", "\u2003", "\x1c", "\x85", "\u2028"]
_NEWLINES = ["\n", "\r\n", "\r"]
_TOKENS = st.one_of(
    st.sampled_from(["0", "1", "2", "-1", "+1", "00", "x", "0.0", "1e0", "a.png", "./img/b.jpg", "\u0661", "\ufeff"]),
    st.text(max_size=6),
)


@st.composite
def list_file_texts(draw) -> str:
    """List-file-shaped text: a well-formed file with a few tokens, separators or line ends swapped for odd ones
    (other numerals, Unicode spaces, a BOM, lone CRs), token soup, or any text at all."""
    mode = draw(st.integers(0, 9))
    if mode == 0:
        return draw(st.text(max_size=80))
    if mode <= 5:
        _, _, text = draw(list_files())
        pieces = re.split(r"( +|\t|\r\n|\n|\r)", text)
        for _ in range(draw(st.integers(0, 3))):
            where = draw(st.integers(0, len(pieces) - 1))
            odd = st.sampled_from(_INLINE_SPACES) if pieces[where].isspace() else _TOKENS
            pieces[where] = draw(st.one_of(odd, st.sampled_from(_NEWLINES)))
        return "".join(pieces)
    lines = []
    for _ in range(draw(st.integers(0, 6))):
        tokens = draw(st.lists(_TOKENS, max_size=6))
        seps = draw(st.lists(st.sampled_from(_INLINE_SPACES), min_size=len(tokens), max_size=len(tokens)))
        lines.append("".join(t + s for t, s in zip(tokens, seps, strict=True)))
    ends = draw(st.lists(st.sampled_from(_NEWLINES), min_size=len(lines), max_size=len(lines)))
    text = "".join(line + end for line, end in zip(lines, ends, strict=True))
    return text if draw(st.booleans()) else text.rstrip("\r\n")


def _physical_lines(data: bytes) -> list[str]:
    """Lines as Python's text-mode file iteration yields them (universal newlines: \\n, \\r\\n, \\r); bytes that
    are not UTF-8 come out as lone surrogates U+DC80..U+DCFF (``surrogateescape``)."""
    return list(io.TextIOWrapper(io.BytesIO(data), encoding="utf-8", errors="surrogateescape"))


def _undecodable(line: str) -> bool:
    return any("\udc80" <= c <= "\udcff" for c in line)


def _first_bad_line(lines: list[str]) -> int | None:
    """1-based number of the first line the documented format rejects (None: the file is well formed).

    The format: UTF-8 text, ``path l1 ... lC`` with whitespace-separated fields, labels 0 or 1 (read as integers),
    the same C on every line (taken from the first non-blank one); blank lines are skipped.
    """
    width = None
    for lineno, line in enumerate(lines, start=1):
        if _undecodable(line):
            return lineno
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 2:
            return lineno
        width = len(fields) - 1 if width is None else width
        if len(fields) - 1 != width:
            return lineno
        try:
            if any(int(v) not in (0, 1) for v in fields[1:]):
                return lineno
        except ValueError:
            return lineno
    return None


def _check_list_file(path: Path, data: bytes) -> None:
    """Parse ``path`` (holding ``data``): the result or the error must be what the format documents."""
    lines = _physical_lines(data)
    bad = _first_bad_line(lines)
    try:
        paths, labels = parse_list_file(path)
    except ValueError as err:
        event("list file: ValueError")
        message = str(err)
        assert message.startswith(f"{path}:"), message
        if bad is not None:
            assert message.startswith(f"{path}:{bad}: "), (bad, message)
            assert ("not UTF-8" in message) == _undecodable(lines[bad - 1]), message
        else:  # no malformed line: the only other documented failure is an empty file
            assert message == f"{path}: the list file is empty", message
            assert not any(line.split() for line in lines)
        return
    event("list file: parsed")
    assert bad is None, f"line {bad} is malformed but was accepted"
    rows = [line.split() for line in lines if line.split()]
    assert paths == [fields[0] for fields in rows]
    assert labels.dtype == np.uint8 and labels.shape == (len(rows), len(rows[0]) - 1)
    assert labels.tolist() == [[int(v) for v in fields[1:]] for fields in rows]


@MORE
@given(text=list_file_texts())
def test_list_file_on_arbitrary_text_fails_only_with_value_error_at_the_right_line(workdir: Path, text: str) -> None:
    path = workdir / "arbitrary.txt"
    data = text.encode("utf-8")
    path.write_bytes(data)
    _check_list_file(path, data)


@MORE
@given(data=st.one_of(st.binary(max_size=60), list_file_texts().map(lambda t: t.encode("utf-8", "surrogatepass"))))
def test_list_file_on_arbitrary_bytes_raises_only_value_error(workdir: Path, data: bytes) -> None:
    path = workdir / "arbitrary.bin"
    path.write_bytes(data)
    _check_list_file(path, data)


# Paths: non-empty text without whitespace (the format's separator): ASCII punctuation, NUL, DEL, Latin, CJK,
# an Arabic-Indic digit, a BOM and an emoji.
_PATH_CHARS = "abcXYZ019._-/\\:~!#$%&'()*+,;=?@[]^`{|}\"<>" + "\x00\x7f\xe9\u00df\u4e2d\u0661\ufeff\U0001f600"
assert not any(c.isspace() for c in _PATH_CHARS)
_PATHS = st.text(_PATH_CHARS, min_size=1, max_size=12)


@st.composite
def list_files(draw) -> tuple[list[str], list[list[int]], str]:
    """A well-formed list file: generated paths and 0/1 labels, written with varied (legal) layout."""
    n, width = draw(st.integers(1, 6)), draw(st.integers(1, 5))
    paths = draw(st.lists(_PATHS, min_size=n, max_size=n))
    labels = draw(st.lists(st.lists(st.integers(0, 1), min_size=width, max_size=width), min_size=n, max_size=n))
    out = []
    for path, row in zip(paths, labels, strict=True):
        for _ in range(draw(st.integers(0, 1))):
            out.append(draw(st.sampled_from(["", " ", "\t \t"])) + draw(st.sampled_from(_NEWLINES)))  # blank lines
        lead = draw(st.sampled_from(["", " ", "\t"]))
        seps = draw(st.lists(st.sampled_from([" ", "\t", "  ", " \t "]), min_size=width, max_size=width))
        trail = draw(st.sampled_from(["", " ", "\t"]))
        body = lead + path + "".join(s + str(v) for s, v in zip(seps, row, strict=True)) + trail
        out.append(body + draw(st.sampled_from(_NEWLINES)))
    text = "".join(out)
    if draw(st.booleans()):
        text = text.rstrip("\r\n")  # no newline at the end of the file
    return paths, labels, text


@PROFILE
@given(spec=list_files())
def test_list_file_round_trip(workdir: Path, spec) -> None:
    """Write generated paths and labels as a list file, parse it, get the same back (num_classes given or not)."""
    paths, labels, text = spec
    path = workdir / "round-trip.txt"
    path.write_text(text, encoding="utf-8", newline="")
    width = len(labels[0])
    for num_classes in (None, width):
        got_paths, got_labels = parse_list_file(path, num_classes=num_classes)
        assert got_paths == paths
        assert got_labels.dtype == np.uint8 and got_labels.tolist() == labels
    first_row = next(i for i, line in enumerate(_physical_lines(text.encode()), start=1) if line.split())
    with pytest.raises(ValueError, match=rf"^{_re(path)}:{first_row}: expected {width + 1} labels"):
        parse_list_file(path, num_classes=width + 1)


@PROFILE
@given(spec=list_files(), data=st.data())
def test_list_file_error_names_the_broken_line(workdir: Path, spec, data) -> None:
    """Break one line of a well-formed file: the ValueError names exactly that physical line."""
    _, labels, text = spec
    lines = _physical_lines(text.encode())
    rows = [i for i, line in enumerate(lines) if line.split()]
    victim = data.draw(st.sampled_from(rows), label="broken line")
    fields = lines[victim].split()
    ending = lines[victim][len(lines[victim].rstrip("\r\n")) :]
    kind = data.draw(st.sampled_from(["no labels", "label 2", "label x", "one label less", "one label more"]))
    if kind == "one label less" and len(fields) == 2:
        kind = "no labels"
    broken = {
        "no labels": [fields[0]],
        "label 2": [*fields[:-1], "2"],
        "label x": [*fields[:-1], "x"],
        "one label less": fields[:-1],
        "one label more": [*fields, "0"],
    }[kind]
    lines[victim] = " ".join(broken) + ending
    path = workdir / "broken.txt"
    path.write_text("".join(lines), encoding="utf-8", newline="")
    # A wrong label count on the first row just sets the width: the next row is then the one that disagrees.
    first = rows[0]
    if kind in ("one label less", "one label more") and victim == first:
        if len(rows) == 1:
            parse_list_file(path)  # a single row defines the width: nothing is wrong
            return
        victim = rows[1]
    with pytest.raises(ValueError) as info:
        parse_list_file(path)
    assert str(info.value).startswith(f"{path}:{victim + 1}: "), (kind, str(info.value))


# ===================================================================================================== IDX ====
_IDX_CODES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


@st.composite
def idx_like(draw) -> bytes:
    """Bytes that look like IDX: right or wrong magic, small or random dimensions, payloads of any length."""
    zero = draw(st.sampled_from([b"\x00\x00"] * 4 + [b"\x00\x01", b"\x01\x00"]))
    code = draw(st.sampled_from(sorted(_IDX_CODES)) if draw(st.integers(0, 3)) else st.integers(0, 255))
    ndim = draw(st.integers(0, 4))
    dims = draw(st.lists(st.one_of(st.integers(0, 5), st.integers(0, 2**32 - 1)), min_size=ndim, max_size=ndim))
    header = zero + bytes([code, ndim]) + b"".join(d.to_bytes(4, "big") for d in dims)
    itemsize = np.dtype(_IDX_CODES.get(code, np.uint8)).itemsize
    size = int(np.prod(dims, dtype=object)) * itemsize if ndim else itemsize  # exact (Python ints)
    if size <= 64 and draw(st.booleans()):  # the size the header announces, give or take a byte
        return header + draw(st.binary(min_size=size, max_size=size)) + draw(st.sampled_from([b"", b"\x00"]))
    return header + draw(st.binary(max_size=40))


@MORE
@given(data=st.one_of(st.binary(max_size=40), idx_like()))
def test_parse_idx_on_arbitrary_bytes(data: bytes) -> None:
    """Arbitrary bytes: an array exactly as the header describes, or a ValueError naming the source."""
    try:
        array = parse_idx(data, "SOURCE.idx")
    except ValueError as err:
        event("idx: ValueError")
        assert "SOURCE.idx" in str(err), str(err)
        return
    event("idx: parsed")
    assert data[:2] == b"\x00\x00" and data[2] in _IDX_CODES
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    assert array.shape == shape and array.dtype == np.dtype(_IDX_CODES[data[2]])
    assert array.tobytes() == data[4 + 4 * ndim :]


@st.composite
def idx_files(draw) -> tuple[bytes, int, tuple[int, ...], bytes]:
    code = draw(st.sampled_from(sorted(_IDX_CODES)))
    shape = tuple(draw(st.lists(st.integers(0, 4), max_size=3)))
    size = int(np.prod(shape, dtype=np.int64)) * np.dtype(_IDX_CODES[code]).itemsize
    payload = draw(st.binary(min_size=size, max_size=size))
    header = bytes([0, 0, code, len(shape)]) + b"".join(d.to_bytes(4, "big") for d in shape)
    return header + payload, code, shape, payload


@PROFILE
@given(spec=idx_files(), gzipped=st.booleans(), delta=st.sampled_from([-3, -2, -1, 1, 2, 3]))
def test_idx_round_trip_and_size_mismatch(workdir: Path, spec, gzipped: bool, delta: int) -> None:
    """Well-formed IDX bytes (plain or .gz on disk) parse to the described array; a payload that is ``delta``
    bytes too long or too short is refused, naming the file."""
    data, code, shape, payload = spec
    path = workdir / ("round-trip.idx.gz" if gzipped else "round-trip.idx")
    path.write_bytes(gzip.compress(data, mtime=0) if gzipped else data)
    raw = read_idx_bytes(path)
    assert raw == data
    array = parse_idx(raw, str(path))
    assert array.shape == shape and array.dtype == np.dtype(_IDX_CODES[code]) and array.tobytes() == payload
    if delta < 0 and len(data) + delta < 4 + 4 * len(shape):
        return
    wrong = data + b"\x00" * delta if delta > 0 else data[:delta]
    with pytest.raises(ValueError, match=_re(path)):
        parse_idx(wrong, str(path))


@st.composite
def gzip_like(draw) -> bytes:
    """Raw bytes, gzip streams with a byte changed or cut short, and gzip headers followed by junk."""
    choice = draw(st.integers(0, 3))
    if choice == 0:
        return draw(st.binary(max_size=40))
    good = gzip.compress(draw(st.binary(max_size=60)), mtime=0)
    if choice == 1:
        return good[: draw(st.integers(0, len(good) - 1))]
    if choice == 2:
        where = draw(st.integers(0, len(good) - 1))
        return good[:where] + bytes([good[where] ^ draw(st.integers(1, 255))]) + good[where + 1 :]
    return b"\x1f\x8b\x08\x00" + draw(st.binary(max_size=30))


@MORE
@given(data=gzip_like())
def test_read_idx_bytes_on_corrupt_gzip_raises_only_os_error(workdir: Path, data: bytes) -> None:
    path = workdir / "corrupt-idx.gz"
    path.write_bytes(data)
    try:
        out = read_idx_bytes(path)
    except OSError as err:
        event("gzip: OSError")
        assert str(err).startswith(f"cannot read IDX file {path}"), str(err)
        return
    event("gzip: read")
    assert isinstance(out, bytes)
    # What came out really is the decompressed content (a corrupted byte can hit the header's unused fields).
    assert out == gzip.decompress(data)


# ========================================================================================== CIFAR pickles ====
# Only pickles that this test writes from plain data are read (pickle bytes from a fuzzer could run code).
_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(0, 255), st.text(max_size=4), st.binary(max_size=4))
_NESTED = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=3), max_leaves=6)


@st.composite
def cifar_entries(draw) -> object:
    """Pickled objects a CIFAR batch file could hold: dicts with str/bytes keys, wrong shapes, fields of other types
    or with out-of-range values, other objects."""
    kind = draw(st.integers(0, 7))  # 1, 6, 7: plain
    if kind == 0:
        return draw(_NESTED)
    n = draw(st.integers(0, 3))
    width = draw(st.sampled_from([3072, 3072, 3072, 3071, 16]))
    data = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).integers(0, 256, n * width, dtype=np.uint8)
    data = data.reshape(n, width) if draw(st.integers(0, 3)) else data
    count = n if draw(st.integers(0, 3)) else draw(st.sampled_from([max(0, n - 1), n + 1]))
    labels = draw(st.lists(st.integers(0, 9), min_size=count, max_size=count))
    key = draw(st.sampled_from([str, lambda s: s.encode()]))
    entry: dict = {key("data"): data if draw(st.booleans()) else data.tolist(), key("labels"): labels}
    if kind == 2:
        entry.pop(draw(st.sampled_from(sorted(entry))))
    if kind == 3:
        entry[key("batch_label")] = draw(_SCALARS)
    if kind == 4:  # a field of another type, ragged, or with values the field's dtype cannot hold
        junk = st.one_of(
            _NESTED,
            st.integers(),
            st.floats(allow_nan=True),
            st.lists(st.integers(-(2**70), 2**70), max_size=3),
            st.just((data.astype(np.int64) + 256).tolist()),
            st.just(data.astype(np.int64) - 1),
            st.just(data.astype(np.float32)),
            st.just(np.asarray(labels, dtype=np.uint64) + np.uint64(2**63)),
        )
        entry[draw(st.sampled_from(sorted(entry)))] = draw(junk)
    if kind == 5:  # keys of mixed types, some not UTF-8
        entry.update(draw(st.dictionaries(st.one_of(st.integers(), st.binary(max_size=3)), _SCALARS, max_size=2)))
    return entry


@PROFILE
@given(entry=cifar_entries(), protocol=st.integers(2, 5))
def test_read_cifar_batch_on_unexpected_content(workdir: Path, entry: object, protocol: int) -> None:
    """A well-formed batch reads back exactly; anything else raises ValueError naming the file."""
    path = workdir / "data_batch_1"
    path.write_bytes(pickle.dumps(entry, protocol=protocol))
    try:
        images, labels = read_cifar_batch(path)
    except ValueError as err:
        event("cifar: ValueError")
        assert str(path) in str(err), str(err)
        return
    event("cifar: read")
    assert isinstance(entry, dict)
    entry = {k.decode("utf-8", "replace") if isinstance(k, bytes) else k: v for k, v in entry.items()}
    data = np.asarray(entry["data"], dtype=np.uint8)
    assert images.dtype == np.uint8 and images.shape == (data.shape[0], 3, 32, 32)
    assert images.reshape(data.shape[0], 3072).tolist() == data.tolist()
    assert labels.dtype == np.int64 and labels.tolist() == list(entry["labels"])


_GOOD_BATCH = pickle.dumps({b"data": np.zeros((2, 3072), np.uint8), b"labels": [1, 2]}, protocol=2)


@PROFILE
@given(length=st.integers(0, len(_GOOD_BATCH) - 1))
def test_read_cifar_batch_on_truncated_pickles(workdir: Path, length: int) -> None:
    """A real batch cut short anywhere: an error naming the file (OSError: the pickle is unreadable)."""
    cut = _GOOD_BATCH[:length]
    path = workdir / "data_batch_2"
    path.write_bytes(cut)
    with pytest.raises((OSError, ValueError), match=_re(path)):
        read_cifar_batch(path)


# ============================================================================================= split files ====
_JSON_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 60),
    # Infinities, but no huge finite numbers: a pool_size of 1e9 would make the parser allocate np.arange(1e9).
    st.floats(-100, 100) | st.sampled_from([float("nan"), float("inf"), -float("inf")]),
    st.text(max_size=5),
    st.sampled_from(["rest", "all_but_query", "train", "12", "listfile"]),
)
_JSON = st.recursive(
    _JSON_SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=3), inner, max_size=3)),
    max_leaves=8,
)
# Mostly valid indices, some negative, beyond the pool or beyond int64.
_INDEX = st.one_of(st.integers(-3, 40), st.integers(-3, 40), st.integers(), st.integers(2**63 - 2, 2**64 + 1))
_INDEX_LISTS = st.one_of(st.lists(_INDEX, max_size=8), _JSON)


@st.composite
def split_records(draw) -> dict:
    """Split-file records with each field right, wrong-typed, out of range or missing."""
    record = {
        "algorithm": draw(st.one_of(st.sampled_from(["per-class-pcg64-v1", "random-pcg64-v1"]), _JSON)),
        "database_rule": draw(st.one_of(st.sampled_from(["rest", "all_but_query", "train"]), _JSON)),
        "labels_sha256": draw(st.one_of(st.just("0" * 64), _JSON)),
        "pool_size": draw(st.one_of(st.integers(-2, 40), _JSON_SCALARS)),
        "protocol": draw(_JSON),
        "query": draw(_INDEX_LISTS),
        "seed": draw(_JSON),
        "train": draw(_INDEX_LISTS),
    }
    for key in draw(st.lists(st.sampled_from(sorted(record)), max_size=2, unique=True)):
        del record[key]
    return record


def _check_split_result(split, record) -> None:
    assert isinstance(record, dict)
    for name in ("query", "train", "database"):
        array = getattr(split, name)
        assert isinstance(array, np.ndarray) and array.dtype == np.int64, name
    # Only a non-negative integer pool size and lists of integer indices inside the pool are accepted; the database
    # built by the rules "rest" / "all_but_query" is always a sorted subset of the pool.
    pool_size = record["pool_size"]
    assert type(pool_size) is int and pool_size >= 0, pool_size
    for name in ("query", "train"):
        array = getattr(split, name)
        assert array.ndim == 1 and array.tolist() == record[name], name
        assert all(type(v) is int for v in record[name]) and all(0 <= v < pool_size for v in record[name]), name
    if record["database_rule"] == "train":
        np.testing.assert_array_equal(split.database, split.train)
    else:
        database = split.database
        assert database.ndim == 1 and np.all(np.diff(database) > 0), "the database is sorted and unique"
        assert database.size == 0 or (database.min() >= 0 and database.max() < int(record["pool_size"]))


def _split_bytes_strategy() -> st.SearchStrategy[bytes]:
    as_json = split_records().map(lambda r: json.dumps(r, sort_keys=True).encode())
    other_json = _JSON.map(lambda v: json.dumps(v).encode())
    nested = st.sampled_from([10, 1_000, 100_000]).flatmap(lambda n: st.sampled_from([b"[" * n, b"[" * n + b"]" * n]))
    return st.one_of(as_json, other_json, st.binary(max_size=60), nested)


@MORE
@given(data=_split_bytes_strategy())
def test_split_from_bytes_raises_only_split_checksum_error(data: bytes) -> None:
    """Arbitrary bytes / JSON: a Split (database drawn by the rule), or SplitChecksumError naming the source."""
    try:
        split, record = split_from_bytes(data, "SOURCE.json")
    except SplitChecksumError as err:
        event("split bytes: SplitChecksumError")
        assert "SOURCE.json" in str(err), str(err)
        return
    event("split bytes: parsed")
    _check_split_result(split, record)


@st.composite
def drawn_splits(draw):
    """A protocol (per-class or random split, any database rule) with pooled labels it can be drawn from."""
    base = get_protocol("cifar10")
    rule = draw(st.sampled_from(["rest", "all_but_query", "train"]))
    seed = draw(st.integers(0, 2**32 - 1))
    if draw(st.booleans()):
        classes, q, t = draw(st.integers(1, 4)), draw(st.integers(0, 3)), draw(st.integers(0, 3))
        per_class = draw(st.lists(st.integers(q + t, q + t + 4), min_size=classes, max_size=classes))
        labels = np.repeat(np.arange(classes), per_class)
        labels = labels[np.random.default_rng(seed).permutation(labels.size)]
        protocol = replace(
            base, num_classes=classes, query_per_class=q, train_per_class=t, database_rule=rule, split_seed=seed
        )
        split = draw_per_class_split(labels, classes, q, t, rule, seed)
    else:
        size = draw(st.integers(1, 40))
        q, t = draw(st.integers(1, size)), 0
        t = draw(st.integers(0, size - q))
        labels = np.asarray(
            draw(st.lists(st.lists(st.integers(0, 1), min_size=3, max_size=3), min_size=size, max_size=size))
        )
        protocol = replace(
            base, multi_label=True, query_per_class=0, train_per_class=0, num_query=q, num_train=t,
            database_rule=rule, split_seed=seed,
        )  # fmt: skip
        split = draw_random_split(size, q, t, rule, seed)
    return replace(protocol, name="property-test-split"), labels, split


def _same_split(a, b) -> None:
    for name in ("query", "train", "database"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
        assert getattr(b, name).dtype == np.int64


@PROFILE
@given(spec=drawn_splits(), data=st.data())
def test_split_file_round_trip_and_tamper_detection(workdir: Path, spec, data) -> None:
    """split_to_bytes -> split_from_bytes is the identity and canonical; write_split -> check_split_file /
    resolve_split read the same split back; changing any byte of the file is refused."""
    protocol, labels, split = spec
    blob = split_to_bytes(protocol, split, labels)
    back, record = split_from_bytes(blob, "mem")
    _same_split(split, back)
    assert split_to_bytes(protocol, back, labels) == blob
    assert record["pool_size"] == len(labels) and record["labels_sha256"] == labels_digest(labels)
    # Disjoint, sorted query and train; the database follows the rule.
    assert not np.intersect1d(split.query, split.train).size
    everything = np.arange(len(labels))
    want_db = {
        "rest": np.setdiff1d(everything, np.union1d(split.query, split.train)),
        "all_but_query": np.setdiff1d(everything, split.query),
        "train": split.train,
    }[protocol.database_rule]
    np.testing.assert_array_equal(split.database, want_db)

    directory = _fresh_dir(workdir, "splits")
    path = write_split(protocol, split, labels, directory)
    checked, _, digest = check_split_file(path, directory)
    _same_split(split, checked)
    assert digest == sha256_bytes(path.read_bytes()) == json.loads((directory / CHECKSUMS_FILE).read_text())[path.name]
    _same_split(split, resolve_split(protocol, labels, directory))

    where = data.draw(st.integers(0, len(blob) - 1), label="tampered byte")
    flip = data.draw(st.integers(1, 255), label="xor")
    path.write_bytes(blob[:where] + bytes([blob[where] ^ flip]) + blob[where + 1 :])
    with pytest.raises(SplitChecksumError, match="refusing to run"):
        check_split_file(path, directory)


# checksums.json that is not a JSON object: other JSON values, cut short, not UTF-8, absurdly nested.
_CORRUPT_CHECKSUMS = st.one_of(
    _JSON.filter(lambda v: not isinstance(v, dict)).map(lambda v: json.dumps(v).encode()),
    st.dictionaries(st.text(max_size=8), _JSON, min_size=1, max_size=3).map(lambda d: json.dumps(d).encode()[:-1]),
    st.binary(max_size=10).map(lambda b: b"{\xff" + b),
    st.just(b"[" * 100_000),
)


@PROFILE
@given(record=split_records(), checksums=st.dictionaries(st.text(max_size=8), _JSON, max_size=3), data=st.data())
def test_resolve_split_on_checksummed_malformed_files(workdir: Path, record: dict, checksums: dict, data) -> None:
    """A split file whose checksum *is* recorded but whose content is malformed, a checksums.json that records
    junk, or a corrupt checksums.json: resolve_split returns a split or refuses with SplitChecksumError, nothing
    else."""
    protocol = replace(get_protocol("cifar10"), name="property-test-resolve", query_per_class=1, train_per_class=1)
    labels = np.arange(10) % protocol.num_classes
    if data.draw(st.booleans(), label="right pool and labels digest"):
        record.update(pool_size=len(labels), labels_sha256=labels_digest(labels))
    directory = _fresh_dir(workdir, "resolve")
    blob = json.dumps(record, sort_keys=True).encode()
    path = directory / f"{protocol.name}.json"
    path.write_bytes(blob)
    recorded = data.draw(st.sampled_from(["right", "junk", "absent", "corrupt file"]), label="recorded checksum")
    if recorded == "corrupt file":
        (directory / CHECKSUMS_FILE).write_bytes(data.draw(_CORRUPT_CHECKSUMS, label="checksums.json"))
        with pytest.raises(SplitChecksumError, match="refusing to run") as info:
            resolve_split(protocol, labels, directory)
        assert str(directory / CHECKSUMS_FILE) in str(info.value)
        event("resolve (corrupt checksums.json): SplitChecksumError")
        return
    if recorded == "right":
        checksums[path.name] = sha256_bytes(blob)
    elif recorded == "junk":
        checksums[path.name] = data.draw(_JSON, label="junk checksum")
    else:
        checksums.pop(path.name, None)
    (directory / CHECKSUMS_FILE).write_text(json.dumps(checksums))
    try:
        split = resolve_split(protocol, labels, directory)
    except SplitChecksumError:
        event(f"resolve ({recorded} checksum): SplitChecksumError")
        return
    event(f"resolve ({recorded} checksum): split")
    assert recorded == "right"
    _check_split_result(split, record)


# =========================================================================================== REGRESSIONS ====
# Minimal examples of real bugs (found by the properties above), one per distinct cause, with the documented error.
@pytest.mark.parametrize(
    ("data", "line"),
    [
        pytest.param(b"\xff 1\n", 1, id="first-line"),
        pytest.param(b"a.png 1\r\nb.png 0\rc\xe9.png 1\n", 3, id="after-crlf-and-cr"),
        pytest.param(b"a.png 1\n\xed\xa0\x80.png 1\n", 2, id="encoded-surrogate"),
    ],
)
def test_list_file_undecodable_bytes_error_names_the_file(tmp_path: Path, data: bytes, line: int) -> None:
    """Bytes that are not UTF-8 used to escape as a UnicodeDecodeError without file or line; formats.py promises
    ``file:line``."""
    path = tmp_path / "train.txt"
    path.write_bytes(data)
    with pytest.raises(ValueError, match=rf"^{_re(path)}:{line}: not UTF-8 text") as info:
        parse_list_file(path)
    assert type(info.value) is ValueError  # not a bare UnicodeDecodeError


def test_list_file_reports_the_first_bad_line_before_later_undecodable_bytes(tmp_path: Path) -> None:
    path = tmp_path / "train.txt"
    path.write_bytes(b"a.png 1\nb.png 2\nc\xff.png 1\n")
    with pytest.raises(ValueError, match=rf"^{_re(path)}:2: labels must be 0 or 1"):
        parse_list_file(path)


def test_gzip_with_a_corrupt_deflate_stream_raises_os_error(tmp_path: Path) -> None:
    """read_idx_bytes caught OSError and EOFError only; a corrupt deflate stream raised zlib.error (no file name)
    instead of ``OSError: cannot read IDX file <path>``."""
    path = tmp_path / "train-labels-idx1-ubyte.gz"
    path.write_bytes(b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03\xff")  # gzip header, then an invalid block type
    with pytest.raises(OSError, match=rf"^cannot read IDX file {_re(path)}: ") as info:
        read_idx_bytes(path)
    assert isinstance(info.value.__cause__, zlib.error)


@pytest.mark.parametrize(
    ("dims", "message"),
    [
        # np.prod in int64 wrapped around: 2^31 x 2^31 x 4 gave 0 expected bytes, so a header without payload
        # passed the size check and numpy's reshape error (no source) escaped.
        pytest.param([2**31, 2**31, 4], "header says shape", id="int64-overflow"),
        # An empty array (size 0 matches the empty payload) that numpy cannot represent.
        pytest.param(
            [0, 2**32 - 1, 2**32 - 1, 2**32 - 1], "header shape .* is not a representable array", id="empty-but-too-big"
        ),
        pytest.param([0] * 70, "header shape .* is not a representable array", id="too-many-dimensions"),
    ],
)
def test_idx_header_whose_dimensions_overflow_names_the_source(dims: list[int], message: str) -> None:
    header = bytes([0, 0, 0x08, len(dims)]) + b"".join(d.to_bytes(4, "big") for d in dims)
    with pytest.raises(ValueError, match=rf"^SOURCE\.idx: {message}"):
        parse_idx(header, "SOURCE.idx")


def test_idx_with_a_truncated_header_names_the_source() -> None:
    with pytest.raises(ValueError, match=r"^SOURCE\.idx: truncated IDX header"):
        parse_idx(bytes([0, 0, 0x08, 3]) + (5).to_bytes(4, "big"), "SOURCE.idx")


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        pytest.param({1: 2, "x": 3}, r"expected keys 'data' and 'labels', found \['x', 1\]", id="mixed-key-types"),
        pytest.param({b"\xff": 1, "data": 2}, "expected keys 'data' and 'labels'", id="key-not-utf8"),
        pytest.param({"data": [[300] * 3072], "labels": [1]}, r"data to hold integers in \[0, 255\]", id="pixel-300"),
        pytest.param(
            {"data": np.full((1, 3072), 300, np.int64), "labels": [1]},
            r"data to hold integers in \[0, 255\]",
            id="int64-array-pixel-300",
        ),
        pytest.param({"data": np.full((1, 3072), 0.5, np.float32), "labels": [1]}, "dtype float32", id="float-pixels"),
        pytest.param({"data": None, "labels": None}, "dtype object", id="data-None"),
        pytest.param({"data": "abc", "labels": [1]}, "dtype <U3", id="data-str"),
        pytest.param({"data": [[1, 2], [3]], "labels": [1, 2]}, "data is not an array of integers", id="data-ragged"),
        pytest.param(
            {"data": np.zeros((1, 3072), np.uint8), "labels": [2**64]}, "labels to hold integers", id="label-2**64"
        ),
        pytest.param(
            {"data": np.zeros((1, 3072), np.uint8), "labels": [2**63]}, "labels to hold integers", id="label-2**63"
        ),
        pytest.param({"data": np.zeros((1, 3072), np.uint8), "labels": 5}, r"and \(\)", id="label-scalar"),
        pytest.param({"data": np.zeros((1, 3072), np.uint8), "labels": [[1]]}, r"and \(1, 1\)", id="labels-2-d"),
    ],
)
def test_cifar_batch_with_malformed_content_raises_value_error_naming_the_file(
    tmp_path: Path, entry: dict, message: str
) -> None:
    """read_cifar_batch converted the pickle's content with unguarded np.asarray casts (and sorted keys of any type
    for its message), so these malformed batches escaped as TypeError / OverflowError / IndexError, a ValueError
    without the file name, or were silently wrapped / truncated to uint8."""
    path = tmp_path / "data_batch_1"
    path.write_bytes(pickle.dumps(entry))
    with pytest.raises(ValueError, match=rf"^{_re(path)}: .*{message}"):
        read_cifar_batch(path)


@pytest.mark.parametrize(
    ("blob", "message"),
    [
        pytest.param(
            b'{"database_rule":"rest","pool_size":1e999,"query":[],"train":[]}',
            "'pool_size' must be a non-negative integer, got inf",
            id="pool-size-infinity",
        ),
        pytest.param(
            b'{"database_rule":"rest","pool_size":"12","query":[],"train":[]}',
            "'pool_size' must be a non-negative integer",
            id="pool-size-string",
        ),
        pytest.param(
            b'{"database_rule":"rest","pool_size":3,"query":[18446744073709551616],"train":[]}',
            r"'query' holds 18446744073709551616; indices must be integers in \[0, 3\)",
            id="index-2**64",
        ),
        pytest.param(
            b'{"database_rule":"rest","pool_size":3,"query":[3],"train":[]}', "'query' holds 3", id="index-past-pool"
        ),
        pytest.param(
            b'{"database_rule":"rest","pool_size":3,"query":[],"train":[-1]}', "'train' holds -1", id="index-negative"
        ),
        pytest.param(
            b'{"database_rule":"rest","pool_size":3,"query":[1.0],"train":[]}', "'query' holds 1.0", id="index-float"
        ),
        pytest.param(
            b'{"database_rule":"rest","pool_size":3,"query":[[1]],"train":[]}', r"'query' holds \[1\]", id="index-2-d"
        ),
        pytest.param(
            b'{"database_rule":"rest","pool_size":3,"query":1,"train":[]}', "'query' must be a list", id="index-scalar"
        ),
        pytest.param(b"[" * 100_000, "RecursionError", id="deeply-nested"),
        pytest.param(b"[]", "expected a JSON object", id="not-an-object"),
    ],
)
def test_malformed_split_file_raises_split_checksum_error(blob: bytes, message: str) -> None:
    """split_from_bytes caught ValueError / KeyError / TypeError only: OverflowError and RecursionError escaped; the
    index lists were not validated at all."""
    with pytest.raises(SplitChecksumError, match=rf"^split file SOURCE\.json is malformed \(.*{message}"):
        split_from_bytes(blob, "SOURCE.json")


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"[]", id="list"),
        pytest.param(b"null", id="null"),
        pytest.param(b"{", id="truncated"),
        pytest.param(b"\xff", id="not-utf8"),
        pytest.param(b"[" * 100_000, id="deeply-nested"),
    ],
)
def test_corrupt_checksums_json_is_refused_with_split_checksum_error(tmp_path: Path, content: bytes) -> None:
    """_read_checksums json-loaded checksums.json unguarded: a corrupt one crashed check_split_file / resolve_split /
    write_split with an error that names no file (AttributeError, JSONDecodeError, UnicodeDecodeError), instead of
    the refuse-to-run SplitChecksumError with its instructions."""
    protocol = replace(get_protocol("cifar10"), name="property-test-corrupt", query_per_class=1, train_per_class=1)
    labels = np.arange(20) % protocol.num_classes
    split = draw_per_class_split(labels, 10, 1, 1, "rest", 0)
    path = write_split(protocol, split, labels, tmp_path)
    checksums = tmp_path / CHECKSUMS_FILE
    checksums.write_bytes(content)
    refused = rf"^checksum file {_re(checksums)} is corrupt .*refusing to run"
    with pytest.raises(SplitChecksumError, match=refused):
        resolve_split(protocol, labels, tmp_path)
    with pytest.raises(SplitChecksumError, match=refused):
        check_split_file(path, tmp_path)
    path.unlink()
    with pytest.raises(SplitChecksumError, match=refused):
        write_split(protocol, split, labels, tmp_path)
    assert not path.exists() and checksums.read_bytes() == content  # a refused write writes nothing


def test_checksummed_split_file_without_labels_digest_raises_split_checksum_error(tmp_path: Path) -> None:
    """split_from_bytes does not require ``labels_sha256``; for a split file without it whose checksum is recorded,
    resolve_split's label check raised KeyError instead of SplitChecksumError."""
    protocol = replace(get_protocol("cifar10"), name="property-test-nodigest", query_per_class=1, train_per_class=1)
    labels = np.arange(20) % protocol.num_classes
    path = write_split(protocol, draw_per_class_split(labels, 10, 1, 1, "rest", 0), labels, tmp_path)
    record = json.loads(path.read_text())
    del record["labels_sha256"]
    blob = json.dumps(record).encode()
    path.write_bytes(blob)
    (tmp_path / CHECKSUMS_FILE).write_text(json.dumps({path.name: sha256_bytes(blob)}))
    with pytest.raises(SplitChecksumError, match=rf"^split file {_re(path)} records no labels_sha256.*refusing to run"):
        resolve_split(protocol, labels, tmp_path)
