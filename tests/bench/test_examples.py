"""Retrieval examples, precision@N and code statistics of a cell (checked against explicit loops), and the
leaderboard's examples figure drawn from stored positions and rebuilt data."""

from __future__ import annotations

import copy
import warnings
from pathlib import Path

import pytest
import torch

from hashbench.bench.examples import (
    cell_report,
    code_statistics,
    example_positions,
    precision_curve,
    rebuild_datamodule,
    top_k,
    write_examples_figure,
)

DATAMODULE = {
    "class_path": "hashbench.testing.SyntheticHashingDataModule",
    "init_args": {"num_train": 32, "num_query": 12, "num_database": 40},
}


def _codes(n: int, bits: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.where(torch.rand(n, bits, generator=g) < 0.5, -1, 1).to(torch.int8)


def _labels(n: int, classes: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.eye(classes)[torch.randint(0, classes, (n,), generator=g)]


def test_example_queries_go_round_robin_over_classes() -> None:
    labels = torch.eye(3)[[2, 0, 0, 1, 2, 1]]
    assert example_positions(labels, 5) == [1, 3, 0, 2, 5]
    assert example_positions(labels, 100) == [1, 3, 0, 2, 5, 4]  # at most Q


def test_top_k_matches_a_loop_with_ties_in_database_order() -> None:
    q, d = _codes(5, 6, 0), _codes(30, 6, 1)  # 6 bits, 30 items: many ties
    order, dist = top_k(q, d, k=10)
    for i in range(5):
        ham = [int((q[i] != d[j]).sum()) for j in range(30)]
        expected = sorted(range(30), key=lambda j: (ham[j], j))[:10]
        assert order[i].tolist() == expected
        assert dist[i].tolist() == [ham[j] for j in expected]


def test_code_statistics_match_loops() -> None:
    codes = _codes(50, 8, 2)
    codes[:10] = codes[0]  # one bucket of at least 10
    stats = code_statistics(codes)
    for b in range(8):
        assert stats["bit_balance"][b] == pytest.approx(sum(int(codes[i, b]) > 0 for i in range(50)) / 50, abs=1e-6)
    weights = [sum(int(v) > 0 for v in row) for row in codes]
    assert stats["weight_histogram"] == [weights.count(w) for w in range(9)]
    buckets: dict[tuple, int] = {}
    for row in codes.tolist():
        buckets[tuple(row)] = buckets.get(tuple(row), 0) + 1
    assert stats["distinct_codes"] == len(buckets) and stats["largest_bucket"] == max(buckets.values())
    assert stats["balance_deviation"] == pytest.approx(sum(abs(v - 0.5) for v in stats["bit_balance"]) / 8, abs=1e-6)


def test_precision_at_n_is_the_expectation_over_tie_orders() -> None:
    q, d = _codes(6, 4, 3), _codes(25, 4, 4)
    ql, dl = _labels(6, 3, 5), _labels(25, 3, 6)
    curve = precision_curve(q, d, ql, dl, ns=(1, 3, 10, 100))
    assert curve["n"] == [1, 3, 10, 25]  # clipped, the database size added
    for idx, n in enumerate(curve["n"]):
        precisions, recalls = [], []
        for i in range(6):
            ham = [int((q[i] != d[j]).sum()) for j in range(25)]
            rel = [bool((ql[i] * dl[j]).sum() > 0) for j in range(25)]
            # items strictly closer than the n-th distance are all in; the rest of the n comes from the tie group
            cut = sorted(ham)[n - 1]
            inside = sum(r for h, r in zip(ham, rel, strict=True) if h < cut)
            n_in = sum(h < cut for h in ham)
            group = [r for h, r in zip(ham, rel, strict=True) if h == cut]
            hits = inside + (n - n_in) * sum(group) / len(group)
            precisions.append(hits / n)
            recalls.append(hits / sum(rel) if sum(rel) else 0.0)
        assert curve["precision"][idx] == pytest.approx(sum(precisions) / 6, abs=1e-5)
        assert curve["recall"][idx] == pytest.approx(sum(recalls) / 6, abs=1e-5)


@pytest.fixture(scope="module")
def trained() -> tuple:
    """A DPSH model fitted for a few steps on the synthetic datamodule, and that datamodule."""
    import lightning as L

    from hashbench.bench.run import instantiate_datamodule
    from hashbench.methods.dpsh import DPSH
    from hashbench.testing import quiet_trainer

    L.seed_everything(0, verbose=False)
    dm = instantiate_datamodule(DATAMODULE, batch_size=16, seed=0)
    model = DPSH(n_bits=8, backbone="compact_cnn", optimizer="adam", lr=1e-3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        quiet_trainer(None, max_epochs=2).fit(model, datamodule=dm)
    return model, dm


def test_cell_report_marks_relevance_from_labels(trained: tuple) -> None:
    model, dm = trained
    report = cell_report(model, dm)
    ex = report["retrieval_examples"]["directions"]["I→I"]
    q_set, d_set = (loader.dataset for loader in dm.test_dataloader())
    assert len(ex["queries"]) == 8 and report["retrieval_examples"]["k"] == 10
    for q in ex["queries"]:
        q_label = q_set[q["position"]].labels
        assert q["labels"] == torch.nonzero(q_label).flatten().tolist()
        for pos, rel in zip(q["retrieved"], q["relevant"], strict=True):
            assert rel == bool((q_label * d_set[pos].labels).sum() > 0)
        assert q["distances"] == sorted(q["distances"])
    assert report["precision_at_n"]["I→I"]["n"][-1] == len(d_set)
    assert len(report["code_stats"]["image"]["bit_balance"]) == 8
    import json

    json.dumps(report)  # stored in the cell's record as it is


def _record(method: str, report: dict, seed: int = 0) -> dict:
    config = {"datamodule": DATAMODULE, "profile": {"batch_size": 16}, "seed": seed, "protocol": "synthetic"}
    return {"seed": seed, "config": config, "result": {"extra": copy.deepcopy(report), "metrics": {}}}


def test_examples_figure_from_stored_positions(trained: tuple, tmp_path: Path) -> None:
    model, dm = trained
    report = cell_report(model, dm)
    assert (
        rebuild_datamodule(_record("A", report)["config"])
        .test_dataloader()[1]
        .dataset[3]
        .labels.equal(dm.test_dataloader()[1].dataset[3].labels)
    )
    other = copy.deepcopy(report)
    for q in other["retrieval_examples"]["directions"]["I→I"]["queries"]:
        q["labels"] = [99]  # as if stored from another data configuration
    notes = write_examples_figure(
        "synthetic",
        [("A", _record("A", report)), ("B", _record("B", report)), ("C", _record("C", other))],
        tmp_path / "ex.png",
    )
    assert (tmp_path / "ex.png").stat().st_size > 5000
    assert len(notes) == 1 and notes[0].startswith("C:")
    assert write_examples_figure("x", [("A", {"result": {"extra": {}}})], tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()
