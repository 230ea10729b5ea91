"""DFH: the objective against an explicit per-pair loop, the B- and C-steps against brute force, the module."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from hashbench.methods.dfh import DFH, dfh_b_step, dfh_center_step, dfh_label_weights, dfh_loss
from hashbench.testing import SyntheticHashingDataModule


def _loop_dfh(u, labels, bank_u, bank_labels, b, centers, m, mu, nu, eta):
    """The four terms written from their definitions with plain Python floats."""
    n, bs, k = bank_u.shape[0], u.shape[0], u.shape[1]
    n_classes = labels.shape[1]
    likelihood = 0.0
    for i in range(bs):
        for j in range(n):
            s = 1.0 if float(labels[i] @ bank_labels[j]) > 0 else 0.0
            theta = 0.5 * sum(float(u[i, q]) * float(bank_u[j, q]) for q in range(k))
            likelihood += s * math.log1p(math.exp(m - theta)) + (1 - s) * math.log1p(math.exp(m + theta))
    quant = sum((float(b[i, q]) - float(u[i, q])) ** 2 for i in range(bs) for q in range(k))
    within = 0.0
    for i in range(bs):
        count = sum(float(x) for x in labels[i])
        for q in range(k):
            centre = sum(float(labels[i, c]) / max(count, 1.0) * float(centers[c, q]) for c in range(n_classes))
            within += (float(b[i, q]) - centre) ** 2
    between = sum(
        float(centers[c, q]) * float(centers[d, q])
        for c in range(n_classes)
        for d in range(n_classes)
        if c != d
        for q in range(k)
    )
    return likelihood / (n * bs), eta * quant / (bs * k), mu * within / (bs * k), mu * nu * between / (bs * k)


def _data(multi_label: bool, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    u = 1.5 * torch.randn(5, 6, generator=g, dtype=torch.float64)
    bank_u = 1.5 * torch.randn(9, 6, generator=g, dtype=torch.float64)
    if multi_label:
        labels = (torch.rand(5, 4, generator=g) < 0.5).double()
        labels[0] = 0.0  # no labels: similar to nothing, no centre
        bank_labels = (torch.rand(9, 4, generator=g) < 0.5).double()
    else:
        labels = torch.nn.functional.one_hot(torch.randint(0, 4, (5,), generator=g), 4).double()
        bank_labels = torch.nn.functional.one_hot(torch.randint(0, 4, (9,), generator=g), 4).double()
    b = torch.where(torch.rand(5, 6, generator=g) < 0.5, -1.0, 1.0).double()
    centers = torch.where(torch.rand(4, 6, generator=g) < 0.5, -1.0, 1.0).double()
    return u, labels, bank_u, bank_labels, b, centers


@pytest.mark.parametrize("multi_label", [False, True])
def test_dfh_loss_matches_per_pair_loop(multi_label: bool) -> None:
    u, labels, bank_u, bank_labels, b, centers = _data(multi_label)
    terms = dfh_loss(u, labels, bank_u, bank_labels, b, centers, margin=2.0, mu=0.3, nu=0.7, eta=0.4)
    expected = _loop_dfh(u, labels, bank_u, bank_labels, b, centers, 2.0, 0.3, 0.7, 0.4)
    for name, value in zip(("likelihood", "quantization", "within", "between"), expected, strict=True):
        assert math.isclose(float(terms[name]), value, rel_tol=1e-10, abs_tol=1e-14), name
    assert math.isclose(float(terms["loss"]), sum(expected), rel_tol=1e-10)


def test_zero_margin_is_the_dpsh_likelihood() -> None:
    u, labels, bank_u, bank_labels, b, centers = _data(True, seed=1)
    theta = 0.5 * u @ bank_u.T
    s = (labels @ bank_labels.T > 0).double()
    dpsh = (torch.logaddexp(torch.zeros_like(theta), theta) - s * theta).mean()
    torch.testing.assert_close(dfh_loss(u, labels, bank_u, bank_labels, b, centers, margin=0.0)["likelihood"], dpsh)
    # a margin makes every pair cost more
    assert dfh_loss(u, labels, bank_u, bank_labels, b, centers, margin=1.0)["likelihood"] > dpsh


def test_label_weights_average_a_multi_label_image_over_its_labels() -> None:
    y = torch.tensor([[1.0, 0, 1, 1], [0, 1, 0, 0], [0, 0, 0, 0]])
    torch.testing.assert_close(
        dfh_label_weights(y), torch.tensor([[1 / 3, 0, 1 / 3, 1 / 3], [0, 1, 0, 0], [0, 0, 0, 0]])
    )


def test_b_step_is_the_brute_force_minimiser() -> None:
    g = torch.Generator().manual_seed(2)
    u = torch.randn(4, 4, generator=g, dtype=torch.float64)
    weights = dfh_label_weights((torch.rand(4, 3, generator=g) < 0.6).double())
    centers = torch.where(torch.rand(3, 4, generator=g) < 0.5, -1.0, 1.0).double()
    got = dfh_b_step(u, weights, centers, mu=0.8, eta=0.5)
    for i in range(4):
        target = weights[i] @ centers

        def cost(b, i=i, target=target):
            return 0.5 * (b - u[i]).pow(2).sum() + 0.8 * (b - target).pow(2).sum()

        best = min((torch.tensor(c, dtype=torch.float64) for c in itertools.product((-1.0, 1.0), repeat=4)), key=cost)
        assert torch.equal(got[i], best)
    # zero centres (the initial state) give b = sign(u), with sign(0) = +1
    zero = torch.tensor([[0.0, -1.0, 2.0, 0.0]], dtype=torch.float64)
    assert dfh_b_step(zero, weights[:1], torch.zeros(3, 4, dtype=torch.float64)).tolist() == [[1.0, -1.0, 1.0, 1.0]]


def _center_objective(codes, weights, centers, nu):
    total = centers.sum(0)
    return float((codes - weights @ centers).pow(2).sum() + nu * (total @ total - centers.pow(2).sum()))


def test_center_step_updates_each_class_to_its_brute_force_minimiser() -> None:
    """One sweep = for each class in order, the best of the 2^K centres with the other centres fixed."""
    g = torch.Generator().manual_seed(3)
    codes = torch.randn(7, 4, generator=g, dtype=torch.float64)  # continuous, so that there are no ties
    weights = dfh_label_weights((torch.rand(7, 3, generator=g) < 0.5).double())
    start = torch.where(torch.rand(3, 4, generator=g) < 0.5, -1.0, 1.0).double()
    got = dfh_center_step(codes, weights, start, nu=0.6, n_iter=1)
    expected = start.clone()
    for c in range(3):
        candidates = []
        for bits in itertools.product((-1.0, 1.0), repeat=4):
            trial = expected.clone()
            trial[c] = torch.tensor(bits, dtype=torch.float64)
            candidates.append((_center_objective(codes, weights, trial, 0.6), trial))
        expected = min(candidates, key=lambda t: t[0])[1]
    assert torch.equal(got, expected)
    # sweeps never increase the objective
    values = [_center_objective(codes, weights, start, 0.6)]
    c = start
    for _ in range(4):
        c = dfh_center_step(codes, weights, c, nu=0.6)
        values.append(_center_objective(codes, weights, c, 0.6))
    assert all(later <= earlier + 1e-12 for earlier, later in itertools.pairwise(values))


def test_between_class_term_pushes_centres_apart() -> None:
    """With no images, the C-step only sees the between-class term: centres end up far apart (small Σ c_cᵀc_c')."""
    weights = torch.zeros(0, 4, dtype=torch.float64)
    codes = torch.zeros(0, 8, dtype=torch.float64)
    start = torch.ones(4, 8, dtype=torch.float64)
    c = dfh_center_step(codes, weights, start, nu=1.0, n_iter=3)
    total = c.sum(0)
    assert float(total @ total - c.pow(2).sum()) < float(start.sum(0) @ start.sum(0) - 32)
    assert float(total @ total - c.pow(2).sum()) <= 0.0


def test_dfh_loss_finite_for_large_outputs_and_gradcheck() -> None:
    u = torch.full((2, 64), 30.0)
    labels = torch.eye(2)
    terms = dfh_loss(u, labels, u, labels, torch.ones(2, 64), torch.ones(2, 64))
    assert all(torch.isfinite(v) for v in terms.values())
    x, labels, bank_u, bank_labels, b, centers = _data(True, seed=4)
    index = torch.tensor([0, 2, 4, 5, 7])
    bank_u[index] = x
    x.requires_grad_()
    assert torch.autograd.gradcheck(
        lambda v: dfh_loss(v, labels, bank_u, bank_labels, b, centers, margin=1.5, bank_index=index)["loss"], (x,)
    )


def test_gradient_includes_the_batch_role_as_bank_rows() -> None:
    u, labels, bank_u, bank_labels, b, centers = _data(False, seed=5)
    index = torch.tensor([8, 0, 3, 1, 5])
    bank_u[index] = u
    x = u.clone().requires_grad_()
    dfh_loss(x, labels, bank_u, bank_labels, b, centers, bank_index=index)["loss"].backward()
    y = u.clone().requires_grad_()
    bank = bank_u.clone()
    bank[index] = y
    dfh_loss(y, labels, bank, bank_labels, b, centers)["loss"].backward()
    torch.testing.assert_close(x.grad, y.grad)
    z = u.clone().requires_grad_()
    dfh_loss(z, labels, bank_u, bank_labels, b, centers)["loss"].backward()  # the bank as a constant
    assert not torch.allclose(z.grad, x.grad)


@pytest.mark.parametrize("multi_label", [False, True])
def test_dfh_module_runs_the_discrete_steps_and_trains(multi_label: bool) -> None:
    torch.manual_seed(0)
    model = DFH(n_bits=8)
    model.configure_data(num_classes=4, num_train=32, image_shape=(1, 28, 28), multi_label=multi_label)
    assert "centers" in model.state_dict() and not model.centers.any()
    loader = SyntheticHashingDataModule(num_classes=4, num_train=32, batch_size=8, multi_label=multi_label)
    batches = iter(loader.train_dataloader())
    model.eval()
    model.compute_loss(next(batches))
    assert set(model.centers.unique().tolist()) <= {-1.0, 1.0}
    batch = next(batches)
    centers_before = model.centers.clone()
    terms = model.compute_loss(batch)
    u = model(batch.image)
    weights = dfh_label_weights(batch.labels)
    b = dfh_b_step(u, weights, centers_before, model.mu, model.eta)  # B-step with the old centres ...
    torch.testing.assert_close(model.centers, dfh_center_step(b, weights, centers_before, model.nu))  # ... then C
    expected = dfh_loss(
        u, batch.labels, model.memory_bank("outputs").values, model.memory_bank("labels").values, b, model.centers
    )
    torch.testing.assert_close(terms["loss"], expected["loss"], rtol=1e-5, atol=1e-7)
    model.train()
    terms = model.compute_loss(batch)
    assert all(torch.isfinite(v) for v in terms.values())
    terms["loss"].backward()
    assert model.hash_layer.net[-1].weight.grad.abs().sum() > 0
