"""The statistics job graph: map → merge passes over the shards, on any engine.

    CountWords        per shard: tokenize, count words and document frequencies, written by word bucket
    MergeWords        per bucket: the shards' counts summed, cut at min_count, in vocabulary order
    NumberWords       one task: the buckets merged, cut at max_vocab_size, ids by (count desc, token asc)
                      → vocabulary.parquet, idf.parquet (pipelines/statistics/vocabulary.py); the
                      driver learns only the vocabulary's size, never a word
    EncodeShards      per shard (reading the vocabulary itself): token ids → tokens table, term frequencies → TF-IDF table,
                      co-occurrence counted within `statistics.memory_mb`, spilled as sorted run
                      files per bucket (rows i % n_buckets) under _partial/bucket-BBBBB/
    MergeCooccurrence per bucket: a bounded fan-in merge of its runs (pipelines/statistics/spill_files.py)
                      → cooccurrence/part-BBBBB.parquet

Every step is a module-level function of one shard (or bucket) plus plain arguments, so any
engine (pipelines/statistics/engines: Dask, Beam) can ship it; the kernels it calls live in
pipelines/statistics/kernels and know no engine. With `statistics.cache`, CountWords and EncodeShards
reuse an unchanged shard's cached partial results (pipelines/statistics/shard_cache.py explains the keys).
Outputs, under the statistics URI (schemas in schemas/tables.py):

    vocabulary.parquet   idf.parquet   tokens/shard-NNNNN.parquet   tfidf/shard-NNNNN.parquet
    cooccurrence/part-BBBBB.parquet    manifest.json (shards, counts, what was skipped, what
    was processed from source and what was reused from the cache)

and the shard cache under `Location.cache` (by default <statistics URI>/cache; the job gives each
run a statistics folder of its own and one cache shared by all: pipelines/ops/scratch.py).
"""
from __future__ import annotations

import itertools
import json
from dataclasses import asdict, dataclass
from functools import partial

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from firth.pipelines.config import JobConfig
from firth.pipelines.corpus.shards import Shard, ShardReport, iter_documents
from firth.pipelines.corpus.tokenize import Tokenizer
from firth.pipelines.corpus.tokenizer_choice import prepare_tokenizer
from firth.pipelines.statistics import kernels, shard_cache, spill_files, vocabulary
from firth.pipelines.statistics.engines import Engine
from firth.pipelines.statistics.kernels import bucketing
from firth.pipelines.statistics.shard_cache import ShardCache, prune, shard_key, vocabulary_key
from firth.schemas import tables
from firth.schemas.fs import filesystem, join, open_atomic
from firth.schemas.statistics import StatisticsSummary


@dataclass
class Location:
    """Where statistics go, and how to reach it (fsspec storage options)."""
    uri: str
    storage_options: dict
    cache_uri: str | None = None  # the shard cache (statistics.cache); default <uri>/cache

    def __call__(self, *parts: str) -> str:
        return join(self.uri, *parts)

    @property
    def cache(self) -> str:
        return self.cache_uri or self("cache")


def compute_statistics(shards: list[Shard], config: JobConfig, engine: Engine, location: Location) -> StatisticsSummary:
    stats = config.statistics
    _clear(location)

    tokenizer = prepare_tokenizer(shards, config, location.uri, location.storage_options)  # regex or trained subword
    if config.tokenizer.kind != "regex":
        # A retrained subword model may split words differently, and the shard cache is keyed by
        # the tokenizer's settings, not its model: count afresh rather than reuse stale units.
        config = config.model_copy(update={"statistics": stats.model_copy(update={"cache": False})})
    counted = engine.map(partial(count_shard, config=config, location=location, tokenizer=tokenizer),
                         list(enumerate(shards)), "CountWords")
    reports = [c.report for c in counted]
    n_documents = sum(r.documents for r in reports)
    n_tokens = sum(c.tokens for c in counted)
    vocab_size = _build_vocabulary(engine, config, location, n_documents)
    if vocab_size == 0:
        raise ValueError(f"statistics: no word occurs at least min_count={stats.min_count} times in "
                         f"{len(shards)} shard(s) ({n_tokens} tokens); lower statistics.min_count")

    encode = partial(encode_shard, config=config, location=location, tokenizer=tokenizer)
    encoded = engine.map(encode, list(enumerate(shards)), "EncodeShards")
    merge = partial(merge_bucket, config=config, location=location)
    entries = engine.map(merge, list(range(stats.n_buckets)), "MergeCooccurrence")
    fs, partials = _fs(location, location("_partial"))
    if fs.exists(partials):
        fs.rm(partials, recursive=True)
    if stats.cache:  # keep exactly the entries this run used
        prune(location.cache, location.storage_options,
              {shard_key(s, config): key for s, (_, key) in zip(shards, encoded)})

    sources = [{"counted": "cache" if c.reused else "source", "encoded": "cache" if reused_encoding else "source"}
               for c, (reused_encoding, _) in zip(counted, encoded)]
    summary = StatisticsSummary(
        uri=location.uri, vocab_size=vocab_size, n_documents=n_documents,
        n_tokens=n_tokens, n_cooccurrence_entries=int(sum(entries)),
        bad_records=sum(r.bad_records for r in reports), empty_shards=[r.uri for r in reports if r.empty],
        problems=[p for r in reports for p in r.problems][:10],
        unreadable_shards=[r.uri for r in reports if r.unreadable],
        processed_shards=[s.uri for s, src in zip(shards, sources) if "source" in src.values()],
        reused_shards=[s.uri for s, src in zip(shards, sources) if "source" not in src.values()])
    fs, path = _fs(location, location("manifest.json"))
    fs.pipe(path, json.dumps({"shards": [asdict(s) | src for s, src in zip(shards, sources)], **asdict(summary)},
                             indent=1).encode())
    return summary


@dataclass(frozen=True)
class CountedShard:
    """What CountWords hands back to the driver: a few numbers, never a word (those go to files)."""
    report: ShardReport
    tokens: int
    reused: bool  # its counts came from the cache


def count_shard(indexed_shard: tuple[int, Shard], config: JobConfig, location: Location,
                tokenizer=None) -> CountedShard:
    """CountWords: the shard's word counts, written by bucket for MergeWords (pipelines/statistics/vocabulary.py)."""
    index, shard = indexed_shard
    counts, report, reused = shard_word_counts(shard, config, location, tokenizer)
    vocabulary.write_word_parts(counts, location("_partial", "words"), index, config.statistics.n_buckets,
                                location.storage_options)
    return CountedShard(report, int(counts.counts.sum()), reused)


def shard_word_counts(shard: Shard, config: JobConfig, location: Location,
                      tokenizer=None) -> tuple[kernels.WordCounts, ShardReport, bool]:
    """Word counts and document frequencies of one shard; True when they came from the cache."""
    cache = ShardCache(location.cache, location.storage_options, shard, config) if config.statistics.cache else None
    cached = cache.load_words() if cache else None
    if cached:
        return *cached, True
    tokenize = tokenizer or Tokenizer(config.tokenizer)  # texts -> (tokens, offsets)
    report = ShardReport(shard.uri)
    parts = [kernels.count_words(*tokenize(batch.texts)) for batch in iter_documents(shard, config.corpus, report)]
    counts = kernels.merge_word_counts(parts)
    if cache:
        cache.store_words(counts, report)
    return counts, report, False


def _build_vocabulary(engine: Engine, config: JobConfig, location: Location, n_documents: int) -> int:
    """MergeWords per bucket, then NumberWords: vocabulary.parquet and idf.parquet; returns the vocabulary's size."""
    stats, opts = config.statistics, location.storage_options
    merge = partial(merge_words, config=config, location=location)
    engine.map(merge, list(range(stats.n_buckets)), "MergeWords")
    pieces = [location("_partial", "vocabulary", f"bucket-{b:05d}.parquet") for b in range(stats.n_buckets)]
    number = partial(vocabulary.number_words, vocabulary_uri=location("vocabulary.parquet"),
                     idf_uri=location("idf.parquet"), max_size=stats.max_vocab_size, n_documents=n_documents,
                     memory_bytes=stats.memory_bytes, storage_options=opts)
    [size] = engine.map(number, [pieces], "NumberWords")
    return size


def merge_words(bucket: int, config: JobConfig, location: Location) -> int:
    """MergeWords: one bucket's word counts from every shard → its piece of the vocabulary; returns its words."""
    stats = config.statistics
    parts = spill_files.list_runs(location("_partial", "words", f"bucket-{bucket:05d}"), location.storage_options)
    return vocabulary.merge_word_parts(parts, location("_partial", "vocabulary", f"bucket-{bucket:05d}.parquet"),
                                       stats.min_count, stats.merge_fan_in, location.storage_options)


def encode_shard(indexed_shard: tuple[int, Shard], config: JobConfig, location: Location,
                 tokenizer=None) -> tuple[bool, str | None]:
    """EncodeShards: the shard's tokens and TF-IDF tables and its co-occurrence runs.

    The worker reads the vocabulary's tokens and idf itself; their lookup counts against
    statistics.memory_mb: co-occurrence counting gets the rest (at least a quarter of it).
    Returns (reused from the cache?, the vocabulary key of its cache entry, or None without cache).
    """
    index, shard = indexed_shard
    stats = config.statistics
    vocabulary_tokens, idf = vocabulary.load_lookup(location("vocabulary.parquet"), location("idf.parquet"),
                                                    location.storage_options)
    budget = max(stats.memory_bytes - vocabulary.lookup_bytes(vocabulary_tokens), stats.memory_bytes // 4)
    runs = _RunSink(location, index, stats, len(vocabulary_tokens), budget)
    cache = ShardCache(location.cache, location.storage_options, shard, config) if stats.cache else None
    cached_words = cache.load_words() if cache else None
    if cached_words is None:  # no cache (or it vanished since CountWords): no shard-local ids either
        _encode_from_source(shard, config, location, index, vocabulary_tokens, idf, runs, None, tokenizer)
        return False, None
    local_to_global = kernels.encode(cached_words[0].words, vocabulary_tokens)  # (n_shard_words,), -1 = OOV
    vocab_key = vocabulary_key(local_to_global >= 0, config)
    entry = cache.load_encoded(vocab_key)
    if entry is not None:
        try:
            _encode_from_cache(entry, location, index, local_to_global, idf, runs)
            return True, vocab_key
        except FileNotFoundError:  # pruned while read (a run of another table sharing this cache)
            runs.discard()
    writer = cache.new_writer(vocab_key)  # filled, then named complete: readers never see it half-written
    global_to_local = np.full(len(vocabulary_tokens), -1, np.int32)  # (V,)
    in_shard = np.flatnonzero(local_to_global >= 0)
    global_to_local[local_to_global[in_shard]] = in_shard
    _encode_from_source(shard, config, location, index, vocabulary_tokens, idf, runs, (writer, global_to_local),
                        tokenizer)
    cache.mark_encoded(vocab_key, writer)
    return False, vocab_key


def _encode_from_source(shard: Shard, config: JobConfig, location: Location, index: int, vocabulary_tokens: pa.Array,
                        idf: np.ndarray, runs: "_RunSink", cache_entry: tuple[str, np.ndarray] | None,
                        tokenizer=None) -> None:
    """Read, tokenize and count the shard; with cache_entry (uri, global_to_local ids) also fill the cache."""
    stats, opts = config.statistics, location.storage_options
    tokenize = tokenizer or Tokenizer(config.tokenizer)  # texts -> (tokens, offsets)
    spill = runs.write
    if cache_entry:
        entry, global_to_local = cache_entry
        local_runs = itertools.count()

        def spill(bucket: int, piece: kernels.Cooc) -> None:
            runs.write(bucket, piece)
            local = kernels.Cooc(global_to_local[piece.i], global_to_local[piece.j], piece.units, piece.scale)
            spill_files.write_run(local, join(entry, "cooc", f"run-{next(local_runs):06d}.parquet"), opts)
    counter = kernels.CooccurrenceCounter(stats.window, stats.weighting, vocab_size=len(vocabulary_tokens),
                                          memory_bytes=runs.memory_bytes, spill=spill, n_buckets=stats.n_buckets)
    token_tables, tfidf_tables, local_tf = [], [], []
    n_docs = 0  # documents before this batch
    for batch in iter_documents(shard, config.corpus, ShardReport(shard.uri)):
        tokens, offsets = tokenize(batch.texts)
        ids, offsets = kernels.drop_out_of_vocabulary(kernels.encode(tokens, vocabulary_tokens), offsets)
        doc_ids = pa.array(batch.ids, pa.string())
        token_tables.append(_tokens_table(doc_ids, offsets, ids))
        doc_index, term_id, tf = kernels.term_frequencies(ids, offsets)
        tfidf_tables.append(_tfidf_table(doc_ids.take(pa.array(doc_index)), term_id, tf,
                                         kernels.tfidf(doc_index, term_id, tf, idf)))
        if cache_entry:
            local_tf.append(pa.table({"doc_index": pa.array(n_docs + doc_index, pa.int32()),
                                      "term": pa.array(global_to_local[term_id]), "tf": pa.array(tf, pa.int32())}))
        n_docs += len(batch.ids)
        counter.add(ids, offsets)
    counter.finish()
    name = f"shard-{index:05d}.parquet"
    tokens_table = _concat(token_tables, tables.TOKENS)
    tables.write_parquet(tokens_table, location("tokens", name), tables.TOKENS, opts)
    tables.write_parquet(_concat(tfidf_tables, tables.TFIDF), location("tfidf", name), tables.TFIDF, opts)
    if cache_entry:
        ids = tokens_table["token_ids"].combine_chunks()
        local_ids = _remap_lists(ids, global_to_local)
        tables.write_parquet(pa.table({"doc_id": tokens_table["doc_id"], "token_ids": local_ids}),
                             join(entry, "tokens.parquet"), tables.TOKENS, opts)
        tables.write_parquet(_concat(local_tf, shard_cache.LOCAL_TF), join(entry, "tf.parquet"),
                             shard_cache.LOCAL_TF, opts)


def _encode_from_cache(entry: str, location: Location, index: int, local_to_global: np.ndarray, idf: np.ndarray,
                       runs: "_RunSink") -> None:
    """Write the shard's outputs from its cache entry: shard-local ids → this vocabulary's ids."""
    opts = location.storage_options
    name = f"shard-{index:05d}.parquet"
    cached_tokens = tables.read_parquet(join(entry, "tokens.parquet"), tables.TOKENS, opts)
    tables.write_parquet(pa.table({"doc_id": cached_tokens["doc_id"], "token_ids": _remap_lists(
        cached_tokens["token_ids"].combine_chunks(), local_to_global)}), location("tokens", name), tables.TOKENS, opts)
    tf_table = tables.read_parquet(join(entry, "tf.parquet"), shard_cache.LOCAL_TF, opts)
    doc_index = tf_table["doc_index"].to_numpy().astype(np.int64)
    term_id = local_to_global[tf_table["term"].to_numpy()]
    order = np.lexsort((term_id, doc_index))  # rows by (document, term id), as term_frequencies gives them
    doc_index, term_id, tf = doc_index[order], term_id[order], tf_table["tf"].to_numpy()[order]
    doc_ids = cached_tokens["doc_id"].combine_chunks().take(pa.array(doc_index))
    tables.write_parquet(_tfidf_table(doc_ids, term_id, tf, kernels.tfidf(doc_index, term_id, tf, idf)),
                         location("tfidf", name), tables.TFIDF, opts)
    for run in spill_files.list_runs(join(entry, "cooc"), opts):
        for i, j, units in spill_files.iter_run_chunks(run, opts, runs.chunk_rows):
            for bucket, piece in bucketing.directed_pieces(local_to_global[i], local_to_global[j], units, runs.shift,
                                                           runs.n_buckets, runs.scale):
                runs.write(bucket, piece)


class _RunSink:
    """Writes one shard's sorted co-occurrence pieces as run files _partial/bucket-B/shard-N-K.parquet."""

    def __init__(self, location: Location, index: int, stats, vocab_size: int, memory_bytes: int | None = None):
        self.location, self.index = location, index
        self.memory_bytes = memory_bytes or stats.memory_bytes  # the co-occurrence counter's share of the budget
        self.n_buckets = stats.n_buckets
        self.scale, _ = kernels.weight_units(stats.window, stats.weighting)
        self.shift = bucketing.key_shift(vocab_size)
        # directed entries re-bucketed at once when replaying a cache entry: a quarter of the budget
        self.chunk_rows = max(1024, self.memory_bytes // 4 // (bucketing.BYTES_PER_UNDIRECTED_ENTRY // 2))
        self._written: list[str] = []

    def write(self, bucket: int, piece: kernels.Cooc) -> None:
        uri = self.location("_partial", f"bucket-{bucket:05d}",
                            f"shard-{self.index:05d}-{len(self._written):06d}.parquet")
        spill_files.write_run(piece, uri, self.location.storage_options)
        self._written.append(uri)

    def discard(self) -> None:
        """Remove the runs written so far (a cache replay that failed half-way is redone from source)."""
        for uri in self._written:
            fs, path = filesystem(uri, self.location.storage_options)
            fs.rm(path)
        self._written = []


def merge_bucket(bucket: int, config: JobConfig, location: Location) -> int:
    """MergeCooccurrence: one bucket's runs from every shard → one sorted part file; returns its entries."""
    stats, opts = config.statistics, location.storage_options
    scale, _ = kernels.weight_units(stats.window, stats.weighting)
    runs = spill_files.list_runs(location("_partial", f"bucket-{bucket:05d}"), opts)
    with open_atomic(location("cooccurrence", f"part-{bucket:05d}.parquet"), opts) as f, \
            pq.ParquetWriter(f, tables.COOCCURRENCE, compression="zstd") as writer:
        def write(keys: np.ndarray, units: np.ndarray) -> None:
            writer.write_table(_cooc_table(kernels.Cooc((keys >> 32).astype(np.int32),
                                                        (keys & 0xFFFFFFFF).astype(np.int32), units, scale)))
        return spill_files.merge_run_files(runs, write, location("_partial", f"merge-{bucket:05d}"), opts,
                                        stats.memory_bytes, stats.merge_fan_in)


def _tokens_table(doc_ids: pa.Array, offsets: np.ndarray, ids: np.ndarray) -> pa.Table:
    return pa.table({"doc_id": doc_ids, "token_ids": pa.ListArray.from_arrays(
        pa.array(offsets.astype(np.int32)), pa.array(ids, pa.int32()))})


def _tfidf_table(doc_ids: pa.Array, term_id: np.ndarray, tf: np.ndarray, weights: np.ndarray) -> pa.Table:
    return pa.table({"doc_id": doc_ids, "term_id": pa.array(term_id, pa.int32()), "tf": pa.array(tf, pa.int32()),
                     "tfidf": pa.array(weights, pa.float32())})


def _remap_lists(lists: pa.ListArray, id_map: np.ndarray) -> pa.ListArray:
    """The same lists with every value v replaced by id_map[v]."""
    offsets = lists.offsets.to_numpy()
    values = lists.values.to_numpy()[offsets[0]:offsets[-1]]
    return pa.ListArray.from_arrays(pa.array((offsets - offsets[0]).astype(np.int32)),
                                    pa.array(id_map[values].astype(np.int32)))


def _cooc_table(part: kernels.Cooc) -> pa.Table:
    return pa.table({"i": pa.array(part.i, pa.int32()), "j": pa.array(part.j, pa.int32()),
                     "x": pa.array(part.x, pa.float32())}, schema=tables.COOCCURRENCE)


def _concat(parts: list[pa.Table], schema: pa.Schema) -> pa.Table:
    return pa.concat_tables(parts) if parts else schema.empty_table()


def _fs(location: Location, uri: str):
    return filesystem(uri, location.storage_options)


def _clear(location: Location) -> None:
    """Remove a previous run's outputs (only the names this job writes; the cache stays)."""
    for name in ["vocabulary.parquet", "idf.parquet", "manifest.json", "tokens", "tfidf", "cooccurrence", "_partial",
                 "tokenizer.json", "ppmi"]:
        fs, path = _fs(location, location(name))
        if fs.exists(path):
            fs.rm(path, recursive=True)
