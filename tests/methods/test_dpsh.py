"""DPSH: the loss against an explicit per-pair loop, gradients, and the memory-bank wiring of the method."""

from __future__ import annotations

import math

import torch

from hashbench.methods.dpsh import DPSH, dpsh_loss
from hashbench.testing import SyntheticHashingDataModule


def _loop_dpsh(u, labels, bank_u, bank_labels, eta):
    n, b = bank_u.shape[0], u.shape[0]
    likelihood = 0.0
    for i in range(b):
        for j in range(n):
            s = 1.0 if float(labels[i] @ bank_labels[j]) > 0 else 0.0
            theta = 0.5 * float(u[i] @ bank_u[j])
            likelihood += math.log1p(math.exp(theta)) - s * theta
    quant = sum(((1.0 if u[i, k] >= 0 else -1.0) - float(u[i, k])) ** 2 for i in range(b) for k in range(u.shape[1]))
    return likelihood / (n * b), eta * quant / (n * b)


def test_dpsh_loss_matches_per_pair_loop_multilabel() -> None:
    g = torch.Generator().manual_seed(0)
    u = torch.tanh(torch.randn(5, 6, generator=g, dtype=torch.float64))
    bank_u = torch.tanh(torch.randn(9, 6, generator=g, dtype=torch.float64))
    labels = (torch.rand(5, 4, generator=g) < 0.4).double()
    bank_labels = (torch.rand(9, 4, generator=g) < 0.4).double()
    terms = dpsh_loss(u, labels, bank_u, bank_labels, eta=10.0)
    likelihood, quant = _loop_dpsh(u, labels, bank_u, bank_labels, 10.0)
    assert math.isclose(float(terms["likelihood"]), likelihood, rel_tol=1e-10)
    assert math.isclose(float(terms["quantization"]), quant, rel_tol=1e-10)
    assert math.isclose(float(terms["loss"]), likelihood + quant, rel_tol=1e-10)


def test_dpsh_loss_stable_for_large_inner_products() -> None:
    u = torch.full((2, 64), 30.0)  # Θ = 0.5 * 64 * 900, e^Θ overflows in a naive log(1 + e^Θ)
    labels = torch.eye(2)
    terms = dpsh_loss(u, labels, u, labels, eta=0.0)
    assert torch.isfinite(terms["loss"])


def test_dpsh_loss_gradcheck() -> None:
    g = torch.Generator().manual_seed(1)
    u = torch.tanh(torch.randn(3, 4, generator=g, dtype=torch.float64)).requires_grad_()
    bank = torch.tanh(torch.randn(6, 4, generator=g, dtype=torch.float64))
    labels = torch.eye(3, 2, dtype=torch.float64)
    bank_labels = torch.eye(6, 2, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: dpsh_loss(x, labels, bank, bank_labels)["loss"], (u,))


def test_dpsh_module_writes_the_batch_into_the_bank_and_uses_it() -> None:
    torch.manual_seed(0)
    model = DPSH(n_bits=8)
    model.configure_data(num_classes=4, num_train=32, image_shape=(1, 28, 28), multi_label=False)
    batch = next(iter(SyntheticHashingDataModule(num_classes=4, num_train=32, batch_size=8).train_dataloader()))
    model.eval()  # deterministic forward (no dropout) so the bank can be compared with a second forward
    terms = model.compute_loss(batch)
    u = model(batch.image)
    bank = model.memory_bank("codes")
    assert torch.allclose(bank.values[batch.index], u.detach(), atol=1e-6)
    assert torch.equal(model.memory_bank("labels").values[batch.index], batch.labels)
    assert int(bank.filled.sum()) == 8
    expected = dpsh_loss(u, batch.labels, bank.values, model.memory_bank("labels").values, model.eta)
    assert torch.allclose(terms["loss"], expected["loss"], atol=1e-6)
    terms["loss"].backward()
    assert model.hash_layer.net[-1].weight.grad.abs().sum() > 0


def test_dpsh_step_gradient_equals_loss_with_the_batch_inside_the_bank() -> None:
    """The training gradient is that of the plain loss with the bank's batch rows *being* u (both pair roles)."""
    torch.manual_seed(0)
    model = DPSH(n_bits=8, eta=10.0)
    model.configure_data(num_classes=4, num_train=32, image_shape=(1, 28, 28), multi_label=False)
    loader = SyntheticHashingDataModule(num_classes=4, num_train=32, batch_size=8).train_dataloader()
    batches = iter(loader)
    model.eval()
    model.compute_loss(next(batches))  # fill part of the bank first
    batch = next(batches)
    weight = model.hash_layer.net[-1].weight
    model.zero_grad()
    terms = model.compute_loss(batch)
    terms["loss"].backward()
    got = weight.grad.clone()

    model.zero_grad()
    u = model(batch.image)
    bank = model.memory_bank("codes").values.clone()
    bank[batch.index] = u  # the batch's rows carry gradient
    n, b = bank.shape[0], u.shape[0]
    theta = 0.5 * u @ bank.T
    s = (batch.labels @ model.memory_bank("labels").values.T > 0).float()
    likelihood = (torch.logaddexp(torch.zeros_like(theta), theta) - s * theta).sum() / (n * b)
    quant = 10.0 * (u - torch.where(u >= 0, 1.0, -1.0).detach()).pow(2).sum() / (n * b)
    (likelihood + quant).backward()
    torch.testing.assert_close(got, weight.grad, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(terms["likelihood"], likelihood.detach(), rtol=1e-5, atol=1e-7)
