"""Child process that runs exactly one cell: ``python -m hashbench.bench.worker CELL_JSON OUT_JSON``.

Used by the table runner for multi-device cells (see :mod:`hashbench.bench.runner`). Lightning's DDP launcher
starts the other ranks by re-running this same command with ``LOCAL_RANK`` set; every rank trains, and rank 0
writes the result to ``OUT_JSON`` (atomically).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from hashbench.bench.grid import Cell
from hashbench.bench.runner import RunOptions, _is_rank_zero, _run_in_process
from hashbench.bench.store import atomic_write_json


def main(argv: list[str] | None = None) -> int:
    from hashbench.quiet import install_warning_filters, verbose_requested

    install_warning_filters(verbose=verbose_requested([]))  # the parent's -v reaches here as HASHBENCH_VERBOSE
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m hashbench.bench.worker CELL_JSON OUT_JSON", file=sys.stderr)
        return 2
    job = json.loads(Path(args[0]).read_text())
    cell = Cell(**job["cell"])
    opts = dict(job["options"])
    opts["shard"] = tuple(opts.get("shard", (0, 1)))
    options = RunOptions(**opts)
    payload = _run_in_process(cell, options, Path(options.results or "results"))
    if _is_rank_zero():
        atomic_write_json(Path(args[1]), payload)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
