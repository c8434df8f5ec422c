"""Parameter sync between data-parallel workers that each hold the whole state: sparse deltas.

Each worker trains a private copy of a (rows, D) state between syncs. At a sync, every worker
turns its copy into its delta since the last sync (state - anchor) and all workers apply one
combination of the deltas to the anchor, so all hold the same state again. Only the rows some
worker changed travel, in two all-reduces of a fixed layout:

    1. (rows, 2) float32: per row, how many workers changed it (a row's delta is nonzero: a row
       diff against the anchor, so no kernel has to report what it touched) and Σ_i |δ_i|²;
    2. (U, D): the summed deltas of the U rows some worker changed, in row order.

Combinations (`combine`), per row r changed by k_r of the N workers:
    sum       Σ δ_i          every update made anywhere applied once (Hogwild, only later); a row
                             every worker moves towards the same place (a frequent word) moves N×
    touched   Σ δ_i / k_r    sum for a row one worker moved, the mean for a row all moved
    mean      Σ δ_i / N      model averaging (BlazingText's multi-GPU sync): every update scaled 1/N
    aligned   Σ δ_i / max(1, |Σ δ_i|² / Σ |δ_i|²)
                             the divisor is how many workers moved the row the same way: ~1 for
                             one mover or independent (orthogonal) changes, which sum as Hogwild
                             would, N for N equal changes (a row all pulled to one place)

"sum" of the touched rows equals the dense all-reduce of the whole delta exactly (the other rows'
deltas are zeros). The payload per sync is rows × 8 + U × D × 4 bytes against rows × D × 4 dense.
The all-reduce is a function (a tensor summed in place across the workers): torch.distributed's
in Ray Train, LocalAllReduce's for N logical workers in one process (benchmarks/sync_schemes.py, tests).
"""
from __future__ import annotations

import threading
from collections.abc import Callable

import torch
import torch.distributed as dist

COMBINES = ("sum", "touched", "mean", "aligned")
AllReduce = Callable[[torch.Tensor], None]  # sums a tensor in place across the workers


def dist_all_reduce(tensor: torch.Tensor) -> None:
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)


class SparseDeltaSync:
    """Sync of one worker's `state` ((rows, D), or any shape whose last axis is a row's values,
    e.g. GloVe's (2, 2V, D+1)) with the other `world - 1` workers; a no-op for one worker.
    Counts what it moved (syncs, rows_moved, bytes_moved) for the benchmarks."""

    def __init__(self, state: torch.Tensor, world: int, combine: str = "sum", all_reduce: AllReduce | None = None):
        if combine not in COMBINES:
            raise ValueError(f"sync combine {combine!r}: choose one of {', '.join(COMBINES)}")
        self.state = state.view(-1, state.shape[-1])  # (rows, D): the same memory
        self.world, self.combine = world, combine
        self.all_reduce = all_reduce or dist_all_reduce
        self.anchor = self.state.clone() if world > 1 else None  # the state at the last sync
        self.syncs = self.rows_moved = self.bytes_moved = 0

    def __call__(self) -> None:
        if self.world == 1:
            return
        delta = self.state.sub_(self.anchor)  # (rows, D) this worker's change since the last sync, in place
        per_row = torch.stack([delta.ne(0).any(dim=1).to(delta.dtype), delta.square().sum(dim=1)], dim=1)
        self.all_reduce(per_row)  # (rows, 2): k_r, the workers that moved row r; Σ_i |δ_i|²
        rows = per_row[:, 0].nonzero().squeeze(1)  # (U,) same on every worker
        moved = delta.index_select(0, rows)  # (U, D)
        self.all_reduce(moved)  # Σ δ_i over the workers
        if self.combine == "touched":
            moved.div_(per_row[rows, 0].unsqueeze(1))
        elif self.combine == "mean":
            moved.div_(self.world)
        elif self.combine == "aligned":
            squares = per_row[rows, 1].clamp(min=torch.finfo(moved.dtype).tiny)  # a tiny change's square: 0
            moved.div_((moved.square().sum(dim=1) / squares).clamp_(min=1).unsqueeze(1))
        self.anchor.index_add_(0, rows, moved)
        self.state.copy_(self.anchor)
        self.syncs += 1
        self.rows_moved += len(rows)
        self.bytes_moved += (per_row.numel() + moved.numel()) * moved.element_size()


class LocalAllReduce:
    """The SUM all-reduce of `world` logical workers, each a thread of this process: every call
    waits for all workers' tensors, sums them in rank order and gives each worker the sum.
    `for_rank(r)` is worker r's all-reduce function."""

    def __init__(self, world: int):
        self.world = world
        self.barrier = threading.Barrier(world)
        self.tensors: list[torch.Tensor | None] = [None] * world
        self.total: torch.Tensor | None = None

    def for_rank(self, rank: int) -> AllReduce:
        return lambda tensor: self._all_reduce(rank, tensor)

    def _all_reduce(self, rank: int, tensor: torch.Tensor) -> None:
        self.tensors[rank] = tensor
        self.barrier.wait()
        if rank == 0:
            total = self.tensors[0].clone()
            for other in self.tensors[1:]:
                total += other
            self.total = total
        self.barrier.wait()  # the sum is ready
        tensor.copy_(self.total)
        self.barrier.wait()  # every worker has its copy before the next call replaces the sum
