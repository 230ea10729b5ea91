"""JDSH: the joint-modal similarity, the distribution fit, DSW and the loss against explicit loops; no labels; the
fit at the start of training."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from hashbench.data.synthetic_text import FashionMNISTTextDataModule
from hashbench.methods.jdsh import (
    DSW_KEYS,
    JDSH,
    RELEASED_DSW,
    dsw,
    fit_dsw_parameters,
    jdsh_joint_similarity,
    jdsh_loss,
)
from hashbench.testing import quiet_trainer


def _cos(a, b) -> float:
    dot = sum(float(x) * float(y) for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(float(x) ** 2 for x in a)) * math.sqrt(sum(float(y) ** 2 for y in b)))


def joint_loop(f_i, f_t, alpha, beta, lam) -> list[list[float]]:
    """S̃_ij = α·S_I,ij + β·S_T,ij + λ·(cos(S_I,i·, S_T,j·) + cos(S_I,j·, S_T,i·))/2, S = 2·cos − 1."""
    m = f_i.shape[0]
    s_i = [[2 * _cos(f_i[i], f_i[j]) - 1 for j in range(m)] for i in range(m)]
    s_t = [[2 * _cos(f_t[i], f_t[j]) - 1 for j in range(m)] for i in range(m)]
    out = []
    for i in range(m):
        row = []
        for j in range(m):
            high = (_cos(s_i[i], s_t[j]) + _cos(s_i[j], s_t[i])) / 2
            row.append(alpha * s_i[i][j] + beta * s_t[i][j] + lam * high)
        out.append(row)
    return out


def dsw_loop(value: float, p: dict[str, float], k_l: float, k_r: float, g_l: float, g_r: float) -> float:
    if value < p["loc_left"] - k_l * p["scale_left"]:
        return (1 + g_l * math.exp(-(value - p["min"]))) * value
    if value > p["loc_right"] + k_r * p["scale_right"]:
        return (1 + g_r * math.exp(value - p["max"])) * value
    return value


def _batch(seed: int, m: int = 6, k: int = 5):
    g = torch.Generator().manual_seed(seed)
    u_i = torch.randn(m, k, generator=g, dtype=torch.float64).tanh()
    u_t = torch.randn(m, k, generator=g, dtype=torch.float64).tanh()
    f_i = torch.randn(m, 7, generator=g, dtype=torch.float64)
    f_t = (torch.rand(m, 9, generator=g, dtype=torch.float64) < 0.4).double()
    f_t[:, 0] = 1.0
    return u_i, u_t, f_i, f_t


@pytest.mark.parametrize("seed", range(3))
def test_joint_similarity_matches_explicit_loop(seed: int) -> None:
    _, _, f_i, f_t = _batch(seed)
    got = jdsh_joint_similarity(f_i, f_t, alpha=0.4, beta=0.3, lam=0.3)
    for i, row in enumerate(joint_loop(f_i, f_t, 0.4, 0.3, 0.3)):
        for j, value in enumerate(row):
            assert float(got[i, j]) == pytest.approx(value, rel=1e-10, abs=1e-12)


def test_fit_on_a_hand_checked_sample() -> None:
    # 10 bins over [-1, 1]: the bin [-0.4, -0.2) holds three values, so the mode is its centre -0.3.
    values = torch.tensor([-1.0, -0.35, -0.3, -0.25, 0.1, 1.0], dtype=torch.float64)
    p = fit_dsw_parameters(values, bins=10)
    assert p["loc_left"] == p["loc_right"] == pytest.approx(-0.3)
    # The sides split at the fitted mode (-0.3 up to rounding, so -0.3 itself may fall on either side).
    left = [v for v in values.tolist() if v <= p["loc_left"]]
    right = [v for v in values.tolist() if v >= p["loc_left"]]
    assert p["scale_left"] == pytest.approx(math.sqrt(sum((v - p["loc_left"]) ** 2 for v in left) / len(left)))
    assert p["scale_right"] == pytest.approx(sum(v - p["loc_left"] for v in right) / len(right))
    assert (p["min"], p["max"]) == (-1.0, 1.0)
    with pytest.raises(ValueError, match="at least 2"):
        fit_dsw_parameters(torch.tensor([0.5]))


def test_dsw_matches_the_elementwise_rule() -> None:
    g = torch.Generator().manual_seed(4)
    s = torch.rand(7, 7, generator=g, dtype=torch.float64) * 2 - 1
    p = RELEASED_DSW["mirflickr"] | {"scale_left": 0.1, "scale_right": 0.05}  # thresholds -0.69 and -0.29
    got = dsw(s, p, left_k=2, right_k=4, gamma_left=0.1, gamma_right=0.2)
    below = above = 0
    for i in range(7):
        for j in range(7):
            value = float(s[i, j])
            below += value < -0.69
            above += value > -0.29
            assert float(got[i, j]) == pytest.approx(dsw_loop(value, p, 2, 4, 0.1, 0.2), rel=1e-12)
    assert below > 0 and above > 0  # both rules were exercised


@pytest.mark.parametrize("seed", range(3))
def test_loss_matches_explicit_loop(seed: int) -> None:
    u_i, u_t, f_i, f_t = _batch(seed)
    kw = {"alpha": 0.5, "beta": 0.1, "lam": 0.4, "mu": 1.4, "intra": 0.2}
    dsw_kw = {"left_k": 2.0, "right_k": 4.0, "gamma_left": 0.3, "gamma_right": 0.2}
    params = {"loc_left": -0.2, "scale_left": 0.05, "loc_right": -0.2, "scale_right": 0.05, "min": -0.9, "max": 0.9}
    joint = joint_loop(f_i, f_t, kw["alpha"], kw["beta"], kw["lam"])
    m = u_i.shape[0]
    target = [[kw["mu"] * dsw_loop(joint[i][j], params, 2, 4, 0.3, 0.2) for j in range(m)] for i in range(m)]
    cross = intra_i = intra_t = 0.0
    for i in range(m):
        for j in range(m):
            cross += ((_cos(u_i[i], u_t[j]) - target[i][j]) ** 2 + (_cos(u_t[i], u_i[j]) - target[i][j]) ** 2) / m**2
            intra_i += (_cos(u_i[i], u_i[j]) - target[i][j]) ** 2 / m**2
            intra_t += (_cos(u_t[i], u_t[j]) - target[i][j]) ** 2 / m**2
    paired = -sum(_cos(u_i[i], u_t[i]) for i in range(m)) / m
    terms = jdsh_loss(u_i, u_t, f_i, f_t, params, **kw, **dsw_kw)
    assert float(terms["cross"]) == pytest.approx(cross, rel=1e-10)
    assert float(terms["paired"]) == pytest.approx(paired, rel=1e-10)
    assert float(terms["intra_image"]) == pytest.approx(0.2 * intra_i, rel=1e-10)
    assert float(terms["intra_text"]) == pytest.approx(0.2 * intra_t, rel=1e-10)
    assert float(terms["loss"]) == pytest.approx(cross + paired + 0.2 * (intra_i + intra_t), rel=1e-10)


def test_loss_without_parameters_fits_them_on_the_batch() -> None:
    u_i, u_t, f_i, f_t = _batch(1)
    fitted = fit_dsw_parameters(jdsh_joint_similarity(f_i, f_t))
    assert torch.equal(jdsh_loss(u_i, u_t, f_i, f_t)["loss"], jdsh_loss(u_i, u_t, f_i, f_t, fitted)["loss"])


def _datamodule(**kw) -> FashionMNISTTextDataModule:
    opts = {"image_source": "synthetic", "batch_size": 32, "synthetic_sizes": (4, 16, 8), "seed": 0} | kw
    dm = FashionMNISTTextDataModule(**opts)
    dm.setup()
    return dm


def test_compute_loss_never_reads_labels() -> None:
    dm = _datamodule()
    torch.manual_seed(0)
    model = JDSH(n_bits=16, dsw=RELEASED_DSW["mirflickr"])
    model.configure_data(dm.facts)
    model.eval()
    batch = next(iter(dm.train_dataloader()))
    scrambled = batch._replace(labels=torch.zeros_like(batch.labels))
    a, b = model.compute_loss(batch), model.compute_loss(scrambled)
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_fit_at_the_start_of_training_reads_the_first_batches(tmp_path) -> None:
    dm = _datamodule()
    torch.manual_seed(0)
    model = JDSH(n_bits=16, image_features="pixels", dsw_fit_batches=2)
    model.configure_data(dm.facts)
    assert model.dsw_parameters() is None
    loader = dm.train_dataloader()
    torch.manual_seed(1)
    first_two = itertools.islice(loader, 2)
    expected = fit_dsw_parameters(torch.cat([model.joint_similarity(b).reshape(-1) for b in first_two]))
    torch.manual_seed(1)
    fitted = model.fit_dsw(loader)
    assert fitted == pytest.approx(expected)
    assert model.dsw_parameters() == pytest.approx(expected)
    # A fitted (or given) set is kept: fit() does not fit again, and the buffers carry it into a checkpoint.
    quiet_trainer(tmp_path, max_epochs=1).fit(model, datamodule=dm)
    assert model.dsw_parameters() == pytest.approx(expected)
    clone = JDSH(n_bits=16, image_features="pixels")
    clone.configure_data(dm.facts)
    clone.load_state_dict(model.state_dict())
    assert clone.dsw_parameters() == pytest.approx(expected)


def test_given_parameters_are_used_as_they_are() -> None:
    model = JDSH(dsw=RELEASED_DSW["nuswide"])
    assert model.dsw_parameters() == pytest.approx(RELEASED_DSW["nuswide"])
    with pytest.raises(ValueError, match="keys"):
        JDSH(dsw={"loc_left": 0.0})
    with pytest.raises(ValueError, match="dsw_fit_batches"):
        JDSH(dsw_fit_batches=0)
    assert set(RELEASED_DSW["mirflickr"]) == set(DSW_KEYS)


def test_training_fits_dsw_and_beats_chance(tmp_path) -> None:
    torch.manual_seed(0)
    dm = FashionMNISTTextDataModule(image_source="synthetic", batch_size=48, synthetic_sizes=(6, 24, 12), seed=0)
    model = JDSH(n_bits=16, image_features="pixels")
    trainer = quiet_trainer(tmp_path, max_epochs=8)
    trainer.fit(model, datamodule=dm)
    assert model.dsw_parameters() is not None
    trainer.test(model, datamodule=dm, verbose=False)
    # 10 balanced classes: random codes give a mean AP of about 0.1 in both directions
    assert float(model.test_report["mAP@all I→T"]) > 0.2
    assert float(model.test_report["mAP@all T→I"]) > 0.2
