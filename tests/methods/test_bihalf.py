"""BiHalf: the bi-half layer and the loss against loops written from Eqs. (8)-(9), gradients, label-free training."""

from __future__ import annotations

import math

import pytest
import torch

from hashbench.methods.bihalf import BiHalf, bi_half, bihalf_loss
from tests.methods.unsupervised_fit import assert_label_free, map_after_training


def _cos(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


@pytest.mark.parametrize("m", [6, 7])
def test_bi_half_sets_the_top_half_of_every_bit_to_plus_one(m: int) -> None:
    g = torch.Generator().manual_seed(0)
    u = torch.randn(m, 5, generator=g, dtype=torch.float64)
    b = bi_half(u)
    for k in range(5):
        column = [float(v) for v in u[:, k]]
        threshold = sorted(column, reverse=True)[m // 2 - 1]  # the smallest value of the top half
        for i in range(m):
            assert float(b[i, k]) == (1.0 if column[i] >= threshold else -1.0)
        assert int((b[:, k] > 0).sum()) == m // 2


def test_bi_half_is_not_sign() -> None:
    # All outputs positive: sign would give all +1, the bi-half layer still splits every bit half/half.
    u = torch.rand(8, 3) + 1.0
    assert torch.equal((bi_half(u) > 0).sum(0), torch.full((3,), 4))


@pytest.mark.parametrize("pairs", ["halves", "all"])
def test_loss_matches_explicit_loop(pairs: str) -> None:
    g = torch.Generator().manual_seed(1)
    m, k, gamma = 6, 5, 6.0
    h = torch.randn(m, k, generator=g, dtype=torch.float64)
    c = torch.rand(m, m, generator=g, dtype=torch.float64) * 2 - 1
    # Eq. (8) by hand: rank each column, top half +1.
    b = [[0.0] * k for _ in range(m)]
    for j in range(k):
        order = sorted(range(m), key=lambda i: -float(h[i, j]))
        for rank, i in enumerate(order):
            b[i][j] = 1.0 if rank < m // 2 else -1.0
    if pairs == "halves":
        idx = [(i, i + m // 2) for i in range(m // 2)]
    else:
        idx = [(i, j) for i in range(m) for j in range(m) if i != j]
    similarity = sum((_cos(b[i], b[j]) - float(c[i, j])) ** 2 for i, j in idx) / len(idx)
    penalty = 0.5 * gamma * sum((float(h[i, j]) - b[i][j]) ** 2 for i in range(m) for j in range(k)) / (m * k)
    terms = bihalf_loss(h, c, gamma=gamma, pairs=pairs)
    assert math.isclose(float(terms["similarity"]), similarity, rel_tol=1e-10)
    assert math.isclose(float(terms["penalty"]), penalty, rel_tol=1e-10)
    assert math.isclose(float(terms["loss"]), similarity + penalty, rel_tol=1e-10)


def test_gradient_is_eq_9_straight_through_plus_gamma_pull() -> None:
    # Official backward: dL/dU = dL/dB + gamma * (U - B) / (M * K), with dL/dB the similarity's gradient at B.
    g = torch.Generator().manual_seed(2)
    m, k, gamma = 8, 6, 6.0
    h = torch.randn(m, k, generator=g, dtype=torch.float64).requires_grad_()
    c = torch.rand(m, m, generator=g, dtype=torch.float64)
    bihalf_loss(h, c, gamma=gamma)["loss"].backward()
    b = bi_half(h).requires_grad_()
    half = m // 2
    cos = torch.nn.functional.cosine_similarity(b[:half], b[half:], dim=1)
    ((cos - torch.diagonal(c[:half, half:])).pow(2).mean()).backward()
    expected = b.grad + gamma * (h.detach() - b.detach()) / (m * k)
    torch.testing.assert_close(h.grad, expected)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="pairs"):
        BiHalf(pairs="random")
    with pytest.raises(ValueError, match="at least 2"):
        bihalf_loss(torch.randn(1, 4), torch.ones(1, 1))


def test_codes_are_sign_of_raw_outputs_and_paper_recipe() -> None:
    model = BiHalf(n_bits=8)
    assert model.activation == "identity" and model.supervision == "unsupervised"
    assert BiHalf.paper_training["optimizer"] == "sgd" and BiHalf.paper_training["batch_size"] == 32


def _model() -> BiHalf:
    return BiHalf(n_bits=8, feature_source="pixels", num_pairs=2000)


def test_training_is_label_free(tmp_path) -> None:
    assert_label_free(_model, tmp_path)


def test_short_training_beats_chance(tmp_path) -> None:
    # 4 balanced synthetic classes: random codes give mAP ~0.3; pixel-cosine structure separates the templates.
    assert map_after_training(_model, tmp_path, epochs=6) > 0.5
