"""Corpus reading: shard discovery, fingerprints, and documents in bounded batches.

A shard is one file behind a URI (local path or s3://), in one of three formats:
  text     one document per line (blank lines are not documents); id = "<file name>:<line>"
  jsonl    one JSON object per line; text in `text_field`, id in `id_field`
           (a record without the id field gets "<file name>:<line>")
  parquet  a `text_field` column (and `id_field` if present; else "<file name>:<row>")
The format comes from the extension (`.txt`, `.jsonl`/`.ndjson`/`.json`, `.parquet`) unless
the config names one; `.gz` and `.zst` are decompressed on the fly.

Bad input fails loudly, naming the shard and the line or row. With `on_bad_record: skip`, a
bad record (undecodable line, malformed JSON, missing or non-string text), an empty shard and an
unreadable one (truncated or wrongly compressed, not Parquet, no text column) are skipped instead,
and counted in `ShardReport`, which the job publishes; an unreadable shard's documents before
the damage are kept.

A document of more than `corpus.max_document_tokens` words is read as consecutive pieces of that
many (pipelines/corpus/pieces.py), each a document of its own, with ids "<id>#1", "<id>#2", ...
after the first; a text shard's long line is read in steps of READ_BYTES, never whole. Encoders
read whole documents (`whole=True`): they embed each once, cut to their own token limit.
"""
from __future__ import annotations

import hashlib
import io
import json
import posixpath
from dataclasses import dataclass, field
from typing import Iterator

import pyarrow.parquet as pq

from firth.pipelines.config import CorpusConfig
from firth.pipelines.corpus.pieces import WordPieces, split_text
from firth.schemas.fs import filesystem, is_local

COMPRESSIONS = {".gz": "gzip", ".zst": "zstd"}
FORMATS = {".txt": "text", ".text": "text", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl",
           ".parquet": "parquet"}
BATCH_DOCUMENTS = 4096  # documents handed to the kernels at once: bounds memory per worker
BATCH_CHARACTERS = 1 << 22  # ... or fewer, once their texts reach 4 Mi characters (tokenizing them takes ~10x)
READ_BYTES = 1 << 20  # one read of a text line; a longer line is read in several


class CorpusError(ValueError):
    """Unusable corpus input; the message names the shard (and line/row) and the fix."""


@dataclass(frozen=True)
class Shard:
    uri: str
    size: int  # bytes on storage
    fingerprint: str  # "etag:<ETag>" on object stores, "sha256:<hex>" for local files

    @property
    def name(self) -> str:
        return posixpath.basename(self.uri)


@dataclass
class DocumentBatch:
    ids: list[str]
    texts: list[str]


@dataclass
class ShardReport:
    """What reading one shard skipped (only non-zero with `on_bad_record: skip`)."""
    uri: str
    documents: int = 0
    bad_records: int = 0
    empty: bool = False
    unreadable: bool = False  # reading stopped at damage (on_bad_record: skip); the documents before it count
    problems: list[str] = field(default_factory=list)  # the first few, for the run summary


def list_shards(config: CorpusConfig) -> list[Shard]:
    """Expand the configured URIs and globs into shards, sorted by URI, with fingerprints."""
    shards: dict[str, Shard] = {}
    for pattern in config.shards:
        # through the one IO layer: it takes fsspec-style and object_store-style (AWS_*) options alike
        fs, path = filesystem(pattern, config.storage_options)
        paths = fs.glob(path) if any(c in path for c in "*?[") else [path]
        if not paths:
            raise CorpusError(f"corpus.shards: {pattern!r} matches no file; check the path or glob")
        for path in sorted(paths):
            try:
                info = fs.info(path)
            except FileNotFoundError:  # a path without wildcards is not expanded, so it may not exist
                raise CorpusError(f"corpus.shards: {pattern!r}: no such file; check the path (a relative one is "
                                  "taken from the config file's folder) or use a glob") from None
            if info.get("type") == "directory":
                raise CorpusError(f"corpus.shards: {pattern!r} is a directory; use a glob such as '{pattern.rstrip('/')}/*'")
            uri = path if is_local(pattern) else fs.unstrip_protocol(path)
            shards[uri] = Shard(uri, int(info.get("size") or 0), _fingerprint(fs, path, info))
    return [shards[u] for u in sorted(shards)]


def _fingerprint(fs, path: str, info: dict) -> str:
    etag = info.get("ETag") or info.get("etag")
    if etag:
        return f"etag:{etag.strip(chr(34))}"
    digest = hashlib.sha256()
    with fs.open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return f"sha256:{digest.hexdigest()}"


def shard_format(uri: str, config: CorpusConfig) -> tuple[str, str | None]:
    """(format, compression) of a shard, from the config or its extension."""
    stem, ext = posixpath.splitext(uri)
    compression = COMPRESSIONS.get(ext)
    if compression:
        stem, ext = posixpath.splitext(stem)
    if config.format != "auto":
        return config.format, compression
    if ext not in FORMATS:
        raise CorpusError(f"{uri}: cannot tell the format from the extension {ext!r}; "
                          f"use one of {sorted(FORMATS)} (optionally + .gz/.zst) or set corpus.format")
    return FORMATS[ext], compression


def iter_documents(shard: Shard, config: CorpusConfig, report: ShardReport, batch_size: int = BATCH_DOCUMENTS,
                   *, whole: bool = False) -> Iterator[DocumentBatch]:
    """Yield the shard's documents in batches of at most `batch_size` (and BATCH_CHARACTERS), filling `report`.

    Documents longer than corpus.max_document_tokens come as pieces, unless `whole` (the encoders,
    which bound their input by tokens themselves, embed each document once)."""
    fmt, compression = shard_format(shard.uri, config)
    records = _parquet_records if fmt == "parquet" else _line_records
    max_words = None if whole else config.max_document_tokens
    batch, characters = DocumentBatch([], []), 0
    try:
        for doc_id, text in records(shard, fmt, compression, config, report, max_words):
            batch.ids.append(doc_id)
            batch.texts.append(text)
            report.documents += 1
            characters += len(text)
            if len(batch.ids) == batch_size or characters >= BATCH_CHARACTERS:
                yield batch
                batch, characters = DocumentBatch([], []), 0
    except Exception as e:  # decompression, I/O and Parquet errors carry no shard name: add it
        if isinstance(e, CorpusError) and config.on_bad_record == "error":
            raise
        message = str(e) if isinstance(e, CorpusError) else (
            f"{shard.uri}: cannot read shard after {report.documents} documents ({type(e).__name__}: {e}); check "
            "that the file is complete and in the declared format")
        if config.on_bad_record == "error":
            raise CorpusError(f"{message}, or set corpus.on_bad_record: skip to skip and count unreadable "
                              "shards (their documents before the damage are kept)") from e
        report.unreadable = True  # skip: keep what was read before the damage
        report.problems.append(message)
    if batch.ids:
        yield batch
    if report.documents == 0 and not report.unreadable:
        if config.on_bad_record == "error":
            raise CorpusError(f"{shard.uri}: empty shard (no documents); remove it, "
                              "or set corpus.on_bad_record: skip to skip and count empty shards")
        report.empty = True


def _pieces(doc_id: str, text: str, max_words: int | None) -> Iterator[tuple[str, str]]:
    """(id, text) of each piece of a document (itself, if it has at most max_words words, or max_words is None)."""
    for index, piece in enumerate(split_text(text, max_words) if max_words else [text]):
        yield (f"{doc_id}#{index}" if index else doc_id), piece


def _bad(report: ShardReport, config: CorpusConfig, message: str) -> None:
    if config.on_bad_record == "error":
        raise CorpusError(message)
    report.bad_records += 1
    if len(report.problems) < 5:
        report.problems.append(message)


def _line_records(shard, fmt, compression, config, report, max_words):
    fs, path = filesystem(shard.uri, config.storage_options)
    skip_hint = "; fix the record, or set corpus.on_bad_record: skip to skip and count bad records"
    # BufferedReader: zstandard's stream reader cannot iterate lines by itself
    with fs.open(path, "rb", compression=compression) as f, io.BufferedReader(f) as lines:
        if fmt == "text":  # one document per line, split into pieces as it is read
            for line_no, index, raw in _line_pieces(lines, max_words):
                try:
                    text = raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    _bad(report, config, f"{shard.uri}: line {line_no}: not valid UTF-8 ({e.reason} at byte "
                                         f"{e.start}{f' of piece {index}' if index else ''}){skip_hint}")
                    continue
                if text.strip():
                    yield f"{shard.name}:{line_no}" + (f"#{index}" if index else ""), text.rstrip("\r\n")
            return
        for line_no, raw in enumerate(lines, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                _bad(report, config, f"{shard.uri}: line {line_no}: not valid UTF-8 ({e.reason} at byte {e.start}){skip_hint}")
                continue
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                problem = e.msg.removesuffix(" at")  # json's "Unterminated string starting at" names no place itself
                _bad(report, config, f"{shard.uri}: line {line_no}: malformed JSON ({problem} at column {e.colno})"
                                     f"{skip_hint}")
                continue
            text = record.get(config.text_field) if isinstance(record, dict) else None
            if not isinstance(text, str):
                _bad(report, config, f"{shard.uri}: line {line_no}: no string field {config.text_field!r} "
                                     f"(set corpus.text_field to the field that holds the text){skip_hint}")
                continue
            yield from _pieces(str(record.get(config.id_field, f"{shard.name}:{line_no}")), text, max_words)


def _line_pieces(lines: io.BufferedReader, max_words: int | None) -> Iterator[tuple[int, int, bytes]]:
    """(line number, piece index, bytes) of every piece of every line, reading at most READ_BYTES at once
    (whole lines, read whole, when max_words is None)."""
    if max_words is None:
        yield from ((line_no, 0, raw) for line_no, raw in enumerate(lines, start=1))
        return
    pieces = WordPieces(max_words)
    line_no, index = 1, 0
    while raw := lines.readline(READ_BYTES):
        ends = raw.endswith(b"\n")
        if ends and index == 0 and not pieces.pending and len(raw) < 2 * max_words:  # a short line, whole:
            yield line_no, 0, raw  # it cannot hold more than max_words words
            line_no += 1
            continue
        for piece in pieces.feed(raw) + (pieces.finish() if ends else []):
            yield line_no, index, piece
            index += 1
        if ends:
            line_no, index = line_no + 1, 0
    for piece in pieces.finish():  # a last line without a newline
        yield line_no, index, piece
        index += 1


def _parquet_records(shard, fmt, compression, config, report, max_words):
    fs, path = filesystem(shard.uri, config.storage_options)
    with fs.open(path, "rb", compression=compression) as f:
        parquet = pq.ParquetFile(f)
        names = parquet.schema_arrow.names
        if config.text_field not in names:
            raise CorpusError(f"{shard.uri}: no column {config.text_field!r} (columns: {names}); "
                              "set corpus.text_field to the column that holds the text")
        has_ids = config.id_field in names
        columns = [config.text_field] + ([config.id_field] if has_ids else [])
        row = 0
        for batch in parquet.iter_batches(batch_size=BATCH_DOCUMENTS, columns=columns):
            texts = batch.column(config.text_field).to_pylist()
            ids = batch.column(config.id_field).to_pylist() if has_ids else [None] * len(texts)
            for doc_id, text in zip(ids, texts):
                if not isinstance(text, str):
                    _bad(report, config, f"{shard.uri}: row {row}: {config.text_field!r} is {text!r}, not a string; "
                                         "fix the row, or set corpus.on_bad_record: skip")
                elif text.strip():
                    yield from _pieces(f"{shard.name}:{row}" if doc_id is None else str(doc_id), text, max_words)
                row += 1
