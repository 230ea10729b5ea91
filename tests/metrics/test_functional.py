"""Tests of hashbench.metrics.functional against slow references written from the definitions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hashbench.metrics import functional as F
from hashbench.metrics.functional import (
    hamming_distance,
    mean_average_precision,
    precision_at_n,
    precision_recall_by_radius,
    precision_within_radius,
    recall_at_n,
    retrieval_report,
)

from . import _reference as ref


@pytest.fixture(autouse=True, params=["popcount", "torch"])
def histogram_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run every test here with both CPU histogram implementations (compiled popcount kernels, torch matmul)."""
    if request.param == "popcount" and not F._popcount.available():
        pytest.skip("numba is not installed")
    monkeypatch.setattr(F, "HISTOGRAM_BACKEND", request.param)
    return request.param


def _signs(n: int, k: int, gen: torch.Generator) -> torch.Tensor:
    return torch.randint(0, 2, (n, k), generator=gen).float() * 2 - 1


def _structured(n: int, k: int, labels: torch.Tensor, gen: torch.Generator, flip: float = 0.2) -> torch.Tensor:
    centres = torch.randint(0, 2, (int(labels.max()) + 1, k), generator=torch.Generator().manual_seed(7)) * 2 - 1
    codes = centres[labels].float()
    flips = torch.rand(n, k, generator=gen) < flip
    return torch.where(flips, -codes, codes)


def _multi_hot(n: int, c: int, gen: torch.Generator, p: float = 0.3) -> torch.Tensor:
    return (torch.rand(n, c, generator=gen) < p).long()


# --------------------------------------------------------------------------------------- distances ----
@pytest.mark.parametrize("k", [1, 12, 36, 64, 130])
def test_hamming_distance_matches_bit_count(k: int) -> None:
    gen = torch.Generator().manual_seed(k)
    q, d = _signs(5, k, gen), _signs(9, k, gen)
    got = hamming_distance(q, d)
    assert got.dtype == torch.long
    np.testing.assert_array_equal(got.numpy(), ref.distances(q, d))


def test_code_formats_agree() -> None:
    gen = torch.Generator().manual_seed(0)
    q, d = _signs(6, 36, gen), _signs(20, 36, gen)
    ql, dl = torch.randint(0, 3, (6,), generator=gen), torch.randint(0, 3, (20,), generator=gen)
    base = retrieval_report(q, d, ql, dl, ks=(None, 5), ns=(3,), pr_curve=True)
    for qq, dd in [
        (q > 0, d > 0),
        ((q > 0).long(), (d > 0).float()),
        (q.long(), (d > 0).to(torch.uint8)),
        (q.to(torch.int8), d.double()),
    ]:
        other = retrieval_report(qq, dd, ql, dl, ks=(None, 5), ns=(3,), pr_curve=True)
        for key in base:
            torch.testing.assert_close(other[key], base[key], equal_nan=True, rtol=0, atol=0)


# ------------------------------------------------------------------------------------- ties="index" ----
@pytest.mark.parametrize("num_bits", [4, 12, 36, 64])
@pytest.mark.parametrize("multi", [False, True])
def test_map_index_ties_matches_stable_sort_loop(num_bits: int, multi: bool) -> None:
    gen = torch.Generator().manual_seed(num_bits + 100 * multi)
    nq, nd = 13, 57
    if multi:
        ql, dl = _multi_hot(nq, 5, gen), _multi_hot(nd, 5, gen)
        q, d = _signs(nq, num_bits, gen), _signs(nd, num_bits, gen)
    else:
        ql, dl = torch.randint(0, 4, (nq,), generator=gen), torch.randint(0, 4, (nd,), generator=gen)
        q, d = _structured(nq, num_bits, ql, gen), _structured(nd, num_bits, dl, gen)
    for k in [None, 1, 5, 20, nd, nd + 10]:
        got = float(mean_average_precision(q, d, ql, dl, k=k, ties="index"))
        assert got == pytest.approx(ref.map_reference(q, d, ql, dl, k, "index"), abs=1e-12)


# ---------------------------------------------------------------------------------- ties="expected" ----
def test_expected_equals_mean_over_all_tie_permutations_random_small() -> None:
    gen = torch.Generator().manual_seed(1)
    for trial in range(40):
        num_bits = 2 + trial % 4
        nd = 3 + trial % 6
        q, d = _signs(3, num_bits, gen), _signs(nd, num_bits, gen)
        if trial % 2:
            ql, dl = torch.randint(0, 3, (3,), generator=gen), torch.randint(0, 3, (nd,), generator=gen)
        else:
            ql, dl = _multi_hot(3, 4, gen), _multi_hot(nd, 4, gen)
        for k in [None, 1, 2, 3, 5, 100]:
            got = float(mean_average_precision(q, d, ql, dl, k=k))
            assert got == pytest.approx(ref.map_reference(q, d, ql, dl, k, "expected"), abs=1e-12), (trial, k)


def test_expected_with_cutoff_inside_a_large_tie_group() -> None:
    # One query; distances give tie groups of sizes 2, 6 and 2; cut-offs 3..7 fall inside the group of 6.
    q = torch.tensor([[1, 1, 1, 1]])
    d = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 1]] + [[1, 1, 1, -1]] * 3 + [[1, 1, -1, 1]] * 3 + [[-1, -1, -1, -1]] * 2)
    dl = torch.tensor([0, 1, 0, 1, 0, 0, 1, 1, 0, 1])
    ql = torch.tensor([0])
    for k in range(1, 11):
        expected = ref.map_reference(q, d, ql, dl, k, "expected")
        assert float(mean_average_precision(q, d, ql, dl, k=k)) == pytest.approx(expected, abs=1e-13), k
    # The tie order matters here, so 'expected' must differ from 'index' for some cut-off.
    diffs = [
        abs(
            float(mean_average_precision(q, d, ql, dl, k=k))
            - float(mean_average_precision(q, d, ql, dl, k=k, ties="index"))
        )
        for k in range(1, 11)
    ]
    assert max(diffs) > 1e-3


def test_expected_does_not_depend_on_database_order() -> None:
    gen = torch.Generator().manual_seed(3)
    ql, dl = torch.randint(0, 5, (20,), generator=gen), torch.randint(0, 5, (300,), generator=gen)
    q, d = _structured(20, 16, ql, gen, 0.3), _structured(300, 16, dl, gen, 0.3)
    perm = torch.randperm(300, generator=gen)
    a = retrieval_report(q, d, ql, dl, ks=(None, 10, 77), ns=(5, 50))
    b = retrieval_report(q, d[perm], ql, dl[perm], ks=(None, 10, 77), ns=(5, 50))
    for key in a:
        assert float(a[key]) == pytest.approx(float(b[key]), abs=1e-13)


def test_expected_matches_monte_carlo_over_shuffles_at_scale() -> None:
    """Large tie groups (8 bits, 1500 items): the closed form against 1600 random tie orders (fixed seed)."""
    gen = torch.Generator().manual_seed(5)
    ql, dl = torch.tensor([0, 1]), torch.randint(0, 3, (1500,), generator=gen)
    q, d = _structured(2, 8, ql, gen, 0.25), _structured(1500, 8, dl, gen, 0.25)
    h = torch.from_numpy(ref.distances(q, d)).double()
    rel = torch.from_numpy(ref.relevance(ql, dl))
    for k in [None, 250, 1234]:  # 250 and 1234 fall inside tie groups
        exact = float(mean_average_precision(q, d, ql, dl, k=k))
        samples = []
        for _ in range(4):
            keys = h.unsqueeze(0) + torch.rand(400, *h.shape, generator=gen, dtype=torch.float64) * 0.5
            order = keys.argsort(-1)
            ranked = rel.unsqueeze(0).expand(400, -1, -1).gather(-1, order)
            top = ranked if k is None else ranked[..., :k]
            hits = top.double().cumsum(-1)
            pos = torch.arange(1, top.shape[-1] + 1, dtype=torch.float64)
            ap = (top.double() * hits / pos).sum(-1) / hits[..., -1].clamp(min=1)
            samples.append(ap.mean(-1))
        values = torch.cat(samples)
        se = float(values.std()) / math.sqrt(values.numel())
        assert abs(float(values.mean()) - exact) < 5 * se + 1e-12, (k, exact, float(values.mean()), se)


def test_queries_without_relevant_items_count_as_zero() -> None:
    q = torch.tensor([[1, 1, -1], [1, -1, -1], [-1, -1, -1]])
    d = torch.tensor([[1, 1, -1], [1, -1, 1], [-1, 1, 1], [1, 1, 1]])
    ql = torch.tensor([0, 1, 9])  # class 9 does not occur in the database
    dl = torch.tensor([0, 1, 0, 1])
    for ties in ["expected", "index"]:
        got = float(mean_average_precision(q, d, ql, dl, ties=ties))
        assert got == pytest.approx(ref.map_reference(q, d, ql, dl, None, ties), abs=1e-12)
        per_query_two = ref.map_reference(q[:2], d, ql[:2], dl, None, ties)
        assert got == pytest.approx(per_query_two * 2 / 3, abs=1e-12)


def test_k_larger_than_database_equals_whole_database() -> None:
    gen = torch.Generator().manual_seed(4)
    ql, dl = torch.randint(0, 3, (7,), generator=gen), torch.randint(0, 3, (25,), generator=gen)
    q, d = _signs(7, 12, gen), _signs(25, 12, gen)
    for ties in ["expected", "index"]:
        full = mean_average_precision(q, d, ql, dl, k=None, ties=ties)
        for k in [25, 26, 10**6]:
            assert float(mean_average_precision(q, d, ql, dl, k=k, ties=ties)) == pytest.approx(float(full), abs=1e-14)


def test_whole_database_includes_last_item() -> None:
    # The only relevant item is ranked last: an off-by-one slice ([0:-1]) would report 0.
    q = torch.tensor([[1, 1]])
    d = torch.tensor([[1, 1], [1, -1], [-1, -1]])
    ql, dl = torch.tensor([0]), torch.tensor([1, 1, 0])
    for ties in ["expected", "index"]:
        assert float(mean_average_precision(q, d, ql, dl, ties=ties)) == pytest.approx(1 / 3)


def test_mixed_label_formats_are_one_hot_encoded() -> None:
    gen = torch.Generator().manual_seed(8)
    ql, dl = torch.randint(0, 4, (9,), generator=gen), torch.randint(0, 4, (40,), generator=gen)
    q, d = _signs(9, 12, gen), _signs(40, 12, gen)
    eye = torch.eye(4, dtype=torch.long)
    a = retrieval_report(q, d, ql, dl, ks=(None, 6), ns=(4,))
    b = retrieval_report(q, d, ql, eye[dl], ks=(None, 6), ns=(4,))
    c = retrieval_report(q, d, eye[ql].bool(), dl, ks=(None, 6), ns=(4,))
    for key in a:
        assert float(a[key]) == pytest.approx(float(b[key]), abs=1e-13)
        assert float(a[key]) == pytest.approx(float(c[key]), abs=1e-13)


@pytest.mark.parametrize("chunk_size", [1, 7, 64, 1000, F.DEFAULT_CHUNK_SIZE])
def test_chunking_does_not_change_results(chunk_size: int) -> None:
    gen = torch.Generator().manual_seed(9)
    ql, dl = _multi_hot(30, 6, gen), _multi_hot(200, 6, gen)
    q, d = _signs(30, 36, gen), _signs(200, 36, gen)
    base = retrieval_report(q, d, ql, dl, ks=(None, 17), ns=(10,), pr_curve=True)
    for ties in ["expected", "index"]:
        base_t = retrieval_report(q, d, ql, dl, ks=(None, 17), ns=(10,), ties=ties, pr_curve=True)
        got = retrieval_report(q, d, ql, dl, ks=(None, 17), ns=(10,), ties=ties, pr_curve=True, chunk_size=chunk_size)
        for key in got:
            torch.testing.assert_close(got[key], base_t[key], equal_nan=True, rtol=0, atol=1e-14)
    assert set(base) == set(got)


def test_many_labels_and_large_overlap_fallback() -> None:
    # 200 labels with up to ~130 shared: the overlap no longer fits the int8 fold; results must not change.
    gen = torch.Generator().manual_seed(10)
    ql, dl = _multi_hot(5, 200, gen, 0.7), _multi_hot(30, 200, gen, 0.7)
    ql[0] = 0  # one query without relevant items
    q, d = _signs(5, 12, gen), _signs(30, 12, gen)
    for ties in ["expected", "index"]:
        got = float(mean_average_precision(q, d, ql, dl, k=9, ties=ties))
        assert got == pytest.approx(ref.map_reference(q, d, ql, dl, 9, "index"), abs=1e-12) or ties == "expected"
    small_d, small_l = d[:8], dl[:8]
    got = float(mean_average_precision(q, small_d, ql, small_l, k=3))
    assert got == pytest.approx(ref.map_reference(q, small_d, ql, small_l, 3, "expected"), abs=1e-12)


# ----------------------------------------------------------------------------- radius, curves, P@N ----
def test_precision_within_radius_with_empty_balls() -> None:
    gen = torch.Generator().manual_seed(11)
    ql, dl = torch.randint(0, 3, (25,), generator=gen), torch.randint(0, 3, (60,), generator=gen)
    q, d = _signs(25, 12, gen), _signs(60, 12, gen)
    for r in [0, 1, 2, 3, 12]:
        prec, frac = precision_within_radius(q, d, ql, dl, radius=r)
        ref_prec, ref_frac = ref.precision_radius_reference(q, d, ql, dl, r)
        assert float(prec) == pytest.approx(ref_prec, abs=1e-14)
        assert float(frac) == pytest.approx(ref_frac, abs=1e-14)
    prec, frac = precision_within_radius(q, d, ql, dl, radius=0)
    assert float(frac) < 1.0  # some balls are empty, and they count as precision 0


def test_pr_curve_matches_pooled_counts() -> None:
    gen = torch.Generator().manual_seed(12)
    ql, dl = _multi_hot(10, 4, gen), _multi_hot(50, 4, gen)
    q, d = _signs(10, 36, gen), _signs(50, 36, gen)
    prec, rec = precision_recall_by_radius(q, d, ql, dl)
    ref_prec, ref_rec = ref.pr_reference(q, d, ql, dl)
    assert prec.shape == rec.shape == (37,)
    np.testing.assert_allclose(prec.numpy(), ref_prec, rtol=0, atol=1e-14)
    np.testing.assert_allclose(rec.numpy(), ref_rec, rtol=0, atol=1e-14)
    assert math.isnan(float(prec[0])) or float(prec[0]) >= 0  # NaN marks radii with no pair inside
    assert float(rec[-1]) == 1.0


def test_precision_and_recall_at_n() -> None:
    gen = torch.Generator().manual_seed(13)
    ql, dl = torch.randint(0, 3, (6,), generator=gen), torch.randint(0, 3, (9,), generator=gen)
    q, d = _signs(6, 3, gen), _signs(9, 3, gen)
    h, rel = ref.distances(q, d), ref.relevance(ql, dl)
    ns = [1, 4, 9, 20]
    exp = precision_at_n(q, d, ql, dl, ns)
    idx = precision_at_n(q, d, ql, dl, ns, ties="index")
    rec = recall_at_n(q, d, ql, dl, ns, ties="index")
    for j, n in enumerate(ns):
        want_exp = np.mean([ref.p_at_n_expected_enum(h[i], rel[i], n) for i in range(6)])
        want_idx = np.mean([ref.p_at_n_index(h[i], rel[i], n) for i in range(6)])
        want_rec = np.mean(
            [ref.p_at_n_index(h[i], rel[i], n) * min(n, 9) / rel[i].sum() if rel[i].sum() else 0.0 for i in range(6)]
        )
        assert float(exp[j]) == pytest.approx(want_exp, abs=1e-13)
        assert float(idx[j]) == pytest.approx(want_idx, abs=1e-13)
        assert float(rec[j]) == pytest.approx(want_rec, abs=1e-13)


def test_report_keys_and_consistency() -> None:
    gen = torch.Generator().manual_seed(14)
    ql, dl = torch.randint(0, 4, (12,), generator=gen), torch.randint(0, 4, (80,), generator=gen)
    q, d = _signs(12, 16, gen), _signs(80, 16, gen)
    rep = retrieval_report(q, d, ql, dl, ks=(None, 5000, 10), radius=2, ns=(5, 100), pr_curve=True)
    assert set(rep) == {
        "mAP@all", "mAP@5000", "mAP@10", "P@H<=2", "P@H<=2/nonempty", "P@5", "R@5", "P@100", "R@100",
        "pr_precision", "pr_recall",
    }  # fmt: skip
    assert float(rep["mAP@5000"]) == pytest.approx(float(rep["mAP@all"]), abs=1e-14)
    assert float(rep["mAP@10"]) == pytest.approx(float(mean_average_precision(q, d, ql, dl, k=10)), abs=1e-14)


def test_cross_modal_directions() -> None:
    """Image->text and text->image are two calls with swapped sides; their mean is the reported figure."""
    gen = torch.Generator().manual_seed(15)
    labels = _multi_hot(40, 5, gen)
    img, txt = _structured(40, 16, labels.argmax(1), gen, 0.2), _structured(40, 16, labels.argmax(1), gen, 0.3)
    i2t = mean_average_precision(img[:10], txt[10:], labels[:10], labels[10:], ties="index")
    t2i = mean_average_precision(txt[:10], img[10:], labels[:10], labels[10:], ties="index")
    assert float(i2t) == pytest.approx(ref.map_reference(img[:10], txt[10:], labels[:10], labels[10:], None, "index"))
    assert float(t2i) == pytest.approx(ref.map_reference(txt[:10], img[10:], labels[:10], labels[10:], None, "index"))
    assert float(i2t) != pytest.approx(float(t2i))


# ------------------------------------------------------------------------------------- bad input ----
def test_bad_inputs_raise_value_error() -> None:
    q, d = torch.ones(3, 8), torch.ones(5, 8)
    ql, dl = torch.zeros(3, dtype=torch.long), torch.zeros(5, dtype=torch.long)
    cases = [
        lambda: mean_average_precision(torch.ones(3, 9), d, ql, dl),  # bit lengths differ
        lambda: mean_average_precision(q * 0.5, d, ql, dl),  # not binary
        lambda: mean_average_precision(torch.tensor([[0.0, -1.0]]), d[:, :2], ql[:1], dl),  # 0 and -1 mixed
        lambda: mean_average_precision(q, torch.ones(0, 8), ql, dl[:0]),  # empty database
        lambda: mean_average_precision(q[:0], d, ql[:0], dl),  # no queries
        lambda: mean_average_precision(q, d, ql, dl, k=0),
        lambda: mean_average_precision(q, d, ql, dl, k=-3),
        lambda: mean_average_precision(q, d, ql, dl, ties="random"),
        lambda: mean_average_precision(q, d, ql[:2], dl),  # label rows differ from code rows
        lambda: mean_average_precision(q, d, torch.ones(3, 4), torch.ones(5, 3)),  # label widths differ
        lambda: mean_average_precision(q, d, torch.tensor([0, 1, 7]), torch.ones(5, 4)),  # index >= width
        lambda: mean_average_precision(q.flatten(), d, ql, dl),  # 1-D codes
        lambda: mean_average_precision(q, d, ql.float(), dl),  # float class indices
        lambda: precision_within_radius(q, d, ql, dl, radius=-1),
        lambda: precision_at_n(q, d, ql, dl, ns=[0]),
        lambda: retrieval_report(q, d, ql, dl, chunk_size=0),
    ]
    for i, case in enumerate(cases):
        with pytest.raises(ValueError):
            case()
            pytest.fail(f"case {i} did not raise")


def test_report_under_inference_mode_with_worker_threads() -> None:
    """Lightning computes metrics under torch.inference_mode; the threaded histogram pass must work there."""
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        g = torch.Generator().manual_seed(0)
        q = torch.randint(0, 2, (300, 16), generator=g) * 2 - 1
        d = torch.randint(0, 2, (500, 16), generator=g) * 2 - 1
        ql, dl = torch.randint(0, 4, (300,), generator=g), torch.randint(0, 4, (500,), generator=g)
        expected = retrieval_report(q, d, ql, dl, chunk_size=4096)
        with torch.inference_mode():
            got = retrieval_report(q, d, ql, dl, chunk_size=4096)
        assert torch.equal(expected["mAP@all"], got["mAP@all"])
    finally:
        torch.set_num_threads(previous)


def test_unknown_histogram_backend_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(F, "HISTOGRAM_BACKEND", "gpu-magic")
    q = torch.ones(2, 8)
    with pytest.raises(ValueError, match="HISTOGRAM_BACKEND"):
        mean_average_precision(q, q, torch.zeros(2, dtype=torch.long), torch.zeros(2, dtype=torch.long))
