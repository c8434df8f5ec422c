"""N logical workers in one process: the per-worker models of the Ray Train harness, each in a
thread, syncing through LocalAllReduce (sync.py) where Ray's workers call torch.distributed.

For measurements and tests that need N workers' result but not their speed (quality does not
depend on it): benchmarks/sync_schemes.py, tests/workers/test_word2vec.py. Between two syncs a
worker touches only its own state, and its draws are seeded by (seed, epoch, rank), so the result
is the one N Ray Train workers reach, bit for bit, whatever the threads' timing. What Ray adds
and this leaves out: checkpoints, restore, the progress bar, the fault hook.
"""
from __future__ import annotations

import threading

import numpy as np

from firth.workers.raytrain.epochs import EpochPoints
from firth.workers.raytrain.sync import LocalAllReduce


def train_logical(model_class, loop: dict, world: int, epochs: int) -> tuple[list, np.ndarray]:
    """Build `world` workers `model_class(loop | {"all_reduce": ...}, rank, world, None, {})` (a fresh
    start) and train them `epochs` epochs through the harness's EpochPoints, side by side.
    Returns (the models, (epochs, sums) float64: each epoch's train_epoch sums over the workers)."""
    reduce = LocalAllReduce(world)
    models = [model_class(loop | {"all_reduce": reduce.for_rank(rank)}, rank, world, None, {})
              for rank in range(world)]
    sums: list[list] = [[None] * world for _ in range(epochs)]  # [epoch][rank] -> that rank's sums
    failures = []

    def train(rank: int) -> None:
        try:
            for epoch in range(epochs):
                points = EpochPoints(models[rank], epoch, 0, lambda *args, **kwargs: None, None, rank)
                sums[epoch][rank] = models[rank].train_epoch(epoch, points)
                points.finish()
        except BaseException as error:  # noqa: BLE001 (raised below; the others would wait at the barrier for ever)
            failures.append(error)
            reduce.barrier.abort()

    threads = [threading.Thread(target=train, args=(rank,), name=f"logical-worker-{rank}") for rank in range(world)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    return models, np.array([np.sum(epoch_sums, axis=0) for epoch_sums in sums], dtype=np.float64)
