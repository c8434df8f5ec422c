"""word2vec and fastText on Ray Train: streaming the tokens table, parameter sync, checkpoints.

Data. The statistics' tokens table (`<statistics>/tokens/shard-*.parquet`, firth.schemas.tables.TOKENS:
one row per document, its in-vocabulary ids in order) and its vocabulary (ids by descending
count, with counts). The driver reads only the Parquet footers (row groups and their token
counts) and deals the (file, row group) units to the workers, largest first to the least loaded,
so shares are even; each worker streams its own units, one row group at a time, in the same
order every epoch (as gensim iterates its corpus), and trains on blocks of about `block_words`
words (whole documents) with the numba kernel (CPU) or the numba-cuda kernel (GPU).

Parameters: every worker holds the whole float32 state of workers/word2vec/model.py (input rows,
syn1neg, syn1: (rows, D)) and trains its own copy between syncs. `syncs_per_epoch` times per epoch,
at even fractions of each worker's share (a block ends at a sync point), the workers combine their
changes since the last sync with workers/raytrain/sync.py's SparseDeltaSync: two all-reduces, a
(rows, 2) float32 of per-row counts and squared norms, then the summed changes of only the rows
some worker moved (a row diff against the last synced state). `sync` says how a row's changes
combine; the default, "aligned", divides a row's summed change by |Σ δ_i|² / Σ |δ_i|² (at least 1):
about 1 where one worker moved the row or the workers' changes are independent, so they add up as
gensim's Hogwild threads' updates would; N where all N pushed it the same way, as they all do a
frequent word's row, whose sum ("sum") is an N-fold step. The learning rate follows the run-wide
linear decay by each worker's position in its own share, so all workers decay together.

Measured (benchmarks/sync_schemes.py: N logical workers in one process, the same bytes as N Ray
workers; skip-gram, the benchmark settings; 6 of the bench corpus's 16 tokens files, 3 epochs, seed
1; benchmarks/README.md): one worker WordSim-353 ρ 0.323, analogies 7.1 %. Four workers at 16 syncs
per epoch: "aligned" 0.283 / 5.7 % with a last-epoch loss as one worker's (1.93 vs 1.94); "sum" 0.328
/ 2.6 % but its loss runs away (37.5; at 4 syncs it diverges: 83.4, ρ 0.14); "touched" (divide by the
workers that moved the row: all of them, for most output rows, through the negatives) 0.224 / 2.0 %;
"mean" (model averaging, BlazingText's) 0.180 / 1.6 %. On the whole corpus (5 epochs), 4 workers
"aligned" at 16 syncs: ρ 0.457, analogies 23.9 %, against one worker's 0.516 / 25.5 %: analogies
hold, ρ does not (issue 15 asks 0.02). A sync moves ~111 k of the 147.9 k rows (the negatives touch
most output rows), 45.5 MB against 59.2 MB dense, 728 MB per epoch at 2, 4 or 8 workers. Within a machine, threads do
better: `threads_per_worker` Hogwild threads share one worker's state without locks, exactly as
gensim's workers do (ρ 0.513 with 1 worker x 2 threads, at 1.6x one thread's speed). So: one worker
per machine, one thread per core, and syncs between machines.

Loss: the mean per trained example (input, target) of -log σ over the scored outputs (target +
negatives, or the Huffman path); the sums and counts of all workers are all-reduced, so it does
not depend on the number of workers and cannot overflow (float64 sums). words/s: corpus words
(before subsampling, all workers) per second of epoch time.

Ray Train: the harness of workers/raytrain/ runs `_Word2VecWorker` in its per-worker epoch loop,
as GloVe's: sync points, progress, the fault hook, one checkpoint per epoch after its last sync
(rank 0: state.npy and meta.json); a failure restores from the last (FailureConfig), and the
random state of an epoch is derived from (seed, epoch, rank), so a restored run replays the same draws.

Determinism: with one worker, one thread, CPU, a fixed seed and the same input, two runs give identical
bytes (the kernel is single-threaded, and its LCG draws are seeded by (seed, epoch, rank)).
With more workers the result depends on the number of workers (which words each sees between
syncs, and the rank seeds) but not on timing: still identical for a fixed number of workers on CPU.
With more threads, the interleaving of their updates (Hogwild) makes runs differ.
On the GPU, index_add_ order is not fixed, so runs differ in the last bits.
"""
from __future__ import annotations

import io
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import ray.train
import torch

from firth.pipelines.config import MODEL_CONFIGS, FastTextConfig, JobConfig, Word2VecConfig
from firth.schemas import subwords, tables
from firth.schemas.fs import filesystem, join
from firth.schemas.statistics import StatisticsSummary
from firth.workers.raytrain.checkpoints import claim, load_state, save_state
from firth.workers.raytrain.epochs import EpochPoints
from firth.workers.raytrain.harness import fit
from firth.workers.raytrain.sync import SparseDeltaSync
from firth.workers.trainers import Trained
from firth.workers.word2vec.loop import WorkerLoop, read_unit
from firth.workers.word2vec.model import Layout, init_state, make_layout, word_vectors

log = logging.getLogger(__name__)

SUBWORDS_ARTIFACT = "subwords.npz"  # fastText: bucket ids (K,) int64 and their vectors (K, D) float32
# a checkpoint resumes only with the same data and these settings
RESUMABLE_WITH_SAME = {"model", "architecture", "dim", "window", "negative", "hs", "sample", "alpha", "min_alpha",
                       "seed", "min_n", "max_n", "buckets", "init_from"}


@dataclass(frozen=True)
class Word2VecResult:
    vectors: np.ndarray  # (V, D) float32 word vectors (fastText: word + n-gram mean)
    bucket_ids: np.ndarray  # (K,) int64 n-gram buckets with a trained row (fastText), sorted
    bucket_vectors: np.ndarray  # (K, D) float32
    epoch_losses: list[float]
    words_per_sec: float  # corpus words per second of epoch time, all workers
    epochs_run: int
    workers: list[dict] = field(default_factory=list)  # where each rank ran (workers/raytrain/harness.py)


def train(config: JobConfig, statistics: StatisticsSummary, *, checkpoint_uri: str,
          fault_injection: str | None = None) -> Trained:
    """The job's entry point (firth.workers.trainers): word2vec or fastText on the run's tokens table."""
    model = config.model
    vocabulary = tables.read_parquet(join(statistics.uri, "vocabulary.parquet"), tables.VOCABULARY,
                                     config.store.storage_options)
    initial = None
    if model.init_from:
        from firth.workers.word2vec.warm_start import warm_start_vectors  # only continued training needs the store
        initial = warm_start_vectors(config, vocabulary["token"].to_pylist())
    result = train_word2vec(join(statistics.uri, "tokens"), vocabulary["token"].to_pylist(),
                            vocabulary["count"].to_numpy(), model, storage_options=config.store.storage_options,
                            checkpoint_uri=checkpoint_uri, fault_injection=fault_injection, initial=initial)
    trained = Trained(vectors=result.vectors, epoch_losses=result.epoch_losses,
                      metrics={"words_per_sec": result.words_per_sec}, workers=result.workers)
    if isinstance(model, FastTextConfig):
        buffer = io.BytesIO()
        np.savez(buffer, bucket_ids=result.bucket_ids, vectors=result.bucket_vectors)
        trained.artifacts[SUBWORDS_ARTIFACT] = buffer.getvalue()
        trained.metadata["subwords"] = {"min_n": model.min_n, "max_n": model.max_n, "buckets": model.buckets,
                                        "hash": subwords.HASH, "artifact": SUBWORDS_ARTIFACT, "oov": "mean"}
    return trained


def train_word2vec(tokens_uri: str, vocabulary: list[str], counts: np.ndarray, config: Word2VecConfig, *,
                   storage_options: dict | None = None, checkpoint_uri: str, fault_injection: str | None = None,
                   progress: bool = True, initial: np.ndarray | None = None) -> Word2VecResult:
    """Train on the tokens table at `tokens_uri` with `config.num_workers` Ray Train workers.

    vocabulary: (V,) tokens in id order; counts: (V,) their corpus counts (descending).
    `initial`: (V, D) float32 rows to start the word vectors from (NaN rows: fresh), for continued
    training. `fault_injection`: a marker path (tests); if it does not exist, rank 1 (rank 0
    alone) creates it and raises in the middle of epoch 2, so the run restores from epoch 1.
    """
    storage_options = dict(storage_options or {})
    loop_config = worker_loop(tokens_uri, vocabulary, counts, config, storage_options, initial)
    units, rank_to_units, layout = loop_config["units"], loop_config["rank_to_units"], loop_config["layout"]
    if len(units) < config.num_workers:
        log.warning("%s: %d tokens row groups for %d workers; %d workers will idle (more corpus shards give more "
                    "tokens files)", tokens_uri, len(units), config.num_workers, config.num_workers - len(units))
    claim(checkpoint_uri, storage_options,
          {"units": units, "vocabulary": len(vocabulary), "counts": int(np.sum(counts)),
           **config.model_dump(mode="json", include=RESUMABLE_WITH_SAME)}, RESUMABLE_WITH_SAME)
    loop_config["fault_injection"] = fault_injection
    state, meta = fit(_Word2VecWorker, loop_config, run_name=config.model, label=config.model, unit="words",
                      num_workers=config.num_workers, use_gpu=config.use_gpu, max_failures=config.max_failures,
                      epochs=config.epochs, rank_to_share=[sum(u[2] for u in us) for us in rank_to_units],
                      checkpoint_uri=checkpoint_uri, storage_options=storage_options, progress=progress)
    seconds = sum(meta["epoch_seconds"])
    return Word2VecResult(vectors=word_vectors(layout, state), bucket_ids=layout.bucket_ids,
                          bucket_vectors=np.ascontiguousarray(state[layout.vocab_size:layout.n_input]),
                          epoch_losses=meta["epoch_losses"], epochs_run=meta["epochs_done"],
                          words_per_sec=meta["words"] * len(meta["epoch_seconds"]) / max(seconds, 1e-9),
                          workers=meta["workers"])


def worker_loop(tokens_uri: str, vocabulary: list[str], counts: np.ndarray, config: Word2VecConfig,
                storage_options: dict, initial: np.ndarray | None = None,
                units: list[tuple[str, int, int]] | None = None) -> dict:
    """What every `_Word2VecWorker` gets (Ray Train's, or workers/raytrain/logical.py's): the units of
    the tokens table (`units`: a subset of them) dealt to config.num_workers, the layout, the config."""
    units = scan_tokens(tokens_uri, storage_options) if units is None else units
    fasttext = isinstance(config, FastTextConfig) and config.max_n >= config.min_n
    layout = make_layout(vocabulary, config.dim, config.negative > 0, config.hs,
                         (config.min_n, config.max_n, config.buckets) if fasttext else None)
    return {"uri": tokens_uri, "storage_options": storage_options, "units": units,
            "rank_to_units": deal(units, config.num_workers), "counts": np.asarray(counts), "layout": layout,
            "config": config.model_dump(mode="json"), "fault_injection": None, "initial": initial}


def scan_tokens(uri: str, storage_options: dict) -> list[tuple[str, int, int]]:
    """[(path, row group, tokens)] of the sorted shard-*.parquet under `uri`, schema checked (footers only)."""
    fs, root = filesystem(uri, storage_options)
    paths = sorted(fs.glob(root.rstrip("/") + "/shard-*.parquet"))
    if not paths:
        raise FileNotFoundError(f"{uri}: no tokens files shard-*.parquet; run the statistics step first or point "
                                "the training input at its tokens folder")
    units = []
    for path in paths:
        with fs.open(path, "rb") as fh:
            meta = pq.ParquetFile(fh).metadata
        tables.check(meta.schema.to_arrow_schema().empty_table(), tables.TOKENS, f"tokens at {path}")
        leaf = next(c for c in range(meta.num_columns) if meta.schema.column(c).path.startswith("token_ids"))
        units += [(path, g, meta.row_group(g).column(leaf).num_values) for g in range(meta.num_row_groups)]
    return units


def deal(units: list[tuple[str, int, int]], workers: int) -> list[list[tuple[str, int, int]]]:
    """Units to workers, largest first to the least loaded (ties: lowest rank); each in file order."""
    loads, shares = [0] * workers, [[] for _ in range(workers)]
    for unit in sorted(units, key=lambda u: -u[2]):
        rank = loads.index(min(loads))
        shares[rank].append(unit)
        loads[rank] += unit[2]
    return [sorted(share, key=lambda u: (u[0], u[1])) for share in shares]


class _Word2VecWorker:
    """One worker's word2vec / fastText inside Ray Train: the WorkerLoop (workers/word2vec/loop.py)
    on this rank's units, as an EpochModel of workers/raytrain/epochs.py."""

    def __init__(self, loop: dict, rank: int, world: int, folder: Path | None, meta: dict):
        config = MODEL_CONFIGS[loop["config"]["model"]].model_validate(loop["config"])
        layout: Layout = loop["layout"]
        self.units = loop["rank_to_units"][rank]
        self.words = sum(u[2] for u in self.units)  # this worker's words per epoch
        # the units' paths are inside the tokens folder's filesystem (no s3:// of their own): open that one
        fs, _ = filesystem(loop["uri"], loop["storage_options"])
        self.read = lambda path, group: read_unit(fs, path, group, layout.vocab_size)
        if folder is not None:
            state = load_state(folder)
        else:
            state = init_state(layout, config.seed)
            if loop["initial"] is not None:  # continued training: known words start from their published rows
                known = ~np.isnan(loop["initial"]).any(axis=1)
                state[:layout.vocab_size][known] = loop["initial"][known]
        self.device = ray.train.torch.get_device() if config.use_gpu else torch.device("cpu")
        self.worker = WorkerLoop(config, layout, loop["counts"], self.device, rank, state)
        # all_reduce: torch.distributed's in Ray Train; the logical workers' of benchmarks/sync_schemes.py
        self.sync = SparseDeltaSync(self.worker.state_t, world, config.sync, loop.get("all_reduce"))
        self.syncs_per_epoch = config.syncs_per_epoch

    def share(self, epoch: int) -> int:
        return self.words

    def train_epoch(self, epoch: int, points: EpochPoints) -> list[float]:
        """[loss sum, examples, words kept, words]"""
        stats, done = self.worker.epoch(epoch, self.units, self.read, points.reached, points.room)
        return [*stats, done]

    def summary(self, totals: list[float], seconds: float, meta: dict) -> tuple[float, dict, dict]:
        loss, words = totals[0] / max(totals[1], 1.0), int(totals[3])
        return loss, {"words_per_sec": words / seconds, "effective_words_per_sec": totals[2] / seconds}, {"words": words}

    def save(self, folder: Path) -> None:
        save_state(folder, self.worker.state_t.cpu().numpy())
