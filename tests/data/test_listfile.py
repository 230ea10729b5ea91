"""List-file protocols on a tiny generated dataset (PNG images + DeepHash-pytorch list files)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hashbench.data import DatasetNotFoundError, HashBatch, ListFileDataModule
from hashbench.data.formats import parse_list_file


def test_parse_errors(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text("a.png 0 1 0\nb.png 1 0\n")
    with pytest.raises(ValueError, match=r"train.txt:2: expected 3 labels"):
        parse_list_file(path)
    path.write_text("a.png 0 1 0\n\nb.png 1 x 0\n")
    with pytest.raises(ValueError, match=r"train.txt:3: labels must be 0 or 1"):
        parse_list_file(path)
    path.write_text("a.png 0 2 0\n")
    with pytest.raises(ValueError, match=r"train.txt:1: labels must be 0 or 1"):
        parse_list_file(path)
    path.write_text("lonely.png\n")
    with pytest.raises(ValueError, match=r"train.txt:1: expected `relative/path"):
        parse_list_file(path)


def test_list_datamodule(fake_lists):
    dm = ListFileDataModule(
        protocol="nuswide21", batch_size=4, eval_batch_size=5, transform="native", val_fraction=0.25
    )
    dm.prepare_data()
    dm.setup()
    assert dm.num_train == 9 and dm.split_indices["val_query"].size == 3
    assert dm.split_indices["query"].tolist() == list(range(12, 18))
    assert dm.split_indices["database"].tolist() == list(range(18, 38))
    assert set(dm.list_checksums) == {"train.txt", "test.txt", "database.txt"}
    batch = next(iter(dm.test_dataloader()[0]))
    assert isinstance(batch, HashBatch)
    assert batch.image.shape == (5, 3, 64, 64) and batch.labels.shape == (5, 21)
    _, query_labels = parse_list_file(fake_lists / "test.txt")
    torch.testing.assert_close(batch.labels, torch.from_numpy(query_labels[:5]).float())
    train = next(iter(dm.train_dataloader()))
    assert train.image.shape == (4, 3, 64, 64)
    assert dm.verify_data()[-1].startswith("ok")


def test_imagenet_transform_default(fake_lists):
    dm = ListFileDataModule(protocol="nuswide21", batch_size=2, eval_batch_size=2, val_fraction=0)
    dm.setup()
    assert dm.transform_name == "imagenet"
    assert next(iter(dm.train_dataloader())).image.shape == (2, 3, 224, 224)
    assert dm.val_dataloader() == []


def test_label_width_mismatch_between_files(fake_lists):
    lines = (fake_lists / "test.txt").read_text().splitlines()
    (fake_lists / "test.txt").write_text("\n".join(line.rsplit(" ", 1)[0] for line in lines) + "\n")
    with pytest.raises(ValueError, match="disagree on the number of labels"):
        ListFileDataModule(protocol="nuswide21").setup()


def test_protocol_width_mismatch(fake_lists, isolated_root):
    (isolated_root / "nuswide21").rename(isolated_root / "coco")
    with pytest.raises(ValueError, match="expects 80.*--data.num_classes 21"):
        ListFileDataModule(protocol="coco").setup()
    dm = ListFileDataModule(protocol="coco", num_classes=21, transform="native", eval_batch_size=3)
    dm.setup()
    assert dm.num_classes == 21


def test_unreadable_image_names_path(fake_lists):
    bad = fake_lists / "images" / "0012.png"  # first query image
    bad.write_bytes(b"this is not a png")
    dm = ListFileDataModule(protocol="nuswide21", transform="native")
    dm.setup()
    with pytest.raises(OSError, match="0012.png"):
        dm.query_dataset[0]
    bad.unlink()
    with pytest.raises(FileNotFoundError, match="0012.png"):
        dm.query_dataset[0]
    with pytest.raises(FileNotFoundError, match="1 listed images are missing"):
        dm.verify_data()


def test_missing_lists_error(isolated_root):
    with pytest.raises(DatasetNotFoundError) as info:
        ListFileDataModule(protocol="coco").prepare_data()
    message = str(info.value)
    for name in ("train.txt", "test.txt", "database.txt"):
        assert str(isolated_root / "coco" / name) in message
    assert "HashNet" in message


def test_single_label_lists_use_per_class_validation(isolated_root, tmp_path):
    """imagenet100 lists are one-hot: validation is carved per class."""
    directory = isolated_root / "imagenet100"
    directory.mkdir()
    lines = {"train.txt": [], "test.txt": [], "database.txt": []}
    for i in range(100 * 4):
        onehot = ["0"] * 100
        onehot[i % 100] = "1"
        lines["train.txt" if i < 300 else "test.txt"].append(f"img/{i}.png " + " ".join(onehot))
    lines["database.txt"] = lines["train.txt"]
    for name, rows in lines.items():
        (directory / name).write_text("\n".join(rows) + "\n")
    dm = ListFileDataModule(protocol="imagenet100", val_fraction=1 / 3)
    dm.setup()
    pool = dm._pool
    assert pool.class_ids is not None
    assert np.bincount(pool.class_ids[dm.split_indices["val_query"]], minlength=100).tolist() == [1] * 100
