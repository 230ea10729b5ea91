"""Table specs: one YAML file per comparison table (``experiments/tables/<name>.yaml``).

A spec says what to run (methods × bit lengths × seeds on one protocol, with a backbone and a training profile)
and what the paper reported, so the runner can put reproduced and reported numbers side by side.

Schema (keys not listed here are an error, so a typo never silently drops a setting)::

    name: cifar10                  # optional; defaults to the file stem
    title: CIFAR-10, mAP@all (DFEH paper)
    source:                        # where the reported numbers come from
      paper: Zhao & Liu, Deep features enhance ..., Electronics 2022
      table: CIFAR-10 mAP table
      url: https://doi.org/...
    protocol: cifar10              # a hashbench data protocol (``hashbench data list``)
    data: {}                       # extra datamodule arguments (optional)
    datamodule: null               # optional {class_path, init_args} replacing create_datamodule (tests, custom data)
    backbone: compact_cnn          # passed to every method (null = each method's default)
    profile: quick                 # default training profile
    profiles:                      # optional table-specific profiles or overrides: {name: {base: quick, ...}}
      demo: {base: quick, max_epochs: 3}
    bits: [12, 24, 36, 48]
    methods: [LSH, SH, ITQ, DPSH, DSH, DFEH]   # registry names, or "all" (every registered single-modal method)
    method_kwargs: {DPSH: {eta: 10}}           # optional per-method overrides
    seeds: [0, 1, 2]               # a list, or a count N meaning 0..N-1
    metric: mAP@all                # key of the cell metrics shown in the table
    reported:                      # the paper's numbers; methods absent from ``methods`` become reported-only rows
      source: DFEH paper, CIFAR-10 table
      methods:
        LSH: {12: 0.1319, 24: 0.1367}
    notes: free text shown under the table

Example:
    >>> spec = load_spec("cifar10")  # doctest: +SKIP
    >>> spec.bits
    [12, 24, 36, 48]
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "TableSpec",
    "SpecError",
    "load_spec",
    "parse_spec",
    "tables_dir",
    "list_specs",
    "resolve_methods",
    "resolve_profile",
    "ALL_METHODS",
]

#: ``methods: all`` resolves to every registered method that is not cross-modal, at run time.
ALL_METHODS = "all"
_KEYS = {
    "name",
    "title",
    "source",
    "protocol",
    "data",
    "datamodule",
    "backbone",
    "profile",
    "profiles",
    "bits",
    "methods",
    "method_kwargs",
    "seeds",
    "metric",
    "reported",
    "notes",
}
_REQUIRED = ("title", "protocol", "bits", "methods", "metric")
# Headline metric keys the evaluator reports; cross-modal cells add " I→T" / " T→I" per direction.
_METRIC = re.compile(r"^(mAP@(all|\d+)|P@H<=\d+|P@\d+|R@\d+)( (I→T|T→I))?$")


class SpecError(ValueError):
    """A table spec is malformed; the message names the file, the key and what was expected."""


@dataclass
class TableSpec:
    """A parsed, validated table spec (see the module docstring for the YAML schema)."""

    name: str
    title: str
    protocol: str
    bits: list[int]
    methods: list[str] | str
    metric: str
    source: dict[str, str] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    datamodule: dict[str, Any] | None = None
    backbone: str | None = None
    profile: str = "quick"
    profiles: dict[str, dict[str, Any]] = field(default_factory=dict)
    method_kwargs: dict[str, dict[str, Any]] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=lambda: [0])
    reported: dict[str, dict[int, float]] = field(default_factory=dict)
    reported_source: str = ""
    notes: str = ""
    path: Path | None = None

    def method_kwargs_for(self, method: str) -> dict[str, Any]:
        """Per-method overrides, looked up with the registry's name normalisation."""
        from hashbench.registry import normalize_name

        for key, value in self.method_kwargs.items():
            if normalize_name(key) == normalize_name(method):
                return dict(value)
        return {}

    def reported_for(self, method: str) -> dict[int, float]:
        from hashbench.registry import normalize_name

        for key, value in self.reported.items():
            if normalize_name(key) == normalize_name(method):
                return value
        return {}


def tables_dir() -> Path:
    """``experiments/tables`` of the source tree (specs are looked up there by name)."""
    return Path(__file__).resolve().parents[2] / "experiments" / "tables"


def list_specs() -> list[str]:
    """Names of the specs in :func:`tables_dir`, sorted."""
    return sorted(p.stem for p in tables_dir().glob("*.yaml"))


def load_spec(name_or_path: str | Path) -> TableSpec:
    """Read a spec by name (``cifar10`` → ``experiments/tables/cifar10.yaml``) or by path.

    Raises:
        FileNotFoundError: no such file; the message lists the available specs.
        SpecError: the file is not a valid spec.
    """
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        candidate = tables_dir() / f"{name_or_path}.yaml"
        if candidate.is_file() or not path.is_file():
            path = candidate
    if not path.is_file():
        raise FileNotFoundError(
            f"table spec {str(name_or_path)!r} not found (looked for {path}); "
            f"available specs in {tables_dir()}: {', '.join(list_specs()) or 'none'}"
        )
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise SpecError(f"{path}: not valid YAML: {err}") from err
    return parse_spec(raw, name=path.stem, path=path)


def _fail(where: str, msg: str) -> SpecError:
    return SpecError(f"{where}: {msg}")


def _int_list(where: str, key: str, value: Any, *, minimum: int) -> list[int]:
    if isinstance(value, bool) or not isinstance(value, list) or not value:
        raise _fail(where, f"{key!r} must be a non-empty list of integers, got {value!r}")
    out = []
    for item in value:
        if isinstance(item, bool) or not isinstance(item, int) or item < minimum:
            raise _fail(where, f"{key!r} entries must be integers >= {minimum}, got {item!r}")
        out.append(item)
    if len(set(out)) != len(out):
        raise _fail(where, f"{key!r} has duplicates: {value!r}")
    return out


def parse_spec(raw: Any, name: str = "table", path: Path | None = None) -> TableSpec:
    """Validate a spec given as a mapping (what ``yaml.safe_load`` returns) and build a :class:`TableSpec`.

    Raises:
        SpecError: with the offending key and the expected form.
    """
    where = str(path) if path is not None else f"table spec {name!r}"
    if not isinstance(raw, Mapping):
        raise _fail(where, f"a table spec must be a YAML mapping, got {type(raw).__name__}")
    unknown = sorted(set(raw) - _KEYS)
    if unknown:
        raise _fail(where, f"unknown key(s) {unknown}; allowed keys: {sorted(_KEYS)}")
    missing = [k for k in _REQUIRED if raw.get(k) in (None, "", [])]
    if missing:
        raise _fail(where, f"missing required key(s) {missing}")
    name = str(raw.get("name") or name)
    for key in ("title", "protocol", "metric"):
        if not isinstance(raw[key], str):
            raise _fail(where, f"{key!r} must be a string, got {raw[key]!r}")
    if not _METRIC.match(raw["metric"]):
        raise _fail(
            where,
            "'metric' must be a metric key such as 'mAP@all', 'mAP@5000', 'P@H<=2' or 'mAP@all I→T', "
            f"got {raw['metric']!r}",
        )
    bits = _int_list(where, "bits", raw["bits"], minimum=1)

    methods = raw["methods"]
    if isinstance(methods, str):
        if methods != ALL_METHODS:
            raise _fail(where, f"'methods' must be a list of registry names or the string 'all', got {methods!r}")
    elif isinstance(methods, list) and methods and all(isinstance(m, str) and m for m in methods):
        methods = list(methods)
    else:
        raise _fail(where, f"'methods' must be a non-empty list of registry names or 'all', got {methods!r}")

    seeds_raw = raw.get("seeds", [0])
    if isinstance(seeds_raw, int) and not isinstance(seeds_raw, bool):
        if seeds_raw < 1:
            raise _fail(where, f"'seeds' as a count must be >= 1, got {seeds_raw}")
        seeds = list(range(seeds_raw))
    else:
        seeds = _int_list(where, "seeds", seeds_raw, minimum=0)

    def mapping(key: str) -> dict[str, Any]:
        value = raw.get(key) or {}
        if not isinstance(value, Mapping):
            raise _fail(where, f"{key!r} must be a mapping, got {value!r}")
        return dict(value)

    source = {str(k): str(v) for k, v in mapping("source").items()}
    data = mapping("data")
    profiles = mapping("profiles")
    for pname, pbody in profiles.items():
        if not isinstance(pbody, Mapping):
            raise _fail(where, f"profiles.{pname} must be a mapping of training settings, got {pbody!r}")
    method_kwargs = mapping("method_kwargs")
    for mname, mbody in method_kwargs.items():
        if not isinstance(mbody, Mapping):
            raise _fail(where, f"method_kwargs.{mname} must be a mapping of constructor arguments, got {mbody!r}")

    datamodule = raw.get("datamodule")
    if datamodule is not None and (not isinstance(datamodule, Mapping) or "class_path" not in datamodule):
        raise _fail(
            where, f"'datamodule' must be a mapping with 'class_path' (and optional 'init_args'), got {datamodule!r}"
        )

    backbone = raw.get("backbone")
    if backbone is not None and not isinstance(backbone, str):
        raise _fail(where, f"'backbone' must be a backbone name or null, got {backbone!r}")
    profile = raw.get("profile", "quick")
    if not isinstance(profile, str):
        raise _fail(where, f"'profile' must be a profile name, got {profile!r}")

    reported: dict[str, dict[int, float]] = {}
    reported_source = ""
    rep = raw.get("reported")
    if rep is not None:
        if not isinstance(rep, Mapping) or not isinstance(rep.get("methods"), Mapping):
            raise _fail(
                where, "'reported' must be a mapping with 'source' (text) and 'methods' ({method: {bits: value}})"
            )
        extra = sorted(set(rep) - {"source", "methods"})
        if extra:
            raise _fail(where, f"reported: unknown key(s) {extra}; allowed: source, methods")
        reported_source = str(rep.get("source") or source.get("paper", ""))
        for method, values in rep["methods"].items():
            if not isinstance(values, Mapping):
                raise _fail(where, f"reported.methods.{method} must map bit lengths to numbers, got {values!r}")
            row: dict[int, float] = {}
            for b, v in values.items():
                if isinstance(b, bool) or not isinstance(b, int):
                    raise _fail(where, f"reported.methods.{method}: bit length keys must be integers, got {b!r}")
                if b not in bits:
                    raise _fail(where, f"reported.methods.{method} has a value for {b} bits but 'bits' is {bits}")
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= float(v) <= 1.0:
                    raise _fail(where, f"reported.methods.{method}.{b} must be a number in [0, 1], got {v!r}")
                row[b] = float(v)
            reported[str(method)] = row

    notes = raw.get("notes") or ""
    return TableSpec(
        name=name,
        title=raw["title"],
        protocol=raw["protocol"],
        bits=bits,
        methods=methods,
        metric=raw["metric"],
        source=source,
        data=data,
        datamodule=dict(datamodule) if datamodule is not None else None,
        backbone=backbone,
        profile=profile,
        profiles={k: dict(v) for k, v in profiles.items()},
        method_kwargs={k: dict(v) for k, v in method_kwargs.items()},
        seeds=seeds,
        reported=reported,
        reported_source=reported_source,
        notes=str(notes).strip(),
        path=path,
    )


def resolve_methods(spec: TableSpec) -> tuple[list[str], list[str]]:
    """Split the spec's method list into (registered canonical names, names hashbench does not implement).

    ``all`` resolves from the registry at call time: every method whose ``supervision`` is not ``cross-modal``.
    A name with a dot that is not registered is tried as the import path of an out-of-tree method class.
    """
    from hashbench.bench.run import resolve_method
    from hashbench.registry import get_method, list_methods

    if spec.methods == ALL_METHODS:
        return [m for m in list_methods() if getattr(get_method(m), "supervision", "") != "cross-modal"], []
    found, missing = [], []
    for name in spec.methods:
        try:
            canonical = get_method(name).method_name
        except KeyError:
            try:
                resolve_method(name)  # an out-of-tree class: keyed by its import path
                canonical = name
            except KeyError:
                missing.append(name)
                continue
        if canonical not in found:
            found.append(canonical)
    return found, missing


def resolve_profile(spec: TableSpec, profile: str, method_cls: type | None = None) -> dict[str, Any]:
    """The full training settings of ``profile`` for one method: what goes into the cell's cache key.

    Order: a table profile's ``base`` (or the built-in profile of the same name) → the table's overrides.
    The built-in ``paper`` profile is the method's own ``paper_training`` recipe.

    Raises:
        SpecError: unknown profile name.
    """
    from hashbench.bench.run import PROFILES

    def builtin(name: str) -> dict[str, Any]:
        if name == "paper":
            return dict(getattr(method_cls, "paper_training", {}) or {})
        if name not in PROFILES:
            known = sorted({*PROFILES, *spec.profiles})
            raise SpecError(f"table {spec.name!r}: unknown profile {name!r}; known profiles: {known}")
        return dict(PROFILES[name])

    if profile in spec.profiles:
        body = dict(spec.profiles[profile])
        base = body.pop("base", profile if profile in PROFILES else None)
        settings = builtin(base) if base else {}
        settings.update(body)
        return settings
    return builtin(profile)
