"""Tests of the HashingRetrieval torchmetrics wrapper (incl. a 2-process CPU/gloo DDP run)."""

from __future__ import annotations

import importlib
import os
import sys
import tempfile
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from hashbench.metrics import HashingRetrieval, retrieval_report

KW = {"ks": (None, 25), "radius": 2, "ns": (10,), "pr_curve": True}


def _data(seed: int = 0, multi: bool = False) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    nq, nd, bits = 23, 97, 12
    if multi:
        ql = (torch.rand(nq, 5, generator=gen) < 0.3).long()
        dl = (torch.rand(nd, 5, generator=gen) < 0.3).long()
    else:
        ql, dl = torch.randint(0, 4, (nq,), generator=gen), torch.randint(0, 4, (nd,), generator=gen)
    q = torch.randint(0, 2, (nq, bits), generator=gen).float() * 2 - 1
    d = torch.randint(0, 2, (nd, bits), generator=gen).float() * 2 - 1
    return q, d, ql, dl


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert set(a) == set(b)
    for key in a:
        torch.testing.assert_close(a[key].cpu().double(), b[key].cpu().double(), equal_nan=True, rtol=0, atol=1e-12)


@pytest.mark.parametrize("multi", [False, True])
def test_metric_equals_functional_over_random_batches(multi: bool) -> None:
    q, d, ql, dl = _data(1, multi)
    want = retrieval_report(q, d, ql, dl, **KW)
    gen = torch.Generator().manual_seed(2)
    for _ in range(3):
        metric = HashingRetrieval(**KW)
        # Random batch sizes, queries and database batches interleaved in random order; the database is
        # shuffled too (ties="expected" does not depend on database order).
        perm = torch.randperm(d.shape[0], generator=gen)
        pieces = [("query", q, ql, torch.arange(q.shape[0])), ("database", d, dl, perm)]
        batches = []
        for role, codes, labels, order in pieces:
            cuts = sorted(torch.randint(1, len(order), (3,), generator=gen).tolist())
            for chunk in torch.tensor_split(order, cuts):
                if len(chunk):
                    batches.append((role, codes[chunk], labels[chunk]))
        for i in torch.randperm(len(batches), generator=gen).tolist():
            role, codes, labels = batches[i]
            metric.update(codes > 0 if i % 2 else codes, labels, role=role)  # mixed code formats on purpose
        _assert_same(metric.compute(), want)


def test_metric_index_ties_follow_update_order() -> None:
    q, d, ql, dl = _data(3)
    metric = HashingRetrieval(ks=(None, 5), ns=(5,), ties="index")
    metric.update(q, ql, role="query")
    metric.update(d[:40], dl[:40], role="database")
    metric.update(d[40:], dl[40:], role="database")
    _assert_same(metric.compute(), retrieval_report(q, d, ql, dl, ks=(None, 5), ns=(5,), ties="index"))


def test_metric_stores_codes_compactly_and_resets() -> None:
    q, d, ql, dl = _data(4)
    metric = HashingRetrieval()
    metric.update(q, ql, role="query")
    metric.update(d, dl, role="database")
    assert metric.query_codes[0].dtype == torch.int8
    assert metric.db_codes[0].dtype == torch.int8
    metric.reset()
    assert metric.query_codes == [] and metric.db_codes == []


def test_cross_modal_one_metric_per_direction() -> None:
    q_img, d_txt, ql, dl = _data(5)
    q_txt, d_img, _, _ = _data(6)
    i2t, t2i = HashingRetrieval(ks=(10,)), HashingRetrieval(ks=(10,))
    i2t.update(q_img, ql, role="query")
    i2t.update(d_txt, dl, role="database")
    t2i.update(q_txt, ql, role="query")
    t2i.update(d_img, dl, role="database")
    mean_map = (i2t.compute()["mAP@10"] + t2i.compute()["mAP@10"]) / 2
    want_i2t = retrieval_report(q_img, d_txt, ql, dl, ks=(10,))["mAP@10"]
    want_t2i = retrieval_report(q_txt, d_img, ql, dl, ks=(10,))["mAP@10"]
    assert float(mean_map) == pytest.approx(float(want_i2t + want_t2i) / 2, abs=1e-14)


def test_metric_bad_input() -> None:
    q, d, ql, dl = _data(7)
    with pytest.raises(ValueError):
        HashingRetrieval(ties="optimistic")
    with pytest.raises(ValueError):
        HashingRetrieval(ks=(0,))
    metric = HashingRetrieval()
    with pytest.raises(ValueError):
        metric.update(q, ql, role="gallery")
    with pytest.raises(ValueError):
        metric.update(q * 0.3, ql)
    with pytest.raises(ValueError):
        metric.update(q, ql[:3])
    metric.update(q, ql)
    with pytest.raises(ValueError):
        metric.update(q[:, :8], ql)  # bit length changed
    with pytest.raises(ValueError):
        metric.update(q, torch.nn.functional.one_hot(ql, 4))  # label format changed
    with pytest.raises(ValueError):
        metric.compute()  # no database items


@pytest.mark.ddp
def test_ddp_two_processes_equal_single_process() -> None:
    # The worker lives in a plain module on sys.path so spawned children can unpickle it by name.
    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:
        sys.path.insert(0, here)
    ddp_script = importlib.import_module("_ddp_script")
    q, d, ql, dl = ddp_script.make_data()
    want = retrieval_report(q, d, ql, dl, **ddp_script.KW)
    with tempfile.TemporaryDirectory() as out_dir:
        mp.spawn(ddp_script.worker, args=(2, ddp_script.free_port(), out_dir), nprocs=2, join=True)
        for rank in range(2):
            _assert_same(torch.load(os.path.join(out_dir, f"rank{rank}.pt")), want)
