"""Slow, obviously-correct reference implementations written straight from the definitions."""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch


def to_sign(codes: torch.Tensor) -> np.ndarray:
    c = codes.numpy() if codes.dtype != torch.bool else codes.numpy().astype(np.int64)
    if (c == 0).any():
        c = np.where(c == 1, 1, -1)
    return c.astype(np.int64)


def distances(q: torch.Tensor, d: torch.Tensor) -> np.ndarray:
    qs, ds = to_sign(q), to_sign(d)
    return (qs[:, None, :] != ds[None, :, :]).sum(-1)


def relevance(ql: torch.Tensor, dl: torch.Tensor) -> np.ndarray:
    if ql.dim() == 1 and dl.dim() == 1:
        return ql.numpy()[:, None] == dl.numpy()[None, :]
    width = ql.shape[1] if ql.dim() == 2 else dl.shape[1]

    def hot(x: torch.Tensor) -> np.ndarray:
        if x.dim() == 2:
            return x.numpy() != 0
        out = np.zeros((x.shape[0], width), dtype=bool)
        out[np.arange(x.shape[0]), x.numpy()] = True
        return out

    a, b = hot(ql), hot(dl)
    return (a[:, None, :] & b[None, :, :]).any(-1)


def ap_of_list(rel_list, k):
    rel_list = list(rel_list)[: (len(rel_list) if k is None else k)]
    hits, total = 0, 0.0
    for pos, r in enumerate(rel_list, start=1):
        if r:
            hits += 1
            total += hits / pos
    return total / hits if hits else 0.0


def ap_index(h_row, rel_row, k):
    order = sorted(range(len(h_row)), key=lambda i: (h_row[i], i))
    return ap_of_list([rel_row[i] for i in order], k)


def within_tie_orders(h_row, rel_row):
    """Yield every ranking (as relevance lists) obtained by permuting items within equal-distance groups."""
    groups = []
    for dist in sorted(set(h_row.tolist())):
        groups.append([bool(rel_row[i]) for i in range(len(h_row)) if h_row[i] == dist])
    per_group = [list(itertools.permutations(g)) for g in groups]
    for combo in itertools.product(*per_group):
        yield [x for g in combo for x in g]


def ap_expected_enum(h_row, rel_row, k):
    values = [ap_of_list(order, k) for order in within_tie_orders(h_row, rel_row)]
    return sum(values) / len(values)


def p_at_n_expected_enum(h_row, rel_row, n):
    values = [sum(order[:n]) / min(n, len(order)) for order in within_tie_orders(h_row, rel_row)]
    return sum(values) / len(values)


def map_reference(q, d, ql, dl, k, ties):
    h, rel = distances(q, d), relevance(ql, dl)
    fn = ap_index if ties == "index" else ap_expected_enum
    return float(np.mean([fn(h[i], rel[i], k) for i in range(h.shape[0])]))


def p_at_n_index(h_row, rel_row, n):
    order = sorted(range(len(h_row)), key=lambda i: (h_row[i], i))
    return sum(rel_row[i] for i in order[:n]) / min(n, len(order))


def precision_radius_reference(q, d, ql, dl, r):
    h, rel = distances(q, d), relevance(ql, dl)
    precs, nonempty = [], []
    for i in range(h.shape[0]):
        ball = h[i] <= r
        nonempty.append(ball.any())
        precs.append(rel[i][ball].sum() / ball.sum() if ball.any() else 0.0)
    return float(np.mean(precs)), float(np.mean(nonempty))


def pr_reference(q, d, ql, dl):
    h, rel = distances(q, d), relevance(ql, dl)
    k = to_sign(q).shape[1]
    prec, rec = [], []
    for r in range(k + 1):
        inside = h <= r
        n_in, n_rel = inside.sum(), (inside & rel).sum()
        prec.append(n_rel / n_in if n_in else math.nan)
        rec.append(n_rel / rel.sum() if rel.sum() else math.nan)
    return np.array(prec), np.array(rec)
