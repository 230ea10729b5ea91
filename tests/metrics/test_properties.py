"""Property-based tests (hypothesis) of the retrieval metrics in :mod:`hashbench.metrics`.

Small random problems (1-16 bits, so equal Hamming distances are the rule, not the exception; single-label and
multi-hot labels; queries with no relevant database item, all-relevant queries, empty label rows; cut-offs from
1 to beyond the database size) are checked against

* a brute-force reference written here from the definitions in the module docstring of
  :mod:`hashbench.metrics.functional`, in exact rational arithmetic (``fractions.Fraction``). For
  ``ties="expected"`` it enumerates every arrangement of the relevant items inside each group of equal distance:
  a uniformly random order of a group of ``n`` items with ``m`` relevant ones places the relevant ones on each
  ``m``-subset of the group's slots with the same probability, so the mean over all ``C(n, m)`` subsets (per group,
  all groups combined) *is* the expectation over within-tie permutations;
* metamorphic relations the code documents: ``ties="expected"`` does not depend on the database order (the
  histograms are integer counts, so the results are bitwise identical: checked with zero tolerance); permuting or
  flipping bit columns on both sides keeps every distance; both histogram backends and every ``chunk_size`` give
  identical numbers; ``k > N`` behaves as ``N``; queries without relevant items count 0;
* the torchmetrics wrapper :class:`~hashbench.metrics.HashingRetrieval`, fed in several chunks, equals the
  functional result.

Bugs found this way are kept as minimal regression tests at the end of the file (section ``REGRESSIONS``).

Hypothesis runs under the settings profile ``hashbench-metrics`` registered below (derandomised, bounded example
counts, no example database on disk), so CI runs are reproducible and short. ``HASHBENCH_HYPOTHESIS_EXAMPLES``
scales the example counts for a longer local search.
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Sequence
from fractions import Fraction

import hypothesis  # noqa: F401  (a declared dev dependency: without it these tests must fail, never skip)
import pytest
import torch
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from hashbench.metrics import HashingRetrieval, retrieval_report
from hashbench.metrics import functional as F

_SCALE = float(os.environ.get("HASHBENCH_HYPOTHESIS_EXAMPLES", "1"))
settings.register_profile(
    "hashbench-metrics",
    max_examples=max(1, int(30 * _SCALE)),
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PROFILE = settings.get_profile("hashbench-metrics")

BACKENDS = [b for b in ("popcount", "torch") if b != "popcount" or F._popcount.available()]
ABS = 1e-12  # closed forms in float64 against exact rationals


# ------------------------------------------------------------------------------------------- strategies ----
class Problem:
    """One retrieval problem: bit lists, label rows, and the tensors the metrics take."""

    def __init__(self, q_bits, d_bits, q_labels, d_labels, multi: bool, code_format: str) -> None:
        self.q_bits, self.d_bits = q_bits, d_bits
        self.q_labels, self.d_labels = q_labels, d_labels
        self.multi = multi
        self.code_format = code_format

    @property
    def nq(self) -> int:
        return len(self.q_bits)

    @property
    def nd(self) -> int:
        return len(self.d_bits)

    @property
    def bits(self) -> int:
        return len(self.q_bits[0])

    def codes(self, rows: list[list[bool]], fmt: str | None = None) -> torch.Tensor:
        bits = torch.tensor(rows, dtype=torch.bool)
        fmt = fmt or self.code_format
        if fmt == "bool":
            return bits
        if fmt == "01-long":
            return bits.long()
        if fmt == "pm1-int8":
            return bits.to(torch.int8) * 2 - 1
        return bits.float() * 2 - 1  # "pm1-float"

    def labels(self, rows) -> torch.Tensor:
        return torch.tensor(rows, dtype=torch.long)

    def tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        return (
            self.codes(self.q_bits),
            self.codes(self.d_bits),
            self.labels(self.q_labels),
            self.labels(self.d_labels),
        )

    def __repr__(self) -> str:  # what hypothesis prints for a falsifying example
        return (
            f"Problem(q_bits={self.q_bits}, d_bits={self.d_bits}, q_labels={self.q_labels}, "
            f"d_labels={self.d_labels}, multi={self.multi}, code_format={self.code_format!r})"
        )


def _bits_of(value: int, width: int) -> list[bool]:
    return [bool(value >> i & 1) for i in range(width)]


@st.composite
def problems(draw, max_q: int = 3, max_d: int = 10, max_bits: int = 16) -> Problem:
    """Codes drawn partly from a small pool (exact duplicates: distance-0 ties) and partly fresh.

    Codes and multi-hot rows are drawn as integers (bit masks): one draw per row keeps generation cheap.
    """
    bits = draw(st.integers(1, max_bits))
    code = st.integers(0, 2**bits - 1)
    pool = draw(st.lists(code, min_size=1, max_size=3))
    pick = st.one_of(st.sampled_from(pool), code).map(lambda v: _bits_of(v, bits))
    nq, nd = draw(st.integers(1, max_q)), draw(st.integers(1, max_d))
    q_bits = draw(st.lists(pick, min_size=nq, max_size=nq))
    d_bits = draw(st.lists(pick, min_size=nd, max_size=nd))
    multi = draw(st.booleans())
    num_classes = draw(st.integers(1, 4))
    if multi:
        row = st.integers(0, 2**num_classes - 1)
        # A few label sets shared by many database rows (so the popcount kernels' label-set groups form) plus
        # free rows; all-zero rows (an item without labels: relevant to nothing) are allowed on both sides.
        label_pool = draw(st.lists(row, min_size=1, max_size=3))
        d_masks = draw(st.lists(st.one_of(st.sampled_from(label_pool), row), min_size=nd, max_size=nd))
        q_masks = draw(st.lists(row, min_size=nq, max_size=nq))
        d_labels = [[int(v) for v in _bits_of(m, num_classes)] for m in d_masks]
        q_labels = [[int(v) for v in _bits_of(m, num_classes)] for m in q_masks]
    else:
        d_labels = draw(st.lists(st.integers(0, num_classes - 1), min_size=nd, max_size=nd))
        # Class ``num_classes`` never occurs in the database: such a query has no relevant item. A single class
        # makes every item relevant to every query of class 0.
        q_labels = draw(st.lists(st.integers(0, num_classes), min_size=nq, max_size=nq))
    code_format = draw(st.sampled_from(["pm1-float", "pm1-int8", "01-long", "bool"]))
    return Problem(q_bits, d_bits, q_labels, d_labels, multi, code_format)


def cutoffs(nd: int) -> st.SearchStrategy:
    """mAP cut-offs: the whole database, k = 1, k = N, k > N and anything in between."""
    k = st.one_of(st.sampled_from([None, 1, nd, nd + 1, 10**6]), st.integers(1, nd + 2))
    return st.lists(k, min_size=1, max_size=3, unique=True)


def list_lengths(nd: int) -> st.SearchStrategy:
    return st.lists(st.one_of(st.sampled_from([1, nd, nd + 5]), st.integers(1, nd + 2)), max_size=3, unique=True)


# ----------------------------------------------------------------------------- brute-force reference ----
def ref_distance(a: Sequence[bool], b: Sequence[bool]) -> int:
    return sum(x != y for x, y in zip(a, b, strict=True))


def ref_relevant(p: Problem, i: int, j: int) -> bool:
    if p.multi:
        return any(x and y for x, y in zip(p.q_labels[i], p.d_labels[j], strict=True))
    return p.q_labels[i] == p.d_labels[j]


def ref_ap(ranked: Sequence[bool], k: int | None) -> Fraction:
    """AP@k = (1 / R_k) sum_r r / pos_r over the first k ranked items; 0 when R_k = 0."""
    top = ranked if k is None else ranked[:k]
    hits, total = 0, Fraction(0)
    for pos, rel in enumerate(top, start=1):
        if rel:
            hits += 1
            total += Fraction(hits, pos)
    return total / hits if hits else Fraction(0)


def ref_hits(ranked: Sequence[bool], n: int) -> int:
    return sum(ranked[:n])


def tie_arrangements(dist: Sequence[int], rel: Sequence[bool]) -> list[list[bool]]:
    """Every equally likely relevance list of a uniformly random order inside each equal-distance group."""
    per_group = []
    for h in sorted(set(dist)):
        members = [rel[j] for j in range(len(dist)) if dist[j] == h]
        size, m = len(members), sum(members)
        per_group.append(
            [[s in chosen for s in range(size)] for chosen in map(set, itertools.combinations(range(size), m))]
        )
    return [[x for group in combo for x in group] for combo in itertools.product(*per_group)]


def index_ranking(dist: Sequence[int], rel: Sequence[bool]) -> list[bool]:
    return [rel[j] for j in sorted(range(len(dist)), key=lambda j: (dist[j], j))]


def reference_report(
    p: Problem, ks: Sequence[int | None], radius: int | None, ns: Sequence[int], ties: str
) -> dict[str, object]:
    """The whole report from the definitions (exact Fractions; the PR curve as floats with NaN)."""
    out: dict[str, object] = {}
    per_query: dict[str, list[Fraction]] = {}
    pooled_in = [0] * (p.bits + 1)
    pooled_rel = [0] * (p.bits + 1)
    for i in range(p.nq):
        dist = [ref_distance(p.q_bits[i], p.d_bits[j]) for j in range(p.nd)]
        rel = [ref_relevant(p, i, j) for j in range(p.nd)]
        rankings = tie_arrangements(dist, rel) if ties == "expected" else [index_ranking(dist, rel)]
        total_rel = sum(rel)
        for k in ks:
            key = "mAP@all" if k is None else f"mAP@{k}"
            per_query.setdefault(key, []).append(sum(ref_ap(r, k) for r in rankings) / len(rankings))
        for n in ns:
            hits = Fraction(sum(ref_hits(r, n) for r in rankings), len(rankings))
            per_query.setdefault(f"P@{n}", []).append(hits / min(n, p.nd))
            per_query.setdefault(f"R@{n}", []).append(hits / total_rel if total_rel else Fraction(0))
        if radius is not None:
            ball = [j for j in range(p.nd) if dist[j] <= radius]
            prec = Fraction(sum(rel[j] for j in ball), len(ball)) if ball else Fraction(0)
            per_query.setdefault(f"P@H<={radius}", []).append(prec)
            per_query.setdefault(f"P@H<={radius}/nonempty", []).append(Fraction(int(bool(ball))))
        for r in range(p.bits + 1):
            pooled_in[r] += sum(dist[j] <= r for j in range(p.nd))
            pooled_rel[r] += sum(dist[j] <= r and rel[j] for j in range(p.nd))
    for key, values in per_query.items():
        out[key] = sum(values) / len(values)
    out["pr_precision"] = [pooled_rel[r] / pooled_in[r] if pooled_in[r] else math.nan for r in range(p.bits + 1)]
    total = pooled_rel[-1]
    out["pr_recall"] = [pooled_rel[r] / total if total else math.nan for r in range(p.bits + 1)]
    return out


# ------------------------------------------------------------------------------------------- helpers ----
def report(p: Problem, backend: str, **kwargs) -> dict[str, torch.Tensor]:
    previous = F.HISTOGRAM_BACKEND
    F.HISTOGRAM_BACKEND = backend
    try:
        return retrieval_report(*p.tensors(), **kwargs)
    finally:
        F.HISTOGRAM_BACKEND = previous


def assert_identical(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert list(a) == list(b)
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, equal_nan=True, msg=lambda m, key=key: f"{key}: {m}")


def scalar_keys(rep: dict[str, torch.Tensor]) -> list[str]:
    return [key for key in rep if not key.startswith("pr_")]


# -------------------------------------------------------------------------------------------- properties ----
@settings(PROFILE, max_examples=max(1, int(50 * _SCALE)))
@given(data=st.data(), p=problems(), ties=st.sampled_from(["expected", "index"]), backend=st.sampled_from(BACKENDS))
def test_report_equals_brute_force_reference(data, p: Problem, ties: str, backend: str) -> None:
    """Every number of the report equals the definition, computed by enumeration in exact arithmetic."""
    ks = data.draw(cutoffs(p.nd), label="ks")
    ns = data.draw(list_lengths(p.nd), label="ns")
    radius = data.draw(st.one_of(st.none(), st.integers(0, p.bits + 1)), label="radius")
    chunk_size = data.draw(st.sampled_from([1, 2, 3, 7, F.DEFAULT_CHUNK_SIZE]), label="chunk_size")
    got = report(p, backend, ks=ks, radius=radius, ns=ns, ties=ties, pr_curve=True, chunk_size=chunk_size)
    want = reference_report(p, ks, radius, ns, ties)
    # Coverage of the cases that matter (shown by pytest --hypothesis-show-statistics).
    dists = [[ref_distance(a, b) for b in p.d_bits] for a in p.q_bits]
    rels = [[ref_relevant(p, i, j) for j in range(p.nd)] for i in range(p.nq)]
    event(f"largest tie group >= 2: {max(max(row.count(h) for h in row) for row in dists) >= 2}")
    event(f"some query has no relevant item: {any(not any(r) for r in rels)}")
    event(f"some query has only relevant items: {any(all(r) for r in rels)}")
    cut_inside = any(
        0 < k < p.nd and sorted(row)[k - 1] == sorted(row)[k] for k in ks if k is not None for row in dists
    )
    event(f"a cut-off falls inside a tie group: {cut_inside}")
    assert set(got) == set(want)
    for key in scalar_keys(got):
        assert float(got[key]) == pytest.approx(float(want[key]), abs=ABS), key
    for key in ("pr_precision", "pr_recall"):
        expected = torch.tensor(want[key], dtype=torch.float64)
        torch.testing.assert_close(got[key], expected, rtol=0, atol=ABS, equal_nan=True)


@PROFILE
@given(p=problems(max_q=5, max_d=32), ties=st.sampled_from(["expected", "index"]), data=st.data())
def test_values_lie_in_unit_interval_and_backends_agree(p: Problem, ties: str, data) -> None:
    """mAP / precision / recall in [0, 1] (PR entries NaN where undefined); identical across backends and tiles."""
    # The whole database and k = N + 1 are always among the cut-offs: k >= N must behave as N, exactly.
    ks = [None, p.nd + 1] + [k for k in data.draw(cutoffs(p.nd), label="ks") if k not in (None, p.nd + 1)]
    ns = data.draw(list_lengths(p.nd), label="ns")
    kwargs = {"ks": ks, "radius": data.draw(st.integers(0, p.bits), label="radius"), "ns": ns, "ties": ties}
    rep = report(p, BACKENDS[0], pr_curve=True, **kwargs)
    # The other backend with smaller tiles: the histograms are integer counts, so everything computed from them
    # is bitwise identical; only ties="index" mAP is summed over blocks of queries (float order: last bits).
    tiled = report(p, BACKENDS[-1], pr_curve=True, chunk_size=data.draw(st.integers(1, 50), label="chunk"), **kwargs)
    assert list(tiled) == list(rep)
    for key in rep:
        atol = 1e-14 if ties == "index" and key.startswith("mAP@") else 0.0
        torch.testing.assert_close(tiled[key], rep[key], rtol=0, atol=atol, equal_nan=True)
    for key in scalar_keys(rep):
        value = float(rep[key])
        assert 0.0 <= value <= 1.0, (key, value)  # exactly: no rounding step above 1 either
    for key in ("pr_precision", "pr_recall"):
        curve = rep[key]
        assert curve.shape == (p.bits + 1,)
        finite = curve[~curve.isnan()]
        assert bool(((finite >= 0) & (finite <= 1)).all()), (key, curve)
    # The ball of radius K is the whole database: never empty.
    assert not bool(rep["pr_precision"][-1].isnan())
    recall = rep["pr_recall"]
    if any(ref_relevant(p, i, j) for i in range(p.nq) for j in range(p.nd)):
        assert not bool(recall.isnan().any())
        assert bool((recall[1:] >= recall[:-1]).all()) and float(recall[-1]) == 1.0
        assert float(rep["mAP@all"]) > 0.0
    else:
        assert bool(recall.isnan().all())
        for key in scalar_keys(rep):
            assert key.endswith("/nonempty") or float(rep[key]) == 0.0, key
    for k in ks:
        if k is not None and k >= p.nd:
            assert float(rep[f"mAP@{k}"]) == float(rep["mAP@all"]), k


@PROFILE
@given(p=problems(max_q=5, max_d=32), data=st.data())
def test_expected_ties_are_invariant_to_database_order_and_bit_relabelling(p: Problem, data) -> None:
    """``ties="expected"`` is a function of the distance histograms only: bitwise identical under any database
    permutation combined with any permutation and flip of bit columns applied to both sides (and any code
    format)."""
    ks, ns = data.draw(cutoffs(p.nd), label="ks"), data.draw(list_lengths(p.nd), label="ns")
    kwargs = {"ks": ks, "radius": data.draw(st.integers(0, p.bits), label="radius"), "ns": ns, "pr_curve": True}
    backend = data.draw(st.sampled_from(BACKENDS), label="backend")
    base = report(p, backend, **kwargs)
    perm = data.draw(st.permutations(range(p.nd)), label="database permutation")
    columns = data.draw(st.permutations(range(p.bits)), label="bit permutation")
    flips = _bits_of(data.draw(st.integers(0, 2**p.bits - 1), label="bit flips"), p.bits)

    def relabel(rows):
        return [[row[c] != flips[c] for c in columns] for row in rows]

    moved = Problem(
        relabel(p.q_bits),
        relabel([p.d_bits[j] for j in perm]),
        p.q_labels,
        [p.d_labels[j] for j in perm],
        p.multi,
        data.draw(st.sampled_from(["pm1-float", "pm1-int8", "01-long", "bool"]), label="code format"),
    )
    assert_identical(base, report(moved, backend, **kwargs))


@PROFILE
@given(p=problems(max_q=5, max_d=32), ties=st.sampled_from(["expected", "index"]), data=st.data())
def test_queries_without_relevant_items_count_zero_and_all_relevant_score_one(p: Problem, ties: str, data) -> None:
    """Documented: a query without relevant items has AP@k = 0 and R@N = 0 (so P@N = 0 and P@H<=r = 0 too) and
    still counts in the mean over queries. A query to which every item is relevant scores AP@k = 1 for every k,
    P@N = 1 and R@N = min(N, n) / n, whatever the codes and the tie rule."""
    ks, ns = data.draw(cutoffs(p.nd), label="ks"), data.draw(list_lengths(p.nd), label="ns")
    kwargs = {"ks": ks, "radius": data.draw(st.integers(0, p.bits), label="radius"), "ns": ns, "ties": ties}
    backend = data.draw(st.sampled_from(BACKENDS), label="backend")
    if p.multi:
        width = len(p.d_labels[0])
        no_labels = [[0] * width]  # an item without labels shares none with anybody
        everyone_d = [[1] + row[1:] for row in p.d_labels]  # every database item has label 0 ...
        everyone_q = [[1] + [0] * (width - 1)] * p.nq  # ... and so every query of label 0 finds all relevant
    else:
        no_labels = [max(p.d_labels) + 1]  # a class that the database does not have
        everyone_d, everyone_q = [0] * p.nd, [0] * p.nq
    extra_bits = data.draw(st.sampled_from(p.d_bits + p.q_bits), label="extra query code")
    alone = report(Problem([extra_bits], p.d_bits, no_labels, p.d_labels, p.multi, p.code_format), backend, **kwargs)
    for key in alone:
        if not key.endswith("/nonempty"):
            assert float(alone[key]) == 0.0, key
    base = report(p, backend, **kwargs)
    joined = Problem(p.q_bits + [extra_bits], p.d_bits, p.q_labels + no_labels, p.d_labels, p.multi, p.code_format)
    rep_joined = report(joined, backend, **kwargs)
    for key in base:
        if not key.endswith("/nonempty"):
            want = float(base[key]) * p.nq / (p.nq + 1)
            assert float(rep_joined[key]) == pytest.approx(want, abs=1e-14), key
    rep = report(Problem(p.q_bits, p.d_bits, everyone_q, everyone_d, p.multi, p.code_format), backend, **kwargs)
    for k in ks:
        assert float(rep["mAP@all" if k is None else f"mAP@{k}"]) == pytest.approx(1.0, abs=1e-13), k
    for n in ns:
        assert float(rep[f"P@{n}"]) == pytest.approx(1.0, abs=1e-13), n
        assert float(rep[f"R@{n}"]) == pytest.approx(min(n, p.nd) / p.nd, abs=1e-13), n


@st.composite
def cuts(draw, n: int) -> list[int]:
    """Sorted chunk boundaries inside ``0..n`` (possibly empty chunks are dropped by the caller)."""
    return sorted(draw(st.lists(st.integers(1, max(1, n - 1)), max_size=4, unique=True))) if n > 1 else []


def chunks(n: int, boundaries: list[int]) -> list[range]:
    edges = [0, *[b for b in boundaries if 0 < b < n], n]
    return [range(a, b) for a, b in itertools.pairwise(edges) if b > a]


@PROFILE
@given(p=problems(max_q=5, max_d=32), ties=st.sampled_from(["expected", "index"]), data=st.data())
def test_hashing_retrieval_in_chunks_equals_functional(p: Problem, ties: str, data) -> None:
    """``HashingRetrieval`` updated in several chunks (roles interleaved, code formats mixed; database chunks in any
    order for ``ties="expected"``) computes exactly what ``retrieval_report`` computes on the concatenation."""
    ks, ns = data.draw(cutoffs(p.nd), label="ks"), data.draw(list_lengths(p.nd), label="ns")
    radius = data.draw(st.one_of(st.none(), st.integers(0, p.bits)), label="radius")
    kwargs = {"ks": ks, "radius": radius, "ns": ns, "ties": ties, "pr_curve": data.draw(st.booleans())}
    q_chunks = chunks(p.nq, data.draw(cuts(p.nq), label="query cuts"))
    d_chunks = chunks(p.nd, data.draw(cuts(p.nd), label="database cuts"))
    if ties == "expected":
        d_chunks = data.draw(st.permutations(d_chunks), label="database chunk order")
    # Any interleaving of the two roles that keeps each role's own chunk order.
    roles = data.draw(st.permutations(["query"] * len(q_chunks) + ["database"] * len(d_chunks)), label="interleaving")
    with_ids = data.draw(st.booleans(), label="indexes")
    formats = st.sampled_from(["pm1-float", "pm1-int8", "01-long", "bool"])
    q_iter, d_iter = iter(q_chunks), iter(d_chunks)
    metric = HashingRetrieval(**kwargs)
    for role in roles:
        rows = list(next(q_iter if role == "query" else d_iter))
        bits, labels = (p.q_bits, p.q_labels) if role == "query" else (p.d_bits, p.d_labels)
        fmt = data.draw(formats, label="chunk format")
        ids = torch.tensor(rows) if with_ids else None
        metric.update(
            p.codes([bits[r] for r in rows], fmt), p.labels([labels[r] for r in rows]), role=role, indexes=ids
        )
    if with_ids and data.draw(st.booleans(), label="padding repeats"):
        # A DistributedSampler pads by repeating items; with ids the repeats are dropped again.
        reps = data.draw(st.lists(st.integers(0, p.nd - 1), min_size=1, max_size=3), label="repeated database rows")
        metric.update(
            p.codes([p.d_bits[r] for r in reps]),
            p.labels([p.d_labels[r] for r in reps]),
            "database",
            torch.tensor(reps),
        )
    d_order = [r for c in d_chunks for r in c]
    arranged = Problem(
        p.q_bits, [p.d_bits[r] for r in d_order], p.q_labels, [p.d_labels[r] for r in d_order], p.multi, p.code_format
    )
    # With or without ids the stored order is the update order (first occurrences): compare with that layout.
    assert_identical(metric.compute(), report(arranged, F.HISTOGRAM_BACKEND, **kwargs))


# =========================================================================================== REGRESSIONS ====
@pytest.mark.parametrize("backend", BACKENDS)
def test_expected_map_of_an_all_relevant_query_does_not_exceed_one(backend: str) -> None:
    """Minimal example (found by test_values_lie_in_unit_interval_and_backends_agree with more examples): one 1-bit
    query, four database items of its class at distances 0, 0, 0, 1. Every item is relevant, so AP is exactly 1
    under every tie order; the closed form (``(a + 1) dH + alpha G`` with ``G = n - (b + 1) dH``) rounds to
    1.0000000000000002, which the per-query clamp to [0, 1] brings back to 1."""
    p = Problem([[True]], [[True], [True], [True], [False]], [0], [0, 0, 0, 0], multi=False, code_format="pm1-float")
    rep = report(p, backend, ks=(None, 1, 2, 3, 4, 5), radius=None)
    for key in ("mAP@all", "mAP@1", "mAP@2", "mAP@3", "mAP@4", "mAP@5"):
        assert float(rep[key]) == 1.0, (key, float(rep[key]))
