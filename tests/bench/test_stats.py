"""Seed statistics: the paired test, rank ranges and reproduction verdicts (hashbench.bench.stats)."""

from __future__ import annotations

import pytest
from scipy import stats as sps

from hashbench.bench.stats import paired_p_value, rank_with_ranges, reproduction_verdict


def test_paired_p_value_matches_scipy_and_pairs_by_seed() -> None:
    a = {0: 0.70, 1: 0.60, 2: 0.66, 3: 0.64}
    b = {0: 0.64, 1: 0.58, 2: 0.61, 3: 0.60}
    expected = sps.ttest_rel([a[s] for s in range(4)], [b[s] for s in range(4)]).pvalue
    assert paired_p_value(a, b) == pytest.approx(expected)
    # pairing: b's values shuffled over seeds give another p (an unpaired test would not notice)
    shuffled = {0: 0.58, 1: 0.64, 2: 0.60, 3: 0.61}
    assert paired_p_value(a, shuffled) != pytest.approx(expected)
    # only common seeds count; fewer than two give no test
    assert paired_p_value(a, {0: 0.5, 9: 0.4}) is None and paired_p_value({}, b) is None


def test_paired_p_value_with_no_spread_in_the_differences() -> None:
    assert paired_p_value({0: 0.5, 1: 0.6}, {0: 0.4, 1: 0.5}) == 0.0  # the same gap on every seed
    assert paired_p_value({0: 0.5, 1: 0.6}, {0: 0.5, 1: 0.6}) == 1.0  # the same values


def test_rank_ranges_from_pairwise_tests() -> None:
    values = {
        "best": {0: 0.90, 1: 0.91, 2: 0.92},
        "near": {0: 0.905, 1: 0.90, 2: 0.915},  # within best's noise
        "mid": {0: 0.70, 1: 0.72, 2: 0.71},
        "low": {0: 0.30, 1: 0.31, 2: 0.29},
        "empty": {},
    }
    ranked = rank_with_ranges(values)
    assert [r.name for r in ranked] == ["best", "near", "mid", "low"]  # no values: not ranked
    assert [r.range_text for r in ranked] == ["1–2", "1–2", "3", "4"]
    assert ranked[0].p_next > 0.05 and ranked[1].p_next < 0.05 and ranked[-1].p_next is None
    # one seed each: nothing can be told apart
    single = rank_with_ranges({"a": {0: 0.9}, "b": {0: 0.5}, "c": {0: 0.1}})
    assert [r.range_text for r in single] == ["1–3", "1–3", "1–3"]


def test_reproduction_verdicts() -> None:
    stored = {0: 0.60, 1: 0.64, 2: 0.62}  # sd 0.02
    assert reproduction_verdict(stored, dict(stored))[0] == "identical"
    assert reproduction_verdict(stored, {0: 0.6000004, 1: 0.64, 2: 0.62})[0] == "identical"
    verdict, why = reproduction_verdict(stored, {0: 0.63, 1: 0.66, 2: 0.64})  # Δ +0.02 ≤ 0.04
    assert verdict == "within spread" and "within ±2·sd = ±0.0400" in why and "|" not in why  # a Markdown cell
    assert reproduction_verdict(stored, {0: 0.70, 1: 0.69, 2: 0.68}) == ("differs", "Δ +0.0700 beyond ±2·sd = ±0.0400")
    assert reproduction_verdict(stored, {0: 0.60, 1: 0.64})[0] == "within spread"  # a seed missing: not identical
    assert reproduction_verdict({0: 0.6}, {0: 0.6001})[0] == "differs"  # one stored seed: no spread
    assert reproduction_verdict({}, stored)[0] == "missing" and reproduction_verdict(stored, {})[0] == "missing"
