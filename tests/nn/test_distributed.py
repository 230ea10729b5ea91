"""In-batch losses are exact under DDP: 2 gloo processes with B/2 rows each = 1 process with the batch of B.

For DPSH (memory bank + in-batch column gradient), DSH (pairs), DTSH (triplets) and HyP2 (proxies + in-batch
pairs), each of two CPU processes takes its half of one fixed global batch, computes the method's training loss
(``compute_loss``, which gathers the global batch through ``HashingMethod.global_batch``) and back-propagates;
the parameter gradients are then averaged over the processes as DDP's reducer does. The loss value on each process
and the averaged gradients must equal the one-process loss and gradients of the whole batch.

Tolerance: 1e-5 relative / 1e-6 absolute per gradient entry; the only difference left is the order of float
sums (the all-reduce, the per-half network passes): measured at most 2.2e-6 of each gradient tensor's largest
magnitude, and equal losses to 1e-6 relative.

The network is made per-sample (BatchNorm -> GroupNorm, no dropout, no hash-layer BatchNorm): BatchNorm couples
the rows of a batch through its statistics, which SyncBatchNorm makes global on GPUs only (the table runner sets
``sync_batchnorm`` for multi-GPU cells). A control run with the gather switched off shows the test can fail: the
per-process objective's gradients differ.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from hashbench.bench.testing import per_sample_network
from hashbench.data.batch import HashBatch
from hashbench.nn.distributed import gather_rows
from hashbench.registry import create_method

METHODS = ["DPSH", "DSH", "DTSH", "HyP2"]
GLOBAL_BATCH = 16
NUM_CLASSES = 4
NUM_TRAIN = 40


def _model(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    model = create_method(
        name, n_bits=16, hash_bn=False, in_channels=1, image_size=28, num_classes=NUM_CLASSES, num_train=NUM_TRAIN
    )
    per_sample_network(model)
    model.train()
    return model


def _batch(multi_label: bool = False) -> HashBatch:
    g = torch.Generator().manual_seed(1)
    images = torch.randn(GLOBAL_BATCH, 1, 28, 28, generator=g)
    if multi_label:
        labels = (torch.rand(GLOBAL_BATCH, NUM_CLASSES, generator=g) < 0.4).float()
        labels[labels.sum(1) == 0, 0] = 1.0
    else:
        labels = torch.nn.functional.one_hot(torch.arange(GLOBAL_BATCH) % NUM_CLASSES, NUM_CLASSES).float()
    index = torch.randperm(NUM_TRAIN, generator=g)[:GLOBAL_BATCH]
    return HashBatch(images, labels, index)


def _loss_and_grads(model: torch.nn.Module, batch: HashBatch) -> tuple[float, dict[str, torch.Tensor]]:
    loss = model.compute_loss(batch)["loss"]
    loss.backward()
    grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}
    return float(loss.detach()), grads


def _worker(rank: int, world: int, port: int, out: str, gather: bool, multi_label: bool) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    try:
        results = {}
        batch = _batch(multi_label)
        rows = slice(rank * GLOBAL_BATCH // world, (rank + 1) * GLOBAL_BATCH // world)
        mine = HashBatch(batch.image[rows], batch.labels[rows], batch.index[rows])
        for name in METHODS:
            model = _model(name)
            if not gather:
                model.global_batch = lambda *tensors: tensors  # the per-process objective (control)
            loss, grads = _loss_and_grads(model, mine)
            for grad in grads.values():  # what DDP's reducer does: average the gradients over processes
                dist.all_reduce(grad)
                grad /= world
            losses = [torch.zeros(1) for _ in range(world)]
            dist.all_gather(losses, torch.tensor([loss]))
            results[name] = {"losses": [float(x) for x in losses], "grads": grads}
        if rank == 0:
            torch.save(results, out)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _two_process(tmp_path: Path, gather: bool, multi_label: bool) -> dict:
    out = tmp_path / f"ddp-{gather}-{multi_label}.pt"
    mp.spawn(_worker, args=(2, _free_port(), str(out), gather, multi_label), nprocs=2, join=True)
    return torch.load(out, weights_only=False)


@pytest.mark.parametrize("multi_label", [False, True], ids=["single-label", "multi-label"])
def test_two_processes_optimise_the_one_process_objective(tmp_path: Path, multi_label: bool) -> None:
    two = _two_process(tmp_path, gather=True, multi_label=multi_label)
    for name in METHODS:
        loss, grads = _loss_and_grads(_model(name), _batch(multi_label))
        assert two[name]["losses"] == pytest.approx([loss, loss], rel=1e-5, abs=1e-7), name
        assert set(two[name]["grads"]) == set(grads), name
        for key, grad in grads.items():
            torch.testing.assert_close(two[name]["grads"][key], grad, rtol=1e-5, atol=1e-6, msg=f"{name} {key}")


def test_without_the_gather_the_objective_differs(tmp_path: Path) -> None:
    """Control: per-process in-batch losses give other gradients (so the test above can fail).

    Multi-label data, since HyP2's in-batch pair term covers only images with several labels.
    """
    two = _two_process(tmp_path, gather=False, multi_label=True)
    for name in METHODS:
        _, grads = _loss_and_grads(_model(name), _batch(multi_label=True))
        worst = max(
            float((two[name]["grads"][k] - g).abs().max() / g.abs().max().clamp_min(1e-12)) for k, g in grads.items()
        )
        assert worst > 1e-3, f"{name}: per-process gradients match the global ones ({worst:.2e}); nothing is tested"


def test_gather_rows_is_the_identity_in_one_process() -> None:
    x = torch.randn(3, 5, requires_grad=True)
    (y,) = gather_rows(x)
    assert y is x
