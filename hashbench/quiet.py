"""Quiet by default: the third-party warnings hashbench knows to be harmless for its use are not printed.

The ``hashbench`` command calls :func:`install_warning_filters` before it does anything else (the table runner's
cell worker processes too); ``hashbench -v ...`` or ``HASHBENCH_VERBOSE=1`` skips it and shows everything. Each
entry of :data:`KNOWN_HARMLESS` says why the warning does not concern a hashbench run. Warnings that are not listed
(including every warning hashbench itself raises) are still shown, once per place as Python does by default.
Importing hashbench as a library changes no filter.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

__all__ = ["KNOWN_HARMLESS", "VERBOSE_ENV", "install_warning_filters", "verbose_requested", "without_anonymous_setting"]

VERBOSE_ENV = "HASHBENCH_VERBOSE"

#: (message regex, why it is harmless here). Matched against the start of the warning text.
KNOWN_HARMLESS: tuple[tuple[str, str], ...] = (
    (
        r".*isinstance\(treespec, LeafSpec\)` is deprecated",
        "Lightning 2.6 calls a torch.utils._pytree API that torch 2.14 deprecates, once per Trainer; nothing of "
        "hashbench's uses it, and it changes no result",
    ),
)


def verbose_requested(argv: list[str]) -> bool:
    """Whether ``-v`` / ``--verbose`` precedes the subcommand (removed from ``argv``) or HASHBENCH_VERBOSE is set."""
    found = False
    while argv and argv[0] in ("-v", "--verbose"):
        del argv[0]
        found = True
    return found or os.environ.get(VERBOSE_ENV, "").strip() not in ("", "0", "false", "no")


def install_warning_filters(verbose: bool = False) -> None:
    """Ignore the warnings of :data:`KNOWN_HARMLESS` (all of them stay visible with ``verbose``)."""
    if verbose:
        os.environ[VERBOSE_ENV] = "1"  # child processes (the table's cell workers) show everything too
        return
    for pattern, _why in KNOWN_HARMLESS:
        warnings.filterwarnings("ignore", message=pattern)


def without_anonymous_setting(logger: Any) -> Any:
    """``logger`` (a Lightning ``WandbLogger``) without the ``anonymous=None`` that Lightning 2.6 always passes to
    ``wandb.init``: wandb >= 0.22 answers it with "The anonymous setting has no effect" once per run (a line of its
    own, not a Python warning), and leaving the key out is what wandb asks for. A logger of another shape is
    returned unchanged."""
    init = getattr(logger, "_wandb_init", None)
    if isinstance(init, dict) and "anonymous" in init and init["anonymous"] is None:
        del init["anonymous"]
    return logger
