"""Data layer: the protocol table, datamodules per dataset family, readers and committed split files.

Example:
    >>> from hashbench.data import create_datamodule  # doctest: +SKIP
    >>> dm = create_datamodule("fashion-mnist", batch_size=128)  # doctest: +SKIP
    >>> dm.prepare_data(); dm.setup()  # doctest: +SKIP
    >>> batch = next(iter(dm.train_dataloader()))  # HashBatch(image, labels, index)  # doctest: +SKIP
"""

from hashbench.data.base import HashingDataModule
from hashbench.data.batch import CrossModalBatch, HashBatch
from hashbench.data.cifar import CIFAR10DataModule
from hashbench.data.crossmodal import CrossModalClipDataModule, CrossModalMatDataModule
from hashbench.data.fashion_mnist import FashionMNISTDataModule
from hashbench.data.listfile import ListFileDataModule
from hashbench.data.protocols import PROTOCOLS, Protocol, get_protocol, list_protocols
from hashbench.data.registry import create_datamodule, datamodule_class_for, datamodule_class_path
from hashbench.data.roots import DatasetNotFoundError
from hashbench.data.splits import SplitChecksumError
from hashbench.data.svhn import SVHNDataModule

__all__ = [
    "CIFAR10DataModule",
    "CrossModalBatch",
    "CrossModalClipDataModule",
    "CrossModalMatDataModule",
    "DatasetNotFoundError",
    "FashionMNISTDataModule",
    "HashBatch",
    "HashingDataModule",
    "ListFileDataModule",
    "PROTOCOLS",
    "Protocol",
    "SVHNDataModule",
    "SplitChecksumError",
    "create_datamodule",
    "datamodule_class_for",
    "datamodule_class_path",
    "get_protocol",
    "list_protocols",
]
