"""Method registry: every method registers itself at import time.

``hashbench.methods`` imports every module in its folder, so a new method is one new file whose class is
decorated with :func:`register_method`. Keys are the class names (``DPSH``, ``DMNSH`` ...); look-ups are
case-insensitive and ignore ``-``/``_`` so ``dmsh-ln``, ``DMsH_LN`` and ``DMsHLN`` all find the same class.

Example:
    >>> from hashbench.registry import create_method, list_methods
    >>> "DPSH" in list_methods()
    True
    >>> model = create_method("dpsh", n_bits=32)
"""

from __future__ import annotations

import fnmatch
from typing import Any, TypeVar

__all__ = ["register_method", "list_methods", "get_method", "create_method", "normalize_name"]

_REGISTRY: dict[str, type] = {}
T = TypeVar("T", bound=type)


def normalize_name(name: str) -> str:
    """Canonical look-up form of a method name: lower case, without ``-``, ``_`` and spaces."""
    return "".join(ch for ch in name.lower() if ch not in "-_ ")


def register_method(cls: T | None = None, *, name: str | None = None) -> Any:
    """Class decorator that adds a method to the registry under ``name`` (default: the class name).

    Raises:
        ValueError: if another class is already registered under the same (normalised) name.
    """

    def wrap(c: T) -> T:
        key = name or getattr(c, "method_name", None) or c.__name__
        norm = normalize_name(key)
        for existing_key, existing in _REGISTRY.items():
            if normalize_name(existing_key) == norm and existing is not c:
                raise ValueError(
                    f"a method named {key!r} is already registered ({existing.__module__}.{existing.__qualname__}); "
                    "pick another name or pass name=... to register_method"
                )
        _REGISTRY[key] = c
        c.method_name = key
        return c

    return wrap(cls) if cls is not None else wrap


def _ensure_loaded() -> None:
    import hashbench.methods  # noqa: F401  (imports every method module, which registers it)


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


def get_method(name: str) -> type:
    """The class registered under ``name`` (case-insensitive, ``-``/``_`` ignored)."""
    _ensure_loaded()
    norm = normalize_name(name)
    for key, cls in _REGISTRY.items():
        if normalize_name(key) == norm:
            return cls
    raise KeyError(f"unknown method {name!r}; registered methods: {', '.join(list_methods())}")


def create_method(name: str, **overrides: Any) -> Any:
    """Instantiate a registered method with its paper defaults, overridden by ``overrides``."""
    return get_method(name)(**overrides)
