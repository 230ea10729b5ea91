"""Split drawing, storage and checksum verification."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from hashbench.data.protocols import get_protocol
from hashbench.data.splits import (
    PACKAGE_SPLIT_DIR,
    SplitChecksumError,
    check_split_file,
    draw_per_class_split,
    draw_random_split,
    resolve_split,
    write_split,
)


def _labels(per_class=30, classes=4, seed=1):
    return np.random.default_rng(seed).permutation(np.repeat(np.arange(classes), per_class))


@pytest.mark.parametrize("rule", ["rest", "all_but_query", "train"])
def test_per_class_split(rule):
    labels = _labels()
    split = draw_per_class_split(labels, 4, 3, 5, rule, seed=7)
    assert np.bincount(labels[split.query], minlength=4).tolist() == [3] * 4
    assert np.bincount(labels[split.train], minlength=4).tolist() == [5] * 4
    assert not np.intersect1d(split.query, split.train).size
    everything = np.arange(labels.size)
    expected_db = {
        "rest": np.setdiff1d(everything, np.union1d(split.query, split.train)),
        "all_but_query": np.setdiff1d(everything, split.query),
        "train": split.train,
    }[rule]
    np.testing.assert_array_equal(split.database, expected_db)
    again = draw_per_class_split(labels, 4, 3, 5, rule, seed=7)
    np.testing.assert_array_equal(again.query, split.query)
    other = draw_per_class_split(labels, 4, 3, 5, rule, seed=8)
    assert not np.array_equal(other.query, split.query)


def test_per_class_split_follows_documented_algorithm():
    """Re-derive the split from the algorithm written in the module docstring."""
    labels = _labels()
    rng = np.random.Generator(np.random.PCG64(3))
    q, t = [], []
    for c in range(4):
        perm = rng.permutation(np.flatnonzero(labels == c))
        q += perm[:2].tolist()
        t += perm[2:6].tolist()
    split = draw_per_class_split(labels, 4, 2, 4, "rest", seed=3)
    assert split.query.tolist() == sorted(q)
    assert split.train.tolist() == sorted(t)


def test_per_class_split_too_small_class():
    with pytest.raises(ValueError, match="class 0 has 30 items"):
        draw_per_class_split(_labels(), 4, 20, 20, "rest", seed=0)


def test_random_split():
    split = draw_random_split(100, 10, 30, "all_but_query", seed=0)
    perm = np.random.Generator(np.random.PCG64(0)).permutation(100)
    assert split.query.tolist() == sorted(perm[:10].tolist())
    assert split.train.tolist() == sorted(perm[10:40].tolist())
    assert split.database.size == 90 and np.isin(split.train, split.database).all()
    with pytest.raises(ValueError, match="smaller"):
        draw_random_split(30, 10, 30, "rest", seed=0)


def test_materialise_then_verify(tmp_path):
    proto = replace(get_protocol("cifar10"), query_per_class=2, train_per_class=3)
    labels = _labels(per_class=10, classes=10)
    first = resolve_split(proto, labels, tmp_path)
    path = tmp_path / "cifar10.json"
    assert path.is_file() and (tmp_path / "checksums.json").is_file()
    second = resolve_split(proto, labels, tmp_path)
    np.testing.assert_array_equal(first.train, second.train)
    # Different labels than the split was drawn from: refuse.
    with pytest.raises(SplitChecksumError, match="differ"):
        resolve_split(proto, np.roll(labels, 1), tmp_path)
    # Tampered file: refuse.
    record = json.loads(path.read_text())
    record["query"][0] = record["train"][0]
    path.write_text(json.dumps(record, sort_keys=True, separators=(",", ":")) + "\n")
    with pytest.raises(SplitChecksumError, match="refusing to run"):
        resolve_split(proto, labels, tmp_path)


def test_missing_checksum_refused(tmp_path):
    proto = replace(get_protocol("cifar10"), query_per_class=2, train_per_class=3)
    labels = _labels(per_class=10, classes=10)
    write_split(proto, draw_per_class_split(labels, 10, 2, 3, "rest", 0), labels, tmp_path)
    (tmp_path / "checksums.json").write_text("{}")
    with pytest.raises(SplitChecksumError, match="no checksum"):
        check_split_file(tmp_path / "cifar10.json", tmp_path)


def test_committed_fashion_mnist_split():
    """The shipped split passes its checksum and has the protocol's sizes."""
    split, record, _ = check_split_file(PACKAGE_SPLIT_DIR / "fashion-mnist.json", PACKAGE_SPLIT_DIR)
    assert (split.query.size, split.train.size, split.database.size) == (1000, 5000, 64000)
    assert record["pool_size"] == 70000 and record["seed"] == 0
    assert np.union1d(np.union1d(split.query, split.train), split.database).size == 70000
