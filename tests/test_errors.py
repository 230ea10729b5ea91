"""The CLI's error boundary: every entry point turns a user error into one line and a distinct exit status."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from hashbench.cli import main
from hashbench.errors import EXIT_CODES, UnknownNameError, classify, cli_boundary, debug_requested, suggest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def no_data(tmp_path, monkeypatch) -> Path:
    """An empty data root and an empty home cache: no dataset and no weights file can be found."""
    root = tmp_path / "data"
    root.mkdir()
    monkeypatch.setenv("HASHBENCH_DATA", str(root))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("HASHBENCH_DEBUG", raising=False)
    monkeypatch.delenv("HASHBENCH_WEIGHTS", raising=False)
    return root


def _fails(capsys, argv: list[str], kind: str, *expected: str) -> str:
    """Run ``hashbench argv``: it must exit with ``kind``'s status, print ``hashbench <cmd>: error: ...`` and no
    traceback; returns stderr."""
    status = main(argv)
    out, err = capsys.readouterr()
    assert status == EXIT_CODES[kind], (status, err)
    assert "Traceback" not in err + out
    for text in expected:
        assert text in err, err
    return err


# ------------------------------------------------------------------ one test per entry point


def test_run_unknown_method_suggests_the_closest(capsys, no_data) -> None:
    err = _fails(capsys, ["run", "--model", "DPHS"], "usage", "hashbench run: error: unknown method 'DPHS'")
    assert "did you mean 'DPSH'" in err and err.count("\n") == 1  # one line


def test_run_bad_option_values(capsys, no_data) -> None:
    _fails(capsys, ["run", "--model", "DPSH", "--bits", "0"], "usage", "--bits must be positive")
    err = _fails(capsys, ["run", "--model", "DPSH", "--data", "fashion-mnst"], "usage", "unknown data protocol")
    assert "did you mean 'fashion-mnist'" in err
    _fails(capsys, ["run", "--model", "DPSH", "--profile", "quik"], "usage", "unknown profile 'quik'; did you mean")


def test_run_missing_data_names_the_fix(capsys, no_data) -> None:
    err = _fails(capsys, ["run", "--model", "DPSH", "--data", "cifar10", "--profile", "smoke"], "missing")
    assert err.startswith("hashbench run: error: dataset 'cifar10' not found") and "hashbench data prepare" in err


@pytest.mark.parametrize("command", ["fit", "validate", "test"])
def test_lightning_commands_unknown_method_and_missing_data(command, capsys, no_data) -> None:
    _fails(capsys, [command, "--model", "HashNt"], "usage", f"hashbench {command}: error: unknown method 'HashNt'")
    _fails(capsys, [command, "--model", "DPSH", "--data", "svhn"], "missing", "dataset 'svhn' not found")


def test_fit_bad_config_file(capsys, no_data, tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    status = main(["fit", "--config", str(bad)])
    err = capsys.readouterr().err
    assert status == EXIT_CODES["usage"] and "Traceback" not in err  # jsonargparse's usage error (exit 2)


def test_table_unknown_bad_spec_and_unwritable_output(capsys, no_data, tmp_path) -> None:
    err = _fails(capsys, ["table", "dmeo"], "usage", "hashbench table: error: table spec 'dmeo' not found")
    assert "did you mean 'demo'" in err
    bad = tmp_path / "bad.yaml"
    bad.write_text("title: x\nprotocol: [\n")
    _fails(capsys, ["table", str(bad)], "config", "not valid YAML")
    bad.write_text("title: x\nprotocol: fashion-mnist\nbits: [8]\nmethods: [LSH]\nmetric: mAP@all\nnope: 1\n")
    _fails(capsys, ["table", str(bad)], "config", "unknown key(s) ['nope']")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    spec = REPO / "tests" / "bench" / "fixtures" / "tiny-demo.yaml"
    argv = ["table", str(spec), "--results", str(tmp_path / "res"), "--out", str(blocker / "sub")]
    status = main(argv)
    err = capsys.readouterr().err
    assert status == EXIT_CODES["output"] and "not writable" in err and "Traceback" not in err


def test_table_missing_data_stops_before_cell_one(capsys, no_data, tmp_path) -> None:
    argv = ["table", "cifar10", "--results", str(tmp_path / "res"), "--out", str(tmp_path / "lb")]
    status = main(argv)
    err = capsys.readouterr().err
    assert status == EXIT_CODES["missing"] and "dataset 'cifar10' not found" in err and "Traceback" not in err


def test_data_unknown_missing_and_checksum(capsys, no_data) -> None:
    _fails(capsys, ["data", "verify", "cifar1O"], "usage", "hashbench data: error: unknown data protocol 'cifar1O'")
    _fails(capsys, ["data", "verify", "nuswide21"], "missing", "hashbench data: error: dataset 'nuswide21' not found")
    # a checksum mismatch: tests/data/test_cli.py::test_prepare_and_verify_cifar (exit 4)


def test_list_bad_option(capsys) -> None:
    assert main(["list", "--nope"]) == EXIT_CODES["usage"]
    assert "unrecognized arguments: --nope" in capsys.readouterr().err


def test_weights_unknown_missing_and_checksum(capsys, no_data, tmp_path) -> None:
    err = _fails(capsys, ["weights", "verify", "resnet"], "usage", "hashbench weights: error: unknown pretrained")
    assert "did you mean 'resnet50' or 'resnet18'" in err
    _fails(capsys, ["weights", "verify", "alexnet", "--file", str(tmp_path / "none.pth")], "missing", "does not exist")
    corrupt = tmp_path / "alexnet.pth"
    corrupt.write_bytes(b"not alexnet")
    status = main(["weights", "verify", "alexnet", "--file", str(corrupt)])
    assert status == EXIT_CODES["checksum"] and "Traceback" not in capsys.readouterr().err


def test_export_and_search_missing_files(capsys, tmp_path) -> None:
    argv = ["export", str(tmp_path / "none.ckpt"), "--data", "fashion-mnist", "--index", "flat", str(tmp_path / "i")]
    _fails(capsys, argv, "missing", "hashbench export: error: ", "no such checkpoint file or run folder")
    _fails(capsys, ["search", str(tmp_path / "none.faiss"), "--query-split"], "missing", "no such index file")


def test_unknown_command(capsys) -> None:
    assert main(["tabel"]) == EXIT_CODES["usage"]
    assert "unknown command 'tabel'; did you mean 'table'?" in capsys.readouterr().err


# ------------------------------------------------------------------ the boundary itself


def test_nan_loss_stops_the_run_naming_method_step_and_term(capsys, no_data) -> None:
    argv = ["run", "--model", "hashbench.bench.testing.DivergingTestHash", "--data", "fashion-mnist"]
    err = _fails(capsys, [*argv, "--bits", "8", "--profile", "smoke"], "diverged")
    assert "DivergingTestHash: non-finite loss at epoch 0, step 2, in the term(s) quantization" in err


def test_debug_shows_the_traceback(capsys, monkeypatch) -> None:
    monkeypatch.setenv("HASHBENCH_DEBUG", "0")  # restored after the test (--debug sets it for nested boundaries)
    assert main(["--debug", "run", "--model", "NOPE"]) == EXIT_CODES["usage"]
    err = capsys.readouterr().err
    assert "Traceback" in err and "UnknownNameError" in err and "hashbench run: error: unknown method" in err
    monkeypatch.setenv("HASHBENCH_DEBUG", "1")
    assert main(["run", "--model", "NOPE"]) == EXIT_CODES["usage"]
    assert "Traceback" in capsys.readouterr().err


def test_a_bug_is_shown_with_its_traceback(capsys, monkeypatch) -> None:
    monkeypatch.delenv("HASHBENCH_DEBUG", raising=False)

    def broken(argv):
        raise RuntimeError("index out of step")

    assert cli_boundary("hashbench x", broken, []) == EXIT_CODES["failed"]
    err = capsys.readouterr().err
    assert "Traceback" in err and "internal error: RuntimeError: index out of step" in err and "bug" in err


def test_interrupt_and_closed_pipe(capsys, monkeypatch) -> None:
    monkeypatch.delenv("HASHBENCH_DEBUG", raising=False)

    def interrupted(argv):
        raise KeyboardInterrupt

    assert cli_boundary("hashbench table", interrupted, []) == 130
    assert "hashbench table: interrupted" in capsys.readouterr().err
    # `hashbench list | head -1`: the reader goes away; no traceback, no "Exception ignored" message
    proc = subprocess.run(
        f"{sys.executable} -m hashbench.cli table demo --plan | head -1",
        shell=True,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.stdout.startswith("table demo") and "Traceback" not in proc.stderr and "Error" not in proc.stderr


def test_every_user_error_kind_has_its_own_status() -> None:
    from hashbench.bench.spec import SpecError
    from hashbench.data import DataChecksumError, DatasetNotFoundError, SplitChecksumError
    from hashbench.nn.weights import WeightsChecksumError

    assert len(set(EXIT_CODES.values())) == len(EXIT_CODES)
    assert classify(UnknownNameError("method", "x", ["y"])) == "usage"
    assert classify(ValueError("n_bits must be positive")) == "usage"
    assert classify(DatasetNotFoundError("dataset 'x' not found")) == "missing"
    for err in (SplitChecksumError("x"), DataChecksumError("x"), WeightsChecksumError("x")):
        assert classify(err) == "checksum"
    assert classify(SpecError("x")) == "config"
    assert classify(PermissionError(13, "Permission denied")) == "output"
    assert classify(FloatingPointError("nan")) == "diverged"
    assert classify(RuntimeError("x")) is None and classify(AttributeError("x")) is None
    assert classify(KeyError("hash_centers")) is None  # a bare missing key is a bug
    assert classify(KeyError("unknown method(s) ['A', 'B']; registered methods: DPSH")) == "usage"


def test_suggestions_and_unknown_name_error() -> None:
    assert suggest("dpssh", ["DPSH", "DSH", "CSQ"])[0] == "DPSH"
    assert suggest("greedy-hash", ["GreedyHash", "GreedyHashUnsup"])[0] == "GreedyHash"
    assert suggest("zzzz", ["DPSH"]) == []
    err = UnknownNameError("method", "DPHS", ["DPSH", "CSQ"])
    assert isinstance(err, KeyError) and str(err) == "unknown method 'DPHS'; did you mean 'DPSH'? (known: DPSH, CSQ)"


def test_debug_flag_is_removed_from_the_arguments(monkeypatch) -> None:
    monkeypatch.setenv("HASHBENCH_DEBUG", "0")
    argv = ["table", "demo", "--debug", "--", "--debug"]
    assert debug_requested(argv) and argv == ["table", "demo", "--", "--debug"]
