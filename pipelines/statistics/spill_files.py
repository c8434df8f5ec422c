"""Sorted co-occurrence run files on storage: write one, merge many within a memory budget.

A run file is a Parquet file of firth.schemas.tables.COOCCURRENCE_PARTIAL (i, j, units), sorted by (i, j)
and unique, written in small row groups so that a reader can stream it. Merging follows GloVe's
`cooccur` (k-way merge of overflow files), with two bounds:

  fan-in    at most `fan_in` files are open at once; more runs are first merged in groups of
            `fan_in` into intermediate runs (a merge tree of depth ⌈log_fan_in(runs)⌉), so
            thousands of runs never exhaust file descriptors;
  memory    each open run is read in chunks of `chunk_rows(memory_bytes, fan_in)` rows; a merge
            step sums everything up to the smallest last key among the buffered chunks (all
            later keys of every run are larger), so memory is fan_in chunks plus their merge.

Sums are exact int64 weight units, so the result does not depend on the grouping.
"""
from __future__ import annotations

import posixpath
from typing import Callable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from firth.pipelines.statistics.kernels import Cooc, sorted_runs
from firth.schemas import tables
from firth.schemas.fs import filesystem, join, open_atomic

ROW_GROUP_ROWS = 1 << 14  # rows per Parquet row group of a run file: the unit a reader decompresses
# (so an open run costs ≈ 16 K rows · 16 bytes, decoded: 128 open runs ≈ 32 MB)
_BYTES_PER_BUFFERED_ROW = 64  # key + units buffered, the Arrow batch they came from, merge output


def chunk_rows(memory_bytes: int, fan_in: int) -> int:
    return max(1024, int(memory_bytes) // (int(fan_in) * _BYTES_PER_BUFFERED_ROW))


def write_run(piece: Cooc, uri: str, storage_options: dict) -> None:
    """One sorted piece (i, j, units) → a run file."""
    table = tables.check(pa.table({"i": pa.array(piece.i, pa.int32()), "j": pa.array(piece.j, pa.int32()),
                                   "units": pa.array(piece.units, pa.int64())}), tables.COOCCURRENCE_PARTIAL)
    with open_atomic(uri, storage_options) as f:
        pq.write_table(table, f, compression="zstd", row_group_size=ROW_GROUP_ROWS)


def list_runs(folder_uri: str, storage_options: dict) -> list[str]:
    """The run files under a folder, sorted by name (empty if the folder does not exist)."""
    fs, path = filesystem(folder_uri, storage_options)
    if not fs.exists(path):
        return []
    names = sorted(posixpath.basename(p) for p in fs.ls(path, detail=False))
    return [join(folder_uri, n) for n in names if n.endswith(".parquet") and not n.startswith(".")]


def iter_run_chunks(uri: str, storage_options: dict, rows: int):
    """(i, j, units) numpy chunks of at most `rows` rows of one run file, in file order."""
    fs, path = filesystem(uri, storage_options)
    with fs.open(path, "rb") as f:
        for batch in pq.ParquetFile(f).iter_batches(batch_size=rows, columns=["i", "j", "units"]):
            yield (batch.column(0).to_numpy().astype(np.int64), batch.column(1).to_numpy().astype(np.int64),
                   batch.column(2).to_numpy())


def merge_run_files(run_uris: list[str], write: Callable[[np.ndarray, np.ndarray], None], work_uri: str,
                    storage_options: dict, memory_bytes: int, fan_in: int) -> int:
    """Merge sorted run files into `write(keys, units)` calls in ascending key order (key = i << 32 | j);
    returns the number of entries. Intermediate runs go under `work_uri` and are removed."""
    if fan_in < 2:
        raise ValueError(f"merge fan-in must be ≥ 2 (statistics.merge_fan_in), got {fan_in}")
    rows = chunk_rows(memory_bytes, fan_in)
    level = 0
    intermediates: list[str] = []
    while len(run_uris) > fan_in:
        merged_level = []
        for group_start in range(0, len(run_uris), fan_in):
            out = join(work_uri, f"merge-{level:02d}-{group_start // fan_in:06d}.parquet")
            with _RunWriter(out, storage_options) as writer:
                _stream_merge(run_uris[group_start:group_start + fan_in], writer.write, storage_options, rows)
            merged_level.append(out)
        _remove([u for u in run_uris if u in intermediates], storage_options)
        intermediates += merged_level
        run_uris, level = merged_level, level + 1
    total = _stream_merge(run_uris, write, storage_options, rows)
    _remove([u for u in run_uris if u in intermediates], storage_options)
    return total


class _RunReader:
    """One open run: its current chunk as sorted keys (i << 32 | j) and units."""

    def __init__(self, uri: str, storage_options: dict, rows: int):
        self._chunks = iter_run_chunks(uri, storage_options, rows)
        self.keys = self.units = np.zeros(0, np.int64)
        self.done = False
        self.refill()

    def refill(self) -> None:
        while not len(self.keys) and not self.done:
            try:
                i, j, units = next(self._chunks)
            except StopIteration:
                self.done = True
                return
            self.keys, self.units = (i << 32) | j, units

    def take_through(self, bound: int) -> tuple[np.ndarray, np.ndarray]:
        """Remove and return the buffered entries with key <= bound; refill when the chunk runs out."""
        k = int(np.searchsorted(self.keys, bound, side="right"))
        taken = (self.keys[:k], self.units[:k])
        self.keys, self.units = self.keys[k:], self.units[k:]
        self.refill()
        return taken


def _stream_merge(run_uris: list[str], write, storage_options: dict, rows: int) -> int:
    readers = [_RunReader(u, storage_options, rows) for u in run_uris]
    active = [r for r in readers if not r.done]
    total = 0
    while active:
        bound = min(int(r.keys[-1]) for r in active)  # every run's later keys are above its last buffered key
        keys, units = sorted_runs.merge_runs([r.take_through(bound) for r in active])
        if len(keys):
            write(keys, units)
            total += len(keys)
        active = [r for r in active if not r.done]
    return total


class _RunWriter:
    """A run file written chunk by chunk (keys i << 32 | j, units) in ascending key order."""

    def __init__(self, uri: str, storage_options: dict):
        self._context = open_atomic(uri, storage_options)

    def __enter__(self) -> "_RunWriter":
        self._writer = pq.ParquetWriter(self._context.__enter__(), tables.COOCCURRENCE_PARTIAL, compression="zstd")
        return self

    def write(self, keys: np.ndarray, units: np.ndarray) -> None:
        self._writer.write_table(pa.table({"i": pa.array((keys >> 32).astype(np.int32)),
                                           "j": pa.array((keys & 0xFFFFFFFF).astype(np.int32)),
                                           "units": pa.array(units, pa.int64())}, schema=tables.COOCCURRENCE_PARTIAL),
                                 row_group_size=ROW_GROUP_ROWS)

    def __exit__(self, *exc) -> None:
        self._writer.close()
        self._context.__exit__(*exc)


def _remove(uris: list[str], storage_options: dict) -> None:
    for uri in uris:
        fs, path = filesystem(uri, storage_options)
        fs.rm(path)
