"""Test helpers around the real-format writers of :mod:`hashbench.data.examples` (re-exported here, so the data,
table and paper-rehearsal tests keep one import)."""

from __future__ import annotations

from hashbench.data.examples import (  # noqa: F401  (re-exported for the tests)
    write_cifar10,
    write_clip_protocol,
    write_dcmh_v73,
    write_list_dataset,
    write_png,
    write_svhn,
)


def accept_generated_checksums(monkeypatch, data_root) -> None:
    """Record the md5 of generated CIFAR-10 / SVHN files under ``data_root`` as the published ones.

    Tests write small files in the real on-disk formats; their checksums differ from the real datasets', which
    the table preflight (rightly) refuses. This stands in for the real files' records, for one test.
    """
    from pathlib import Path

    from torchvision.datasets import CIFAR10, SVHN

    from hashbench.data.cifar import md5_file

    batches = Path(data_root) / "cifar10" / "cifar-10-batches-py"
    if batches.is_dir():
        monkeypatch.setattr(CIFAR10, "train_list", [[n, md5_file(batches / n)] for n, _ in CIFAR10.train_list])
        monkeypatch.setattr(CIFAR10, "test_list", [[n, md5_file(batches / n)] for n, _ in CIFAR10.test_list])
    svhn = Path(data_root) / "svhn"
    if svhn.is_dir():
        table = {k: [url, name, md5_file(svhn / name)] for k, (url, name, _) in SVHN.split_list.items() if k != "extra"}
        monkeypatch.setattr(SVHN, "split_list", {**SVHN.split_list, **table})
