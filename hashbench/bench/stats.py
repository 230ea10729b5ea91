"""Seed statistics of a leaderboard: which methods differ beyond seed noise, and whether a re-run reproduces.

Every (method, bit length) of a table has one value per seed. Two methods are compared with a **paired t-test
across seeds**: seed ``s`` of both runs shares the same validation carve, data order and initialisation seed, so
the per-seed differences ``d_s = a_s − b_s`` remove the part of the noise both share. With ``n`` common seeds,
``t = mean(d) / (sd(d) / √n)`` with ``n − 1`` degrees of freedom, two-sided. Fewer than two common seeds give no
test (nothing can be told apart); identical differences on every seed (``sd(d) = 0``) count as distinguishable
when they are not zero.

**Rank range**: a method's rank is its position by mean (1 = best). Its range at level α runs from
``1 + (methods significantly better)`` to ``N − (methods significantly worse)``, where "significantly" is the
paired test above at α = 0.05 with no correction for the number of pairs. Two methods whose ranges overlap may
be in either order; a method whose range is one number is separated from every other method.

**Reproduction** (``hashbench table SPEC --compare OTHER``): a re-run's cell group reproduces a stored one when
every common seed gives the same value to six decimals (*identical*), or when the re-run's mean lies within two
sample standard deviations (over the stored seeds) of the stored mean (*within spread*). A stored result of one
seed has no spread: only an identical re-run reproduces it.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "ALPHA",
    "IDENTICAL_TOL",
    "Ranked",
    "paired_p_value",
    "rank_with_ranges",
    "reproduction_verdict",
]

#: significance level of the pairwise tests behind the rank ranges
ALPHA = 0.05
#: two values this close are the same number as the CSV prints it (six decimals)
IDENTICAL_TOL = 5e-7


def paired_p_value(a: Mapping[int, float], b: Mapping[int, float]) -> float | None:
    """Two-sided p-value of a paired t-test over the seeds ``a`` and ``b`` have in common (None: < 2 seeds)."""
    seeds = sorted(set(a) & set(b))
    if len(seeds) < 2:
        return None
    diffs = [a[s] - b[s] for s in seeds]
    mean = statistics.fmean(diffs)
    sd = statistics.stdev(diffs)
    if sd <= 1e-12 * max(1.0, abs(mean)):
        return 0.0 if abs(mean) > IDENTICAL_TOL else 1.0
    from scipy.stats import t as student_t

    stat = mean / (sd / math.sqrt(len(seeds)))
    return float(2.0 * student_t.sf(abs(stat), len(seeds) - 1))


@dataclass
class Ranked:
    """One method's place in a ranking (see the module docstring)."""

    name: str
    mean: float
    rank: int
    low: int
    high: int
    #: p-value against the method ranked just below (None: last, or no common seeds)
    p_next: float | None

    @property
    def range_text(self) -> str:
        return str(self.low) if self.low == self.high else f"{self.low}–{self.high}"


def rank_with_ranges(values: Mapping[str, Mapping[int, float]], alpha: float = ALPHA) -> list[Ranked]:
    """Rank methods by mean (best first) with the rank range implied by pairwise paired tests.

    Args:
        values: ``{method: {seed: value}}``; methods without any value are left out.
        alpha: significance level of each pairwise test.
    """
    means = {name: statistics.fmean(v.values()) for name, v in values.items() if v}
    order = sorted(means, key=lambda name: (-means[name], name))
    n = len(order)
    p = {
        (x, y): paired_p_value(values[x], values[y]) for i, x in enumerate(order) for y in order[i + 1 :]
    }  # x ranked above y

    def separated(x: str, y: str) -> bool:
        value = p.get((x, y), p.get((y, x)))
        return value is not None and value < alpha and means[x] != means[y]

    ranked = []
    for i, name in enumerate(order):
        better = sum(separated(other, name) for other in order[:i])
        worse = sum(separated(name, other) for other in order[i + 1 :])
        p_next = p[(name, order[i + 1])] if i + 1 < n else None
        ranked.append(Ranked(name, means[name], i + 1, 1 + better, n - worse, p_next))
    return ranked


def reproduction_verdict(stored: Mapping[int, float], rerun: Mapping[int, float]) -> tuple[str, str]:
    """``(verdict, explanation)`` for one cell group: ``identical`` | ``within spread`` | ``differs`` | ``missing``.

    ``stored`` is the reference (its seed spread sets the tolerance), ``rerun`` the run being checked.
    """
    if not stored or not rerun:
        side = "stored" if not stored else "re-run"
        return "missing", f"no finished cell in the {side} results"
    common = sorted(set(stored) & set(rerun))
    if common and set(stored) == set(rerun) and all(abs(stored[s] - rerun[s]) <= IDENTICAL_TOL for s in common):
        return "identical", f"same value on all {len(common)} seed(s)"
    m_stored, m_rerun = statistics.fmean(stored.values()), statistics.fmean(rerun.values())
    delta = m_rerun - m_stored
    if len(stored) < 2:
        return "differs", f"Δ {delta:+.4f}; the stored result has one seed, so only an identical value reproduces it"
    tolerance = 2.0 * statistics.stdev(stored.values())
    if abs(delta) <= tolerance:
        return "within spread", f"Δ {delta:+.4f} within ±2·sd = ±{tolerance:.4f}"
    return "differs", f"Δ {delta:+.4f} beyond ±2·sd = ±{tolerance:.4f}"
