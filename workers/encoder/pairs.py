"""Training examples for the encoder, from the corpus without labels or from a user's pairs file.

Unlabelled positives (anchor, positive) from one document:
  title_body  its title and its body (retrieval.title_and_body); documents without a title are skipped
  spans       two random spans of its words (each up to SPAN_WORDS words), possibly overlapping
  dropout     the same text twice; the encoder's dropout makes the two views differ (SimCSE)
Held-out documents (a stable hash of the id, so the split is the same in every run and process)
never become training examples: they are the evaluation set.

A pairs file is JSON Lines or Parquet with string fields anchor, positive and optionally negative
(a hard negative).
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from typing import Literal, NamedTuple

import numpy as np

from firth.workers.encoder.retrieval import title_and_body

Positives = Literal["title_body", "spans", "dropout"]
SPAN_WORDS = 128


class Pair(NamedTuple):
    anchor: str
    positive: str
    negative: str | None = None


def is_held_out(doc_id: str, fraction: float) -> bool:
    """The same answer for the same id everywhere: the first 8 bytes of its BLAKE2 hash, as a fraction."""
    digest = hashlib.blake2b(doc_id.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0 ** 64 < fraction


def corpus_pairs(documents: Iterable[tuple[str, str]], positives: Positives, *, holdout_fraction: float,
                 seed: int = 0) -> Iterator[Pair]:
    """Pairs from (doc_id, text) documents that are not held out, in corpus order."""
    rng = np.random.default_rng(seed)
    for doc_id, text in documents:
        if is_held_out(doc_id, holdout_fraction):
            continue
        if positives == "title_body":
            split = title_and_body(text)
            if split is not None:
                yield Pair(*split)
        elif positives == "spans":
            words = text.split()
            if len(words) >= 8:
                yield Pair(_span(words, rng), _span(words, rng))
        elif positives == "dropout":
            if text.strip():
                yield Pair(text, text)
        else:
            raise ValueError(f"model.positives {positives!r}: use title_body, spans or dropout")


def _span(words: list[str], rng: np.random.Generator) -> str:
    length = int(rng.integers(max(4, min(len(words), SPAN_WORDS) // 2), min(len(words), SPAN_WORDS) + 1))
    start = int(rng.integers(0, len(words) - length + 1))
    return " ".join(words[start:start + length])


def read_pairs_file(uri: str, storage_options: dict | None = None) -> Iterator[Pair]:
    """Pairs from a JSON Lines (.jsonl/.json, optionally .gz) or Parquet file; errors name the line or row."""
    from firth.schemas.fs import filesystem

    fs, path = filesystem(uri, storage_options)
    if not fs.exists(path):
        raise FileNotFoundError(f"model.pairs: {uri}: no such file; give a JSON Lines or Parquet file with "
                                "fields anchor, positive[, negative]")
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        with fs.open(path, "rb") as f:
            parquet = pq.ParquetFile(f)
            missing = {"anchor", "positive"} - set(parquet.schema_arrow.names)
            if missing:
                raise ValueError(f"model.pairs: {uri}: no column(s) {sorted(missing)} (columns: "
                                 f"{parquet.schema_arrow.names}); name them anchor, positive[, negative]")
            columns = [c for c in ("anchor", "positive", "negative") if c in parquet.schema_arrow.names]
            row = 0
            for batch in parquet.iter_batches(columns=columns):
                for record in batch.to_pylist():
                    yield _pair(record, f"{uri}: row {row}")
                    row += 1
        return
    compression = "gzip" if path.endswith(".gz") else None
    with fs.open(path, "rt", compression=compression, encoding="utf-8") as lines:
        for line_no, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"model.pairs: {uri}: line {line_no}: malformed JSON ({e.msg}); each line must be "
                                 '{"anchor": "...", "positive": "..."[, "negative": "..."]}') from None
            yield _pair(record, f"{uri}: line {line_no}")


def _pair(record, where: str) -> Pair:
    if not isinstance(record, dict):
        raise ValueError(f"model.pairs: {where}: expected an object with anchor, positive[, negative]")
    for key in ("anchor", "positive"):
        if not isinstance(record.get(key), str) or not record[key].strip():
            raise ValueError(f"model.pairs: {where}: field {key!r} must be a non-empty string, got "
                             f"{record.get(key)!r}")
    negative = record.get("negative")
    if negative is not None and not isinstance(negative, str):
        raise ValueError(f"model.pairs: {where}: field 'negative' must be a string or absent, got {negative!r}")
    return Pair(record["anchor"], record["positive"], negative or None)
