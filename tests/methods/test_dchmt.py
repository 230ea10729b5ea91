"""DCHMT: the similarity-preserving loss against an explicit per-pair loop, the selecting head, and a short fit."""

from __future__ import annotations

import math

import pytest
import torch

from hashbench.data.synthetic_text import FashionMNISTTextDataModule
from hashbench.methods.dchmt import DCHMT, SelectingHead, dchmt_loss, selection_probabilities
from hashbench.testing import quiet_trainer


def _dist(a, b) -> float:
    return math.sqrt(sum((float(x) - float(y)) ** 2 for x, y in zip(a, b, strict=True)))


def _cos_dist(a, b) -> float:
    dot = sum(float(x) * float(y) for x, y in zip(a, b, strict=True))
    return 1 - dot / (math.sqrt(sum(float(x) ** 2 for x in a)) * math.sqrt(sum(float(y) ** 2 for y in b)))


def pair_loop(a, b, labels, vartheta, similarity, loss_type, threshold) -> tuple[float, float]:
    """One (positive, negative) term pair, written per pair from the formula (released code's similarity_loss)."""
    n = a.shape[0]
    margin = math.sqrt(a.shape[1] * vartheta)
    pos = neg = 0.0
    power = 2 if loss_type == "l2" else 1
    for i in range(n):
        for j in range(n):
            similar = float(labels[i] @ labels[j]) > 0
            if similarity == "euclidean":
                d = _dist(a[i], b[j])
                p_term, n_term = d, max(margin - d, 0.0)
            else:
                d = _cos_dist(a[i], b[j])
                p_term, n_term = max(d - threshold, 0.0), max(1 - d, 0.0)
            if similar:
                pos += p_term**power / n**2
            else:
                neg += n_term**power / n**2
    return pos, neg


def _batch(seed: int, n: int = 6, k: int = 4):
    g = torch.Generator().manual_seed(seed)
    u_i = torch.randn(n, k, generator=g, dtype=torch.float64).tanh()
    u_t = torch.randn(n, k, generator=g, dtype=torch.float64).tanh()
    labels = (torch.rand(n, 3, generator=g) < 0.4).double()
    labels[labels.sum(1) == 0, 0] = 1
    p_i = selection_probabilities(u_i).flatten(1)
    p_t = selection_probabilities(u_t).flatten(1)
    return p_i, p_t, labels


@pytest.mark.parametrize("similarity,loss_type", [("euclidean", "l2"), ("euclidean", "l1"), ("cosine", "l2")])
@pytest.mark.parametrize("seed", range(2))
def test_loss_matches_explicit_per_pair_loop(seed: int, similarity: str, loss_type: str) -> None:
    p_i, p_t, labels = _batch(seed)
    kw = {"vartheta": 0.6, "similarity": similarity, "loss_type": loss_type, "threshold": 0.1}
    terms = dchmt_loss(p_i, p_t, labels, **kw)
    expected = {}
    for name, (a, b) in {"cross": (p_i, p_t), "image": (p_i, p_i), "text": (p_t, p_t)}.items():
        expected[f"{name}_positive"], expected[f"{name}_negative"] = pair_loop(a, b, labels, *kw.values())
    for key, value in expected.items():
        assert float(terms[key]) == pytest.approx(value, rel=1e-9, abs=1e-12), key
    assert float(terms["loss"]) == pytest.approx(sum(expected.values()), rel=1e-9)


def test_margin_is_the_distance_at_which_a_fraction_vartheta_of_bits_differ() -> None:
    k = 8
    u = torch.ones(2, k, dtype=torch.float64)
    u[1, : k // 2] = -1  # half of the bits flipped, fully saturated
    p = selection_probabilities(u)
    labels = torch.eye(2, dtype=torch.float64)  # a dissimilar pair
    at_margin = dchmt_loss(p, p, labels, vartheta=0.5)
    assert float(at_margin["image_negative"]) == pytest.approx(0.0, abs=1e-12)
    beyond = dchmt_loss(p, p, labels, vartheta=0.75)  # m² = 12 > D² = 8: still pushed apart
    expected = 2 * (math.sqrt(12) - math.sqrt(8)) ** 2 / 4  # two ordered dissimilar pairs of four entries
    assert float(beyond["image_negative"]) == pytest.approx(expected, rel=1e-12)
    assert float(beyond["image_positive"]) == 0.0  # only the self pairs are similar, at distance 0


def test_loss_gradient_is_finite_on_identical_rows() -> None:
    u = torch.zeros(3, 4, dtype=torch.float64, requires_grad=True)  # all distances 0: cdist's kink
    labels = torch.eye(3, dtype=torch.float64)
    p = selection_probabilities(u)
    dchmt_loss(p, p, labels)["loss"].backward()
    assert torch.isfinite(u.grad).all()


def test_selecting_head_is_k_softmaxes() -> None:
    torch.manual_seed(0)
    head = SelectingHead(in_dim=10, n_bits=5, hidden=16)
    x = torch.randn(3, 10, dtype=torch.float64)
    head = head.double()
    z = head.pair_logits(x)
    assert z.shape == (3, 5, 2)
    softmax = torch.softmax(z, dim=-1)
    u = torch.tanh(head(x))
    assert torch.allclose(selection_probabilities(u), softmax, atol=1e-12)
    # the released code's per-bit Linear(hidden, 2) initialisation: Kaiming-uniform, fan_out = 2
    assert float(head.select.weight.abs().max()) <= math.sqrt(3.0)
    assert float(head.select.bias.abs().max()) == 0.0


def _datamodule(**kw) -> FashionMNISTTextDataModule:
    opts = {"image_source": "synthetic", "batch_size": 32, "synthetic_sizes": (4, 16, 8), "seed": 0} | kw
    dm = FashionMNISTTextDataModule(**opts)
    dm.setup()
    return dm


def test_codes_are_the_selected_entries() -> None:
    dm = _datamodule()
    torch.manual_seed(0)
    model = DCHMT(n_bits=12)
    model.configure_data(dm.facts)
    model.eval()
    batch = next(iter(dm.train_dataloader()))
    assert isinstance(model.hash_layer, SelectingHead) and isinstance(model.text_hash_layer, SelectingHead)
    for codes, head, features in (
        (model.encode_image(batch.image), model.hash_layer, model.backbone(batch.image)),
        (model.encode_text(batch.text), model.text_hash_layer, model.text_encoder(batch.text)),
    ):
        z = head.pair_logits(features)
        assert torch.equal(codes, torch.where(z[..., 1] >= z[..., 0], 1, -1).to(torch.int8))


def test_compute_loss_reads_the_softmax_pairs() -> None:
    dm = _datamodule()
    torch.manual_seed(0)
    model = DCHMT(n_bits=12, vartheta=0.75)
    model.configure_data(dm.facts)
    model.eval()
    batch = next(iter(dm.train_dataloader()))
    p_i = torch.softmax(model.hash_layer.pair_logits(model.backbone(batch.image)), -1)
    p_t = torch.softmax(model.text_hash_layer.pair_logits(model.text_encoder(batch.text)), -1)
    expected = dchmt_loss(p_i, p_t, batch.labels, vartheta=0.75)
    assert float(model.compute_loss(batch)["loss"]) == pytest.approx(float(expected["loss"]), rel=1e-5)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="similarity"):
        DCHMT(similarity="hamming")
    with pytest.raises(ValueError, match="loss_type"):
        DCHMT(loss_type="huber")
    with pytest.raises(ValueError, match="vartheta"):
        DCHMT(vartheta=0.0)
    with pytest.raises(ValueError, match="similarity"):
        dchmt_loss(torch.zeros(2, 4), torch.zeros(2, 4), torch.eye(2), similarity="dot")


def test_training_lowers_the_loss_and_beats_chance(tmp_path) -> None:
    torch.manual_seed(0)
    dm = FashionMNISTTextDataModule(image_source="synthetic", batch_size=48, synthetic_sizes=(6, 24, 12), seed=0)
    model = DCHMT(n_bits=16)
    dm.setup()
    model.configure_data(dm.facts)
    batch = next(iter(dm.train_dataloader()))
    model.eval()
    before = float(model.compute_loss(batch)["loss"])
    trainer = quiet_trainer(tmp_path, max_epochs=8)
    trainer.fit(model, datamodule=dm)
    model.eval()
    assert float(model.compute_loss(batch)["loss"]) < before
    trainer.test(model, datamodule=dm, verbose=False)
    # 10 balanced classes: random codes give a mean AP of about 0.1 in both directions
    assert float(model.test_report["mAP@all I→T"]) > 0.2
    assert float(model.test_report["mAP@all T→I"]) > 0.2
