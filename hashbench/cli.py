"""The ``hashbench`` command.

Subcommands:
  fit | validate | test   Lightning's CLI over any method x any datamodule (``--model DPSH --data fashion-mnist``);
                          every ``__init__`` argument is an option (``--model.n_bits 48``, ``--data.batch_size 64``,
                          ``--trainer.max_epochs 20``); ``--print_config`` writes a reusable YAML config.
  run                     one cell: fit, select the best validation epoch, test, print the metrics.
  list                    registered methods (and ``list --protocols`` for the data protocols).
  data                    ``data list | verify NAME | prepare NAME``.
  weights                 ``weights list | verify [NAME] | prepare NAME``: pretrained weights files and checksums.
  table                   regenerate a comparison table from ``experiments/tables/<name>.yaml``.
  wandb                   ``wandb sync [SPEC] | publish SPEC``: upload a table's offline W&B runs and print the URL
                          to open; (re)write a table's W&B summary run.
  export                  ``export CKPT|RUN --data PROTOCOL --index flat|hash|multihash|hnsw|mih OUT``: the
                          database's codes in a faiss binary index or hashbench's MIH (plus ``OUT.meta.json``).
  search                  ``search INDEX --image PATH | --query-split``: top-k of each query with its distance.

Method and data names are the registry's (case-insensitive): ``--model dmsh-ln``, ``--data cifar10-1``.
W&B logging is offline unless ``--wandb online`` is given (and a key is configured); ``--wandb disabled`` turns
it off. Runs go to ``runs/`` (CSV logs, checkpoints, offline W&B runs).

Options of every subcommand: ``-v`` / ``--verbose`` before the subcommand shows the third-party warnings that
hashbench hides as harmless (``hashbench.quiet``); ``--debug`` (or HASHBENCH_DEBUG=1) shows the traceback of an
error. A user error prints one line, ``hashbench <cmd>: error: <what and how to fix it>``, and exits with
  1 failed cells of a table (or a bug: then the traceback is shown)   2 unknown name / bad option value
  3 missing data, weights or checkpoint   4 checksum mismatch   5 bad config, table spec or plugin
  6 output not writable   7 the training loss became NaN/inf   8 out of memory   130 interrupted (Ctrl-C)
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

__all__ = ["main"]

LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")
_COMMANDS = "{fit,validate,test,run,list,data,weights,table,wandb,export,search}"


def _usage() -> str:
    return (__doc__ or "").split("\n", 2)[2]


def _pop_option(argv: list[str], name: str) -> str | None:
    """Remove ``--name VALUE`` / ``--name=VALUE`` from argv and return VALUE (None when absent)."""
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            value = argv[i + 1]
            del argv[i : i + 2]
            return value
        if arg.startswith(name + "="):
            del argv[i]
            return arg.split("=", 1)[1]
    return None


def _is_class_path_or_config(value: str) -> bool:
    return "." in value or value.startswith("{") or value.endswith((".yaml", ".yml", ".json"))


def rewrite_lightning_args(argv: list[str]) -> tuple[list[str], str]:
    """Turn registry names into the class paths LightningCLI expects; add defaults.

    ``--model DPSH`` -> ``--model hashbench.methods.dpsh.DPSH``; ``--data cifar10-1`` ->
    ``--data hashbench.data.CIFAR10DataModule --data.protocol cifar10-1``. Returns the new argv and the W&B mode.
    Method names go through :func:`hashbench.registry.resolve_method` (a class path is passed on as it is).
    """
    from hashbench.registry import resolve_method

    argv = list(argv)
    wandb_mode = _pop_option(argv, "--wandb") or os.environ.get("WANDB_MODE", "offline")
    if wandb_mode not in ("offline", "online", "disabled"):
        raise SystemExit(f"--wandb must be offline, online or disabled; got {wandb_mode!r}")
    out: list[str] = [argv[0]]
    rest = argv[1:]
    has_data = any(a == "--data" or a.startswith("--data=") for a in rest)
    if not has_data and not any(a in ("-c", "--config") or a.startswith("--config=") for a in rest):
        rest = [*rest, "--data", "fashion-mnist"]
    i = 0
    while i < len(rest):
        arg = rest[i]
        key, value = (arg.split("=", 1) + [None])[:2] if arg.startswith("--") and "=" in arg else (arg, None)
        if key in ("--model", "--data"):
            if value is None and i + 1 < len(rest):
                value = rest[i + 1]
                i += 1
            if value is not None and not _is_class_path_or_config(value):
                if key == "--model":
                    cls = resolve_method(value)  # an unknown name is a user error (hashbench.errors)
                    out += [key, f"{cls.__module__}.{cls.__qualname__}"]
                else:
                    from hashbench.data import datamodule_class_for

                    cls = datamodule_class_for(value)
                    out += [key, f"{cls.__module__}.{cls.__qualname__}", "--data.protocol", value]
                i += 1
                continue
            out += [key] if value is None else [key, value]
            i += 1
            continue
        out.append(arg)
        i += 1
    return out, wandb_mode


def _cli_class(wandb_mode: str) -> type:
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.cli import LightningCLI
    from lightning.pytorch.loggers import CSVLogger, WandbLogger

    class HashbenchCLI(LightningCLI):
        def add_arguments_to_parser(self, parser: Any) -> None:
            # The checkpoint rule: best validation mAP (validation queries carved from the training split) + last.
            parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
            parser.set_defaults(
                {
                    "checkpoint.monitor": "val/mAP",
                    "checkpoint.mode": "max",
                    "checkpoint.save_last": True,
                    "checkpoint.filename": "best-{epoch}",
                }
            )

        def instantiate_trainer(self, **kwargs: Any) -> Any:
            # Unless --trainer.logger is given: CSV logs, plus W&B in the chosen mode (offline by default).
            if self._get(self.config_init, "trainer", default={}).get("logger") in (None, True):
                loggers: list[Any] = [CSVLogger(save_dir="runs", name="csv")]
                if wandb_mode != "disabled":
                    from hashbench.quiet import without_anonymous_setting

                    wandb = WandbLogger(project="hashbench", save_dir="runs", mode=wandb_mode)
                    loggers.append(without_anonymous_setting(wandb))
                kwargs.setdefault("logger", loggers)
            return super().instantiate_trainer(**kwargs)

    return HashbenchCLI


def _lightning(argv: list[str]) -> int:
    import lightning as L

    import hashbench.methods  # noqa: F401  (registers every method class)
    from hashbench.methods.base import HashingMethod

    argv, wandb_mode = rewrite_lightning_args(argv)
    if wandb_mode == "online" and not (
        os.environ.get("WANDB_API_KEY") or os.path.exists(os.path.expanduser("~/.netrc"))
    ):
        raise SystemExit("--wandb online needs a W&B key: run `wandb login` or set WANDB_API_KEY")
    os.environ["WANDB_MODE"] = "offline" if wandb_mode == "disabled" else wandb_mode
    _cli_class(wandb_mode)(
        HashingMethod,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=argv,
        trainer_defaults={"default_root_dir": "runs", "max_epochs": 10},
        save_config_kwargs={"overwrite": True},
        auto_configure_optimizers=False,
    )
    return 0


def _list(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="hashbench list", description="List registered methods or protocols.")
    parser.add_argument("pattern", nargs="?", help="glob over method names, e.g. 'd*h'")
    parser.add_argument("--protocols", action="store_true", help="list data protocols instead of methods")
    parser.add_argument(
        "--markdown", action="store_true", help="print README.md's method table (paper, venue, supervision, loss)"
    )
    parser.add_argument(
        "--ddp",
        action="store_true",
        help="add what each loss sees of the batch under DDP: global (gathered over processes), per-sample, "
        "per-process (in-batch terms on B/n rows) or closed-form",
    )
    args = parser.parse_args(argv)
    if args.protocols:
        from hashbench.data.cli import main as data_main

        return data_main(["list"])
    if args.markdown:
        from hashbench.docs import method_table

        print(method_table(args.pattern), end="")  # the README's table (`make docs`): hashbench's own methods
        return 0
    from hashbench.registry import get_method, list_methods

    rows = [(n, get_method(n)) for n in list_methods(args.pattern)]
    ddp = f"{'ddp batch':<12} " if args.ddp else ""
    print(f"{'method':<15} {'supervision':<13} {ddp}{'paper':<40} note")
    for name, cls in rows:
        p = cls.paper
        note = "[R] loss reconstructed (see the module docstring)" if p.reconstruction else ""
        ddp = f"{cls.ddp_batch or '?':<12} " if args.ddp else ""
        print(f"{name:<15} {cls.supervision:<13} {ddp}{(p.venue + ' ' + str(p.year))[:40]:<40} {note}")
    return 0


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="hashbench run",
        description="Fit one method on one protocol, keep the best validation epoch, test it and print the metrics.",
    )
    parser.add_argument(
        "--model", "--method", dest="method", required=True, help="registry name (e.g. DPSH) or a class's import path"
    )
    parser.add_argument("--data", default="fashion-mnist", help="protocol name (see `hashbench data list`)")
    parser.add_argument("--bits", type=int, nargs="+", default=[48], help="code lengths (default: 48)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--profile", default="quick", help="training profile: smoke | quick | paper")
    parser.add_argument("--epochs", type=int, help="override the profile's number of epochs")
    parser.add_argument("--progress", action="store_true", help="show Lightning's progress bar")
    args = parser.parse_args(argv)
    from hashbench.bench.profiles import resolve_profile
    from hashbench.bench.run import run_cell
    from hashbench.registry import resolve_method

    if any(bits < 1 for bits in args.bits):
        parser.error(f"--bits must be positive code lengths, got {args.bits}")
    profile = resolve_profile(None, args.profile, resolve_method(args.method))
    from hashbench.data import get_protocol

    get_protocol(args.data)  # an unknown protocol fails here, before any training
    for bits in args.bits:
        res = run_cell(
            args.method,
            args.data,
            n_bits=bits,
            seed=args.seed,
            profile=profile,
            trainer_kwargs={"max_epochs": args.epochs} if args.epochs else None,
            progress=args.progress,
        )
        shown = ", ".join(f"{k}={v:.4f}" for k, v in res.metrics.items())
        print(
            f"{res.method} {res.protocol} {bits} bits (best epoch {res.best_epoch}, {res.wall_time_s:.0f} s): {shown}"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``hashbench`` console script: every subcommand runs inside the error boundary."""
    from hashbench.errors import cli_boundary, debug_requested
    from hashbench.quiet import install_warning_filters, verbose_requested

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = debug_requested(argv)
    install_warning_filters(verbose=verbose_requested(argv))
    prog = "hashbench" if not argv or argv[0].startswith("-") else f"hashbench {argv[0]}"
    return cli_boundary(prog, _dispatch, argv, debug=debug)


def _dispatch(argv: list[str]) -> int:
    os.environ.setdefault("WANDB_MODE", "offline")
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(f"usage: hashbench [-v] [--debug] {_COMMANDS} ...\n" + _usage())
        return 0
    cmd, rest = argv[0], argv[1:]
    if cmd in LIGHTNING_COMMANDS:
        return _lightning(argv)
    if cmd == "list":
        return _list(rest)
    if cmd == "run":
        return _run(rest)
    if cmd == "data":
        from hashbench.data.cli import main as data_main

        return data_main(rest)
    if cmd == "weights":
        from hashbench.cli_weights import main as weights_main

        return weights_main(rest)
    if cmd == "table":
        from hashbench.bench.cli import main as table_main

        return table_main(rest)
    if cmd == "wandb":
        from hashbench.cli_wandb import main as wandb_main

        return wandb_main(rest)
    if cmd == "export":
        from hashbench.cli_search import export_main

        return export_main(rest)
    if cmd == "search":
        from hashbench.cli_search import search_main

        return search_main(rest)
    from hashbench.errors import did_you_mean

    maybe = did_you_mean(cmd, _COMMANDS.strip("{}").split(","))
    print(f"hashbench: error: unknown command {cmd!r}{maybe}\nusage: hashbench {_COMMANDS} ...", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
