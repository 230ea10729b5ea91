"""The shared machinery of HashingMethod: data adoption, codes, optimiser groups, memory banks, bad input."""

from __future__ import annotations

import pytest
import torch

from hashbench.methods.base import HashingMethod
from hashbench.nn.heads import HashHead
from hashbench.registry import create_method
from hashbench.testing import SyntheticHashingDataModule


def test_configure_data_rebuilds_for_one_channel_input_once() -> None:
    model = create_method("DPSH", n_bits=8)
    assert model.backbone.body[0].in_channels == 3
    model.configure_data(num_classes=4, num_train=10, image_shape=(1, 28, 28))
    assert model.backbone.body[0].in_channels == 1
    assert model.hparams.in_channels == 1 and model.hparams.num_train == 10
    assert model.memory_bank("codes").values.shape == (10, 8)
    with pytest.raises(ValueError, match="classes"):
        model.configure_data(num_classes=5, num_train=10, image_shape=(1, 28, 28))


def test_encode_maps_zero_to_plus_one() -> None:
    model = create_method("DPSH", n_bits=4)
    model.configure_data(num_classes=2, num_train=4, image_shape=(1, 28, 28))
    with torch.no_grad():
        for p in model.hash_layer.parameters():
            p.zero_()
    model.eval()
    codes = model.encode(torch.randn(3, 1, 28, 28))
    assert codes.dtype == torch.int8 and bool((codes == 1).all())


def test_backbone_and_head_learning_rates_are_separate() -> None:
    model = create_method("DPSH", n_bits=8, lr=1e-2, backbone_lr=1e-4, optimizer="sgd")
    model.configure_data(num_classes=4, num_train=10, image_shape=(1, 28, 28))
    opt = model.configure_optimizers()
    lrs = {g["name"]: g["lr"] for g in opt.param_groups}
    assert lrs == {"head": 1e-2, "backbone": 1e-4}
    n_params = sum(p.numel() for g in opt.param_groups for p in g["params"])
    assert n_params == sum(p.numel() for p in model.parameters())


def test_memory_bank_write_and_checkpoint_round_trip(tmp_path) -> None:
    model = create_method("DPSH", n_bits=4)
    model.configure_data(num_classes=3, num_train=6, image_shape=(1, 28, 28))
    model.update_memory_bank("codes", torch.tensor([1, 4]), torch.ones(2, 4))
    bank = model.memory_bank("codes")
    assert bank.values[[1, 4]].eq(1).all() and bank.values[[0, 2, 3, 5]].eq(0).all()
    assert bank.filled.tolist() == [False, True, False, False, True, False]
    state = model.state_dict()
    clone = create_method("DPSH", n_bits=4, num_classes=3, num_train=6, in_channels=1, image_size=28)
    clone.load_state_dict(state)
    assert torch.equal(clone.memory_bank("codes").values, bank.values)


def test_non_finite_loss_is_a_clear_error() -> None:
    class Broken(HashingMethod):
        def compute_loss(self, batch):
            return {"loss": self(batch.image).sum() * float("nan")}

    model = Broken(n_bits=4)
    model.configure_data(num_classes=4, num_train=16, image_shape=(1, 28, 28))
    batch = next(iter(SyntheticHashingDataModule(num_train=16, batch_size=8).train_dataloader()))
    with pytest.raises(FloatingPointError, match="non-finite loss"):
        model.training_step(batch, 0)


@pytest.mark.parametrize("bad", [{"n_bits": 0}, {"optimizer": "lbfgs"}, {"scheduler": "sometimes"}])
def test_bad_hyperparameters_raise(bad) -> None:
    with pytest.raises(ValueError):
        create_method("DPSH", **bad)


def test_hash_head_batch_norm_centres_outputs() -> None:
    head = HashHead(16, 8, batch_norm=True)
    out = head(torch.randn(64, 16) + 5.0)
    assert out.mean(0).abs().max() < 1e-4
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in HashHead(16, 8).modules())
