"""DFEH: the contrastive/quantization/balance loss against explicit loops, the enhancement layer, rebuilds."""

from __future__ import annotations

import inspect

import pytest
import torch

from hashbench.methods.base import HashingMethod
from hashbench.methods.dfeh import DFEH, FeatureEnhancement, dfeh_loss
from hashbench.testing import SyntheticHashingDataModule


def _loop_loss(u, labels, margin, alpha, beta):
    b, k = u.shape
    m = 2.0 * k if margin is None else margin
    pairs = []
    for i in range(b):
        for j in range(b):
            if i == j:
                continue
            s = 1.0 if float((labels[i] * labels[j]).sum()) > 0 else 0.0
            d2 = sum((float(u[i, t]) - float(u[j, t])) ** 2 for t in range(k))
            pairs.append(0.5 * s * d2 + 0.5 * (1 - s) * max(m - d2, 0.0))
    lc = sum(pairs) / len(pairs)
    lq = sum(sum(abs(abs(float(u[i, t])) - 1.0) for t in range(k)) for i in range(b)) / b
    lb = sum((sum(float(u[i, t]) for i in range(b)) / b) ** 2 for t in range(k))
    return lc, alpha * lq, beta * lb


@pytest.mark.parametrize("margin", [None, 3.0])
@pytest.mark.parametrize("multi_label", [False, True])
def test_loss_matches_explicit_loop(margin, multi_label) -> None:
    g = torch.Generator().manual_seed(0)
    u = torch.randn(6, 4, generator=g, dtype=torch.float64)
    if multi_label:
        labels = torch.tensor([[1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1], [0, 1, 1], [1, 0, 0]], dtype=torch.float64)
    else:
        labels = torch.nn.functional.one_hot(torch.tensor([0, 0, 1, 2, 1, 2]), 3).double()
    got = dfeh_loss(u, labels, margin, alpha=0.05, beta=0.2)
    lc, lq, lb = _loop_loss(u, labels, margin, 0.05, 0.2)
    assert got["contrastive"].item() == pytest.approx(lc, rel=1e-10)
    assert got["quantization"].item() == pytest.approx(lq, rel=1e-10)
    assert got["balance"].item() == pytest.approx(lb, rel=1e-10)
    assert got["loss"].item() == pytest.approx(lc + lq + lb, rel=1e-10)


def test_contrastive_hinge_inactive_when_dissimilar_codes_are_far() -> None:
    # Two dissimilar images with opposite ±1 codes: ||u_i − u_j||² = 4K > 2K, so the hinge is 0; a similar pair
    # with equal codes contributes 0 too; balanced ±1 codes give zero quantization and balance loss.
    u = torch.tensor([[1.0, -1.0, 1.0], [-1.0, 1.0, -1.0]])
    labels = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    got = dfeh_loss(u, labels)
    assert got["loss"].item() == 0.0
    got = dfeh_loss(u[[0, 0]], labels[[0, 0]])
    assert got["contrastive"].item() == 0.0


def test_gradcheck() -> None:
    u = torch.randn(5, 4, dtype=torch.float64).requires_grad_()
    labels = torch.tensor([[1, 0], [1, 1], [0, 1], [0, 1], [1, 0]], dtype=torch.float64)
    torch.autograd.gradcheck(lambda x: dfeh_loss(x, labels, 5.0)["loss"], (u,))


def test_needs_a_pair() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        dfeh_loss(torch.zeros(1, 4), torch.ones(1, 2))


def test_feature_enhancement_is_channel_scaling() -> None:
    block = FeatureEnhancement(64, reduction=16)
    assert block.fc[0].out_features == 4
    assert FeatureEnhancement(128, reduction=16).fc[0].out_features == 8
    assert FeatureEnhancement(32, reduction=16).fc[0].out_features == 4  # min_hidden
    fmap = torch.randn(2, 64, 5, 5)
    out = block(fmap)
    ratio = out / fmap
    # one weight per (image, channel), in (0, 1)
    assert torch.allclose(ratio, ratio[:, :, :1, :1].expand_as(ratio), atol=1e-5)
    assert ((ratio > 0) & (ratio < 1)).all()


def test_block_sits_between_map_and_head_and_is_trained() -> None:
    model = DFEH(n_bits=12)
    model.configure_data(num_classes=4, num_train=32, image_shape=(1, 28, 28))
    # the backbone was rebuilt for 1 input channel; the block was rebuilt with it and is used in forward
    assert model.backbone.body[0].in_channels == 1
    x = torch.randn(3, 1, 28, 28)
    model.eval()
    fmap = model.backbone.forward_map(x)
    expected = model.hash_layer(model.backbone.forward_head(model.enhance(fmap)))
    assert torch.allclose(model(x), expected)  # identity relaxation: raw outputs
    # it is in the optimiser (head group) and receives gradient
    opt = model.configure_optimizers()
    in_opt = {id(p) for group in opt.param_groups for p in group["params"]}
    assert all(id(p) in in_opt for p in model.enhance.parameters())
    model.train()
    dm = SyntheticHashingDataModule(num_classes=4, num_train=32, batch_size=8)
    model.compute_loss(next(iter(dm.train_dataloader())))["loss"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.enhance.parameters())


def test_tanh_relaxation_and_bad_arguments() -> None:
    model = DFEH(n_bits=8, relaxation="tanh")
    model.configure_data(num_classes=4, num_train=32, image_shape=(1, 28, 28))
    assert model(torch.randn(2, 1, 28, 28) * 100).abs().max() <= 1.0
    with pytest.raises(ValueError, match="relaxation"):
        DFEH(relaxation="sigmoid")
    with pytest.raises(ValueError, match="reduction"):
        DFEH(reduction=0)


def test_paper_training_records_svhn_sampler() -> None:
    assert DFEH.paper_training["data_kwargs"]["svhn"]["class_aware_sampler"] == 20
    assert set(DFEH.paper_training["data_kwargs"]) == {"svhn"}  # no other protocol gets datamodule options


def test_paper_training_is_a_valid_recipe_without_a_network() -> None:
    recipe = dict(DFEH.paper_training)
    assert "backbone" not in recipe and "pretrained" not in recipe  # the table specs set the network
    # popped by the runner before the method is built
    assert recipe.pop("max_epochs") == 100 and recipe.pop("batch_size") == 128
    recipe.pop("data_kwargs")
    assert set(recipe) <= set(inspect.signature(HashingMethod.__init__).parameters)
    model = DFEH(n_bits=12, **recipe)
    model.configure_data(num_classes=4, num_train=32, image_shape=(1, 28, 28))
    conf = model.configure_optimizers()
    opt = conf["optimizer"]
    assert isinstance(opt, torch.optim.SGD)
    assert {group["name"]: group["lr"] for group in opt.param_groups} == {"head": 1e-3, "backbone": 1e-4}
    head = {id(p) for group in opt.param_groups if group["name"] == "head" for p in group["params"]}
    assert all(id(p) in head for p in model.enhance.parameters())  # the enhancement layer trains at the head lr
    assert isinstance(conf["lr_scheduler"]["scheduler"], torch.optim.lr_scheduler.StepLR)
