"""``hashbench weights list | verify | prepare``: the pretrained weights files hashbench reads, and their checksums.

See :mod:`hashbench.nn.weights` for where files are looked for and how they are checked.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from hashbench.errors import EXIT_CODES
from hashbench.nn import weights as W

__all__ = ["main", "build_parser"]


def _status(name: str) -> tuple[str, Path | None]:
    try:
        path = W.find_weights(name)
    except W.WeightsChecksumError:
        return "CORRUPT", next(p for p in W.candidate_paths(name) if p.is_file())
    return ("ok" if path else "missing"), path


def cmd_list(args: argparse.Namespace) -> int:
    """One block per weights file: what it is, its file name, URL, sha256 and whether it is on disk."""
    for name, source in W.WEIGHTS.items():
        status, path = _status(name) if args.check else ("", None)
        head = f"{name}  ({source.description}, {source.size_mb:.0f} MB)" if source.size_mb else name
        print(head)
        print(f"  file    {source.filename}")
        print(f"  from    {source.url}")
        print(f"  sha256  {source.sha256}{'' if source.full_digest else '… (prefix published in the file name)'}")
        if args.check:
            print(f"  on disk {status}{f': {path}' if path else ''}")
    folder = os.environ.get(W.ENV_VAR)
    where = f"${W.ENV_VAR} ({folder or 'unset'}) as <name>.pth or the file name, then {W.hub_checkpoint_dir()}"
    print(f"\nLooked for in: {where}")
    return 0


def cmd_verify(args: argparse.Namespace) -> int:
    """Check files on disk (or ``--file``) against the recorded sha256; non-zero on any mismatch."""
    if args.file and len(args.names) != 1:
        raise SystemExit("--file needs exactly one NAME (which file it should be)")
    names = args.names or list(W.WEIGHTS)
    bad = found = 0
    for name in names:
        W.get_source(name)  # an unknown name is a user error (the CLI's boundary prints it)
        paths = [Path(args.file)] if args.file else [p for p in W.candidate_paths(name) if p.is_file()]
        if args.file and not paths[0].is_file():
            raise FileNotFoundError(f"{paths[0]} does not exist")
        if not paths:
            print(f"--   {name}: not on disk (`hashbench weights list` says where to put it)")
            continue
        for path in paths:
            found += 1
            try:
                digest = W.verify_file(name, path)
            except W.WeightsChecksumError as err:
                bad += 1
                print(f"FAIL {err}", file=sys.stderr)
                continue
            print(f"ok   {name}: {path} sha256 {digest}")
    if bad:
        print(f"{bad} of {found} file(s) failed the checksum: they are refused when a backbone loads", file=sys.stderr)
        return EXIT_CODES["checksum"]
    if args.names and not found:
        return EXIT_CODES["missing"]
    return 0


def cmd_prepare(args: argparse.Namespace) -> int:
    """Put a checked copy of ``--from FILE`` (or a download) where hashbench looks for ``NAME``."""
    source = W.get_source(args.name)
    folder = os.environ.get(W.ENV_VAR)
    dest_dir = Path(args.dest or folder or W.hub_checkpoint_dir()).expanduser()
    dest = dest_dir / source.filename
    existing = W.find_weights(args.name, verify=False)
    if args.src is None and existing is not None:
        digest = W.verify_file(args.name, existing)
        print(f"ok   {args.name}: already at {existing} (sha256 {digest})")
        return 0
    if args.src is not None:
        src = Path(args.src).expanduser()
        if not src.is_file():
            raise FileNotFoundError(f"{src} does not exist")
        digest = W.verify_file(args.name, src)
        dest_dir.mkdir(parents=True, exist_ok=True)
        if src.resolve() != dest.resolve():
            tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
            shutil.copyfile(src, tmp)
            os.replace(tmp, dest)
        print(f"ok   {args.name}: {dest} (sha256 {digest})")
        return 0
    if not (args.download or W.allow_download()):
        print(W.missing_message(args.name), file=sys.stderr)
        return EXIT_CODES["missing"]
    import torch

    dest_dir.mkdir(parents=True, exist_ok=True)
    torch.hub.download_url_to_file(source.url, str(dest), progress=True)
    digest = W.verify_file(args.name, dest)
    print(f"ok   {args.name}: downloaded to {dest} (sha256 {digest})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hashbench weights",
        description=(
            "Pretrained weights without a hub: which file each backbone needs, where it comes from, its sha256, and "
            f"what is on disk. Files are read from an explicit --model.weights PATH, from ${W.ENV_VAR} "
            "(<name>.pth or the file name), or from the torch hub cache; a wrong or truncated file is refused."
        ),
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="{list,verify,prepare}")
    p = sub.add_parser("list", help="the weights files hashbench knows, with URL and sha256", description="List them.")
    p.add_argument("--no-check", dest="check", action="store_false", help="do not look for the files on disk")
    p.set_defaults(func=cmd_list)
    p = sub.add_parser(
        "verify",
        help="check the files on disk (or --file) against their sha256",
        description="Check weights files against their recorded sha256; exits 1 if any does not match.",
    )
    p.add_argument("names", nargs="*", metavar="NAME", help=f"weights to check (default: all): {', '.join(W.WEIGHTS)}")
    p.add_argument("--file", help="check this file as NAME instead of the files found on disk")
    p.set_defaults(func=cmd_verify)
    p = sub.add_parser(
        "prepare",
        help="put a checked copy of a file (or a download) where hashbench finds it",
        description=(
            f"Place the weights of NAME in ${W.ENV_VAR} (or the torch hub cache when it is unset): copy --from FILE "
            "after checking its sha256, or download the published file with --download. Without either, says "
            "where to get the file."
        ),
    )
    p.add_argument("name", metavar="NAME", help=f"one of: {', '.join(W.WEIGHTS)}")
    p.add_argument("--from", dest="src", help="a copy of the file obtained elsewhere")
    p.add_argument("--dest", help=f"target folder (default: ${W.ENV_VAR}, else the torch hub cache)")
    p.add_argument("--download", action="store_true", help="download the published file (needs internet)")
    p.set_defaults(func=cmd_prepare)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``hashbench weights`` with the arguments after ``weights``; returns the exit status."""
    from hashbench.errors import cli_boundary

    def run(args: list[str]) -> int:
        parsed = build_parser().parse_args(args)
        return parsed.func(parsed)

    return cli_boundary("hashbench weights", run, list(argv) if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
