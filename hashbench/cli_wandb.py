"""``hashbench wandb sync [SPEC] | publish SPEC``: upload a table's offline W&B runs later; (re)write its summary run.

A table run with ``--wandb offline`` (the default) writes one W&B run per cell and one summary run per table under
``<results>/wandb/wandb/offline-run-*``. ``hashbench wandb sync SPEC`` uploads those of table SPEC (its cells for the
profile, plus the summary run; without SPEC every offline run of the store), records each run's URL in the store,
saves the table's W&B workspace when ``wandb-workspaces`` is installed (``pip install 'hashbench[wandb]'``) and prints
the one URL to open. Runs already uploaded are skipped (wandb marks them ``.synced``). ``--dry-run`` lists what would
be uploaded and the ``wandb sync`` command, offline. Re-render afterwards (``hashbench table SPEC --render-only``) to
link the runs from the leaderboard.

``hashbench wandb publish SPEC`` writes the table's summary run from the store and the rendered leaderboard (what
``hashbench table SPEC`` does at its end), e.g. after ``--render-only`` or after shards finished elsewhere.

Examples:
    hashbench wandb sync fashion-mnist --dry-run
    WANDB_API_KEY=... hashbench wandb sync fashion-mnist --results results/
    hashbench wandb publish fashion-mnist --wandb online
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["build_parser", "main", "offline_runs"]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hashbench wandb", description="W&B runs of the table runner.")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("sync", help="upload a table's offline runs (cells + summary run) and print the URL to open")
    s.add_argument("spec", nargs="?", help="table name or spec path (default: every offline run in the store)")
    s.add_argument("--results", help="results store directory (default: $HASHBENCH_RESULTS or ./results)")
    s.add_argument("--profile", help="the table's profile whose cells to upload (default: the spec's)")
    s.add_argument("--project", help="upload into this W&B project (default: the one the runs were made with)")
    s.add_argument("--entity", help="upload into this W&B entity (default: your default entity)")
    s.add_argument("--dry-run", action="store_true", help="list the runs and the `wandb sync` command; upload nothing")
    s.set_defaults(func=cmd_sync)
    b = sub.add_parser("publish", help="write the table's W&B summary run from the store and rendered leaderboard")
    b.add_argument("spec", help="table name or spec path")
    b.add_argument("--results", help="results store directory (default: $HASHBENCH_RESULTS or ./results)")
    b.add_argument("--out", help="where the rendered leaderboard is (default: leaderboards/)")
    b.add_argument("--profile", help="the table's profile (default: the spec's)")
    b.add_argument("--wandb", default="offline", choices=["offline", "online"], help="W&B mode (default offline)")
    b.set_defaults(func=cmd_publish)
    return p


def _link_dir(store_root: Path, link: dict[str, Any] | None) -> Path | None:
    if not link or not link.get("dir"):
        return None
    path = Path(link["dir"])
    return path if path.is_absolute() else store_root / path


def offline_runs(store: Any, spec: Any = None, profile: str | None = None) -> list[tuple[Path, str | None]]:
    """The offline run folders to upload, each with the store key of its cell (``None`` for a summary run).

    With ``spec``: the runs of the table's cells for ``profile`` that the store holds, then the table's summary
    run; without: every ``offline-run-*`` folder of the store. Runs already uploaded are left out.
    """
    from hashbench.bench.wandb_report import leaderboard_pointer, read_json

    root = Path(store.root)
    found: list[tuple[Path, str | None]] = []
    if spec is None:
        folder = root / "wandb" / "wandb"
        found = [(p, None) for p in sorted(folder.glob("offline-run-*"))] if folder.is_dir() else []
        keys = {}
        for path in store.cells_dir.glob("*.json"):
            if path.name.endswith(".error.json"):
                continue
            record = read_json(path) or {}
            run_dir = _link_dir(root, record.get("wandb"))
            if run_dir is not None:
                keys[run_dir.resolve()] = record.get("key")
        found = [(p, keys.get(p.resolve())) for p, _ in found]
    else:
        import warnings

        from hashbench.bench.grid import expand_grid

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # unregistered methods have no cells to upload
            cells, _ = expand_grid(spec, profile)
        for cell in cells:
            record = store.get(cell.key)
            run_dir = _link_dir(root, (record or {}).get("wandb"))
            if run_dir is not None and run_dir.is_dir():
                found.append((run_dir, cell.key))
        summary = _link_dir(root, read_json(leaderboard_pointer(root, spec.name)))
        if summary is not None and summary.is_dir():
            found.append((summary, None))
    return [(p, k) for p, k in found if p.name.startswith("offline-run-") and not _synced(p)]


def _synced(run_dir: Path) -> bool:
    return any(run_dir.glob("run-*.wandb.synced"))


def cmd_sync(args: argparse.Namespace) -> int:
    from hashbench.bench.runner import check_wandb_mode
    from hashbench.bench.spec import load_spec
    from hashbench.bench.store import ResultStore
    from hashbench.bench.wandb_report import read_offline_run

    store = ResultStore(args.results)
    spec = load_spec(args.spec) if args.spec else None
    runs = offline_runs(store, spec, args.profile)
    what = f"table {spec.name}" if spec else f"store {store.root}"
    if not runs:
        print(f"{what}: no offline W&B run left to upload")
        return 0
    command = [sys.executable, "-m", "wandb", "sync", "--no-include-synced"]
    if args.project:
        command += ["--project", args.project]
    if args.entity:
        command += ["--entity", args.entity]
    command += [str(p) for p, _ in runs]
    print(f"{what}: {len(runs)} offline W&B run(s) to upload")
    for path, _key in runs:
        info = read_offline_run(path)["run"]
        print(f"  {info.get('name') or '?'}  (group {info.get('group') or '—'}, id {info.get('id')})  {path}")
    if args.dry_run:
        print("would run: " + " ".join(command[2:] if command[1] == "-m" else command))
        return 0
    check_wandb_mode("online")  # a clear error without an API key, before wandb prompts for one
    proc = subprocess.run(command)
    if proc.returncode != 0:
        raise RuntimeError(f"`wandb sync` exited with status {proc.returncode} (see its output above)")
    return _after_sync(store, spec, runs, args.project, args.entity)


def _after_sync(store: Any, spec: Any, runs: list[tuple[Path, str | None]], project: str | None, entity: str | None):
    """Record the uploaded runs' URLs in the store, save the table's workspace, print the one URL to open."""
    import wandb

    from hashbench.bench.wandb_report import build_workspace, leaderboard_pointer, read_json, read_offline_run

    api = wandb.Api()
    entity = entity or api.default_entity
    urls: dict[Path, str] = {}
    for path, key in runs:
        info = read_offline_run(path)["run"]
        url = api.run(f"{entity}/{project or info['project']}/{info['id']}").url
        urls[path] = url
        record = store.get(key) if key else None
        if record is not None:
            record["wandb"] = {**(record.get("wandb") or {}), "url": url, "synced": True}
            store.put(key, record)
    if spec is None:
        print(f"uploaded {len(runs)} run(s)")
        return 0
    pointer = leaderboard_pointer(store.root, spec.name)
    link = read_json(pointer) or {}
    summary = _link_dir(Path(store.root), link)
    target = urls.get(summary) if summary is not None else None
    try:
        saved = build_workspace(spec, entity, project or link.get("project")).save()
        target = saved.url
        link["workspace"] = target
    except ImportError:  # wandb-workspaces is optional: then the summary run is the page to open
        print("note: pip install 'hashbench[wandb]' to get a generated workspace for the table's group")
    if summary is not None and summary in urls:
        link["url"] = urls[summary]
    link["open"] = target or link.get("open")
    from hashbench.bench.store import atomic_write_json

    atomic_write_json(pointer, link)
    print(f"uploaded {len(runs)} run(s); re-render to link them: hashbench table {spec.name} --render-only")
    print(f"W&B: {link['open']}")
    return 0


def cmd_publish(args: argparse.Namespace) -> int:
    from hashbench.bench.render import leaderboards_dir
    from hashbench.bench.runner import check_wandb_mode
    from hashbench.bench.spec import load_spec
    from hashbench.bench.store import ResultStore
    from hashbench.bench.wandb_report import finish_table

    spec = load_spec(args.spec)
    check_wandb_mode(args.wandb)
    store = ResultStore(args.results)
    out = Path(args.out) if args.out else leaderboards_dir()
    paths = {
        "md": out / f"{spec.name}.md",
        "csv": out / f"{spec.name}.csv",
        "png": out / f"{spec.name}.png",
        "examples": out / f"{spec.name}-examples.png",
    }
    if not paths["csv"].is_file():
        raise FileNotFoundError(f"{paths['csv']} does not exist: render the table first (hashbench table {spec.name})")
    line, ok = finish_table(spec, store, paths, args.wandb, args.profile)
    print(line, file=sys.stdout if ok else sys.stderr)
    return 0 if ok else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``hashbench wandb`` with the arguments after ``wandb``; returns the exit status."""
    from hashbench.errors import cli_boundary

    def run(args: list[str]) -> int:
        parsed = build_parser().parse_args(args)
        return parsed.func(parsed)

    return cli_boundary("hashbench wandb", run, list(argv) if argv is not None else sys.argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
