"""Data layer: the protocol table, one registered datamodule per dataset family, readers and committed split files.

Example:
    >>> from hashbench.data import create_datamodule  # doctest: +SKIP
    >>> dm = create_datamodule("fashion-mnist", batch_size=128)  # doctest: +SKIP
    >>> dm.prepare_data(); dm.setup()  # doctest: +SKIP
    >>> dm.facts  # DataFacts(num_classes=10, num_train=4500, image_shape=(1, 28, 28), ...)  # doctest: +SKIP
    >>> batch = next(iter(dm.train_dataloader()))  # HashBatch(image, labels, index)  # doctest: +SKIP

Importing this package imports every built-in family module, which registers its datamodule class
(:func:`register_datamodule`); a new family is one more module (see CONTRIBUTING.md).
"""

from hashbench.data.base import HashingDataModule, Pool
from hashbench.data.batch import CrossModalBatch, HashBatch
from hashbench.data.cifar import CIFAR10DataModule
from hashbench.data.crossmodal import CrossModalClipDataModule, CrossModalMatDataModule
from hashbench.data.facts import DataFacts, facts_of
from hashbench.data.fashion_mnist import FashionMNISTDataModule
from hashbench.data.listfile import ListFileDataModule
from hashbench.data.protocols import PROTOCOLS, Protocol, get_protocol, list_protocols, register_protocol
from hashbench.data.registry import (
    create_datamodule,
    datamodule_class_for,
    datamodule_class_path,
    get_datamodule,
    list_datamodules,
    register_datamodule,
)
from hashbench.data.roots import DataChecksumError, DatasetNotFoundError
from hashbench.data.splits import SplitChecksumError
from hashbench.data.svhn import SVHNDataModule
from hashbench.data.synthetic_text import FashionMNISTTextDataModule

__all__ = [
    "CIFAR10DataModule",
    "CrossModalBatch",
    "CrossModalClipDataModule",
    "CrossModalMatDataModule",
    "DataFacts",
    "DataChecksumError",
    "DatasetNotFoundError",
    "FashionMNISTDataModule",
    "FashionMNISTTextDataModule",
    "HashBatch",
    "HashingDataModule",
    "ListFileDataModule",
    "PROTOCOLS",
    "Pool",
    "Protocol",
    "SVHNDataModule",
    "SplitChecksumError",
    "create_datamodule",
    "datamodule_class_for",
    "datamodule_class_path",
    "facts_of",
    "get_datamodule",
    "get_protocol",
    "list_datamodules",
    "list_protocols",
    "register_datamodule",
    "register_protocol",
]
