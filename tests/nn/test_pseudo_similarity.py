"""Tests of the label-free pseudo-similarity: threshold fit, target levels, pair sampling, stored features."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from hashbench.nn.backbones import PretrainedWeightsUnavailable, create_backbone
from hashbench.nn.pseudo_similarity import (
    FeatureSource,
    HalfGaussianThresholds,
    PseudoSimilarity,
    fit_half_gaussian_thresholds,
    fused_cosine,
    pixel_features,
    pseudo_targets,
    sample_pair_distances,
)


def _thr(lower: float, upper: float) -> HalfGaussianThresholds:
    mid = (lower + upper) / 2
    return HalfGaussianThresholds(mid, mid, (mid - lower) / 2, mid, (upper - mid) / 2, lower, upper)


def test_thresholds_recover_two_half_gaussians() -> None:
    # Left half-normal with sigma 0.05 and right half-normal with sigma 0.1 around d* = 0.9.
    g = torch.Generator().manual_seed(0)
    left = 0.9 - 0.05 * torch.randn(100_000, generator=g).abs()
    right = 0.9 + 0.10 * torch.randn(100_000, generator=g).abs()
    thr = fit_half_gaussian_thresholds(torch.cat([left, right]), bins=100)
    assert thr.mode == pytest.approx(0.9, abs=0.01)
    assert thr.mu_l == thr.mu_r == thr.mode
    assert thr.sigma_l == pytest.approx(0.05, abs=0.005)
    assert thr.sigma_r == pytest.approx(0.10, abs=0.008)
    assert thr.lower == pytest.approx(0.9 - 2 * 0.05, abs=0.015)
    assert thr.upper == pytest.approx(0.9 + 2 * 0.10, abs=0.02)


def test_thresholds_on_bimodal_histogram_follow_dominant_mode() -> None:
    # 85 % of pairs around D = 1.0 (unrelated images), 15 % around D = 0.4 (a cluster of similar pairs).
    g = torch.Generator().manual_seed(1)
    big = 1.0 + 0.08 * torch.randn(170_000, generator=g)
    small = 0.4 + 0.08 * torch.randn(30_000, generator=g)
    thr = fit_half_gaussian_thresholds(torch.cat([big, small]), bins=100)
    # The mode is the dominant peak, not the similar cluster.
    assert thr.mode == pytest.approx(1.0, abs=0.02)
    # Right side: only the main Gaussian -> sigma_r = 0.08. Left side: half of the main Gaussian plus the cluster,
    # so sigma_l^2 = E[(d - 1)^2 | d < 1] = (0.425 * 0.08^2 + 0.15 * (0.6^2 + 0.08^2)) / 0.575.
    sigma_l = math.sqrt((0.425 * 0.08**2 + 0.15 * (0.6**2 + 0.08**2)) / 0.575)
    assert thr.sigma_r == pytest.approx(0.08, abs=0.006)
    assert thr.sigma_l == pytest.approx(sigma_l, abs=0.01)
    assert thr.lower == pytest.approx(1.0 - 2 * sigma_l, abs=0.03)
    assert thr.upper == pytest.approx(1.16, abs=0.02)
    assert thr.lower < 0.4 + 0.08 and thr.upper > 1.0


def test_thresholds_reject_bad_input() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        fit_half_gaussian_thresholds(torch.tensor([0.5]))
    with pytest.raises(ValueError, match="NaN"):
        fit_half_gaussian_thresholds(torch.tensor([0.5, float("nan"), 0.2]))


def test_target_levels_and_weights() -> None:
    thr = _thr(0.3, 0.7)
    d = torch.tensor([0.1, 0.2999, 0.3, 0.4, 0.5, 0.6, 0.7, 0.7001, 1.5])
    t, w = pseudo_targets(d, thr, multi_level=True, mid_weight=0.5)
    # Outer levels +-1 with weight 1; middle band: 1 - 2 (D - 0.3) / 0.4, weight 0.5 (boundaries inclusive).
    expect_t = torch.tensor([1.0, 1.0, 1.0, 0.5, 0.0, -0.5, -1.0, -1.0, -1.0])
    expect_w = torch.tensor([1.0, 1.0, 0.5, 0.5, 0.5, 0.5, 0.5, 1.0, 1.0])
    torch.testing.assert_close(t, expect_t, atol=1e-5, rtol=0)
    torch.testing.assert_close(w, expect_w)
    t1, w1 = pseudo_targets(d, thr, multi_level=False, mid_weight=0.5)
    torch.testing.assert_close(t1, torch.tensor([1.0, 1.0, 0, 0, 0, 0, 0, -1.0, -1.0]))
    torch.testing.assert_close(w1, torch.tensor([1.0, 1.0, 0, 0, 0, 0, 0, 1.0, 1.0]))


def test_sample_pair_distances_matches_explicit_pairs() -> None:
    torch.manual_seed(0)
    g = F.normalize(torch.randn(7, 5), dim=1)
    s = F.normalize(torch.randn(7, 3), dim=1)
    d = sample_pair_distances(g, s, 500, torch.Generator().manual_seed(3))
    # Regenerate the same indices and compare with the full fused-cosine matrix.
    gen = torch.Generator().manual_seed(3)
    i = torch.randint(0, 7, (500,), generator=gen)
    j = (i + torch.randint(1, 7, (500,), generator=gen)) % 7
    assert bool((i != j).all())
    full = 1 - fused_cosine(g, s)
    torch.testing.assert_close(d, full[i, j])


def test_stored_features_give_the_batch_block_of_the_full_matrix() -> None:
    torch.manual_seed(0)
    raw_g, raw_s = torch.randn(40, 6), torch.rand(40, 4)
    ps = PseudoSimilarity(num_pairs=5000, center=True)
    thr = ps.set_features(raw_g, raw_s)
    assert ps.global_feats.shape == (40, 6) and ps.spatial_feats.shape == (40, 4)  # [N, D], never [N, N]
    g = F.normalize(raw_g - raw_g.mean(0), dim=1)
    s = F.normalize(raw_s - raw_s.mean(0), dim=1)
    c_full = 0.5 * (g @ g.T + s @ s.T)
    t_full, w_full = pseudo_targets(1 - c_full, thr, True, 0.5)
    index = torch.tensor([3, 17, 0, 39, 22])
    c, t, w = ps.targets(index, multi_level=True, mid_weight=0.5)
    torch.testing.assert_close(c, c_full[index][:, index])
    torch.testing.assert_close(t, t_full[index][:, index])
    torch.testing.assert_close(w, w_full[index][:, index])


def test_pseudo_similarity_refuses_targets_before_features() -> None:
    with pytest.raises(RuntimeError, match="build"):
        PseudoSimilarity().targets(torch.tensor([0, 1]), True, 0.5)


def test_pixel_features_shapes() -> None:
    g, s = pixel_features(torch.randn(3, 1, 28, 28))
    assert g.shape == (3, 784)
    assert s.shape == (3, 2 * 49)  # avg and max over 4x4 patches of a 28 px image


def test_feature_sources_offline() -> None:
    with pytest.raises(ValueError, match="unknown feature_source"):
        FeatureSource("sift")
    try:
        create_backbone("vgg16", pretrained=True)
        cached = True
    except PretrainedWeightsUnavailable:
        cached = False
    if cached:
        pytest.skip("VGG-16 weights are cached here: the offline fallback cannot be exercised")
    assert FeatureSource("auto", in_channels=1, image_size=28).resolved == "pixels"
    with pytest.raises(PretrainedWeightsUnavailable):
        FeatureSource("pretrained:vgg16")


def test_random_cnn_and_simclr_sources_are_seeded() -> None:
    x = torch.randn(6, 1, 28, 28)
    a = FeatureSource("random_cnn", in_channels=1, image_size=28, seed=5)(x)
    b = FeatureSource("random_cnn", in_channels=1, image_size=28, seed=5)(x)
    torch.testing.assert_close(a, b)
    assert a[0].shape == (6, 256) and a[1].shape == (6, 256)  # head output; avg+max of the 128-channel map
    images = torch.randn(16, 1, 28, 28)
    state = torch.random.get_rng_state()
    src = FeatureSource("simclr", in_channels=1, image_size=28, seed=0, simclr_epochs=2, simclr_batch=8)
    losses = src.fit(images)
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)
    assert torch.equal(torch.random.get_rng_state(), state), "feature sources must not consume the global RNG"
