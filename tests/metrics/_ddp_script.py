"""Run HashingRetrieval in 2 CPU processes (gloo) and save each rank's result; used by test_retrieval.py.

A separate script because spawned children must import the worker function by a module path that does not
depend on how pytest imported the test module.
"""

from __future__ import annotations

import os
import socket
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from hashbench.metrics import HashingRetrieval

KW = {"ks": (None, 25), "radius": 2, "ns": (10,), "pr_curve": True}


def make_data() -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(8)
    nq, nd, bits = 23, 97, 12
    ql = (torch.rand(nq, 5, generator=gen) < 0.3).long()
    dl = (torch.rand(nd, 5, generator=gen) < 0.3).long()
    q = torch.randint(0, 2, (nq, bits), generator=gen).float() * 2 - 1
    d = torch.randint(0, 2, (nd, bits), generator=gen).float() * 2 - 1
    return q, d, ql, dl


def worker(rank: int, world: int, port: int, out_dir: str) -> None:
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        q, d, ql, dl = make_data()
        metric = HashingRetrieval(**KW)
        # Uneven, interleaved shards, as a DistributedSampler without padding would produce.
        for role, codes, labels in (("query", q, ql), ("database", d, dl)):
            shard = torch.arange(codes.shape[0])[rank::world]
            metric.update(codes[shard], labels[shard], role=role)
        torch.save(metric.compute(), os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    mp.spawn(worker, args=(2, free_port(), sys.argv[1]), nprocs=2, join=True)
