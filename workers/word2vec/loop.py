"""One worker's word2vec / fastText training loop, without Ray: the tables, the state, the kernel
for its device, and one epoch over a list of (file, row group) units of the tokens table.

workers/word2vec/train.py runs it inside Ray Train (the shared epoch loop of
workers/raytrain/epochs.py: sync, checkpoints, progress); the GPU benchmark runs it alone. `config`
is a Word2VecConfig or anything with the same attributes (the benchmark's device machine has no
pydantic). Kernels: workers/word2vec/kernel_numba.py on a CPU device (Hogwild threads),
workers/word2vec/kernel_cuda.py on a CUDA device (its tables and the state stay on the device; one
launch per block of documents).
"""
from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyarrow.parquet as pq
import torch

from firth.workers.word2vec.kernel_numba import train_block
from firth.workers.word2vec.model import (
    NO_HUFFMAN,
    Layout,
    alias_table,
    huffman,
    init_state,
    keep_probabilities,
    sigmoid_tables,
)

Unit = tuple[str, int, int]  # (tokens file path, row group, tokens in it)


class WorkerLoop:
    """The training state of one worker and how it trains a block; `state` is (rows, D) float32
    (numpy on CPU, shared with `state_t`; on CUDA only `state_t` is current)."""

    def __init__(self, config, layout: Layout, counts: np.ndarray, device: torch.device, rank: int,
                 state: np.ndarray | None = None, cuda_kernel: bool = False):
        """cuda_kernel: the numba-cuda kernel on a CPU device too (tests, through numba's CUDA
        simulator); a CUDA device always uses it."""
        self.config, self.layout, self.device, self.rank = config, layout, device, rank
        self.keep = keep_probabilities(counts, config.sample)
        self.alias_prob, self.alias_idx = alias_table(counts)
        self.codes, self.points, self.lengths = huffman(counts) if config.hs else NO_HUFFMAN
        self.sig, self.logsig = sigmoid_tables()
        self.state = init_state(layout, config.seed) if state is None else state
        self.state_t = torch.from_numpy(self.state).to(device)  # on CPU: the same memory as `state`
        self.sg = config.architecture == "skipgram"
        self.cuda_tables = None
        if device.type == "cuda" or cuda_kernel:  # imported here: numba.cuda only where it is used
            from firth.workers.word2vec import kernel_cuda

            self.kernel_cuda = kernel_cuda
            self.cuda_tables = kernel_cuda.DeviceTables(layout.row_offsets, layout.rows, self.keep, self.alias_prob,
                                                        self.alias_idx, self.codes, self.points, self.lengths,
                                                        self.sig, self.logsig)
        # Hogwild threads (CPU kernel): each block is split among them, and they update one state
        self.threads = getattr(config, "threads_per_worker", 1) if self.cuda_tables is None else 1
        self.pool = ThreadPoolExecutor(self.threads) if self.threads > 1 else None

    def train(self, ids: np.ndarray, offsets: np.ndarray, alpha_start: float, alpha_end: float,
              rng_state: np.ndarray, stats: np.ndarray) -> None:
        """Train on one block of documents; stats (3,) float64 += (loss sum, examples, words kept).
        rng_state: (threads,) uint64, one LCG state per thread (CUDA: one, the counter its chunks'
        states are drawn from)."""
        c, layout = self.config, self.layout
        if self.cuda_tables is not None:
            from numba import cuda

            negative_rows = layout.vocab_size * layout.negative
            state = cuda.as_cuda_array(self.state_t) if self.device.type == "cuda" else self.state
            self.kernel_cuda.train_block(state, layout.n_input,
                                         layout.n_input + negative_rows, self.cuda_tables, ids, offsets, self.sg,
                                         c.negative, c.hs, c.window, alpha_start, alpha_end, rng_state, stats)
            return
        syn0, syn1neg, syn1 = layout.views(self.state)

        def kernel(part: int, first: int, last: int) -> np.ndarray:
            part_stats = np.zeros(3)
            train_block(syn0, syn1neg, syn1, ids[offsets[first]:offsets[last]],
                        offsets[first:last + 1] - offsets[first], layout.row_offsets, layout.rows, self.keep,
                        self.alias_prob, self.alias_idx, self.codes, self.points, self.lengths, self.sg,
                        c.negative, c.hs, c.window, alpha_start, alpha_end, rng_state[part:part + 1], self.sig,
                        self.logsig, part_stats)
            return part_stats

        if self.pool is None:
            stats += kernel(0, 0, len(offsets) - 1)
            return
        # the threads train equal parts (by words, whole documents) at once, each with its own
        # random state, all at the block's learning rate (they run side by side)
        parts = [(k, *span) for k, span in enumerate(equal_parts(offsets, self.threads))]
        for part_stats in self.pool.map(lambda part: kernel(*part), parts):
            stats += part_stats

    def epoch(self, epoch: int, units: list[Unit], read: Callable[[str, int], tuple[np.ndarray, np.ndarray]],
              on_block: Callable[[int], None] = lambda done: None,
              room: Callable[[int], int] = lambda done: 1 << 62) -> tuple[np.ndarray, int]:
        """Train on `units` in order; the learning rate follows the run-wide linear decay by this
        worker's position in its share. `on_block(words done this epoch)` runs before each block
        (sync points, progress, fault injection); a block ends at block_words or at `room(done)`
        words, the next sync point, whichever comes first (whole documents). Returns (stats, words)."""
        c = self.config
        share = sum(u[2] for u in units)
        total = c.epochs * max(share, 1)
        seed = np.random.SeedSequence((c.seed, epoch, self.rank)).generate_state(self.threads, np.uint64)
        rng_state = np.array(seed, dtype=np.uint64)  # (threads,) the kernel's LCG states: replayable per epoch
        stats = np.zeros(3)
        done = 0
        for path, group, _ in units:
            ids, offsets = read(path, group)
            first = 0
            while first < len(offsets) - 1:
                on_block(done)
                last = block_end(offsets, first, min(c.block_words, room(done)))
                block_ids = ids[offsets[first]:offsets[last]]
                position = epoch * share + done
                a0 = c.alpha - (c.alpha - c.min_alpha) * position / total
                a1 = c.alpha - (c.alpha - c.min_alpha) * (position + len(block_ids)) / total
                self.train(block_ids, offsets[first:last + 1] - offsets[first], a0, a1, rng_state, stats)
                done += len(block_ids)
                first = last
        on_block(done)
        return stats, done


def equal_parts(offsets: np.ndarray, parts: int) -> list[tuple[int, int]]:
    """Documents offsets (docs+1,) cut into at most `parts` runs of whole documents of about equal
    words: [(first, last)] document indices, last exclusive, none empty."""
    cuts = np.searchsorted(offsets, np.linspace(0, offsets[-1], parts + 1)).tolist()
    cuts[0], cuts[-1] = 0, len(offsets) - 1
    return [(a, b) for a, b in zip(cuts, cuts[1:]) if a < b]


def block_end(offsets: np.ndarray, first: int, words: int) -> int:
    """The end (exclusive) of a block of whole documents from document `first`: the first
    document boundary at or past `words` words, and at least one document."""
    last = int(np.searchsorted(offsets, offsets[first] + max(words, 1), side="left"))
    return min(max(last, first + 1), len(offsets) - 1)


def read_unit(fs, path: str, group: int, vocab_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids (n,) int32, document offsets (docs+1,) int64) of one row group of a tokens file."""
    with fs.open(path, "rb") as fh:
        column = pq.ParquetFile(fh).read_row_group(group, columns=["token_ids"]).column(0).combine_chunks()
    ids = column.values.to_numpy().astype(np.int32, copy=False)
    offsets = column.offsets.to_numpy().astype(np.int64)
    ids = ids[offsets[0]:offsets[-1]]
    offsets = offsets - offsets[0]
    if len(ids) and (ids.min() < 0 or ids.max() >= vocab_size):
        raise ValueError(f"{path} row group {group}: a word id is outside the vocabulary [0, {vocab_size}); the "
                         "tokens table and the vocabulary come from different statistics runs")
    return ids, offsets
