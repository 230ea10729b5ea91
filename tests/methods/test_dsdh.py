"""DSDH: the objective against an explicit per-pair loop, the closed-form W-step, the DCC B-step, the module."""

from __future__ import annotations

import math

import pytest
import torch

from hashbench.methods.dsdh import DSDH, dsdh_b_step, dsdh_loss, dsdh_w_step
from hashbench.testing import SyntheticHashingDataModule


def _loop_dsdh(u, labels, bank_u, bank_labels, b, w, mu, nu, eta):
    """The batch's terms of the paper's J over N·B, term by term, with plain Python floats (the likelihood counts
    each pair (i, j) with a batch image i in both orders, equal by symmetry)."""
    n, bs, k = bank_u.shape[0], u.shape[0], u.shape[1]
    n_classes = labels.shape[1]
    likelihood = 0.0
    for i in range(bs):
        for j in range(n):
            s = 1.0 if float(labels[i] @ bank_labels[j]) > 0 else 0.0
            theta = 0.5 * sum(float(u[i, m]) * float(bank_u[j, m]) for m in range(k))
            likelihood += math.log1p(math.exp(theta)) - s * theta
    classification = 0.0
    for i in range(bs):
        for c in range(n_classes):
            pred = sum(float(w[m, c]) * float(b[i, m]) for m in range(k))
            classification += (float(labels[i, c]) - pred) ** 2
    regularization = sum(float(x) ** 2 for x in w.flatten())
    quantization = sum((float(b[i, m]) - float(u[i, m])) ** 2 for i in range(bs) for m in range(k))
    norm = n * bs
    return 2 * likelihood / norm, mu * classification / norm, nu * regularization / n**2, eta * quantization / norm


def _data(multi_label: bool, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(5, 6, generator=g, dtype=torch.float64)
    bank_u = torch.randn(9, 6, generator=g, dtype=torch.float64)
    if multi_label:
        labels = (torch.rand(5, 4, generator=g) < 0.4).double()
        bank_labels = (torch.rand(9, 4, generator=g) < 0.4).double()
    else:
        labels = torch.nn.functional.one_hot(torch.randint(0, 4, (5,), generator=g), 4).double()
        bank_labels = torch.nn.functional.one_hot(torch.randint(0, 4, (9,), generator=g), 4).double()
    b = torch.where(torch.rand(5, 6, generator=g) < 0.5, -1.0, 1.0).double()
    w = 0.3 * torch.randn(6, 4, generator=g, dtype=torch.float64)
    return u, labels, bank_u, bank_labels, b, w


def _b_objective(b, u, labels, w, mu, eta):
    """‖Y − B W‖² + (η/μ)‖B − U‖², the B-step's objective."""
    return float((labels - b @ w).pow(2).sum() + eta / mu * (b - u).pow(2).sum())


@pytest.mark.parametrize("multi_label", [False, True])
def test_dsdh_loss_matches_per_pair_loop(multi_label: bool) -> None:
    u, labels, bank_u, bank_labels, b, w = _data(multi_label)
    terms = dsdh_loss(u, labels, bank_u, bank_labels, b, w, mu=0.7, nu=0.2, eta=3.0)
    expected = _loop_dsdh(u, labels, bank_u, bank_labels, b, w, 0.7, 0.2, 3.0)
    names = ("likelihood", "classification", "regularization", "quantization")
    for name, value in zip(names, expected, strict=True):
        assert math.isclose(float(terms[name]), value, rel_tol=1e-10), name
    assert math.isclose(float(terms["loss"]), sum(expected), rel_tol=1e-10)


def test_w_step_is_the_ridge_regression_minimiser() -> None:
    g = torch.Generator().manual_seed(1)
    codes = torch.where(torch.rand(40, 8, generator=g) < 0.5, -1.0, 1.0).double()
    codes[30:] = 0.0  # rows not visited yet add nothing
    labels = (torch.rand(40, 3, generator=g) < 0.5).double()
    w = dsdh_w_step(codes, labels, mu=2.0, nu=0.5)
    # ∂/∂W [μ‖Y − B W‖² + ν‖W‖²] = −2μ Bᵀ(Y − B W) + 2ν W = 0
    grad = -2 * 2.0 * codes.T @ (labels - codes @ w) + 2 * 0.5 * w
    assert grad.abs().max() < 1e-10
    torch.testing.assert_close(w, dsdh_w_step(codes[:30], labels[:30], mu=2.0, nu=0.5))


def test_b_step_sweep_matches_the_per_bit_rule() -> None:
    """One sweep: bit k := sign(p_k − Σ_{l≠k} (W Wᵀ)_kl b_l), bits in order, each using the bits already updated."""
    g = torch.Generator().manual_seed(2)
    u = torch.randn(4, 5, generator=g, dtype=torch.float64)
    labels = (torch.rand(4, 3, generator=g) < 0.5).double()
    w = torch.randn(5, 3, generator=g, dtype=torch.float64)
    start = torch.where(torch.rand(4, 5, generator=g) < 0.5, -1.0, 1.0).double()
    got = dsdh_b_step(u, labels, w, start, mu=1.0, eta=0.3, n_iter=1)
    for i in range(4):
        b = [float(x) for x in start[i]]
        for k in range(5):
            p = sum(float(labels[i, c]) * float(w[k, c]) for c in range(3)) + 0.3 * float(u[i, k])
            rest = sum(float(w[k] @ w[m]) * b[m] for m in range(5) if m != k)
            b[k] = 1.0 if p - rest >= 0 else -1.0
        assert got[i].tolist() == b
    assert torch.equal(start, start.clone())  # the input is not modified


def test_b_step_descends_to_a_one_bit_local_minimum() -> None:
    g = torch.Generator().manual_seed(3)
    u = torch.randn(6, 8, generator=g, dtype=torch.float64)
    labels = (torch.rand(6, 4, generator=g) < 0.4).double()
    w = torch.randn(8, 4, generator=g, dtype=torch.float64)
    start = torch.where(u >= 0, 1.0, -1.0).double()
    b = dsdh_b_step(u, labels, w, start, mu=1.0, eta=0.2, n_iter=100)
    assert set(b.unique().tolist()) <= {-1.0, 1.0}
    best = _b_objective(b, u, labels, w, 1.0, 0.2)
    assert best <= _b_objective(start, u, labels, w, 1.0, 0.2) + 1e-12
    for i in range(6):
        for k in range(8):
            flipped = b.clone()
            flipped[i, k] = -flipped[i, k]
            assert _b_objective(flipped, u, labels, w, 1.0, 0.2) >= best - 1e-12
    # a zero classifier leaves the codes to the outputs: b = sign(u)
    assert torch.equal(dsdh_b_step(u, labels, torch.zeros(8, 4, dtype=torch.float64), -start, eta=55.0), start)


def test_gradient_is_the_papers_derivative_of_the_objective() -> None:
    """∂J/∂u_i = Σ_j (σ(Θ_ij) − s_ij) u_j + 2η(u_i − b_i) (over N·B), with the bank holding the batch's outputs."""
    u, labels, bank_u, bank_labels, b, w = _data(True, seed=4)
    index = torch.tensor([1, 3, 4, 6, 8])
    bank_u[index] = u
    x = u.clone().requires_grad_()
    dsdh_loss(x, labels, bank_u, bank_labels, b, w, eta=3.0)["loss"].backward()
    n, bs = bank_u.shape[0], u.shape[0]
    for i in range(bs):
        for k in range(u.shape[1]):
            grad = 0.0
            for j in range(n):
                theta = 0.5 * float(u[i] @ bank_u[j])
                s = 1.0 if float(labels[i] @ bank_labels[j]) > 0 else 0.0
                grad += (1 / (1 + math.exp(-theta)) - s) * float(bank_u[j, k])
            grad += 2 * 3.0 * (float(u[i, k]) - float(b[i, k]))
            assert math.isclose(float(x.grad[i, k]), grad / (n * bs), rel_tol=1e-9, abs_tol=1e-12)


def test_dsdh_loss_finite_for_large_outputs_and_gradcheck() -> None:
    u = torch.full((2, 64), 30.0)  # Θ = 0.5 * 64 * 900 overflows a naive log(1 + e^Θ)
    labels = torch.eye(2)
    b = torch.ones(2, 64)
    terms = dsdh_loss(u, labels, u, labels, b, torch.zeros(64, 2))
    assert all(torch.isfinite(v) for v in terms.values())
    x, labels, bank_u, bank_labels, b, w = _data(True, seed=5)
    x.requires_grad_()
    assert torch.autograd.gradcheck(lambda v: dsdh_loss(v, labels, bank_u, bank_labels, b, w, eta=2.0)["loss"], (x,))


@pytest.mark.parametrize("multi_label", [False, True])
def test_dsdh_module_runs_the_discrete_steps_and_trains(multi_label: bool) -> None:
    torch.manual_seed(0)
    model = DSDH(n_bits=8)
    model.configure_data(num_classes=4, num_train=32, image_shape=(1, 28, 28), multi_label=multi_label)
    loader = SyntheticHashingDataModule(num_classes=4, num_train=32, batch_size=8, multi_label=multi_label)
    batches = iter(loader.train_dataloader())
    model.eval()  # deterministic forward so that the outputs can be recomputed
    model.compute_loss(next(batches))
    batch = next(batches)
    codes_before = model.memory_bank("codes").values.clone()
    terms = model.compute_loss(batch)
    u = model(batch.image)
    # the W-step saw the bank with sign(u) at the batch's rows ...
    codes_before[batch.index] = torch.where(u >= 0, 1.0, -1.0)
    w = dsdh_w_step(codes_before, model.memory_bank("labels").values, model.mu, model.nu)
    torch.testing.assert_close(model.classifier, w)
    # ... and the B-step wrote the DCC codes of the batch back into the bank
    b = dsdh_b_step(u, batch.labels, w, codes_before[batch.index], model.mu, model.eta, model.dcc_iter)
    torch.testing.assert_close(model.memory_bank("codes").values[batch.index], b)
    expected = dsdh_loss(u, batch.labels, model.memory_bank("outputs").values, model.memory_bank("labels").values, b, w)
    torch.testing.assert_close(terms["loss"], expected["loss"], rtol=1e-5, atol=1e-7)
    assert "classifier" in model.state_dict() and "_banks.codes.values" in model.state_dict()
    model.train()
    terms = model.compute_loss(batch)
    assert all(torch.isfinite(v) for v in terms.values())
    terms["loss"].backward()
    assert model.hash_layer.net[-1].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="nu > 0"):
        DSDH(nu=0.0)
