"""OrthoHash: the loss against a per-item loop (OrthoCos and OrthoArc, single- and multi-label), the targets, and
the module wiring."""

from __future__ import annotations

import math

import pytest
import torch

from hashbench.methods.orthohash import OrthoHash, orthohash_codebook, orthohash_loss
from hashbench.testing import SyntheticHashingDataModule


def _loop_orthohash(v, labels, codebook, scale, margin, variant):
    """−1/B Σ_i Σ_c (y_ic/Σ_j y_ij) log softmax_c, written item by item from the paper's formula."""
    b, c_count = labels.shape
    total = 0.0
    for i in range(b):
        vi = [float(x) for x in v[i]]
        norm_v = math.sqrt(sum(x * x for x in vi))
        logits = []
        for c in range(c_count):
            oc = [float(x) for x in codebook[c]]
            cos = sum(a * o for a, o in zip(vi, oc, strict=True)) / (norm_v * math.sqrt(sum(o * o for o in oc)))
            y = float(labels[i, c])
            if variant == "cos":
                logits.append(scale * (cos - margin * y))
            else:
                logits.append(scale * math.cos(math.acos(cos) + margin * y))
        top = max(logits)
        log_z = top + math.log(sum(math.exp(z - top) for z in logits))
        n_pos = sum(float(labels[i, c]) for c in range(c_count))
        if n_pos > 0:
            total -= sum(float(labels[i, c]) / n_pos * (logits[c] - log_z) for c in range(c_count))
    return total / b


def _inputs(multi_label: bool, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    v = torch.randn(6, 8, generator=g, dtype=torch.float64)
    codebook = torch.where(torch.rand(5, 8, generator=g) < 0.5, -1.0, 1.0).double()
    if multi_label:
        labels = (torch.rand(6, 5, generator=g) < 0.4).double()
        labels[0] = 0.0  # an image without labels
        labels[1, :3] = 1.0
    else:
        labels = torch.nn.functional.one_hot(torch.tensor([0, 1, 2, 3, 4, 2]), 5).double()
    return v, labels, codebook


@pytest.mark.parametrize("variant", ["cos", "arc"])
@pytest.mark.parametrize("multi_label", [False, True])
def test_orthohash_loss_matches_per_item_loop(variant: str, multi_label: bool) -> None:
    v, labels, codebook = _inputs(multi_label)
    terms = orthohash_loss(v, labels, codebook, scale=3.0, margin=0.3, variant=variant)
    want = _loop_orthohash(v, labels, codebook, 3.0, 0.3, variant)
    assert math.isclose(float(terms["loss"]), want, rel_tol=1e-10)
    assert torch.equal(terms["loss"], terms["cross_entropy"])


def test_default_scale_is_sqrt_k_and_single_label_is_cross_entropy() -> None:
    v, labels, codebook = _inputs(False)
    terms = orthohash_loss(v, labels, codebook)  # s = √8, m = 0.2, OrthoCos
    assert math.isclose(float(terms["loss"]), _loop_orthohash(v, labels, codebook, math.sqrt(8), 0.2, "cos"))
    cos = torch.nn.functional.normalize(v) @ torch.nn.functional.normalize(codebook).T
    logits = math.sqrt(8) * (cos - 0.2 * labels)
    ce = torch.nn.functional.cross_entropy(logits, labels.argmax(1))
    torch.testing.assert_close(terms["loss"], ce)


def test_margin_makes_the_loss_larger_and_arc_differs_from_cos() -> None:
    v, labels, codebook = _inputs(True)
    no_margin = orthohash_loss(v, labels, codebook, scale=4.0, margin=0.0)["loss"]
    assert orthohash_loss(v, labels, codebook, scale=4.0, margin=0.0, variant="arc")["loss"].item() == pytest.approx(
        no_margin.item(), rel=1e-9
    )
    for variant in ("cos", "arc"):
        assert orthohash_loss(v, labels, codebook, scale=4.0, margin=0.3, variant=variant)["loss"] > no_margin
    cos_l = orthohash_loss(v, labels, codebook, scale=4.0, margin=0.3, variant="cos")["loss"]
    arc_l = orthohash_loss(v, labels, codebook, scale=4.0, margin=0.3, variant="arc")["loss"]
    assert not torch.isclose(cos_l, arc_l)


@pytest.mark.parametrize("variant", ["cos", "arc"])
def test_orthohash_loss_finite_when_saturated_and_gradcheck(variant: str) -> None:
    codebook = torch.tensor([[1.0, -1.0, 1.0, -1.0], [1.0, 1.0, -1.0, -1.0], [-1.0, 1.0, 1.0, -1.0]])
    # huge outputs, and outputs exactly on a target (cos θ = ±1, where arccos has an infinite slope)
    v = torch.cat([1e6 * codebook[:1], -3.0 * codebook[1:2], torch.tensor([[1e-30, 0.0, 0.0, 0.0]])])
    v.requires_grad_()
    labels = torch.eye(3)
    terms = orthohash_loss(v, labels, codebook, variant=variant)
    terms["loss"].backward()
    assert torch.isfinite(terms["loss"]) and torch.isfinite(v.grad).all()
    vv, ll, cb = _inputs(True, seed=3)
    vv.requires_grad_()
    assert torch.autograd.gradcheck(lambda x: orthohash_loss(x, ll, cb, 2.0, 0.3, variant)["loss"], (vv,))


def test_codebooks_are_binary_seeded_and_hadamard_when_possible() -> None:
    b = orthohash_codebook(100, 48, "bernoulli", seed=5)
    assert b.shape == (100, 48) and set(b.unique().tolist()) == {-1.0, 1.0}
    assert torch.equal(b, orthohash_codebook(100, 48, "bernoulli", seed=5))
    assert not torch.equal(b, orthohash_codebook(100, 48, "bernoulli", seed=6))
    assert abs(float(b.mean())) < 0.05  # fair bits
    h = orthohash_codebook(10, 16, "hadamard")
    gram = h @ h.T
    off = ~torch.eye(10, dtype=torch.bool)
    assert set(gram[off].unique().tolist()) <= {0.0, -16.0}  # orthogonal rows (or a row and its negation)
    # more classes than 2K or K not a power of two: the Bernoulli draw
    assert torch.equal(orthohash_codebook(40, 16, "hadamard", seed=2), orthohash_codebook(40, 16, seed=2))
    assert torch.equal(orthohash_codebook(10, 48, "hadamard", seed=2), orthohash_codebook(10, 48, seed=2))
    with pytest.raises(ValueError):
        orthohash_codebook(10, 16, "maxhd")


@pytest.mark.parametrize("multi_label", [False, True])
@pytest.mark.parametrize("variant", ["cos", "arc"])
def test_orthohash_module_builds_targets_and_trains(multi_label: bool, variant: str) -> None:
    torch.manual_seed(0)
    model = OrthoHash(n_bits=16, variant=variant)
    model.configure_data(num_classes=4, num_train=32, image_shape=(1, 28, 28), multi_label=multi_label)
    assert torch.equal(model.codebook, orthohash_codebook(4, 16, "bernoulli", 0))
    assert "codebook" in model.state_dict()
    assert isinstance(model.hash_layer.net[-1], torch.nn.BatchNorm1d)  # the paper's code-balancing BN
    dm = SyntheticHashingDataModule(num_classes=4, num_train=32, batch_size=8, multi_label=multi_label)
    batch = next(iter(dm.train_dataloader()))
    model.eval()  # deterministic forward (no dropout, BatchNorm running statistics) to compare with the function
    expected = orthohash_loss(model.hash_logits(batch.image), batch.labels, model.codebook, variant=variant)
    torch.testing.assert_close(model.compute_loss(batch)["loss"], expected["loss"])
    model.train()
    terms = model.compute_loss(batch)
    assert torch.isfinite(terms["loss"])
    terms["loss"].backward()
    assert model.hash_layer.net[0].weight.grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.backbone.parameters())
    # codes are the sign of the BatchNorm output (no tanh)
    model.eval()
    v = model.hash_logits(batch.image)
    assert torch.equal(model.encode(batch.image), torch.where(v >= 0, 1, -1).to(torch.int8))


def test_orthohash_rejects_unknown_options() -> None:
    with pytest.raises(ValueError):
        OrthoHash(variant="sphere")
    with pytest.raises(ValueError):
        OrthoHash(codebook="random")
