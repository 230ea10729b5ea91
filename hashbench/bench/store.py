"""The results store: one JSON file per finished cell, written atomically, plus per-cell lock files.

Layout under the results directory (default ``results/`` at the repository root)::

    cells/<key>.json        a finished cell (config, code version, metrics, environment, W&B link)
    cells/<key>.error.json  the last failure of a cell (removed when it succeeds; failed cells are retried)
    cells/<key>.lock        a cell in flight (holds host, pid, start time, a token, SLURM job ids)
    wandb/                  W&B run directories (offline mode)

Atomicity: a cell file is written to a temporary file in the same directory and moved into place with
``os.replace`` (atomic on POSIX), so a crash or Ctrl-C never leaves a half-written cell and a reader on another
machine sees either nothing or the whole file.

Locks: the lock file is created whole (a complete temporary file hard-linked into place), which succeeds for
exactly one process, also across machines on NFS v3+ and Lustre/GPFS. The holder refreshes the lock's mtime every
``heartbeat`` seconds. A lock is *stale* (its holder died without cleaning up: SIGKILL, node failure) when its
holder is on this host and the pid is gone, or when it has not been refreshed for ``stale_after`` seconds (default
10 minutes, well above the heartbeat of 30 s): a node that died is detected by its silent heartbeat, since its pids
cannot be checked from another machine. A stale lock is broken (see :class:`CellLock`) and the cell is run again;
the runner writes a cell only while its lock is still its own, so two processes never both write one cell.
``hashbench table --clear-locks`` removes every lock by hand (only when no shard is running).
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["ResultStore", "CellLock", "atomic_write_json", "default_results_dir"]


def default_results_dir() -> Path:
    """``$HASHBENCH_RESULTS`` or ``results/`` at the repository root."""
    env = os.environ.get("HASHBENCH_RESULTS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[2] / "results"


def atomic_write_json(path: Path, payload: Any) -> None:
    """Write JSON to ``path`` via a temporary file + ``os.replace`` (never a partial file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(payload, handle, indent=1, sort_keys=True, default=str)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class CellLock:
    """An exclusive lock on one cell, held while it runs; use :meth:`ResultStore.lock`.

    The lock file is created whole (written to a temporary file, then hard-linked into place, which fails when
    the lock exists: atomic on local filesystems and NFS), and names its holder with a random token. A stale lock
    is broken by renaming it aside (one process wins the rename) and checking that the renamed file is the one
    judged stale; a live lock renamed by mistake is linked back. :meth:`still_held` lets the holder check, right
    before it writes the cell, that nobody broke its lock meanwhile (a fence: the store's runner writes a cell
    only while it holds that cell's lock).
    """

    def __init__(self, path: Path, heartbeat: float = 30.0, stale_after: float = 600.0) -> None:
        self.path = path
        self.heartbeat = heartbeat
        self.stale_after = stale_after
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.holder: dict[str, Any] | None = None
        self.token: str | None = None

    def _create(self) -> bool:
        token = uuid.uuid4().hex
        holder = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "started": time.time(),
            "token": token,
            "heartbeat_s": self.heartbeat,
            **{k: v for k in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID") if (v := os.environ.get(k))},
        }
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".new", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as handle:
                json.dump(holder, handle)
                handle.flush()
                os.fsync(handle.fileno())
            try:
                os.link(tmp, self.path)
            except FileExistsError:
                return False
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        self.token = token
        return True

    def read_holder(self, path: Path | None = None) -> dict[str, Any]:
        try:
            return json.loads((path or self.path).read_text() or "{}")
        except (OSError, ValueError):
            return {}

    def is_stale(self, holder: dict[str, Any] | None = None) -> bool:
        """True when the holder is gone (same host, dead pid) or the lock was not refreshed for ``stale_after``.

        The heartbeat rule is what covers a node that died (its pids cannot be checked from here): its lock stops
        being refreshed and turns stale ``stale_after`` seconds after the last beat.
        """
        holder = self.read_holder() if holder is None else holder
        try:
            age = time.time() - self.path.stat().st_mtime
        except FileNotFoundError:
            return False
        if holder.get("host") == socket.gethostname() and isinstance(holder.get("pid"), int):
            if holder["pid"] != os.getpid() and not _pid_alive(holder["pid"]):
                return True
        return age > self.stale_after

    def _break_stale(self) -> None:
        """Remove the lock if it is stale, safely against another process doing the same at the same time."""
        holder = self.read_holder()
        if not self.is_stale(holder):
            return
        aside = self.path.with_name(f"{self.path.name}.stale-{uuid.uuid4().hex}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:  # someone else broke it first
            return
        if self.read_holder(aside).get("token") != holder.get("token"):
            # Between our check and our rename, another process broke the stale lock and took a new one: put it
            # back (the same inode, so its holder's heartbeat goes on); if that fails a third process holds it.
            with contextlib.suppress(OSError):
                os.link(aside, self.path)
        with contextlib.suppress(OSError):
            os.unlink(aside)

    def acquire(self) -> bool:
        """Take the lock; False when another live process holds it. A stale lock is broken once."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self._create():
            self._break_stale()
            if not self._create():
                self.holder = self.read_holder()
                return False
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name=f"lock-heartbeat-{self.path.stem}", daemon=True)
        self._thread.start()
        return True

    def still_held(self) -> bool:
        """Whether the lock file is still ours (nobody judged it stale and took it over)."""
        return self.token is not None and self.read_holder().get("token") == self.token

    def _beat(self) -> None:
        while not self._stop.wait(self.heartbeat):
            if self.still_held():
                with contextlib.suppress(OSError):
                    os.utime(self.path)

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self.still_held():  # never remove a lock another process took over
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        self.token = None


class ResultStore:
    """Finished cells as JSON files in ``<root>/cells`` (see the module docstring).

    Args:
        root: the results directory.
        heartbeat / stale_after: lock refresh period and staleness threshold in seconds.
    """

    def __init__(self, root: str | Path | None = None, heartbeat: float = 30.0, stale_after: float = 600.0) -> None:
        self.root = Path(root) if root is not None else default_results_dir()
        self.cells_dir = self.root / "cells"
        self.heartbeat = heartbeat
        self.stale_after = stale_after

    def path(self, key: str) -> Path:
        return self.cells_dir / f"{key}.json"

    def error_path(self, key: str) -> Path:
        return self.cells_dir / f"{key}.error.json"

    def has(self, key: str) -> bool:
        return self.path(key).is_file()

    def get(self, key: str) -> dict[str, Any] | None:
        try:
            return json.loads(self.path(key).read_text())
        except FileNotFoundError:
            return None

    def put(self, key: str, record: dict[str, Any]) -> Path:
        path = self.path(key)
        atomic_write_json(path, record)
        with contextlib.suppress(FileNotFoundError):
            self.error_path(key).unlink()
        return path

    def put_error(self, key: str, record: dict[str, Any]) -> None:
        atomic_write_json(self.error_path(key), record)

    def get_error(self, key: str) -> dict[str, Any] | None:
        try:
            return json.loads(self.error_path(key).read_text())
        except FileNotFoundError:
            return None

    def by_config(self, config_prefix: str) -> list[dict[str, Any]]:
        """Every finished cell with this config hash (any code version), newest first."""
        records = []
        for path in self.cells_dir.glob(f"{config_prefix}-*.json"):
            if path.name.endswith(".error.json"):
                continue
            with contextlib.suppress(OSError, ValueError):
                records.append(json.loads(path.read_text()))
        return sorted(records, key=lambda r: r.get("finished_at", ""), reverse=True)

    def lock(self, key: str) -> CellLock:
        return CellLock(self.cells_dir / f"{key}.lock", self.heartbeat, self.stale_after)

    @contextlib.contextmanager
    def locked(self, key: str) -> Iterator[CellLock | None]:
        """Context manager: yields the held lock, or None when another process holds it."""
        lock = self.lock(key)
        if not lock.acquire():
            yield None
            return
        try:
            yield lock
        finally:
            lock.release()

    def live_lock(self, key: str) -> dict[str, Any] | None:
        """The holder of the cell's lock when a live process holds it (None when unlocked or stale)."""
        lock = self.lock(key)
        if not lock.path.exists():
            return None
        holder = lock.read_holder()
        return None if lock.is_stale(holder) else holder

    def clear_locks(self) -> list[Path]:
        removed = []
        for path in self.cells_dir.glob("*.lock"):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(path)
        return removed
