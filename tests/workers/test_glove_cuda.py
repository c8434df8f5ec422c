"""GloVe's CUDA kernel (workers/glove/kernel_cuda.py) against the CPU kernel, through numba's CUDA
simulator (tests/helpers/cudasim.py): torch tensors on the CPU stand in for device memory (with
NUMBA_ENABLE_CUDASIM=0 on a machine with a GPU, the same tests run on the device).

blocks=1, warps=1 runs the entries one after another, as sgd_numba does, so those results must
agree to float32 rounding; more warps per block train entries side by side (Hogwild), whose
results differ but must learn as well. The simulator runs each thread as a Python thread: the
inputs are tiny.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from firth.workers.glove.kernel_cuda import BYTES_PER_ENTRY, DeviceGlove, memory_refusal
from firth.workers.glove.model import init_state, loss_sum, sgd_numba
from firth.workers.glove.train import device_epoch
from firth.workers.raytrain.epochs import EpochPoints, Progress
from tests.helpers.cudasim import simulated
from tests.helpers.glove import ONE_ENTRY, ONE_ENTRY_COST, tiny_matrix, two_word_state

DEVICE = "cpu" if simulated() else "cuda"  # NUMBA_ENABLE_CUDASIM=0 on a machine with a GPU: the real device


def _on_device(state: np.ndarray, i, j, x, vocab_size: int, x_max: float, *, warps: int = 1, lanes: int = 32):
    """A DeviceGlove on a copy of `state`, one block (its warps side by side)."""
    return DeviceGlove(torch.from_numpy(state.copy()).to(DEVICE), np.asarray(i, np.int32), np.asarray(j, np.int32),
                       np.asarray(x, np.float32), vocab_size, x_max, 0.75, 0.05, blocks=1, warps=warps, lanes=lanes)


def _state(on_device: DeviceGlove) -> np.ndarray:
    return on_device.state.cpu().numpy()


def test_one_entry_update_equals_the_cpu_kernel():
    expected = two_word_state()
    cpu_cost = sgd_numba(expected[0], expected[1], np.array([0], np.int32), np.array([1], np.int32),
                         np.array([4.0], np.float32), 2, 10.0, 0.75, 0.05)
    on_device = _on_device(two_word_state(), [ONE_ENTRY["i"]], [ONE_ENTRY["j"]], [ONE_ENTRY["x"]], 2,
                           ONE_ENTRY["x_max"])
    on_device.shuffle(0)  # one entry: the permutation is [0]
    on_device.train(0, 1)
    state = _state(on_device)
    cost = on_device.epoch_cost()
    assert cost == pytest.approx(ONE_ENTRY_COST, rel=1e-6)
    assert cost == pytest.approx(cpu_cost, rel=1e-7)  # the CPU kernel's fastmath may round the dot differently
    # the hand-checked values of test_glove.py's CPU test: w_0 and w~_1 with their biases, AdaGrad sums
    np.testing.assert_allclose(state[0, 0], [0.1112135, -0.19252434, 0.07643047], rtol=2e-6)
    np.testing.assert_allclose(state[0, 3], [0.30373783, 0.39252434, -0.06262168], rtol=2e-6)
    np.testing.assert_allclose(state, expected, rtol=1e-6, atol=1e-9)
    np.testing.assert_array_equal(state[:, [1, 2]], two_word_state()[:, [1, 2]])  # rows not in the entry


class _Syncs:
    """The part of an EpochModel that EpochPoints calls: the share, and the sync, which records the
    loss of the state it would all-reduce (where in the permutation the launches stopped)."""

    def __init__(self, on_device: DeviceGlove, entries: tuple[np.ndarray, ...], syncs: int):
        self.on_device, self.entries, self.syncs_per_epoch, self.synced_at = on_device, entries, syncs, []

    def share(self, epoch: int) -> int:
        return len(self.entries[0])

    def sync(self) -> None:
        self.synced_at.append(loss_sum(_state(self.on_device)[0], 5, *self.entries, 10.0, 0.75))


def test_an_epoch_in_launches_cut_at_the_sync_points_equals_the_cpu_kernel_in_order():
    # V = 5, D = 40: lanes 0..7 own two coordinates each; rows repeat, x above, at and below x_max
    i = np.array([0, 1, 2, 0, 4, 3, 0, 1, 2, 4, 3], np.int32)
    j = np.array([1, 1, 3, 2, 0, 4, 1, 2, 0, 4, 3], np.int32)
    x = np.array([4, 25, 10, 1, 3, 7, 50, 2, 9, 10.5, 1.5], np.float32)
    expected = init_state(5, 40, seed=3)
    on_device = _on_device(expected, i, j, x, 5, 10.0)
    model = _Syncs(on_device, (i, j, x), 3)
    points = EpochPoints(model, 0, 0, Progress({"channel": None, "progress": False}, 0), None, 0)
    cost, done = device_epoch(on_device, 7, points)
    order = on_device.perm.cpu().numpy().astype(np.int64)
    assert sorted(order) == list(range(len(x))) and done == len(x)
    # sgd_numba over the same order, stopping where the device stopped: bounds ceil(11 k / 3) = 4, 8
    losses, cpu_cost = [], 0.0
    for lo, hi in [(0, 4), (4, 8), (8, 11)]:
        part = order[lo:hi]
        cpu_cost += sgd_numba(expected[0], expected[1], i[part], j[part], x[part], 5, 10.0, 0.75, 0.05)
        losses.append(loss_sum(expected[0], 5, i, j, x, 10.0, 0.75))
    np.testing.assert_allclose(model.synced_at, losses[:2], rtol=1e-5)  # points.finish() makes the third
    assert cost == pytest.approx(cpu_cost, rel=1e-5)
    np.testing.assert_allclose(_state(on_device), expected, rtol=1e-5, atol=1e-7)


def test_shuffle_draws_a_permutation_per_seed_on_the_device_and_restarts_the_cost():
    i, j, x = tiny_matrix(4, seed=0)  # 16 entries
    on_device = _on_device(init_state(4, 2, seed=0), i, j, x, 4, 10.0)
    orders = []
    for seed in (1, 2, 1):
        on_device.shuffle(seed)
        assert on_device.cost.item() == 0.0
        orders.append(on_device.perm.cpu().numpy().copy())
        on_device.train(0, 4)
        assert on_device.epoch_cost() > 0.0
    assert sorted(orders[0]) == list(range(16))
    np.testing.assert_array_equal(orders[0], orders[2])
    assert not np.array_equal(orders[0], orders[1])


def test_a_few_epochs_side_by_side_lower_the_loss_like_the_cpu_kernel():
    i, j, x = tiny_matrix(12, seed=1)  # 144 entries
    cpu = init_state(12, 8, seed=0)
    before = loss_sum(cpu[0], 12, i, j, x, 10.0, 0.75)
    # 8 warps of 4 lanes: 8 entries at a time on 12 words, far more write conflicts than on a real matrix
    on_device = _on_device(cpu, i, j, x, 12, 10.0, warps=8, lanes=4)
    for epoch in range(8):
        on_device.shuffle(epoch)
        order = on_device.perm.cpu().numpy()
        cpu_cost = sgd_numba(cpu[0], cpu[1], i[order], j[order], x[order], 12, 10.0, 0.75, 0.05)
        on_device.train(0, len(x))
        assert on_device.epoch_cost() == pytest.approx(cpu_cost, rel=0.05)  # each epoch's cost, as it trains
    state = _state(on_device)
    after, cpu_after = loss_sum(state[0], 12, i, j, x, 10.0, 0.75), loss_sum(cpu[0], 12, i, j, x, 10.0, 0.75)
    assert after < 0.15 * before
    assert after == pytest.approx(cpu_after, rel=0.03)
    assert (state[1] >= 0).all() and np.isfinite(state).all()


def test_a_share_larger_than_the_free_device_memory_is_refused_with_the_fix():
    gib = 2**30
    assert memory_refusal(1_000_000, 1 * gib, 80 * gib, "NVIDIA H100") is None  # 16 MB
    message = memory_refusal(4_000_000_000, 40 * gib, 80 * gib, "NVIDIA H100")
    assert BYTES_PER_ENTRY == 16
    assert message == ("GloVe on NVIDIA H100: this worker's 4,000,000,000 co-occurrence entries need 59.6 GiB of "
                       "device memory (16 bytes each) and 40.0 of 80.0 GiB are free; raise model.num_workers (each "
                       "worker holds 1/N of the matrix's files, on its own GPU), or set model.use_gpu: false")
