"""The compiled popcount histogram kernels agree with the portable torch path and with the definition."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hashbench.metrics import _popcount
from hashbench.metrics import functional as F
from hashbench.metrics.functional import hamming_distance

pytestmark = pytest.mark.skipif(not _popcount.available(), reason="numba is not installed")


def _signs(n: int, k: int, gen: torch.Generator) -> torch.Tensor:
    return torch.randint(0, 2, (n, k), generator=gen).float() * 2 - 1


def _multi_hot(n: int, c: int, gen: torch.Generator, p: float) -> torch.Tensor:
    return (torch.rand(n, c, generator=gen) < p).long()


def test_pack_bits_layout() -> None:
    bits = torch.zeros(3, 70, dtype=torch.bool)
    bits[0, 0] = True
    bits[1, 63] = True
    bits[2, 64] = bits[2, 69] = True
    words = _popcount.pack_bits(bits)
    assert words.dtype == np.uint64 and words.shape == (3, 2)
    assert words[0].tolist() == [1, 0]
    assert words[1].tolist() == [1 << 63, 0]
    assert words[2].tolist() == [0, 1 | (1 << 5)]
    assert _popcount.pack_bits(torch.ones(2, 0, dtype=torch.bool)).tolist() == [[0], [0]]


@pytest.mark.parametrize("num_bits", [1, 12, 63, 64, 65, 128, 200])
@pytest.mark.parametrize("label_kind", ["single", "multi", "multi-wide"])
def test_histogram_backends_agree_exactly(num_bits: int, label_kind: str) -> None:
    """The popcount kernels and the matmul + bincount path give identical per-query counts.

    Odd sizes on purpose: query counts that are not a multiple of the kernels' block of 4, codes that need
    several 64-bit words (and padding bits), more than 64 classes, a query class missing from the database,
    and a database item equal to a query (distance 0).
    """
    gen = torch.Generator().manual_seed(num_bits)
    nq, nd = 23, 517
    # (multi-label: label sets are drawn from a few patterns plus noise, so both the grouped rows and the rows of
    # rare label sets, whose relevance is decided per pair, occur.)
    q, d = _signs(nq, num_bits, gen), _signs(nd, num_bits, gen)
    d[3] = q[0]
    if label_kind == "single":
        ql, dl = torch.randint(0, 9, (nq,), generator=gen), torch.randint(1, 9, (nd,), generator=gen)
        ql[0] = 0  # class 0 does not occur in the database
    else:
        width = 21 if label_kind == "multi" else 70
        patterns = _multi_hot(4, width, gen, 0.1)
        ql = patterns[torch.randint(0, 4, (nq,), generator=gen)] | _multi_hot(nq, width, gen, 0.02)
        dl = patterns[torch.randint(0, 4, (nd,), generator=gen)] | _multi_hot(nd, width, gen, 0.02)
        ql[0] = 0  # a query without any label
    qq, dd, labels = F._prepare(q, d, ql, dl)
    got = F._popcount_histograms(qq, dd, labels, workers=2)
    want = F._matmul_histograms(qq, dd, labels, F.DEFAULT_CHUNK_SIZE, workers=1)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
    assert int(got[0].sum()) == nq * nd
    assert int(got[1][0].sum()) == 0  # the query whose class / labels the database lacks has no relevant item
    # And against the definition directly.
    dist = hamming_distance(q, d)
    if label_kind == "single":
        rel = ql[:, None] == dl[None, :]
    else:
        rel = (ql.float() @ dl.float().T) > 0
    for i in (0, 1, nq - 1):
        assert torch.equal(got[0][i], torch.bincount(dist[i], minlength=num_bits + 1))
        assert torch.equal(got[1][i], torch.bincount(dist[i][rel[i]], minlength=num_bits + 1))


def test_multi_label_grouping_layout() -> None:
    """Label sets with >= MIN_GROUP_SIZE rows become contiguous groups first; rare sets follow, in kernel order."""
    common = torch.tensor([[1, 0, 1], [0, 1, 0]], dtype=torch.uint8)
    db = torch.cat(
        [common[torch.tensor([0, 1] * 10)], torch.tensor([[1, 1, 1], [0, 0, 0], [1, 1, 0]], dtype=torch.uint8)]
    )
    g = _popcount.group_multi_label(torch.ones(2, 3, dtype=torch.uint8), db, min_group_size=5)
    assert g.group_starts.tolist() == [0, 10, 20]
    assert sorted(g.order.tolist()) == list(range(len(db)))
    ordered = db[torch.from_numpy(g.order)]
    for start, stop, words in zip(g.group_starts[:-1], g.group_starts[1:], g.group_words, strict=True):
        assert (ordered[start:stop] == ordered[start]).all()
        assert words.tolist() == _popcount.pack_bits(ordered[start : start + 1] != 0)[0].tolist()
    assert g.row_words.tolist() == _popcount.pack_bits(ordered != 0).tolist()


def test_single_label_grouping_marks_absent_classes() -> None:
    g = _popcount.group_single_label(torch.tensor([5, 2, 9]), torch.tensor([9, 2, 2, 9, 9]))
    assert g.group_starts.tolist() == [0, 2, 5]  # class 2, then class 9
    assert g.query_words[:, 0].tolist() == [0, 1, 2]  # class 5 absent; 2 -> group 0; 9 -> group 1
    assert g.group_words[:, 0].tolist() == [1, 2]
