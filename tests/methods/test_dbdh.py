"""DBDH: the loss against a per-pair loop, the straight-through codes, and the memory-bank wiring of the method."""

from __future__ import annotations

import math

import pytest
import torch

from hashbench.methods.dbdh import DBDH, dbdh_codes, dbdh_loss
from hashbench.testing import SyntheticHashingDataModule


def _loop_dbdh(b, labels, bank_b, bank_labels, alpha, p):
    n, m, k = bank_b.shape[0], b.shape[0], b.shape[1]
    likelihood = 0.0
    for i in range(m):
        for j in range(n):
            s = (
                1.0
                if any(float(x) > 0 and float(y) > 0 for x, y in zip(labels[i], bank_labels[j], strict=True))
                else 0.0
            )
            theta = 0.5 * sum(float(b[i, t]) * float(bank_b[j, t]) for t in range(k))
            likelihood += math.log1p(math.exp(theta)) - s * theta
    balance = sum(abs(sum(float(b[i, t]) for t in range(k)) / k) ** p for i in range(m)) / m
    return likelihood / (n * m), alpha * balance


@pytest.mark.parametrize("multi", [False, True])
@pytest.mark.parametrize("p", [2.0, 1.0])
def test_dbdh_loss_matches_per_pair_loop(multi: bool, p: float) -> None:
    g = torch.Generator().manual_seed(0)
    b = torch.where(torch.rand(4, 6, generator=g) < 0.5, -1.0, 1.0).double()
    bank_b = torch.where(torch.rand(9, 6, generator=g) < 0.5, -1.0, 1.0).double()
    bank_b[5] = 0.0  # an unseen training image
    if multi:
        labels = (torch.rand(4, 3, generator=g) < 0.5).double()
        bank_labels = (torch.rand(9, 3, generator=g) < 0.5).double()
    else:
        labels = torch.nn.functional.one_hot(torch.randint(0, 3, (4,), generator=g), 3).double()
        bank_labels = torch.nn.functional.one_hot(torch.randint(0, 3, (9,), generator=g), 3).double()
    bank_labels[5] = 0.0
    terms = dbdh_loss(b, labels, bank_b, bank_labels, alpha=0.3, p=p, single_label=None if multi else True)
    likelihood, balance = _loop_dbdh(b, labels, bank_b, bank_labels, 0.3, p)
    assert math.isclose(float(terms["likelihood"]), likelihood, rel_tol=1e-10)
    assert math.isclose(float(terms["balance"]), balance, rel_tol=1e-10, abs_tol=1e-15)
    assert math.isclose(float(terms["loss"]), likelihood + balance, rel_tol=1e-10)


def test_straight_through_codes() -> None:
    h = torch.tensor([[-3.0, -0.5, 0.0, 0.4, 2.0]], dtype=torch.float64, requires_grad=True)
    b = dbdh_codes(h, "ste")
    assert b.tolist() == [[-1.0, -1.0, 1.0, 1.0, 1.0]]  # sign, with sign(0) = +1
    (grad,) = torch.autograd.grad(b.sum(), (h,))
    assert grad.tolist() == [[0.0, 1.0, 1.0, 1.0, 0.0]]  # gradient of clamp(h, -1, 1)
    c = dbdh_codes(h, "clamp")
    assert c.tolist() == [[-1.0, -0.5, 0.0, 0.4, 1.0]]
    with pytest.raises(ValueError):
        dbdh_codes(h, "tanh")


def test_dbdh_loss_finite_for_large_codes_and_gradcheck() -> None:
    big = torch.full((2, 64), 1.0)
    labels = torch.eye(2)
    assert torch.isfinite(dbdh_loss(30.0 * big, labels, 30.0 * big, labels)["loss"])  # Θ = 28,800
    g = torch.Generator().manual_seed(1)
    u = torch.randn(3, 4, generator=g, dtype=torch.float64).clamp(-0.9, 0.9).requires_grad_()
    bank = torch.where(torch.rand(6, 4, generator=g) < 0.5, -1.0, 1.0).double()
    labels, bank_labels = torch.eye(3, 2, dtype=torch.float64), torch.eye(6, 2, dtype=torch.float64)
    # gradcheck on the clamp relaxation (the sign forward has zero derivative almost everywhere by definition)
    assert torch.autograd.gradcheck(
        lambda x: dbdh_loss(dbdh_codes(x, "clamp"), labels, bank, bank_labels, 0.5, 2.0)["loss"], (u,)
    )


def test_ste_gradient_is_the_loss_gradient_at_the_codes() -> None:
    """With the STE the gradient w.r.t. h is ∂L/∂b at b = sign(h), masked to |h| ≤ 1."""
    g = torch.Generator().manual_seed(2)
    h = (1.5 * torch.randn(4, 5, generator=g, dtype=torch.float64)).requires_grad_()
    bank = torch.where(torch.rand(7, 5, generator=g) < 0.5, -1.0, 1.0).double()
    labels = torch.nn.functional.one_hot(torch.randint(0, 3, (4,), generator=g), 3).double()
    bank_labels = torch.nn.functional.one_hot(torch.randint(0, 3, (7,), generator=g), 3).double()
    (grad_h,) = torch.autograd.grad(dbdh_loss(dbdh_codes(h, "ste"), labels, bank, bank_labels)["loss"], (h,))
    b = torch.where(h.detach() >= 0, 1.0, -1.0).double().requires_grad_()
    (grad_b,) = torch.autograd.grad(dbdh_loss(b, labels, bank, bank_labels)["loss"], (b,))
    torch.testing.assert_close(grad_h, grad_b * (h.detach().abs() <= 1).double())


@pytest.mark.parametrize("multi", [False, True])
def test_module_writes_codes_into_the_bank_and_trains(multi: bool) -> None:
    torch.manual_seed(0)
    model = DBDH(n_bits=8)
    model.configure_data(num_classes=4, num_train=32, image_shape=(1, 28, 28), multi_label=multi)
    batch = next(
        iter(
            SyntheticHashingDataModule(num_classes=4, num_train=32, batch_size=8, multi_label=multi).train_dataloader()
        )
    )
    model.eval()  # deterministic forward for the comparison below
    terms = model.compute_loss(batch)
    bank = model.memory_bank("codes")
    assert torch.equal(bank.values[batch.index], model.encode(batch.image).float())
    assert int(bank.filled.sum()) == 8
    assert torch.isfinite(terms["loss"])
    model.train()
    terms = model.compute_loss(batch)
    terms["loss"].backward()
    assert model.hash_layer.net[-2].weight.grad.abs().sum() > 0
