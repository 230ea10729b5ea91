"""Indexes of hashbench codes (faiss binary indexes, or hashbench's own MIH): build, save with metadata, load
with checks, search.

An exported index is two files: ``OUT`` (the index: ``faiss.write_index_binary`` for the faiss types, an npz
archive of the packed codes for ``mih``) and ``OUT.meta.json`` (what the codes are: method, bits, protocol and
split, hashbench and code version, the checkpoint's sha256, the index parameters, the sha256 of ``OUT``, and
``ids``: the dataset item of each index row). :func:`load_index` refuses a pair that does not belong together
(the sha256 of ``OUT`` differs, or its bits, size or index class differ from the metadata), files that cannot be
read, and an index whose method or bits differ from the ones asked for; every refusal is an
:class:`IndexFileError` (a ``ValueError``) that says what is wrong.

Index types (``index_type``):

* ``flat``: ``faiss.IndexBinaryFlat``, exhaustive popcount scan (exact).
* ``hash``: ``faiss.IndexBinaryHash``, one hash table on the first ``b`` bits, probed with up to ``nflip``
  flipped bits.
* ``multihash``: ``faiss.IndexBinaryMultiHash``, multi-index hashing (Norouzi et al.): ``nhash`` tables on
  disjoint ``b``-bit substrings, each probed with up to ``nflip`` flipped bits, candidates verified with their full
  distance.
* ``hnsw``: ``faiss.IndexBinaryHNSW``, a graph index (``M`` links per node, ``ef_search`` at search time).
* ``mih``: hashbench's own exact multi-index hashing (:class:`hashbench.search.mih.MIHIndex`; not faiss):
  ``nhash`` tables on disjoint substrings, probed at growing radius until the pigeonhole bound certifies the k-th
  distance. Its file holds only the packed codes; the tables are rebuilt on load (one sort per table).

Search results are always ordered by (distance, row). Exact searches -- the ``flat`` and ``mih`` indexes, and
``backend="hashbench"`` (hashbench's own kernel, :func:`hashbench.search.exact.exact_topk`, on the stored codes)
-- return the first k rows of the database ranked by ascending distance, then ascending row. ``exact=True`` makes
``hash`` / ``multihash`` searches exact in distance: a query is searched again with more flipped bits until the
pigeonhole bound certifies its k-th distance (with ``m`` tables probed up to ``s`` flips, every item within
``m (s + 1) - 1`` bits is found; ``m = 1`` for ``hash``); the distances then equal the exact ones, but among rows
at the k-th distance the index may return other rows than the lowest. Once a ``multihash`` pass would probe more
than ``N / 64`` buckets, the queries still open are finished by hashbench's exact kernel (a scan is cheaper then).
Rows not found (fewer than k) are -1 with distance -1.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hashbench.search.exact import bytes_to_words, exact_topk, to_faiss_bytes
from hashbench.search.mih import MIHIndex, default_nhash, substring_layout

__all__ = [
    "BACKENDS",
    "FAISS_TYPES",
    "FORMAT",
    "FORMAT_VERSION",
    "INDEX_TYPES",
    "META_SUFFIX",
    "CodeIndex",
    "IndexFileError",
    "SearchResult",
    "build_index",
    "default_params",
    "load_index",
    "meta_path",
]

FORMAT = "hashbench-index"
FORMAT_VERSION = 1
META_SUFFIX = ".meta.json"
INDEX_TYPES = ("flat", "hash", "multihash", "hnsw", "mih")
FAISS_TYPES = ("flat", "hash", "multihash", "hnsw")
#: ``index``: the index's own search (faiss, or hashbench's MIH for ``mih``); ``faiss``: the same, for a faiss index
#: only; ``hashbench``: hashbench's exact scan (:func:`hashbench.search.exact.exact_topk`) on the stored codes.
BACKENDS = ("index", "faiss", "hashbench")
_INDEX_CLASS = {
    "flat": "IndexBinaryFlat",
    "hash": "IndexBinaryHash",
    "multihash": "IndexBinaryMultiHash",
    "hnsw": "IndexBinaryHNSW",
    "mih": "MIHIndex",
}
_PARAMS = {
    "flat": (),
    "hash": ("b", "nflip"),
    "multihash": ("nhash", "b", "nflip"),
    "hnsw": ("M", "ef_search"),
    "mih": ("nhash",),
}
#: faiss' "no result" distance for binary indexes (INT32_MAX)
_FAISS_MISSING = np.iinfo(np.int32).max


class IndexFileError(ValueError):
    """An index file or its metadata is missing, unreadable, corrupted, or not the index that was asked for."""


@dataclass
class SearchResult:
    """Top-k of each query, ordered by (distance, row); -1 where fewer than k were found.

    Attributes:
        distances: ``int32 [Q, k]`` Hamming distances.
        rows: ``int64 [Q, k]`` rows of the index (0..N-1, the order the database was added in).
        ids: ``int64 [Q, k]`` the dataset item of each row (the metadata's ``ids``; equal to ``rows`` when the
            index was built without ids).
    """

    distances: np.ndarray
    rows: np.ndarray
    ids: np.ndarray


def meta_path(path: str | Path) -> Path:
    """The metadata file that belongs to index file ``path``."""
    path = Path(path)
    return path.with_name(path.name + META_SUFFIX)


def _faiss() -> Any:
    from hashbench.errors import optional_import

    return optional_import("faiss", "faiss", "a faiss index (flat, hash, multihash, hnsw; `mih` needs no faiss)")


def default_params(index_type: str, n_bits: int, num_items: int) -> dict[str, int]:
    """Index parameters used when none are given.

    ``hash``: ``b = round(log2 N)`` bits (clipped to 8..24 and to the code length), ``nflip = 2``.
    ``multihash``: ``m = round(K / log2 N)`` tables (at least 1) of ``b = K // m`` bits (at most 32 per table),
    ``nflip = 1`` -- substrings of about ``log2 N`` bits, the choice of the multi-index hashing paper.
    ``hnsw``: ``M = 16``, ``ef_search = 64`` (raised to k when k is larger).
    ``mih``: ``nhash = round(K / log2 N)`` substrings, of at most 16 bits (:func:`hashbench.search.mih.default_nhash`).
    """
    if index_type not in INDEX_TYPES:
        raise ValueError(f"unknown index type {index_type!r}; expected one of {', '.join(INDEX_TYPES)}")
    log_n = math.log2(max(2, num_items))
    width = 8 * math.ceil(n_bits / 8)
    if index_type == "hash":
        return {"b": int(min(width, max(8, min(24, round(log_n))))), "nflip": 2}
    if index_type == "multihash":
        m = max(1, round(n_bits / log_n), math.ceil(n_bits / 32))
        return {"nhash": int(m), "b": int(min(32, n_bits // m)), "nflip": 1}
    if index_type == "hnsw":
        return {"M": 16, "ef_search": 64}
    if index_type == "mih":
        return {"nhash": default_nhash(n_bits, num_items)}
    return {}


def _check_params(index_type: str, params: dict[str, Any], n_bits: int) -> dict[str, int]:
    unknown = sorted(set(params) - set(_PARAMS[index_type]))
    if unknown:
        raise ValueError(
            f"{index_type} index has no parameter(s) {', '.join(unknown)}; "
            f"it takes {', '.join(_PARAMS[index_type]) or 'none'}"
        )
    out = {k: int(v) for k, v in params.items()}
    width = 8 * math.ceil(n_bits / 8)
    if index_type == "hash" and not 1 <= out["b"] <= min(64, width):
        raise ValueError(f"hash index: b must lie in 1..{min(64, width)} for {n_bits}-bit codes, got {out['b']}")
    if index_type == "multihash" and (out["nhash"] < 1 or out["b"] < 1 or out["nhash"] * out["b"] > width):
        raise ValueError(
            f"multihash index: nhash x b = {out['nhash']} x {out['b']} must be at most the code width {width}"
        )
    if index_type == "multihash" and out["b"] > 64:
        raise ValueError(f"multihash index: b must be at most 64 bits per table, got {out['b']}")
    for key in ("nflip", "ef_search"):
        if key in out and out[key] < 0:
            raise ValueError(f"{key} must be >= 0, got {out[key]}")
    if "M" in out and out["M"] < 2:
        raise ValueError(f"hnsw index: M must be >= 2, got {out['M']}")
    if index_type == "mih":
        substring_layout(n_bits, out["nhash"])  # raises for a count that does not fit
    return out


def build_index(packed: np.ndarray, n_bits: int, index_type: str = "flat", **params: int) -> tuple[Any, dict]:
    """A faiss binary index (or a :class:`MIHIndex`) of ``packed`` faiss bytes; returns ``(index, params used)``."""
    packed = np.ascontiguousarray(packed, dtype=np.uint8)
    width = 8 * math.ceil(n_bits / 8)
    if packed.ndim != 2 or packed.shape[1] != width // 8:
        raise ValueError(f"packed codes must be [n, {width // 8}] uint8 for {n_bits} bits, got {packed.shape}")
    full = {**default_params(index_type, n_bits, len(packed)), **{k: v for k, v in params.items() if v is not None}}
    full = _check_params(index_type, full, n_bits)
    if index_type == "mih":
        return MIHIndex(packed, n_bits, full["nhash"]), full
    faiss = _faiss()
    try:
        if index_type == "flat":
            index = faiss.IndexBinaryFlat(width)
        elif index_type == "hash":
            index = faiss.IndexBinaryHash(width, full["b"])
            index.nflip = full["nflip"]
        elif index_type == "multihash":
            index = faiss.IndexBinaryMultiHash(width, full["nhash"], full["b"])
            index.nflip = full["nflip"]
        else:
            index = faiss.IndexBinaryHNSW(width, full["M"])
            index.hnsw.efSearch = full["ef_search"]
        if len(packed):
            index.add(packed)
    except RuntimeError as err:  # faiss' own checks
        lines = str(err).strip().splitlines()
        raise ValueError(f"faiss refused the {index_type} index {full}: {lines[-1] if lines else err}") from None
    return index, full


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _encode_ids(ids: np.ndarray) -> Any:
    """Store ``0..N-1`` (the usual case) as a range, anything else as a list."""
    if len(ids) and np.array_equal(ids, np.arange(int(ids[0]), int(ids[0]) + len(ids))):
        return {"range": [int(ids[0]), int(ids[0]) + len(ids)]}
    return [int(i) for i in ids]


def _decode_ids(value: Any, n: int, what: str) -> np.ndarray:
    if isinstance(value, dict) and isinstance(value.get("range"), list) and len(value["range"]) == 2:
        start, stop = (int(v) for v in value["range"])
        ids = np.arange(start, stop, dtype=np.int64)
    elif isinstance(value, list):
        ids = np.asarray(value, dtype=np.int64)
    else:
        raise IndexFileError(f"{what}: 'ids' must be a list or {{'range': [start, stop]}}, got {type(value).__name__}")
    if len(ids) != n:
        raise IndexFileError(f"{what}: metadata lists {len(ids)} ids but the index holds {n} items")
    return ids


def _same_method(a: str, b: str) -> bool:
    from hashbench.registry import canonical_method_name

    try:
        return canonical_method_name(a) == canonical_method_name(b)
    except (KeyError, TypeError):
        return a.lower() == b.lower()


class CodeIndex:
    """An index of hashbench codes (a faiss binary index or a :class:`MIHIndex`) and its metadata.

    Build one from codes with :meth:`from_codes`, from a checkpoint with :func:`hashbench.search.export_index`,
    or read one with :func:`load_index`; search it with :meth:`search`.
    """

    def __init__(self, index: Any, meta: dict[str, Any], path: str | Path | None = None) -> None:
        self.index = index
        self.meta = meta
        self.path = Path(path) if path is not None else None
        self.ids = _decode_ids(meta.get("ids", {"range": [0, index.ntotal]}), int(index.ntotal), "index")
        self._words: np.ndarray | None = index.words if isinstance(index, MIHIndex) else None

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_codes(cls, codes: Any, index_type: str = "flat", **options: Any) -> CodeIndex:
        """Index sign codes ``[N, K]`` (``{-1, +1}``, ``{0, 1}`` or bool; tensor or array).

        Args:
            codes: the database codes, one row per item.
            index_type: ``flat``, ``hash``, ``multihash``, ``hnsw`` or ``mih``.
            **options: keyword-only, as :meth:`from_packed` takes them: ``ids`` (the dataset item of each row;
                default ``0..N-1``), ``method`` / ``protocol`` (recorded in the metadata and checked by
                :func:`load_index`), ``params`` (index parameters, see :func:`default_params`), ``meta`` (further
                metadata fields).
        """
        arr = np.asarray(codes.detach().cpu().numpy() if hasattr(codes, "detach") else codes)
        if arr.ndim != 2 or arr.shape[1] < 1:
            raise ValueError(f"codes must be a 2-D [n, bits] matrix, got shape {tuple(arr.shape)}")
        return cls.from_packed(to_faiss_bytes(arr), int(arr.shape[1]), index_type, **options)

    @classmethod
    def from_packed(
        cls,
        packed: np.ndarray,
        n_bits: int,
        index_type: str = "flat",
        *,
        ids: Any = None,
        method: str | None = None,
        protocol: str | None = None,
        params: dict[str, int] | None = None,
        meta: dict[str, Any] | None = None,
    ) -> CodeIndex:
        """:meth:`from_codes` for codes already packed as faiss bytes ``[N, ceil(n_bits / 8)]``."""
        import time

        import hashbench

        packed = np.ascontiguousarray(packed, dtype=np.uint8)
        t0 = time.perf_counter()
        index, used = build_index(packed, n_bits, index_type, **(params or {}))
        build_s = time.perf_counter() - t0
        ids_arr = np.arange(len(packed), dtype=np.int64) if ids is None else np.asarray(ids, dtype=np.int64)
        if ids_arr.shape != (len(packed),):
            raise ValueError(f"ids must give one id per code ({len(packed)}), got shape {ids_arr.shape}")
        info: dict[str, Any] = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "index_type": index_type,
            "index_class": _INDEX_CLASS[index_type],
            "engine": "hashbench" if index_type == "mih" else "faiss",
            "params": used,
            "n_bits": int(n_bits),
            "num_items": len(packed),
            "method": method,
            "protocol": protocol,
            "hashbench_version": hashbench.__version__,
            "code_layout": "bit j of a code is 1 iff code j is +1 (sign(0) = +1); faiss bytes, least significant "
            "bit first; padding bits 0",
            "tie_rule": "distance, then row (exact searches)",
            "build_seconds": round(build_s, 4),
            **(meta or {}),
            "ids": _encode_ids(ids_arr),
        }
        out = cls(index, info)
        if index_type not in ("hash", "mih"):  # as after loading: a hash index keeps its codes only in its buckets
            out._words = bytes_to_words(packed)
        return out

    # ------------------------------------------------------------------ properties
    @property
    def n_bits(self) -> int:
        return int(self.meta["n_bits"])

    @property
    def method(self) -> str | None:
        return self.meta.get("method")

    @property
    def protocol(self) -> str | None:
        return self.meta.get("protocol")

    @property
    def index_type(self) -> str:
        return str(self.meta["index_type"])

    @property
    def params(self) -> dict[str, int]:
        return dict(self.meta.get("params") or {})

    @property
    def items(self) -> np.ndarray | None:
        """Each row's position in the pooled dataset (hashbench's datamodules), or ``None`` when not recorded."""
        value = self.meta.get("items")
        return None if value is None else _decode_ids(value, len(self), "index")

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def __repr__(self) -> str:
        return (
            f"CodeIndex({self.index_type}, {len(self)} x {self.n_bits} bits, method={self.method!r}, "
            f"protocol={self.protocol!r}, params={self.params})"
        )

    def nbytes(self) -> int:
        """Bytes of the index: the serialised faiss index (codes plus its own structures); for ``mih``, the codes
        and tables in memory (:meth:`MIHIndex.nbytes`; its file holds only the codes)."""
        if isinstance(self.index, MIHIndex):
            return self.index.nbytes()
        return int(_faiss().serialize_index_binary(self.index).nbytes)

    def database_words(self) -> np.ndarray:
        """The stored codes as ``uint64`` words ``[N, ceil(K / 64)]`` (for hashbench's exact kernel)."""
        if self._words is None:
            faiss = _faiss()
            if self.index_type == "hash":
                raise ValueError(
                    "an IndexBinaryHash keeps its codes only inside its hash buckets, so hashbench's exact kernel "
                    "cannot read them; export a flat, multihash, hnsw or mih index for backend='hashbench'"
                )
            storage = self.index if self.index_type == "flat" else faiss.downcast_IndexBinary(self.index.storage)
            n = int(storage.ntotal)
            packed = storage.reconstruct_n(0, n) if n else np.zeros((0, storage.code_size), np.uint8)
            self._words = bytes_to_words(np.asarray(packed, dtype=np.uint8).reshape(n, storage.code_size))
        return self._words

    # ------------------------------------------------------------------ search
    def search(self, codes: Any, k: int = 10, **options: Any) -> SearchResult:
        """Top-k rows for each query code.

        Args:
            codes: query sign codes ``[Q, K]`` with the index's ``K`` (``{-1, +1}``, ``{0, 1}`` or bool).
            k: neighbours per query.
            **options: keyword-only, as :meth:`search_packed` takes them:

                * ``backend``: ``index`` (default: the index's own search -- faiss, or hashbench's MIH for a
                  ``mih`` index), ``faiss`` (the same, refused for ``mih``) or ``hashbench`` (hashbench's exact scan
                  on the stored codes; any index type but ``hash``).
                * ``exact``: ``hash`` / ``multihash`` only: search a query again with more flipped bits until its
                  k-th distance is certified (see the module docstring and :meth:`_certified_search`).
                * ``nflip``: ``hash`` / ``multihash``: flipped bits per probe (default: the index's).
                * ``ef_search``: ``hnsw``: the search beam (default: the index's, raised to ``k``).
                * ``threads``: threads of hashbench's kernels (exact scan, MIH; default ``torch.get_num_threads()``);
                  faiss uses its OpenMP setting.

        Raises:
            ValueError: codes of another length, an unknown backend, or an option the index type lacks.
        """
        return self.search_packed(to_faiss_bytes(codes, self.n_bits), k, **options)

    def search_packed(
        self,
        packed: np.ndarray,
        k: int = 10,
        *,
        backend: str = "index",
        exact: bool = False,
        nflip: int | None = None,
        ef_search: int | None = None,
        threads: int | None = None,
    ) -> SearchResult:
        """:meth:`search` for queries already packed as faiss bytes ``[Q, ceil(K / 8)]``."""
        if k < 1:
            raise ValueError(f"k must be a positive integer, got {k}")
        width = int(self.index.code_size)
        packed = np.ascontiguousarray(packed, dtype=np.uint8)
        if packed.ndim != 2 or packed.shape[1] != width:
            raise ValueError(
                f"packed queries must be [Q, {width}] uint8 ({self.n_bits}-bit codes), got shape {packed.shape}"
            )
        self._check_options(backend, exact, nflip, ef_search)
        if backend == "hashbench":
            dist, rows = exact_topk(bytes_to_words(packed), self.database_words(), k, self.n_bits, threads)
        elif self.index_type == "mih":
            dist, rows = self.index.search(bytes_to_words(packed), k, threads)
        elif exact:
            dist, rows = self._certified_search(packed, k, self.params["nflip"] if nflip is None else nflip)
        else:
            dist, rows = self._faiss_search(packed, k, nflip, ef_search)
        ids = np.where(rows >= 0, self.ids[np.clip(rows, 0, None)] if len(self.ids) else -1, -1)
        return SearchResult(dist, rows, ids)

    def _check_options(self, backend: str, exact: bool, nflip: int | None, ef_search: int | None) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(map(repr, BACKENDS))}, got {backend!r}")
        if backend == "faiss" and self.index_type not in FAISS_TYPES:
            raise ValueError(
                f"a {self.index_type} index is hashbench's own, not a faiss index: use backend='index' (its exact "
                "search) or 'hashbench'"
            )
        if exact and self.index_type not in ("hash", "multihash"):
            raise ValueError(
                f"exact=True applies to hash and multihash indexes; a {self.index_type} index is "
                + ("exact already" if self.index_type in ("flat", "mih") else "approximate: use backend='hashbench'")
            )
        if nflip is not None and self.index_type not in ("hash", "multihash"):
            raise ValueError(f"nflip applies to hash and multihash indexes, not to {self.index_type}")
        if ef_search is not None and self.index_type != "hnsw":
            raise ValueError(f"ef_search applies to hnsw indexes, not to {self.index_type}")

    def _faiss_search(
        self, packed: np.ndarray, k: int, nflip: int | None, ef_search: int | None
    ) -> tuple[np.ndarray, np.ndarray]:
        index = self.index
        if self.index_type == "hnsw":
            previous = index.hnsw.efSearch
            index.hnsw.efSearch = max(k, self.params.get("ef_search", 16) if ef_search is None else ef_search)
        elif self.index_type in ("hash", "multihash"):
            previous = index.nflip
            index.nflip = self.params["nflip"] if nflip is None else int(nflip)
        try:
            dist, rows = index.search(packed, k)
        finally:
            if self.index_type == "hnsw":
                index.hnsw.efSearch = previous
            elif self.index_type in ("hash", "multihash"):
                index.nflip = previous
        return _normalise(dist, rows)

    def _certified_search(self, packed: np.ndarray, k: int, nflip: int) -> tuple[np.ndarray, np.ndarray]:
        """Search again with more flipped bits until the pigeonhole bound certifies each query's k-th distance.

        After a pass with ``s`` flips on ``m`` tables of ``b`` bits, every item within ``m (s + 1) - 1`` bits was
        a candidate, so a query whose k-th distance ``D`` is within that radius is exact. Otherwise ``D`` (the
        distance of k real items) bounds the true k-th distance, and ``s' = ceil((D + 1) / m) - 1`` flips certify
        it in one more pass; a query with fewer than k candidates tries ``s + 1``. With ``s = b`` every bucket is
        probed. A ``multihash`` pass that would probe more than ``N / 64`` buckets is replaced by hashbench's exact
        kernel on the stored codes (a scan is cheaper by then).
        """
        tables = int(self.params.get("nhash", 1))
        bits_per_table = int(self.params["b"])
        nq = len(packed)
        out_d = np.full((nq, k), -1, np.int32)
        out_i = np.full((nq, k), -1, np.int64)
        todo = [(np.arange(nq), int(nflip))]
        while todo:
            sel, flips = todo.pop()
            flips = min(flips, bits_per_table)
            probes = tables * sum(math.comb(bits_per_table, i) for i in range(flips + 1))
            if self.index_type == "multihash" and probes > max(64, len(self) // 64):
                dist, rows = exact_topk(bytes_to_words(packed[sel]), self.database_words(), k, self.n_bits)
                out_d[sel], out_i[sel] = dist, rows
                continue
            dist, rows = self._faiss_search(packed[sel], k, flips, None)
            radius = tables * (flips + 1) - 1  # every item within this distance has been a candidate
            found = rows[:, -1] >= 0
            done = np.ones(len(sel), bool) if flips >= bits_per_table else found & (dist[:, -1] <= radius)
            out_d[sel[done]], out_i[sel[done]] = dist[done], rows[done]
            if done.all():
                continue
            kth = dist[~done, -1].astype(np.int64)
            need = np.where(found[~done], np.maximum(flips + 1, -(-(kth + 1) // tables) - 1), flips + 1)
            rest = sel[~done]
            for value in np.unique(need):
                todo.append((rest[need == value], int(value)))
        return out_d, out_i

    # ------------------------------------------------------------------ files
    def save(self, path: str | Path) -> Path:
        """Write the index to ``path`` (faiss' format; an npz archive of the codes for ``mih``) and its metadata
        to ``path.meta.json``; returns ``path``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        if isinstance(self.index, MIHIndex):
            with open(tmp, "wb") as fh:
                self.index.write(fh)
        else:
            _faiss().write_index_binary(self.index, str(tmp))
        os.replace(tmp, path)
        self.meta["index_file"] = {"name": path.name, "bytes": path.stat().st_size, "sha256": _sha256(path)}
        self.meta.setdefault("created", datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
        mpath = meta_path(path)
        tmp = mpath.with_name(f".{mpath.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(self.meta, indent=1) + "\n")
        os.replace(tmp, mpath)
        self.path = path
        return path


def _normalise(dist: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """faiss results as (distance, row)-sorted rows; "not found" becomes row -1, distance -1 (at the end)."""
    dist = np.asarray(dist, dtype=np.int64)
    rows = np.asarray(rows, dtype=np.int64)
    missing = (rows < 0) | (dist >= _FAISS_MISSING)
    big = np.iinfo(np.int64).max // 4
    key_d = np.where(missing, big, dist)
    key_r = np.where(missing, big, rows)
    order = np.lexsort((key_r, key_d), axis=1)
    dist = np.take_along_axis(np.where(missing, -1, dist), order, 1)
    rows = np.take_along_axis(np.where(missing, -1, rows), order, 1)
    return dist.astype(np.int32), rows


def _read_index_file(path: Path, index_type: str) -> Any:
    """The index in ``path``: a :class:`MIHIndex` archive for ``mih``, else a faiss binary index (of its concrete
    class: faiss' Python wrapper downcasts it)."""
    if index_type == "mih":
        try:
            return MIHIndex.read(path)
        except ValueError as err:
            raise IndexFileError(f"{path}: {err}") from None
    try:
        return _faiss().read_index_binary(str(path))
    except RuntimeError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise IndexFileError(f"{path}: faiss cannot read this index file ({first})") from None


def load_index(
    path: str | Path,
    *,
    method: str | None = None,
    n_bits: int | None = None,
    index_type: str | None = None,
    verify: bool = True,
) -> CodeIndex:
    """Read an exported index and its metadata, refusing anything that does not fit.

    Args:
        path: the index file (its metadata is ``path.meta.json``).
        method / n_bits / index_type: when given, the index must hold codes of this method (registry names,
            any spelling), this length and this index type.
        verify: check the index file's sha256 against the metadata (catches truncated or altered files).

    Raises:
        FileNotFoundError: no file at ``path``.
        IndexFileError: an unreadable or corrupted file, an index that does not match its metadata, or a
            method / bit / type mismatch.
    """
    path = Path(path)
    mpath = meta_path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such index file")
    if not mpath.is_file():
        raise IndexFileError(
            f"{path}: its metadata file {mpath.name} is missing; an index needs it to know which codes it holds "
            "(re-export it with `hashbench export`)"
        )
    try:
        meta = json.loads(mpath.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise IndexFileError(f"{mpath}: not readable metadata ({err})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise IndexFileError(f"{mpath}: not a hashbench index metadata file (format != {FORMAT!r})")
    if meta.get("format_version") != FORMAT_VERSION:
        raise IndexFileError(
            f"{mpath}: metadata format version {meta.get('format_version')!r}; this hashbench reads {FORMAT_VERSION}"
        )
    for key in ("index_type", "n_bits", "num_items", "ids", "index_file"):
        if key not in meta:
            raise IndexFileError(f"{mpath}: metadata lacks {key!r}")
    if meta["index_type"] not in INDEX_TYPES:
        raise IndexFileError(f"{mpath}: unknown index type {meta['index_type']!r}")
    if verify:
        want = meta["index_file"].get("sha256")
        got = _sha256(path)
        if got != want:
            raise IndexFileError(
                f"{path}: the file's sha256 is {got[:16]}… but its metadata expects {str(want)[:16]}…: the index "
                "file is corrupted, truncated, or belongs to another export"
            )
    index = _read_index_file(path, meta["index_type"])
    what = str(path)
    expected_class = _INDEX_CLASS[meta["index_type"]]
    if type(index).__name__ != expected_class:
        engine = "hashbench" if isinstance(index, MIHIndex) else "faiss"
        raise IndexFileError(
            f"{what}: the file holds a {engine} {type(index).__name__}, the metadata a {expected_class}"
        )
    width = 8 * math.ceil(int(meta["n_bits"]) / 8)
    if int(index.d) != width:
        raise IndexFileError(f"{what}: the index holds {index.d}-bit codes but the metadata says {meta['n_bits']} bits")
    if int(index.ntotal) != int(meta["num_items"]):
        raise IndexFileError(f"{what}: the index holds {index.ntotal} items, the metadata {meta['num_items']}")
    if n_bits is not None and int(n_bits) != int(meta["n_bits"]):
        raise IndexFileError(f"{what} holds {meta['n_bits']}-bit codes, not {n_bits}-bit codes")
    if index_type is not None and index_type != meta["index_type"]:
        raise IndexFileError(f"{what} is a {meta['index_type']} index, not a {index_type} index")
    if method is not None:
        have = meta.get("method")
        if have is None:
            raise IndexFileError(f"{what} records no method, so it cannot be checked to hold {method} codes")
        if not _same_method(str(have), method):
            raise IndexFileError(f"{what} holds {have} codes, not {method} codes")
    params = meta.get("params") or {}
    if meta["index_type"] in ("hash", "multihash") and int(params.get("b", -1)) != int(index.b):
        raise IndexFileError(f"{what}: the index hashes {index.b} bits per table, the metadata {params.get('b')}")
    if isinstance(index, MIHIndex) and (index.n_bits, index.nhash) != (int(meta["n_bits"]), params.get("nhash")):
        raise IndexFileError(
            f"{what}: the file holds {index.n_bits}-bit codes in {index.nhash} substrings, the metadata "
            f"{meta['n_bits']} bits in {params.get('nhash')}"
        )
    out = CodeIndex(index, meta, path)
    if len(out.ids) != len(out):
        raise IndexFileError(f"{what}: metadata lists {len(out.ids)} ids but the index holds {len(out)} items")
    return out
