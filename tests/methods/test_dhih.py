"""DHIH: the large-margin softmax against explicit loops (CosFace and L-Softmax forms), multi-label, gradients."""

from __future__ import annotations

import inspect
import math

import pytest
import torch

from hashbench.methods.base import HashingMethod
from hashbench.methods.dhih import DHIH, dhih_loss, lsoftmax_psi
from hashbench.testing import SyntheticHashingDataModule


def _psi_loop(cos: float, m: int) -> float:
    theta = math.acos(max(-1.0, min(1.0, cos)))
    k = min(int(theta * m / math.pi), m - 1)
    return (-1) ** k * math.cos(m * theta) - 2 * k


def _loop_loss(h, labels, w, scale, margin, margin_type, m_l, lam, exclude_other_positives=False):
    b, k = h.shape
    c = w.shape[0]

    def unit(v):
        n = math.sqrt(sum(x * x for x in v))
        return [x / n for x in v]

    hs = [unit(h[i].tolist()) for i in range(b)]
    ws = [unit(w[j].tolist()) for j in range(c)]
    per_image = []
    for i in range(b):
        ys = [y for y in range(c) if labels[i, y] > 0]
        if not ys:
            continue
        ces = []
        for y in ys:
            cos = [sum(a * bb for a, bb in zip(hs[i], ws[j], strict=True)) for j in range(c)]
            tgt = cos[y] - margin if margin_type == "cosface" else _psi_loop(cos[y], m_l)
            # the denominator: y itself and every other class, or only the image's negatives besides y
            classes = [j for j in range(c) if j == y or not (exclude_other_positives and j in ys)]
            denominator = sum(math.exp(scale * (tgt if j == y else cos[j])) for j in classes)
            ces.append(-scale * tgt + math.log(denominator))
        per_image.append(sum(ces) / len(ces))
    ms = sum(per_image) / len(per_image)
    q = sum(sum((x - (1.0 if x >= 0 else -1.0)) ** 2 for x in h[i].tolist()) / k for i in range(b)) / b
    return ms, lam * q


LABELS_SINGLE = torch.nn.functional.one_hot(torch.tensor([0, 2, 1, 3, 2]), 4).double()
LABELS_MULTI = torch.tensor(
    [[1, 0, 0, 1], [0, 1, 1, 0], [0, 0, 0, 1], [1, 1, 1, 0], [0, 0, 0, 0]], dtype=torch.float64
)  # the last image has no label: skipped


@pytest.mark.parametrize("exclude", [False, True], ids=["others-in", "others-out"])
@pytest.mark.parametrize("labels", [LABELS_SINGLE, LABELS_MULTI], ids=["single", "multi"])
@pytest.mark.parametrize(("margin_type", "m_l"), [("cosface", 2), ("lsoftmax", 1), ("lsoftmax", 2), ("lsoftmax", 4)])
def test_loss_matches_explicit_loop(labels, margin_type, m_l, exclude) -> None:
    g = torch.Generator().manual_seed(0)
    h = torch.tanh(torch.randn(5, 6, generator=g, dtype=torch.float64))
    w = torch.randn(4, 6, generator=g, dtype=torch.float64)
    got = dhih_loss(
        h,
        labels,
        w,
        scale=8.0,
        margin=0.2,
        margin_type=margin_type,
        lsoftmax_m=m_l,
        lam=0.1,
        exclude_other_positives=exclude,
    )
    ms, q = _loop_loss(h, labels, w, 8.0, 0.2, margin_type, m_l, 0.1, exclude_other_positives=exclude)
    assert got["margin_softmax"].item() == pytest.approx(ms, rel=1e-10)
    assert got["quantization"].item() == pytest.approx(q, rel=1e-10)
    assert got["loss"].item() == pytest.approx(ms + q, rel=1e-10)


def test_zero_margin_cosface_is_normalised_softmax_cross_entropy() -> None:
    h = torch.tanh(torch.randn(5, 6, dtype=torch.float64))
    w = torch.randn(4, 6, dtype=torch.float64)
    got = dhih_loss(h, LABELS_SINGLE, w, scale=3.0, margin=0.0, lam=0.0)
    logits = 3.0 * torch.nn.functional.normalize(h, dim=1) @ torch.nn.functional.normalize(w, dim=1).T
    ref = torch.nn.functional.cross_entropy(logits, LABELS_SINGLE.argmax(1))
    assert got["loss"].item() == pytest.approx(ref.item(), rel=1e-10)
    # L-Softmax with m' = 1 is the same thing
    assert dhih_loss(h, LABELS_SINGLE, w, 3.0, margin_type="lsoftmax", lsoftmax_m=1, lam=0.0)["loss"].item() == (
        pytest.approx(ref.item(), rel=1e-10)
    )


def test_margin_makes_the_loss_larger() -> None:
    h = torch.tanh(torch.randn(5, 6, dtype=torch.float64))
    w = torch.randn(4, 6, dtype=torch.float64)
    base = dhih_loss(h, LABELS_SINGLE, w, margin=0.0)["margin_softmax"]
    assert dhih_loss(h, LABELS_SINGLE, w, margin=0.2)["margin_softmax"] > base
    assert dhih_loss(h, LABELS_SINGLE, w, margin_type="lsoftmax", lsoftmax_m=3)["margin_softmax"] > base


@pytest.mark.parametrize("m", [1, 2, 3, 4])
def test_lsoftmax_psi_matches_definition_and_is_monotone(m) -> None:
    cos = torch.linspace(-1, 1, 401, dtype=torch.float64)
    psi = lsoftmax_psi(cos, m)
    ref = torch.tensor([_psi_loop(c, m) for c in cos.tolist()], dtype=torch.float64)
    assert torch.allclose(psi, ref, atol=1e-9)
    assert (psi.diff() >= -1e-12).all()  # decreasing in θ = increasing in cos θ
    assert psi[0].item() == pytest.approx(1.0 - 2.0 * m)  # θ = π
    assert (psi <= cos + 1e-12).all()  # a margin: never above cos θ


def test_lsoftmax_rejects_non_integer() -> None:
    with pytest.raises(ValueError, match="positive integer"):
        lsoftmax_psi(torch.zeros(3), 0)
    with pytest.raises(ValueError, match="margin_type"):
        dhih_loss(torch.zeros(2, 3), torch.ones(2, 2), torch.ones(2, 3), margin_type="arcface")
    with pytest.raises(ValueError, match="weight"):
        dhih_loss(torch.zeros(2, 3), torch.ones(2, 2), torch.ones(3, 3))
    with pytest.raises(ValueError, match="margin_type"):
        DHIH(margin_type="arc")


@pytest.mark.parametrize(
    ("margin_type", "labels", "exclude"),
    [("cosface", LABELS_MULTI, False), ("lsoftmax", LABELS_SINGLE, False), ("cosface", LABELS_MULTI, True)],
)
def test_gradcheck(margin_type, labels, exclude) -> None:
    g = torch.Generator().manual_seed(3)
    h = torch.tanh(torch.randn(5, 6, generator=g, dtype=torch.float64)).requires_grad_()
    w = torch.randn(4, 6, generator=g, dtype=torch.float64).requires_grad_()
    torch.autograd.gradcheck(
        lambda a, b: dhih_loss(a, labels, b, margin_type=margin_type, lsoftmax_m=3, exclude_other_positives=exclude)[
            "loss"
        ],
        (h, w),
    )


def _loss_and_grads(h, labels, w, **kwargs):
    h, w = h.clone().requires_grad_(), w.clone().requires_grad_()
    out = dhih_loss(h, labels, w, **kwargs)
    out["loss"].backward()
    return out, h.grad, w.grad


@pytest.mark.parametrize("margin_type", ["cosface", "lsoftmax"])
def test_exclude_other_positives_is_a_no_op_on_single_label_data(margin_type) -> None:
    g = torch.Generator().manual_seed(5)
    h = torch.tanh(torch.randn(5, 6, generator=g))
    w = torch.randn(4, 6, generator=g)
    labels = LABELS_SINGLE.float()
    base, gh, gw = _loss_and_grads(h, labels, w, margin_type=margin_type, lsoftmax_m=3)
    alt, gh2, gw2 = _loss_and_grads(h, labels, w, margin_type=margin_type, lsoftmax_m=3, exclude_other_positives=True)
    for key in base:
        assert torch.equal(base[key], alt[key]), key  # the same numbers, bit for bit
    assert torch.equal(gh, gh2) and torch.equal(gw, gw2)


def test_exclude_other_positives_changes_overlapping_multi_label_loss() -> None:
    g = torch.Generator().manual_seed(6)
    h = torch.tanh(torch.randn(5, 6, generator=g, dtype=torch.float64))
    w = torch.randn(4, 6, generator=g, dtype=torch.float64)
    base = dhih_loss(h, LABELS_MULTI, w)
    alt = dhih_loss(h, LABELS_MULTI, w, exclude_other_positives=True)
    # fewer terms in every denominator of an image with two or more labels: a strictly smaller cross-entropy
    assert alt["margin_softmax"].item() < base["margin_softmax"].item() - 1e-6
    assert alt["quantization"].item() == base["quantization"].item()
    # images with at most one label are unaffected: only the rows with overlapping labels change the value
    one = LABELS_MULTI.sum(dim=1) <= 1
    assert torch.equal(
        dhih_loss(h[one], LABELS_MULTI[one], w)["loss"],
        dhih_loss(h[one], LABELS_MULTI[one], w, exclude_other_positives=True)["loss"],
    )


def test_model_passes_exclude_other_positives_to_the_loss() -> None:
    assert DHIH().exclude_other_positives is False  # default: the other labels stay in the denominator
    dm = SyntheticHashingDataModule(num_classes=4, num_train=32, batch_size=8, multi_label=True)
    batch = next(iter(dm.train_dataloader()))
    for flag in (False, True):
        torch.manual_seed(0)
        model = DHIH(n_bits=12, exclude_other_positives=flag)
        model.configure_data(num_classes=4, num_train=32, image_shape=(1, 28, 28), multi_label=True)
        assert model.hparams.exclude_other_positives is flag
        model.eval()  # deterministic forward (BatchNorm running statistics)
        got = model.compute_loss(batch)["loss"]
        ref = dhih_loss(model(batch.image), batch.labels, model.class_weight, exclude_other_positives=flag)["loss"]
        assert torch.equal(got, ref)


def test_paper_training_is_a_valid_recipe_without_a_network() -> None:
    recipe = dict(DHIH.paper_training)
    assert "backbone" not in recipe and "pretrained" not in recipe  # the table specs set the network
    assert recipe.pop("max_epochs") == 100 and recipe.pop("batch_size") == 128  # popped by the runner
    accepted = set(inspect.signature(HashingMethod.__init__).parameters)
    assert set(recipe) <= accepted
    model = DHIH(n_bits=12, **recipe)
    model.configure_data(num_classes=4, num_train=32, image_shape=(1, 28, 28))
    conf = model.configure_optimizers()
    opt = conf["optimizer"]
    assert isinstance(opt, torch.optim.SGD)
    lrs = {group["name"]: group["lr"] for group in opt.param_groups}
    assert lrs == {"head": 0.01, "backbone": 0.001}
    assert any(
        p is model.class_weight for group in opt.param_groups if group["name"] == "head" for p in group["params"]
    )
    assert isinstance(conf["lr_scheduler"]["scheduler"], torch.optim.lr_scheduler.StepLR)


def test_classifier_is_bias_free_trained_and_sized_from_data() -> None:
    model = DHIH(n_bits=12)
    model.configure_data(num_classes=4, num_train=1001, image_shape=(1, 28, 28))
    assert model.class_weight.shape == (4, 12)
    opt = model.configure_optimizers()
    assert any(p is model.class_weight for group in opt.param_groups for p in group["params"])
    model.train()
    dm = SyntheticHashingDataModule(num_classes=4, num_train=32, batch_size=8, multi_label=True)
    model.compute_loss(next(iter(dm.train_dataloader())))["loss"].backward()
    assert model.class_weight.grad is not None and model.class_weight.grad.abs().sum() > 0
    # no state grows with the training set: nothing sized by num_train
    assert len(model._banks) == 0
    assert not any(1001 in t.shape for t in model.state_dict().values())
