"""MDSH: the Gilbert–Varshamov target, the centre construction, the loss against per-pair loops, and the module."""

from __future__ import annotations

import math

import pytest
import torch

from hashbench.methods.csq import csq_hash_centers
from hashbench.methods.mdsh import MDSH, hamming_bound, log1m_softmax, mdsh_hash_centers, mdsh_loss, mdsh_min_distance
from hashbench.testing import SyntheticHashingDataModule


def _min_distance(c: torch.Tensor) -> int:
    n, k = c.shape
    d = (k - c @ c.T) / 2
    return int(d[torch.triu_indices(n, n, 1).unbind()].min())


def test_gilbert_varshamov_target_matches_its_definition() -> None:
    for n_classes, k in ((10, 16), (10, 48), (100, 64), (100, 16), (21, 48), (2, 8), (1000, 32), (256, 8)):
        want = next(d for d in range(1, k + 1) if 2**k / n_classes <= sum(math.comb(k, i) for i in range(d)))
        assert mdsh_min_distance(n_classes, k) == want
        # the largest d that the GV theorem guarantees is d or d - 1; the sphere-packing bound lies above it
        guaranteed = max(d for d in range(1, k + 1) if n_classes * sum(math.comb(k, i) for i in range(d)) <= 2**k)
        assert guaranteed in (want - 1, want)
        assert hamming_bound(n_classes, k) >= want
    assert (mdsh_min_distance(10, 16), mdsh_min_distance(10, 48), mdsh_min_distance(100, 64)) == (6, 21, 24)
    assert hamming_bound(10, 16) == 10  # 10 · (1 + 16 + 120 + 560 + 1820) = 25170 ≤ 65536 < 10 · (… + 4368)
    assert mdsh_min_distance(1, 12) == 12


@pytest.mark.parametrize(("n_classes", "k"), [(10, 48), (100, 16), (100, 32), (100, 48), (21, 48), (10, 12)])
def test_centres_reach_the_target_distance(n_classes: int, k: int) -> None:
    c = mdsh_hash_centers(n_classes, k, seed=1)
    assert c.shape == (n_classes, k) and set(c.unique().tolist()) == {-1.0, 1.0}
    assert _min_distance(c) >= mdsh_min_distance(n_classes, k)
    assert _min_distance(c) > _min_distance(csq_hash_centers(n_classes, k, seed=1))  # better than CSQ's draw


def test_centres_are_seeded_and_keep_hadamard_rows_when_those_are_farther() -> None:
    assert torch.equal(mdsh_hash_centers(10, 48, seed=3), mdsh_hash_centers(10, 48, seed=3))
    assert not torch.equal(mdsh_hash_centers(10, 48, seed=3), mdsh_hash_centers(10, 48, seed=4))
    for n_classes, k in ((10, 16), (100, 64)):  # the Hadamard rows (distance K/2) exceed the GV target
        c = mdsh_hash_centers(n_classes, k)
        assert _min_distance(c) == k // 2
        assert torch.equal(c, csq_hash_centers(n_classes, k))
    # an explicit target the initial centres miss is reached
    assert _min_distance(mdsh_hash_centers(12, 16, min_distance=7)) >= 7


def test_log1m_softmax_is_exact_where_the_naive_form_cancels() -> None:
    z = torch.tensor([[40.0, 0.0, -3.0], [0.5, 0.25, 0.0]], dtype=torch.float64)
    got = log1m_softmax(z)
    for i in range(2):
        zi = [float(x) for x in z[i]]
        for c in range(3):
            rest = sum(math.exp(zj) for j, zj in enumerate(zi) if j != c)
            assert math.isclose(float(got[i, c]), math.log(rest) - math.log(sum(map(math.exp, zi))), rel_tol=1e-12)
    assert float(got[0, 0]) < -39.0  # 1 − p ≈ e^{-40}: log1p(−p) would give −inf in float32
    assert torch.isfinite(log1m_softmax(z.float())).all()


def _loop_mdsh(u, labels, centers, bank_u, bank_labels, scale, beta, lam):
    b, k = u.shape
    n_classes = centers.shape[0]

    def cos(a, c):
        a, c = [float(x) for x in a], [float(x) for x in c]
        dot = sum(x * y for x, y in zip(a, c, strict=True))
        return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in c)))

    center = 0.0
    for i in range(b):
        z = [scale * cos(u[i], centers[c]) for c in range(n_classes)]
        total = sum(math.exp(x) for x in z)
        for c in range(n_classes):
            p = math.exp(z[c]) / total
            y = float(labels[i, c])
            center -= y * math.log(p) + (1 - y) * math.log(1 - p)
    center /= b * n_classes
    pair_sum, n_pos = 0.0, 0
    if bank_u is not None:
        for i in range(b):
            for j in range(bank_u.shape[0]):
                if float(labels[i] @ bank_labels[j]) > 0:
                    pair_sum += math.log1p(math.exp(0.5 * (1 - cos(u[i], bank_u[j]))))
                    n_pos += 1
    pair = beta * pair_sum / max(n_pos, 1)
    quant = lam * sum((abs(float(u[i, q])) - 1) ** 2 for i in range(b) for q in range(k)) / (b * k)
    return center, pair, quant


@pytest.mark.parametrize("multi_label", [False, True])
def test_mdsh_loss_matches_per_pair_loop(multi_label: bool) -> None:
    g = torch.Generator().manual_seed(0)
    u = torch.tanh(torch.randn(5, 8, generator=g, dtype=torch.float64))
    bank_u = torch.tanh(torch.randn(7, 8, generator=g, dtype=torch.float64))
    centers = torch.where(torch.rand(4, 8, generator=g) < 0.5, -1.0, 1.0).double()
    if multi_label:
        labels = (torch.rand(5, 4, generator=g) < 0.4).double()
        bank_labels = (torch.rand(7, 4, generator=g) < 0.4).double()
    else:
        labels = torch.nn.functional.one_hot(torch.tensor([0, 1, 2, 3, 1]), 4).double()
        bank_labels = torch.nn.functional.one_hot(torch.tensor([0, 1, 1, 2, 3, 3, 0]), 4).double()
    terms = mdsh_loss(u, labels, centers, bank_u, bank_labels, scale=2.5, beta=0.7, lam=0.3)
    center, pair, quant = _loop_mdsh(u, labels, centers, bank_u, bank_labels, 2.5, 0.7, 0.3)
    assert math.isclose(float(terms["center"]), center, rel_tol=1e-10)
    assert math.isclose(float(terms["pair"]), pair, rel_tol=1e-10)
    assert math.isclose(float(terms["quantization"]), quant, rel_tol=1e-10)
    assert math.isclose(float(terms["loss"]), center + pair + quant, rel_tol=1e-10)
    # without a bank there is no pair term, and the default scale is √K
    no_bank = mdsh_loss(u, labels, centers, lam=0.3)
    assert float(no_bank["pair"]) == 0.0
    c_default, _, _ = _loop_mdsh(u, labels, centers, None, None, math.sqrt(8), 1.0, 0.3)
    assert math.isclose(float(no_bank["center"]), c_default, rel_tol=1e-10)


def test_mdsh_loss_finite_when_saturated_and_gradcheck() -> None:
    centers = torch.tensor([[1.0, -1.0, 1.0, -1.0], [1.0, 1.0, -1.0, -1.0], [-1.0, 1.0, 1.0, -1.0]])
    u = centers.clone().requires_grad_()  # |u| = 1 exactly, each code on its own centre
    labels = torch.eye(3)
    terms = mdsh_loss(u, labels, centers, u.detach(), labels, scale=50.0)
    terms["loss"].backward()
    assert all(torch.isfinite(v) for v in terms.values()) and torch.isfinite(u.grad).all()
    g = torch.Generator().manual_seed(2)
    uu = torch.tanh(torch.randn(4, 6, generator=g, dtype=torch.float64)).requires_grad_()
    bank = torch.tanh(torch.randn(5, 6, generator=g, dtype=torch.float64))
    cc = torch.where(torch.rand(3, 6, generator=g) < 0.5, -1.0, 1.0).double()
    ll = (torch.rand(4, 3, generator=g) < 0.5).double()
    bl = (torch.rand(5, 3, generator=g) < 0.5).double()
    assert torch.autograd.gradcheck(lambda x: mdsh_loss(x, ll, cc, bank, bl, beta=0.5, lam=0.1)["loss"], (uu,))


@pytest.mark.parametrize("multi_label", [False, True])
def test_mdsh_module_builds_centres_and_banks_and_trains(multi_label: bool) -> None:
    torch.manual_seed(0)
    model = MDSH(n_bits=12, pair_start_epoch=0)
    model.configure_data(num_classes=4, num_train=32, image_shape=(1, 28, 28), multi_label=multi_label)
    assert torch.equal(model.hash_centers, mdsh_hash_centers(4, 12))
    assert _min_distance(model.hash_centers) >= mdsh_min_distance(4, 12)
    assert "hash_centers" in model.state_dict()
    dm = SyntheticHashingDataModule(num_classes=4, num_train=32, batch_size=8, multi_label=multi_label)
    batch = next(iter(dm.train_dataloader()))
    model.train()
    terms = model.compute_loss(batch)
    bank = model.memory_bank("codes")
    assert int(bank.filled.sum()) == 8 and torch.equal(model.memory_bank("labels").values[batch.index], batch.labels)
    assert float(terms["pair"].detach()) > 0  # on from pair_start_epoch = 0 (the batch pairs with itself)
    assert all(torch.isfinite(v) for v in terms.values())
    terms["loss"].backward()
    assert model.hash_layer.net[0].weight.grad.abs().sum() > 0
    # before pair_start_epoch (the default 9; epoch 0 here) the pair term is off but the bank is still written
    late = MDSH(n_bits=12)
    late.configure_data(num_classes=4, num_train=32, image_shape=(1, 28, 28), multi_label=multi_label)
    late_terms = late.compute_loss(batch)
    assert float(late_terms["pair"].detach()) == 0.0 and int(late.memory_bank("codes").filled.sum()) == 8
    # beta = 0: no banks at all
    off = MDSH(n_bits=12, beta=0.0)
    off.configure_data(num_classes=4, num_train=32, image_shape=(1, 28, 28))
    assert len(off._banks) == 0 and torch.isfinite(off.compute_loss(batch)["loss"])
