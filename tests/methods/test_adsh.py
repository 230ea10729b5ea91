"""ADSH: the loss and the discrete V-step against explicit loops, the label-set grouping, and the module's wiring."""

from __future__ import annotations

import itertools
import math

import lightning as L
import pytest
import torch

import hashbench.methods.adsh as adsh_module
from hashbench.methods.adsh import (
    ADSH,
    adsh_dissimilar_weight,
    adsh_loss,
    adsh_similarity,
    adsh_update_codes,
    similar_sum,
    summarize_codes,
)
from hashbench.testing import SyntheticHashingDataModule


def _share(a: torch.Tensor, b: torch.Tensor) -> bool:
    return any(float(x) > 0 and float(y) > 0 for x, y in zip(a, b, strict=True))


def _s(a, b, r: float) -> float:
    return 1.0 if _share(a, b) else -r


def _loop_loss(u, labels, codes, code_labels, own, gamma, r):
    n, b, c = codes.shape[0], u.shape[0], u.shape[1]
    square = 0.0
    for i in range(b):
        for j in range(n):
            inner = sum(float(u[i, k]) * float(codes[j, k]) for k in range(c))
            square += (inner - c * _s(labels[i], code_labels[j], r)) ** 2
    quant = sum((float(own[i, k]) - float(u[i, k])) ** 2 for i in range(b) for k in range(c))
    return square / (n * b), gamma * quant / (n * b)


def _objective(codes, u, omega, labels_omega, labels, gamma, r) -> float:
    """J(V) of the paper with Θ fixed (explicit loops)."""
    c = codes.shape[1]
    total = 0.0
    for a, i in enumerate(omega.tolist()):
        for j in range(codes.shape[0]):
            inner = sum(float(u[a, k]) * float(codes[j, k]) for k in range(c))
            total += (inner - c * _s(labels_omega[a], labels[j], r)) ** 2
        total += gamma * sum((float(codes[i, k]) - float(u[a, k])) ** 2 for k in range(c))
    return total


def _labels(n: int, c: int, g: torch.Generator, multi: bool) -> torch.Tensor:
    if multi:
        y = (torch.rand(n, c, generator=g) < 0.4).double()
        y[0] = 0.0  # an item with no label: similar to nothing
        return y
    return torch.nn.functional.one_hot(torch.randint(0, c, (n,), generator=g), c).double()


@pytest.mark.parametrize("multi", [False, True])
def test_adsh_loss_matches_per_pair_loop(multi: bool) -> None:
    g = torch.Generator().manual_seed(0)
    u = torch.tanh(torch.randn(4, 5, generator=g, dtype=torch.float64))
    codes = torch.where(torch.rand(9, 5, generator=g) < 0.5, -1.0, 1.0).double()
    codes[3] = 0.0  # a database item whose code is not learned yet
    labels, code_labels = _labels(4, 3, g, multi), _labels(9, 3, g, multi)
    own = codes[:4]
    for r in (1.0, 0.23):
        terms = adsh_loss(u, labels, summarize_codes(codes, code_labels), own, gamma=7.0, r=r)
        square, quant = _loop_loss(u, labels, codes, code_labels, own, 7.0, r)
        assert math.isclose(float(terms["square"]), square, rel_tol=1e-10)
        assert math.isclose(float(terms["quantization"]), quant, rel_tol=1e-10)
        assert math.isclose(float(terms["loss"]), square + quant, rel_tol=1e-10)


def test_adsh_loss_gradient_and_saturation() -> None:
    g = torch.Generator().manual_seed(1)
    codes = torch.where(torch.rand(7, 4, generator=g) < 0.5, -1.0, 1.0).double()
    labels, code_labels = _labels(3, 3, g, True), _labels(7, 3, g, True)
    database = summarize_codes(codes, code_labels)
    u = torch.tanh(torch.randn(3, 4, generator=g, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: adsh_loss(x, labels, database, codes[:3], 5.0, 0.4)["loss"], (u,))
    saturated = torch.tanh(torch.full((3, 4), 40.0, dtype=torch.float32))  # exactly ±1 in float32
    db32 = summarize_codes(codes.float(), code_labels.float())
    terms = adsh_loss(saturated, labels.float(), db32, codes[:3].float(), 200.0)
    assert all(torch.isfinite(t) for t in terms.values())
    # The gradient is the paper's: 2 Σ_j (u_iᵀv_j − c S_ij) v_j + 2γ (u_i − v_i), over n·B.
    (grad,) = torch.autograd.grad(adsh_loss(u, labels, database, codes[:3], 5.0, 0.4)["loss"], (u,))
    s = adsh_similarity(labels, code_labels, 0.4)
    want = (2 * (u.detach() @ codes.T - 4 * s) @ codes + 2 * 5.0 * (u.detach() - codes[:3])) / (7 * 3)
    torch.testing.assert_close(grad, want, rtol=1e-10, atol=1e-12)


def test_summary_groups_codes_by_label_set() -> None:
    codes = torch.tensor([[1.0, -1.0], [1.0, 1.0], [-1.0, 1.0], [0.0, 0.0]])
    labels = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0], [0.0, 0.0]])
    summary = summarize_codes(codes, labels)
    groups = {tuple(row.tolist()): (s.tolist(), float(c)) for row, s, c in zip(*summary[:3], strict=True)}
    assert groups == {(1.0, 0.0): ([0.0, 0.0], 2.0), (0.0, 1.0): ([1.0, 1.0], 1.0), (0.0, 0.0): ([0.0, 0.0], 1.0)}
    assert summary.code_sum.tolist() == [1.0, 1.0] and summary.n == 4
    torch.testing.assert_close(summary.gram, codes.T @ codes)


@pytest.mark.parametrize("multi", [False, True])
def test_similar_sum_and_dissimilar_weight_match_brute_force(multi: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    g = torch.Generator().manual_seed(2)
    rows, cols = _labels(11, 4, g, multi), _labels(6, 4, g, multi)
    values = torch.randn(6, 3, generator=g, dtype=torch.float64)
    want = torch.zeros(11, 3, dtype=torch.float64)
    for j in range(11):
        for i in range(6):
            if _share(rows[j], cols[i]):
                want[j] += values[i]
    torch.testing.assert_close(similar_sum(rows, cols, values), want)
    monkeypatch.setattr(adsh_module, "_BLOCK_ELEMENTS", 2)  # one distinct label set per block
    torch.testing.assert_close(similar_sum(rows, cols, values), want)
    similar = sum(_share(a, b) for a in cols for b in rows)
    assert math.isclose(adsh_dissimilar_weight(cols, rows), similar / (6 * 11 - similar), rel_tol=1e-12)


@pytest.mark.parametrize("multi", [False, True])
def test_code_update_matches_the_bitwise_formula_loop(multi: bool) -> None:
    g = torch.Generator().manual_seed(3)
    n, m, c, gamma, r = 8, 5, 4, 3.0, 0.3
    labels = _labels(n, 3, g, multi)
    omega = torch.tensor([6, 0, 3, 7, 2])
    u = torch.tanh(torch.randn(m, c, generator=g, dtype=torch.float64))
    v0 = torch.where(torch.rand(n, c, generator=g) < 0.5, -1.0, 1.0).double()
    got, used_r = adsh_update_codes(v0, u, omega, labels[omega], labels, gamma, r)
    # Explicit loop: Q = −2c SᵀU − 2γŪ, then V_{*k} = −sign(2 V̂_k Û_kᵀ U_{*k} + Q_{*k}) column by column.
    v = v0.tolist()
    for k in range(c):
        for j in range(n):
            q = -2 * c * sum(_s(labels[int(omega[a])], labels[j], r) * float(u[a, k]) for a in range(m))
            q -= sum(2 * gamma * float(u[a, k]) for a in range(m) if int(omega[a]) == j)
            x = q + 2 * sum(
                v[j][l] * sum(float(u[a, l]) * float(u[a, k]) for a in range(m)) for l in range(c) if l != k
            )
            v[j][k] = 1.0 if -x >= 0 else -1.0
    assert got.tolist() == v and used_r == r
    assert set(got.unique().tolist()) <= {-1.0, 1.0}
    # r=None: the soft constraint's r, counted in the same pass
    soft, soft_r = adsh_update_codes(v0, u, omega, labels[omega], labels, gamma, None)
    assert math.isclose(soft_r, adsh_dissimilar_weight(labels[omega], labels), rel_tol=1e-12)
    assert torch.equal(soft, adsh_update_codes(v0, u, omega, labels[omega], labels, gamma, soft_r).codes)


def test_each_column_step_minimises_the_objective_exactly() -> None:
    """J is linear in one column of V (the others fixed), so the column step is its exact minimiser."""
    g = torch.Generator().manual_seed(4)
    n, c, gamma, r = 5, 3, 2.0, 0.5
    labels = _labels(n, 3, g, True)
    omega = torch.tensor([1, 4])
    u = torch.tanh(torch.randn(2, c, generator=g, dtype=torch.float64))
    v0 = torch.where(torch.rand(n, c, generator=g) < 0.5, -1.0, 1.0).double()
    v1 = adsh_update_codes(v0, u, omega, labels[omega], labels, gamma, r).codes
    best = math.inf
    for column in itertools.product((-1.0, 1.0), repeat=n):
        trial = v0.clone()
        trial[:, 0] = torch.tensor(column, dtype=torch.float64)
        best = min(best, _objective(trial, u, omega, labels[omega], labels, gamma, r))
    after_first = v0.clone()
    after_first[:, 0] = v1[:, 0]
    assert math.isclose(_objective(after_first, u, omega, labels[omega], labels, gamma, r), best, rel_tol=1e-12)
    # and the whole sweep never increases J
    before = _objective(v0, u, omega, labels[omega], labels, gamma, r)
    assert _objective(v1, u, omega, labels[omega], labels, gamma, r) <= before + 1e-9


def test_module_builds_banks_and_a_step_has_gradients() -> None:
    torch.manual_seed(0)
    model = ADSH(n_bits=8)
    model.configure_data(num_classes=4, num_train=32, image_shape=(1, 28, 28), multi_label=True)
    assert model.memory_bank("codes").values.shape == (32, 8)
    batch = next(
        iter(SyntheticHashingDataModule(num_classes=4, num_train=32, batch_size=8, multi_label=True).train_dataloader())
    )
    model.train()
    model.compute_loss(batch)  # fill U for the batch, V still 0
    stats = model.update_codes()  # V-step over the 8 items seen
    codes = model.memory_bank("codes")
    assert int(codes.filled.sum()) == 8 and set(codes.values[batch.index].unique().tolist()) <= {-1.0, 1.0}
    assert 0.0 < stats["dissimilar_weight"]
    assert math.isclose(float(model.dissimilar_weight), stats["dissimilar_weight"], rel_tol=1e-6)
    assert model._summary is None  # the V-step dropped the cached summary of V
    terms = model.compute_loss(batch)
    fresh = summarize_codes(codes.values, model.memory_bank("labels").values)
    assert all(torch.equal(a, b) for a, b in zip(model.database_summary()[:5], fresh[:5], strict=True))
    assert torch.isfinite(terms["loss"]) and terms["square"] > 0
    terms["loss"].backward()
    assert model.hash_layer.net[-2].weight.grad.abs().sum() > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.backbone.parameters())


@pytest.mark.parametrize("init_codes", ["network", "zeros"])
def test_fit_learns_v_once_per_epoch(init_codes: str, tmp_path) -> None:
    torch.manual_seed(0)
    model = ADSH(n_bits=8, init_codes=init_codes)
    dm = SyntheticHashingDataModule(num_classes=4, num_train=32, batch_size=8)
    seen: list[torch.Tensor] = []

    class Probe(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
            if batch_idx == 0:
                seen.append(pl_module.memory_bank("codes").values.clone())

    trainer = L.Trainer(
        max_epochs=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        callbacks=[Probe()],
    )
    trainer.fit(model, datamodule=dm)
    first, second = seen
    if init_codes == "network":
        assert set(first.unique().tolist()) == {-1.0, 1.0}  # V learned before the first step
    else:
        assert bool((first == 0).all())
    assert set(second.unique().tolist()) <= {-1.0, 1.0} and not torch.equal(first, second)
    assert bool(model.memory_bank("codes").filled.all())
