"""Runner: cached cells are skipped, a crash loses at most the cell in flight, failures are recorded."""

from __future__ import annotations

from pathlib import Path

import pytest

from hashbench.bench.grid import Cell
from hashbench.bench.runner import RunOptions, check_wandb_mode, run_table
from hashbench.bench.spec import parse_spec
from hashbench.bench.store import ResultStore

SPEC = parse_spec(
    {
        "title": "fake",
        "protocol": "fashion-mnist",
        "bits": [12, 24, 48],
        "methods": ["DPSH"],
        "metric": "mAP@all",
        "seeds": [0, 1, 2],
    },
    name="fake",
)


class FakeExecutor:
    """Counts runs per cell key; raises ``exc`` on the run after ``fail_after`` successful ones."""

    def __init__(self, fail_after: int | None = None, exc: BaseException | None = None) -> None:
        self.fail_after, self.exc = fail_after, exc
        self.runs: list[str] = []

    def __call__(self, cell: Cell, options: RunOptions, root: Path) -> dict:
        if self.fail_after is not None and len(self.runs) == self.fail_after:
            self.fail_after = None
            raise self.exc  # type: ignore[misc]
        self.runs.append(cell.key)
        value = 0.5 + cell.n_bits / 1000 + cell.seed / 100
        return {"result": {"metrics": {"mAP@all": value}, "best_epoch": 1, "train_time_s": 0.1}, "wandb": None}


def _opts(tmp_path: Path, **kw) -> RunOptions:
    return RunOptions(results=tmp_path, wandb="disabled", **kw)


def test_interrupted_run_resumes_without_redoing_cells(tmp_path: Path) -> None:
    crash = FakeExecutor(fail_after=4, exc=KeyboardInterrupt())
    with pytest.raises(KeyboardInterrupt):
        run_table(SPEC, _opts(tmp_path), executor=crash, log=lambda _: None)
    assert len(crash.runs) == 4
    store = ResultStore(tmp_path)
    assert len(list(store.cells_dir.glob("*.json"))) == 4
    assert list(store.cells_dir.glob("*.lock")) == []  # the lock of the cell in flight was released
    resume = FakeExecutor()
    summary = run_table(SPEC, _opts(tmp_path), executor=resume, log=lambda _: None)
    assert summary.cached == 4 and summary.ran == 5 and len(resume.runs) == 5
    assert not set(resume.runs) & set(crash.runs)  # nothing finished was redone
    again = FakeExecutor()
    summary = run_table(SPEC, _opts(tmp_path), executor=again, log=lambda _: None)
    assert again.runs == [] and summary.cached == 9 and summary.ran == 0


def test_failed_cell_is_recorded_and_retried(tmp_path: Path) -> None:
    flaky = FakeExecutor(fail_after=2, exc=RuntimeError("boom"))
    lines: list[str] = []
    summary = run_table(SPEC, _opts(tmp_path), executor=flaky, log=lines.append)
    assert len(summary.failed) == 1 and summary.ran == 8
    assert any("FAILED (RuntimeError: boom)" in line for line in lines)
    store = ResultStore(tmp_path)
    assert store.get_error(summary.failed[0])["error"] == "RuntimeError: boom"
    retry = FakeExecutor()
    summary2 = run_table(SPEC, _opts(tmp_path), executor=retry, log=lambda _: None)
    assert retry.runs == summary.failed and summary2.failed == []
    with pytest.raises(RuntimeError):
        run_table(
            SPEC, _opts(tmp_path / "ff", keep_going=False), executor=FakeExecutor(0, RuntimeError("x")), log=print
        )


def test_progress_line_per_cell_with_eta(tmp_path: Path) -> None:
    lines: list[str] = []
    run_table(SPEC, _opts(tmp_path, bits=[12], seeds=[0, 1]), executor=FakeExecutor(), log=lines.append)
    assert "2 cells (0 cached, 2 to run)" in lines[0]
    assert lines[1].startswith("[1/2] DPSH 12 bits seed 0: mAP@all 0.5120") and "ETA" in lines[1]
    assert lines[2].startswith("[2/2] DPSH 12 bits seed 1")


def test_shards_share_a_store_and_never_run_a_cell_twice(tmp_path: Path) -> None:
    executors = [FakeExecutor() for _ in range(3)]
    for i, ex in enumerate(executors):
        run_table(SPEC, _opts(tmp_path, shard=(i, 3)), executor=ex, log=lambda _: None)
    runs = [k for ex in executors for k in ex.runs]
    assert len(runs) == len(set(runs)) == 9


def test_cell_locked_by_another_shard_is_skipped(tmp_path: Path) -> None:
    store = ResultStore(tmp_path)
    ex = FakeExecutor()
    # Find the first cell's key and hold its lock as "another machine" would.
    probe = FakeExecutor()
    run_table(SPEC, _opts(tmp_path / "probe", bits=[12], seeds=[0]), executor=probe, log=lambda _: None)
    with store.locked(probe.runs[0]) as held:
        assert held is not None
        summary = run_table(SPEC, _opts(tmp_path, bits=[12], seeds=[0]), executor=ex, log=lambda _: None)
    assert summary.locked == probe.runs and ex.runs == []


def test_wandb_online_without_key_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "none"))
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(ValueError, match="WANDB_API_KEY"):
        check_wandb_mode("online")
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    check_wandb_mode("online")
    with pytest.raises(ValueError, match="--wandb"):
        check_wandb_mode("sometimes")
