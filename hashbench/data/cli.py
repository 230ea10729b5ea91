"""``hashbench data list | verify NAME | prepare NAME``.

The top-level CLI calls :func:`main` with the arguments after ``data``; :func:`add_data_subcommands` attaches
the same sub-commands to an existing argparse parser instead.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import numpy as np

from hashbench.data.protocols import PROTOCOLS, get_protocol
from hashbench.data.registry import create_datamodule
from hashbench.data.roots import ENV_VAR
from hashbench.data.splits import PACKAGE_SPLIT_DIR, committed_split_path, draw_split, sha256_file


def _split_kind(name: str) -> str:
    proto = get_protocol(name)
    if proto.database_rule == "listfile":
        return "list files"
    return "shipped" if committed_split_path(name) else "drawn on first use"


def cmd_list(args: argparse.Namespace) -> int:
    """Print the protocol table."""
    header = ("name", "family", "classes", "labels", "query", "train", "database", "mAP@", "transform", "split")
    rows = [header]
    for p in PROTOCOLS.values():
        rows.append(
            (
                p.name,
                p.family,
                str(p.num_classes),
                "multi" if p.multi_label else "single",
                p.query,
                p.train,
                p.database,
                "all" if p.map_k is None else str(p.map_k),
                p.default_transform,
                _split_kind(p.name),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for i, row in enumerate(rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))
    if args.verbose:
        print()
        for p in PROTOCOLS.values():
            print(f"{p.name}: {p.description}\n  source: {p.source}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """Check the data files, the split checksum, and that a drawn split re-draws identically."""
    dm = create_datamodule(args.name, root=args.root, download=False)
    for line in dm.verify_data() or ["--  no reference checksums recorded for these data files"]:
        print(line)
    dm.setup()
    proto = dm.protocol
    split = getattr(dm, "split", None)
    if split is None or getattr(dm, "_pool", None) is None:
        # e.g. fashion-mnist-text: its images and their split belong to another protocol, checked above
        print(f"ok  {proto.name}: set up; no split of its own (it reuses the split of the protocol it builds on)")
        return 0
    if proto.database_rule == "listfile":
        print(f"ok  split = list files ({', '.join(f'{k} {v[:12]}...' for k, v in dm.list_checksums.items())})")
    else:
        shipped = committed_split_path(proto.name)
        path = shipped if shipped else (dm._pool.split_dir / f"{proto.name}.json" if dm._pool.split_dir else None)
        where = f"{path} sha256 {sha256_file(path)}" if path and path.is_file() else "in memory (not stored)"
        print(f"ok  split checksum: {where}")
        pool = dm._pool
        labels = pool.class_ids if pool.class_ids is not None else pool.labels.numpy()
        redrawn = draw_split(proto, labels)
        same = all(np.array_equal(getattr(redrawn, k), getattr(split, k)) for k in ("query", "train", "database"))
        if not same:
            print(
                f"error: the stored split of {proto.name!r} differs from a fresh draw over the same labels",
                file=sys.stderr,
            )
            return 4  # hashbench.errors.EXIT_CODES["checksum"]
        print("ok  split re-draws identically from the labels (algorithm + seed reproduce it)")
    print(f"ok  {proto.name}: query {split.query.size}, train {split.train.size}, database {split.database.size}")
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    """Download the dataset where the source is public, else explain what to obtain; then materialise the split."""
    dm = create_datamodule(args.name, root=args.root, download=not args.no_download)
    dm.prepare_data()
    dm.setup()
    print(f"ok  {dm.describe()}")
    return 0


def build_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The ``hashbench data`` parser (or its sub-commands added to ``parser``)."""
    parser = parser or argparse.ArgumentParser(
        prog="hashbench data",
        description=(
            f"Datasets and retrieval protocols. Datasets live in ${ENV_VAR}/<name>/ (or under --root); "
            f"shipped split files are in {PACKAGE_SPLIT_DIR}."
        ),
    )
    add_data_subcommands(parser.add_subparsers(dest="command", required=True, metavar="{list,verify,prepare}"))
    return parser


def add_data_subcommands(subparsers: argparse._SubParsersAction) -> None:
    """Attach ``list``, ``verify`` and ``prepare`` to an argparse sub-parser collection."""
    p_list = subparsers.add_parser("list", help="print the table of protocols", description="Print the protocols.")
    p_list.add_argument(
        "-v", "--verbose", action="store_true", help="also print each protocol's description and source"
    )
    p_list.set_defaults(func=cmd_list)
    names = ", ".join(PROTOCOLS)
    for name, func, text in (
        (
            "verify",
            cmd_verify,
            "check the data files against known checksums, the split file against its recorded sha256 (refusing a "
            "mismatch), and that a drawn split re-draws identically",
        ),
        (
            "prepare",
            cmd_prepare,
            "download the dataset where the source is public (Fashion-MNIST, CIFAR-10, SVHN via torchvision), "
            "otherwise print which files to obtain, from where and where to put them; then draw and store the split",
        ),
    ):
        sub = subparsers.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")
        # not argparse `choices`: an unknown name goes through get_protocol, whose error suggests the closest one
        sub.add_argument("name", metavar="NAME", help=f"protocol, one of: {names}")
        sub.add_argument("--root", default=None, help=f"data root (default: ${ENV_VAR}, then family fallbacks)")
        if name == "prepare":
            sub.add_argument("--no-download", action="store_true", help="only look for the files, never download")
        sub.set_defaults(func=func)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``hashbench data`` with ``argv`` (the arguments after ``data``); returns the exit status."""
    from hashbench.errors import cli_boundary

    def run(args: list[str]) -> int:
        parsed = build_parser().parse_args(args)
        if getattr(parsed, "name", None) is not None:
            get_protocol(parsed.name)  # unknown name: one line with the closest protocols
        return parsed.func(parsed)

    return cli_boundary("hashbench data", run, list(argv) if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
