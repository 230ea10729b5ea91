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


def test_a_lock_taken_over_is_not_released_and_fences_the_write(tmp_path: Path) -> None:
    """A holder whose silent heartbeat let another process judge its lock stale must not write the cell."""
    from hashbench.bench.grid import Cell
    from hashbench.bench.runner import RunOptions, run_one_cell

    store = ResultStore(tmp_path, stale_after=60)
    cell = Cell(table="t", method="M", n_bits=8, seed=0, profile="p", config={"method": "M"})
    other = store.lock(cell.key)

    def slow_executor(c, options, root):  # meanwhile the lock goes stale (no beat) and another process takes it
        path = store.lock(c.key).path
        old = time.time() - 3600
        os.utime(path, (old, old))
        assert other.acquire()
        return {"result": {"metrics": {"mAP@all": 0.5}}, "wandb": None}

    outcome = run_one_cell(
        cell, RunOptions(results=tmp_path, wandb="disabled"), store, slow_executor, log=lambda _: None
    )
    assert outcome.status == "lost-lock" and not store.has(cell.key)
    assert other.still_held()  # the first holder's release left the new holder's lock alone
    other.release()
    assert not other.path.exists()


def test_breaking_a_stale_lock_puts_back_a_live_one_taken_meanwhile(tmp_path: Path, monkeypatch) -> None:
    """Two processes judge one lock stale; the slower one renames the *new* lock aside: it must restore it."""
    from hashbench.bench.store import CellLock

    store = ResultStore(tmp_path, stale_after=60)
    store.cells_dir.mkdir(parents=True)
    slow = store.lock("k")
    path = slow.path
    path.write_text(json.dumps({"host": "dead-node", "pid": 1, "token": "old"}))
    old = time.time() - 3600
    os.utime(path, (old, old))
    judged = slow.read_holder()  # the slow process read the stale holder ...
    fast = store.lock("k")
    assert fast.acquire()  # ... then a fast process broke it and took a new lock
    monkeypatch.setattr(
        CellLock, "read_holder", lambda self, p=None: judged if p is None else json.loads(p.read_text())
    )
    monkeypatch.setattr(CellLock, "is_stale", lambda self, holder=None: True)
    slow._break_stale()  # renames the fast process's lock aside, sees the token differs, links it back
    monkeypatch.undo()
    assert fast.still_held()
    assert not slow.acquire()
    fast.release()
    assert sorted(p.name for p in store.cells_dir.iterdir()) == []
