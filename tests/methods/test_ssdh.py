"""SSDH: UDMSH's machinery with the middle band dropped."""

from __future__ import annotations

import torch

from hashbench.methods.ssdh import SSDH
from hashbench.methods.udmsh import udmsh_loss
from hashbench.testing import SyntheticHashingDataModule


def test_ssdh_defaults_drop_the_middle_band() -> None:
    model = SSDH(n_bits=8)
    assert model.multi_level is False and model.mid_weight == 0.0
    assert model.supervision == "unsupervised"


def test_ssdh_loss_ignores_middle_band_targets() -> None:
    torch.manual_seed(0)
    model = SSDH(n_bits=8, feature_source="pixels", num_pairs=4000)
    dm = SyntheticHashingDataModule(num_classes=4, num_train=48, batch_size=16)
    model.configure_data(num_classes=4, num_train=48, image_shape=(1, 28, 28))
    model.build_pseudo_similarity(dm.train_eval_dataloader(), 48)
    batch = next(iter(dm.train_dataloader()))
    model.eval()  # no dropout: two forward passes give the same codes
    _, t, w = model.batch_targets(batch)
    terms = model.compute_loss(batch)
    u = model(batch.image)
    torch.testing.assert_close(terms["loss"], udmsh_loss(u, t, w, model.lam)["loss"])
    # Whatever the middle band's targets are, SSDH's loss does not see them.
    t_mid = torch.where(w == 0, torch.rand_like(t) * 2 - 1, t)
    torch.testing.assert_close(udmsh_loss(u, t_mid, w, model.lam)["loss"], terms["loss"])
    assert bool((w == 0).any()) and bool((w == 1).any())
