"""DCH: the Cauchy cross-entropy and quantisation loss against an explicit per-pair loop, stability, the module."""

from __future__ import annotations

import math

import pytest
import torch

from hashbench.methods.dch import DCH, cauchy_distance, dch_loss
from hashbench.testing import SyntheticHashingDataModule


def _loop_dch(h, labels, gamma, lam, eps=1e-6):
    """The paper's L = Σ w_ij [s_ij log(d_ij/γ) + log(1 + γ/d_ij)] / |P| and λ mean_i log(1 + d(|h_i|, 1)/γ)."""
    b, k = h.shape
    rows = [[float(x) for x in row] for row in h]

    def dist(a, c):
        cos = sum(x * y for x, y in zip(a, c, strict=True)) / (
            math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in c))
        )
        return k / 2 * (max(1.0 - cos, 0.0) + eps)

    pairs = [(i, j) for i in range(b) for j in range(b) if i != j]
    sim = {(i, j): 1.0 if float(labels[i] @ labels[j]) > 0 else 0.0 for i, j in pairs}
    n1 = sum(sim.values())
    n0 = len(pairs) - n1
    total = 0.0
    for i, j in pairs:
        s = sim[(i, j)]
        w = len(pairs) / n1 if s == 1.0 else len(pairs) / n0
        d = dist(rows[i], rows[j])
        total += w * (s * math.log(d / gamma) + math.log(1 + gamma / d))
    quant = sum(math.log(1 + dist([abs(x) for x in r], [1.0] * k) / gamma) for r in rows) / b
    return total / len(pairs), lam * quant


@pytest.mark.parametrize("multi_label", [False, True])
def test_dch_loss_matches_per_pair_loop(multi_label: bool) -> None:
    g = torch.Generator().manual_seed(0)
    h = torch.tanh(torch.randn(7, 6, generator=g, dtype=torch.float64))
    if multi_label:
        labels = (torch.rand(7, 4, generator=g) < 0.4).double()
        labels[0] = 0.0  # an image without labels: similar to nothing
    else:
        labels = torch.nn.functional.one_hot(torch.tensor([0, 1, 0, 2, 1, 0, 3]), 4).double()
    terms = dch_loss(h, labels, gamma=5.0, lam=0.3)
    cauchy, quant = _loop_dch(h, labels, 5.0, 0.3)
    assert math.isclose(float(terms["cauchy"]), cauchy, rel_tol=1e-10)
    assert math.isclose(float(terms["quantization"]), quant, rel_tol=1e-10)
    assert math.isclose(float(terms["loss"]), cauchy + quant, rel_tol=1e-10)


def test_distance_is_the_hamming_distance_on_binary_codes() -> None:
    g = torch.Generator().manual_seed(2)
    b = torch.where(torch.rand(5, 16, generator=g) < 0.5, -1.0, 1.0).double()
    hamming = (b[:, None, :] != b[None, :, :]).sum(-1).double()
    torch.testing.assert_close(cauchy_distance(b, b, eps=0.0), hamming, atol=1e-12, rtol=0)
    # and the quantisation distance d(|h|, 1) is 0 exactly on ±1 codes
    assert float(dch_loss(b, torch.eye(5, 3, dtype=torch.float64), lam=1.0, eps=0.0)["quantization"]) < 1e-12


def test_weights_balance_similar_and_dissimilar_pairs() -> None:
    """With w = |P|/|P_1| and |P|/|P_0| the loss is the mean over similar plus the mean over dissimilar pairs."""
    g = torch.Generator().manual_seed(3)
    h = torch.tanh(torch.randn(6, 8, generator=g, dtype=torch.float64))
    labels = torch.nn.functional.one_hot(torch.tensor([0, 0, 0, 0, 0, 1]), 2).double()
    d = cauchy_distance(h, h)
    s = (labels @ labels.T > 0) & ~torch.eye(6, dtype=torch.bool)
    ds = labels @ labels.T == 0
    expected = torch.log1p(d[s] / 20.0).mean() + torch.log1p(20.0 / d[ds]).mean()
    torch.testing.assert_close(dch_loss(h, labels, gamma=20.0, lam=0.0)["cauchy"], expected)
    # a batch of one class has no dissimilar pair: only the similar mean remains
    one = torch.ones(6, 1, dtype=torch.float64)
    torch.testing.assert_close(
        dch_loss(h, one, lam=0.0)["cauchy"], torch.log1p(d[~torch.eye(6, dtype=torch.bool)] / 20).mean()
    )


def test_dch_loss_finite_for_saturated_outputs_and_gradcheck() -> None:
    h = torch.tanh(torch.full((4, 8), 40.0))  # identical ±1 codes for images of different classes: d = 0 before ε
    terms = dch_loss(h, torch.eye(4))
    assert all(torch.isfinite(v) for v in terms.values())
    assert float(terms["cauchy"]) > 10.0  # a dissimilar pair at distance 0 is heavily penalised
    z = torch.randn(5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(1)).requires_grad_()
    labels = torch.tensor([[1.0, 0, 1], [0, 1, 0], [1, 0, 0], [0, 0, 1], [0, 1, 1]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: dch_loss(torch.tanh(x), labels, gamma=3.0, lam=0.5)["loss"], (z,))


def test_similar_pairs_are_pulled_together() -> None:
    """The gradient step lowers the distance of a similar pair and raises that of a dissimilar one."""
    g = torch.Generator().manual_seed(4)
    z = torch.randn(3, 8, generator=g, dtype=torch.float64).requires_grad_()
    labels = torch.tensor([[1.0, 0], [1, 0], [0, 1]], dtype=torch.float64)
    d0 = cauchy_distance(torch.tanh(z), torch.tanh(z)).detach()
    dch_loss(torch.tanh(z), labels, lam=0.0)["loss"].backward()
    with torch.no_grad():
        z2 = z - 0.05 * z.grad
    d1 = cauchy_distance(torch.tanh(z2), torch.tanh(z2))
    assert d1[0, 1] < d0[0, 1] and d1[0, 2] > d0[0, 2]


def test_dch_module_builds_from_data_and_trains_a_step() -> None:
    torch.manual_seed(0)
    model = DCH(n_bits=16)
    model.configure_data(num_classes=4, num_train=32, image_shape=(1, 28, 28))
    batch = next(iter(SyntheticHashingDataModule(num_classes=4, num_train=32, batch_size=8).train_dataloader()))
    model.train()
    terms = model.compute_loss(batch)
    assert set(terms) == {"cauchy", "quantization", "loss"} and torch.isfinite(terms["loss"])
    terms["loss"].backward()
    assert model.hash_layer.net[-1].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="gamma"):
        DCH(gamma=0.0)
