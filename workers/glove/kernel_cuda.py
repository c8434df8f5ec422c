"""GloVe on a CUDA device with numba-cuda: a whole epoch on the device, one launch per segment.

The model and update are `sgd_numba`'s (workers/glove/model.py): f(x) = 1 above x_max, else
(x / x_max)^alpha; diff and the cost in float64, the step eta * f * diff rounded to float32; per
coordinate AdaGrad that steps with the sum *before* adding the current squared step; biases in
column D, their gradient's partner 1; no clipping (glove.c clips nothing either). Same state
layout (2, 2V, D+1), same initial state (init_state), so a checkpoint moves between devices.

Layout of a launch. A block is (32, WARPS) threads: one warp per co-occurrence entry, its 32 lanes
across the dimension (lane l owns coordinates l, l + 32, ...). Every lane computes the whole dot
product itself from broadcast loads (all lanes read the same address: one transaction, and it sums
in sgd_numba's order, coordinate 0 first), so no warp shuffle or shared memory is needed. The grid
is persistent (BLOCKS_PER_SM blocks a multiprocessor) and strides over the segment's entries in rounds;
Hogwild: warps update rows in global memory without locks, as glove.c's threads do. Two block
barriers per round keep a warp's own reads (the dot) before its writes (the update), which the
CUDA simulator needs too; every warp of a block runs the same number of rounds, so the barriers are
never divergent. Lane 0 sums its entries' cost in float64 and adds it once per launch (an atomic)
to a one-element device array that the host reads once per epoch.

Shuffle. The co-occurrence entries (i, j, x: 12 bytes each) stay in device memory for the whole
run; each epoch the host draws a device permutation (torch.randperm on the device, int32, 4 bytes
an entry; its generator seeded from (seed, epoch, rank), so a restored run replays the order) and
the kernel reads entry perm[k] at round position k: no per-batch Python, no host-device copy of
entries. A launch trains one segment [start, start + count) of the permutation: the trainer cuts
the epoch only at its sync points (workers/glove/train.py), so an epoch is syncs_per_epoch launches.

Memory limit: a worker's share must fit in device memory, 16 bytes an entry next to the state
((2, 2V, D+1) float32). `DeviceGlove` checks that before it allocates and says what to change (more
workers: each holds 1/N of the files). An H100's 80 GB holds about 4 G entries a worker.

Tests run the kernel on CPU through numba's simulator (NUMBA_ENABLE_CUDASIM=1): torch tensors on
the CPU stand in for device tensors there (`_device_view`).
"""
from __future__ import annotations

import math

import numpy as np
import torch
from numba import cuda

LANES = 32  # threads across the dimension: one warp per entry
WARPS = 4  # entries in flight per block (128 threads)
BLOCKS_PER_SM = 16  # persistent grid: 16 x 4 warps = 64 warps a multiprocessor, Hopper's maximum
BYTES_PER_ENTRY = 16  # i, j (int32), x (float32) and the epoch's int32 permutation


@cuda.jit
def glove_segment(params, gradsq, i, j, x, perm, start, count, vocab_size, x_max, alpha, eta, cost):  # pragma: no cover
    """Train entries perm[start:start + count] once each; add their 0.5 f diff^2 to cost[0]."""
    lane, warp = cuda.threadIdx.x, cuda.threadIdx.y
    warps = cuda.blockDim.y * cuda.gridDim.x
    slot = cuda.blockIdx.x * cuda.blockDim.y + warp  # this warp's position in each round
    dim = params.shape[1] - 1
    eta32, one = np.float32(eta), np.float32(1.0)
    total = 0.0
    l1 = l2 = 0
    step = np.float32(0.0)
    for first in range(0, count, warps):  # the same rounds for every warp of the grid
        k = first + slot
        if k < count:
            e = perm[start + k]
            l1, l2 = i[e], j[e] + vocab_size
            xv = np.float64(x[e])
            dot = np.float32(0.0)
            for b in range(dim):
                dot += params[l1, b] * params[l2, b]
            diff = np.float64(dot) + np.float64(params[l1, dim]) + np.float64(params[l2, dim]) - math.log(xv)
            fdiff = diff if xv > x_max else math.pow(xv / x_max, alpha) * diff
            step = np.float32(fdiff) * eta32  # eta * f * diff, the common factor of every gradient
            if lane == 0:
                total += 0.5 * fdiff * diff
        cuda.syncthreads()  # every lane has read both rows before any lane writes them
        if k < count:
            for b in range(lane, dim, cuda.blockDim.x):  # LANES; fewer in simulator tests
                t1 = step * params[l2, b]  # eta * dJ/dw_b
                t2 = step * params[l1, b]  # eta * dJ/dw~_b
                params[l1, b] -= t1 / math.sqrt(one + gradsq[l1, b])
                params[l2, b] -= t2 / math.sqrt(one + gradsq[l2, b])
                gradsq[l1, b] += t1 * t1
                gradsq[l2, b] += t2 * t2
            if lane == 0:
                params[l1, dim] -= step / math.sqrt(one + gradsq[l1, dim])
                params[l2, dim] -= step / math.sqrt(one + gradsq[l2, dim])
                gradsq[l1, dim] += step * step
                gradsq[l2, dim] += step * step
        cuda.syncthreads()  # this round's writes land before the next round reads (exact replays in tests)
    if lane == 0:
        cuda.atomic.add(cost, 0, total)


def _device_view(tensor: torch.Tensor):
    """What a numba-cuda kernel takes for a torch tensor: a zero-copy device view on CUDA; in the
    simulator (tests, CPU tensors) the tensor's numpy view, which the simulator updates in place."""
    return cuda.as_cuda_array(tensor) if tensor.is_cuda else tensor.numpy()


def grid_blocks(device: torch.device) -> int:
    """Blocks of the persistent grid: BLOCKS_PER_SM per multiprocessor (1 on CPU, the simulator)."""
    if device.type != "cuda":
        return 1
    return BLOCKS_PER_SM * torch.cuda.get_device_properties(device).multi_processor_count


class DeviceGlove:
    """A worker's co-occurrence share held on its device, and the state it trains in place.

    state: the (2, 2V, D+1) float32 tensor on the device (the trainer's, which DeltaSync
    all-reduces); i, j, x: the whole share (numpy). Per epoch: `shuffle(seed)`, then `train(start,
    count)` for each segment, then `epoch_cost()` (one read of the device's sum)."""

    def __init__(self, state: torch.Tensor, i: np.ndarray, j: np.ndarray, x: np.ndarray, vocab_size: int,
                 x_max: float, alpha: float, eta: float, blocks: int | None = None, warps: int = WARPS,
                 lanes: int = LANES):
        self.device, self.n = state.device, len(x)
        check_fits(self.n, self.device)
        self.vocab_size, self.x_max, self.alpha, self.eta = vocab_size, float(x_max), float(alpha), float(eta)
        self.tensors = [torch.from_numpy(np.ascontiguousarray(a, dtype=t)).to(self.device)
                        for a, t in ((i, np.int32), (j, np.int32), (x, np.float32))]
        self.cost = torch.zeros(1, dtype=torch.float64, device=self.device)
        self.state, self.perm = state, torch.arange(self.n, dtype=torch.int32, device=self.device)
        # blocks=1, warps=1: entries in order; fewer lanes: a faster simulator (tests)
        self.blocks, self.warps, self.lanes = blocks or grid_blocks(self.device), warps, lanes
        # numba views of the tensors, made once: making one synchronises with torch's stream
        self._views = [_device_view(t) for t in (state[0], state[1], *self.tensors)]
        self._perm_view, self._cost_view = _device_view(self.perm), _device_view(self.cost)

    def shuffle(self, seed: int) -> None:
        """A fresh permutation of the entries, drawn on the device; the epoch's cost restarts at 0."""
        generator = torch.Generator(device=self.device).manual_seed(seed)
        self.perm = torch.randperm(self.n, generator=generator, dtype=torch.int32, device=self.device)
        self._perm_view = _device_view(self.perm)
        self.cost.zero_()

    def train(self, start: int, count: int) -> None:
        """One launch over entries perm[start:start + count], queued on torch's current stream (after
        the permutation, before any all-reduce of the state)."""
        if count <= 0:
            return
        stream = cuda.external_stream(torch.cuda.current_stream(self.device).cuda_stream) \
            if self.device.type == "cuda" else 0
        glove_segment[self.blocks, (self.lanes, self.warps), stream](
            *self._views, self._perm_view, start, count, self.vocab_size, self.x_max, self.alpha, self.eta,
            self._cost_view)

    def epoch_cost(self) -> float:
        """The summed 0.5 f diff^2 of the entries trained since `shuffle` (waits for the device)."""
        return float(self.cost.item())


def check_fits(entries: int, device: torch.device) -> None:
    """Refuse a share that does not fit in the device's free memory (before allocating any of it)."""
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        if (refusal := memory_refusal(entries, free, total, torch.cuda.get_device_name(device))) is not None:
            raise ValueError(refusal)


def memory_refusal(entries: int, free: int, total: int, device_name: str) -> str | None:
    """Why `entries` do not fit in `free` bytes of device memory, with the figures and the fix; None if they do
    (a tenth of the free memory stays for the allocator, the all-reduce and the permutation's temporaries)."""
    need = entries * BYTES_PER_ENTRY
    if need <= 0.9 * free:
        return None
    return (f"GloVe on {device_name}: this worker's {entries:,} co-occurrence entries need {need / 2**30:.1f} GiB of "
            f"device memory ({BYTES_PER_ENTRY} bytes each) and {free / 2**30:.1f} of {total / 2**30:.1f} GiB are free; "
            "raise model.num_workers (each worker holds 1/N of the matrix's files, on its own GPU), "
            "or set model.use_gpu: false")
