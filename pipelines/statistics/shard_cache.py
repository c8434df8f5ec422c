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
  cache/<shard key>/encoded-<vocabulary key>/<writer>/tokens.parquet, tf.parquet, cooc/run-*.parquet
  cache/<shard key>/encoded-<vocabulary key>/complete       {"writer", "files"}
        vocabulary key = sha256(which of the shard's words are in the vocabulary, window, weighting)
        valid while the same subset of the shard's words is in the vocabulary (EncodeShards reuses
        it, remapping ids; TF-IDF is recomputed from the cached term frequencies and the new idf)

Adding a shard whose words are all already in the vocabulary (or below min_count everywhere)
reuses every other shard entirely. A new shard that lifts a word over min_count (or pushes one
out of a max_vocab_size cut) re-encodes exactly the shards containing that word, from source.
A changed shard has a new fingerprint, hence a new key; entries of shards no longer in the
corpus are pruned after a run. The file name is in the key because default document ids
("<file name>:<line>") are derived from it.

Concurrent runs (and two shards of one run with the same name and content) may read and fill
one entry at once; a reader never sees a partial entry. The word counts are two files, each
written atomically (temporary file + rename; one PUT on S3) with `report.json`, which marks the
entry, last; two writers of one key write the same counts. An encoded entry is many files, and
two writers may split co-occurrence into different runs (another memory_mb), so each writer
fills a folder of its own and then names it, with its files, in `complete` (one atomic write;
the last writer wins, and every version of `complete` names a whole folder). A reader uses an
entry only when `complete` exists and every file it lists is there; a file that vanishes while
it is read (a run pruning it) makes the reader count that shard from source instead. Folders of
writers that were killed or lost the race are pruned once WRITER_GRACE_S old.
"""
from __future__ import annotations

import hashlib
import json
import posixpath
import uuid
from dataclasses import asdict
from datetime import datetime, timezone

import numpy as np
import pyarrow as pa

from firth.pipelines.config import JobConfig
from firth.pipelines.corpus.shards import Shard, ShardReport
from firth.pipelines.statistics import kernels
from firth.schemas import tables
from firth.schemas.fs import filesystem, join, open_atomic

CACHE_FORMAT = 2  # bump when the cached files change meaning (2: encoded entries in writer folders)
COMPLETE = "complete"
WRITER_GRACE_S = 6 * 3600  # an unnamed writer folder younger than this may still be filling: keep it
WORDS = pa.schema([pa.field("word", pa.large_string(), nullable=False), pa.field("count", pa.int64(), nullable=False),
                   pa.field("doc_count", pa.int64(), nullable=False)])
LOCAL_TF = pa.schema([pa.field("doc_index", pa.int32(), nullable=False),  # row of the shard's tokens table
                      pa.field("term", pa.int32(), nullable=False),  # shard-local word id
                      pa.field("tf", pa.int32(), nullable=False)])


def shard_key(shard: Shard, config: JobConfig) -> str:
    corpus = config.corpus
    return _digest({"format": CACHE_FORMAT, "fingerprint": shard.fingerprint, "name": shard.name,
                    "corpus": [corpus.format, corpus.id_field, corpus.text_field, corpus.on_bad_record,
                               corpus.max_document_tokens],
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
        try:
            report = json.loads(self._read(join(self.uri, "report.json")))  # written last: marks the entry
            words = tables.read_parquet(join(self.uri, "words.parquet"), WORDS, self.storage_options)
        except FileNotFoundError:  # not cached, or pruned meanwhile by a run of another table
            return None
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

    def load_encoded(self, vocab_key: str) -> str | None:
        """The folder holding the complete entry for `vocab_key`, or None."""
        try:
            named = json.loads(self._read(join(self.encoded_uri(vocab_key), COMPLETE)))
        except FileNotFoundError:
            return None
        folder = join(self.encoded_uri(vocab_key), named["writer"])
        return folder if set(named["files"]) <= set(self._files(folder)) else None

    def new_writer(self, vocab_key: str) -> str:
        """A folder of its own for one writer of the entry: writers never write into each other's."""
        started = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
        return join(self.encoded_uri(vocab_key), f"w{started}-{uuid.uuid4().hex[:12]}")

    def mark_encoded(self, vocab_key: str, folder: str) -> None:
        """Name the filled `folder`, and its files, as the entry (one atomic write)."""
        self._write(join(self.encoded_uri(vocab_key), COMPLETE),
                    json.dumps({"writer": posixpath.basename(folder), "files": sorted(self._files(folder))}))

    def _files(self, folder: str) -> list[str]:
        """Paths of the files under `folder`, relative to it."""
        fs, path = filesystem(folder, self.storage_options)
        fs.invalidate_cache(path)
        try:
            return [posixpath.relpath(p, path) for p in fs.find(path)]
        except FileNotFoundError:
            return []

    def _read(self, uri: str) -> bytes:
        fs, path = filesystem(uri, self.storage_options)
        fs.invalidate_cache(path)
        return fs.cat_file(path)

    def _write(self, uri: str, text: str) -> None:
        with open_atomic(uri, self.storage_options) as f:
            f.write(text.encode())


def prune(root_uri: str, storage_options: dict, keep: dict[str, str | None]) -> list[str]:
    """Remove entries not used by this run: shard keys not in `keep`; under kept shard keys,
    encoded-* folders other than keep[shard key]; in the kept one, writer folders that its
    `complete` does not name, once WRITER_GRACE_S old. Returns the removed folders."""
    fs, root = filesystem(root_uri, storage_options)
    fs.invalidate_cache(root)
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
            elif name.startswith("encoded-"):
                removed += _stale_writers(fs, sub)
    for path in removed:
        fs.rm(path, recursive=True)
    return removed


def _stale_writers(fs, entry_path: str) -> list[str]:
    """Writer folders of an encoded entry that its `complete` does not name and that are old."""
    try:
        named = json.loads(fs.cat_file(posixpath.join(entry_path, COMPLETE)))["writer"]
    except FileNotFoundError:
        named = None
    now = datetime.now(timezone.utc)
    stale = []
    for sub in fs.ls(entry_path, detail=False):
        name = posixpath.basename(sub.rstrip("/"))
        if name == named or not name.startswith("w"):
            continue
        try:
            started = datetime.strptime(name[1:16], "%Y%m%dT%H%M%S").replace(tzinfo=timezone.utc)
        except ValueError:
            continue
        if (now - started).total_seconds() > WRITER_GRACE_S:
            stale.append(sub)
    return stale


def _digest(value: dict) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:32]
