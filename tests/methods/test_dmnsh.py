"""DMNSH: the multi-negative loss against explicit loops, positive sampling, hard negatives, adaptive margin."""

from __future__ import annotations

import math

import pytest
import torch

from hashbench.methods.dmnsh import DMNSH, dmnsh_loss, sample_positives
from hashbench.testing import SyntheticHashingDataModule


def _loop_loss(u, labels, pos_idx, margin, gamma, lam, num_negatives=None):
    """The formulas of the spec, one anchor at a time."""
    b, k = u.shape
    u_l = u.tolist()
    lab = labels.tolist()

    def s(a, c):
        return sum(x * y for x, y in zip(u_l[a], u_l[c], strict=True)) / k

    def shares(a, c):
        return any(x > 0 and y > 0 for x, y in zip(lab[a], lab[c], strict=True))

    per_anchor, pos_sims = [], []
    for i in range(b):
        p = int(pos_idx[i])
        negs = [n for n in range(b) if not shares(i, n)]
        if p < 0 or not negs:
            continue
        if num_negatives is not None:
            negs = sorted(negs, key=lambda n: -s(i, n))[:num_negatives]
        m_i = margin if isinstance(margin, float) else float(margin[i])
        total = sum(math.exp(gamma * (s(i, n) - s(i, p) + m_i)) for n in negs)
        per_anchor.append(math.log(1.0 + total))
        pos_sims.append(s(i, p))
    mn = sum(per_anchor) / len(per_anchor) if per_anchor else 0.0
    q = 0.0
    for i in range(b):
        q += sum((x - (1.0 if x >= 0 else -1.0)) ** 2 for x in u_l[i]) / k
    q = lam * q / b
    pos_mean = sum(pos_sims) / len(pos_sims) if pos_sims else 0.0
    return mn, q, pos_mean, len(per_anchor)


# A hand-checkable batch: classes 0,0,1,1,2 and one image (index 5) with labels {0, 2}.
LABELS = torch.tensor(
    [[1, 0, 0], [1, 0, 0], [0, 1, 0], [0, 1, 0], [0, 0, 1], [1, 0, 1]],
    dtype=torch.float64,
)


def test_sample_positives_picks_only_label_sharing_others() -> None:
    torch.manual_seed(0)
    for _ in range(20):
        idx = sample_positives(LABELS)
        for i, p in enumerate(idx.tolist()):
            assert p != i
            assert (LABELS[i] * LABELS[p]).sum() > 0
    lone = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    assert sample_positives(lone).tolist()[0] == -1


def test_sample_positives_draws_every_positive_and_is_seeded() -> None:
    # anchor 0 has positives {1, 5}: both must be drawn over repeated steps; anchor 4 has only {5}.
    seen = {sample_positives(LABELS, torch.Generator().manual_seed(s))[0].item() for s in range(40)}
    assert seen == {1, 5}
    a = sample_positives(LABELS, torch.Generator().manual_seed(3))
    b = sample_positives(LABELS, torch.Generator().manual_seed(3))
    assert torch.equal(a, b)
    assert sample_positives(LABELS)[4].item() == 5


@pytest.mark.parametrize("num_negatives", [None, 1, 2])
@pytest.mark.parametrize("margin", [0.2, "per-anchor"])
def test_loss_matches_explicit_loop(num_negatives, margin) -> None:
    g = torch.Generator().manual_seed(1)
    u = torch.tanh(torch.randn(6, 5, generator=g, dtype=torch.float64))
    pos_idx = torch.tensor([5, 0, 3, 2, 5, 4])
    m = 0.2 if margin == 0.2 else torch.linspace(0.0, 0.5, 6, dtype=torch.float64)
    got = dmnsh_loss(u, LABELS, pos_idx, m, gamma=3.0, lam=0.1, num_negatives=num_negatives)
    mn, q, pos_mean, n = _loop_loss(u, LABELS, pos_idx, m, 3.0, 0.1, num_negatives)
    assert got["multi_negative"].item() == pytest.approx(mn, rel=1e-10)
    assert got["quantization"].item() == pytest.approx(q, rel=1e-10)
    assert got["loss"].item() == pytest.approx(mn + q, rel=1e-10)
    assert got["positive_similarity"].item() == pytest.approx(pos_mean, rel=1e-10)
    assert got["anchors"].item() == n == 6


@pytest.mark.parametrize(
    ("labels", "lacking"),
    [
        ([[1, 0], [0, 1], [0, 1]], 0),  # anchor 0 has no positive
        ([[1, 0], [1, 1], [0, 1]], 1),  # anchor 1 shares a label with everyone: no negative
    ],
)
def test_anchors_without_positive_or_negative_are_skipped(labels, lacking) -> None:
    labels = torch.tensor(labels, dtype=torch.float64)
    u = torch.tanh(torch.randn(3, 6, dtype=torch.float64))
    pos_idx = sample_positives(labels)
    assert (pos_idx[lacking].item() == -1) == (lacking == 0)
    got = dmnsh_loss(u, labels, pos_idx, 0.1, gamma=10.0)
    mn, _, _, n = _loop_loss(u, labels, pos_idx, 0.1, 10.0, 0.1)
    assert n == 2 and got["anchors"].item() == 2
    assert got["multi_negative"].item() == pytest.approx(mn, rel=1e-10)


def test_no_valid_anchor_gives_zero_but_keeps_graph() -> None:
    labels = torch.ones(4, 2)
    u = torch.tanh(torch.randn(4, 8)).requires_grad_()
    got = dmnsh_loss(u, labels, sample_positives(labels), 0.2)
    assert got["multi_negative"].item() == 0.0 and got["anchors"].item() == 0
    got["loss"].backward()
    assert u.grad is not None


def test_large_gamma_is_finite() -> None:
    u = torch.tanh(torch.randn(6, 4))
    got = dmnsh_loss(u, LABELS.float(), torch.tensor([5, 0, 3, 2, 5, 4]), 0.2, gamma=500.0)
    assert torch.isfinite(got["loss"])


@pytest.mark.parametrize("num_negatives", [None, 2])
def test_gradcheck(num_negatives) -> None:
    u = torch.tanh(torch.randn(6, 5, dtype=torch.float64)).requires_grad_()
    pos_idx = torch.tensor([5, 0, 3, 2, 5, 4])
    torch.autograd.gradcheck(
        lambda x: dmnsh_loss(x, LABELS, pos_idx, 0.2, gamma=3.0, num_negatives=num_negatives)["loss"], (u,)
    )


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="positive_index"):
        dmnsh_loss(torch.zeros(6, 4), LABELS, torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="num_negatives"):
        dmnsh_loss(torch.zeros(6, 4), LABELS, torch.zeros(6, dtype=torch.long), num_negatives=0)
    with pytest.raises(ValueError, match="margin_momentum"):
        DMNSH(n_bits=8, margin_momentum=1.0)


def _batch(multi_label: bool = False):
    dm = SyntheticHashingDataModule(num_classes=3, num_train=32, batch_size=12, multi_label=multi_label)
    return next(iter(dm.train_dataloader()))


@pytest.mark.parametrize("multi_label", [False, True])
def test_adaptive_margin_running_mean(multi_label) -> None:
    torch.manual_seed(0)
    model = DMNSH(n_bits=8, margin=0.3, margin_momentum=0.5)
    model.configure_data(num_classes=3, num_train=32, image_shape=(1, 28, 28), multi_label=multi_label)
    model.train()
    batch = _batch(multi_label)
    expected_mean = 0.0
    for _ in range(3):
        margin_before = 0.3 * (1.0 - expected_mean)
        terms = model.compute_loss(batch)
        assert terms["margin"].item() == pytest.approx(margin_before, rel=1e-6)
        expected_mean = 0.5 * expected_mean + 0.5 * terms["positive_similarity"].item()
        assert model.positive_similarity_mean.item() == pytest.approx(expected_mean, rel=1e-6)
    assert model.current_margin().item() == pytest.approx(0.3 * (1.0 - expected_mean), rel=1e-6)


def test_adaptive_margin_uses_sampled_positives_exactly() -> None:
    # The positive similarity that drives s̄⁺ is s(i, p(i)) over the anchors used, with p drawn by the model.
    torch.manual_seed(0)
    model = DMNSH(n_bits=8, margin_momentum=0.0)
    model.configure_data(num_classes=3, num_train=32, image_shape=(1, 28, 28))
    model.eval()  # no dropout / batch-norm updates: the codes can be recomputed outside
    batch = _batch()
    u = model(batch.image).detach().double()
    state = torch.get_rng_state()
    pos_idx = sample_positives(batch.labels)
    torch.set_rng_state(state)  # compute_loss draws the same positives
    terms = model.compute_loss(batch)
    _, _, pos_mean, _ = _loop_loss(u, batch.labels, pos_idx, 0.2, 10.0, 0.1)
    assert terms["positive_similarity"].item() == pytest.approx(pos_mean, rel=1e-5)
    # not training: the running mean is left alone
    assert model.positive_similarity_mean.item() == 0.0


def test_constant_margin_option() -> None:
    model = DMNSH(n_bits=8, margin=0.25, adaptive_margin=False)
    model.configure_data(num_classes=3, num_train=32, image_shape=(1, 28, 28))
    model.train()
    for _ in range(2):
        terms = model.compute_loss(_batch())
        assert terms["margin"].item() == pytest.approx(0.25)
