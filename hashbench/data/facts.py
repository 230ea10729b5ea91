"""The facts a hashing method learns from its data, in one frozen object.

Every hashbench datamodule provides ``dm.facts`` (after ``setup``); :meth:`hashbench.methods.HashingMethod.setup`
reads it and hands it to ``configure_data`` in one call, so a method never reads dataset attributes one by one.

Example:
    >>> from hashbench.data.facts import DataFacts
    >>> facts = DataFacts(num_classes=10, num_train=4500, image_shape=(1, 28, 28), protocol="fashion-mnist")
    >>> facts.single_label, facts.modality
    (True, 'image')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["DataFacts", "MODALITIES", "facts_of"]

MODALITIES = ("image", "image-text")


@dataclass(frozen=True)
class DataFacts:
    """What a method needs to know about the data it trains on.

    Attributes:
        num_classes: width of the multi-hot label vector.
        num_train: size of the training set actually trained on (after the validation carve-out and limits);
            memory banks are this long.
        image_shape: ``(channels, height, width)`` of the images the loaders yield (``None``: not known).
        multi_label: whether an item can carry several labels.
        map_k: the protocol's mAP cut-off (``None`` = the whole database).
        modality: ``"image"`` or ``"image-text"``.
        text_dim: length of bag-of-words text vectors (``None``: no text, or token-id text).
        protocol: the protocol's name (``""`` when the facts were given by hand).
    """

    num_classes: int
    num_train: int
    image_shape: tuple[int, int, int] | None = None
    multi_label: bool = False
    map_k: int | None = None
    modality: str = "image"
    text_dim: int | None = None
    protocol: str = ""

    def __post_init__(self) -> None:
        if self.num_classes < 1:
            raise ValueError(f"DataFacts.num_classes must be positive, got {self.num_classes}")
        if self.num_train < 0:
            raise ValueError(f"DataFacts.num_train must be >= 0, got {self.num_train}")
        if self.image_shape is not None:
            shape = tuple(int(v) for v in self.image_shape)
            if len(shape) != 3 or min(shape) < 1:
                raise ValueError(f"DataFacts.image_shape must be (channels, height, width), got {self.image_shape}")
            object.__setattr__(self, "image_shape", shape)
        if self.modality not in MODALITIES:
            raise ValueError(f"DataFacts.modality must be one of {MODALITIES}, got {self.modality!r}")
        if self.map_k is not None and self.map_k < 1:
            raise ValueError(f"DataFacts.map_k must be positive or None, got {self.map_k}")
        if not self.text_dim:
            object.__setattr__(self, "text_dim", None)

    @property
    def single_label(self) -> bool:
        """Whether every item carries exactly one label."""
        return not self.multi_label


def facts_of(datamodule: Any) -> DataFacts:
    """``datamodule.facts``, with a message that says what is missing when a datamodule does not provide it.

    Raises:
        TypeError: the datamodule has no ``facts`` (it is not a hashbench datamodule).
    """
    facts = getattr(datamodule, "facts", None)
    if not isinstance(facts, DataFacts):
        raise TypeError(
            f"{type(datamodule).__name__} does not provide hashbench's data facts: a datamodule used with a "
            "hashbench method needs a `facts` property returning hashbench.data.DataFacts (subclass "
            "hashbench.data.HashingDataModule, or add the property), or call model.configure_data(DataFacts(...)) "
            "before training"
        )
    return facts
