"""Fixtures for the data tests: isolated data roots and tiny datasets written in the real on-disk formats."""

from __future__ import annotations

import pytest


@pytest.fixture
def isolated_root(tmp_path, monkeypatch):
    """An empty HASHBENCH_DATA and cache, so no test sees a real dataset by accident."""
    root = tmp_path / "data"
    root.mkdir()
    monkeypatch.setenv("HASHBENCH_DATA", str(root))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return root
