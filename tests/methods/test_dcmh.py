"""DCMH: the objective against an explicit loop, and the alternating F / G / B updates."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch

from hashbench.data.synthetic_text import FashionMNISTTextDataModule
from hashbench.methods.dcmh import DCMH, dcmh_loss
from hashbench.testing import quiet_trainer


def dcmh_loop(u, labels, other, other_labels, b, rest, gamma, eta) -> dict[str, float]:
    n, bsz, k = other.shape[0], u.shape[0], u.shape[1]
    lik = 0.0
    for i in range(bsz):
        for j in range(n):
            theta = 0.5 * sum(float(u[i, d]) * float(other[j, d]) for d in range(k))
            s = 1.0 if float(labels[i] @ other_labels[j]) > 0 else 0.0
            lik += math.log(1 + math.exp(theta)) - s * theta
    quant = gamma * sum((float(b[i, d]) - float(u[i, d])) ** 2 for i in range(bsz) for d in range(k))
    bal = eta * sum((sum(float(u[i, d]) for i in range(bsz)) + float(rest[d])) ** 2 for d in range(k))
    norm = n * bsz
    return {"likelihood": lik / norm, "quantization": quant / norm, "balance": bal / norm}


@pytest.mark.parametrize("multi_label", [False, True])
def test_dcmh_loss_matches_explicit_loop(multi_label: bool) -> None:
    g = torch.Generator().manual_seed(1)
    u = torch.randn(4, 5, generator=g, dtype=torch.float64).tanh()
    other = torch.randn(7, 5, generator=g, dtype=torch.float64)
    if multi_label:
        labels = (torch.rand(4, 3, generator=g) < 0.5).double()
        other_labels = (torch.rand(7, 3, generator=g) < 0.5).double()
    else:
        labels = torch.eye(3, dtype=torch.float64)[torch.randint(0, 3, (4,), generator=g)]
        other_labels = torch.eye(3, dtype=torch.float64)[torch.randint(0, 3, (7,), generator=g)]
    b = torch.randn(4, 5, generator=g, dtype=torch.float64).sign()
    rest = torch.randn(5, generator=g, dtype=torch.float64)
    terms = dcmh_loss(u, labels, other, other_labels, b, rest, gamma=0.7, eta=1.3)
    expected = dcmh_loop(u, labels, other, other_labels, b, rest, 0.7, 1.3)
    for key, value in expected.items():
        assert float(terms[key]) == pytest.approx(value, rel=1e-10)
    assert float(terms["loss"]) == pytest.approx(sum(expected.values()), rel=1e-10)


def test_dcmh_loss_gradcheck() -> None:
    g = torch.Generator().manual_seed(2)
    u = torch.randn(3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    other = torch.randn(5, 4, generator=g, dtype=torch.float64)
    labels = torch.eye(2, dtype=torch.float64)[[0, 1, 1]]
    other_labels = torch.eye(2, dtype=torch.float64)[[0, 0, 1, 1, 0]]
    b, rest = torch.ones(3, 4, dtype=torch.float64), torch.zeros(4, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: dcmh_loss(x, labels, other, other_labels, b, rest)["loss"], (u,))


def _datamodule() -> FashionMNISTTextDataModule:
    return FashionMNISTTextDataModule(image_source="synthetic", batch_size=32, synthetic_sizes=(4, 16, 8), seed=0)


def _configured_model(**kwargs) -> tuple[FashionMNISTTextDataModule, DCMH]:
    """A set-up datamodule and a DCMH configured from it (banks allocated), without a Trainer."""
    dm = _datamodule()
    dm.setup()
    model = DCMH(n_bits=8, **kwargs)
    model.configure_data(num_classes=10, num_train=dm.num_train, image_shape=dm.image_shape, text_dim=dm.text_dim)
    return dm, model


def test_compute_loss_uses_banks_of_the_other_modality() -> None:
    torch.manual_seed(0)
    dm, model = _configured_model()
    batch = next(iter(dm.train_dataloader()))
    model.eval()  # no dropout / batch-norm updates: the recomputation below sees the same outputs
    g_before = model.memory_bank("text_codes").values.clone()
    b_bank = model.memory_bank("codes").values.clone()
    terms = model.compute_loss(batch)
    u = model(batch.image)
    known = model.memory_bank("labels").filled
    assert int(known.sum()) == len(batch.index)  # only the labels seen so far
    f_bank = model.memory_bank("image_codes").values
    assert torch.allclose(f_bank[batch.index], u)
    rest = torch.zeros(8)  # every known item is in the batch
    expected = dcmh_loss(
        u,
        batch.labels,
        g_before[known],
        model.memory_bank("labels").values[known],
        b_bank[batch.index],
        rest,
        model.gamma,
        model.eta,
    )
    for key in ("likelihood", "quantization", "balance", "loss"):
        assert float(terms[f"image_{key}"].detach()) == pytest.approx(float(expected[key]), rel=1e-5)


def test_alternating_training_updates_both_networks_and_codes(tmp_path) -> None:
    torch.manual_seed(0)
    dm = _datamodule()
    model = DCMH(n_bits=8)
    snaps: dict[str, list[torch.Tensor]] = {}

    class Snapshot(L.Callback):
        def on_train_start(self, trainer: L.Trainer, pl_module: DCMH) -> None:
            snaps["image"] = [p.detach().clone() for p in pl_module.hash_layer.parameters()]
            snaps["text"] = [p.detach().clone() for p in pl_module.text_hash_layer.parameters()]

        def on_train_batch_start(self, trainer: L.Trainer, pl_module: DCMH, batch, batch_idx: int) -> None:
            # Callbacks run before the module's own on_train_start, which loads the labels.
            if batch_idx == 0:
                snaps["labels_known"] = [pl_module.memory_bank("labels").filled.clone()]

    trainer = quiet_trainer(tmp_path, max_epochs=1, callbacks=[Snapshot()])
    trainer.fit(model, datamodule=dm)
    # All training labels were loaded up front from the datamodule.
    assert bool(snaps["labels_known"][0].all())
    for a, b in zip(snaps["image"], model.hash_layer.parameters(), strict=True):
        assert not torch.equal(a, b.detach())
    for a, b in zip(snaps["text"], model.text_hash_layer.parameters(), strict=True):
        assert not torch.equal(a, b.detach())
    f, g = model.memory_bank("image_codes").values, model.memory_bank("text_codes").values
    b = model.memory_bank("codes").values
    assert torch.equal(b, torch.where(f + g >= 0, 1.0, -1.0))  # B = sign(γ(F + G)) after the epoch
    assert len(model.optimizers()) == 2


def test_hash_layers_end_in_batch_norm_unless_disabled() -> None:
    def has_bn(module: torch.nn.Module) -> bool:
        return any(isinstance(m, torch.nn.BatchNorm1d) for m in module.modules())

    model = DCMH(n_bits=8, text_dim=20)
    assert has_bn(model.hash_layer) and has_bn(model.text_hash_layer)
    assert model.text_forward(torch.rand(4, 20)).shape == (4, 8)
    plain = DCMH(n_bits=8, text_dim=20, hash_bn=False)
    assert not has_bn(plain.hash_layer) and not has_bn(plain.text_hash_layer)


def test_zero_banks_give_no_gradient_from_unseen_items() -> None:
    torch.manual_seed(0)
    dm, model = _configured_model()
    for name in ("image_codes", "text_codes"):
        assert not model.memory_bank(name).values.any()
    batch = next(iter(dm.train_dataloader()))
    model.update_memory_bank("labels", batch.index, batch.labels)
    u = model(batch.image).detach().requires_grad_(True)
    terms = model._modality_terms(u, batch, "image")
    (grad,) = torch.autograd.grad(terms["likelihood"], u)
    assert not grad.any()  # every text column is still zero: Θ = 0, no pull in any direction
    assert float(terms["likelihood"]) == pytest.approx(math.log(2))

    normal = DCMH(n_bits=8, bank_init="normal")
    normal.configure_data(num_classes=10, num_train=dm.num_train, image_shape=dm.image_shape, text_dim=dm.text_dim)
    assert float(normal.memory_bank("image_codes").values.std()) > 0.5


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="gamma"):
        DCMH(gamma=0.0)
    with pytest.raises(ValueError, match="bank_init"):
        DCMH(bank_init="uniform")


def _fit_and_test(tmp_path, **kwargs) -> float:
    torch.manual_seed(0)
    dm = FashionMNISTTextDataModule(image_source="synthetic", batch_size=64, synthetic_sizes=(10, 40, 20), seed=0)
    model = DCMH(n_bits=16, **kwargs)
    trainer = quiet_trainer(tmp_path, max_epochs=4)
    trainer.fit(model, datamodule=dm)
    trainer.test(model, datamodule=dm, verbose=False)
    return float(model.test_report[model.map_key])


def test_default_dcmh_learns_where_the_paper_setting_collapses(tmp_path) -> None:
    # Regression test for the collapse described in the module docstring: 10 single-label classes, chance ≈ 0.1.
    learned = _fit_and_test(tmp_path)
    paper_setting = _fit_and_test(tmp_path, hash_bn=False, bank_init="normal", eta=1.0)
    print(f"DCMH default {learned:.3f}, paper setting {paper_setting:.3f}")
    assert learned > 0.5, learned
    assert learned > paper_setting + 0.2, (learned, paper_setting)
