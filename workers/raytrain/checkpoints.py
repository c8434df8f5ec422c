"""The checkpoint format of every Ray Train model, and which input a checkpoint folder belongs to.

A checkpoint is a folder reported through `ray.train.report` after an epoch: META_FILE (meta.json:
epochs done, the loss and seconds of every epoch, and the model's own records) beside the model's
files, written by its `save(folder)`: GloVe and word2vec one array, STATE_FILE (save_state); the
encoder its model folder and optimizer state. Ray Train keeps the last two under
<checkpoint_uri>/<run name>/ and hands the last one back after a worker failure (FailureConfig) or to
a later run with the same checkpoint_uri, whose input CLAIM_FILE records.
"""
from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import ray.train
from ray.train import Checkpoint

from firth.schemas.fs import filesystem

META_FILE, STATE_FILE = "meta.json", "state.npy"  # in each checkpoint
CLAIM_FILE = "input.json"  # beside the Ray run: which input the checkpoints belong to


def claim(checkpoint_uri: str, storage_options: dict, training_input: dict, resumable_with_same: set[str]) -> None:
    """Record which input the checkpoints under `checkpoint_uri` belong to; refuse another input.

    A rerun with the same input resumes from the last checkpoint (Ray finds it by run name), and
    one that asks for no more epochs than were run returns its result; one with other data or
    other `resumable_with_same` settings must not start from those parameters.
    """
    fs, root = filesystem(checkpoint_uri, storage_options)
    path = root.rstrip("/") + "/" + CLAIM_FILE
    wanted = json.dumps(training_input, sort_keys=True)
    if fs.exists(path):
        if fs.cat_file(path).decode() != wanted:
            raise ValueError(f"{checkpoint_uri}: holds checkpoints of another training input (input files, "
                             f"vocabulary or model.{'/'.join(sorted(resumable_with_same))} differ); delete it or "
                             "set model.checkpoint_dir elsewhere")
        return
    fs.makedirs(root, exist_ok=True)
    fs.pipe_file(path, wanted.encode())


def report(metrics: dict, meta: dict, save: Callable[[Path], None] | None) -> None:
    """ray.train.report on every rank (it is a barrier); the rank that passes `save` (rank 0) checkpoints."""
    if save is None:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory() as folder:
        save(Path(folder))
        (Path(folder) / META_FILE).write_text(json.dumps(meta))
        ray.train.report(metrics, checkpoint=Checkpoint.from_directory(folder))


@contextmanager
def restored() -> Iterator[tuple[Path | None, dict]]:
    """(folder, meta) of the run's last checkpoint, or (None, {}) when there is none; the folder may
    be a download that lasts only as long as the block."""
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        yield None, {}
        return
    with opened(checkpoint) as folder_and_meta:
        yield folder_and_meta


@contextmanager
def opened(checkpoint: Checkpoint) -> Iterator[tuple[Path, dict]]:
    with checkpoint.as_directory() as folder:
        yield Path(folder), json.loads((Path(folder) / META_FILE).read_text())


def save_state(folder: Path, state: np.ndarray) -> None:
    np.save(folder / STATE_FILE, state)


def load_state(folder: Path) -> np.ndarray:
    return np.load(folder / STATE_FILE)
