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
      paper:
        base: paper                # the built-in profile the settings start from (here: each method's recipe)
        data: {transform: imagenet}          # datamodule arguments of this profile (override ``data``)
        per_method:                # optional settings for single rows (a method or variant name) in this profile
          DCMH: {backbone: alexnet, pretrained: true}
    bits: [12, 24, 36, 48]
    methods: [LSH, SH, ITQ, DPSH, DSH, DFEH]   # registry names, variant names, or "all" (every registered
                                               # single-modal method; no variants)
    method_kwargs: {DPSH: {eta: 10}}           # optional per-method constructor overrides (every profile)
    variants:                      # optional rows that run one registered method with other constructor arguments
      DFEH-w0.1: {method: DFEH, kwargs: {alpha: 0.1, beta: 0.1}}
    seeds: [0, 1, 2]               # a list, or a count N meaning 0..N-1
    metric: mAP@all                # key of the cell metrics shown in the table
    reported:                      # the paper's numbers; methods absent from ``methods`` become reported-only rows
      source: DFEH paper, CIFAR-10 table
      methods:
        LSH: {12: 0.1319, 24: 0.1367}
    notes: free text shown under the table

Variants: a variant row runs its base ``method`` with the base method's ``method_kwargs`` updated by the
variant's ``kwargs`` (constructor arguments, checked against the method's signature). Its cells carry the row
name as ``Cell.method`` and ``config["variant"]``, the base method's registered name as ``config["method"]`` and
the base method's code hash. A variant name must be listed in ``methods``, must not be a registered method's name
and is looked up like one (case-insensitive, ``-``/``_``/spaces ignored); ``--methods`` and ``reported`` use it.

Precedence of a cell's settings (later wins): the profile's ``base`` → the table profile's settings → its
``per_method`` entry for the base method → its entry for the row (a variant's name); ``data`` entries of
``per_method`` update the profile's ``data`` instead of replacing it. Constructor arguments from ``method_kwargs``
and ``variants`` win over every profile setting, a table's ``backbone`` loses to a profile's.

Example:
    >>> spec = load_spec("cifar10")  # doctest: +SKIP
    >>> spec.bits
    [12, 24, 36, 48]
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hashbench.bench.profiles import resolve_profile
from hashbench.registry import ALL_METHODS

__all__ = [
    "TableSpec",
    "Variant",
    "SpecError",
    "SpecNotFoundError",
    "load_spec",
    "parse_spec",
    "tables_dir",
    "list_specs",
    "resolve_methods",
    "resolve_profile",
    "ALL_METHODS",
]

# ``methods: all`` (:data:`hashbench.registry.ALL_METHODS`) resolves to every registered method that is not
# cross-modal, at run time (:func:`hashbench.registry.resolve_methods`). ``resolve_profile`` is
# :func:`hashbench.bench.profiles.resolve_profile`, importable from here too.
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
    "variants",
    "seeds",
    "metric",
    "reported",
    "notes",
}
_REQUIRED = ("title", "protocol", "bits", "methods", "metric")
# Headline metric keys the evaluator reports; cross-modal cells add " I→T" / " T→I" per direction.
_METRIC = re.compile(r"^(mAP@(all|\d+)|P@H<=\d+|P@\d+|R@\d+)( (I→T|T→I))?$")
_VARIANT_KEYS = ("method", "kwargs")
#: keys of ``profiles.<name>.per_method.<row>`` that are not training settings of their own
_PER_METHOD_RESERVED = ("base", "per_method")


class SpecNotFoundError(FileNotFoundError):
    """No table spec of that name or path (the message suggests the closest names and lists the available ones)."""


class SpecError(ValueError):
    """A table spec is malformed; the message names the file, the key and what was expected."""


@dataclass(frozen=True)
class Variant:
    """A table row that runs a registered method with other constructor arguments (``variants:`` of a spec).

    Attributes:
        name: the row name (what ``methods``, ``reported``, ``--methods`` and the leaderboard use).
        method: the base method: its registered (canonical) name, or the import path of an out-of-tree class.
        kwargs: constructor arguments applied on top of the base method's ``method_kwargs``.
    """

    name: str
    method: str
    kwargs: dict[str, Any] = field(default_factory=dict)


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
    variants: dict[str, Variant] = field(default_factory=dict)
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
        """The reported numbers of one row ({bits: value}), looked up with the registry's name normalisation."""
        from hashbench.registry import normalize_name

        for key, value in self.reported.items():
            if normalize_name(key) == normalize_name(method):
                return value
        return {}

    def variant_for(self, name: str) -> Variant | None:
        """The variant row called ``name`` (registry name normalisation), or ``None`` for a plain method."""
        from hashbench.registry import normalize_name

        for key, variant in self.variants.items():
            if normalize_name(key) == normalize_name(name):
                return variant
        return None


def tables_dir() -> Path:
    """``experiments/tables`` of the source tree (specs are looked up there by name)."""
    return Path(__file__).resolve().parents[2] / "experiments" / "tables"


def list_specs() -> list[str]:
    """Names of the specs in :func:`tables_dir`, sorted."""
    return sorted(p.stem for p in tables_dir().glob("*.yaml"))


def load_spec(name_or_path: str | Path) -> TableSpec:
    """Read a spec by name (``cifar10`` → ``experiments/tables/cifar10.yaml``) or by path.

    Raises:
        SpecNotFoundError: no such file (a FileNotFoundError); the message lists the available specs.
        SpecError: the file is not a valid spec.
    """
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        candidate = tables_dir() / f"{name_or_path}.yaml"
        if candidate.is_file() or not path.is_file():
            path = candidate
    if not path.is_file():
        from hashbench.errors import did_you_mean

        maybe = did_you_mean(str(name_or_path), list_specs())
        raise SpecNotFoundError(
            f"table spec {str(name_or_path)!r} not found (looked for {path}){maybe} "
            f"(available specs in {tables_dir()}: {', '.join(list_specs()) or 'none'})"
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


def _constructor_arguments(cls: type) -> set[str] | None:
    """Keyword arguments ``cls(...)`` accepts, following ``**kwargs`` up the MRO; ``None`` = cannot tell (any)."""
    names: set[str] = set()
    for klass in inspect.getmro(cls):
        init = vars(klass).get("__init__")
        if init is None:
            continue
        try:
            params = list(inspect.signature(init).parameters.values())
        except (TypeError, ValueError):
            return None
        names.update(p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
        if not any(p.kind is p.VAR_KEYWORD for p in params):
            names.discard("self")
            return names
    return None


def _parse_variants(where: str, value: Any, methods: list[str] | str) -> dict[str, Variant]:
    """Validate ``variants:`` ({row name: {method, kwargs}}) against the registry and the ``methods`` list."""
    if value is None:
        return {}
    form = "{row name: {method: <registered method>, kwargs: {argument: value}}}"
    if not isinstance(value, Mapping):
        raise _fail(where, f"'variants' must be a mapping {form}, got {value!r}")
    if not value:
        return {}
    if methods == ALL_METHODS:
        raise _fail(where, "'variants' need an explicit 'methods' list naming them ('methods: all' has no variants)")
    from hashbench.registry import canonical_method_name, list_methods, normalize_name, resolve_method

    registered = {normalize_name(m): m for m in list_methods()}
    names = {normalize_name(str(n)): str(n) for n in value}
    variants: dict[str, Variant] = {}
    seen: dict[str, str] = {}
    for name, body in value.items():
        if not isinstance(name, str) or not name.strip():
            raise _fail(where, f"variant names must be non-empty strings, got {name!r}")
        label = f"variants.{name}"
        norm = normalize_name(name)
        if norm in registered:
            raise _fail(
                where,
                f"{label}: the name clashes with the registered method {registered[norm]!r}; give the row a name of "
                f"its own, e.g. '{name}-<setting>'",
            )
        if norm in seen:
            raise _fail(
                where,
                f"{label}: the same row name as variants.{seen[norm]} (names compare case-insensitively, ignoring "
                "'-', '_' and spaces)",
            )
        seen[norm] = name
        if not isinstance(body, Mapping):
            raise _fail(where, f"{label} must be a mapping {{method: ..., kwargs: {{...}}}}, got {body!r}")
        extra = sorted(set(body) - set(_VARIANT_KEYS), key=str)
        if extra:
            raise _fail(where, f"{label}: unknown key(s) {extra}; allowed: {', '.join(_VARIANT_KEYS)}")
        base = body.get("method")
        if not isinstance(base, str) or not base:
            raise _fail(where, f"{label}.method must be the name of a registered method, got {base!r}")
        if normalize_name(base) in names:
            raise _fail(where, f"{label}.method {base!r} is a variant; a variant builds on a registered method")
        try:
            cls = resolve_method(base)
            canonical = canonical_method_name(base)
        except KeyError:
            raise _fail(
                where,
                f"{label}.method {base!r} is not a registered method (nor an importable class path); registered "
                f"methods: {', '.join(list_methods())}",
            ) from None
        except TypeError as err:
            raise _fail(where, f"{label}.method: {err}") from None
        kwargs = body.get("kwargs", {})
        if not isinstance(kwargs, Mapping):
            raise _fail(where, f"{label}.kwargs must be a mapping of constructor arguments, got {kwargs!r}")
        bad = [k for k in kwargs if not isinstance(k, str)]
        if bad:
            raise _fail(where, f"{label}.kwargs: argument names must be strings, got {bad!r}")
        if "n_bits" in kwargs:
            raise _fail(where, f"{label}.kwargs: 'n_bits' comes from the table's 'bits', not from a variant")
        accepted = _constructor_arguments(cls)
        unknown = sorted(set(kwargs) - accepted) if accepted is not None else []
        if unknown:
            raise _fail(
                where,
                f"{label}.kwargs: {canonical} takes no argument(s) {unknown}; its arguments: "
                f"{', '.join(sorted(accepted - {'n_bits'}))}",
            )
        variants[name] = Variant(name=name, method=canonical, kwargs=dict(kwargs))
    listed = {normalize_name(m) for m in methods}
    unused = [n for n in variants if normalize_name(n) not in listed]
    if unused:
        raise _fail(where, f"variant(s) {unused} are defined but not listed in 'methods' {list(methods)}")
    return variants


def _check_per_method(
    where: str, pname: str, per_method: Any, methods: list[str] | str, variants: dict[str, Variant]
) -> None:
    """Validate ``profiles.<pname>.per_method``: {method or variant name of this table: {setting: value}}."""
    from hashbench.registry import normalize_name

    label = f"profiles.{pname}.per_method"
    if not isinstance(per_method, Mapping):
        raise _fail(where, f"{label} must map method (or variant) names to mappings of settings, got {per_method!r}")
    rows = None
    if methods != ALL_METHODS:
        rows = {normalize_name(m) for m in methods} | {normalize_name(v.method) for v in variants.values()}
    for mname, mbody in per_method.items():
        if not isinstance(mbody, Mapping):
            raise _fail(where, f"{label}.{mname} must be a mapping of settings, got {mbody!r}")
        if rows is not None and normalize_name(str(mname)) not in rows:
            raise _fail(where, f"{label}.{mname}: not a method or variant of this table (methods: {list(methods)})")
        reserved = sorted(k for k in mbody if k in _PER_METHOD_RESERVED)
        if reserved:
            raise _fail(where, f"{label}.{mname}: {reserved} can only be set for the whole profile")
        if "data" in mbody and not isinstance(mbody["data"], Mapping):
            raise _fail(where, f"{label}.{mname}.data must be a mapping of datamodule arguments, got {mbody['data']!r}")


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
    variants = _parse_variants(where, raw.get("variants"), methods)
    profiles = mapping("profiles")
    for pname, pbody in profiles.items():
        if not isinstance(pbody, Mapping):
            raise _fail(where, f"profiles.{pname} must be a mapping of training settings, got {pbody!r}")
        if "per_method" in pbody:
            _check_per_method(where, str(pname), pbody["per_method"], methods, variants)
    method_kwargs = mapping("method_kwargs")
    for mname, mbody in method_kwargs.items():
        if not isinstance(mbody, Mapping):
            raise _fail(where, f"method_kwargs.{mname} must be a mapping of constructor arguments, got {mbody!r}")
    if variants:
        from hashbench.registry import normalize_name

        for mname in method_kwargs:
            if normalize_name(str(mname)) in {normalize_name(v) for v in variants}:
                raise _fail(
                    where,
                    f"method_kwargs.{mname}: {mname!r} is a variant; put its arguments under variants.{mname}.kwargs",
                )

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
        variants=variants,
        reported=reported,
        reported_source=reported_source,
        notes=str(notes).strip(),
        path=path,
    )


def resolve_methods(spec: TableSpec) -> tuple[list[str], list[str]]:
    """Split the spec's method list into (registered canonical names, names hashbench does not implement).

    ``all`` resolves from the registry at call time: every method whose ``supervision`` is not ``cross-modal``.
    A name with a dot that is not registered is tried as the import path of an out-of-tree method class. A variant
    row counts as registered under its row name (as spelled in ``variants``), since its base method is. See
    :func:`hashbench.registry.resolve_methods`.
    """
    from hashbench.registry import resolve_methods as resolve

    return resolve(spec.methods, rows=spec.variants)
