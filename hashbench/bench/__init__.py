"""Benchmarks as data: table specs → cells → results store → leaderboards.

- :mod:`hashbench.bench.run`: :func:`~hashbench.bench.run.run_cell`, the one code path every number goes through.
- :mod:`hashbench.bench.profiles`: the training profiles and :func:`~hashbench.bench.profiles.resolve_profile`.
- :mod:`hashbench.bench.spec`: ``experiments/tables/<name>.yaml`` parsing and validation.
- :mod:`hashbench.bench.grid`: methods × bits × seeds expansion, cache keys, shards.
- :mod:`hashbench.bench.store`: one JSON per finished cell (atomic writes) and per-cell locks.
- :mod:`hashbench.bench.runner`: runs the pending cells (in process, or one DDP child process per cell).
- :mod:`hashbench.bench.render`: ``leaderboards/<name>.md|csv|png`` from the store alone.
- :mod:`hashbench.bench.cli`: ``hashbench table ...``.

Submodules are imported on use so that ``import hashbench.bench`` stays light.
"""
