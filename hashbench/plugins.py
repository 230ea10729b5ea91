"""Out-of-tree extensions: modules named in ``$HASHBENCH_PLUGINS`` are imported before a registry is read.

A plugin is any importable module that registers something at import time: a method (``@register_method``), a
dataset family (``@register_datamodule`` plus its ``register_protocol`` rows), or both. List several modules
separated by commas::

    HASHBENCH_PLUGINS=mylab.tinyset,mylab.myhash hashbench fit --model MyHash --data tinyset

The registries call :func:`load_plugins` themselves (method look-ups, protocol look-ups, datamodule look-ups), so
every command and the table runner see the plugins' names. Each module is imported once per process.
"""

from __future__ import annotations

import importlib
import os

__all__ = ["PLUGINS_VARIABLE", "PluginError", "load_plugins", "plugin_modules"]

PLUGINS_VARIABLE = "HASHBENCH_PLUGINS"

_loaded: set[str] = set()
_loading: set[str] = set()


class PluginError(ImportError):
    """A module named in ``$HASHBENCH_PLUGINS`` could not be imported."""


def plugin_modules() -> list[str]:
    """The module names listed in ``$HASHBENCH_PLUGINS`` (comma-separated; blanks ignored)."""
    return [name.strip() for name in os.environ.get(PLUGINS_VARIABLE, "").split(",") if name.strip()]


def load_plugins() -> list[str]:
    """Import every module of ``$HASHBENCH_PLUGINS`` not imported yet; return the names imported by this call.

    Raises:
        PluginError: a listed module cannot be imported (the message names it and the variable).
    """
    imported = []
    for name in plugin_modules():
        if name in _loaded or name in _loading:
            continue
        _loading.add(name)  # a plugin that reads a registry while it is imported must not import itself again
        try:
            importlib.import_module(name)
        except ImportError as err:
            raise PluginError(
                f"{PLUGINS_VARIABLE} names the module {name!r}, which cannot be imported ({err}); check the name "
                "and that its folder is on PYTHONPATH"
            ) from err
        finally:
            _loading.discard(name)
        _loaded.add(name)
        imported.append(name)
    return imported
