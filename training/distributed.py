"""Ranks, devices and the few collectives training needs (torchrun; NCCL on CUDA, gloo elsewhere)."""
import os
from dataclasses import dataclass
from typing import Callable, Dict, Optional, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from utils.device import is_cuda, resolve_device
from utils.errors import UserError

T = TypeVar("T")


@dataclass
class DistInfo:
    rank: int
    world_size: int
    local_rank: int
    device: torch.device


def init_distributed(device_name: str) -> DistInfo:
    """Rank and world from torchrun's environment (single process otherwise); NCCL on CUDA, gloo elsewhere."""
    rank = int(os.environ.get("RANK", 0))
    world_size = int(os.environ.get("WORLD_SIZE", 1))
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    device = resolve_device(device_name, local_rank)
    if world_size > 1 and not dist.is_initialized():
        # Imported before the group exists: imported after it (as the first optimizer does), torch.distributed._shard
        # takes references to the default group that destroy_process_group cannot drop (measured: 10), the group
        # outlives close_distributed and its gloo threads the interpreter (see close_distributed).
        import torch._dynamo  # noqa: F401
        if is_cuda(device):
            torch.cuda.set_device(device)
            dist.init_process_group(backend="nccl", device_id=device)
        else:
            dist.init_process_group(backend="gloo")
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def single_process(device: torch.device) -> DistInfo:
    """The DistInfo of a run in this process alone (tools, tests, benchmarks)."""
    return DistInfo(rank=0, world_size=1, local_rank=0, device=device)


# The gloo group of CPU votes (largest_vote) on NCCL runs; the default group itself on gloo runs.
_cpu_group = None


def largest_vote(vote: int, info: DistInfo) -> int:
    """The largest of every rank's `vote`, through gloo on the CPU (asking never waits for a GPU); every rank must
    call this at the same points."""
    global _cpu_group
    if info.world_size == 1:
        return vote
    if _cpu_group is None:
        _cpu_group = dist.new_group(backend="gloo") if dist.get_backend() != "gloo" else dist.group.WORLD
    votes = torch.tensor([vote])
    dist.all_reduce(votes, op=dist.ReduceOp.MAX, group=_cpu_group)
    return int(votes.item())


def close_distributed(wait_for_all: bool = False) -> None:
    """Leave the process group (a no-op when there is none). `wait_for_all` (a normal end) meets every rank at a
    barrier first, so that no rank tears its connections down while another still uses them; after an error
    the others may never arrive, so it does not wait.

    No reference to a group may outlive this: a ProcessGroupGloo that is still referenced keeps its worker threads
    after destroy_process_group, and when the interpreter exits one of them frees the barrier's work (and its
    tensors) while Python is being torn down, which aborts the process ("terminate called without an active
    exception", exit -6) after a run that went well. Hence the vote's group is let go here, and init_distributed
    imports torch._dynamo before the group exists."""
    global _cpu_group
    _cpu_group = None
    if dist.is_initialized():
        if wait_for_all:
            dist.barrier()
        dist.destroy_process_group()


def on_rank_zero(info: DistInfo, compute: Callable[[], T]) -> T:
    """`compute()` run by rank 0 alone (validating and naming a run, choosing a file name, writing a dataset); every
    rank gets its result, or its UserError, so that all stop with the same one-line message instead of waiting."""
    outcome: Optional[T] = None
    problem: Optional[UserError] = None
    if info.rank == 0:
        try:
            outcome = compute()
        except UserError as err:
            problem = err
    if info.world_size > 1:
        shared = [outcome, problem]
        dist.broadcast_object_list(shared, src=0)
        outcome, problem = shared
    if problem is not None:
        raise problem
    return outcome


def broadcast_module(model: nn.Module) -> None:
    """Rank 0's parameters and buffers on every rank."""
    with torch.no_grad():
        for tensor in list(model.parameters()) + list(model.buffers()):
            dist.broadcast(tensor, src=0)


def all_reduce_gradients(model: nn.Module, world_size: int) -> None:
    """Sum dense gradients over ranks with one flat all-reduce (one collective, not one per tensor).

    A sum, not a mean: each rank's loss is already divided by the *global* batch size, so the sum over ranks is
    exactly the single-process gradient of the global batch.
    """
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    if world_size == 1 or not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    torch._foreach_copy_(grads, [chunk.view_as(g) for chunk, g in zip(flat.split([g.numel() for g in grads]),
                                                                        grads)])


def reduce_metric_sums(metrics: Dict[str, torch.Tensor], info: DistInfo) -> Dict[str, float]:
    """Sum metric values over ranks onto rank 0 (others get {})."""
    keys = sorted(metrics)
    values = torch.stack([metrics[k].to(torch.float64) for k in keys])
    if info.world_size > 1:
        dist.reduce(values, dst=0)
    return dict(zip(keys, values.tolist())) if info.rank == 0 else {}
