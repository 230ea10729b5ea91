"""benchmarks/gpu_check.py: the CPU smoke run of every section, the FAILED/continue contract, --device cuda."""

from __future__ import annotations

import importlib.util
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


def _load_script():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def gpu_check(monkeypatch: pytest.MonkeyPatch):
    # main() sets these environment variables and Lightning's logger levels process-wide: put them back after.
    for key, value in {"HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled", "WANDB_SILENT": "true"}.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("HASHBENCH_ALLOW_DOWNLOAD", raising=False)
    loggers = [logging.getLogger(f"lightning.{p}.utilities.rank_zero") for p in ("pytorch", "fabric")]
    levels = [log.level for log in loggers]
    yield _load_script()
    for log, level in zip(loggers, levels, strict=True):
        log.setLevel(level)


def test_cpu_smoke_runs_every_section_and_prints_the_figures() -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--cpu-smoke"], capture_output=True, text=True, env=env, timeout=240
    )
    out = proc.stdout
    assert proc.returncode == 0, out[-4000:] + proc.stderr[-4000:]
    assert "FAILED" not in out
    assert "# hashbench GPU check" in out and f"torch {torch.__version__}" in out
    for label, precision in (("fp32", "32-true"), ("bf16", "bf16-mixed")):
        line = next(x for x in out.splitlines() if x.startswith(f"{label:5} ({precision}):"))
        step = re.search(r"median step ([\d.]+) ms", line)
        ips = re.search(r"([\d.]+) images/s \(batch / median step\)", line)
        assert step and float(step.group(1)) > 0, line
        assert ips and float(ips.group(1)) > 0, line
        assert "images/s end-to-end" in line and "peak GPU memory" in line
    assert "run_cell" in out  # it says which code path it timed
    assert "SKIPPED ddp:" in out  # no CUDA here: the DDP section says why it did not run
    eval_line = next(x for x in out.splitlines() if x.startswith("mean_average_precision"))
    eval_s = re.search(r"eval time ([\d.]+) s", eval_line)
    mean_ap = re.search(r"mAP@all ([\d.]+)", eval_line)
    assert eval_s and float(eval_s.group(1)) > 0
    assert mean_ap and 0.0 < float(mean_ap.group(1)) < 0.05  # random codes over 100 classes: about 0.01
    assert "200 queries x 5,000 database" in out and "torch matmul + bincount" in out
    assert re.search(r"cross-check on 200 x 5,000: .*\|diff\| 0\.0e\+00", out)
    assert "train: ok | ddp: skipped | eval: ok" in out
    assert re.search(r"total wall time [\d.]+ s", out)


def test_a_failing_section_is_reported_and_the_rest_still_runs(
    gpu_check, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(args) -> None:
        raise ValueError("simulated breakage")

    monkeypatch.setattr(gpu_check, "section_ddp", broken)
    status = gpu_check.main(["--cpu-smoke", "--sections", "ddp", "eval", "--eval-queries", "8"])
    out = capsys.readouterr().out
    assert status == 1
    assert "FAILED ddp: ValueError: simulated breakage" in out
    assert "mean_average_precision (mAP@all" in out  # the next section ran
    assert "ddp: FAILED | eval: ok" in out


def test_device_cuda_without_cuda_exits_2(gpu_check, capsys: pytest.CaptureFixture[str]) -> None:
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    assert gpu_check.main(["--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert "--device cuda but no CUDA device is available" in err and "--cpu-smoke" in err


def test_arguments_are_checked(gpu_check) -> None:
    with pytest.raises(SystemExit) as exc:
        gpu_check.main(["--cpu-smoke", "--image-size", "32"])  # AlexNet needs >= 63 px
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:
        gpu_check.main(["--cpu-smoke", "--device", "cuda"])
    assert exc.value.code == 2
