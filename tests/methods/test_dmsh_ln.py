"""DMsH-LN: the multi-similarity loss against explicit loops, the three-term loss, and the learning label network."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
import torch.nn.functional as F

from hashbench.data.batch import CrossModalBatch
from hashbench.data.synthetic_text import FashionMNISTTextDataModule
from hashbench.methods.dmsh_ln import DMsHLN, LabelNetwork, dmsh_ln_loss, multi_similarity_loss, similarity_matrix
from hashbench.testing import quiet_trainer

ALPHA, BETA, LAM, EPS = 2.0, 40.0, 0.5, 0.1


def ms_loop(sim: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, a=ALPHA, b=BETA, lam=LAM, eps=EPS) -> float:
    """The spec's formula, one anchor at a time, with Python floats: L = Σ_i ℓ_i / B."""
    total = 0.0
    rows, cols = sim.shape
    for i in range(rows):
        p = [float(sim[i, j]) for j in range(cols) if pos[i, j]]
        n = [float(sim[i, k]) for k in range(cols) if neg[i, k]]
        min_p = min(p) if p else math.inf
        max_n = max(n) if n else -math.inf
        p_kept = [s for s in p if s - eps < max_n]
        n_kept = [s for s in n if s + eps > min_p]
        total += math.log(1 + sum(math.exp(-a * (s - lam)) for s in p_kept)) / a
        total += math.log(1 + sum(math.exp(b * (s - lam)) for s in n_kept)) / b
    return total / rows


def ms_reference_general(sim: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> float:
    """A general multi-similarity implementation written from Wang et al. (CVPR 2019), Sec. 3-4.

    Per anchor: pair mining (Eq. 9-10, margin ε) on the raw positive/negative lists; anchors with an empty raw or
    mined set are skipped; the weighting (Eq. 11) of the kept pairs. Reduction as pytorch-metric-learning's
    MultiSimilarityLoss (AvgNonZeroReducer): the mean over anchors with a non-zero loss.
    """
    losses = []
    for i in range(sim.shape[0]):
        pos_pairs = sim[i][pos[i]]
        neg_pairs = sim[i][neg[i]]
        if pos_pairs.numel() == 0 or neg_pairs.numel() == 0:
            continue
        neg_mined = neg_pairs[neg_pairs + EPS > pos_pairs.min()]
        pos_mined = pos_pairs[pos_pairs - EPS < neg_pairs.max()]
        if neg_mined.numel() == 0 or pos_mined.numel() == 0:
            continue
        pos_loss = torch.log1p(torch.exp(-ALPHA * (pos_mined - LAM)).sum()) / ALPHA
        neg_loss = torch.log1p(torch.exp(BETA * (neg_mined - LAM)).sum()) / BETA
        losses.append(float(pos_loss + neg_loss))
    nonzero = [v for v in losses if v > 0]
    return sum(nonzero) / len(nonzero) if nonzero else 0.0


def hand_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    # Anchor 0: positives 0.9, 0.3; negatives 0.35, -0.2. Hardest positive 0.3 keeps negatives above 0.2 (0.35);
    #   hardest negative 0.35 keeps positives below 0.45 (0.3).
    # Anchor 1: positive 0.9 far above negatives 0.1, 0.0: nothing is mined, ℓ = 0.
    # Anchor 2: no negatives at all: ℓ = 0.
    sim = torch.tensor(
        [
            [1.0, 0.9, 0.3, 0.35, -0.2],
            [0.9, 1.0, 0.2, 0.1, 0.0],
            [0.5, 0.2, 1.0, 0.3, 0.3],
        ],
        dtype=torch.float64,
    )
    pos = torch.tensor([[0, 1, 1, 0, 0], [1, 0, 0, 0, 0], [1, 1, 0, 0, 0]], dtype=torch.bool)
    neg = torch.tensor([[0, 0, 0, 1, 1], [0, 0, 0, 1, 1], [0, 0, 0, 0, 0]], dtype=torch.bool)
    return sim, pos, neg


def test_ms_loss_hand_checked_batch() -> None:
    sim, pos, neg = hand_batch()
    expected = (0.5 * math.log(1 + math.exp(0.4)) + math.log(1 + math.exp(-6.0)) / 40) / 3
    got = float(multi_similarity_loss(sim, pos, neg, ALPHA, BETA, LAM, EPS))
    assert got == pytest.approx(expected, rel=1e-12)
    assert ms_loop(sim, pos, neg) == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_ms_loss_matches_explicit_loop_on_random_batches(seed: int) -> None:
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(12, 6, generator=g, dtype=torch.float64)
    labels = torch.nn.functional.one_hot(torch.randint(0, 3, (12,), generator=g), 3).double()
    sim = similarity_matrix(emb, emb)
    same = labels @ labels.T > 0
    eye = torch.eye(12, dtype=torch.bool)
    got = float(multi_similarity_loss(sim, same & ~eye, ~same))
    assert got == pytest.approx(ms_loop(sim, same & ~eye, ~same), rel=1e-10)


@pytest.mark.parametrize("seed", range(4))
def test_ms_loss_agrees_with_general_reference_up_to_the_reduction(seed: int) -> None:
    # Same mining and per-anchor loss; hashbench (spec, released code) divides by B, the general reference
    # (pytorch-metric-learning's reducer) by the number of anchors with a non-zero loss.
    g = torch.Generator().manual_seed(seed)
    emb = torch.randn(16, 8, generator=g, dtype=torch.float64)
    labels = (torch.rand(16, 4, generator=g) < 0.3).double()
    labels[labels.sum(1) == 0, 0] = 1
    sim = similarity_matrix(emb, emb)
    same = labels @ labels.T > 0
    eye = torch.eye(16, dtype=torch.bool)
    pos, neg = same & ~eye, ~same
    ours = multi_similarity_loss(sim, pos, neg)
    per_anchor_active = sum(ms_loop(sim[i : i + 1], pos[i : i + 1], neg[i : i + 1]) > 0 for i in range(16))
    assert per_anchor_active > 0
    assert float(ours) * 16 / per_anchor_active == pytest.approx(ms_reference_general(sim, pos, neg), rel=1e-10)


def test_ms_loss_hand_batch_reference_reduction() -> None:
    sim, pos, neg = hand_batch()
    # One active anchor of three.
    assert ms_reference_general(sim, pos, neg) == pytest.approx(3 * float(multi_similarity_loss(sim, pos, neg)))


def test_ms_loss_gradcheck() -> None:
    g = torch.Generator().manual_seed(0)
    emb = torch.randn(8, 5, generator=g, dtype=torch.float64, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1, 2, 2, 0, 1])
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(8, dtype=torch.bool)

    def f(x: torch.Tensor) -> torch.Tensor:
        return multi_similarity_loss(similarity_matrix(x, x), same & ~eye, ~same)

    assert torch.autograd.gradcheck(f, (emb,))


def test_similarity_matrix_variants() -> None:
    a, b = torch.randn(4, 3, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64)
    cos = similarity_matrix(a, b, "embeddings")
    for i in range(4):
        for j in range(5):
            assert float(cos[i, j]) == pytest.approx(float(F.cosine_similarity(a[i], b[j], dim=0)))
    rows = similarity_matrix(a, b, "similarity_rows")
    assert torch.allclose(rows.norm(dim=1), torch.ones(4, dtype=torch.float64))
    assert torch.allclose(rows, (a @ b.T) / (a @ b.T).norm(dim=1, keepdim=True))
    with pytest.raises(ValueError, match="normalize"):
        similarity_matrix(a, b, "rows")


@pytest.mark.parametrize("normalize", ["embeddings", "similarity_rows"])
def test_dmsh_ln_loss_is_sum_of_three_ms_terms(normalize: str) -> None:
    g = torch.Generator().manual_seed(3)
    h_img, h_txt = torch.randn(10, 8, generator=g).tanh(), torch.randn(10, 8, generator=g).tanh()
    labels = torch.nn.functional.one_hot(torch.randint(0, 3, (10,), generator=g), 3).float()
    terms = dmsh_ln_loss(h_img, h_txt, labels, None, normalize=normalize, mask_source="labels")
    same = (labels @ labels.T > 0).numpy()
    n = len(labels)

    def loop(a: torch.Tensor, b: torch.Tensor, cross: bool) -> float:
        s = similarity_matrix(a.double(), b.double(), normalize)
        pos = torch.tensor([[bool(same[i, j]) and (cross or i != j) for j in range(n)] for i in range(n)])
        return ms_loop(s, pos, torch.tensor(~same))

    assert float(terms["ms_image"]) == pytest.approx(loop(h_img, h_img, False), rel=1e-5)
    assert float(terms["ms_text"]) == pytest.approx(loop(h_txt, h_txt, False), rel=1e-5)
    assert float(terms["ms_cross"]) == pytest.approx(loop(h_img, h_txt, True), rel=1e-5)
    assert float(terms["loss"]) == pytest.approx(float(terms["ms_image"] + terms["ms_text"] + terms["ms_cross"]))
    assert "ms_label" not in terms


def test_label_network_mask_and_label_term() -> None:
    g = torch.Generator().manual_seed(5)
    h_img, h_txt = torch.randn(6, 8, generator=g).tanh(), torch.randn(6, 8, generator=g).tanh()
    labels = torch.eye(3)[[0, 0, 1, 1, 2, 2]]
    # Label codes 2·onehot − 1 (padded): inner product 3 within a class, −1 across, so the label-net mask equals
    # the label mask and both mask sources give the same hash terms.
    codes = torch.cat([2 * labels - 1, torch.zeros(6, 5)], 1).tanh()
    assert torch.equal(codes @ codes.T > 0, labels @ labels.T > 0)
    from_net = dmsh_ln_loss(h_img, h_txt, labels, codes, mask_source="label_net", label_weight=0.5)
    from_labels = dmsh_ln_loss(h_img, h_txt, labels, codes, mask_source="labels", label_weight=0.5)
    for key in ("ms_image", "ms_text", "ms_cross", "ms_label"):
        assert float(from_net[key]) == pytest.approx(float(from_labels[key]))
    assert float(from_net["loss"]) == pytest.approx(
        float(from_net["ms_image"] + from_net["ms_text"] + from_net["ms_cross"] + 0.5 * from_net["ms_label"])
    )
    # An all-positive label-net mask has no negatives: nothing is mined, the hash terms vanish.
    ones = torch.ones(6, 8)
    degenerate = dmsh_ln_loss(h_img, h_txt, labels, ones, mask_source="label_net")
    assert float(degenerate["ms_image"]) == 0.0 and float(degenerate["ms_cross"]) == 0.0
    with pytest.raises(ValueError, match="label_codes"):
        dmsh_ln_loss(h_img, h_txt, labels, None, mask_source="label_net")


def test_label_network_gets_gradient_and_learns(tmp_path) -> None:
    torch.manual_seed(0)
    dm = FashionMNISTTextDataModule(image_source="synthetic", batch_size=32, synthetic_sizes=(4, 16, 8), seed=0)
    model = DMsHLN(n_bits=16)
    dm.setup()
    model.configure_data(
        num_classes=10, num_train=dm.num_train, image_shape=dm.image_shape, text_dim=dm.text_dim, map_k=None
    )
    batch: CrossModalBatch = next(iter(dm.train_dataloader()))
    terms = model.compute_loss(batch)
    terms["loss"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.label_network.parameters())

    model = DMsHLN(n_bits=16)
    before = None
    trainer = quiet_trainer(tmp_path, max_epochs=2)

    class Snapshot(L.Callback):
        def on_train_start(self, trainer: L.Trainer, pl_module: DMsHLN) -> None:
            nonlocal before
            before = [p.detach().clone() for p in pl_module.label_network.parameters()]

    trainer.callbacks.append(Snapshot())
    trainer.fit(model, datamodule=dm)
    after = list(model.label_network.parameters())
    assert before is not None and len(before) == len(after) == 4
    assert all(not torch.equal(b, a.detach()) for b, a in zip(before, after, strict=True))


def test_label_scale_grows_with_epoch() -> None:
    model = DMsHLN(n_bits=8)
    assert model.label_scale() == 1.0


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="normalize"):
        DMsHLN(normalize="nope")
    with pytest.raises(ValueError, match="mask_source"):
        DMsHLN(mask_source="nope")
    with pytest.raises(ValueError, match="label_net=True"):
        DMsHLN(label_net=False, mask_source="label_net")
    DMsHLN(label_net=False)


def test_label_term_makes_the_label_net_mask_converge_to_the_label_mask() -> None:
    # Why MS(Y_L) runs with λ = 0 and no mining: the mask [Y_L Y_Lᵀ > 0] must become the label mask.
    torch.manual_seed(0)
    net = LabelNetwork(10, 64)
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    eye10 = torch.eye(10)
    assert bool((net(eye10) @ net(eye10).T > 0).all())  # at initialisation every label looks alike
    for _ in range(150):  # converges in ~60 steps (measured)
        labels = eye10[torch.randint(0, 10, (64,))]
        terms = dmsh_ln_loss(torch.zeros(64, 64), torch.zeros(64, 64), labels, net(labels), mask_source="labels")
        opt.zero_grad()
        terms["ms_label"].backward()
        opt.step()
    codes = net(eye10).detach()
    assert torch.equal(codes @ codes.T > 0, torch.eye(10, dtype=torch.bool))
