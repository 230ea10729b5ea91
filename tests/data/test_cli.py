"""``hashbench data list | verify | prepare`` (called through hashbench.data.cli.main)."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

import hashbench.data.protocols as protocols
from hashbench.data import fashion_mnist as fm
from hashbench.data.cli import main


@pytest.fixture
def small_cifar(monkeypatch):
    table = dict(protocols.PROTOCOLS)
    table["cifar10"] = replace(table["cifar10"], query_per_class=3, train_per_class=10)
    monkeypatch.setattr(protocols, "PROTOCOLS", table)


def test_list(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in protocols.PROTOCOLS:
        assert name in out
    assert "shipped" in out and "drawn on first use" in out


def test_help_exits_cleanly(capsys):
    assert main(["verify", "--help"]) == 0
    assert "split file" in capsys.readouterr().out


@pytest.mark.skipif(not fm.DEBIAN_DIR.is_dir(), reason="Fashion-MNIST not installed (dataset-fashion-mnist)")
def test_verify_real_fashion_mnist(capsys, monkeypatch):
    monkeypatch.delenv("HASHBENCH_DATA", raising=False)
    assert main(["verify", "fashion-mnist"]) == 0
    out = capsys.readouterr().out
    assert out.count("sha256(decompressed)") == 4
    assert "re-draws identically" in out and "query 1000, train 5000, database 64000" in out


def test_prepare_and_verify_cifar(fake_cifar, small_cifar, isolated_root, capsys):
    assert main(["prepare", "cifar10", "--no-download"]) == 0
    assert (isolated_root / "cifar10" / "splits" / "cifar10.json").is_file()
    assert main(["verify", "cifar10"]) == 4  # checksum mismatch: the fake batches are not the real CIFAR-10
    assert "md5" in capsys.readouterr().err
    # Tampering with the materialised split is refused.
    path = isolated_root / "cifar10" / "splits" / "cifar10.json"
    record = json.loads(path.read_text())
    record["query"] = record["query"][1:]
    path.write_text(json.dumps(record))
    assert main(["prepare", "cifar10", "--no-download"]) == 4  # the split checksum no longer matches
    assert "refusing to run" in capsys.readouterr().err


def test_verify_list_files(fake_lists, capsys):
    assert main(["verify", "nuswide21"]) == 0
    out = capsys.readouterr().out
    assert "train.txt  sha256" in out and "no reference checksum recorded" in out


def test_prepare_missing_explains(isolated_root, capsys):
    assert main(["prepare", "mirflickr25k-clip"]) == 3  # missing data
    err = capsys.readouterr().err
    assert str(isolated_root / "mirflickr25k-clip" / "index.mat") in err
    assert "press.liacs.nl/mirflickr" in err


def test_unknown_protocol(capsys):
    assert main(["verify", "cifar100"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("hashbench data: error: unknown data protocol 'cifar100'; did you mean 'cifar10'")
    assert "Traceback" not in err
