"""The offline cross-modal protocol: synthetic texts and the FashionMNISTTextDataModule (synthetic images here; the
real Fashion-MNIST path is marked ``data``)."""

from __future__ import annotations

import pytest
import torch

from hashbench.data.batch import CrossModalBatch
from hashbench.data.synthetic_text import PROTOCOL_NAME, FashionMNISTTextDataModule, SyntheticTexts


def test_texts_are_class_words_plus_noise() -> None:
    texts = SyntheticTexts(
        pool_size=200,
        num_classes=4,
        vocab_size=60,
        words_per_class=8,
        class_words=3,
        noise_words=2,
        text_noise=0.0,
        seed=1,
    )
    labels = torch.eye(4)[torch.arange(200) % 4]
    ids = texts.word_ids(torch.arange(200), labels)
    assert ids.shape == (200, 5)
    for i in range(200):
        own = set(texts.class_vocab[i % 4].tolist())
        assert set(ids[i, :3].tolist()) <= own and len(set(ids[i, :3].tolist())) == 3
    bow = texts.bow(torch.arange(200), labels)
    assert bow.shape == (200, 60) and set(bow.unique().tolist()) <= {0.0, 1.0}
    assert bool((bow.sum(1) >= 3).all()) and bool((bow.sum(1) <= 5).all())


def test_text_noise_swaps_the_class_at_the_given_rate() -> None:
    n = 4000
    texts = SyntheticTexts(
        pool_size=n,
        num_classes=10,
        vocab_size=300,
        words_per_class=10,
        class_words=4,
        noise_words=0,
        text_noise=0.25,
        seed=0,
    )
    labels = torch.eye(10)[torch.arange(n) % 10]
    ids = texts.word_ids(torch.arange(n), labels)
    own = [set(texts.class_vocab[i % 10].tolist()) for i in range(n)]
    outside = sum(not set(ids[i].tolist()) <= own[i] for i in range(n))
    # A swapped text can still fall inside its own class's words only when the vocabularies overlap heavily.
    assert 0.2 < outside / n < 0.3


def test_texts_are_deterministic_and_depend_only_on_the_item() -> None:
    a = SyntheticTexts(pool_size=50, num_classes=3, seed=4)
    b = SyntheticTexts(pool_size=50, num_classes=3, seed=4)
    labels = torch.eye(3)[torch.arange(50) % 3]
    rows = torch.tensor([7, 3, 41])
    assert torch.equal(a.bow(rows, labels[rows]), b.bow(rows, labels[rows]))
    # Batch composition does not matter.
    assert torch.equal(a.bow(rows[1:], labels[rows[1:]]), a.bow(rows, labels[rows])[1:])
    assert not torch.equal(a.bow(rows, labels[rows]), SyntheticTexts(50, 3, seed=5).bow(rows, labels[rows]))
    assert a.captions(rows[:1], labels[rows[:1]])[0].startswith("word")


def test_text_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="class_words"):
        SyntheticTexts(10, 3, words_per_class=4, class_words=5)
    with pytest.raises(ValueError, match="words_per_class"):
        SyntheticTexts(10, 3, vocab_size=5, words_per_class=6)
    with pytest.raises(IndexError, match="out of range"):
        SyntheticTexts(10, 3).bow(torch.tensor([10]), torch.eye(3)[:1])


def test_datamodule_contract_with_synthetic_images() -> None:
    dm = FashionMNISTTextDataModule(
        image_source="synthetic", batch_size=16, synthetic_sizes=(3, 10, 7), val_fraction=0.2, seed=0
    )
    assert dm.protocol.name == PROTOCOL_NAME and dm.protocol.map_k is None
    assert (dm.num_classes, dm.multi_label, dm.text_dim, dm.image_shape) == (10, False, 200, (1, 28, 28))
    dm.setup()
    assert dm.num_train == 80 and len(dm.split_indices["val_query"]) == 20
    assert len(dm.split_indices["query"]) == 30 and len(dm.split_indices["database"]) == 70
    batch = next(iter(dm.train_dataloader()))
    assert isinstance(batch, CrossModalBatch)
    assert batch.image.shape == (16, 1, 28, 28) and batch.text.shape == (16, 200) and batch.labels.shape == (16, 10)
    assert int(batch.index.max()) < dm.num_train
    query, database = dm.test_dataloader()
    assert sum(len(b.index) for b in query) == 30 and sum(len(b.index) for b in database) == 70
    assert len(dm.val_dataloader()) == 2
    # The text of a training pair is the text of its pool item.
    rows = torch.as_tensor(dm.split_indices["train"])[batch.index]
    assert torch.equal(batch.text, dm.texts.bow(rows, batch.labels))
    assert dm.train_labels().shape == (80, 10)


def test_token_text_format() -> None:
    dm = FashionMNISTTextDataModule(
        image_source="synthetic", text_format="tokens", context_length=16, synthetic_sizes=(2, 4, 2), batch_size=8
    )
    assert dm.text_dim == 0
    batch = next(iter(dm.train_dataloader()))
    assert batch.text.dtype == torch.int64 and batch.text.shape == (8, 16)
    assert bool((batch.text[:, 0] == 49406).all())  # CLIP's start-of-text token


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="fashion-mnist-text"):
        FashionMNISTTextDataModule(protocol="fashion-mnist", image_source="synthetic")
    with pytest.raises(ValueError, match="text_format"):
        FashionMNISTTextDataModule(text_format="words", image_source="synthetic")
    with pytest.raises(ValueError, match="image_source"):
        FashionMNISTTextDataModule(image_source="cifar")


@pytest.mark.data
def test_real_fashion_mnist_images() -> None:
    from hashbench.data.fashion_mnist import fashion_mnist_available

    if not fashion_mnist_available():
        pytest.skip("Fashion-MNIST files not found")
    dm = FashionMNISTTextDataModule(batch_size=64, download=False)
    dm.setup()
    assert dm.num_train == 4500 and len(dm.split_indices["database"]) == 64000
    batch = next(iter(dm.train_dataloader()))
    assert batch.image.shape == (64, 1, 28, 28) and batch.text.shape == (64, 200)
