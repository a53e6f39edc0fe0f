"""Per-puzzle embedding table trained with a sparse SignSGD (docs/DESIGN.md §5).

The table can hold ~1M rows (ARC with 1000 augmentations per task), and a batch touches a few hundred of them.
Keeping it out of the dense optimizer (a buffer, not a Parameter) avoids AdamATan2 moments and a dense
all-reduce for a table that is mostly untouched each step.
"""
from typing import Iterable

import torch
import torch.distributed as dist
from torch import nn

from models.common import trunc_normal_init_


class CastedSparseEmbedding(nn.Module):
    def __init__(self, num_embeddings: int, embedding_dim: int, batch_size: int, init_std: float,
                 cast_to: torch.dtype):
        super().__init__()
        self.cast_to = cast_to
        self.weights = nn.Buffer(trunc_normal_init_(torch.empty(num_embeddings, embedding_dim), std=init_std),
                                 persistent=True)
        # Training forward copies the batch's rows here; autograd fills local_weights.grad, which the
        # optimizer scatters back into `weights`. Not saved: they only live for one step.
        self.local_weights = nn.Buffer(torch.zeros(batch_size, embedding_dim, requires_grad=True),
                                       persistent=False)
        self.local_ids = nn.Buffer(torch.zeros(batch_size, dtype=torch.int32), persistent=False)
        # With gradient accumulation a step's batch arrives as micro-batches: each fills its own slice of the local
        # rows (the trainer sets where), so the optimizer sees the whole batch's rows and gradients at once.
        self.row_offset = 0

    def _apply(self, fn, recurse=True):
        # Moving a buffer that requires grad (`.to(device)`) yields a non-leaf copy whose .grad would never be
        # filled; make the moved local rows a leaf again.
        super()._apply(fn, recurse)
        self.local_weights = self.local_weights.detach().requires_grad_(True)
        return self

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        if not self.training or not torch.is_grad_enabled():  # no gradient to collect (evaluation, HRM's Q target)
            return self.weights[ids].to(self.cast_to)
        start, rows, size = self.row_offset, ids.shape[0], self.local_weights.shape[0]
        if size % rows or start + rows > size:
            raise ValueError(f"training batch has {rows} rows (at row {start}) but the puzzle embedding was built "
                             f"for batch_size={size}, filled by whole micro-batches")
        with torch.no_grad():
            self.local_weights[start:start + rows].copy_(self.weights[ids])
            self.local_ids[start:start + rows].copy_(ids)
        return self.local_weights[start:start + rows].to(self.cast_to)


class CastedSparseEmbeddingSignSGD_Distributed(torch.optim.Optimizer):
    """SignSGD with decoupled weight decay on the rows touched by the batch, identical on every rank.

    Construct with the embedding module's buffers (`module.buffers()`): it finds the table, the local rows
    (the one that requires grad) and their ids. The learning rate is set by the training loop every step.
    """

    def __init__(self, buffers: Iterable[torch.Tensor], world_size: int, lr: float = 1e-3,
                 weight_decay: float = 1e-2):
        if lr < 0 or weight_decay < 0:
            raise ValueError(f"lr and weight_decay must be >= 0, got lr={lr}, weight_decay={weight_decay}")
        super().__init__(list(buffers), dict(lr=lr, weight_decay=weight_decay, world_size=world_size))

    @torch.no_grad()
    def step(self, closure=None):
        if closure is not None:
            raise NotImplementedError("closures are not supported by the sparse embedding optimizer")
        for group in self.param_groups:
            local_grad = local_ids = weights = None
            for p in group["params"]:
                if p.requires_grad:
                    local_grad = p.grad
                elif p.ndim == 1:
                    local_ids = p
                elif p.ndim == 2:
                    weights = p
            if local_ids is None or weights is None:
                raise ValueError("pass CastedSparseEmbedding.buffers() to the sparse embedding optimizer")
            if local_grad is None:  # no backward through the embedding this step
                continue
            _sparse_signsgd_update(local_grad, local_ids, weights, group["lr"], group["weight_decay"],
                                   group["world_size"])


def _sparse_signsgd_update(local_grad: torch.Tensor, local_ids: torch.Tensor, weights: torch.Tensor, lr: float,
                           weight_decay: float, world_size: int) -> None:
    grads, ids = local_grad, local_ids
    if world_size > 1:
        # Every rank gathers all ranks' rows so that each applies the same update to the same rows.
        grads = torch.empty((world_size * local_grad.shape[0], local_grad.shape[1]), dtype=local_grad.dtype,
                            device=local_grad.device)
        ids = torch.empty(world_size * local_ids.shape[0], dtype=local_ids.dtype, device=local_ids.device)
        dist.all_gather_into_tensor(grads, local_grad)
        dist.all_gather_into_tensor(ids, local_ids)

    # A puzzle seen by several rows (or ranks) gets the sign of its summed gradient, once. The sums per id are
    # built without torch.unique, whose data-dependent output size would make the GPU wait for the host: sort
    # the ids, number the runs of equal ids, and sum into one slot per run in a buffer of static size.
    sorted_ids, order = torch.sort(ids.to(torch.int64))
    run_start = torch.ones_like(sorted_ids, dtype=torch.bool)
    run_start[1:] = sorted_ids[1:] != sorted_ids[:-1]
    run = torch.cumsum(run_start, 0) - 1
    summed = torch.zeros_like(grads).index_add_(0, run, grads[order])
    run_ids = torch.zeros_like(sorted_ids).scatter_(0, run, sorted_ids)
    # Slots past the last run are unused: they repeat slot 0 (same id, same sum), so writing them back writes
    # identical values twice.
    used = torch.arange(run.shape[0], device=run.device) <= run[-1]
    run_ids = torch.where(used, run_ids, run_ids[0])
    summed = torch.where(used.unsqueeze(-1), summed, summed[0])

    rows = weights[run_ids]
    rows.mul_(1.0 - lr * weight_decay).add_(torch.sign(summed), alpha=-lr)
    weights.index_copy_(0, run_ids, rows)
