"""PCAH, CCA-ITQ, KSH, SDH: objectives against loops, planted problems with known solutions, the Trainer path."""

from __future__ import annotations

import math

import pytest
import torch

from hashbench.bench.run import run_cell
from hashbench.methods.cca_itq import CCAITQ, cca_directions, cca_itq_loss
from hashbench.methods.ksh import KSH, ksh_loss, ksh_optimize_projection, ksh_smoothed_objective
from hashbench.methods.pcah import PCAH, pcah_loss
from hashbench.methods.sdh import SDH, sdh_dcc, sdh_loss
from hashbench.testing import SyntheticHashingDataModule


def _blobs(
    n: int, n_classes: int, dim: int = 32, spread: float = 6.0, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Well-separated Gaussian blobs: features [n, dim] and one-hot labels [n, n_classes]."""
    g = torch.Generator().manual_seed(seed)
    centres = spread * torch.randn(n_classes, dim, generator=torch.Generator().manual_seed(123))
    y = torch.arange(n) % n_classes
    return centres[y] + torch.randn(n, dim, generator=g), torch.eye(n_classes)[y]


def _fitted(cls: type, x: torch.Tensor, labels: torch.Tensor | None = None, **kw: object):
    model = cls(**kw)
    if labels is None:
        model.fit_features(x)
    else:
        model.fit_features(x, labels)
    model.fitted.fill_(True)
    return model


def _codes(model, x: torch.Tensor) -> torch.Tensor:
    return torch.where(model.transform(model.project(x)) >= 0, 1, -1)


def _map(q: torch.Tensor, q_y: torch.Tensor, db: torch.Tensor, db_y: torch.Tensor) -> float:
    """mAP over the whole database, Hamming ranking with ties in index order, relevance = a shared label."""
    ham = (q.shape[1] - q.float() @ db.float().T) / 2
    rel = (q_y.float() @ db_y.float().T > 0).float()
    r = torch.gather(rel, 1, torch.argsort(ham, dim=1, stable=True))
    prec = r.cumsum(1) / torch.arange(1, r.shape[1] + 1)
    return float(((prec * r).sum(1) / r.sum(1).clamp_min(1)).mean())


# ---------------------------------------------------------------- objectives against loops
def test_pcah_loss_matches_a_per_item_loop() -> None:
    g = torch.Generator().manual_seed(0)
    v = torch.randn(7, 3, generator=g, dtype=torch.float64)
    total = torch.tensor(11.0, dtype=torch.float64)
    captured = sum(sum(float(v[i, k]) ** 2 for k in range(3)) for i in range(7)) / 7
    terms = pcah_loss(v, total)
    assert math.isclose(float(terms["residual_variance"]), 1 - captured / 11.0, rel_tol=1e-12)
    assert float(terms["loss"]) == float(terms["residual_variance"])


def test_cca_itq_loss_matches_a_per_item_loop() -> None:
    g = torch.Generator().manual_seed(1)
    v = torch.randn(6, 4, generator=g, dtype=torch.float64)
    rotation, _ = torch.linalg.qr(torch.randn(4, 4, generator=g, dtype=torch.float64))
    expected = 0.0
    for i in range(6):
        for k in range(4):
            value = sum(float(v[i, j] * rotation[j, k]) for j in range(4))
            expected += ((1.0 if value >= 0 else -1.0) - value) ** 2 / 6
    assert math.isclose(float(cca_itq_loss(v, rotation)["loss"]), expected, rel_tol=1e-10)


def test_ksh_loss_matches_a_per_pair_loop() -> None:
    g = torch.Generator().manual_seed(2)
    codes = torch.where(torch.rand(5, 4, generator=g) < 0.5, 1.0, -1.0).double()
    labels = (torch.rand(5, 3, generator=g) < 0.5).double()
    s = 2 * (labels @ labels.T > 0).double() - 1
    expected = 0.0
    for i in range(5):
        for j in range(5):
            inner = sum(float(codes[i, k] * codes[j, k]) for k in range(4))
            target = 1.0 if float(labels[i] @ labels[j]) > 0 else -1.0
            expected += (inner / 4 - target) ** 2 / 25
    assert math.isclose(float(ksh_loss(codes, s)["reconstruction"]), expected, rel_tol=1e-12)


def test_ksh_smoothed_objective_and_gradient_match_the_formula() -> None:
    g = torch.Generator().manual_seed(3)
    kernels = torch.randn(6, 4, generator=g, dtype=torch.float64)
    residue = torch.randn(6, 6, generator=g, dtype=torch.float64)
    residue = residue + residue.T
    a = torch.randn(4, generator=g, dtype=torch.float64, requires_grad=True)
    value, grad = ksh_smoothed_objective(kernels, residue, a.detach())
    phi = [2 / (1 + math.exp(-float(kernels[i] @ a.detach()))) - 1 for i in range(6)]
    expected = -sum(phi[i] * float(residue[i, j]) * phi[j] for i in range(6) for j in range(6))
    assert math.isclose(float(value), expected, rel_tol=1e-10)
    auto = ksh_smoothed_objective(kernels, residue, a)[0]
    auto.backward()
    assert torch.allclose(grad, a.grad, atol=1e-10)


def test_sdh_loss_matches_a_per_item_loop() -> None:
    g = torch.Generator().manual_seed(4)
    b = torch.where(torch.rand(5, 3, generator=g) < 0.5, 1.0, -1.0).double()
    y = (torch.rand(5, 2, generator=g) < 0.5).double()
    w = torch.randn(3, 2, generator=g, dtype=torch.float64)
    f = torch.randn(5, 3, generator=g, dtype=torch.float64)
    cls = sum(
        (float(y[i, c]) - sum(float(b[i, k] * w[k, c]) for k in range(3))) ** 2 for i in range(5) for c in range(2)
    )
    reg = 0.5 * sum(float(w[k, c]) ** 2 for k in range(3) for c in range(2))
    fit = 0.1 * sum((float(b[i, k]) - float(f[i, k])) ** 2 for i in range(5) for k in range(3))
    terms = sdh_loss(b, y, w, f, lam=0.5, nu=0.1)
    assert math.isclose(float(terms["classification"]), cls, rel_tol=1e-12)
    assert math.isclose(float(terms["loss"]), cls + reg + fit, rel_tol=1e-12)


# ---------------------------------------------------------------- solvers
def test_sdh_dcc_ends_at_a_point_no_single_bit_flip_improves() -> None:
    g = torch.Generator().manual_seed(5)
    q = torch.randn(40, 6, generator=g, dtype=torch.float64)
    w = 0.3 * torch.randn(6, 3, generator=g, dtype=torch.float64)
    b, sweeps = sdh_dcc(q, w, n_sweeps=50)
    assert sweeps < 50, "DCC should reach a fixed point on this small problem"

    def objective(codes: torch.Tensor) -> float:  # ‖BW‖² − 2 tr(BᵀQ): the B-step's objective up to constants
        return float((codes @ w).pow(2).sum() - 2 * (codes * q).sum())

    base = objective(b)
    for i in range(40):
        for k in range(6):
            flipped = b.clone()
            flipped[i, k] = -flipped[i, k]
            assert objective(flipped) >= base - 1e-9, (i, k)


def test_ksh_gradient_descent_lowers_the_smoothed_objective() -> None:
    x, y = _blobs(60, 3, dim=8, spread=1.0)
    kernels = torch.exp(-torch.cdist(x, x[:10]).pow(2).double() / 50)
    kernels = kernels - kernels.mean(0)
    residue = 8 * (2 * (y @ y.T > 0).double() - 1)
    a0 = torch.randn(10, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    a, history = ksh_optimize_projection(kernels, residue, a0, max_iter=200, tol=0.0)
    assert history[-1] < history[0]
    assert math.isclose(float(ksh_smoothed_objective(kernels, residue, a)[0]), history[-1], rel_tol=1e-9)


def test_cca_directions_solve_the_generalised_eigenproblem_and_match_an_svd_reference() -> None:
    x, y = _blobs(300, 4, dim=10, spread=0.7)
    scaled, sigma = cca_directions(x, y, reg=1e-4)
    xc, yc = x.double() - x.double().mean(0), y.double() - y.double().mean(0)
    cxx = xc.T @ xc / 300 + 1e-4 * torch.eye(10, dtype=torch.float64)
    cyy = yc.T @ yc / 300 + 1e-4 * torch.eye(4, dtype=torch.float64)
    cxy = xc.T @ yc / 300

    def inv_sqrt(m: torch.Tensor) -> torch.Tensor:
        e, q = torch.linalg.eigh(m)
        return q @ torch.diag(e.rsqrt()) @ q.T

    # Canonical correlations = singular values of the whitened cross-covariance.
    reference = torch.linalg.svdvals(inv_sqrt(cxx) @ cxy @ inv_sqrt(cyy))
    assert torch.allclose(sigma, reference, atol=1e-6)  # the null direction: sqrt of a round-off eigenvalue
    lhs = cxy @ torch.linalg.solve(cyy, cxy.T)
    for k in range(3):  # the non-zero correlations (centred one-hot labels have rank C − 1)
        w = scaled[:, k]
        assert torch.allclose(lhs @ w, sigma[k] ** 2 * cxx @ w, atol=1e-8)
        assert math.isclose(float(w @ cxx @ w), float(sigma[k]) ** 2, rel_tol=1e-8)  # unit variance, × σ_k
    assert float(sigma[3]) < 1e-3


# ---------------------------------------------------------------- planted problems with known solutions
def test_pcah_recovers_planted_principal_axes() -> None:
    g = torch.Generator().manual_seed(6)
    scales = torch.tensor([6.0, 5.0, 4.0, 3.0, 0.5, 0.4, 0.3, 0.2])
    x = torch.randn(4000, 8, generator=g) * scales + 1.0
    model = _fitted(PCAH, x, n_bits=4)
    # the top-4 directions are the first four axes, each with its positive sign
    assert torch.allclose(model.projection, torch.eye(8)[:, :4], atol=0.05)
    agreement = (_codes(model, x) == torch.where(x[:, :4] - x[:, :4].mean(0) >= 0, 1, -1)).float().mean()
    assert agreement > 0.98
    assert model.fit_terms["residual_variance"] < 0.02
    with pytest.raises(ValueError, match="feature dim >= n_bits"):
        PCAH(n_bits=16).fit_features(x)


def test_cca_itq_finds_the_planted_label_subspace() -> None:
    # Labels live in the first 6 of 30 dimensions (plus noise); the other 24 are pure noise with a larger
    # variance, so PCA-based codes would ignore the labels while CCA must find them.
    g = torch.Generator().manual_seed(7)
    y = torch.eye(4)[torch.arange(1200) % 4]
    signal = 2 * y @ torch.randn(4, 6, generator=torch.Generator().manual_seed(8)) + torch.randn(1200, 6, generator=g)
    x = torch.cat([signal, 4 * torch.randn(1200, 24, generator=g)], 1)
    model = _fitted(CCAITQ, x[:800], y[:800], n_bits=8)
    scaled, sigma = cca_directions(x[:800], y[:800])
    assert scaled.shape == (30, 4) and float(sigma[0]) > 0.7 and float(sigma[2]) > 0.3
    mass = model.projection.pow(2)
    assert float(mass[:6].sum() / mass.sum()) > 0.95  # the bits read the planted dimensions
    assert model.quantization_history[-1] <= model.quantization_history[0]
    pcah = _fitted(PCAH, x[:800], n_bits=8)
    ours = _map(_codes(model, x[800:900]), y[800:900], _codes(model, x[900:]), y[900:])
    unsupervised = _map(_codes(pcah, x[800:900]), y[800:900], _codes(pcah, x[900:]), y[900:])
    assert ours > 0.7 and ours > unsupervised + 0.3, (ours, unsupervised)


def test_ksh_recovers_the_planted_two_class_code() -> None:
    # Two classes: BBᵀ = rS is reached exactly by one code per class and its complement, which KSH's greedy
    # residue fitting finds bit by bit (every bit splits the classes).
    x, y = _blobs(240, 2, dim=16)
    model = _fitted(KSH, x[:160], y[:160], n_bits=6, n_anchors=40, n_labeled=120)
    assert model.fit_terms["reconstruction"] == 0.0
    codes = _codes(model, x[160:])
    first = codes[y[160:, 0] == 1]
    second = codes[y[160:, 1] == 1]
    assert (first == first[0]).all() and (second == -first[0]).all()


def test_sdh_recovers_one_code_per_class() -> None:
    x, y = _blobs(400, 4, dim=16)
    model = _fitted(SDH, x[:300], y[:300], n_bits=8, n_anchors=100)
    train = _codes(model, x[:300])
    class_codes = []
    for c in range(4):
        rows = train[y[:300, c] == 1]
        assert (rows == rows[0]).all(), f"class {c} does not share one code"
        class_codes.append(rows[0])
    assert len({tuple(code.tolist()) for code in class_codes}) == 4
    held_out = _codes(model, x[300:])
    for c in range(4):
        assert (held_out[y[300:, c] == 1] == class_codes[c]).all()
    history = model.objective_history
    assert history[-1] < history[0] and model.fit_terms["classification"] < 0.5


@pytest.mark.parametrize("cls", [KSH, SDH, CCAITQ])
def test_supervised_fits_on_multi_label_data(cls: type) -> None:
    g = torch.Generator().manual_seed(9)
    prototypes = 3 * torch.randn(5, 20, generator=torch.Generator().manual_seed(10))
    y = (torch.rand(500, 5, generator=g) < 0.3).float()
    y[torch.arange(500), torch.arange(500) % 5] = 1
    x = y @ prototypes / y.sum(1, keepdim=True) + torch.randn(500, 20, generator=g)
    model = _fitted(cls, x[:350], y[:350], n_bits=12, **({"n_anchors": 100} if cls is not CCAITQ else {}))
    got = _map(_codes(model, x[350:400]), y[350:400], _codes(model, x[400:]), y[400:])
    rand = torch.where(torch.rand(150, 12, generator=g) < 0.5, 1, -1)
    chance = _map(rand[:50], y[350:400], rand[50:], y[400:])
    assert got > chance + 0.15, (got, chance)


def test_kernel_methods_subsample_with_their_seed() -> None:
    x, y = _blobs(120, 3, dim=8)
    a = _fitted(KSH, x, y, n_bits=4, n_anchors=20, n_labeled=50)
    b = _fitted(KSH, x, y, n_bits=4, n_anchors=20, n_labeled=50)
    c = _fitted(KSH, x, y, n_bits=4, n_anchors=20, n_labeled=50, seed=1)
    assert torch.equal(a.anchors, b.anchors) and torch.equal(a.projection, b.projection)
    assert not torch.equal(a.anchors, c.anchors)
    small = _fitted(SDH, x[:30], y[:30], n_bits=4)  # fewer points than the 1,000 anchors: all of them
    assert small.anchors.shape == (30, 8) and small.projection.shape == (30, 4)


# ---------------------------------------------------------------- the Trainer path
@pytest.mark.parametrize("name", ["PCAH", "CCA-ITQ", "KSH", "SDH"])
@pytest.mark.parametrize("multi_label", [False, True])
def test_run_cell_on_synthetic_data(name: str, multi_label: bool, tmp_path) -> None:
    dm = SyntheticHashingDataModule(
        num_classes=4, num_train=128, num_query=32, num_database=128, batch_size=32, multi_label=multi_label
    )
    result = run_cell(name, n_bits=16, profile="quick", datamodule=dm, root_dir=tmp_path)
    assert result.best_epoch == 0
    # Chance is 0.25 (single-label) and about 0.45 (multi-label: 45% of query-database pairs share a label).
    # PCAH is the weak one by design: most of its 16 bits are noise directions of the class-template data.
    floor = {False: 0.4, True: 0.55} if name == "PCAH" else {False: 0.9, True: 0.85}
    assert result.metrics["mAP@all"] > floor[multi_label], result.metrics


def test_kernel_model_checkpoint_restores_its_transform(tmp_path) -> None:
    import lightning as L

    dm = SyntheticHashingDataModule(num_classes=4, num_train=96, batch_size=16)
    model = KSH(n_bits=8, n_anchors=30, n_labeled=60)
    trainer = L.Trainer(
        max_epochs=3, logger=False, enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path
    )
    trainer.fit(model, datamodule=dm)
    assert bool(model.fitted) and model.anchors.shape == (30, 784)
    trainer.save_checkpoint(tmp_path / "ksh.ckpt")
    restored = KSH.load_from_checkpoint(tmp_path / "ksh.ckpt")
    x = dm.splits["query"].images
    assert torch.equal(restored.encode(x), model.encode(x))
    with pytest.raises(ValueError, match="fitted on 784-dim"):
        restored(torch.zeros(2, 1, 10, 10))
