"""Per-shard partial statistics, cached under `<statistics uri>/cache/` and keyed by content.

Why two levels. The word counts of a shard depend only on its content and how it is read and
tokenized; everything after (token ids, term frequencies, co-occurrence) depends on the vocabulary,
which depends on all shards. Ids change whenever counts elsewhere reorder the vocabulary, so
the cache never stores global ids: it stores *shard-local* ids, the index of a word in the
shard's own sorted word list, and remaps them to the current vocabulary's ids on reuse
(a permutation: rows re-sorted, buckets recomputed). What remapping cannot undo is a change in
*which* of the shard's words are in the vocabulary: out-of-vocabulary tokens are removed before
windowing, so they move the distances between the others. So:

  cache/<shard key>/words.parquet, report.json
        shard key = sha256(fingerprint, file name, corpus reading and tokenizer settings)
        valid while the shard's content and those settings are unchanged (CountWords reuses it)
  cache/<shard key>/encoded-<vocabulary key>/tokens.parquet, tf.parquet, cooc/run-*.parquet, complete
        vocabulary key = sha256(which of the shard's words are in the vocabulary, window, weighting)
        valid while the same subset of the shard's words is in the vocabulary (EncodeShards reuses
        it, remapping ids; TF-IDF is recomputed from the cached term frequencies and the new idf)

Adding a shard whose words are all already in the vocabulary (or below min_count everywhere)
reuses every other shard entirely. A new shard that lifts a word over min_count (or pushes one
out of a max_vocab_size cut) re-encodes exactly the shards containing that word, from source.
A changed shard has a new fingerprint, hence a new key; entries of shards no longer in the
corpus are pruned after a run. The file name is in the key because default document ids
("<file name>:<line>") are derived from it. An entry is used only once its `complete` marker is
written; an unfinished one is cleared before it is filled again. Limitation: two shards of one
corpus with the same name and content (in different folders) share an entry and would fill it
concurrently in one run.
"""
from __future__ import annotations

import hashlib
import json
import posixpath
from dataclasses import asdict

import numpy as np
import pyarrow as pa

from firth.pipelines.config import JobConfig
from firth.pipelines.corpus.shards import Shard, ShardReport
from firth.pipelines.statistics import kernels
from firth.schemas import tables
from firth.schemas.fs import filesystem, join

CACHE_FORMAT = 1  # bump when the cached files change meaning
WORDS = pa.schema([pa.field("word", pa.large_string(), nullable=False), pa.field("count", pa.int64(), nullable=False),
                   pa.field("doc_count", pa.int64(), nullable=False)])
LOCAL_TF = pa.schema([pa.field("doc_index", pa.int32(), nullable=False),  # row of the shard's tokens table
                      pa.field("term", pa.int32(), nullable=False),  # shard-local word id
                      pa.field("tf", pa.int32(), nullable=False)])


def shard_key(shard: Shard, config: JobConfig) -> str:
    corpus = config.corpus
    return _digest({"format": CACHE_FORMAT, "fingerprint": shard.fingerprint, "name": shard.name,
                    "corpus": [corpus.format, corpus.id_field, corpus.text_field, corpus.on_bad_record],
                    "tokenizer": config.tokenizer.model_dump(mode="json")})


def vocabulary_key(in_vocabulary: np.ndarray, config: JobConfig) -> str:
    """in_vocabulary: (n_shard_words,) bool over the shard's sorted words."""
    stats = config.statistics
    return _digest({"words": hashlib.sha256(np.packbits(in_vocabulary).tobytes()).hexdigest(),
                    "n": int(len(in_vocabulary)), "window": stats.window, "weighting": stats.weighting})


class ShardCache:
    """The cache entries of one shard under `<statistics uri>/cache/<shard key>/`."""

    def __init__(self, root_uri: str, storage_options: dict, shard: Shard, config: JobConfig):
        self.key = shard_key(shard, config)
        self.shard_uri = shard.uri  # the same content may have been cached under another folder
        self.uri = join(root_uri, self.key)
        self.storage_options = storage_options

    # --- CountWords -------------------------------------------------------------------------
    def load_words(self) -> tuple[kernels.WordCounts, ShardReport] | None:
        if not self._exists(join(self.uri, "report.json")):
            return None
        report = json.loads(self._read(join(self.uri, "report.json")))
        words = tables.read_parquet(join(self.uri, "words.parquet"), WORDS, self.storage_options)
        counts = kernels.WordCounts(words["word"].combine_chunks(), words["count"].to_numpy(),
                                    words["doc_count"].to_numpy(), report.pop("n_docs"))
        return counts, ShardReport(**{**report, "uri": self.shard_uri})

    def store_words(self, counts: kernels.WordCounts, report: ShardReport) -> None:
        tables.write_parquet(pa.table({"word": counts.words, "count": counts.counts, "doc_count": counts.doc_counts}),
                             join(self.uri, "words.parquet"), WORDS, self.storage_options)
        self._write(join(self.uri, "report.json"), json.dumps({**asdict(report), "n_docs": counts.n_docs}))

    # --- EncodeShards -----------------------------------------------------------------------
    def encoded_uri(self, vocab_key: str) -> str:
        return join(self.uri, f"encoded-{vocab_key}")

    def has_encoded(self, vocab_key: str) -> bool:
        return self._exists(join(self.encoded_uri(vocab_key), "complete"))

    def clear_encoded(self, vocab_key: str) -> None:
        fs, path = filesystem(self.encoded_uri(vocab_key), self.storage_options)
        if fs.exists(path):
            fs.rm(path, recursive=True)

    def mark_encoded(self, vocab_key: str) -> None:
        self._write(join(self.encoded_uri(vocab_key), "complete"), "")

    def _exists(self, uri: str) -> bool:
        fs, path = filesystem(uri, self.storage_options)
        return fs.exists(path)

    def _read(self, uri: str) -> bytes:
        fs, path = filesystem(uri, self.storage_options)
        return fs.cat_file(path)

    def _write(self, uri: str, text: str) -> None:
        fs, path = filesystem(uri, self.storage_options)
        fs.makedirs(posixpath.dirname(path), exist_ok=True)
        fs.pipe_file(path, text.encode())


def prune(root_uri: str, storage_options: dict, keep: dict[str, str | None]) -> list[str]:
    """Remove entries not used by this run: shard keys not in `keep` and, under kept shard keys,
    encoded-* folders other than keep[shard key]. Returns the removed folders."""
    fs, root = filesystem(root_uri, storage_options)
    if not fs.exists(root):
        return []
    removed = []
    for shard_dir in fs.ls(root, detail=False):
        key = posixpath.basename(shard_dir.rstrip("/"))
        if key not in keep:
            removed.append(shard_dir)
            continue
        for sub in fs.ls(shard_dir, detail=False):
            name = posixpath.basename(sub.rstrip("/"))
            if name.startswith("encoded-") and name != f"encoded-{keep[key]}":
                removed.append(sub)
    for path in removed:
        fs.rm(path, recursive=True)
    return removed


def _digest(value: dict) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:32]
