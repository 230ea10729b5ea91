"""Fixtures for the data tests: isolated data roots and tiny datasets written in the real on-disk formats."""

from __future__ import annotations

import pytest

from tests.fake_data import write_cifar10, write_list_dataset, write_svhn


@pytest.fixture
def isolated_root(tmp_path, monkeypatch):
    """An empty HASHBENCH_DATA and cache, so no test sees a real dataset by accident."""
    root = tmp_path / "data"
    root.mkdir()
    monkeypatch.setenv("HASHBENCH_DATA", str(root))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return root


@pytest.fixture
def fake_cifar(isolated_root):
    return write_cifar10(isolated_root)


@pytest.fixture
def fake_svhn(isolated_root):
    return write_svhn(isolated_root)


@pytest.fixture
def fake_lists(isolated_root):
    return write_list_dataset(isolated_root)
