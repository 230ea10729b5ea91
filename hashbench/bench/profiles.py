"""Training profiles: the built-in ones, a table spec's own, and the one function that resolves either.

A *profile* is the training settings a cell runs with (epochs, batch size, optimiser, learning rate, optional data
limits, and for table profiles a ``backbone`` and datamodule ``data`` settings). Everything downstream takes the
*resolved* settings, a plain mapping: :func:`resolve_profile` is the only place a profile name becomes settings,
for the table runner (``expand_grid`` stores the result in the cell's configuration, so it is part of the cache
key) and for :func:`hashbench.bench.run.run_cell` called with a name.

Built-in profiles (:data:`PROFILES`):

- ``smoke``: one short epoch on a few hundred images (does it run at all);
- ``quick``: a short fixed CPU schedule shared by every method (10 epochs, the last-but-best checkpoint);
- ``converged``: the schedule of the committed offline leaderboards: the ``quick`` optimiser settings, but each
  cell trains until its validation mAP has not improved for ``patience`` epochs (early stopping), at most
  ``max_epochs``, and is tested at its best-validation epoch; so the number measures the method, not the epoch
  budget. A cell that is still improving at the cap is flagged in the leaderboard (``capped``);
- ``paper``: each method's own ``paper_training`` recipe (the class attribute).

Profile keys that are not training-loop settings (``max_epochs``, ``max_steps``, ``batch_size``, ``patience``,
``min_delta``, ``train_limit``, ``eval_limit``, ``data_kwargs``) are constructor arguments of the method
(``optimizer``, ``lr``, ...).

A table spec's ``profiles:`` entry resolves in this order (later wins): its ``base`` (a built-in profile; default:
the built-in of the same name, else nothing) → the entry's own settings → its ``per_method`` entry for the base
method → its entry for the row (a variant's name). A ``data`` mapping of a ``per_method`` entry updates the
profile's ``data`` instead of replacing it. A name the table does not define is a built-in profile.

Example:
    >>> resolve_profile(None, "quick")["max_epochs"]
    10
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hashbench.bench.spec import TableSpec

__all__ = ["PROFILES", "BUILTIN_PROFILES", "resolve_profile"]

#: Training profiles shared by every method so results are comparable. ``converged`` is the schedule of the
#: committed offline leaderboards; ``paper`` takes each method's ``paper_training`` recipe.
PROFILES: dict[str, dict[str, Any]] = {
    "smoke": {
        "max_epochs": 1,
        "batch_size": 64,
        "optimizer": "adam",
        "lr": 1e-3,
        "train_limit": 256,
        "eval_limit": 512,
    },
    "quick": {"max_epochs": 10, "batch_size": 128, "optimizer": "adam", "lr": 1e-3},
    # Early stopping on validation mAP: patience 3 with a cap of 15 epochs keeps a 16-method table of three seeds
    # within about an hour on 2 CPU cores (Fashion-MNIST; the leaderboard header states what each cell ran).
    "converged": {"max_epochs": 15, "patience": 3, "batch_size": 128, "optimizer": "adam", "lr": 1e-3},
    "paper": {},
}
#: names of the built-in profiles
BUILTIN_PROFILES = tuple(PROFILES)


def resolve_profile(
    spec: TableSpec | None,
    profile: str | Mapping[str, Any],
    method_cls: type | None = None,
    method: str | None = None,
) -> dict[str, Any]:
    """The full training settings of ``profile`` for one method: what a cell runs with (and its cache key holds).

    Args:
        spec: the table whose ``profiles:`` may define ``profile``; ``None`` for the built-in profiles only.
        profile: a profile name (a table's or a built-in one), or already resolved settings (returned as a copy).
        method_cls: the method class: its ``paper_training`` is the ``paper`` profile; its registered name (an
            out-of-tree class: its import path) selects a ``per_method`` entry.
        method: the table row when it is not the class's registered name (a variant), for ``per_method``.

    Returns:
        a new dict (resolving never modifies the spec or :data:`PROFILES`).

    Raises:
        SpecError: with a ``spec``, an unknown profile name (the message lists the table's and the built-in ones).
        ValueError: without one, a name that is not a built-in profile.
    """
    if isinstance(profile, Mapping):
        return dict(profile)
    table_profiles = spec.profiles if spec is not None else {}

    def builtin(name: str) -> dict[str, Any]:
        if name == "paper":
            return dict(getattr(method_cls, "paper_training", {}) or {})
        if name in PROFILES:
            return dict(PROFILES[name])
        from hashbench.errors import UnknownNameError

        if spec is not None:
            from hashbench.bench.spec import SpecError

            known = sorted({*PROFILES, *table_profiles})
            raise SpecError(f"table {spec.name!r}: {UnknownNameError('profile', name, known)}")
        raise ValueError(str(UnknownNameError("profile", name, PROFILES, "or pass a mapping")))

    if profile not in table_profiles:
        return builtin(profile)
    body = dict(table_profiles[profile])
    per_method = body.pop("per_method", None) or {}
    base = body.pop("base", profile if profile in PROFILES else None)
    settings = builtin(base) if base else {}
    settings.update(body)
    for row in _rows_of(method_cls, method):
        for key, override in per_method.items():
            if _same_name(str(key), row):
                _apply_override(settings, override)
    return settings


def _same_name(a: str, b: str) -> bool:
    from hashbench.registry import normalize_name

    return normalize_name(a) == normalize_name(b)


def _rows_of(method_cls: type | None, method: str | None) -> list[str]:
    """The names a ``per_method`` entry may use for one cell: the base method's, then the row's."""
    from hashbench.registry import canonical_method_name

    rows = []
    if method_cls is not None:
        rows.append(canonical_method_name(method_cls))
    if method is not None and not any(_same_name(method, r) for r in rows):
        rows.append(method)
    return rows


def _apply_override(settings: dict[str, Any], override: Mapping[str, Any]) -> None:
    for key, value in override.items():
        if key == "data" and isinstance(settings.get("data"), Mapping):
            settings["data"] = {**settings["data"], **value}
        else:
            settings[key] = dict(value) if isinstance(value, Mapping) else value
