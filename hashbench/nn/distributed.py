"""Gathering a training batch across DDP processes, so in-batch losses see the global batch.

Under DDP each process holds ``B / world`` rows of the global batch of ``B``. A loss over in-batch pairs, triplets
or proxies computed on those rows alone optimises a different objective from the one-process run: it sees
``(B / world)^2`` of the ``B^2`` pairs. :func:`gather_rows` concatenates every process's rows (rank order) so each
process computes the loss of the whole global batch, and routes the gradient back to this process's own rows.

Why the gradients come out exact: every process computes the same global loss ``L``; the backward of the gather
sums over processes the gradient each computed for this process's rows (an all-reduce), giving
``world * dL/du_local``; DDP then averages the parameter gradients over the ``world`` processes, which leaves
``sum_r dL/du_r * du_r/dtheta = dL/dtheta``, the one-process gradient of the global batch (up to the order of
floating-point sums).

Outside an initialised process group with more than one process, everything here is the identity.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor

__all__ = ["world_size", "gather_rows"]


def world_size() -> int:
    """Number of processes of the default process group (1 when none is initialised)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


class _GatherRows(torch.autograd.Function):
    """All-gather along dim 0 (rows may differ in count between processes); backward = sum-reduce, own slice."""

    @staticmethod
    def forward(ctx, tensor: Tensor) -> Tensor:  # type: ignore[override]
        world = dist.get_world_size()
        rank = dist.get_rank()
        count = torch.tensor([tensor.shape[0]], device=tensor.device, dtype=torch.long)
        counts = [torch.zeros_like(count) for _ in range(world)]
        dist.all_gather(counts, count)
        sizes = [int(c.item()) for c in counts]
        longest = max(sizes)
        padded = tensor
        if tensor.shape[0] < longest:  # all_gather needs equal shapes: pad, then cut the padding off
            pad = tensor.new_zeros((longest - tensor.shape[0], *tensor.shape[1:]))
            padded = torch.cat([tensor, pad])
        parts = [torch.empty_like(padded) for _ in range(world)]
        dist.all_gather(parts, padded.contiguous())
        ctx.sizes = sizes
        ctx.rank = rank
        return torch.cat([part[:size] for part, size in zip(parts, sizes, strict=True)])

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        grad = grad.contiguous().clone()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        start = sum(ctx.sizes[: ctx.rank])
        return grad[start : start + ctx.sizes[ctx.rank]]


def gather_rows(*tensors: Tensor) -> tuple[Tensor, ...]:
    """Every process's rows of each tensor, concatenated in rank order (the identity in one process).

    Tensors that require gradients keep them: the gradient reaching this process's rows is the sum over processes
    (see the module docstring for why that makes DDP's averaged gradient the global-batch gradient). Integer and
    other non-differentiable tensors (labels, indices) are gathered without autograd.

    Example:
        >>> u, labels = gather_rows(torch.zeros(4, 16), torch.ones(4, 10))  # one process: unchanged
        >>> u.shape
        torch.Size([4, 16])
    """
    if world_size() <= 1:
        return tensors
    out = []
    for tensor in tensors:
        if tensor.requires_grad:
            out.append(_GatherRows.apply(tensor))
        else:
            with torch.no_grad():
                out.append(_GatherRows.apply(tensor))
    return tuple(out)
