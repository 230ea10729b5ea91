"""Protocol name -> datamodule class, and the factory the CLI uses."""

from __future__ import annotations

import importlib
from typing import Any

from hashbench.data.protocols import get_protocol

#: family -> "module:ClassName" (imported lazily so that reading the table stays cheap).
FAMILY_CLASSES: dict[str, str] = {
    "fashion-mnist": "hashbench.data.fashion_mnist:FashionMNISTDataModule",
    "cifar10": "hashbench.data.cifar:CIFAR10DataModule",
    "svhn": "hashbench.data.svhn:SVHNDataModule",
    "listfile": "hashbench.data.listfile:ListFileDataModule",
    "crossmodal-mat": "hashbench.data.crossmodal:CrossModalMatDataModule",
    "crossmodal-clip": "hashbench.data.crossmodal:CrossModalClipDataModule",
    "fashion-mnist-text": "hashbench.data.synthetic_text:FashionMNISTTextDataModule",
}


def datamodule_class_for(name: str) -> type:
    """The datamodule class that reads protocol ``name``.

    Raises:
        KeyError: unknown protocol (the message lists the known ones).
    """
    module, _, cls = FAMILY_CLASSES[get_protocol(name).family].partition(":")
    return getattr(importlib.import_module(module), cls)


def datamodule_class_path(name: str) -> str:
    """Import path of the datamodule class for ``name`` (what LightningCLI's ``--data`` takes)."""
    module, _, cls = FAMILY_CLASSES[get_protocol(name).family].partition(":")
    return f"hashbench.data.{cls}" if module.startswith("hashbench.data.") else f"{module}.{cls}"


def create_datamodule(name: str, **kwargs: Any) -> Any:
    """Build the datamodule of protocol ``name``; ``kwargs`` go to its constructor.

    Example:
        >>> dm = create_datamodule("fashion-mnist", batch_size=64, train_limit=500)  # doctest: +SKIP
    """
    return datamodule_class_for(name)(protocol=name, **kwargs)
