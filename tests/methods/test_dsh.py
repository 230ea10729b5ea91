"""DSH: the loss against an explicit per-pair loop, gradients, and the raw (identity) output."""

from __future__ import annotations

import math

import torch

from hashbench.methods.dsh import DSH, dsh_loss


def _loop_dsh(u, labels, margin, alpha):
    b, k = u.shape
    pairs = 0.0
    for i in range(b):
        for j in range(i + 1, b):
            s = float(labels[i] @ labels[j]) > 0
            d = sum((float(u[i, t]) - float(u[j, t])) ** 2 for t in range(k))
            pairs += d if s else max(margin - d, 0.0)
    reg = sum(abs(abs(float(u[i, t])) - 1.0) for i in range(b) for t in range(k))
    return pairs / (b * (b - 1)), alpha * reg / b


def test_dsh_loss_matches_per_pair_loop() -> None:
    g = torch.Generator().manual_seed(0)
    for multi in (False, True):
        u = 1.5 * torch.randn(7, 5, generator=g, dtype=torch.float64)
        if multi:
            labels = (torch.rand(7, 3, generator=g) < 0.4).double()
        else:
            labels = torch.nn.functional.one_hot(torch.randint(0, 3, (7,), generator=g), 3).double()
        # margin 10 = 2K: both branches of the hinge occur for these outputs
        terms = dsh_loss(u, labels, margin=10.0, alpha=0.01)
        pairs, reg = _loop_dsh(u, labels, 10.0, 0.01)
        assert math.isclose(float(terms["contrastive"]), pairs, rel_tol=1e-9)
        assert math.isclose(float(terms["regularizer"]), reg, rel_tol=1e-9)


def test_dsh_loss_gradcheck() -> None:
    g = torch.Generator().manual_seed(2)
    u = (0.7 * torch.randn(4, 3, generator=g, dtype=torch.float64)).requires_grad_()
    labels = torch.tensor([[1, 0], [1, 0], [0, 1], [0, 1]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: dsh_loss(x, labels, margin=6.0)["loss"], (u,))


def test_dsh_uses_raw_outputs_and_margin_2k() -> None:
    torch.manual_seed(0)
    model = DSH(n_bits=12)
    model.configure_data(num_classes=4, num_train=16, image_shape=(1, 28, 28))
    model.eval()
    x = torch.randn(3, 1, 28, 28)
    assert torch.equal(model(x), model.hash_logits(x))
    assert model.margin == 24.0
    assert DSH(n_bits=12, margin=5.0).margin == 5.0
    assert DSH.paper_training["backbone"] == "dsh_cnn"
