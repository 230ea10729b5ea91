"""Shallow methods (LSH, ITQ, SH): closed-form fits, the ITQ iteration, a faiss cross-check, the Trainer path."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch

from hashbench.bench.run import run_cell
from hashbench.methods.itq import ITQ, itq_rotation
from hashbench.methods.lsh import LSH
from hashbench.methods.sh import SH, spectral_modes
from hashbench.testing import SyntheticHashingDataModule


def _clusters(n: int, dim: int = 64, n_classes: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Gaussian clusters around random centres (separable for n_classes << 2^K)."""
    g = torch.Generator().manual_seed(seed)
    centres = 3.0 * torch.randn(n_classes, dim, generator=torch.Generator().manual_seed(99))
    y = torch.randint(0, n_classes, (n,), generator=g)
    return centres[y] + torch.randn(n, dim, generator=g), y


def _map(q_codes: torch.Tensor, q_y: torch.Tensor, d_codes: torch.Tensor, d_y: torch.Tensor) -> float:
    """mAP over the whole database with Hamming ranking (ties in index order), for these tests only."""
    ham = (q_codes.shape[1] - q_codes.float() @ d_codes.float().T) / 2
    rel = (q_y[:, None] == d_y[None, :]).float()
    order = torch.argsort(ham, dim=1, stable=True)
    r = torch.gather(rel, 1, order)
    hits = r.cumsum(1)
    prec = hits / torch.arange(1, r.shape[1] + 1)
    return float(((prec * r).sum(1) / r.sum(1).clamp_min(1)).mean())


def _fitted(cls: type, x: torch.Tensor, n_bits: int = 16, **kw: object):
    model = cls(n_bits=n_bits, **kw)
    model.fit_features(x)
    model.fitted.fill_(True)
    return model


def _codes(model, x: torch.Tensor) -> torch.Tensor:
    u = model.transform((x - model.feature_mean) @ model.projection)
    return torch.where(u >= 0, 1, -1)


def test_itq_rotation_is_orthogonal_and_loss_never_increases() -> None:
    x, _ = _clusters(600)
    v = (x - x.mean(0)) @ torch.linalg.svd(x - x.mean(0), full_matrices=False).Vh[:16].T
    r, history = itq_rotation(v, n_iter=50, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(r.T @ r, torch.eye(16, dtype=torch.float64), atol=1e-10)
    assert len(history) == 51
    assert all(b <= a + 1e-9 for a, b in zip(history, history[1:], strict=False))
    assert history[-1] < history[0]


def test_itq_fit_projection_is_pca_times_rotation() -> None:
    x, _ = _clusters(500)
    model = _fitted(ITQ, x)
    p = model.projection.double()
    # columns of PCA directions (orthonormal) times an orthogonal rotation are orthonormal
    assert torch.allclose(p.T @ p, torch.eye(16, dtype=torch.float64), atol=1e-4)
    assert torch.allclose(model.feature_mean, x.mean(0), atol=1e-5)
    assert model.quantization_history[-1] <= model.quantization_history[0]
    with pytest.raises(ValueError, match="feature dim >= n_bits"):
        ITQ(n_bits=80).fit_features(x)


def test_itq_retrieval_matches_faiss_itq_transform() -> None:
    faiss = pytest.importorskip("faiss")
    x, y = _clusters(2200, n_classes=12)
    train, q, q_y, db, db_y = x[:1500], x[1500:1700], y[1500:1700], x[1700:], y[1700:]
    ours = _fitted(ITQ, train)
    ours_map = _map(_codes(ours, q), q_y, _codes(ours, db), db_y)
    t = faiss.ITQTransform(64, 16, True)
    t.train(np.ascontiguousarray(train.numpy()))

    def fcodes(a: torch.Tensor) -> torch.Tensor:
        return torch.where(torch.from_numpy(t.apply(np.ascontiguousarray(a.numpy()))) >= 0, 1, -1)

    faiss_map = _map(fcodes(q), q_y, fcodes(db), db_y)
    # Different random initial rotations: not bit-identical, but the same retrieval quality.
    assert ours_map >= faiss_map - 0.05, (ours_map, faiss_map)


@pytest.mark.parametrize("cls", [LSH, ITQ, SH])
def test_shallow_codes_beat_random_codes_on_separable_data(cls: type) -> None:
    x, y = _clusters(1400)
    model = _fitted(cls, x[:1000])
    got = _map(_codes(model, x[1000:1100]), y[1000:1100], _codes(model, x[1100:]), y[1100:])
    g = torch.Generator().manual_seed(5)
    rand = torch.where(torch.rand(400, 16, generator=g) < 0.5, 1, -1)
    chance = _map(rand[:100], y[1000:1100], rand[100:], y[1100:])
    assert chance < 0.25 and got > chance + 0.3, (got, chance)


def test_lsh_is_a_seeded_gaussian_projection() -> None:
    x, _ = _clusters(50)
    a, b, c = _fitted(LSH, x), _fitted(LSH, x), _fitted(LSH, x, seed=1)
    assert torch.equal(a.projection, b.projection) and not torch.equal(a.projection, c.projection)
    assert torch.allclose(a.feature_mean, x.mean(0), atol=1e-5)
    assert torch.equal(_fitted(LSH, x, center=False).feature_mean, torch.zeros(64))


def test_sh_modes_pick_the_lowest_frequencies() -> None:
    dims, omega = spectral_modes(torch.tensor([2.0, 1.0]), 3)
    # ω = kπ/r: direction 0 gives π/2, π, 3π/2...; direction 1 gives π, 2π...; ties go to the lower direction
    assert dims.tolist() == [0, 0, 1]
    assert torch.allclose(omega, torch.tensor([0.5, 1.0, 1.0], dtype=torch.float64) * torch.pi)


def test_sh_bits_are_cosines_of_the_chosen_modes() -> None:
    x, _ = _clusters(400, dim=10)
    model = _fitted(SH, x, n_bits=12)
    assert model.projection.shape == (10, 12) and model.omega.shape == (12,)
    v = (x - model.feature_mean) @ model.projection
    assert torch.allclose(model(x), torch.cos(model.omega * (v - model.offset)))
    # the first mode of the widest direction splits the data at the middle of its range: roughly balanced
    first = model(x)[:, 0] >= 0
    assert 0.2 < float(first.float().mean()) < 0.8


def test_unfitted_model_hashes_with_random_hyperplanes_and_loss_has_no_grad() -> None:
    model = ITQ(n_bits=8)
    x = torch.randn(4, 1, 28, 28)
    u = model(x)
    assert torch.allclose(u, x.flatten(1) @ model.random_projection(784), atol=1e-5)
    batch = (x, torch.eye(4), torch.arange(4))
    terms = model.compute_loss(batch)
    assert not terms["loss"].requires_grad and torch.isfinite(terms["loss"])
    with pytest.raises(ValueError, match="features"):
        LSH(features="sift")


def test_trainer_fits_once_stops_after_one_epoch_and_checkpoint_restores(tmp_path) -> None:
    dm = SyntheticHashingDataModule(num_classes=4, num_train=96, batch_size=16)
    model = ITQ(n_bits=12)
    trainer = L.Trainer(
        max_epochs=5, logger=False, enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path
    )
    trainer.fit(model, datamodule=dm)
    assert bool(model.fitted) and trainer.current_epoch == 1
    assert model.projection.shape == (784, 12)
    trainer.save_checkpoint(tmp_path / "itq.ckpt")
    restored = ITQ.load_from_checkpoint(tmp_path / "itq.ckpt")
    x = dm.splits["query"].images
    assert torch.equal(restored.encode(x), model.encode(x))


def test_backbone_features_stay_in_eval_mode() -> None:
    torch.manual_seed(0)
    model = LSH(n_bits=8, features="backbone")
    model.configure_data(num_classes=4, num_train=32, image_shape=(1, 28, 28))
    model.train()
    assert not model.backbone.training
    x = torch.randn(5, 1, 28, 28)
    model.fit_features(model.feature_vectors(x))
    assert model.projection.shape == (256, 8)
    assert torch.equal(model(x[:2]), model(x[:2]))  # no dropout / batch statistics


@pytest.mark.parametrize("name", ["LSH", "ITQ", "SH"])
def test_run_cell_on_synthetic_data(name: str, tmp_path) -> None:
    dm = SyntheticHashingDataModule(num_classes=4, num_train=128, num_query=32, num_database=128, batch_size=32)
    result = run_cell(name, n_bits=16, profile="quick", datamodule=dm, root_dir=tmp_path)
    assert result.best_epoch == 0
    assert result.metrics["mAP@all"] > 0.5  # class templates + noise: far above the 0.25 of chance


def test_pca_refuses_a_covariance_that_cannot_fit() -> None:
    from hashbench.methods._shallow import MAX_PCA_DIM, pca

    with pytest.raises(ValueError, match="native"):
        pca(torch.zeros(3, MAX_PCA_DIM + 1), 4)
