"""Ray Train wiring every trainer shares: starting Ray, running a TorchTrainer with one driver-side
progress display (workers/raytrain/console.py), per-epoch checkpoints through `ray.train.report`,
restoring them (after a worker failure, FailureConfig; or a later run with the same
checkpoint_uri), refusing another input's checkpoints, and the fault-injection hook of the tests.

A model's module supplies `loop(loop_config, rank, world)` (the per-worker training) and calls
`fit(...)`; the loop reports each epoch with `report(metrics, (state, meta) | None)` on every
rank, and sends progress with `Progress`.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import ray
import ray.train
import torch
import torch.distributed as dist
from ray.train import Checkpoint, CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from firth.schemas.fs import filesystem, pyarrow_filesystem
from firth.workers.raytrain.console import PROGRESS_EVERY_S, Channel, Console, FailureCallback, ForwardLogs

STATE_FILE, META_FILE = "state.npy", "meta.json"  # in each checkpoint
_ray_started_here = False  # the running Ray was started by start_ray: its worker output is not streamed


def start_ray() -> bool:
    """Start a local Ray on loopback (or join the cluster at $RAY_ADDRESS) unless one is running;
    True if started now. Its processes' output stays in their log files: the driver shows what
    matters through workers/raytrain/console.py."""
    global _ray_started_here
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if ray.is_initialized():
        return False
    local = {} if os.environ.get("RAY_ADDRESS") else {"_node_ip_address": "127.0.0.1"}  # a cluster has its own
    ray.init(logging_level=logging.ERROR, log_to_driver=False, **local)
    _ray_started_here = True
    return True


def stop_ray() -> None:
    global _ray_started_here
    ray.shutdown()
    _ray_started_here = False


def ray_started_here() -> bool:
    """Whether the running Ray came from start_ray (then trainers forward worker logs themselves)."""
    return _ray_started_here and ray.is_initialized()


def check_gpus(use_gpu: bool) -> None:
    if use_gpu and not ray.cluster_resources().get("GPU"):
        raise ValueError("model.use_gpu is true but the Ray cluster has no GPU; set model.use_gpu: false "
                         "or connect to a cluster with GPUs")


class DeltaSync:
    """Sum-of-deltas synchronisation of a state tensor between Ray Train workers (workers/glove/train.py
    explains the scheme): each call all-reduces every worker's change since the previous call and
    applies it once ("mean": averaged instead, model averaging). A no-op for one worker."""

    def __init__(self, state: torch.Tensor, world: int, mode: str = "sum"):
        self.state, self.world, self.mode = state, world, mode
        self.anchor = state.clone() if world > 1 else None  # the state at the last sync

    def __call__(self) -> None:
        if self.world == 1:
            return
        self.state.sub_(self.anchor)  # this worker's delta since the last sync
        dist.all_reduce(self.state, op=dist.ReduceOp.SUM)
        if self.mode == "mean":
            self.state.div_(self.world)
        self.anchor.add_(self.state)
        self.state.copy_(self.anchor)
INPUT_FILE = "input.json"  # beside the Ray run: which input the checkpoints belong to


def fit(loop: Callable[[dict, int, int], None], loop_config: dict, *, run_name: str, label: str, unit: str,
        num_workers: int, use_gpu: bool, max_failures: int, epochs: int, rank_to_share: list[int],
        checkpoint_uri: str, storage_options: dict, progress: bool) -> tuple[np.ndarray, dict]:
    """Run `loop` on `num_workers` Ray Train workers; returns (state, meta) of the last checkpoint.

    `rank_to_share`: work units (entries, words) per epoch of each rank, for the progress bar.
    """
    start_ray()
    own_ray = ray_started_here()  # else the caller chose how Ray's output is shown
    check_gpus(use_gpu)
    storage_fs, storage_path = pyarrow_filesystem(checkpoint_uri, storage_options)
    channel = Channel.remote()
    try:
        trainer = TorchTrainer(
            _per_worker,
            train_loop_config={**loop_config, "_loop": loop, "channel": channel, "forward_logs": own_ray,
                               "progress": progress},  # forward_logs: else Ray's streaming shows them
            scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=use_gpu),
            run_config=RunConfig(name=run_name, storage_path=storage_path, storage_filesystem=storage_fs,
                                 failure_config=FailureConfig(max_failures=max_failures),
                                 checkpoint_config=CheckpointConfig(num_to_keep=2),
                                 callbacks=[FailureCallback(channel)],
                                 logging_config=LoggingConfig(log_level="WARNING")),
        )
        with Console(channel, label, epochs, max_failures, rank_to_share, progress, unit=unit):
            result = trainer.fit()
    finally:
        ray.kill(channel)
    if result.checkpoint is None:
        raise RuntimeError(f"{checkpoint_uri}: the training run ended without a checkpoint")
    with result.checkpoint.as_directory() as folder:
        return np.load(Path(folder) / STATE_FILE), json.loads((Path(folder) / META_FILE).read_text())


def _per_worker(loop_config: dict) -> None:
    # Ray Train sets the worker's root logger to INFO; its report lines go there (module docstring)
    logging.getLogger().setLevel(logging.WARNING)
    context = ray.train.get_context()
    rank = context.get_world_rank()
    forward = ForwardLogs(loop_config["channel"], rank) if loop_config["forward_logs"] else None
    if forward is not None:
        logging.captureWarnings(True)  # warnings.warn too, as py.warnings records
        for logger in (logging.getLogger(), logging.getLogger("ray.train")):  # ray.train does not propagate
            logger.addHandler(forward)
    try:
        loop_config["_loop"](loop_config, rank, context.get_world_size())
    finally:  # the failure itself reaches the driver through FailureCallback
        if forward is not None:
            for logger in (logging.getLogger(), logging.getLogger("ray.train")):
                logger.removeHandler(forward)


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

    def epoch(self, epochs_done: int, loss: float) -> None:
        if self.rank == 0:
            self.channel.put.remote(("epoch", epochs_done, loss))


def claim(checkpoint_uri: str, storage_options: dict, training_input: dict, resumable_with_same: set[str]) -> None:
    """Record which input the checkpoints under `checkpoint_uri` belong to; refuse another input.

    A rerun with the same input resumes from the last checkpoint (Ray finds it by run name), and
    one that asks for no more epochs than were run returns its result; one with other data or
    other `resumable_with_same` settings must not start from those parameters.
    """
    fs, root = filesystem(checkpoint_uri, storage_options)
    path = root.rstrip("/") + "/" + INPUT_FILE
    wanted = json.dumps(training_input, sort_keys=True)
    if fs.exists(path):
        if fs.cat_file(path).decode() != wanted:
            raise ValueError(f"{checkpoint_uri}: holds checkpoints of another training input (input files, "
                             f"vocabulary or model.{'/'.join(sorted(resumable_with_same))} differ); delete it or "
                             "set model.checkpoint_dir elsewhere")
        return
    fs.makedirs(root, exist_ok=True)
    fs.pipe_file(path, wanted.encode())


def report(metrics: dict, checkpoint: tuple[np.ndarray, dict] | None) -> None:
    """ray.train.report on every rank (it is a barrier); rank 0 passes (state, meta) to checkpoint."""
    if checkpoint is None:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory() as folder:
        np.save(Path(folder) / STATE_FILE, checkpoint[0])
        (Path(folder) / META_FILE).write_text(json.dumps(checkpoint[1]))
        ray.train.report(metrics, checkpoint=Checkpoint.from_directory(folder))


def restore() -> tuple[np.ndarray | None, dict]:
    """(state, meta) of the run's last checkpoint (after a failure, or from an earlier run), or (None, {})."""
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return None, {}
    with checkpoint.as_directory() as folder:
        return np.load(Path(folder) / STATE_FILE), json.loads((Path(folder) / META_FILE).read_text())


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
