"""``hashbench table SPEC ...``: run a comparison table's grid and render its leaderboard.

The ``hashbench`` console script dispatches ``hashbench table ...`` to :func:`main`; it also runs standalone as
``python -m hashbench.bench.cli SPEC ...``.

Before the first cell, a preflight checks everything the cells need (data files and checksums, split files,
pretrained weights, writable store and output folder, a W&B key for ``--wandb online``) and, if anything is
missing, lists it all with how to get it and runs nothing. A render never replaces a leaderboard that holds more
finished cells (``--replace`` forces it).

Examples:
    hashbench table fashion-mnist --profile demo           # the README demo (cached cells are skipped)
    hashbench table cifar10 --plan                         # the cells, their cache state, a time estimate
    hashbench table cifar10 --seeds 3 --devices 2          # DDP on 2 GPUs per cell
    hashbench table cifar10 --launcher submitit --slurm-partition gpu  # one SLURM array task per cell
    hashbench table cifar10 --shard $SLURM_ARRAY_TASK_ID/8 # one of 8 machines sharing the results store
    hashbench table cifar10 --render-only                  # leaderboard from the store alone
    hashbench table fashion-mnist --compare /path/to/their/results  # does this store reproduce theirs?
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any

import yaml

from hashbench.bench.grid import parse_shard

__all__ = ["main", "build_parser"]


def _seeds(text: str) -> list[int]:
    try:
        if "," in text:
            seeds = [int(s) for s in text.split(",") if s.strip()]
            if any(s < 0 for s in seeds):
                raise ValueError
            return seeds
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--seeds takes a count N (seeds 0..N-1) or a list like 0,3,7; got {text!r}"
        ) from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"--seeds count must be >= 1, got {n}")
    return list(range(n))


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _setting(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(
            f"--set takes KEY=VALUE (e.g. max_steps=3 or data.image_size=64), got {text!r}"
        )
    try:
        return key.strip(), yaml.safe_load(value)
    except yaml.YAMLError as err:
        raise argparse.ArgumentTypeError(f"--set {key}: cannot parse the value {value!r}: {err}") from None


def apply_settings(spec: Any, profile: str, settings: list[tuple[str, Any]]) -> None:
    """Override training settings of ``profile`` in ``spec`` (in place) from ``--set KEY=VALUE`` pairs.

    The overrides become part of the table's profile, so every cell's configuration (and cache key) carries them
    and the leaderboard header shows them. ``data.<key>`` sets a datamodule argument of the profile.
    """
    if not settings:
        return
    body = dict(spec.profiles.get(profile) or {"base": profile})
    for key, value in settings:
        if key.startswith("data."):
            body["data"] = {**dict(body.get("data") or {}), key.split(".", 1)[1]: value}
        else:
            body[key] = value
    spec.profiles[profile] = body


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hashbench table",
        description="Run a comparison table (experiments/tables/<SPEC>.yaml) and render leaderboards/<SPEC>.md|csv|png "
        "with the paper's numbers beside hashbench's. Finished cells are cached in the results store and skipped.",
    )
    p.add_argument("spec", nargs="?", help="table name (experiments/tables/<name>.yaml) or a path to a spec file")
    p.add_argument("--list", action="store_true", help="list the available table specs and exit")
    p.add_argument("--profile", help="training profile: smoke | quick | paper | a profile the spec defines")
    p.add_argument("--seeds", type=_seeds, help="number of seeds N (0..N-1) or a list 0,3,7 (default: the spec's)")
    p.add_argument("--devices", type=_positive, default=1, help="devices per cell; > 1 runs each cell with DDP")
    p.add_argument(
        "--num-nodes", type=_positive, default=1, help="nodes per cell (Lightning num_nodes; > 1 needs SLURM)"
    )
    p.add_argument("--strategy", help="Lightning strategy (default: ddp when devices x nodes > 1)")
    p.add_argument("--accelerator", default="auto", help="Lightning accelerator: auto | cpu | gpu (default auto)")
    p.add_argument("--shard", help="i/n: run only shard i (0-based) of n; shards share --results, no coordinator")
    p.add_argument("--wandb", default="offline", choices=["offline", "online", "disabled"], help="W&B mode")
    p.add_argument("--results", help="results store directory (default: $HASHBENCH_RESULTS or ./results)")
    p.add_argument("--out", help="where the leaderboard files go (default: leaderboards/)")
    p.add_argument("--methods", nargs="+", help="run only these methods of the table")
    p.add_argument("--bits", nargs="+", type=_positive, help="run only these bit lengths of the table")
    p.add_argument(
        "--set",
        dest="settings",
        action="append",
        type=_setting,
        default=[],
        metavar="KEY=VALUE",
        help="override a setting of the profile for this run, e.g. --set max_steps=3 --set data.image_size=64 "
        "(repeatable; part of every cell's cache key, so such cells never mix with full runs)",
    )
    p.add_argument(
        "--plan", action="store_true", help="print the cells, their cache state and a time estimate; run nothing"
    )
    p.add_argument(
        "--download",
        action="store_true",
        help="let the preflight download public datasets that are missing (CIFAR-10, SVHN, Fashion-MNIST)",
    )
    p.add_argument("--render-only", action="store_true", help="render from the results store without running")
    p.add_argument(
        "--compare",
        metavar="OTHER_STORE",
        help="run nothing: tell for every (method, bits) whether the cells in --results (a re-run) reproduce those "
        "in OTHER_STORE (the stored reference): identical (same value on every seed), within spread (re-run mean "
        "within 2 seed std of the stored mean), differs, or missing; cells are matched by configuration, any code "
        "version. Exit status 1 when any group differs or is missing",
    )
    p.add_argument(
        "--replace", action="store_true", help="overwrite the leaderboard even if it holds more finished cells"
    )
    p.add_argument("--allow-stale", action="store_true", help="render cells of older code versions (marked †)")
    p.add_argument("--strict-version", action="store_true", help="put the git commit into every cell's cache key")
    p.add_argument("--fail-fast", action="store_true", help="stop at the first failing cell (default: go on)")
    p.add_argument("--clear-locks", action="store_true", help="remove every cell lock in the store, then exit")
    p.add_argument("--no-figure", action="store_true", help="skip the PNG figure")
    scale = p.add_argument_group(
        "scaling out (--launcher submitit)",
        "Submit the table's uncached cells as one job array through submitit: on SLURM one array task per cell, "
        "all writing to the shared --results store; without SLURM submitit's local executor runs one process per "
        "cell on this machine. Re-submitting submits only the cells still missing. --shard stays the low-level "
        "alternative (one process per shard, started by you).",
    )
    scale.add_argument(
        "--launcher", choices=["none", "submitit"], default="none", help="how cells are started (default: here)"
    )
    scale.add_argument(
        "--submitit-cluster",
        choices=["auto", "slurm", "local", "debug"],
        default="auto",
        help="submitit executor: auto = SLURM where sbatch exists, else local (default auto)",
    )
    scale.add_argument("--slurm-partition", help="SLURM partition")
    scale.add_argument(
        "--slurm-gpus-per-task",
        type=int,
        choices=[0, 1],
        default=1,
        help="GPUs per SLURM task (= per DDP process): 1, or 0 for CPU cells; a cell on N GPUs is --devices N",
    )
    scale.add_argument("--slurm-time", default="4:00:00", help="time limit per cell, MM or HH:MM:SS (default 4:00:00)")
    scale.add_argument(
        "--array-parallelism", type=_positive, default=64, help="array tasks running at once (default 64)"
    )
    scale.add_argument("--slurm-cpus-per-task", type=_positive, help="CPUs per SLURM task (data loading workers)")
    scale.add_argument("--slurm-mem-gb", type=float, help="memory per node in GB")
    scale.add_argument("--slurm-account", help="SLURM account")
    scale.add_argument("--slurm-qos", help="SLURM quality of service")
    scale.add_argument("--slurm-constraint", help="SLURM node constraint (e.g. a GPU type)")
    scale.add_argument(
        "--no-wait",
        action="store_true",
        help="submit and return; render later with --render-only (default: wait, report each cell, render)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``hashbench table``; returns the process exit status (1 when a cell failed, the codes of
    :data:`hashbench.errors.EXIT_CODES` for a user error, printed as one line)."""
    from hashbench.errors import cli_boundary

    return cli_boundary("hashbench table", _main, sys.argv[1:] if argv is None else argv)


def _main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)  # a usage error's SystemExit becomes its status in the boundary
    if args.num_nodes > 1 and args.launcher != "submitit":
        parser.error("--num-nodes > 1 needs a multi-node launcher: add --launcher submitit (on SLURM)")

    from hashbench.bench.render import render_table
    from hashbench.bench.runner import RunOptions, run_table
    from hashbench.bench.spec import list_specs, load_spec
    from hashbench.bench.store import ResultStore

    if args.list:
        for name in list_specs():
            spec = load_spec(name)
            print(f"{name:18s} {spec.title}")
        return 0
    if not args.spec:
        parser.print_usage(sys.stderr)
        print("hashbench table: error: SPEC is required (see --list)", file=sys.stderr)
        return 2
    spec = load_spec(args.spec)  # errors (unknown table, bad spec) go to the CLI's error boundary
    shard = parse_shard(args.shard)
    store = ResultStore(args.results)
    if args.clear_locks:
        removed = store.clear_locks()
        print(f"removed {len(removed)} lock(s) from {store.cells_dir}")
        return 0
    from hashbench.bench.grid import expand_grid, shard_cells
    from hashbench.bench.preflight import format_problems, plan, preflight
    from hashbench.bench.render import LeaderboardKept, leaderboards_dir

    profile = args.profile or spec.profile
    apply_settings(spec, profile, args.settings)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is not registered in hashbench.*")
        cells, missing = expand_grid(spec, profile, args.seeds, args.methods, args.bits, strict=args.strict_version)
    if shard[1] > 1:
        cells = shard_cells(cells, *shard)
    out_dir = Path(args.out) if args.out else leaderboards_dir()
    if args.compare:
        from hashbench.bench.compare import compare_stores, format_comparison

        other = ResultStore(args.compare)
        if not other.cells_dir.is_dir():
            print(
                f"hashbench table: error: --compare {args.compare}: no results store there (no cells/ folder)",
                file=sys.stderr,
            )
            return 2
        comparisons = compare_stores(spec, store, other, profile, args.seeds, args.methods, args.bits)
        print(format_comparison(spec, comparisons, other.root, store.root))
        return 0 if all(c.reproduced for c in comparisons) else 1
    if args.plan:
        seeds = args.seeds if args.seeds is not None else spec.seeds
        print(f"table {spec.name}: profile {profile}, seeds {seeds}, store {store.root}")
        for line in plan(cells, store):
            print(line)
        report = preflight(cells, store, out_dir, args.wandb, download=False)
        if report.problems:
            print(format_problems(spec.name, report).replace("no cell was run", "a run would stop before cell 1"))
        return 0
    status = 0
    if not args.render_only:
        for name in missing:
            print(f"warning: method {name!r} is not registered in hashbench: skipped, rendered as 'not implemented'")
        report = preflight(cells, store, out_dir, args.wandb, download=args.download)
        if report.problems:
            print(format_problems(spec.name, report), file=sys.stderr)
            return report.exit_code
        for warning in report.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        options = RunOptions(
            profile=profile,
            seeds=args.seeds,
            methods=args.methods,
            bits=args.bits,
            devices=args.devices,
            num_nodes=args.num_nodes,
            accelerator=args.accelerator,
            strategy=args.strategy,
            shard=shard,
            wandb=args.wandb,
            results=store.root,
            strict_version=args.strict_version,
            keep_going=not args.fail_fast,
        )
        if args.launcher == "submitit":
            from hashbench.bench.launcher import LaunchOptions, launch_table, parse_slurm_time

            launch = LaunchOptions(
                cluster=args.submitit_cluster,
                partition=args.slurm_partition,
                gpus_per_task=args.slurm_gpus_per_task,
                time_min=parse_slurm_time(args.slurm_time),
                array_parallelism=args.array_parallelism,
                cpus_per_task=args.slurm_cpus_per_task,
                mem_gb=args.slurm_mem_gb,
                account=args.slurm_account,
                qos=args.slurm_qos,
                constraint=args.slurm_constraint,
                wait=not args.no_wait,
            )
            launched = launch_table(spec, options, launch)
            if args.no_wait:
                return 0
            print(
                f"table {spec.name}: {len(launched.finished)} ran, {launched.cached} cached, {len(launched.failed)} "
                f"failed, {len(launched.running)} running in other tasks"
            )
            if launched.failed:
                print(
                    f"failed cells (errors in {store.cells_dir}/<key>.error.json and the task logs under "
                    f"{store.root / 'submitit'}); re-run the same command to submit only them: "
                    f"{', '.join(launched.failed)}",
                    file=sys.stderr,
                )
                status = 1
        else:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*is not registered in hashbench.*")
                summary = run_table(spec, options)
            print(
                f"table {spec.name}: {summary.ran} ran, {summary.cached} cached, {len(summary.failed)} failed, "
                f"{len(summary.locked)} locked by other shards"
            )
            if summary.failed:
                print(
                    f"failed cells (errors in {store.cells_dir}/<key>.error.json): {', '.join(summary.failed)}",
                    file=sys.stderr,
                )
                status = 1
    try:
        paths = render_table(
            spec,
            store,
            out_dir=out_dir,
            profile=profile,
            seeds=args.seeds,
            allow_stale=args.allow_stale,
            strict=args.strict_version,
            figure=not args.no_figure,
            replace=args.replace,
        )
    except LeaderboardKept as kept:
        print(f"warning: {kept}", file=sys.stderr)
        return status
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    if not args.render_only and args.wandb != "disabled":
        # the table's W&B summary run (leaderboard table, figures, artifact; online: the workspace), then one line:
        # the URL to open, or where the offline runs are and how to upload them
        from hashbench.bench.wandb_report import finish_table

        line, ok = finish_table(spec, store, paths, args.wandb, profile, args.seeds)
        print(line, file=sys.stdout if ok else sys.stderr)
    return status


if __name__ == "__main__":
    raise SystemExit(main())
