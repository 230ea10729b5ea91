"""Quiet output: known-harmless third-party warnings are hidden (``-v`` shows them), hashbench's own are fixed;
the install is only what the main job needs, with the rest in extras."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path

import pytest

from hashbench.errors import MissingExtraError, optional_import
from hashbench.quiet import KNOWN_HARMLESS, install_warning_filters, verbose_requested, without_anonymous_setting

REPO = Path(__file__).resolve().parents[1]
LEAFSPEC = "`isinstance(treespec, LeafSpec)` is deprecated, use `isinstance(treespec, TreeSpec)` instead."


def _shown(message: str) -> bool:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        install_warning_filters()
        warnings.warn(message, DeprecationWarning, stacklevel=1)
    return bool(caught)


def test_known_harmless_warnings_are_hidden_and_others_are_not() -> None:
    assert all(why for _pattern, why in KNOWN_HARMLESS)  # each filter says why it is harmless
    assert not _shown(LEAFSPEC)
    assert _shown("something hashbench does not know about")


def test_verbose_shows_everything(monkeypatch) -> None:
    monkeypatch.setenv("HASHBENCH_VERBOSE", "0")
    argv = ["-v", "table", "demo"]
    assert verbose_requested(argv) and argv == ["table", "demo"]
    assert not verbose_requested(["data", "list", "-v"])  # a subcommand's own -v is left alone
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        install_warning_filters(verbose=True)
        warnings.warn(LEAFSPEC, DeprecationWarning, stacklevel=1)
    assert caught


def test_a_fit_with_a_logger_logs_every_epoch_without_the_interval_warning(tmp_path) -> None:
    from lightning.pytorch.loggers import CSVLogger

    from hashbench.bench.run import _logging_interval, run_cell
    from hashbench.testing import SyntheticHashingDataModule

    dm = SyntheticHashingDataModule(num_train=64, batch_size=16)
    dm.setup("fit")
    assert _logging_interval(dm) == 4  # 4 batches an epoch: log each step instead of every 50
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run_cell(
            "DPSH",
            n_bits=8,
            profile={"max_epochs": 1, "batch_size": 16},
            datamodule=SyntheticHashingDataModule(num_train=64, batch_size=16),
            logger=CSVLogger(tmp_path),
            root_dir=tmp_path,
        )
    assert not [w for w in caught if "logging interval" in str(w.message)]
    logged = (tmp_path / "lightning_logs" / "version_0" / "metrics.csv").read_text()
    assert "train/loss" in logged  # the short epoch's steps were logged


def test_wandb_anonymous_key_is_dropped() -> None:
    class FakeLogger:
        _wandb_init = {"project": "p", "anonymous": None}

    logger = without_anonymous_setting(FakeLogger())
    assert logger._wandb_init == {"project": "p"}
    FakeLogger._wandb_init = {"anonymous": "allow"}
    assert without_anonymous_setting(FakeLogger())._wandb_init == {"anonymous": "allow"}  # a real choice is kept
    assert without_anonymous_setting(object()) is not None


def test_install_extras_are_opt_in() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11 (hashbench supports 3.10; CI runs 3.11)
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"])
    for optional in ("faiss", "open-clip", "submitit", "wandb-workspaces", "pytest", "hypothesis", "ruff"):
        assert optional not in core, f"{optional} is a core dependency"
    extras = project["optional-dependencies"]
    assert {"clip", "faiss", "slurm", "wandb", "dev"} <= set(extras)
    assert any("hashbench[clip,faiss,slurm,wandb]" in d for d in extras["dev"])  # the test suite tests them all
    assert isinstance(project["license"], str)  # an SPDX expression, not the deprecated table
    makefile = (REPO / "Makefile").read_text()
    assert '-e ".[dev]"' in makefile  # `make install` installs what `make test` needs


def test_a_missing_extra_says_how_to_install_it(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "faiss", None)  # as if faiss-cpu were not installed
    from hashbench.search.index import _faiss

    with pytest.raises(MissingExtraError, match=r"mih` needs no faiss.*pip install 'hashbench\[faiss\]'"):
        _faiss()
    assert optional_import("json", "none", "x").dumps([]) == "[]"
