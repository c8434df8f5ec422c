"""Which tokenizer the statistics use (config `tokenizer.kind`), made once per run on the driver.

    regex            firth.pipelines.corpus.tokenize.Tokenizer (numba scan for the default pattern)
    wordpiece | bpe  a subword model trained on a bounded sample of the corpus (pipelines/corpus/subword.py),
                     written to <statistics uri>/tokenizer.json before counting and published with
                     the table version as the artifact "tokenizer.json"

Both are picklable callables `texts -> (tokens, offsets)`, handed to the per-shard steps.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Mapping
from typing import Any

from firth.pipelines.config import JobConfig
from firth.pipelines.corpus.subword import SubwordTokenizer, corpus_sample, train_subword_tokenizer
from firth.pipelines.corpus.tokenize import Tokenizer
from firth.schemas.fs import filesystem, join

TOKENIZER_FILE = "tokenizer.json"  # beside the statistics tables, and the published artifact's name


def prepare_tokenizer(shards: list, config: JobConfig, statistics_uri: str,
                      storage_options: Mapping[str, Any] | None = None) -> Tokenizer | SubwordTokenizer:
    """The run's tokenizer; a subword one is trained first and saved as <statistics_uri>/tokenizer.json."""
    settings = config.tokenizer
    if settings.kind == "regex":
        return Tokenizer(settings)
    start = time.perf_counter()
    trained = train_subword_tokenizer(
        corpus_sample(shards, config.corpus, settings.training_sample_mb << 20), kind=settings.kind,
        vocab_size=settings.vocab_size, lowercase=settings.lowercase, min_frequency=settings.min_frequency)
    fs, path = filesystem(join(statistics_uri, TOKENIZER_FILE), storage_options)
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)  # local folders; a no-op on object stores
    fs.pipe(path, trained.to_str().encode())
    print(f"firth: trained a {settings.kind} tokenizer ({trained.get_vocab_size()} units) in "
          f"{time.perf_counter() - start:.1f} s", file=sys.stderr, flush=True)
    return SubwordTokenizer.from_tokenizer(trained, words=Tokenizer(settings))  # words as tokenizer.pattern


def statistics_artifacts(statistics_uri: str, storage_options: Mapping[str, Any] | None = None) -> dict[str, bytes]:
    """Files of the statistics run to publish with the table version: the subword model, if one was trained."""
    fs, path = filesystem(join(statistics_uri, TOKENIZER_FILE), storage_options)
    return {TOKENIZER_FILE: fs.cat_file(path)} if fs.exists(path) else {}
