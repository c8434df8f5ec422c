"""The one Ray Train harness every trainer uses (GloVe, word2vec/fastText, the encoder): starting
Ray, checking for GPUs, running a TorchTrainer with one driver-side progress display and the
workers' log records forwarded to it (workers/raytrain/console.py), restoring the last checkpoint
(after a worker failure, FailureConfig; or in a later run with the same checkpoint_uri), and the
per-worker epoch loop (workers/raytrain/epochs.py) with its checkpoints (workers/raytrain/checkpoints.py).
`fit` also says where each rank ran (meta["workers"]: rank, Ray node id, node IP, host, PID), which
the job keeps in the version's metadata and the run record: on a cluster, which nodes trained.

A model's module calls `fit(start_worker, loop_config, ...)`; on every worker,
`start_worker(loop_config, rank, world, folder, meta)` builds the model's EpochModel from the
restored checkpoint's folder (None: a fresh start) and the shared loop trains it.
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import ray
import ray.train
from ray.train import CheckpointConfig, FailureConfig, LoggingConfig, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

from firth.pipelines.config import ConfigError
from firth.schemas.fs import pyarrow_filesystem
from firth.workers.raytrain.checkpoints import load_state, opened, restored
from firth.workers.raytrain.console import Channel, Console, FailureCallback, ForwardLogs
from firth.workers.raytrain.epochs import EpochModel, run_epochs

_ray_started_here = False  # the running Ray was started by start_ray: its worker output is not streamed
Result = TypeVar("Result")


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
    _python_handles_signals()
    return True


def _python_handles_signals() -> None:
    """Ray's core worker (C++) wraps the process's SIGTERM handler in its failure handler, which prints a
    stack ("*** SIGTERM received ***") and aborts the process at exit (code 134) even when the Python
    handler dealt with the signal (a cancelled run). Re-installing the Python handlers unwraps them."""
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            handler = signal.getsignal(signum)
            if handler is not None:  # None: installed outside Python; leave it
                signal.signal(signum, handler)


def stop_ray() -> None:
    global _ray_started_here
    ray.shutdown()
    _ray_started_here = False


def ray_started_here() -> bool:
    """Whether the running Ray came from start_ray (then trainers forward worker logs themselves)."""
    return _ray_started_here and ray.is_initialized()


def check_gpus(use_gpu: bool) -> None:
    """model.use_gpu needs GPUs where the training will run (ConfigError, exit 5, if there are none).

    On a cluster (Ray running, or $RAY_ADDRESS naming one: `firth submit` sets it for the job), the
    cluster's GPU resources decide, not the driver's devices; joining it is cheap. Else the Ray
    that training would start is local, and it sees this machine's GPUs: torch counts them without
    starting Ray, so the job can call this before any work."""
    if not use_gpu:
        return
    if ray.is_initialized() or os.environ.get("RAY_ADDRESS"):
        start_ray()  # joins the cluster at $RAY_ADDRESS; nothing when Ray runs
        if ray.cluster_resources().get("GPU", 0):
            return
        where = "the Ray cluster has no GPU resources (ray.cluster_resources())"
    else:
        import torch

        if torch.cuda.device_count():
            return
        where = "this machine has no GPU that torch can use and no Ray cluster is set ($RAY_ADDRESS)"
    raise ConfigError(f"model.use_gpu is true but {where}; set model.use_gpu: false, or run on a node with a "
                      "GPU, or give the Ray cluster GPU resources (ray start --num-gpus N on nodes with GPUs)")


def fit(start_worker: Callable[[dict, int, int, Path | None, dict], EpochModel], loop_config: dict, *,
        run_name: str, label: str, unit: str, num_workers: int, use_gpu: bool, max_failures: int, epochs: int,
        rank_to_share: list[int], checkpoint_uri: str, storage_options: dict, progress: bool,
        read_result: Callable[[Path], Result] = load_state) -> tuple[Result, dict]:
    """Train on `num_workers` Ray Train workers; returns (read_result(folder), meta) of the last checkpoint.

    `rank_to_share`: work units (entries, words, steps) per epoch of each rank, for the progress bar.
    """
    start_ray()
    own_ray = ray_started_here()  # else the caller chose how Ray's output is shown
    check_gpus(use_gpu)
    storage_fs, storage_path = pyarrow_filesystem(checkpoint_uri, storage_options)
    channel = Channel.remote()
    try:
        trainer = TorchTrainer(
            _per_worker,
            train_loop_config={**loop_config, "_start_worker": start_worker, "epochs": epochs, "channel": channel,
                               "forward_logs": own_ray, "progress": progress},  # forward_logs: else Ray's streaming shows them
            scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=use_gpu),
            run_config=RunConfig(name=run_name, storage_path=storage_path, storage_filesystem=storage_fs,
                                 failure_config=FailureConfig(max_failures=max_failures),
                                 checkpoint_config=CheckpointConfig(num_to_keep=2),
                                 callbacks=[FailureCallback(channel)],
                                 logging_config=LoggingConfig(log_level="WARNING")),
        )
        with Console(channel, label, epochs, max_failures, rank_to_share, progress, unit=unit) as console:
            result = trainer.fit()
    except KeyboardInterrupt:  # a cancelled run (SIGINT, SIGTERM): its workers must not train on,
        if own_ray:            # writing checkpoints into the scratch the run is about to remove
            stop_ray()
        raise
    finally:
        if ray.is_initialized():  # else the channel ended with Ray
            ray.kill(channel)
    if result.checkpoint is None:
        raise RuntimeError(f"{checkpoint_uri}: the {label} training run ended without a checkpoint")
    with opened(result.checkpoint) as (folder, meta):
        workers = [console.rank_to_worker[rank] for rank in sorted(console.rank_to_worker)]
        return read_result(folder), {**meta, "workers": workers}


def placement(rank: int) -> dict:
    """Where this Ray worker process runs: the Ray node (its id tells nodes with one IP apart), IP, host, PID."""
    return {"rank": rank, "node_id": ray.get_runtime_context().get_node_id(), "ip": ray.util.get_node_ip_address(),
            "host": socket.gethostname(), "pid": os.getpid()}


def _per_worker(loop_config: dict) -> None:
    # Ray Train sets the worker's root logger to INFO, and its report lines would go there
    logging.getLogger().setLevel(logging.WARNING)
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    # waited for, so the driver holds it before training ends; a restarted worker sends its new place
    ray.get(loop_config["channel"].put.remote(("placed", rank, placement(rank))))
    forward = ForwardLogs(loop_config["channel"], rank) if loop_config["forward_logs"] else None
    loggers = (logging.getLogger(), logging.getLogger("ray.train"))  # ray.train does not propagate
    if forward is not None:
        logging.captureWarnings(True)  # warnings.warn too, as py.warnings records
        for logger in loggers:
            logger.addHandler(forward)
    try:
        with restored() as (folder, meta):  # the model reads what it needs while the folder exists
            model = loop_config["_start_worker"](loop_config, rank, world, folder, meta)
        run_epochs(model, meta, loop_config, rank, world)
    finally:  # the failure itself reaches the driver through FailureCallback
        if forward is not None:
            for logger in loggers:
                logger.removeHandler(forward)
