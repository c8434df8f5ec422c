"""The statistics job graph: three map → merge passes over the shards, on any engine.

    CountWords        per shard: tokenize, count words and document frequencies
      → merge on the driver: the vocabulary (ids by count desc, token asc), idf
    EncodeShards      per shard: token ids → tokens table, term frequencies → TF-IDF table,
                      co-occurrence partial counts, one file per bucket (key i % n_buckets)
    MergeCooccurrence per bucket: sum the shards' partials → cooccurrence/part-BBBBB.parquet

Every step is a module-level function of one shard (or bucket) plus plain arguments, so any
engine can ship it; the kernels it calls live in pipelines/kernels.py and know no engine.
Outputs, under the statistics URI (schemas in schemas/tables.py):

    vocabulary.parquet   idf.parquet   tokens/shard-NNNNN.parquet   tfidf/shard-NNNNN.parquet
    cooccurrence/part-BBBBB.parquet    manifest.json (shards, counts, what was skipped)
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import partial

import numpy as np
import pyarrow as pa

from pipelines import kernels
from pipelines.config import JobConfig
from pipelines.corpus import Shard, ShardReport, iter_documents
from pipelines.engines import Engine
from pipelines.tokenize import Tokenizer
from pipelines.tokenizer_choice import prepare_tokenizer
from schemas import tables
from schemas.fs import filesystem, join


@dataclass
class Location:
    """Where statistics go, and how to reach it (fsspec storage options)."""
    uri: str
    storage_options: dict

    def __call__(self, *parts: str) -> str:
        return join(self.uri, *parts)


@dataclass
class StatisticsSummary:
    uri: str
    vocab_size: int
    n_documents: int
    n_tokens: int  # all tokens, before the vocabulary cut
    n_cooccurrence_entries: int
    bad_records: int
    empty_shards: list[str]
    problems: list[str]  # the first few skipped-record messages

    @property
    def cooccurrence_uri(self) -> str:
        return join(self.uri, "cooccurrence")


def compute_statistics(shards: list[Shard], config: JobConfig, engine: Engine, location: Location) -> StatisticsSummary:
    stats = config.statistics
    _clear(location)
    tokenizer = prepare_tokenizer(shards, config, location.uri, location.storage_options)  # regex or trained subword

    counted = engine.map(partial(count_shard, config=config, tokenizer=tokenizer), shards, "CountWords")
    reports = [report for _, report in counted]
    n_documents = sum(r.documents for r in reports)
    word_counts = kernels.merge_word_counts([counts for counts, _ in counted])
    vocabulary = kernels.build_vocabulary(word_counts, stats.min_count, stats.max_vocab_size)
    if vocabulary.num_rows == 0:
        raise ValueError(f"statistics: no word occurs at least min_count={stats.min_count} times in "
                         f"{len(shards)} shard(s) ({int(word_counts.counts.sum())} tokens); lower statistics.min_count")
    idf = kernels.idf(vocabulary["doc_count"].to_numpy(), n_documents)
    tables.write_parquet(vocabulary, location("vocabulary.parquet"), tables.VOCABULARY, location.storage_options)
    tables.write_parquet(pa.table({"term_id": vocabulary["id"], "doc_count": vocabulary["doc_count"],
                                   "idf": pa.array(idf, pa.float32())}),
                         location("idf.parquet"), tables.IDF, location.storage_options)

    encode = partial(encode_shard, config=config, location=location, tokenizer=tokenizer,
                     vocabulary_tokens=vocabulary["token"].combine_chunks(), idf=idf)
    engine.map(encode, list(enumerate(shards)), "EncodeShards")
    merge = partial(merge_bucket, n_shards=len(shards), config=config, location=location)
    entries = engine.map(merge, list(range(stats.n_buckets)), "MergeCooccurrence")
    fs, partials = _fs(location, location("_partial"))
    fs.rm(partials, recursive=True)

    summary = StatisticsSummary(
        uri=location.uri, vocab_size=vocabulary.num_rows, n_documents=n_documents,
        n_tokens=int(word_counts.counts.sum()), n_cooccurrence_entries=int(sum(entries)),
        bad_records=sum(r.bad_records for r in reports), empty_shards=[r.uri for r in reports if r.empty],
        problems=[p for r in reports for p in r.problems][:10])
    fs, path = _fs(location, location("manifest.json"))
    fs.pipe(path, json.dumps({"shards": [asdict(s) for s in shards], **asdict(summary)}, indent=1).encode())
    return summary


def count_shard(shard: Shard, config: JobConfig, tokenizer=None) -> tuple[kernels.WordCounts, ShardReport]:
    """CountWords: word counts and document frequencies of one shard (tokenizer: texts -> (tokens, offsets))."""
    tokenize = tokenizer or Tokenizer(config.tokenizer)
    report = ShardReport(shard.uri)
    parts = [kernels.count_words(*tokenize(batch.texts)) for batch in iter_documents(shard, config.corpus, report)]
    return kernels.merge_word_counts(parts), report


def encode_shard(indexed_shard: tuple[int, Shard], config: JobConfig, location: Location,
                 vocabulary_tokens: pa.Array, idf: np.ndarray, tokenizer=None) -> None:
    """EncodeShards: the shard's tokens and TF-IDF tables and its co-occurrence partials."""
    index, shard = indexed_shard
    stats = config.statistics
    tokenize = tokenizer or Tokenizer(config.tokenizer)
    counter = kernels.CooccurrenceCounter(stats.window, stats.weighting, vocab_size=len(vocabulary_tokens),
                                          memory_bytes=stats.memory_mb << 20)
    token_tables, tfidf_tables = [], []
    for batch in iter_documents(shard, config.corpus, ShardReport(shard.uri)):
        tokens, offsets = tokenize(batch.texts)
        ids, offsets = kernels.drop_out_of_vocabulary(kernels.encode(tokens, vocabulary_tokens), offsets)
        doc_ids = pa.array(batch.ids, pa.string())
        token_tables.append(pa.table({"doc_id": doc_ids, "token_ids": pa.ListArray.from_arrays(
            pa.array(offsets.astype(np.int32)), pa.array(ids, pa.int32()))}))
        doc_index, term_id, tf = kernels.term_frequencies(ids, offsets)
        tfidf_tables.append(pa.table({
            "doc_id": doc_ids.take(pa.array(doc_index)), "term_id": pa.array(term_id, pa.int32()),
            "tf": pa.array(tf, pa.int32()), "tfidf": pa.array(kernels.tfidf(doc_index, term_id, tf, idf), pa.float32())}))
        counter.add(ids, offsets)
    name = f"shard-{index:05d}.parquet"
    opts = location.storage_options
    tables.write_parquet(_concat(token_tables, tables.TOKENS), location("tokens", name), tables.TOKENS, opts)
    tables.write_parquet(_concat(tfidf_tables, tables.TFIDF), location("tfidf", name), tables.TFIDF, opts)
    for bucket, part in enumerate(counter.result(stats.n_buckets)):
        partial_table = pa.table({"i": pa.array(part.i, pa.int32()), "j": pa.array(part.j, pa.int32()),
                                  "units": pa.array(part.units, pa.int64())})
        tables.write_parquet(partial_table, location("_partial", f"bucket-{bucket:05d}", name),
                             tables.COOCCURRENCE_PARTIAL, opts)


def merge_bucket(bucket: int, n_shards: int, config: JobConfig, location: Location) -> int:
    """MergeCooccurrence: one bucket's partials from every shard → one sorted part file."""
    opts = location.storage_options
    scale, _ = kernels.weight_units(config.statistics.window, config.statistics.weighting)
    parts = [tables.read_parquet(location("_partial", f"bucket-{bucket:05d}", f"shard-{s:05d}.parquet"),
                                 tables.COOCCURRENCE_PARTIAL, opts) for s in range(n_shards)]
    merged = kernels.merge_cooccurrence([
        kernels.Cooc(p["i"].to_numpy(), p["j"].to_numpy(), p["units"].to_numpy(), scale) for p in parts])
    tables.write_parquet(_cooc_table(merged), location("cooccurrence", f"part-{bucket:05d}.parquet"),
                         tables.COOCCURRENCE, opts)
    return len(merged)


def _cooc_table(part: kernels.Cooc) -> pa.Table:
    return pa.table({"i": pa.array(part.i, pa.int32()), "j": pa.array(part.j, pa.int32()),
                     "x": pa.array(part.x, pa.float32())})


def _concat(parts: list[pa.Table], schema: pa.Schema) -> pa.Table:
    return pa.concat_tables(parts) if parts else schema.empty_table()


def _fs(location: Location, uri: str):
    return filesystem(uri, location.storage_options)


def _clear(location: Location) -> None:
    """Remove a previous run's outputs (only the names this job writes)."""
    for name in ["vocabulary.parquet", "idf.parquet", "manifest.json", "tokens", "tfidf", "cooccurrence", "_partial",
                 "tokenizer.json", "ppmi"]:
        fs, path = _fs(location, location(name))
        if fs.exists(path):
            fs.rm(path, recursive=True)
