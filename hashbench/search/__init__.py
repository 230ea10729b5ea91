"""Export trained codes to faiss binary indexes or hashbench's own exact multi-index hashing, and search them.

Example:
    >>> from hashbench.search import load_index  # doctest: +SKIP
    >>> index = load_index("runs/dpsh-64.faiss", method="DPSH", n_bits=64)  # doctest: +SKIP
    >>> result = index.search(query_codes, k=10)  # doctest: +SKIP
    >>> result.ids, result.distances  # [Q, 10] dataset items and Hamming distances  # doctest: +SKIP

``hashbench export CKPT|RUN --data PROTOCOL --index flat|hash|multihash|hnsw|mih OUT`` writes an index from a
checkpoint (:func:`export_index`); ``hashbench search INDEX --image PATH | --query-split`` searches it. ``mih``
(:class:`MIHIndex`, :mod:`hashbench.search.mih`) is hashbench's own exact multi-index hashing, not a faiss index.

Tie rule: exact searches (``flat``, ``mih``, ``backend="hashbench"``) rank the database by ascending Hamming
distance, then ascending row (the order the database split was encoded in); see :mod:`hashbench.search.index` for
the approximate index types.
"""

from hashbench.search.exact import exact_topk, to_faiss_bytes, to_words
from hashbench.search.export import (
    CheckpointError,
    encode_split,
    export_index,
    find_checkpoint,
    load_checkpoint_model,
)
from hashbench.search.index import (
    BACKENDS,
    INDEX_TYPES,
    CodeIndex,
    IndexFileError,
    SearchResult,
    default_params,
    load_index,
    meta_path,
)
from hashbench.search.mih import MIHIndex

__all__ = [
    "BACKENDS",
    "INDEX_TYPES",
    "CheckpointError",
    "CodeIndex",
    "IndexFileError",
    "MIHIndex",
    "SearchResult",
    "default_params",
    "encode_split",
    "exact_topk",
    "export_index",
    "find_checkpoint",
    "load_checkpoint_model",
    "load_index",
    "meta_path",
    "to_faiss_bytes",
    "to_words",
]
