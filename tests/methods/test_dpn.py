"""DPN: the polarization loss against a per-bit loop, the target codes and their update, and the module's wiring."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch
from scipy.linalg import hadamard

from hashbench.methods.dpn import DPN, dpn_loss, dpn_target_codes, dpn_update_targets
from hashbench.testing import SyntheticHashingDataModule


def _loop_dpn(v, labels, targets, margin) -> float:
    total = 0.0
    for i in range(v.shape[0]):
        for c in range(targets.shape[0]):
            if float(labels[i, c]) > 0:
                total += sum(max(margin - float(v[i, k]) * float(targets[c, k]), 0.0) for k in range(v.shape[1]))
    return total / v.shape[0]


@pytest.mark.parametrize("multi", [False, True])
def test_dpn_loss_matches_per_bit_loop(multi: bool) -> None:
    g = torch.Generator().manual_seed(0)
    v = 1.5 * torch.randn(6, 8, generator=g, dtype=torch.float64)
    targets = dpn_target_codes(4, 8, seed=3).double()
    if multi:
        labels = (torch.rand(6, 4, generator=g) < 0.5).double()
        labels[0] = 0.0  # no label: no loss
    else:
        labels = torch.nn.functional.one_hot(torch.randint(0, 4, (6,), generator=g), 4).double()
    for margin in (1.0, 0.3):
        terms = dpn_loss(v, labels, targets, margin)
        assert math.isclose(float(terms["loss"]), _loop_dpn(v, labels, targets, margin), rel_tol=1e-12)
        assert float(terms["polarization"]) == float(terms["loss"])


def test_dpn_loss_finite_when_saturated_and_gradcheck() -> None:
    targets = dpn_target_codes(3, 4, seed=1).double()
    labels = torch.eye(3, dtype=torch.float64)
    big = torch.full((3, 4), 1e30, dtype=torch.float64)
    assert torch.isfinite(dpn_loss(big, labels, targets)["loss"])
    # Every bit polarised beyond the margin on the right side: zero loss.
    assert float(dpn_loss(5.0 * targets, labels, targets)["loss"]) == 0.0
    v = torch.randn(3, 4, generator=torch.Generator().manual_seed(2), dtype=torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: dpn_loss(x, labels, targets, 0.7)["loss"], (v,))


def test_target_codes_random_seeded_and_hadamard() -> None:
    t = dpn_target_codes(10, 48, seed=5)
    assert t.shape == (10, 48) and set(t.unique().tolist()) == {-1.0, 1.0}
    assert torch.equal(t, dpn_target_codes(10, 48, seed=5)) and not torch.equal(t, dpn_target_codes(10, 48, seed=6))
    h = dpn_target_codes(10, 16, method="hadamard")
    want = torch.from_numpy(hadamard(16)).float()
    assert torch.equal(h[:10], torch.cat([want, -want])[:10])
    # no Hadamard matrix of order 48: the random targets
    assert torch.equal(dpn_target_codes(10, 48, method="hadamard", seed=5), t)
    with pytest.raises(ValueError):
        dpn_target_codes(10, 16, method="nope")


def test_update_targets_is_the_sign_of_the_class_vote() -> None:
    codes = torch.tensor([[0.5, -2.0, 0.1], [1.0, 3.0, -0.2], [-1.0, -1.0, -1.0], [0.0, 0.0, 0.0]])
    labels = torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.0, 0.0]])  # last row: never seen
    old = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 1.0, 1.0]])
    new = dpn_update_targets(codes, labels, old)
    # class 0: votes (1+1, -1+1, 1-1) = (2, 0, 0) -> (+1, old, old); class 1: (1-1, 1-1, -1-1) -> (old, old, -1)
    assert new.tolist() == [[1.0, -1.0, -1.0], [1.0, 1.0, -1.0]]


def test_module_builds_targets_from_the_data_and_trains() -> None:
    torch.manual_seed(0)
    model = DPN(n_bits=16, targets="hadamard")
    model.configure_data(num_classes=4, num_train=32, image_shape=(1, 28, 28), multi_label=True)
    assert torch.equal(model.target_codes, dpn_target_codes(4, 16, "hadamard"))
    assert "target_codes" in model.state_dict()
    batch = next(
        iter(SyntheticHashingDataModule(num_classes=4, num_train=32, batch_size=8, multi_label=True).train_dataloader())
    )
    model.train()
    terms = model.compute_loss(batch)
    assert torch.isfinite(terms["loss"]) and terms["loss"] > 0
    terms["loss"].backward()
    assert model.hash_layer.net[-2].weight.grad.abs().sum() > 0


def test_targets_update_at_epoch_end_when_asked(tmp_path) -> None:
    torch.manual_seed(0)
    model = DPN(n_bits=8, update_targets_every=1)
    dm = SyntheticHashingDataModule(num_classes=4, num_train=32, batch_size=8)
    trainer = L.Trainer(
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    before = dpn_target_codes(4, 8)
    trainer.fit(model, datamodule=dm)
    outputs, labels = model.memory_bank("outputs"), model.memory_bank("labels")
    assert bool(outputs.filled.all())
    assert torch.equal(model.target_codes, dpn_update_targets(outputs.values, labels.values, before))
    assert set(model.target_codes.unique().tolist()) <= {-1.0, 1.0}
