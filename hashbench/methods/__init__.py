"""Hashing methods: one module per method. Importing this package imports (and so registers) every module
in this folder, which is why adding a method is adding one file."""

import importlib
import pkgutil

from hashbench.methods.base import HashingMethod, Paper

__all__ = ["HashingMethod", "Paper"]

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if not _info.name.startswith("_") and _info.name != "base":
        importlib.import_module(f"{__name__}.{_info.name}")
