"""MLH: the hinge loss, loss-adjusted inference and bound against brute force, a planted problem, the Trainer path."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from hashbench.bench.run import run_cell
from hashbench.methods.mlh import (
    MLH,
    mlh_bound_gradient,
    mlh_hinge_table,
    mlh_loss,
    mlh_loss_adjusted_inference,
)
from hashbench.testing import SyntheticHashingDataModule


def _hinge(m: int, s: int, k: int, rho: int, lam: float, normalize: bool) -> float:
    """Eq. (4) for one pair, with the official code's optional normalisation."""
    if s == 1:
        return max(m - rho + 1, 0) / ((k - rho + 1) if normalize else 1)
    return lam * max(rho - m + 1, 0) / ((rho + 1) if normalize else 1)


def _blobs(n: int, n_classes: int, dim: int, spread: float) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    centres = spread * torch.randn(n_classes, dim, generator=torch.Generator().manual_seed(123))
    y = torch.arange(n) % n_classes
    return centres[y] + torch.randn(n, dim, generator=g), torch.eye(n_classes)[y]


def _map(q: torch.Tensor, q_y: torch.Tensor, db: torch.Tensor, db_y: torch.Tensor) -> float:
    """mAP over the whole database, Hamming ranking with ties in index order, relevance = a shared label."""
    ham = (q.shape[1] - q.float() @ db.float().T) / 2
    rel = (q_y.float() @ db_y.float().T > 0).float()
    r = torch.gather(rel, 1, torch.argsort(ham, dim=1, stable=True))
    prec = r.cumsum(1) / torch.arange(1, r.shape[1] + 1)
    return float(((prec * r).sum(1) / r.sum(1).clamp_min(1)).mean())


def _fitted(x: torch.Tensor, y: torch.Tensor, **kw: object) -> MLH:
    model = MLH(**kw)
    model.fit_features(x, y)
    model.fitted.fill_(True)
    return model


def _codes(model: MLH, x: torch.Tensor) -> torch.Tensor:
    return torch.where(model.transform(model.project(x)) >= 0, 1, -1)


@pytest.mark.parametrize("normalize", [True, False])
def test_hinge_table_matches_the_formula(normalize: bool) -> None:
    table = mlh_hinge_table(6, rho=2, lam=0.5, normalize=normalize)
    for s in (0, 1):
        for m in range(7):
            assert math.isclose(float(table[s, m]), _hinge(m, s, 6, 2, 0.5, normalize), rel_tol=1e-12)
    with pytest.raises(ValueError, match="rho"):
        mlh_hinge_table(4, rho=5)


def test_loss_adjusted_inference_matches_brute_force() -> None:
    g = torch.Generator().manual_seed(0)
    k = 4
    z1 = torch.randn(6, k, generator=g, dtype=torch.float64)
    z2 = torch.randn(6, k, generator=g, dtype=torch.float64)
    similar = torch.tensor([1, 0, 1, 0, 1, 0])
    table = mlh_hinge_table(k, rho=1, lam=2.0, normalize=False)
    g1, g2, m = mlh_loss_adjusted_inference(z1, z2, table[similar])
    codes = [torch.tensor(c, dtype=torch.float64) for c in itertools.product([-1.0, 1.0], repeat=k)]
    for b in range(6):
        best = -math.inf
        for a in codes:
            for c in codes:
                dist = int((a != c).sum())
                score = _hinge(dist, int(similar[b]), k, 1, 2.0, False) + float(a @ z1[b]) + float(c @ z2[b])
                best = max(best, score)
        got = _hinge(int(m[b]), int(similar[b]), k, 1, 2.0, False) + float(g1[b] @ z1[b]) + float(g2[b] @ z2[b])
        assert math.isclose(got, best, rel_tol=1e-12), b
        assert int((g1[b] != g2[b]).sum()) == int(m[b])


def test_mlh_loss_matches_a_per_pair_loop_and_bounds_the_empirical_loss() -> None:
    g = torch.Generator().manual_seed(1)
    k, rho, lam = 5, 2, 0.7
    z1 = torch.randn(8, k, generator=g, dtype=torch.float64)
    z2 = torch.randn(8, k, generator=g, dtype=torch.float64)
    labels1 = (torch.rand(8, 3, generator=g) < 0.5).double()
    labels2 = (torch.rand(8, 3, generator=g) < 0.5).double()
    similar = (labels1 * labels2).sum(1) > 0
    codes = [torch.tensor(c, dtype=torch.float64) for c in itertools.product([-1.0, 1.0], repeat=k)]
    bound = empirical = 0.0
    for b in range(8):
        s = 1 if float(labels1[b] @ labels2[b]) > 0 else 0
        best = max(
            _hinge(int((a != c).sum()), s, k, rho, lam, True) + float(a @ z1[b]) + float(c @ z2[b])
            for a in codes
            for c in codes
        )
        bound += (best - float(z1[b].abs().sum()) - float(z2[b].abs().sum())) / 8
        h1, h2 = torch.where(z1[b] >= 0, 1, -1), torch.where(z2[b] >= 0, 1, -1)
        empirical += _hinge(int((h1 != h2).sum()), s, k, rho, lam, True) / 8
    terms = mlh_loss(z1, z2, similar, rho, lam)
    assert math.isclose(float(terms["bound"]), bound, rel_tol=1e-10)
    assert math.isclose(float(terms["empirical"]), empirical, rel_tol=1e-10)
    assert float(terms["loss"]) == float(terms["bound"]) >= float(terms["empirical"])


def test_bound_gradient_is_the_autograd_subgradient_of_the_loss() -> None:
    g = torch.Generator().manual_seed(2)
    w = torch.randn(6, 4, generator=g, dtype=torch.float64, requires_grad=True)
    x1 = torch.randn(10, 4, generator=g, dtype=torch.float64)
    x2 = torch.randn(10, 4, generator=g, dtype=torch.float64)
    similar = torch.rand(10, generator=g) < 0.5
    terms = mlh_loss(x1 @ w.T, x2 @ w.T, similar, rho=2)
    terms["bound"].backward()
    grad, bound, empirical = mlh_bound_gradient(w.detach(), x1, x2, similar, mlh_hinge_table(6, 2))
    assert torch.allclose(grad, w.grad, atol=1e-12)
    assert math.isclose(float(bound), float(terms["bound"].detach()), rel_tol=1e-12)
    assert math.isclose(float(empirical), float(terms["empirical"].detach()), rel_tol=1e-12)


def test_fit_lowers_the_bound_and_beats_chance_on_planted_classes() -> None:
    x, y = _blobs(1000, 8, dim=48, spread=0.6)
    model = _fitted(x[:700], y[:700], n_bits=16, n_epochs=4)
    assert model.bound_history[-1] < model.bound_history[0]
    assert model.empirical_history[-1] < model.empirical_history[0]
    assert model.fit_terms["bound"] >= model.fit_terms["empirical"]
    got = _map(_codes(model, x[700:800]), y[700:800], _codes(model, x[800:]), y[800:])
    lsh = MLH(n_bits=16, n_epochs=0)  # zero epochs: the LSH initialisation on the same preprocessed inputs
    lsh.fit_features(x[:700], y[:700])
    lsh.fitted.fill_(True)
    start = _map(_codes(lsh, x[700:800]), y[700:800], _codes(lsh, x[800:]), y[800:])
    assert got > 0.6 and got > start + 0.2, (got, start)  # chance is 1/8


def test_fit_is_seeded_and_handles_multi_label_data() -> None:
    g = torch.Generator().manual_seed(3)
    prototypes = 3 * torch.randn(5, 20, generator=torch.Generator().manual_seed(10))
    y = (torch.rand(400, 5, generator=g) < 0.3).float()
    y[torch.arange(400), torch.arange(400) % 5] = 1
    x = y @ prototypes / y.sum(1, keepdim=True) + torch.randn(400, 20, generator=g)
    a = _fitted(x[:300], y[:300], n_bits=12, n_epochs=1, positive_fraction=0.3)
    b = _fitted(x[:300], y[:300], n_bits=12, n_epochs=1, positive_fraction=0.3)
    c = _fitted(x[:300], y[:300], n_bits=12, n_epochs=1, positive_fraction=0.3, seed=1)
    assert torch.equal(a.projection, b.projection) and not torch.equal(a.projection, c.projection)
    got = _map(_codes(a, x[300:340]), y[300:340], _codes(a, x[340:]), y[340:])
    rand = torch.where(torch.rand(100, 12, generator=g) < 0.5, 1, -1)
    chance = _map(rand[:40], y[300:340], rand[40:], y[340:])
    assert got > chance + 0.15, (got, chance)


@pytest.mark.parametrize("multi_label", [False, True])
def test_run_cell_on_synthetic_data(multi_label: bool, tmp_path) -> None:
    dm = SyntheticHashingDataModule(
        num_classes=4, num_train=128, num_query=32, num_database=128, batch_size=32, multi_label=multi_label
    )
    result = run_cell(
        "MLH", n_bits=16, profile="quick", datamodule=dm, root_dir=tmp_path, method_kwargs={"n_epochs": 2}
    )
    assert result.best_epoch == 0
    # Chance is 0.25 (single-label) and about 0.45 (multi-label).
    assert result.metrics["mAP@all"] > {False: 0.6, True: 0.6}[multi_label], result.metrics


def test_checkpoint_restores_the_transform(tmp_path) -> None:
    import lightning as L

    dm = SyntheticHashingDataModule(num_classes=4, num_train=96, batch_size=16)
    model = MLH(n_bits=8, n_epochs=1)
    trainer = L.Trainer(
        max_epochs=2, logger=False, enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path
    )
    trainer.fit(model, datamodule=dm)
    assert bool(model.fitted) and model.projection.shape == (784, 8)
    trainer.save_checkpoint(tmp_path / "mlh.ckpt")
    restored = MLH.load_from_checkpoint(tmp_path / "mlh.ckpt")
    x = dm.splits["query"].images
    assert torch.equal(restored.encode(x), model.encode(x))
