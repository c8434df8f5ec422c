"""The per-worker epoch loop every Ray Train model shares (GloVe, word2vec/fastText, the encoder).

The loop owns the skeleton: from the restored checkpoint's epoch to the last, it runs the model's
epoch, meets the sync points, sends progress, injects the tests' fault, all-reduces the epoch's
sums, and reports one checkpoint per epoch (workers/raytrain/checkpoints.py). A model brings:

    model.device                        where its tensors live (the sums are all-reduced there)
    model.syncs_per_epoch, model.sync() parameter syncs per epoch (sync.py's SparseDeltaSync), 0 for a DDP model,
                                        whose gradients are all-reduced at every step instead
    model.share(epoch) -> int           work units (entries, words, steps) this rank does in `epoch`
    model.train_epoch(epoch, points) -> list[float]
                                        trains one epoch, calling points.reached(done) as it goes;
                                        returns this rank's sums (loss sum, counts, ...)
    model.summary(totals, seconds, meta) -> (loss, metrics, meta updates)
                                        from the sums of all ranks
    model.save(folder)                  its files of a checkpoint (rank 0 only)

What stays with each model, because the models genuinely differ there: how it reads and orders
its data (GloVe's shuffled buffers of matrix entries, word2vec's units in file order in blocks of
whole documents, the encoder's permutation of rows per epoch); where in its work a sync may fall
(GloVe cuts its buffers at `points.room`, word2vec syncs between blocks, the encoder never: DDP);
how its sums make the epoch's loss (entries or examples over all ranks; the mean of the ranks'
means for the encoder, whose MLM and contrastive epochs also differ in length, hence share(epoch));
and what its checkpoint holds. The count models (PPMI-SVD, LSA) do not train on Ray: one SVD on the driver.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Protocol

import torch
import torch.distributed as dist

from firth.schemas.fs import filesystem
from firth.workers.raytrain.checkpoints import report
from firth.workers.raytrain.console import PROGRESS_EVERY_S

FAULT_EPOCH = 1  # the tests' fault fails the second epoch (0-based 1), halfway through its share


class EpochModel(Protocol):
    device: torch.device
    syncs_per_epoch: int

    def sync(self) -> None: ...
    def share(self, epoch: int) -> int: ...
    def train_epoch(self, epoch: int, points: EpochPoints) -> list[float]: ...
    def summary(self, totals: list[float], seconds: float, meta: dict) -> tuple[float, dict, dict]: ...
    def save(self, folder: Path) -> None: ...


def run_epochs(model: EpochModel, meta: dict, loop_config: dict, rank: int, world: int) -> None:
    """Train `model` from meta["epochs_done"] (0: a fresh start) to loop_config["epochs"]."""
    meta = {"epochs_done": 0, "epoch_losses": [], "epoch_seconds": [], **meta}
    progress = Progress(loop_config, rank)
    progress.start(meta["epochs_done"])
    fault = fault_pending(loop_config) and rank == (1 if world > 1 else 0)
    for epoch in range(meta["epochs_done"], loop_config["epochs"]):
        start = time.perf_counter()
        before = sum(model.share(e) for e in range(epoch))  # units of the earlier epochs, for progress
        points = EpochPoints(model, epoch, before, progress,
                             loop_config["fault_injection"] if fault and epoch == FAULT_EPOCH else None, rank)
        sums = model.train_epoch(epoch, points)
        points.finish()
        totals = torch.tensor(sums, dtype=torch.float64, device=model.device)
        if world > 1:
            dist.all_reduce(totals, op=dist.ReduceOp.SUM)
        seconds = time.perf_counter() - start
        loss, metrics, updates = model.summary(totals.tolist(), seconds, meta)
        meta = {**meta, **updates, "epochs_done": epoch + 1, "epoch_losses": [*meta["epoch_losses"], loss],
                "epoch_seconds": [*meta["epoch_seconds"], seconds]}
        progress(before + points.share, force=True)
        progress.epoch(epoch + 1, loss, seconds)
        report({"epoch": epoch + 1, "loss": loss, **metrics}, meta, model.save if rank == 0 else None)


class EpochPoints:
    """One epoch's points of one rank: where its share reaches a sync, progress to send, the fault.

    Syncs fall at even fractions of the rank's share (every rank syncs exactly syncs_per_epoch
    times, whatever its share, even none); the last one after the epoch's training.
    """

    def __init__(self, model: EpochModel, epoch: int, before: int, progress: Progress, fault_marker: str | None,
                 rank: int):
        self.model, self.epoch, self.before, self.progress, self.rank = model, epoch, before, progress, rank
        self.share = model.share(epoch)
        syncs = model.syncs_per_epoch
        self.bounds = [math.ceil(self.share * k / syncs) for k in range(1, syncs + 1)]  # units done at each sync
        self.synced = 0
        self.fault_marker = fault_marker

    def room(self, done: int) -> int:
        """Units left before the next sync point (a model that cuts its batches there meets each exactly)."""
        return self.bounds[self.synced] - done if self.synced < len(self.bounds) else self.share - done

    def reached(self, done: int) -> None:
        """`done` units of this epoch are trained: sync at every point passed (but the last), send
        progress, and fail halfway through the share when a fault is to be injected."""
        while self.synced < len(self.bounds) - 1 and done >= self.bounds[self.synced]:
            self.model.sync()
            self.synced += 1
        self.progress(self.before + done)
        if self.fault_marker is not None and done >= self.share // 2:
            inject_fault(self.fault_marker, self.rank, self.epoch)

    def finish(self) -> None:
        """After the epoch's training: a fault still due (a rank without work) fails now; the
        remaining syncs, so that every rank holds the same state."""
        if self.fault_marker is not None:
            inject_fault(self.fault_marker, self.rank, self.epoch)
        for _ in range(self.synced, len(self.bounds)):
            self.model.sync()
        self.synced = len(self.bounds)


class Progress:
    """Worker side of the progress bar: sends this rank's units done over all epochs (absolute,
    so a restart rewinds) at most every PROGRESS_EVERY_S, and the epoch events of rank 0."""

    def __init__(self, loop_config: dict, rank: int):
        self.channel, self.rank, self.enabled, self.sent_at = loop_config["channel"], rank, loop_config["progress"], 0.0

    def start(self, epochs_done: int) -> None:
        if self.rank == 0:
            self.channel.put.remote(("start", epochs_done))

    def __call__(self, position: int, force: bool = False) -> None:
        if self.enabled and (force or time.monotonic() - self.sent_at >= PROGRESS_EVERY_S):
            self.channel.put.remote(("progress", self.rank, position))
            self.sent_at = time.monotonic()

    def epoch(self, epochs_done: int, loss: float, seconds: float) -> None:
        if self.rank == 0:  # seconds measured here: the driver may see the event late (a loaded machine)
            self.channel.put.remote(("epoch", epochs_done, loss, seconds))


def fault_pending(loop_config: dict) -> bool:
    """A fault is to be injected: a marker path was given and no earlier attempt created it."""
    if not loop_config.get("fault_injection"):
        return False
    fs, path = filesystem(loop_config["fault_injection"])
    return not fs.exists(path)


def inject_fault(marker: str, rank: int, epoch: int) -> None:
    fs, path = filesystem(marker)
    fs.touch(path)
    raise RuntimeError(f"fault injected on rank {rank} in epoch {epoch + 1} (marker {marker})")
