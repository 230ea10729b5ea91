"""The protocol table and the name -> datamodule mapping."""

from __future__ import annotations

import inspect

import pytest

from hashbench.data import (
    PROTOCOLS,
    HashingDataModule,
    create_datamodule,
    datamodule_class_for,
    get_protocol,
    list_protocols,
)

EXPECTED = [
    "fashion-mnist",
    "cifar10",
    "cifar10-1",
    "cifar10-2",
    "svhn",
    "nuswide21",
    "coco",
    "imagenet100",
    "mirflickr",
    "mirflickr25k-dcmh",
    "nuswide10-dcmh",
    "mirflickr25k-clip",
    "nuswide21-clip",
    "coco-clip",
    "fashion-mnist-text",
]
BASE_ARGS = [
    "protocol",
    "root",
    "batch_size",
    "eval_batch_size",
    "num_workers",
    "val_fraction",
    "seed",
    "transform",
    "image_size",
    "class_aware_sampler",
    "train_limit",
    "eval_limit",
]


def test_table_has_every_protocol():
    assert list_protocols() == EXPECTED
    assert set(PROTOCOLS) == set(EXPECTED)


def test_unknown_protocol_lists_names():
    with pytest.raises(KeyError, match="fashion-mnist"):
        get_protocol("cifar100")


@pytest.mark.parametrize("name", EXPECTED)
def test_attributes_known_without_data(name, isolated_root):
    """num_classes / image_shape / multi_label / protocol come from the table, before any data is read."""
    dm = create_datamodule(name)
    proto = get_protocol(name)
    if proto.family == "fashion-mnist-text":
        # A wrapper around the fashion-mnist HashingDataModule (same split and transforms) that adds the texts.
        assert isinstance(dm._images, HashingDataModule)
    else:
        assert isinstance(dm, HashingDataModule)
    assert dm.protocol is proto
    assert dm.num_classes == proto.num_classes
    assert dm.multi_label == proto.multi_label
    assert dm.map_k == proto.map_k
    assert len(dm.image_shape) == 3
    with pytest.raises(RuntimeError, match="setup"):
        _ = dm.num_train


@pytest.mark.parametrize("name", EXPECTED)
def test_constructor_signature(name):
    """Every class takes the shared arguments, fully type-hinted (as LightningCLI sees them: a family's own options
    come first and the base class's arguments through ``**kwargs``), and defaults to one of its protocols."""
    from jsonargparse import ArgumentParser

    cls = datamodule_class_for(name)
    parser = ArgumentParser()
    parser.add_class_arguments(cls, "data")
    options = [a.dest.removeprefix("data.") for a in parser._actions if a.dest.startswith("data.")]
    assert set(BASE_ARGS) <= set(options)
    own = inspect.signature(cls.__init__).parameters
    assert all(p.annotation is not inspect.Parameter.empty for k, p in own.items() if k not in ("self", "kwargs"))
    assert get_protocol(cls.default_protocol).family == get_protocol(name).family
    assert cls(**{"protocol": None}).protocol.name == cls.default_protocol


def test_shapes_per_transform(isolated_root):
    assert create_datamodule("fashion-mnist").image_shape == (1, 28, 28)
    assert create_datamodule("fashion-mnist", transform="imagenet").image_shape == (3, 224, 224)
    assert create_datamodule("cifar10").image_shape == (3, 32, 32)
    assert create_datamodule("cifar10", image_size=64).image_shape == (3, 64, 64)
    assert create_datamodule("coco").image_shape == (3, 224, 224)  # auto = imagenet for photos
    assert create_datamodule("coco", transform="native").image_shape == (3, 64, 64)
    assert create_datamodule("coco-clip").image_shape == (3, 224, 224)


def test_bad_arguments(isolated_root):
    with pytest.raises(ValueError, match="CIFAR10DataModule"):
        datamodule_class_for("fashion-mnist")(protocol="cifar10")
    with pytest.raises(ValueError, match="val_fraction"):
        create_datamodule("fashion-mnist", val_fraction=1.0)
    with pytest.raises(ValueError, match="transform"):
        create_datamodule("fashion-mnist", transform="bogus")
    with pytest.raises(ValueError, match="multi-label"):
        create_datamodule("coco", class_aware_sampler=4)
    with pytest.raises(ValueError, match="batch_size"):
        create_datamodule("fashion-mnist", batch_size=0)
