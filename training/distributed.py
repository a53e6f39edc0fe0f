"""Ranks, devices and the few collectives training needs (torchrun; NCCL on CUDA, gloo elsewhere)."""
import os
from dataclasses import dataclass
from typing import Dict

import torch
import torch.distributed as dist
from torch import nn

from utils.device import is_cuda, resolve_device


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
        if is_cuda(device):
            torch.cuda.set_device(device)
            dist.init_process_group(backend="nccl", device_id=device)
        else:
            dist.init_process_group(backend="gloo")
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def single_process(device: torch.device) -> DistInfo:
    """The DistInfo of a run in this process alone (tools, tests, benchmarks)."""
    return DistInfo(rank=0, world_size=1, local_rank=0, device=device)


def close_distributed(wait_for_all: bool = False) -> None:
    """Leave the process group (a no-op when there is none). `wait_for_all` (a normal end) meets every rank at a
    barrier first, so that no rank tears its connections down while another still uses them; after an error
    the others may never arrive, so it does not wait."""
    if dist.is_initialized():
        if wait_for_all:
            dist.barrier()
        dist.destroy_process_group()


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
