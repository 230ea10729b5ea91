"""``hashbench export`` and ``hashbench search``: trained codes in an index, and queries against it.

``hashbench export CKPT|RUN --data PROTOCOL --index flat|hash|multihash|hnsw|mih OUT`` encodes the protocol's
database with the checkpoint's model and writes ``OUT`` (the faiss index; for ``mih``, hashbench's own exact
multi-index hashing, an npz archive of the codes) and ``OUT.meta.json`` (method, bits,
protocol, code version, checkpoint sha256, ids). ``hashbench search INDEX --image PATH | --query-split`` prints the
top-k of each query with its Hamming distance. See :mod:`hashbench.search` for the Python API and the tie rule.

Errors (unreadable or mismatched files, wrong method or data) are printed as ``hashbench export: error: ...``
with the exit statuses of :data:`hashbench.errors.EXIT_CODES` (2 a wrong value, 3 a missing file, ...).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["export_main", "search_main", "build_export_parser", "build_search_parser"]


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not valid JSON ({err})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object, e.g. '{\"eval_limit\": 1000}'")
    return value


_EXPORT_HELP = (
    "Encode a protocol's database with a trained model and write an index (OUT: a faiss binary index, or for "
    "--index mih hashbench's own exact multi-index hashing) plus its metadata (OUT.meta.json). CKPT is a Lightning "
    "checkpoint; RUN a run folder (its newest best-*.ckpt, else last.ckpt)."
)
_SEARCH_HELP = (
    "Search an exported index: encode the queries with the model it was exported from and print the top-k "
    "(query, rank, id, item, distance). Ties: exact searches order by distance, then database row."
)


def build_export_parser() -> argparse.ArgumentParser:
    from hashbench.search.index import INDEX_TYPES

    parser = argparse.ArgumentParser(prog="hashbench export", description=_EXPORT_HELP)
    parser.add_argument("source", metavar="CKPT|RUN", help="checkpoint file or run folder")
    parser.add_argument("out", metavar="OUT", help="index file to write (metadata: OUT.meta.json)")
    parser.add_argument(
        "--data",
        help="protocol name (see `hashbench data list`) or a datamodule's import path; default: the protocol the "
        "checkpoint records",
    )
    parser.add_argument("--index", dest="index_type", default="flat", choices=INDEX_TYPES, help="index type")
    parser.add_argument("--model", help="method name (e.g. DPSH), needed when the checkpoint does not record its class")
    parser.add_argument("--data-args", type=_json_object, default={}, help="datamodule arguments as a JSON object")
    parser.add_argument("--eval-limit", type=int, help="encode at most this many database items (a subsample)")
    parser.add_argument("--modality", default="image", choices=("image", "text"), help="cross-modal: which codes")
    parser.add_argument("--device", default="cpu", help="device the model encodes on (cpu, cuda)")
    group = parser.add_argument_group("index parameters (defaults: see hashbench.search.default_params)")
    group.add_argument("--b", type=int, help="hash / multihash: bits per hash table")
    group.add_argument("--nhash", type=int, help="multihash / mih: number of tables (substrings)")
    group.add_argument("--nflip", type=int, help="hash / multihash: flipped bits per probe at search time")
    group.add_argument("--M", dest="M", type=int, help="hnsw: links per node")
    group.add_argument("--ef-search", type=int, help="hnsw: search beam")
    return parser


def build_search_parser() -> argparse.ArgumentParser:
    from hashbench.search.index import BACKENDS

    parser = argparse.ArgumentParser(prog="hashbench search", description=_SEARCH_HELP)
    parser.add_argument("index", metavar="INDEX", help="index file written by `hashbench export`")
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--image", nargs="+", metavar="PATH", help="query image file(s)")
    which.add_argument("--query-split", action="store_true", help="the protocol's query set")
    parser.add_argument("-k", "--k", type=int, default=10, help="neighbours per query (default 10)")
    parser.add_argument("--limit", type=int, help="--query-split: only the first N queries")
    parser.add_argument("--ckpt", help="checkpoint to encode with (default: the one recorded in the metadata)")
    parser.add_argument(
        "--backend",
        default="index",
        choices=BACKENDS,
        help="index: the index's own search (faiss; hashbench's MIH for mih); hashbench: hashbench's exact scan",
    )
    parser.add_argument("--exact", action="store_true", help="hash / multihash: certify exact distances")
    parser.add_argument("--nflip", type=int, help="hash / multihash: flipped bits per probe")
    parser.add_argument("--ef-search", type=int, help="hnsw: search beam")
    parser.add_argument("--modality", default="image", choices=("image", "text"), help="cross-modal: query codes")
    parser.add_argument("--data-args", type=_json_object, help="datamodule arguments (default: those of the export)")
    parser.add_argument("--device", default="cpu", help="device the model encodes on")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a tab-separated table")
    return parser


def _run(prog: str, parser: argparse.ArgumentParser, argv: Sequence[str] | None, func: Any) -> int:
    from hashbench.errors import cli_boundary

    def run(args: list[str]) -> int:
        return func(parser.parse_args(args))  # argparse's usage errors exit with 2 through the boundary

    # unreadable or mismatched files, a wrong method or protocol: one line (hashbench.errors)
    return cli_boundary(prog, run, list(argv) if argv is not None else sys.argv[1:])


def _cmd_export(args: argparse.Namespace) -> int:
    from hashbench.search import export_index

    params = {k: getattr(args, k) for k in ("b", "nhash", "nflip", "M", "ef_search") if getattr(args, k) is not None}
    data_args = dict(args.data_args)
    if args.eval_limit is not None:
        data_args["eval_limit"] = args.eval_limit
    index = export_index(
        args.source,
        args.out,
        data=args.data,
        index_type=args.index_type,
        model=args.model,
        data_args=data_args,
        params=params,
        modality=args.modality,
        device=args.device,
    )
    meta = index.meta
    print(
        f"{index.path}: {meta['engine']} {meta['index_class']} {meta['params']} of {len(index)} x {index.n_bits}-bit "
        f"{meta['method']} codes ({meta['protocol']} {meta['split']}), {index.path.stat().st_size} bytes; "
        f"checkpoint {meta['checkpoint']['path']} (sha256 {meta['checkpoint']['sha256'][:12]}…)"
    )
    return 0


def _query_model(index: Any, args: argparse.Namespace) -> Any:
    from hashbench.search.export import CheckpointError, checkpoint_sha256, load_checkpoint_model

    recorded = index.meta.get("checkpoint") or {}
    ckpt = args.ckpt or recorded.get("path")
    if not ckpt:
        raise ValueError(f"{index.path} records no checkpoint; pass --ckpt (the one it was exported from)")
    if not Path(ckpt).is_file():
        raise CheckpointError(f"checkpoint {ckpt} (recorded in {index.path}'s metadata) does not exist; pass --ckpt")
    if recorded.get("sha256") and checkpoint_sha256(ckpt) != recorded["sha256"]:
        raise CheckpointError(
            f"checkpoint {ckpt} is not the one {index.path} was exported from (sha256 differs): codes of another "
            "model are not comparable with the index"
        )
    net, info = load_checkpoint_model(ckpt, recorded.get("method_class") or index.method, args.device)
    if info["n_bits"] != index.n_bits:
        raise CheckpointError(f"{ckpt} makes {info['n_bits']}-bit codes; {index.path} holds {index.n_bits}-bit codes")
    if index.method and info["method"] != index.method:
        raise CheckpointError(f"{ckpt} is a {info['method']} checkpoint; {index.path} holds {index.method} codes")
    return net


def _cmd_search(args: argparse.Namespace) -> int:
    import torch

    from hashbench.search import load_index
    from hashbench.search.export import build_datamodule, encode_split, load_image

    index = load_index(args.index)
    net = _query_model(index, args)
    if args.image:
        if args.modality != "image":
            raise ValueError("--image queries are images: drop --modality text")
        images = torch.cat([load_image(p, index.meta) for p in args.image]).to(args.device)
        with torch.no_grad():
            codes = net.encode_image(images) if hasattr(net, "encode_image") else net.encode(images)
        names: list[Any] = list(args.image)
    else:
        data = index.meta.get("data") or {}
        spec = data.get("spec") or index.protocol
        if not spec:
            raise ValueError(f"{index.path} records no protocol; --query-split cannot rebuild its data")
        dm = build_datamodule(spec, data.get("data_args") if args.data_args is None else args.data_args)
        codes, ids = encode_split(net, dm, "query", args.modality, args.device)
        if args.limit is not None:
            codes, ids = codes[: args.limit], ids[: args.limit]
        names = [int(i) for i in ids]
    result = index.search(
        codes, args.k, backend=args.backend, exact=args.exact, nflip=args.nflip, ef_search=args.ef_search
    )
    items = index.items
    rows_out = []
    for qi, name in enumerate(names):
        hits = []
        for rank in range(args.k):
            row = int(result.rows[qi, rank])
            if row < 0:
                break
            hit = {"rank": rank + 1, "id": int(result.ids[qi, rank]), "distance": int(result.distances[qi, rank])}
            if items is not None:
                hit["item"] = int(items[row])
            hits.append(hit)
        rows_out.append({"query": name, "results": hits})
    if args.json:
        print(json.dumps({"index": str(index.path), "k": args.k, "queries": rows_out}, indent=1))
        return 0
    print(
        f"# {index.path}: {index.index_type}, {len(index)} x {index.n_bits}-bit {index.method} codes "
        f"({index.protocol}); k={args.k}, backend={args.backend}"
    )
    print("query\trank\tid\titem\tdistance")
    for entry in rows_out:
        for hit in entry["results"]:
            print(f"{entry['query']}\t{hit['rank']}\t{hit['id']}\t{hit.get('item', '')}\t{hit['distance']}")
    return 0


def export_main(argv: Sequence[str] | None = None) -> int:
    """Run ``hashbench export`` with the arguments after ``export``; returns the exit status."""
    return _run("hashbench export", build_export_parser(), argv, _cmd_export)


def search_main(argv: Sequence[str] | None = None) -> int:
    """Run ``hashbench search`` with the arguments after ``search``; returns the exit status."""
    return _run("hashbench search", build_search_parser(), argv, _cmd_search)
