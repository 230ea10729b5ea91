"""GreedyHash: the loss against an explicit loop, the straight-through sign, the code classifier."""

from __future__ import annotations

import math

import torch

from hashbench.methods.greedyhash import GreedyHash, greedyhash_loss, sign_straight_through


def _sign(v: float) -> float:
    return 1.0 if v >= 0 else -1.0


def test_greedyhash_loss_matches_loop_single_and_multi_label() -> None:
    g = torch.Generator().manual_seed(0)
    z = torch.randn(5, 6, generator=g, dtype=torch.float64)
    z[0, 0] = 0.0  # sign(0) = +1
    w = torch.randn(3, 6, generator=g, dtype=torch.float64)
    cls = [0, 2, 1, 1, 0]
    onehot = torch.nn.functional.one_hot(torch.tensor(cls), 3).double()
    multi = (torch.rand(5, 3, generator=g) < 0.5).double()
    logits = [[sum(float(w[c, k]) * _sign(float(z[i, k])) for k in range(6)) for c in range(3)] for i in range(5)]
    ce = sum(-logits[i][cls[i]] + math.log(sum(math.exp(v) for v in logits[i])) for i in range(5)) / 5
    bce = 0.0
    for i in range(5):
        for c in range(3):
            p = 1 / (1 + math.exp(-logits[i][c]))
            y = float(multi[i, c])
            bce -= y * math.log(p) + (1 - y) * math.log(1 - p)
    bce /= 15
    pen = 0.1 * sum(abs(abs(float(z[i, k])) - 1) ** 3 for i in range(5) for k in range(6)) / 30
    single = greedyhash_loss(z, onehot, w, alpha=0.1)
    assert math.isclose(float(single["classification"]), ce, rel_tol=1e-10)
    assert math.isclose(float(single["penalty"]), pen, rel_tol=1e-10)
    many = greedyhash_loss(z, multi, w, alpha=0.1, multi_label=True)
    assert math.isclose(float(many["classification"]), bce, rel_tol=1e-10)


def test_sign_straight_through_forward_sign_backward_identity() -> None:
    z = torch.tensor([-2.0, -0.1, 0.0, 0.3, 5.0], requires_grad=True)
    b = sign_straight_through(z)
    assert torch.equal(b, torch.tensor([-1.0, -1.0, 1.0, 1.0, 1.0]))
    (b * torch.arange(5.0)).sum().backward()
    assert torch.equal(z.grad, torch.arange(5.0))


def test_greedyhash_module_classifier_and_gradients() -> None:
    torch.manual_seed(0)
    model = GreedyHash(n_bits=8)
    model.configure_data(num_classes=3, num_train=8, image_shape=(1, 28, 28))
    assert model.classifier.weight.shape == (3, 8) and model.classifier.bias is None
    x = torch.randn(4, 1, 28, 28)
    model.eval()
    assert torch.equal(model(x), model.hash_logits(x))  # identity activation: codes are sign(z)
    from hashbench.data.batch import HashBatch

    model.train()
    batch = HashBatch(x, torch.eye(3)[[0, 1, 2, 0]], torch.arange(4))
    model.compute_loss(batch)["loss"].backward()
    assert model.classifier.weight.grad.abs().sum() > 0
    assert model.hash_layer.net[-1].weight.grad.abs().sum() > 0  # reached through the straight-through sign
    assert any(
        g["name"] == "head" and any(p is model.classifier.weight for p in g["params"]) for g in model.parameter_groups()
    )
