"""HyP²: the loss against explicit loops, the threshold table, gradients, and the proxies' optimiser group."""

from __future__ import annotations

import inspect
import math

import pytest
import torch

from hashbench.methods.base import HashingMethod
from hashbench.methods.hyp2 import HyP2, hyp2_loss, hyp2_threshold
from hashbench.testing import SyntheticHashingDataModule


def _cos(a, b) -> float:
    a, b = [float(x) for x in a], [float(x) for x in b]
    na, nb = math.sqrt(sum(x * x for x in a)), math.sqrt(sum(x * x for x in b))
    return sum(x * y for x, y in zip(a, b, strict=True)) / (na * nb)


def _loop_hyp2(z, labels, proxies, zeta, beta, pairs="multi_label"):
    """The paper's terms written out: proxy positives / negatives and irrelevant pairs, each a plain mean."""
    b, c = labels.shape
    pos, n_pos, neg, n_neg = 0.0, 0, 0.0, 0
    for i in range(b):
        for k in range(c):
            cos = _cos(z[i], proxies[k])
            if float(labels[i, k]) == 1.0:
                pos += 1.0 - cos
                n_pos += 1
            else:
                neg += max(cos - zeta, 0.0)
                n_neg += 1
    pair, n_pair = 0.0, 0
    for i in range(b):
        for j in range(b):
            if i == j:
                continue
            if pairs == "multi_label" and (sum(labels[i].tolist()) <= 1 or sum(labels[j].tolist()) <= 1):
                continue
            if sum(x * y for x, y in zip(labels[i].tolist(), labels[j].tolist(), strict=True)) == 0:
                pair += max(_cos(z[i], z[j]) - zeta, 0.0)
                n_pair += 1
    return pos / n_pos, neg / n_neg, beta * pair / n_pair if n_pair else 0.0, n_pair


def _data(seed: int, b: int = 7, c: int = 5, k: int = 6, p_label: float = 0.4):
    g = torch.Generator().manual_seed(seed)
    z = 2.0 * torch.randn(b, k, generator=g, dtype=torch.float64)
    proxies = torch.randn(c, k, generator=g, dtype=torch.float64)
    labels = (torch.rand(b, c, generator=g) < p_label).double()
    return z, labels, proxies


@pytest.mark.parametrize("pairs", ["multi_label", "all"])
def test_hyp2_loss_matches_loops_multilabel(pairs: str) -> None:
    z, labels, proxies = _data(0)
    labels[0] = torch.tensor([1.0, 1, 0, 0, 0])  # make sure there are multi-label images with disjoint labels
    labels[1] = torch.tensor([0.0, 0, 1, 1, 0])
    labels[2] = torch.tensor([0.0, 0, 0, 0, 0])  # no label: negatives only
    terms = hyp2_loss(z, labels, proxies, zeta=0.1, beta=0.5, pairs=pairs)
    pos, neg, pair, n_pair = _loop_hyp2(z, labels, proxies, 0.1, 0.5, pairs)
    assert n_pair > 0
    assert math.isclose(float(terms["proxy_pos"]), pos, rel_tol=1e-10)
    assert math.isclose(float(terms["proxy_neg"]), neg, rel_tol=1e-10)
    assert math.isclose(float(terms["neg_pair"]), pair, rel_tol=1e-10)
    assert math.isclose(float(terms["loss"]), pos + neg + pair, rel_tol=1e-10)


def test_hyp2_loss_single_label_is_the_proxy_loss() -> None:
    z, _, proxies = _data(1)
    labels = torch.nn.functional.one_hot(torch.tensor([0, 1, 2, 3, 4, 0, 1]), 5).double()
    terms = hyp2_loss(z, labels, proxies, zeta=-0.2, beta=0.5)
    pos, neg, pair, n_pair = _loop_hyp2(z, labels, proxies, -0.2, 0.5)
    assert n_pair == 0 and float(terms["neg_pair"]) == 0.0 == pair
    assert math.isclose(float(terms["loss"]), pos + neg, rel_tol=1e-10)
    # pairs="all" adds the pairs of different classes
    everything = hyp2_loss(z, labels, proxies, zeta=-0.2, beta=0.5, pairs="all")
    pair_all = _loop_hyp2(z, labels, proxies, -0.2, 0.5, "all")[2]
    assert pair_all > 0 and math.isclose(float(everything["neg_pair"]), pair_all, rel_tol=1e-10)


def test_hyp2_loss_ignores_the_scale_of_z_and_proxies() -> None:
    z, labels, proxies = _data(2)
    a = hyp2_loss(z, labels, proxies, zeta=0.0)["loss"]
    b = hyp2_loss(7.0 * z, labels, 0.3 * proxies, zeta=0.0)["loss"]
    assert torch.allclose(a, b, rtol=1e-12)


def test_hyp2_loss_finite_for_saturated_outputs_and_gradcheck() -> None:
    z = torch.tensor([[1e6, -1e6, 1e6], [0.0, 0.0, 0.0], [-1e6, 1e6, 3.0]], dtype=torch.float64)
    labels = torch.tensor([[1.0, 1, 0], [0, 0, 1], [0, 0, 1]], dtype=torch.float64)
    proxies = torch.tensor([[1e6, 1.0, 0.0], [0.0, -1e6, 2.0], [1.0, 1.0, 1.0]], dtype=torch.float64)
    assert torch.isfinite(hyp2_loss(z, labels, proxies, zeta=0.0)["loss"])
    zz, ll, pp = _data(3, b=5, c=4, k=3)
    ll[0], ll[1] = torch.tensor([1.0, 1, 0, 0]), torch.tensor([0.0, 0, 1, 1])
    zz.requires_grad_()
    pp.requires_grad_()
    assert torch.autograd.gradcheck(lambda x, p: hyp2_loss(x, ll, p, zeta=0.05, beta=0.7)["loss"], (zz, pp))


def test_threshold_table() -> None:
    assert hyp2_threshold(48, 10) == 0.0  # d*(48, 4) = 24
    assert math.isclose(hyp2_threshold(12, 4), -1 / 3)  # d*(12, 2) = 8
    assert math.isclose(hyp2_threshold(16, 21), 0.0)  # k = 5: the [16, 5, 8] Reed-Muller code
    assert math.isclose(hyp2_threshold(24, 80), 1 - 2 * 10 / 24)  # k = 7
    assert math.isclose(hyp2_threshold(7, 16), 1 - 2 * 3 / 7)  # k = 4: the [7, 4, 3] Hamming code
    assert hyp2_threshold(32, 8) == hyp2_threshold(32, 5)  # only ⌈log₂ C⌉ matters
    assert hyp2_threshold(32, 2) == hyp2_threshold(32, 1) == -1.0  # one bit of information: antipodal codes
    for k_bits in (12, 16, 24, 32, 36, 48, 64, 128):
        values = [hyp2_threshold(k_bits, 2**k) for k in range(1, 9)]
        assert values == sorted(values) and -1.0 <= values[0] and values[-1] < 1.0  # more classes, closer codes
    with pytest.raises(ValueError, match="zeta"):
        hyp2_threshold(256, 10)
    with pytest.raises(ValueError, match="zeta"):
        hyp2_threshold(48, 300)


def _model(**kwargs) -> HyP2:
    torch.manual_seed(0)
    model = HyP2(n_bits=12, **kwargs)
    model.configure_data(num_classes=4, num_train=32, image_shape=(1, 28, 28), multi_label=True)
    return model


def test_module_builds_proxies_and_trains_them() -> None:
    model = _model()
    assert model.proxies.shape == (4, 12) and "proxies" in model.state_dict()
    assert math.isclose(model.zeta, hyp2_threshold(12, 4))
    assert torch.equal(model.proxies, _model().proxies)  # seeded
    assert not torch.equal(model.proxies, _model(proxy_seed=1).proxies)
    assert _model(zeta=0.25).zeta == 0.25
    dm = SyntheticHashingDataModule(num_classes=4, num_train=32, batch_size=8, multi_label=True)
    batch = next(iter(dm.train_dataloader()))
    model.eval()  # deterministic forward (no dropout), so a second forward can be compared
    terms = model.compute_loss(batch)
    assert set(terms) == {"proxy_pos", "proxy_neg", "neg_pair", "loss"} and torch.isfinite(terms["loss"])
    expected = hyp2_loss(model.hash_logits(batch.image), batch.labels, model.proxies, model.zeta, 0.5)
    assert torch.allclose(terms["loss"], expected["loss"], atol=1e-6)
    terms["loss"].backward()
    assert model.proxies.grad is not None and model.proxies.grad.abs().sum() > 0
    assert model.hash_layer.net[-1].weight.grad.abs().sum() > 0


def test_module_built_at_construction_for_checkpoints() -> None:
    model = HyP2(n_bits=16, num_classes=10, num_train=20)
    assert model.proxies.shape == (10, 16) and model.zeta == hyp2_threshold(16, 10)
    with pytest.raises(ValueError, match="zeta"):
        HyP2(n_bits=200, num_classes=10, num_train=20)
    HyP2(n_bits=200, zeta=0.0, num_classes=10, num_train=20)  # an explicit ζ needs no table
    with pytest.raises(ValueError, match="pairs"):
        HyP2(pairs="some")


def test_proxies_get_their_own_learning_rate() -> None:
    model = _model(lr=1e-3, proxy_lr=0.5)
    groups = {g["name"]: g for g in model.configure_optimizers().param_groups}
    assert set(groups) == {"head", "backbone", "proxies"}
    assert groups["proxies"]["lr"] == 0.5 and groups["head"]["lr"] == 1e-3
    assert len(groups["proxies"]["params"]) == 1 and groups["proxies"]["params"][0] is model.proxies
    everything = [p for g in groups.values() for p in g["params"]]
    assert len(everything) == len({id(p) for p in everything}) == len(list(model.parameters()))
    default = {g["name"]: g["lr"] for g in _model(lr=2e-3).configure_optimizers().param_groups}
    assert default["proxies"] == 2e-3  # proxy_lr=None: the head's lr


def test_paper_training_is_a_valid_recipe() -> None:
    recipe = dict(HyP2.paper_training)
    assert recipe.pop("max_epochs") == 100 and recipe.pop("batch_size") == 100
    allowed = set(inspect.signature(HashingMethod.__init__).parameters) | set(
        inspect.signature(HyP2.__init__).parameters
    )
    assert set(recipe) <= allowed
    model = _model(**recipe)
    conf = model.configure_optimizers()
    opt = conf["optimizer"]
    assert isinstance(opt, torch.optim.SGD)
    assert {g["name"]: g["lr"] for g in opt.param_groups} == {"head": 0.01, "backbone": 0.01, "proxies": 0.02}
    assert all(g["weight_decay"] == 5e-4 and g["momentum"] == 0.9 for g in opt.param_groups)
    assert isinstance(conf["lr_scheduler"]["scheduler"], torch.optim.lr_scheduler.StepLR)
