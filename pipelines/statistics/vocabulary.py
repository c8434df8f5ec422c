"""The vocabulary built on the workers: word counts merged by hash bucket, cut and numbered in one bounded pass.

The driver never holds a word. Three steps, each an engine map:

  CountWords   per shard: its word counts (WordCounts) split by word_buckets (FNV-1a of the UTF-8
               bytes, mod n_buckets) → _partial/words/bucket-BBBBB/shard-NNNNN.parquet, sorted by word
  MergeWords   per bucket: the shards' parts summed, `merge_fan_in` files at a time; words with
               count ≥ min_count ordered by (count desc, token asc) → _partial/vocabulary/bucket-BBBBB.parquet
  NumberWords  one task: a k-way merge of the buckets in that same order, read in chunks; the first
               max_vocab_size rows get ids 0, 1, ... → vocabulary.parquet and idf.parquet

(count desc, token asc) is a total order (tokens are unique), so the merged order, and with it the
max_vocab_size cut and the tie-break at the cut and at min_count, is exactly that of
kernels.build_vocabulary over all counts at once. What reaches the driver: per shard its report and
token count, per bucket one integer, and the vocabulary's size.

Memory. MergeWords holds its bucket's distinct words (the corpus's distinct words / n_buckets, about
60 bytes each with their counts and Arrow's hash table) plus `merge_fan_in` shard parts; NumberWords
holds n_buckets chunks of `chunk_rows` rows, within statistics.memory_mb.
"""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from firth.pipelines.statistics import kernels
from firth.pipelines.statistics.shard_cache import WORDS
from firth.schemas import tables
from firth.schemas.fs import filesystem, join, open_atomic

# The lookup an EncodeShards task holds, besides the vocabulary's tokens (their UTF-8 bytes + 8-byte offsets):
# the hash set pc.index_in builds from them for each batch (measured 66 bytes a word from 0.1 to
# 1.6 M words: benchmarks/scale_bench.py --lookup; checked in tests/pipelines/test_statistics_vocabulary.py),
# the idf (4 bytes a word) and a cache entry's id map (4).
LOOKUP_BYTES_PER_WORD = 80
_VOCABULARY_PIECE = pa.schema([f for f in tables.VOCABULARY if f.name != "id"])  # token, count, doc_count
_BYTES_PER_BUFFERED_WORD = 256  # a token, its counts, the comparison masks and the sorted output copy


def write_word_parts(counts: kernels.WordCounts, folder: str, index: int, n_buckets: int,
                     storage_options: dict) -> None:
    """CountWords' output: the shard's counts, split by bucket, as <folder>/bucket-BBBBB/shard-NNNNN.parquet."""
    buckets = kernels.word_buckets(counts.words, n_buckets)  # (n_words,)
    order = np.argsort(buckets, kind="stable")  # by bucket, words still sorted within each
    starts = np.searchsorted(buckets[order], np.arange(n_buckets + 1))
    for bucket in range(n_buckets):
        rows = order[starts[bucket]:starts[bucket + 1]]
        if len(rows):
            tables.write_parquet(pa.table({"word": counts.words.take(pa.array(rows)), "count": counts.counts[rows],
                                           "doc_count": counts.doc_counts[rows]}),
                                 join(folder, f"bucket-{bucket:05d}", f"shard-{index:05d}.parquet"), WORDS,
                                 storage_options)


def merge_word_parts(part_uris: list[str], out_uri: str, min_count: int, fan_in: int, storage_options: dict) -> int:
    """MergeWords: sum one bucket's parts, keep count ≥ min_count, write them in vocabulary order; returns
    the words kept. At most `fan_in` parts are read at once besides the running sum."""
    merged = kernels.WordCounts.empty()
    for start in range(0, len(part_uris), fan_in):
        parts = [tables.read_parquet(uri, WORDS, storage_options) for uri in part_uris[start:start + fan_in]]
        merged = kernels.merge_word_counts([merged] + [kernels.WordCounts(
            p["word"].combine_chunks(), p["count"].to_numpy(), p["doc_count"].to_numpy(), 0) for p in parts])
    piece = kernels.build_vocabulary(merged, min_count, None)  # (count desc, token asc); its ids are dropped
    tables.write_parquet(piece.drop_columns(["id"]), out_uri, _VOCABULARY_PIECE, storage_options)
    return piece.num_rows


def number_words(piece_uris: list[str], vocabulary_uri: str, idf_uri: str, max_size: int | None, n_documents: int,
                 memory_bytes: int, storage_options: dict) -> int:
    """NumberWords: the buckets' pieces merged in vocabulary order, cut at max_size and numbered from 0,
    streamed to vocabulary.parquet and idf.parquet; returns the vocabulary size."""
    rows = max(1024, memory_bytes // (max(len(piece_uris), 1) * _BYTES_PER_BUFFERED_WORD))
    readers = [_PieceReader(uri, storage_options, rows) for uri in piece_uris]
    limit = max_size if max_size is not None else float("inf")
    size = 0
    with _Writer(vocabulary_uri, tables.VOCABULARY, storage_options) as vocabulary, \
            _Writer(idf_uri, tables.IDF, storage_options) as idf:
        for chunk in _merged_chunks(readers):
            chunk = chunk.slice(0, int(min(chunk.num_rows, limit - size)))
            ids = pa.array(np.arange(size, size + chunk.num_rows, dtype=np.int32))
            vocabulary.write(pa.table([chunk["token"], ids, chunk["count"], chunk["doc_count"]],
                                      schema=tables.VOCABULARY))
            idf.write(pa.table({"term_id": ids, "doc_count": chunk["doc_count"], "idf": pa.array(
                kernels.idf(chunk["doc_count"].to_numpy(), n_documents), pa.float32())}, schema=tables.IDF))
            size += chunk.num_rows
            if size >= limit:
                break
    return size


def load_lookup(vocabulary_uri: str, idf_uri: str, storage_options: dict) -> tuple[pa.LargeStringArray, np.ndarray]:
    """What an EncodeShards task needs of the vocabulary, read by the worker itself (never shipped from
    the driver): tokens in id order (V,) and idf (V,) float32."""
    return (_column(vocabulary_uri, "token", storage_options).cast(pa.large_string()),
            _column(idf_uri, "idf", storage_options).to_numpy())


def lookup_bytes(vocabulary_tokens: pa.Array) -> int:
    """Bytes the lookup of these tokens takes on a worker at its peak (see LOOKUP_BYTES_PER_WORD)."""
    return int(vocabulary_tokens.nbytes) + LOOKUP_BYTES_PER_WORD * len(vocabulary_tokens)


def _column(uri: str, name: str, storage_options: dict) -> pa.Array:
    fs, path = filesystem(uri, storage_options)
    with fs.open(path, "rb") as f:
        return pq.read_table(f, columns=[name])[name].combine_chunks()


def _merged_chunks(readers: list["_PieceReader"]):
    """Sorted tables (token, count, doc_count) in vocabulary order, each ending at a bound that every
    reader's later rows come after (the first, in that order, of the readers' last buffered rows)."""
    active = [r for r in readers if not r.done]
    while active:
        bound = min(r.last_key() for r in active)  # (-count, token): vocabulary order as a Python tuple
        taken = pa.concat_tables([r.take_through(bound) for r in active])
        if taken.num_rows:
            yield taken.take(pc.sort_indices(taken, sort_keys=[("count", "descending"), ("token", "ascending")]))
        active = [r for r in active if not r.done]


class _PieceReader:
    """One bucket's vocabulary piece, buffered a chunk at a time."""

    def __init__(self, uri: str, storage_options: dict, rows: int):
        fs, path = filesystem(uri, storage_options)
        self._file = fs.open(path, "rb")
        self._batches = pq.ParquetFile(self._file).iter_batches(batch_size=rows)
        self.buffer = _VOCABULARY_PIECE.empty_table()
        self.done = False
        self._refill()

    def last_key(self) -> tuple[int, str]:
        return -self.buffer["count"][-1].as_py(), self.buffer["token"][-1].as_py()

    def take_through(self, bound: tuple[int, str]) -> pa.Table:
        """Remove and return the buffered rows at or before `bound` in vocabulary order (a prefix)."""
        count, token = -bound[0], bound[1]
        counts = self.buffer["count"]
        before = pc.or_(pc.greater(counts, count),
                        pc.and_(pc.equal(counts, count), pc.less_equal(self.buffer["token"], token)))
        k = pc.sum(before).as_py() or 0
        taken, self.buffer = self.buffer.slice(0, k), self.buffer.slice(k)
        self._refill()
        return taken

    def _refill(self) -> None:
        while not self.buffer.num_rows and not self.done:
            try:
                batch = next(self._batches)
            except StopIteration:
                self.done = True
                self._file.close()
                return
            self.buffer = tables.check(pa.Table.from_batches([batch]), _VOCABULARY_PIECE, "vocabulary piece")


class _Writer:
    """One Parquet file written table by table, atomically (nothing visible until it is closed)."""

    def __init__(self, uri: str, schema: pa.Schema, storage_options: dict):
        self._context, self._schema = open_atomic(uri, storage_options), schema

    def __enter__(self) -> "_Writer":
        self._writer = pq.ParquetWriter(self._context.__enter__(), self._schema, compression="zstd")
        return self

    def write(self, table: pa.Table) -> None:
        self._writer.write_table(tables.check(table, self._schema))

    def __exit__(self, *exc) -> None:
        self._writer.close()
        self._context.__exit__(*exc)
