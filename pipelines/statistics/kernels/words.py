"""Word counts, their merge, the vocabulary, and token → id encoding.

Strings stay in Arrow arrays (hashing and sorting in C++); counts are numpy int64. Strings sort
by UTF-8 bytes, which is code point order (Python's `sorted` on str).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numba import njit

from firth.pipelines.statistics.kernels.documents import checked_offsets
from firth.schemas.tables import VOCABULARY


@dataclass(frozen=True)
class WordCounts:
    """Distinct words, sorted, with their occurrence and document counts (one shard, or merged)."""
    words: pa.LargeStringArray  # (n_words,) sorted ascending, unique
    counts: np.ndarray  # (n_words,) int64: occurrences
    doc_counts: np.ndarray  # (n_words,) int64: documents containing the word
    n_docs: int  # documents counted, empty ones included

    @classmethod
    def empty(cls) -> "WordCounts":
        return cls(pa.array([], pa.large_string()), np.zeros(0, np.int64), np.zeros(0, np.int64), 0)

    def __len__(self) -> int:
        return len(self.words)


def count_words(tokens, offsets: np.ndarray) -> WordCounts:
    """Counts of one batch: tokens (n_tokens,) strings, document d = tokens[offsets[d]:offsets[d + 1]]."""
    tokens = _strings(tokens, "count_words tokens")
    offsets = checked_offsets(offsets, len(tokens), "count_words")
    encoded = tokens.dictionary_encode()  # indices (n_tokens,) into the distinct words, first-seen order
    word_index = encoded.indices.to_numpy().astype(np.int64)
    n_words = len(encoded.dictionary)
    counts = np.bincount(word_index, minlength=n_words).astype(np.int64)
    doc_counts = _doc_counts(word_index, offsets, n_words)
    order = pc.sort_indices(encoded.dictionary).to_numpy()
    return WordCounts(encoded.dictionary.take(order), counts[order], doc_counts[order], len(offsets) - 1)


def merge_word_counts(parts: list[WordCounts]) -> WordCounts:
    """Sum counts, doc_counts and n_docs over parts (shards or batches: their documents are disjoint)."""
    parts = [p for p in parts]
    if not parts:
        return WordCounts.empty()
    words = pa.concat_arrays([p.words.cast(pa.large_string()) for p in parts])
    encoded = words.dictionary_encode()
    word_index = encoded.indices.to_numpy()
    n_words = len(encoded.dictionary)
    counts = np.zeros(n_words, np.int64)
    doc_counts = np.zeros(n_words, np.int64)
    np.add.at(counts, word_index, np.concatenate([p.counts for p in parts]))
    np.add.at(doc_counts, word_index, np.concatenate([p.doc_counts for p in parts]))
    order = pc.sort_indices(encoded.dictionary).to_numpy()
    return WordCounts(encoded.dictionary.take(order), counts[order], doc_counts[order], sum(p.n_docs for p in parts))


def build_vocabulary(counts: WordCounts, min_count: int, max_size: int | None) -> pa.Table:
    """The vocabulary (firth.schemas.tables.VOCABULARY: token, id, count, doc_count), ordered by id.

    Words with count >= min_count; ordered by count descending, then token ascending (so ids are
    deterministic); if max_size, the first max_size of that order. id 0 = most frequent.
    """
    if not isinstance(min_count, (int, np.integer)) or min_count < 1:
        raise ValueError(f"vocabulary min_count must be an integer ≥ 1 (statistics.min_count), got {min_count!r}")
    if max_size is not None and (not isinstance(max_size, (int, np.integer)) or max_size < 1):
        raise ValueError(f"vocabulary max_size must be None or an integer ≥ 1 (statistics.max_vocab_size), "
                         f"got {max_size!r}")
    keep = counts.counts >= min_count
    table = pa.table({"token": counts.words.filter(pa.array(keep)).cast(pa.string()),
                      "count": counts.counts[keep], "doc_count": counts.doc_counts[keep]})
    table = table.take(pc.sort_indices(table, sort_keys=[("count", "descending"), ("token", "ascending")]))
    if max_size is not None:
        table = table.slice(0, max_size)
    ids = pa.array(np.arange(table.num_rows, dtype=np.int32))
    return pa.table([table["token"], ids, table["count"], table["doc_count"]], schema=VOCABULARY)


def word_buckets(words, n_buckets: int) -> np.ndarray:
    """(n_words,) int64 in [0, n_buckets): FNV-1a of each word's UTF-8 bytes, mod n_buckets. The same
    word gets the same bucket in every process (unlike Python's salted hash), so buckets merge by name."""
    words = _strings(words, "word_buckets words")
    if not isinstance(n_buckets, (int, np.integer)) or n_buckets < 1:
        raise ValueError(f"word_buckets: n_buckets must be an integer ≥ 1 (statistics.n_buckets), got {n_buckets!r}")
    _, offsets_buffer, data_buffer = words.buffers()
    offsets = np.frombuffer(offsets_buffer, np.int64, len(words) + 1, words.offset * 8)
    data = np.frombuffer(data_buffer, np.uint8) if data_buffer is not None else np.zeros(0, np.uint8)
    return (_fnv1a(offsets, data) % np.uint64(n_buckets)).astype(np.int64)


def encode(tokens, vocabulary_tokens) -> np.ndarray:
    """(n_tokens,) int32 ids: the position of each token in vocabulary_tokens (= its id when the
    vocabulary is ordered by id), -1 for a token not in it."""
    tokens = _strings(tokens, "encode tokens")
    vocabulary = _strings(vocabulary_tokens, "encode vocabulary_tokens")
    ids = pc.index_in(tokens, value_set=vocabulary)  # nulls where out of vocabulary
    return pc.fill_null(ids, -1).to_numpy().astype(np.int32, copy=False)


def _strings(values, name: str) -> pa.LargeStringArray:
    """An Arrow large_string array from an Arrow string array, a numpy str/object array or a list."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks() if values.num_chunks != 1 else values.chunk(0)
    if not isinstance(values, pa.Array):
        try:
            values = pa.array(np.asarray(values, dtype=object) if isinstance(values, np.ndarray) else list(values),
                              type=pa.large_string())
        except (pa.ArrowException, TypeError) as e:
            raise TypeError(f"{name}: expected strings (an Arrow string array, numpy array or list of str): "
                            f"{e}") from None
    if not (pa.types.is_string(values.type) or pa.types.is_large_string(values.type)):
        raise TypeError(f"{name}: expected strings, got an Arrow array of {values.type}")
    if values.null_count:
        raise ValueError(f"{name}: {values.null_count} null value(s); tokens must be non-null strings")
    return values.cast(pa.large_string())


@njit(cache=True)
def _doc_counts(word_index, offsets, n_words):
    """(n_words,) int64: documents containing each word; word_index (n_tokens,), offsets (n_docs + 1,)."""
    doc_counts = np.zeros(n_words, np.int64)
    last_doc = np.full(n_words, -1, np.int64)  # last document that counted the word
    for d in range(len(offsets) - 1):
        for t in range(offsets[d], offsets[d + 1]):
            w = word_index[t]
            if last_doc[w] != d:
                last_doc[w] = d
                doc_counts[w] += 1
    return doc_counts


@njit(cache=True)
def _fnv1a(offsets, data):
    """(n,) uint64 FNV-1a hashes of data[offsets[k]:offsets[k + 1]]."""
    out = np.empty(len(offsets) - 1, np.uint64)
    prime = np.uint64(1099511628211)
    for k in range(len(offsets) - 1):
        h = np.uint64(14695981039346656037)
        for t in range(offsets[k], offsets[k + 1]):
            h = (h ^ np.uint64(data[t])) * prime
        out[k] = h
    return out
