"""Datamodule registry: every dataset family registers its datamodule class at import time.

A *family* is one on-disk format with one datamodule class (``cifar10``, ``listfile``, ...); each protocol row
(:mod:`hashbench.data.protocols`) names its family, so a protocol name finds its class. ``hashbench.data`` imports
every built-in family module; out-of-tree families are modules listed in ``$HASHBENCH_PLUGINS`` (see
:mod:`hashbench.plugins`). A new family is one file: its class decorated with :func:`register_datamodule` and its
rows added with :func:`hashbench.data.protocols.register_protocol`.

Example:
    >>> from hashbench.data.registry import create_datamodule, list_datamodules
    >>> "cifar10" in list_datamodules()
    True
    >>> dm = create_datamodule("fashion-mnist", batch_size=64, train_limit=500)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any, TypeVar

from hashbench.data.protocols import get_protocol

__all__ = [
    "create_datamodule",
    "datamodule_class_for",
    "datamodule_class_path",
    "get_datamodule",
    "list_datamodules",
    "register_datamodule",
]

_REGISTRY: dict[str, type] = {}
T = TypeVar("T", bound=type)


def register_datamodule(cls: T | None = None, *, family: str | None = None) -> Any:
    """Class decorator that registers a datamodule class as the reader of a family (default: ``cls.family``).

    Raises:
        ValueError: no family name, or another class already reads that family.
    """

    def wrap(c: T) -> T:
        key = family or getattr(c, "family", "")
        if not key:
            raise ValueError(f"{c.__qualname__}: set the class attribute `family` (or pass family=...)")
        existing = _REGISTRY.get(key)
        if existing is not None and existing.__qualname__ != c.__qualname__:
            raise ValueError(
                f"family {key!r} is read by {existing.__module__}.{existing.__qualname__} already; pick another name"
            )
        _REGISTRY[key] = c
        c.family = key
        return c

    return wrap(cls) if cls is not None else wrap


def _ensure_loaded() -> None:
    import hashbench.data  # noqa: F401  (imports every built-in family module, which registers it)
    from hashbench.plugins import load_plugins

    load_plugins()


def list_datamodules() -> list[str]:
    """Registered family names, sorted."""
    _ensure_loaded()
    return sorted(_REGISTRY)


def get_datamodule(family: str) -> type:
    """The datamodule class registered for ``family``.

    Raises:
        KeyError: unknown family (the message lists the registered ones).
    """
    _ensure_loaded()
    if family not in _REGISTRY:
        from hashbench.errors import UnknownNameError

        raise UnknownNameError("datamodule family", family, sorted(_REGISTRY))
    return _REGISTRY[family]


def datamodule_class_for(name: str) -> type:
    """The datamodule class that reads protocol ``name``.

    Raises:
        KeyError: unknown protocol (the message lists the known ones), or no class registered for its family.
    """
    _ensure_loaded()
    family = get_protocol(name).family
    if family not in _REGISTRY:
        raise KeyError(
            f"protocol {name!r} belongs to the family {family!r}, which no datamodule reads; registered families: "
            f"{', '.join(sorted(_REGISTRY))} (is the family's module listed in $HASHBENCH_PLUGINS?)"
        )
    return _REGISTRY[family]


def datamodule_class_path(name: str) -> str:
    """Import path of the datamodule class for ``name`` (what LightningCLI's ``--data`` takes)."""
    cls = datamodule_class_for(name)
    if cls.__module__.startswith("hashbench.data."):
        import hashbench.data

        if getattr(hashbench.data, cls.__name__, None) is cls:
            return f"hashbench.data.{cls.__name__}"
    return f"{cls.__module__}.{cls.__qualname__}"


def create_datamodule(name: str, **kwargs: Any) -> Any:
    """Build the datamodule of protocol ``name``; ``kwargs`` go to its constructor.

    Example:
        >>> dm = create_datamodule("fashion-mnist", batch_size=64, train_limit=500)  # doctest: +SKIP
    """
    return datamodule_class_for(name)(protocol=name, **kwargs)
