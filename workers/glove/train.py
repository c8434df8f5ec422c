"""GloVe training on Ray Train: streaming, parameter sync, checkpoints, failure restore.

Data. The co-occurrence directory holds `part-*.parquet` (columns i int32, j int32, x float32;
file b holds the keys with i % n_buckets == b). The driver reads only the Parquet footers
(row-group sizes, schema); worker `rank` of `world` streams files[rank::world] of the sorted list
and nothing else. Per epoch it visits its (file, row group) units in an order drawn from
(seed, epoch, rank), fills a buffer of `shuffle_buffer` entries, permutes it and trains on it, as
glove.c trains on the output of its `shuffle` tool; memory is the buffer plus one read batch.
A CUDA worker instead reads its whole share once into device memory and shuffles all of it on
the device every epoch (workers/glove/kernel_cuda.py: 16 bytes an entry; a share that does not fit
is refused before training, naming model.num_workers).

Parameters. Every worker holds the whole float32 state of `firth.workers.glove.model` (parameters and AdaGrad
sums, (2, 2V, D+1)). CPU workers run the numba per-entry kernel on the numpy array; torch tensors
share that memory (`torch.from_numpy`), so the all-reduce is zero copy. CUDA workers keep the
state on the GPU and run the numba-cuda kernel on it in place: one launch per stretch between
sync points (syncs_per_epoch launches an epoch), the epoch's cost read once at its end.

Sync scheme: sum of deltas. `syncs_per_epoch` times per epoch (at even fractions of each worker's
own share, so every worker calls all_reduce exactly that many times whatever its share, even none),
each worker turns its state into its delta since the last sync (state - anchor), all-reduces the
deltas with SUM and adds the sum to the anchor (workers/raytrain/sync.py, whose all-reduce carries
only the rows some worker changed). Between syncs the workers update private copies; at a sync
every update made anywhere is applied once, as in glove.c, where all threads write into one shared
matrix without locks (Hogwild). AdaGrad sums are merged the same way, so gradsq counts every
gradient any worker took. Averaging the deltas instead ("mean", model averaging,
`_fit(sync="mean")`) scales every update by 1/workers. Measured on a real matrix (13 M-token
corpus, V = 72,903, 28.5 M entries, D = 100, 5 epochs, 4 syncs/epoch), final loss: 1 worker
0.01556, 2 workers sum 0.01630, 2 workers mean 0.01834.

Loss: glove.c's, the mean over all entries of 0.5 f(x) diff^2 taken just before each entry's
update; the sums and entry counts of all workers are all-reduced, so the figure does not depend
on the number of workers.

Ray Train: the harness of workers/raytrain/ runs `_GloveWorker` in its per-worker epoch loop
(epochs.py: sync points, progress, fault hook; one checkpoint per epoch after the epoch's last
sync, when all workers hold the same state: state.npy (params + gradsq) and meta.json,
checkpoints.py), restores it after a worker failure or in a later run with the same
checkpoint_uri (input.json there records the input; another input is refused), and shows one
progress bar, worker warnings, failures and restores on the driver (console.py). The shuffle
RNG is derived from (seed, epoch, rank), so the epoch count is the RNG state and a restored run
replays the same order.

Determinism: a fixed seed and number of CPU workers give identical bytes, a restored run
included (an all-reduce of two deltas is one addition). Another number of workers changes the
result (which entries each sees between syncs). On the GPU, warps update rows concurrently
(Hogwild), so the bytes vary from run to run, as glove.c's with several threads.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow.parquet as pq
import ray.train
import torch

from firth.pipelines.config import GloveConfig, JobConfig
from firth.schemas.fs import filesystem
from firth.schemas.statistics import StatisticsSummary
from firth.schemas.tables import COOCCURRENCE, check
from firth.workers.glove.model import init_state, published_vectors, sgd_numba
from firth.workers.raytrain.checkpoints import claim, load_state, save_state
from firth.workers.raytrain.epochs import EpochPoints
from firth.workers.raytrain.harness import fit
from firth.workers.raytrain.sync import SparseDeltaSync
from firth.workers.trainers import Trained

log = logging.getLogger(__name__)

RUN_NAME = "glove"  # Ray run folder under checkpoint_uri
# a checkpoint resumes only with the same data and these settings; epochs may grow, and workers,
# syncs, shuffle buffer and device may change (they change how, not what, is optimised)
RESUMABLE_WITH_SAME = {"dim", "x_max", "alpha", "learning_rate", "seed"}
READ_BATCH = 65_536  # entries per Parquet record batch read into the shuffle buffer


@dataclass(frozen=True)
class GloveResult:
    vectors: np.ndarray  # (V, D) float32: w + w~, the published vectors
    epoch_losses: list[float]  # glove.c's cost per epoch, all epochs (restored ones included)
    entries_per_sec: float  # co-occurrence entries trained per second of epoch time, all workers
    epochs_run: int
    workers: list[dict] = field(default_factory=list)  # where each rank ran (workers/raytrain/harness.py)


def train(config: JobConfig, statistics: StatisticsSummary, *, checkpoint_uri: str,
          fault_injection: str | None = None) -> Trained:
    """The job's entry point (firth.workers.trainers): GloVe on the run's co-occurrence matrix."""
    result = train_glove(statistics.cooccurrence_uri, statistics.vocab_size, config.model,
                         storage_options=config.store.storage_options, checkpoint_uri=checkpoint_uri,
                         fault_injection=fault_injection)
    return Trained(vectors=result.vectors, epoch_losses=result.epoch_losses, workers=result.workers)


def train_glove(cooccurrence_uri: str, vocab_size: int, config: GloveConfig, *,
                storage_options: dict | None = None, checkpoint_uri: str,
                fault_injection: str | None = None, progress: bool = True) -> GloveResult:
    """Train GloVe on a co-occurrence directory with `config.num_workers` Ray Train workers.

    `storage_options` (fsspec or object_store style, see firth.schemas.fs) apply to both
    `cooccurrence_uri` and `checkpoint_uri`.
    `fault_injection`: a marker path (tests); if it does not exist, rank 1 (rank 0 alone) creates
    it and raises in the middle of epoch 2, so the run must restore from the epoch 1 checkpoint.
    """
    return _fit(cooccurrence_uri, vocab_size, config, storage_options=storage_options,
                checkpoint_uri=checkpoint_uri, fault_injection=fault_injection, progress=progress, sync="sum")


def _fit(cooccurrence_uri: str, vocab_size: int, config: GloveConfig, *, storage_options: dict | None,
         checkpoint_uri: str, fault_injection: str | None, progress: bool, sync: str) -> GloveResult:
    """train_glove with the sync scheme as a parameter ("sum" or "mean"), for measurements."""
    storage_options = dict(storage_options or {})
    files = scan_parts(cooccurrence_uri, vocab_size, storage_options)
    if len(files) < config.num_workers:
        log.warning("%s: %d co-occurrence files for %d workers; %d workers will idle (write more buckets: "
                    "statistics.n_buckets)", cooccurrence_uri, len(files), config.num_workers,
                    config.num_workers - len(files))
    claim(checkpoint_uri, storage_options, {"files": files, "vocab_size": vocab_size,
                                            **config.model_dump(mode="json", include=RESUMABLE_WITH_SAME)},
          RESUMABLE_WITH_SAME)
    rank_to_share = [sum(sum(rows) for _, rows in files[r::config.num_workers]) for r in range(config.num_workers)]
    loop_config = {"uri": cooccurrence_uri, "storage_options": storage_options, "files": files,
                   "vocab_size": vocab_size, "config": config.model_dump(mode="json"),
                   "fault_injection": fault_injection, "sync": sync}
    state, meta = fit(_GloveWorker, loop_config, run_name=RUN_NAME, label="GloVe", unit="entries",
                      num_workers=config.num_workers, use_gpu=config.use_gpu, max_failures=config.max_failures,
                      epochs=config.epochs, rank_to_share=rank_to_share, checkpoint_uri=checkpoint_uri,
                      storage_options=storage_options, progress=progress)
    vectors = published_vectors(state[0], vocab_size)  # state: (2, 2V, D+1)
    seconds = sum(meta["epoch_seconds"])
    return GloveResult(vectors=vectors, epoch_losses=meta["epoch_losses"], epochs_run=meta["epochs_done"],
                       entries_per_sec=meta["entries"] * len(meta["epoch_seconds"]) / max(seconds, 1e-9),
                       workers=meta["workers"])


def scan_parts(uri: str, vocab_size: int, storage_options: dict) -> list[tuple[str, list[int]]]:
    """[(path, rows per row group)] of the sorted part-*.parquet under `uri`, schema checked."""
    fs, root = filesystem(uri, storage_options)
    paths = sorted(fs.glob(root.rstrip("/") + "/part-*.parquet"))
    if not paths:
        raise FileNotFoundError(f"{uri}: no co-occurrence files part-*.parquet; run the statistics step first "
                                "or point the training input at its output folder")
    if vocab_size < 1:
        raise ValueError(f"{uri}: vocab_size is {vocab_size}; pass the vocabulary size of the statistics run")
    files = []
    for path in paths:
        with fs.open(path, "rb") as fh:
            meta = pq.ParquetFile(fh).metadata
        check(meta.schema.to_arrow_schema().empty_table(), COOCCURRENCE, f"cooccurrence at {path}")  # footer only
        files.append((path, [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]))
    return files


class _Shard:
    """One worker's files, streamed as shuffled buffers of (i, j, x)."""

    def __init__(self, uri: str, storage_options: dict, files: list[tuple[str, list[int]]], vocab_size: int):
        self.fs, _ = filesystem(uri, storage_options)
        self.units = [(path, g) for path, rows in files for g in range(len(rows))]  # (file, row group)
        self.n_entries = sum(sum(rows) for _, rows in files)
        self.vocab_size = vocab_size

    def shuffled(self, rng: np.random.Generator, buffer_size: int) -> Iterator[tuple[np.ndarray, ...]]:
        parts, held = [], 0
        for unit in rng.permutation(len(self.units)):
            for part in self._read(*self.units[unit]):
                parts.append(part)
                held += len(part[0])
                if held >= buffer_size:
                    yield _permuted(parts, rng)
                    parts, held = [], 0
        if parts:
            yield _permuted(parts, rng)

    def _read(self, path: str, group: int) -> Iterator[tuple[np.ndarray, ...]]:
        with self.fs.open(path, "rb") as fh:
            for batch in pq.ParquetFile(fh).iter_batches(READ_BATCH, row_groups=[group], columns=COOCCURRENCE.names):
                i, j, x = (batch.column(c).to_numpy() for c in COOCCURRENCE.names)
                ids = np.concatenate([i, j])
                outside = ids[(ids < 0) | (ids >= self.vocab_size)]
                if len(outside):
                    raise ValueError(f"{path} row group {group}: word id {outside[0]} is outside the vocabulary "
                                     f"[0, {self.vocab_size}); the matrix and vocab_size come from different "
                                     "statistics runs")
                if not (x > 0).all() or not np.isfinite(x).all():
                    raise ValueError(f"{path} row group {group}: co-occurrence values must be finite and > 0 "
                                     "(GloVe takes log x); drop zero entries when writing the matrix")
                yield i, j, x

    def entries(self) -> tuple[np.ndarray, ...]:
        """The whole share in file order (for a device that holds it all): i, j int32, x float32."""
        parts = [part for unit in self.units for part in self._read(*unit)]
        return tuple(np.concatenate([p[k] for p in parts]) if parts else np.empty(0, dtype)
                     for k, dtype in enumerate((np.int32, np.int32, np.float32)))


def _permuted(parts: list[tuple[np.ndarray, ...]], rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    order = rng.permutation(sum(len(p[0]) for p in parts))
    return tuple(np.concatenate([p[k] for p in parts])[order] for k in range(3))


class _GloveWorker:
    """One worker's GloVe: its shard of the matrix, the state, and the kernel for its device (an
    EpochModel of workers/raytrain/epochs.py)."""

    def __init__(self, loop: dict, rank: int, world: int, folder: Path | None, meta: dict):
        self.config = config = GloveConfig.model_validate(loop["config"])
        self.vocab_size, self.rank = loop["vocab_size"], rank
        self.shard = _Shard(loop["uri"], loop["storage_options"], loop["files"][rank::world], self.vocab_size)
        self.state = load_state(folder) if folder is not None else init_state(self.vocab_size, config.dim, config.seed)
        self.device = ray.train.torch.get_device() if config.use_gpu else torch.device("cpu")
        self.state_t = torch.from_numpy(self.state).to(self.device)  # on CPU: the same memory as `state`
        self.sync = SparseDeltaSync(self.state_t, world, loop["sync"])  # rows: the last axis, (D+1,)
        self.syncs_per_epoch = config.syncs_per_epoch
        self.on_device = None  # CUDA: the share and the kernel on the device
        if self.device.type == "cuda":
            from firth.workers.glove.kernel_cuda import DeviceGlove  # numba-cuda loads only on GPU workers

            self.on_device = DeviceGlove(self.state_t, *self.shard.entries(), self.vocab_size, config.x_max,
                                         config.alpha, config.learning_rate)

    def share(self, epoch: int) -> int:
        return self.shard.n_entries

    def train_epoch(self, epoch: int, points: EpochPoints) -> list[float]:
        """Shuffled buffers of this worker's entries, cut at the sync points: [cost sum, entries]."""
        config = self.config
        rng = np.random.default_rng((config.seed, epoch, self.rank))
        if self.on_device is not None:
            return device_epoch(self.on_device, int(rng.integers(2**62)), points)
        cost, done = 0.0, 0
        for i, j, x in self.shard.shuffled(rng, config.shuffle_buffer):
            pos = 0
            while pos < len(i):
                take = min(len(i) - pos, points.room(done))
                cost += self._train(i[pos:pos + take], j[pos:pos + take], x[pos:pos + take])
                pos, done = pos + take, done + take
                points.reached(done)
        return [cost, done]

    def _train(self, i: np.ndarray, j: np.ndarray, x: np.ndarray) -> float:
        c = self.config
        return sgd_numba(self.state[0], self.state[1], i, j, x, self.vocab_size, c.x_max, c.alpha, c.learning_rate)

    def summary(self, totals: list[float], seconds: float, meta: dict) -> tuple[float, dict, dict]:
        cost, entries = totals[0], int(totals[1])
        return cost / max(totals[1], 1), {"entries_per_sec": entries / seconds}, {"entries": entries}

    def save(self, folder: Path) -> None:
        save_state(folder, self.state_t.cpu().numpy())


def device_epoch(on_device, seed: int, points: EpochPoints) -> list[float]:
    """One epoch of a DeviceGlove: a fresh device permutation, one launch per stretch up to the next sync
    point (the all-reduce follows on the same stream), the cost read once: [cost sum, entries]."""
    on_device.shuffle(seed)
    done = 0
    while done < on_device.n:
        take = min(on_device.n - done, points.room(done))
        on_device.train(done, take)
        done += take
        points.reached(done)
    return [on_device.epoch_cost(), done]
