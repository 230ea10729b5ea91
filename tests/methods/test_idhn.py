"""IDHN: the loss against an explicit per-pair loop, hard/soft pair selection, gradients, the module."""

from __future__ import annotations

import inspect
import math

import torch

from hashbench.methods.base import HashingMethod
from hashbench.methods.idhn import IDHN, idhn_loss, idhn_similarity
from hashbench.testing import SyntheticHashingDataModule


def _loop_idhn(z, labels, alpha, beta, gamma):
    """The formula written out per pair: u = z / (1 + |z|), s = label cosine, hard iff s ∈ {0, 1}."""
    b, k = z.shape
    u = [[float(x) / (1.0 + abs(float(x))) for x in row] for row in z]
    lab = labels.tolist()
    hard_sum, soft_sum, n_soft = 0.0, 0.0, 0
    for i in range(b):
        for j in range(b):
            ni, nj = math.sqrt(sum(x * x for x in lab[i])), math.sqrt(sum(x * x for x in lab[j]))
            s = sum(x * y for x, y in zip(lab[i], lab[j], strict=True)) / (ni * nj) if ni and nj else 0.0
            ip = sum(u[i][t] * u[j][t] for t in range(k))
            if s < 0.01 or s > 0.99:
                theta = beta * ip / k
                hard_sum += math.log1p(math.exp(theta)) - s * theta
            else:
                soft_sum += gamma * k * ((ip / k + 1.0) / 2.0 - s) ** 2
                n_soft += 1
    quant = sum(abs(abs(x) - 1.0) for row in u for x in row) / (b * k)
    return hard_sum / b**2, soft_sum / b**2, alpha * quant, n_soft


def test_idhn_loss_matches_per_pair_loop_multilabel() -> None:
    g = torch.Generator().manual_seed(0)
    z = 2.0 * torch.randn(7, 6, generator=g, dtype=torch.float64)
    labels = (torch.rand(7, 4, generator=g) < 0.5).double()
    labels[0] = torch.tensor([1.0, 1, 0, 0])
    labels[1] = torch.tensor([1.0, 1, 0, 0])  # identical to 0: hard, s = 1
    labels[2] = torch.tensor([1.0, 0, 1, 0])  # partly shared with 0: soft, s = 1/2
    labels[3] = torch.tensor([0.0, 0, 1, 1])  # disjoint from 0: hard, s = 0
    labels[4] = 0.0  # no label: dissimilar to everything
    terms = idhn_loss(z, labels, alpha=0.1, beta=5.0, gamma=0.1)
    hard, soft, quant, n_soft = _loop_idhn(z, labels, 0.1, 5.0, 0.1)
    assert n_soft > 0
    assert math.isclose(float(terms["hard"]), hard, rel_tol=1e-10)
    assert math.isclose(float(terms["soft"]), soft, rel_tol=1e-10)
    assert math.isclose(float(terms["quantization"]), quant, rel_tol=1e-10)
    assert math.isclose(float(terms["loss"]), hard + soft + quant, rel_tol=1e-10)
    s = idhn_similarity(labels)
    assert math.isclose(float(s[0, 1]), 1.0) and math.isclose(float(s[0, 2]), 0.5)
    assert s[0, 3] == 0.0 and (s[4] == 0).all()


def test_idhn_single_label_has_no_soft_pairs_and_is_a_scaled_pairwise_likelihood() -> None:
    g = torch.Generator().manual_seed(1)
    z = torch.randn(6, 8, generator=g, dtype=torch.float64)
    labels = torch.nn.functional.one_hot(torch.tensor([0, 1, 2, 0, 1, 2]), 3).double()
    terms = idhn_loss(z, labels, alpha=0.2, beta=5.0, gamma=0.1)
    hard, soft, quant, n_soft = _loop_idhn(z, labels, 0.2, 5.0, 0.1)
    assert n_soft == 0 and float(terms["soft"]) == 0.0 == soft
    assert math.isclose(float(terms["hard"]), hard, rel_tol=1e-10)
    # = the DPSH/DHN likelihood with Θ = (β/K) uᵀu over all B² pairs
    u = z / (1 + z.abs())
    theta = 5.0 / 8 * u @ u.T
    s = (labels @ labels.T > 0).double()
    assert torch.allclose(terms["hard"], (torch.nn.functional.softplus(theta) - s * theta).mean(), rtol=1e-12)


def test_idhn_loss_finite_for_saturated_outputs_and_gradcheck() -> None:
    z = torch.tensor([[1e8, -1e8, 1e8], [-1e8, 1e8, 1e8], [0.0, 0.0, 0.0]])
    labels = torch.tensor([[1.0, 1, 0], [1, 0, 0], [0, 0, 1]])
    terms = idhn_loss(z, labels)
    assert all(torch.isfinite(v) for v in terms.values())
    g = torch.Generator().manual_seed(2)
    zz = torch.randn(5, 4, generator=g, dtype=torch.float64).requires_grad_()
    ll = torch.tensor([[1, 1, 0], [1, 0, 0], [0, 1, 1], [1, 1, 0], [0, 0, 1]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: idhn_loss(x, ll, alpha=0.3, gamma=0.7)["loss"], (zz,))


def test_idhn_module_trains_on_a_batch() -> None:
    torch.manual_seed(0)
    model = IDHN(n_bits=12)
    model.configure_data(num_classes=4, num_train=32, image_shape=(1, 28, 28), multi_label=True)
    batch = next(
        iter(SyntheticHashingDataModule(num_classes=4, num_train=32, batch_size=8, multi_label=True).train_dataloader())
    )
    model.eval()  # deterministic forward (no dropout), so a second forward can be compared
    terms = model.compute_loss(batch)
    assert set(terms) == {"hard", "soft", "quantization", "loss"} and torch.isfinite(terms["loss"])
    expected = idhn_loss(model.hash_logits(batch.image), batch.labels)
    assert torch.allclose(terms["loss"], expected["loss"], atol=1e-6)
    terms["loss"].backward()
    assert model.hash_layer.net[-1].weight.grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.backbone.parameters())
    codes = model.encode(batch.image)
    assert torch.equal(codes, torch.where(model(batch.image) >= 0, 1, -1).to(torch.int8))


def test_paper_training_is_a_valid_recipe() -> None:
    recipe = dict(IDHN.paper_training)
    assert recipe.pop("max_epochs") == 100 and recipe.pop("batch_size") == 128
    assert set(recipe) <= set(inspect.signature(HashingMethod.__init__).parameters)
    model = IDHN(n_bits=12, **recipe)
    model.configure_data(num_classes=4, num_train=32, image_shape=(1, 28, 28))
    conf = model.configure_optimizers()
    opt = conf["optimizer"]
    assert isinstance(opt, torch.optim.Adam)
    assert {g["name"]: g["lr"] for g in opt.param_groups} == {"head": 1e-3, "backbone": 1e-5}
    assert all(g["weight_decay"] == 0.0 for g in opt.param_groups)
    sched = conf["lr_scheduler"]["scheduler"]
    assert isinstance(sched, torch.optim.lr_scheduler.StepLR) and sched.step_size == 16 and sched.gamma == 0.5
