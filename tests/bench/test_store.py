"""Results store: atomic writes, exclusive locks, stale-lock recovery."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hashbench.bench.store import ResultStore, atomic_write_json


def test_atomic_write_leaves_old_file_on_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "cells" / "k.json"
    atomic_write_json(target, {"v": 1})

    def boom(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(json, "dump", boom)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_json(target, {"v": 2})
    assert json.loads(target.read_text()) == {"v": 1}
    assert sorted(p.name for p in target.parent.iterdir()) == ["k.json"]  # no temporary file left behind


def test_put_get_and_errors(tmp_path: Path) -> None:
    store = ResultStore(tmp_path)
    assert not store.has("a-b") and store.get("a-b") is None
    store.put_error("a-b", {"error": "x"})
    assert store.get_error("a-b") == {"error": "x"}
    store.put("a-b", {"finished_at": "1"})
    assert store.has("a-b") and store.get_error("a-b") is None  # success clears the failure record
    store.put("a-c", {"finished_at": "2"})
    assert [r["finished_at"] for r in store.by_config("a")] == ["2", "1"]


def test_lock_is_exclusive_and_released(tmp_path: Path) -> None:
    store = ResultStore(tmp_path)
    with store.locked("k") as first:
        assert first is not None
        with store.locked("k") as second:
            assert second is None
        assert store.lock("k").read_holder()["pid"] == os.getpid()
    assert not (store.cells_dir / "k.lock").exists()
    with store.locked("k") as again:
        assert again is not None


def test_lock_of_dead_process_is_stale(tmp_path: Path) -> None:
    store = ResultStore(tmp_path)
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(proc.stdout)
    store.cells_dir.mkdir(parents=True)
    import socket

    (store.cells_dir / "k.lock").write_text(json.dumps({"host": socket.gethostname(), "pid": dead_pid}))
    with store.locked("k") as lock:
        assert lock is not None  # the dead holder's lock was broken


def test_lock_not_refreshed_is_stale(tmp_path: Path) -> None:
    store = ResultStore(tmp_path, stale_after=60)
    store.cells_dir.mkdir(parents=True)
    path = store.cells_dir / "k.lock"
    path.write_text(json.dumps({"host": "another-node", "pid": 1}))
    with store.locked("k") as lock:
        assert lock is None  # fresh lock of another host: respected
    old = time.time() - 3600
    os.utime(path, (old, old))
    with store.locked("k") as lock:
        assert lock is not None


def test_heartbeat_refreshes_lock(tmp_path: Path) -> None:
    store = ResultStore(tmp_path, heartbeat=0.05)
    with store.locked("k"):
        path = store.cells_dir / "k.lock"
        os.utime(path, (0, 0))
        time.sleep(0.3)
        assert path.stat().st_mtime > time.time() - 5
    assert store.clear_locks() == []
