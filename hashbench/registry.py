"""Method registry: every method registers itself at import time, and the one resolver of method names.

``hashbench.methods`` imports every module in its folder, so a new method is one new file whose class is
decorated with :func:`register_method`. Keys are the class names (``DPSH``, ``DMNSH`` ...); look-ups are
case-insensitive and ignore ``-``/``_`` so ``dmsh-ln``, ``DMsH_LN`` and ``DMsHLN`` all find the same class.

Every place that turns a method *name* into a class goes through :func:`resolve_method` (the CLI's ``--model``,
``run_cell``, table specs and grids): a registered name or alias, or the dotted import path of an out-of-tree
:class:`~hashbench.methods.base.HashingMethod` subclass (``mypkg.mymodule.MyHash``). :func:`resolve_methods`
resolves a list (with ``all``), :func:`canonical_method_name` gives the name a table row and a cache key use.

Example:
    >>> from hashbench.registry import create_method, list_methods, resolve_method
    >>> "DPSH" in list_methods()
    True
    >>> resolve_method("dpsh") is resolve_method("DPSH")
    True
    >>> model = create_method("dpsh", n_bits=32)
"""

from __future__ import annotations

import fnmatch
import importlib
from collections.abc import Collection, Iterable
from typing import Any, TypeVar

__all__ = [
    "register_method",
    "list_methods",
    "resolve_method",
    "resolve_methods",
    "canonical_method_name",
    "get_method",
    "create_method",
    "normalize_name",
    "ALL_METHODS",
]

#: The name that stands for every registered method in :func:`resolve_methods` (and ``methods: all`` of a spec).
ALL_METHODS = "all"

_REGISTRY: dict[str, type] = {}
#: alias -> registered key (``register_method(..., aliases=[...])``)
_ALIASES: dict[str, str] = {}
T = TypeVar("T", bound=type)


def normalize_name(name: str) -> str:
    """Canonical look-up form of a method name: lower case, without ``-``, ``_`` and spaces."""
    return "".join(ch for ch in name.lower() if ch not in "-_ ")


def _taken(norm: str, cls: type) -> str | None:
    """The registered key or alias that already uses the normalised name ``norm`` for another class."""
    for key, existing in _REGISTRY.items():
        if normalize_name(key) == norm and existing is not cls:
            return key
    for alias, key in _ALIASES.items():
        if normalize_name(alias) == norm and _REGISTRY.get(key) is not cls:
            return alias
    return None


def register_method(cls: T | None = None, *, name: str | None = None, aliases: Iterable[str] = ()) -> Any:
    """Class decorator that adds a method to the registry under ``name`` (default: the class name).

    Args:
        name: the registered name (default: the class attribute ``method_name``, else the class name).
        aliases: other names :func:`resolve_method` finds the class by (e.g. a paper's own spelling); tables and
            cache keys always use the registered name.

    Raises:
        ValueError: if another class is already registered under the same (normalised) name or alias.
    """

    def wrap(c: T) -> T:
        key = name or getattr(c, "method_name", None) or c.__name__
        names = [key, *aliases]
        for candidate in names:
            clash = _taken(normalize_name(candidate), c)
            if clash is not None:
                owner = _REGISTRY[_ALIASES.get(clash, clash)]
                raise ValueError(
                    f"a method named {candidate!r} is already registered ({owner.__module__}.{owner.__qualname__}); "
                    "pick another name or pass name=... to register_method"
                )
        _REGISTRY[key] = c
        for alias in aliases:
            _ALIASES[alias] = key
        c.method_name = key
        return c

    return wrap(cls) if cls is not None else wrap


def _ensure_loaded() -> None:
    import hashbench.methods  # noqa: F401  (imports every method module, which registers it)
    from hashbench.plugins import load_plugins

    load_plugins()  # out-of-tree methods named in $HASHBENCH_PLUGINS


def list_methods(pattern: str | None = None, *, supervision: str | None = None) -> list[str]:
    """Registered method names, sorted; ``pattern`` is a case-insensitive glob (``"d*h"``).

    Args:
        pattern: optional glob over names.
        supervision: optional filter on the class attribute ``supervision`` (e.g. ``"unsupervised"``).
    """
    _ensure_loaded()
    names = sorted(_REGISTRY, key=str.lower)
    if pattern:
        names = [n for n in names if fnmatch.fnmatch(n.lower(), pattern.lower())]
    if supervision:
        names = [n for n in names if getattr(_REGISTRY[n], "supervision", None) == supervision]
    return names


def _registered(name: str) -> str | None:
    """The registered key that ``name`` (a registered name or alias, any spelling) refers to, or None."""
    _ensure_loaded()
    norm = normalize_name(name)
    for key in _REGISTRY:
        if normalize_name(key) == norm:
            return key
    for alias, key in _ALIASES.items():
        if normalize_name(alias) == norm and key in _REGISTRY:
            return key
    return None


def resolve_method(name: str) -> type:
    """The method class ``name`` stands for: a registered name or alias, or an out-of-tree class by import path.

    Registered names are matched case-insensitively, ignoring ``-``, ``_`` and spaces (``dmsh-ln`` = ``DMsH_LN``).
    A name that is not registered and contains a dot is imported as ``package.module.ClassName``; the class must
    be a :class:`~hashbench.methods.base.HashingMethod` subclass.

    Raises:
        KeyError: neither a registered name nor an importable class path (the message lists the registered
            methods).
        TypeError: the import path names something that is not a HashingMethod subclass.
    """
    key = _registered(name)
    if key is not None:
        return _REGISTRY[key]
    known = ", ".join(list_methods())
    if "." not in name:
        from hashbench.errors import UnknownNameError

        raise UnknownNameError("method", name, list_methods(), "or give a class's import path")
    module_name, _, class_name = name.rpartition(".")
    try:
        obj = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError) as err:
        raise KeyError(
            f"{name!r} is neither a registered method nor an importable class ({err}); registered methods: {known}"
        ) from err
    from hashbench.methods.base import HashingMethod

    if not (isinstance(obj, type) and issubclass(obj, HashingMethod)):
        what = f"the class {obj.__module__}.{obj.__qualname__}" if isinstance(obj, type) else type(obj).__name__
        raise TypeError(
            f"{name!r} is {what}, not a HashingMethod subclass; an out-of-tree method must subclass "
            "hashbench.methods.base.HashingMethod"
        )
    return obj


#: the old name of :func:`resolve_method` (same function)
get_method = resolve_method


def canonical_method_name(method: str | type) -> str:
    """The name a table row, a cell's ``config["method"]`` and a cache key use for ``method``.

    A registered name or alias (any spelling) gives the registered name; an import path is kept as given (an
    out-of-tree class is named by its path). A class gives its registered name, or ``module.QualName`` when it is
    not registered.

    Raises:
        KeyError / TypeError: a name that :func:`resolve_method` rejects.
    """
    if isinstance(method, type):
        _ensure_loaded()
        for key, cls in _REGISTRY.items():
            if cls is method:
                return key
        return f"{method.__module__}.{method.__qualname__}"
    key = _registered(method)
    if key is not None:
        return key
    resolve_method(method)  # raises for an unknown name or a path that is not a method class
    return method


def resolve_methods(
    names: str | Iterable[str],
    *,
    rows: Iterable[str] = (),
    exclude_supervision: Collection[str] = ("cross-modal",),
    strict: bool = False,
) -> tuple[list[str], list[str]]:
    """Resolve a list of method names to (canonical names, names that are not methods).

    Args:
        names: method names or import paths; ``"all"`` (alone or as an entry) stands for every registered method
            whose ``supervision`` is not in ``exclude_supervision``, resolved from the registry at call time.
        rows: extra row names that count as known and resolve to themselves, matched like method names (a
            table's variants); returned as spelled here.
        exclude_supervision: supervisions that ``all`` leaves out (default: cross-modal methods).
        strict: raise instead of returning the unknown names.

    Returns:
        (canonical names in order, duplicates removed — see :func:`canonical_method_name`; the names that are
        neither registered nor importable method classes, as given).

    Raises:
        KeyError: with ``strict``, some names are unknown (the message lists them and the registered methods).
    """
    listed = [names] if isinstance(names, str) else list(names)
    extra = {normalize_name(r): r for r in rows}
    found: list[str] = []
    missing: list[str] = []
    seen: set[str] = set()

    def add(name: str) -> None:
        if normalize_name(name) not in seen:
            seen.add(normalize_name(name))
            found.append(name)

    for name in listed:
        if name == ALL_METHODS:
            for m in list_methods():
                if getattr(_REGISTRY[m], "supervision", "") not in exclude_supervision:
                    add(m)
        elif normalize_name(name) in extra:
            add(extra[normalize_name(name)])
        else:
            try:
                add(canonical_method_name(name))
            except KeyError:
                missing.append(name)
    if strict and missing:
        from hashbench.errors import UnknownNameError

        if len(missing) == 1:
            raise UnknownNameError("method", missing[0], list_methods())
        raise KeyError(f"unknown method(s) {missing}; registered methods: {', '.join(list_methods())}")
    return found, missing


def create_method(name: str, **overrides: Any) -> Any:
    """Instantiate a method (see :func:`resolve_method`) with its paper defaults, overridden by ``overrides``."""
    return resolve_method(name)(**overrides)
