"""DNNH: the triplet ranking hinge against an explicit per-triplet loop, divide-and-encode, the threshold, training."""

from __future__ import annotations

import math

import pytest
import torch

from hashbench.data.batch import HashBatch
from hashbench.methods.dnnh import DNNH, DivideAndEncode, dnnh_loss, piecewise_threshold
from hashbench.testing import SyntheticHashingDataModule, loss_before_and_after_fit


def _loop_dnnh(f: torch.Tensor, labels: torch.Tensor, margin: float) -> float:
    b, k = f.shape
    total, count = 0.0, 0
    for i in range(b):
        for j in range(b):
            for m in range(b):
                positive = j != i and float(labels[i] @ labels[j]) > 0
                negative = float(labels[i] @ labels[m]) == 0
                if positive and negative:
                    d_pos = sum((float(f[i, t]) - float(f[j, t])) ** 2 for t in range(k))
                    d_neg = sum((float(f[i, t]) - float(f[m, t])) ** 2 for t in range(k))
                    total += max(0.0, margin - (d_neg - d_pos))
                    count += 1
    return total / count if count else 0.0


@pytest.mark.parametrize("multi", [False, True])
def test_dnnh_loss_matches_per_triplet_loop(multi: bool) -> None:
    g = torch.Generator().manual_seed(0)
    f = torch.rand(7, 5, generator=g, dtype=torch.float64)
    if multi:
        labels = (torch.rand(7, 4, generator=g) < 0.35).double()
        labels[0] = 0.0  # no label: no positive, and a negative of every other anchor
    else:
        labels = torch.nn.functional.one_hot(torch.randint(0, 3, (7,), generator=g), 3).double()
    for margin in (1.0, 0.3):
        got = dnnh_loss(f, labels, margin)
        want = _loop_dnnh(f, labels, margin)
        assert want > 0
        assert math.isclose(float(got["triplet"]), want, rel_tol=1e-10)
        assert math.isclose(float(got["loss"]), want, rel_tol=1e-10)


def test_dnnh_loss_without_triplets_is_zero_and_differentiable() -> None:
    f = torch.rand(4, 3, requires_grad=True)
    terms = dnnh_loss(f, torch.ones(4, 1))  # everything similar: no negatives
    assert float(terms["loss"].detach()) == 0.0
    terms["loss"].backward()
    assert f.grad is not None


def test_dnnh_loss_gradcheck() -> None:
    g = torch.Generator().manual_seed(1)
    f = (0.2 * torch.rand(5, 3, generator=g, dtype=torch.float64) + 0.4).requires_grad_()  # hinges all active
    labels = torch.tensor([[1, 0], [1, 0], [0, 1], [0, 1], [1, 1]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: dnnh_loss(x, labels)["loss"], (f,))


def test_piecewise_threshold() -> None:
    s = torch.tensor([0.0, 0.39, 0.4, 0.45, 0.5, 0.6, 0.61, 1.0], dtype=torch.float64, requires_grad=True)
    out = piecewise_threshold(s, 0.1)
    assert out.tolist() == [0.0, 0.0, 0.4, 0.45, 0.5, 0.6, 1.0, 1.0]
    out.sum().backward()
    assert s.grad.tolist() == [0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0]  # gradient only inside the band
    assert torch.equal(piecewise_threshold(s.detach(), 0.0), torch.tensor([0.0, 0, 0, 0, 0.5, 1, 1, 1]).double())


def test_divide_and_encode_bit_reads_only_its_slice() -> None:
    torch.manual_seed(0)
    module = DivideAndEncode(in_dim=10, n_bits=4, slice_width=3)
    widened = torch.randn(2, 12, requires_grad=True)
    z = ((widened.view(2, 4, 3) * module.weight).sum(-1) + module.bias)[:, 2]
    (grad,) = torch.autograd.grad(z.sum(), widened)
    assert grad[:, 6:9].abs().sum() > 0 and grad[:, :6].abs().sum() == 0 and grad[:, 9:].abs().sum() == 0
    x = torch.randn(5, 10)
    want = torch.stack([module.widen(x)[:, 3 * k : 3 * k + 3] @ module.weight[k] + module.bias[k] for k in range(4)], 1)
    torch.testing.assert_close(module(x), want)
    assert isinstance(DivideAndEncode(10, 4, 3, batch_norm=True).norm, torch.nn.BatchNorm1d)


def test_module_outputs_codes_and_gradients() -> None:
    torch.manual_seed(0)
    model = DNNH(n_bits=8, slice_width=5)
    model.configure_data(num_classes=3, num_train=8, image_shape=(1, 28, 28))
    assert isinstance(model.hash_layer, DivideAndEncode) and model.hash_layer.widen[0].out_features == 40
    model.eval()
    x = torch.randn(6, 1, 28, 28)
    f = model.encoder_outputs(model.hash_logits(x))
    torch.testing.assert_close(model(x), 2 * f - 1)
    assert torch.equal(model.encode(x), torch.where(f >= 0.5, 1, -1).to(torch.int8))
    model.train()
    batch = HashBatch(torch.randn(6, 1, 28, 28), torch.eye(3)[[0, 0, 1, 1, 2, 2]], torch.arange(6))
    model.compute_loss(batch)["loss"].backward()
    assert model.hash_layer.weight.grad.abs().sum() > 0 and model.hash_layer.widen[0].weight.grad.abs().sum() > 0


def test_short_training_lowers_the_loss_and_codes_beat_chance(tmp_path) -> None:
    torch.manual_seed(0)
    dm = SyntheticHashingDataModule(num_classes=4, num_train=64, batch_size=16, multi_label=True)
    model = DNNH(n_bits=12)
    model.configure_data(dm.facts)
    batch = next(iter(dm.train_eval_dataloader()))
    before, after, trainer = loss_before_and_after_fit(model, dm, batch, tmp_path, max_epochs=4)
    assert after < 0.9 * before  # measured: 1.00 -> 0.85 after these 16 steps (0.006 after 40)
    trainer.test(model, datamodule=dm, verbose=False)
    assert float(model.test_report["mAP@all"]) > 0.7  # measured 0.94


def test_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="epsilon"):
        DNNH(epsilon=0.6)
    with pytest.raises(ValueError, match="slice_width"):
        DNNH(slice_width=0)
