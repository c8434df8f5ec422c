"""Tokenizer throughput on one benchmark shard: the regex tokenizer against trained subword ones.

    PYTHONPATH=. .venv/bin/python benchmarks/tokenizer_bench.py /work/bench-corpus/bench-00000.jsonl.gz

Reads the shard's documents, trains WordPiece and BPE (vocab_size 30,000) on a sample of them
(--sample-mb), then tokenises all documents with each tokenizer in batches of 1,000 documents, as
the statistics steps do. Prints training seconds, documents' words per second (the regex
tokenizer's token count over the time) and units per second. The subword encoders run on all
cores (Rust threads); the regex tokenizer on one.
"""
from __future__ import annotations

import argparse
import json
import time

import pyarrow as pa

from firth.pipelines.config import CorpusConfig
from firth.pipelines.corpus.shards import ShardReport, iter_documents, list_shards
from firth.pipelines.corpus.subword import SubwordTokenizer, corpus_sample, train_subword_tokenizer
from firth.pipelines.corpus.tokenize import Tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("shard")
    parser.add_argument("--vocab-size", type=int, default=30_000)
    parser.add_argument("--sample-mb", type=int, default=256)
    args = parser.parse_args()

    config = CorpusConfig(shards=[args.shard])
    shards = list_shards(config)
    batches = [b.texts for b in iter_documents(shards[0], config, ShardReport(shards[0].uri))]
    batches = [pa.array(b, pa.large_string()) if not isinstance(b, pa.Array) else b for b in batches]
    regex = Tokenizer()
    regex(batches[0])  # warm-up: numba compile / cache load and the word table, once per process
    start = time.perf_counter()
    n_words = sum(len(regex(b)[0]) for b in batches)
    results = {"regex": {"words_per_s": round(n_words / (time.perf_counter() - start))}, "words": n_words}
    for kind in ("wordpiece", "bpe"):
        start = time.perf_counter()
        trained = train_subword_tokenizer(corpus_sample(shards, config, args.sample_mb << 20), kind=kind,
                                          vocab_size=args.vocab_size)
        train_s = time.perf_counter() - start
        tokenizer = SubwordTokenizer.from_tokenizer(trained)
        tokenizer(batches[0])  # warm-up, as for the regex tokenizer
        start = time.perf_counter()
        n_units = sum(len(tokenizer(b)[0]) for b in batches)
        seconds = time.perf_counter() - start
        results[kind] = {"train_s": round(train_s, 1), "units": n_units, "words_per_s": round(n_words / seconds),
                         "units_per_s": round(n_units / seconds), "units_per_word": round(n_units / n_words, 3)}
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
