"""User errors and the command line's error boundary.

Every ``hashbench`` subcommand runs inside :func:`cli_boundary`. A mistake of the user's (an unknown method,
protocol or option value, missing data or weights, a bad config or table spec, a checksum mismatch, an output
folder that cannot be written, a training run whose loss became NaN) ends with one line on stderr,

    hashbench run: error: unknown method 'DPHS'; did you mean 'DPSH'? (registered methods: ...)

and a non-zero exit status that tells the kinds apart (:data:`EXIT_CODES`), without a Python traceback.
``--debug`` (anywhere on the command line) or ``HASHBENCH_DEBUG=1`` shows the traceback as well. Anything else is a
bug: it is shown with its traceback and the request to report it.

The library raises ordinary exception types, so code that calls hashbench keeps catching ``KeyError`` /
``ValueError`` / ``FileNotFoundError``: :class:`UnknownNameError` *is* a ``KeyError``, the checksum errors are
``ValueError`` s, the missing-data and missing-weights errors ``FileNotFoundError`` s.
"""

from __future__ import annotations

import difflib
import errno
import os
import sys
import traceback
from collections.abc import Callable, Iterable, Sequence
from typing import Any

__all__ = [
    "EXIT_CODES",
    "MissingExtraError",
    "UnknownNameError",
    "classify",
    "cli_boundary",
    "debug_requested",
    "did_you_mean",
    "optional_import",
    "suggest",
]

#: exit status of each kind of failure (argparse's own usage errors exit with 2 as well)
EXIT_CODES: dict[str, int] = {
    "failed": 1,  # a table finished but some cells failed; or an internal error (a bug)
    "usage": 2,  # unknown name, bad option value, wrong arguments
    "missing": 3,  # a dataset, list file, weights file or checkpoint is not there
    "checksum": 4,  # a file's checksum differs from the recorded one
    "config": 5,  # a config file, table spec or plugin cannot be used
    "output": 6,  # an output path cannot be written
    "diverged": 7,  # a training loss became NaN or infinite
    "resources": 8,  # out of (GPU) memory
    "interrupted": 130,  # Ctrl-C
}

DEBUG_ENV = "HASHBENCH_DEBUG"


def suggest(name: str, choices: Iterable[str], n: int = 3) -> list[str]:
    """The registered names closest to ``name`` (case- and punctuation-insensitive), best first."""
    choices = list(choices)

    def norm(s: str) -> str:
        return "".join(ch for ch in s.lower() if ch.isalnum())

    by_norm: dict[str, str] = {}
    for choice in choices:
        by_norm.setdefault(norm(choice), choice)
    close = difflib.get_close_matches(norm(name), list(by_norm), n=n, cutoff=0.6)
    return [by_norm[c] for c in close]


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'A' or 'B'?"`` with the closest ``choices`` (:func:`suggest`), or ``""`` when none is close."""
    close = suggest(name, choices)
    return "; did you mean " + " or ".join(repr(c) for c in close) + "?" if close else ""


class UnknownNameError(KeyError):
    """An unknown method, protocol, datamodule family, profile, weights or table name.

    A ``KeyError`` (so ``except KeyError`` keeps working) whose message suggests the closest known names and lists
    them all. ``str()`` gives the plain message (a bare ``KeyError`` would print it with quotes).
    """

    def __init__(self, kind: str, name: str, choices: Iterable[str], hint: str = "") -> None:
        self.kind, self.name, self.choices = kind, name, list(choices)
        message = f"unknown {kind} {name!r}{did_you_mean(name, self.choices)}"
        known = ", ".join(self.choices) if self.choices else "none"
        message += f" (known: {known})"
        if hint:
            message += f"; {hint}"
        self.message = message
        super().__init__(message)

    def __str__(self) -> str:
        return self.message


class MissingExtraError(ImportError):
    """A feature needs a package of one of hashbench's optional extras that is not installed."""


def optional_import(module: str, extra: str, feature: str) -> Any:
    """Import ``module`` of the optional extra ``extra``; when it is missing, say which feature needs it and how
    to install it (:class:`MissingExtraError`)."""
    import importlib

    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as err:
        if err.name != module.split(".")[0]:
            raise
        raise MissingExtraError(
            f"{feature} needs the package {err.name!r}, which is not installed: "
            f"pip install 'hashbench[{extra}]' (or `make install` in a clone, which installs every extra)"
        ) from None


def _message(err: BaseException) -> str:
    if isinstance(err, KeyError) and not isinstance(err, UnknownNameError) and len(err.args) == 1:
        text = str(err.args[0])
    else:
        text = str(err)
    return text.strip() or type(err).__name__


def classify(err: BaseException) -> str | None:
    """The kind of user error ``err`` is (a key of :data:`EXIT_CODES`), or None for a bug."""
    # hashbench's own error types first: several of them subclass ValueError / FileNotFoundError
    from hashbench.bench.spec import SpecError, SpecNotFoundError
    from hashbench.data.roots import DataChecksumError
    from hashbench.data.splits import SplitChecksumError
    from hashbench.nn.weights import WeightsChecksumError
    from hashbench.plugins import PluginError

    if isinstance(err, (SplitChecksumError, DataChecksumError, WeightsChecksumError)):
        return "checksum"
    if isinstance(err, (SpecError, PluginError)):
        return "config"
    if isinstance(err, FloatingPointError):
        return "diverged"
    if type(err).__name__ == "OutOfMemoryError":  # torch.OutOfMemoryError (CUDA), without importing torch here
        return "resources"
    if isinstance(err, (UnknownNameError, SpecNotFoundError)):
        return "usage"
    if isinstance(err, (PermissionError, IsADirectoryError, NotADirectoryError)) or (
        isinstance(err, OSError) and err.errno in (errno.EROFS, errno.EACCES, errno.ENOSPC)
    ):
        return "output"
    if isinstance(err, (FileNotFoundError, MissingExtraError)):
        return "missing"
    if type(err).__module__.startswith("yaml") or type(err).__name__ in ("JSONDecodeError", "ArgumentError"):
        return "config"
    if isinstance(err, ValueError):
        # hashbench checks its inputs with ValueError (bad option values: n_bits=0, a bad list-file line, ...)
        return "usage"
    if isinstance(err, KeyError) and len(err.args) == 1 and " " in str(err.args[0]):
        # a lookup of hashbench's that explains itself ("unknown method(s) [...]; registered methods: ..."); a bare
        # KeyError('some_key') is a bug and keeps its traceback
        return "usage"
    return None


def debug_requested(argv: list[str]) -> bool:
    """Whether ``--debug`` is on the command line (it is removed from ``argv``) or ``HASHBENCH_DEBUG`` is set."""
    end = argv.index("--") if "--" in argv else len(argv)
    for i in reversed(range(end)):
        if argv[i] == "--debug":
            del argv[i]
            os.environ[DEBUG_ENV] = "1"  # nested boundaries (subcommand mains, cell workers) see it too
    return _debug_env()


def _debug_env() -> bool:
    return os.environ.get(DEBUG_ENV, "").strip() not in ("", "0", "false", "no")


def cli_boundary(prog: str, fn: Callable[[list[str]], int], argv: Sequence[str], debug: bool | None = None) -> int:
    """Run ``fn(argv)`` and turn a user error into one line on stderr and its exit status (:data:`EXIT_CODES`).

    A ``SystemExit`` becomes its status (argparse's usage errors, ``--help``); a string ``SystemExit`` message is
    printed like any other error. Ctrl-C exits with 130 after one line; a closed stdout pipe (``| head``)
    ends quietly. ``debug=None`` reads HASHBENCH_DEBUG (which ``--debug`` sets, see :func:`debug_requested`).
    """
    if debug is None:
        debug = _debug_env()
    try:
        return int(fn(list(argv)) or 0)
    except SystemExit as stop:  # argparse has printed its usage error (or --help); a string is our message
        if isinstance(stop.code, str):
            print(f"{prog}: error: {stop.code}", file=sys.stderr)
            return EXIT_CODES["usage"]
        return int(stop.code or 0)
    except KeyboardInterrupt:
        if debug:
            traceback.print_exc()
        print(f"\n{prog}: interrupted", file=sys.stderr)
        return EXIT_CODES["interrupted"]
    except BrokenPipeError:
        # the reader went away (`hashbench table X --plan | head`): stop writing, without a traceback
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except OSError:
            pass
        return 0
    except Exception as err:  # noqa: BLE001 - this is the boundary
        kind = classify(err)
        if debug or kind is None:
            traceback.print_exc()
        if kind is None:
            print(
                f"{prog}: internal error: {type(err).__name__}: {_message(err)}\n"
                "This is a bug in hashbench; please report it with the traceback above.",
                file=sys.stderr,
            )
            return EXIT_CODES["failed"]
        print(f"{prog}: error: {_message(err)}", file=sys.stderr)
        return EXIT_CODES[kind]
