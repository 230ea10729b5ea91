"""CNNH: stage 1's objective and Newton steps against explicit loops, the stage-2 loss, and the two-stage fit."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hashbench.methods.cnnh import CNNH, cnnh_loss, cnnh_stage1, cnnh_stage1_objective
from hashbench.testing import SyntheticHashingDataModule, loss_before_and_after_fit, quiet_trainer


def _s(labels: torch.Tensor, i: int, k: int) -> float:
    return 1.0 if float(labels[i] @ labels[k]) > 0 else -1.0


def _labels(n: int, c: int, g: torch.Generator, multi: bool) -> torch.Tensor:
    if multi:
        y = (torch.rand(n, c, generator=g) < 0.4).double()
        y[0] = 0.0  # an item without labels: S = −1 even with itself
        return y
    return torch.nn.functional.one_hot(torch.randint(0, c, (n,), generator=g), c).double()


def _loop_objective(h: list[list[float]], labels: torch.Tensor) -> float:
    n, q = len(h), len(h[0])
    total = 0.0
    for i in range(n):
        for k in range(n):
            inner = sum(h[i][t] * h[k][t] for t in range(q))
            total += (_s(labels, i, k) - inner / q) ** 2
    return total


@pytest.mark.parametrize("multi", [False, True])
def test_stage1_objective_matches_per_pair_loop(multi: bool) -> None:
    g = torch.Generator().manual_seed(0)
    labels = _labels(7, 3, g, multi)
    h = 2 * torch.rand(7, 4, generator=g, dtype=torch.float64) - 1
    assert math.isclose(cnnh_stage1_objective(h, labels), _loop_objective(h.tolist(), labels), rel_tol=1e-10)


@pytest.mark.parametrize("multi", [False, True])
def test_stage1_steps_match_the_newton_formula_on_the_full_residual(multi: bool) -> None:
    """Each step is d = −(R H)_ij / ((HᵀH)_jj + H_ij² + R_ii) clipped to [−1 − H_ij, 1 − H_ij], R = H Hᵀ − q S,
    recomputed here from scratch (explicit loops) before every step."""
    g = torch.Generator().manual_seed(1)
    n, q = 6, 3
    labels = _labels(n, 3, g, multi)
    init = 2 * torch.rand(n, q, generator=g, dtype=torch.float64) - 1
    rng = np.random.default_rng(5)
    order = [rng.permutation(n * q), rng.permutation(n * q)]
    got = cnnh_stage1(labels.float(), q, sweeps=2, init=init, order=order)

    h = init.tolist()
    objective = [_loop_objective(h, labels)]
    for sweep in order:
        for flat in sweep.tolist():
            i, j = divmod(flat, q)
            r = [[sum(h[a][t] * h[b][t] for t in range(q)) - q * _s(labels, a, b) for b in range(n)] for a in range(n)]
            first = sum(r[i][k] * h[k][j] for k in range(n))
            second = sum(h[k][j] ** 2 for k in range(n)) + h[i][j] ** 2 + r[i][i]
            if second <= 0:
                continue
            d = min(max(-first / second, -1 - h[i][j]), 1 - h[i][j])
            h[i][j] += d
        objective.append(_loop_objective(h, labels))
    torch.testing.assert_close(got.codes.double(), torch.tensor(h, dtype=torch.float64), rtol=0, atol=1e-6)
    assert all(math.isclose(a, b, rel_tol=1e-9) for a, b in zip(got.objective, objective, strict=True))
    assert float(got.codes.abs().max()) <= 1.0


def test_stage1_lowers_the_objective_and_codes_follow_the_classes() -> None:
    g = torch.Generator().manual_seed(2)
    cls = torch.randint(0, 4, (40,), generator=g)
    labels = torch.nn.functional.one_hot(cls, 4).float()
    result = cnnh_stage1(labels, 16, sweeps=5, seed=3)
    assert result.objective[-1] < 0.6 * result.objective[0]
    b = torch.where(result.codes >= 0, 1.0, -1.0)
    same = cls[:, None] == cls[None, :]
    off = ~torch.eye(40, dtype=torch.bool)
    inner = b @ b.T / 16
    assert float(inner[same & off].mean()) > 0.8 and float(inner[~same].mean()) < 0.0


def test_cnnh_loss_matches_per_item_loop() -> None:
    g = torch.Generator().manual_seed(3)
    u = torch.tanh(torch.randn(5, 4, generator=g, dtype=torch.float64))
    targets = torch.where(torch.rand(5, 4, generator=g) < 0.5, -1.0, 1.0).double()
    logits = torch.randn(5, 3, generator=g, dtype=torch.float64)
    cls = [0, 2, 1, 1, 0]
    onehot = torch.nn.functional.one_hot(torch.tensor(cls), 3).double()
    multi = (torch.rand(5, 3, generator=g) < 0.5).double()
    regression = sum((float(u[i, k]) - float(targets[i, k])) ** 2 for i in range(5) for k in range(4)) / 20
    ce = sum(-float(logits[i, cls[i]]) + math.log(sum(math.exp(float(v)) for v in logits[i])) for i in range(5)) / 5
    bce = 0.0
    for i in range(5):
        for c in range(3):
            p, y = 1 / (1 + math.exp(-float(logits[i, c]))), float(multi[i, c])
            bce -= (y * math.log(p) + (1 - y) * math.log(1 - p)) / 15
    plain = cnnh_loss(u, targets)
    assert set(plain) == {"regression", "loss"}
    assert math.isclose(float(plain["loss"]), regression, rel_tol=1e-10)
    single = cnnh_loss(u, targets, onehot, logits, label_weight=0.5)
    assert math.isclose(float(single["classification"]), ce, rel_tol=1e-10)
    assert math.isclose(float(single["loss"]), regression + 0.5 * ce, rel_tol=1e-10)
    many = cnnh_loss(u, targets, multi, logits, label_weight=0.5, multi_label=True)
    assert math.isclose(float(many["classification"]), bce, rel_tol=1e-10)
    with pytest.raises(ValueError, match="label_logits"):
        cnnh_loss(u, targets, label_weight=1.0)


@pytest.mark.parametrize("multi", [False, True])
def test_fit_runs_stage1_on_the_training_set_then_regresses_it(multi: bool, tmp_path) -> None:
    torch.manual_seed(0)
    dm = SyntheticHashingDataModule(num_classes=4, num_train=48, batch_size=16, multi_label=multi)
    model = CNNH(n_bits=8, stage1_sweeps=3, label_weight=0.0 if multi else 0.3)
    quiet_trainer(tmp_path, max_epochs=1).fit(model, datamodule=dm)
    bank = model.memory_bank("targets")
    assert bool(bank.filled.all()) and set(bank.values.unique().tolist()) <= {-1.0, 1.0}
    # the bank holds sign(stage 1) of the training labels, in the training loader's index order
    labels = torch.cat([b.labels for b in dm.train_eval_dataloader()])
    want = cnnh_stage1(labels, 8, sweeps=3, seed=0).codes
    assert torch.equal(bank.values, torch.where(want >= 0, 1.0, -1.0))
    objective = model.stage1_report["stage1_objective"]
    assert len(objective) == 4 and objective[-1] < objective[0]
    assert hasattr(model, "label_layer") != multi


def test_training_pulls_the_codes_towards_the_targets(tmp_path) -> None:
    torch.manual_seed(0)
    dm = SyntheticHashingDataModule(num_classes=4, num_train=64, batch_size=16)
    model = CNNH(n_bits=8, stage1_sweeps=3)
    model.configure_data(dm.facts)
    batch = next(iter(dm.train_eval_dataloader()))
    model.fit_stage1(torch.cat([b.labels for b in dm.train_eval_dataloader()]), torch.arange(64))
    before, after, _ = loss_before_and_after_fit(model, dm, batch, tmp_path, max_epochs=4, term="regression")
    assert after < 0.7 * before


def test_compute_loss_without_stage1_uses_the_batch_labels() -> None:
    torch.manual_seed(0)
    model = CNNH(n_bits=6, stage1_sweeps=2)
    model.configure_data(num_classes=3, num_train=16, image_shape=(1, 28, 28))
    batch = next(iter(SyntheticHashingDataModule(num_classes=3, num_train=16, batch_size=8).train_dataloader()))
    with pytest.warns(UserWarning, match="stage-1 targets"):
        targets = model.batch_targets(batch)
    want = cnnh_stage1(batch.labels, 6, sweeps=2, seed=0).codes
    assert torch.equal(targets, torch.where(want >= 0, 1.0, -1.0))


def test_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="stage1_sweeps"):
        CNNH(stage1_sweeps=0)
    with pytest.raises(ValueError, match="label_weight"):
        CNNH(label_weight=-1.0)
