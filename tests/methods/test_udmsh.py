"""UDMSH: loss vs an explicit loop, multi-level targets from stored features, and label-free training."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from hashbench.methods.udmsh import UDMSH, udmsh_loss
from hashbench.registry import get_method
from hashbench.testing import SyntheticHashingDataModule


def _loop_loss(u: torch.Tensor, t: torch.Tensor, w: torch.Tensor, lam: float) -> float:
    b, k = u.shape
    total = 0.0
    for i in range(b):
        for j in range(b):
            if i == j:
                continue
            inner = sum(float(u[i, m]) * float(u[j, m]) for m in range(k)) / k
            total += float(w[i, j]) * (inner - float(t[i, j])) ** 2
    sim = total / (b * (b - 1))
    quant = 0.0
    for i in range(b):
        for m in range(k):
            bit = 1.0 if float(u[i, m]) >= 0 else -1.0
            quant += (float(u[i, m]) - bit) ** 2
    return sim + lam * quant / (b * k)


def test_loss_matches_explicit_loop() -> None:
    g = torch.Generator().manual_seed(0)
    u = torch.tanh(torch.randn(5, 6, generator=g))
    t = torch.rand(5, 5, generator=g) * 2 - 1
    t = (t + t.T) / 2
    w = torch.tensor([0.0, 0.5, 1.0])[torch.randint(0, 3, (5, 5), generator=g)]
    terms = udmsh_loss(u, t, w, lam=0.3)
    assert float(terms["loss"]) == pytest.approx(_loop_loss(u, t, w, 0.3), rel=1e-5)
    assert float(terms["loss"]) == pytest.approx(float(terms["similarity"] + terms["quantization"]))


def test_loss_gradcheck() -> None:
    g = torch.Generator().manual_seed(1)
    u = (torch.rand(4, 5, generator=g, dtype=torch.float64) * 1.6 - 0.8).requires_grad_()
    t = torch.rand(4, 4, generator=g, dtype=torch.float64) * 2 - 1
    w = torch.rand(4, 4, generator=g, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: udmsh_loss(x, t, w, 0.1)["loss"], (u,))


def test_perfect_codes_have_zero_similarity_loss() -> None:
    u = torch.tensor([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, 1.0], [-1.0, -1.0, 1.0, 1.0]])
    t = u @ u.T / 4  # targets equal to the codes' normalised inner products
    terms = udmsh_loss(u, t, torch.ones(3, 3), lam=1.0)
    assert float(terms["loss"]) == 0.0


def _fitted(name: str, **kwargs) -> tuple[L.LightningModule, SyntheticHashingDataModule]:
    model = get_method(name)(n_bits=8, feature_source="pixels", num_pairs=4000, **kwargs)
    dm = SyntheticHashingDataModule(num_classes=4, num_train=48, batch_size=16)
    model.configure_data(num_classes=4, num_train=48, image_shape=(1, 28, 28))
    model.build_pseudo_similarity(dm.train_eval_dataloader(), 48)
    return model, dm


def test_batch_targets_come_from_stored_features_with_three_kinds_of_levels() -> None:
    model, dm = _fitted("UDMSH")
    assert model.pseudo_report["feature_source"] == "pixels"
    batch = next(iter(dm.train_dataloader()))
    c, t, w = model.batch_targets(batch)
    c2, t2, w2 = model.pseudo.targets(batch.index, True, 0.5)
    torch.testing.assert_close(t, t2)
    torch.testing.assert_close(w, w2)
    assert set(w.unique().tolist()) <= {0.5, 1.0}
    assert bool((t[w == 1].abs() == 1).all())
    mid = w == 0.5
    assert bool(mid.any()) and bool((t[mid].abs() <= 1).all())
    # SSDH on the same features and batch: the same +-1 pairs, the middle band dropped.
    ssdh, _ = _fitted("SSDH")
    _, ts, ws = ssdh.batch_targets(batch)
    torch.testing.assert_close(ws, (w == 1).float())
    torch.testing.assert_close(ts[ws == 1], t[w == 1])


def test_pseudo_similarity_groups_synthetic_classes() -> None:
    # The synthetic images are class templates + noise: pixel features must rank same-class pairs as closer.
    model, dm = _fitted("UDMSH")
    batch = next(iter(dm.train_eval_dataloader()))
    c, t, _ = model.batch_targets(batch)
    same = batch.labels @ batch.labels.T > 0
    off = ~torch.eye(len(same), dtype=torch.bool)
    assert float(c[same & off].mean()) > float(c[~same].mean()) + 0.1
    assert float(t[same & off].mean()) > float(t[~same].mean())


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="mid_weight"):
        UDMSH(mid_weight=-1.0)
    with pytest.raises(ValueError, match="feature_source"):
        UDMSH(feature_source="nonsense")


def _train_params(name: str, labels: str, steps: int = 4, **kwargs) -> dict[str, torch.Tensor]:
    L.seed_everything(0, verbose=False)
    dm = SyntheticHashingDataModule(num_classes=4, num_train=48, batch_size=16)
    train = dm.splits["train"]
    if labels == "permuted":
        train.labels = train.labels[torch.randperm(len(train.labels), generator=torch.Generator().manual_seed(9))]
    elif labels == "zero":
        train.labels = torch.zeros_like(train.labels)
    L.seed_everything(0, verbose=False)
    model = get_method(name)(n_bits=8, **kwargs)
    trainer = L.Trainer(
        max_steps=steps,
        limit_val_batches=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, datamodule=dm)
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name", ["UDMSH", "SSDH", "GreedyHashUnsup"])
def test_training_is_label_free(name: str) -> None:
    kwargs = {"feature_source": "pixels", "num_pairs": 4000}
    ref = _train_params(name, "original", **kwargs)
    for variant in ("permuted", "zero"):
        other = _train_params(name, variant, **kwargs)
        assert ref.keys() == other.keys()
        for key in ref:
            assert torch.equal(ref[key], other[key]), f"{name}: {key} changed when training labels were {variant}"


def test_label_free_check_detects_a_supervised_method() -> None:
    # Control: the same check on DPSH (which reads labels) must see different parameters, so it can fail.
    ref, other = _train_params("DPSH", "original"), _train_params("DPSH", "permuted")
    assert any(not torch.equal(ref[k], other[k]) for k in ref if not k.startswith("_banks"))


@pytest.mark.parametrize("name", ["UDMSH", "SSDH", "GreedyHashUnsup"])
def test_rebuild_from_saved_hyperparameters(name: str) -> None:
    # load_from_checkpoint calls the class with its saved hparams, which include the fixed switches.
    cls = get_method(name)
    model = cls(n_bits=8, feature_source="pixels")
    clone = cls(**dict(model.hparams))
    assert clone.multi_level == model.multi_level and clone.mid_weight == model.mid_weight
    assert clone.feature_source == "pixels"
