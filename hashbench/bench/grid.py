"""Grid expansion, cache keys and sharding.

A *cell* is one training run: (method, bit length, seed) of a table, with everything else resolved (protocol,
data and datamodule arguments, backbone, method overrides, the full contents of the training profile). Its key
is ``<config hash>-<code hash>``:

- the **config hash** covers the resolved configuration above, so changing any training setting, a method
  argument or the data protocol makes a new cell;
- the **code hash** covers the code the number depends on: ``hashbench.__version__``, the method's own source
  file, and the shared code every cell runs through (``methods/base.py``, ``nn/``, ``metrics/``, ``data/``
  including the committed split files, ``bench/run.py``, ``bench/profiles.py``, ``registry.py``). Editing another
  method's file, the README, the tests or the table renderer does *not* invalidate a cell; editing the shared
  training/evaluation code invalidates all of them.

The git commit (and whether the tree was dirty) is recorded in every cell as provenance but is not part of the
key, since most commits do not touch the code above; pass ``strict=True`` (CLI ``--strict-version``) to add it
to the key, e.g. for the final run of a release.

A cell of a *variant* row (``variants:`` of the spec: one registered method with other constructor arguments)
has ``Cell.method`` = the row name, ``config["method"]`` = the base method's registered name (what
:func:`hashbench.bench.run.run_cell` is called with), ``config["variant"]`` = the row name, the merged
constructor arguments in ``config["method_kwargs"]`` and the base method's code hash. Cells of plain method rows
have no ``variant`` key, so their configurations (and cache keys) are the same as before variants existed.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import subprocess
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from hashbench.bench.profiles import resolve_profile
from hashbench.bench.spec import TableSpec, resolve_methods

__all__ = ["Cell", "expand_grid", "shard_cells", "parse_shard", "code_version", "config_hash", "git_info"]

_PACKAGE = Path(__file__).resolve().parents[1]
#: Shared code every cell's number depends on (relative to the package folder).
SHARED_CODE = (
    "methods/base.py",
    "methods/__init__.py",
    "nn",
    "metrics",
    "data",
    "bench/run.py",
    "bench/profiles.py",
    "registry.py",
)


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def config_hash(config: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of a resolved cell configuration."""
    return hashlib.sha256(_canonical(config).encode()).hexdigest()


def _hash_files(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(str(path.relative_to(_PACKAGE)).encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


@lru_cache(maxsize=1)
def shared_code_hash() -> str:
    """Hash of the shared training/evaluation code (see :data:`SHARED_CODE`)."""
    files: list[Path] = []
    for rel in SHARED_CODE:
        path = _PACKAGE / rel
        if path.is_dir():
            files += [p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
        elif path.is_file():
            files.append(path)
    return _hash_files(files)


def method_source_files(method_cls: type) -> list[Path]:
    """The method's own file plus every ``hashbench.methods`` file its class hierarchy comes from.

    ``methods/base.py`` is shared code (hashed for every cell); a method built on another module's class
    (DCMH on ``_crossmodal.py``, LSH on ``_shallow.py``, SSDH on ``_semantic.py``) depends on that file too.
    """
    files: list[Path] = []
    for klass in inspect.getmro(method_cls):
        module = getattr(klass, "__module__", "")
        if klass is not method_cls and (not module.startswith("hashbench.methods.") or module.endswith(".base")):
            continue
        try:
            source = inspect.getsourcefile(klass)
        except TypeError:
            continue
        if source is not None and Path(source) not in files:
            files.append(Path(source))
    return files


def method_source_hash(method_cls: type) -> str:
    """Hash of the files that define the method class (see :func:`method_source_files`)."""
    files = method_source_files(method_cls)
    if not files:
        return "unknown"
    if len(files) == 1:
        return hashlib.sha256(files[0].read_bytes()).hexdigest()
    return _hash_files(files)


@lru_cache(maxsize=1)
def git_info() -> dict[str, Any]:
    """``{"commit": sha or None, "dirty": bool or None}`` of the source tree (None outside a git checkout)."""
    root = _PACKAGE.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", "hashbench"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
        return {"commit": commit, "dirty": bool(status.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def data_source_hash(protocol: str | None) -> str | None:
    """Hash of the file defining the protocol's datamodule class when it lives outside hashbench (a plugin family,
    see :mod:`hashbench.plugins`), else ``None`` (hashbench's own data code is part of the shared code)."""
    if not protocol:
        return None
    from hashbench.data.registry import datamodule_class_for

    try:
        source = inspect.getsourcefile(datamodule_class_for(protocol))
    except (KeyError, TypeError):
        return None
    if source is None or Path(source).resolve().is_relative_to(_PACKAGE):
        return None
    return hashlib.sha256(Path(source).read_bytes()).hexdigest()


def code_version(method_cls: type | None, strict: bool = False, protocol: str | None = None) -> dict[str, Any]:
    """What the cell's code hash is made of, plus the git commit as provenance."""
    import hashbench

    version = {
        "hashbench": hashbench.__version__,
        "method_source": method_source_hash(method_cls) if method_cls is not None else None,
        "shared_code": shared_code_hash(),
        "git": git_info(),
        "strict": strict,
    }
    data_source = data_source_hash(protocol)
    if data_source is not None:
        version["data_source"] = data_source
    return version


def _code_hash(version: dict[str, Any]) -> str:
    keyed = {k: version[k] for k in ("hashbench", "method_source", "shared_code", "data_source") if k in version}
    if version.get("strict"):
        keyed["git"] = version["git"]
    return hashlib.sha256(_canonical(keyed).encode()).hexdigest()


@dataclass
class Cell:
    """One run of the grid. ``key`` names its file in the results store."""

    table: str
    method: str
    n_bits: int
    seed: int
    profile: str
    config: dict[str, Any]
    code: dict[str, Any] = field(default_factory=dict)

    @property
    def config_hash(self) -> str:
        return config_hash(self.config)

    @property
    def code_hash(self) -> str:
        return _code_hash(self.code)

    @property
    def key(self) -> str:
        return f"{self.config_hash[:20]}-{self.code_hash[:12]}"

    def label(self) -> str:
        return f"{self.method} {self.n_bits} bits seed {self.seed}"


def expand_grid(
    spec: TableSpec,
    profile: str | None = None,
    seeds: list[int] | None = None,
    methods: list[str] | None = None,
    bits: list[int] | None = None,
    strict: bool = False,
) -> tuple[list[Cell], list[str]]:
    """Every cell of a table: methods × bits × seeds, with the configuration resolved.

    Args:
        spec: the table.
        profile: training profile (default: the spec's).
        seeds: seeds to run (default: the spec's).
        methods: restrict to these methods or variant rows (names as in the spec or the registry).
        bits: restrict to these bit lengths.
        strict: put the git commit into the code hash (see the module docstring).

    Returns:
        (cells in methods × bits × seeds order, spec methods that are not registered — warned and skipped).

    Raises:
        ValueError: a ``methods``/``bits`` restriction names something the spec does not contain.
    """
    from hashbench.registry import normalize_name, resolve_method

    profile = profile or spec.profile
    seeds = list(seeds) if seeds is not None else list(spec.seeds)
    registered, missing = resolve_methods(spec)
    if methods:
        wanted = {normalize_name(m) for m in methods}
        known = {normalize_name(m) for m in (*registered, *missing)}
        unknown = [m for m in methods if normalize_name(m) not in known]
        if unknown:
            raise ValueError(
                f"--methods {unknown} not in table {spec.name!r}; its methods: {', '.join(registered + missing)}"
            )
        registered = [m for m in registered if normalize_name(m) in wanted]
        missing = [m for m in missing if normalize_name(m) in wanted]
    use_bits = list(spec.bits)
    if bits:
        unknown_bits = [b for b in bits if b not in spec.bits]
        if unknown_bits:
            raise ValueError(f"--bits {unknown_bits} not in table {spec.name!r}; its bit lengths: {spec.bits}")
        use_bits = [b for b in spec.bits if b in bits]
    for name in missing:
        warnings.warn(
            f"table {spec.name!r}: method {name!r} is not registered in hashbench; its row is rendered as "
            "'not implemented'",
            stacklevel=2,
        )
    cells = []
    for method in registered:
        variant = spec.variant_for(method)
        base = variant.method if variant is not None else method
        cls = resolve_method(base)
        prof = resolve_profile(spec, profile, cls, method)
        # A profile may carry data settings (e.g. the ImageNet transform a pretrained backbone needs) and a
        # backbone; both override the table's defaults.
        data_kwargs = {**spec.data, **dict(prof.pop("data", None) or {})}
        mkw = spec.method_kwargs_for(base)
        if variant is not None:
            mkw.update(variant.kwargs)
        backbone = prof.pop("backbone", spec.backbone)
        if backbone is not None:
            mkw.setdefault("backbone", backbone)
        code = code_version(cls, strict=strict, protocol=spec.protocol if spec.datamodule is None else None)
        for n_bits in use_bits:
            for seed in seeds:
                config = {
                    "method": base,
                    "method_kwargs": mkw,
                    "protocol": spec.protocol,
                    "data_kwargs": data_kwargs,
                    "datamodule": spec.datamodule,
                    "profile": prof,
                    "n_bits": n_bits,
                    "seed": seed,
                    "backbone": mkw.get("backbone"),
                }
                if variant is not None:
                    config["variant"] = method
                cells.append(Cell(spec.name, method, n_bits, seed, profile, config, code))
    return cells, missing


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"i/n"`` → (i, n) with 0 <= i < n (0-based, as ``$SLURM_ARRAY_TASK_ID`` with ``--array=0-(n-1)``)."""
    if text is None:
        return 0, 1
    try:
        i_text, n_text = text.split("/")
        i, n = int(i_text), int(n_text)
    except ValueError:
        raise ValueError(f"--shard must look like i/n (e.g. 0/4), got {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise ValueError(f"--shard i/n needs n >= 1 and 0 <= i < n (0-based), got {text!r}")
    return i, n


def shard_cells(cells: list[Cell], index: int, count: int) -> list[Cell]:
    """The cells of shard ``index`` of ``count``: round-robin over the cells sorted by key.

    Every machine computes the same sorted list, so the shards partition the grid with no coordinator; the
    per-cell lock in the store guards against overlapping shard arguments.
    """
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"shard index must satisfy 0 <= index < count, got {index}/{count}")
    ordered = sorted(cells, key=lambda c: c.key)
    return ordered[index::count]
