"""HashNet: the weighted loss against an explicit per-pair loop, the continuation schedule, gradients."""

from __future__ import annotations

import math

import torch

from hashbench.data.batch import HashBatch
from hashbench.methods.hashnet import HashNet, hashnet_beta, hashnet_loss


def _loop_hashnet(z, labels, alpha, beta):
    b = z.shape[0]
    h = [[math.tanh(beta * float(v)) for v in row] for row in z]
    pairs = [(i, j) for i in range(b) for j in range(b) if i != j]
    sim = {p: float(labels[p[0]] @ labels[p[1]]) > 0 for p in pairs}
    n_sim = sum(sim.values())
    n_dis = len(pairs) - n_sim
    total = 0.0
    for i, j in pairs:
        theta = alpha * sum(a * c for a, c in zip(h[i], h[j], strict=True))
        s = 1.0 if sim[(i, j)] else 0.0
        w = len(pairs) / n_sim if sim[(i, j)] else len(pairs) / n_dis
        total += w * (math.log1p(math.exp(theta)) - s * theta)
    return total / len(pairs)


def test_hashnet_loss_matches_per_pair_loop() -> None:
    g = torch.Generator().manual_seed(0)
    z = 2 * torch.randn(6, 5, generator=g, dtype=torch.float64)
    labels = (torch.rand(6, 3, generator=g) < 0.4).double()
    labels[0] = labels[1]  # at least one similar pair
    for alpha, beta in ((0.1, 1.0), (0.5, math.sqrt(3))):
        got = float(hashnet_loss(z, labels, alpha, beta)["loss"])
        assert math.isclose(got, _loop_hashnet(z, labels, alpha, beta), rel_tol=1e-10)


def test_hashnet_balances_similar_and_dissimilar_pairs() -> None:
    # With the class-balance weights the loss is mean(similar pairs) + mean(dissimilar pairs).
    g = torch.Generator().manual_seed(1)
    z = torch.randn(8, 4, generator=g, dtype=torch.float64)
    labels = torch.nn.functional.one_hot(torch.tensor([0, 0, 0, 0, 0, 0, 1, 2]), 3).double()
    h = torch.tanh(z)
    theta = 0.1 * h @ h.T
    s = (labels @ labels.T > 0).double()
    pair = torch.nn.functional.softplus(theta) - s * theta
    off = ~torch.eye(8, dtype=torch.bool)
    expected = pair[(s > 0) & off].mean() + pair[(s == 0) & off].mean()
    assert torch.allclose(hashnet_loss(z, labels)["loss"], expected)
    # a batch with a single class has no dissimilar pair: only the similar term remains
    same = torch.ones(8, 1, dtype=torch.float64)
    only_sim = (torch.nn.functional.softplus(theta) - theta)[off].mean()
    assert torch.allclose(hashnet_loss(z, same)["loss"], only_sim)


def test_hashnet_beta_schedule() -> None:
    assert [hashnet_beta(e) for e in (0, 19, 20, 39, 40, 60)] == [1.0, 1.0, math.sqrt(2), math.sqrt(2), math.sqrt(3), 2]
    assert hashnet_beta(5, step=5) == math.sqrt(2)


def test_hashnet_loss_gradcheck() -> None:
    g = torch.Generator().manual_seed(3)
    z = torch.randn(4, 3, generator=g, dtype=torch.float64).requires_grad_()
    labels = torch.tensor([[1, 0], [1, 0], [0, 1], [1, 1]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: hashnet_loss(x, labels, 0.3, 1.4)["loss"], (z,))


def test_hashnet_module_reports_beta_from_epoch() -> None:
    torch.manual_seed(0)
    model = HashNet(n_bits=8)
    model.configure_data(num_classes=2, num_train=8, image_shape=(1, 28, 28))
    batch = HashBatch(torch.randn(4, 1, 28, 28), torch.eye(2).repeat(2, 1), torch.arange(4))
    assert float(model.compute_loss(batch)["beta"]) == 1.0  # epoch 0 without a trainer
