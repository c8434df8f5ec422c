"""Corpus reading: formats, compression, s3, and the errors a user sees for bad shards."""
import gzip
import re
import json
import zlib

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import s3fs
import zstandard

from firth.pipelines.config import CorpusConfig
from firth.pipelines.corpus import shards as shards_module
from firth.pipelines.corpus.shards import CorpusError, ShardReport, iter_documents, list_shards


def read_all(config):
    docs, reports = [], []
    for shard in list_shards(config):
        report = ShardReport(shard.uri)
        for batch in iter_documents(shard, config, report, batch_size=2):
            docs += list(zip(batch.ids, batch.texts))
        reports.append(report)
    return docs, reports


def test_formats_and_compressions_read_the_same_documents(tmp_path):
    rows = [{"id": "a", "text": "Hello world"}, {"id": "b", "text": "Café naïve"}, {"id": "c", "text": "x y z"}]
    jsonl = "".join(json.dumps(r) + "\n" for r in rows).encode()
    (tmp_path / "s1.jsonl.gz").write_bytes(gzip.compress(jsonl))
    (tmp_path / "s2.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(jsonl))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "s3.parquet")
    (tmp_path / "s4.txt").write_text("Hello world\n\nCafé naïve\nx y z\n")
    expected = [(r["id"], r["text"]) for r in rows]
    for name in ["s1.jsonl.gz", "s2.jsonl.zst", "s3.parquet"]:
        docs, reports = read_all(CorpusConfig(shards=[str(tmp_path / name)]))
        assert docs == expected, name
        assert reports[0].documents == 3 and reports[0].bad_records == 0
    docs, _ = read_all(CorpusConfig(shards=[str(tmp_path / "s4.txt")]))
    # blank line 2 is not a document; ids are "<file>:<line>"
    assert docs == [("s4.txt:1", "Hello world"), ("s4.txt:3", "Café naïve"), ("s4.txt:4", "x y z")]


def test_glob_sorted_with_content_fingerprints(tmp_path):
    for name, text in [("b.txt", "two\n"), ("a.txt", "one\n"), ("c.txt", "one\n")]:
        (tmp_path / name).write_text(text)
    shards = list_shards(CorpusConfig(shards=[str(tmp_path / "*.txt")]))
    assert [s.name for s in shards] == ["a.txt", "b.txt", "c.txt"]
    assert shards[0].fingerprint == shards[2].fingerprint != shards[1].fingerprint
    assert shards[0].fingerprint.startswith("sha256:") and shards[0].size == 4


def test_configurable_fields(tmp_path):
    (tmp_path / "s.jsonl").write_text(json.dumps({"doc": 7, "body": "words here"}) + "\n")
    docs, _ = read_all(CorpusConfig(shards=[str(tmp_path / "s.jsonl")], id_field="doc", text_field="body"))
    assert docs == [("7", "words here")]


@pytest.mark.parametrize("content, message", [
    (b'{"text": "fine"}\n{"text": broken\n', "line 2: malformed JSON (Expecting value at column 10)"),
    (b'{"text": "fine"}\n{"text": "open\n', "line 2: malformed JSON (Invalid control character at column 15)"),
    (b'{"text": "fine"}\n{"text": "open', "line 2: malformed JSON (Unterminated string starting at column 10)"),
    (b'{"text": "fine"}\n{"body": "x"}\n', "line 2: no string field 'text'"),
    (b'{"text": "fine"}\n\xff\xfe\n', "line 2: not valid UTF-8"),
])
def test_bad_record_is_an_error_naming_shard_and_line_or_is_skipped_and_counted(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    with pytest.raises(CorpusError, match=f"bad.jsonl: {re.escape(message)}.*on_bad_record: skip"):
        read_all(CorpusConfig(shards=[str(path)]))
    docs, reports = read_all(CorpusConfig(shards=[str(path)], on_bad_record="skip"))
    assert docs == [("bad.jsonl:1", "fine")]
    assert reports[0].bad_records == 1 and message in reports[0].problems[0]


def test_empty_shard_and_corrupt_gzip(tmp_path):
    (tmp_path / "empty.txt").write_text("\n\n")
    with pytest.raises(CorpusError, match="empty.txt: empty shard"):
        read_all(CorpusConfig(shards=[str(tmp_path / "empty.txt")]))
    _, reports = read_all(CorpusConfig(shards=[str(tmp_path / "empty.txt")], on_bad_record="skip"))
    assert reports[0].empty and reports[0].documents == 0
    whole = gzip.compress("".join(f"line {n} {n * n}\n" for n in range(5000)).encode())
    (tmp_path / "cut.txt.gz").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(CorpusError, match="cut.txt.gz: cannot read shard"):
        read_all(CorpusConfig(shards=[str(tmp_path / "cut.txt.gz")]))


def test_missing_shard_and_unknown_extension(tmp_path):
    with pytest.raises(CorpusError, match="matches no file"):
        list_shards(CorpusConfig(shards=[str(tmp_path / "nothing-*.txt")]))
    missing = str(tmp_path / "nothing.txt")  # no wildcard: fsspec does not expand it, the reader must not open it
    with pytest.raises(CorpusError, match=f"corpus.shards: '{missing}': no such file; check the path .* or use a glob"):
        list_shards(CorpusConfig(shards=[missing]))
    (tmp_path / "x.csv").write_text("a\n")
    with pytest.raises(CorpusError, match="x.csv: cannot tell the format.*corpus.format"):
        read_all(CorpusConfig(shards=[str(tmp_path / "x.csv")]))
    docs, _ = read_all(CorpusConfig(shards=[str(tmp_path / "x.csv")], format="text"))
    assert docs == [("x.csv:1", "a")]


def test_parquet_without_text_column(tmp_path):
    pq.write_table(pa.table({"body": ["x"]}), tmp_path / "p.parquet")
    with pytest.raises(CorpusError, match=r"p.parquet: no column 'text' \(columns: \['body'\]\)"):
        read_all(CorpusConfig(shards=[str(tmp_path / "p.parquet")]))


@pytest.mark.slow
@pytest.mark.parametrize("style", ["fsspec", "object_store"])
def test_s3_shards_with_etag_fingerprints(s3_bucket, style):
    bucket, fs_options, delta_options = s3_bucket
    fs = s3fs.S3FileSystem(**fs_options)
    fs.pipe(f"{bucket}/corpus/part-0.jsonl.gz", gzip.compress(b'{"id": "d0", "text": "on s3"}\n'))
    fs.pipe(f"{bucket}/corpus/part-1.txt", b"plain line\n")
    options = fs_options if style == "fsspec" else delta_options  # AWS_* keys, as the store takes them
    config = CorpusConfig(shards=[f"s3://{bucket}/corpus/*"], storage_options=options)
    shards = list_shards(config)
    assert [s.uri for s in shards] == [f"s3://{bucket}/corpus/part-0.jsonl.gz", f"s3://{bucket}/corpus/part-1.txt"]
    assert all(s.fingerprint.startswith("etag:") for s in shards)
    docs, _ = read_all(config)
    assert docs == [("d0", "on s3"), ("part-1.txt:1", "plain line")]


def test_skip_keeps_an_unreadable_shards_documents_before_the_damage_and_counts_it(tmp_path):
    lines = [f"line {n} {n * n}" for n in range(5000)]
    whole = gzip.compress("".join(f"{line}\n" for line in lines).encode())
    (tmp_path / "a-cut.txt.gz").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "b-plain.txt.zst").write_text("not zstd at all\n")  # the wrong compression
    pq.write_table(pa.table({"body": ["x"]}), tmp_path / "c-column.parquet")  # no `text` column
    (tmp_path / "d-fine.txt").write_text("still read\n")
    docs, reports = read_all(CorpusConfig(shards=[str(tmp_path / "*")], on_bad_record="skip"))
    # what a reader could decompress before the cut holds at most these complete lines
    readable = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(whole[: len(whole) // 2]).count(b"\n")
    kept = [text for doc_id, text in docs if doc_id.startswith("a-cut")]
    assert 0 < len(kept) <= readable and kept == lines[:len(kept)]
    assert [d for d in docs if not d[0].startswith("a-cut")] == [("d-fine.txt:1", "still read")]
    assert [(r.unreadable, r.documents, r.empty) for r in reports] == [
        (True, len(kept), False), (True, 0, False), (True, 0, False), (False, 1, False)]
    assert f"a-cut.txt.gz: cannot read shard after {len(kept)} documents (EOFError" in reports[0].problems[0]
    assert "b-plain.txt.zst: cannot read shard after 0 documents (ZstdError" in reports[1].problems[0]
    assert "c-column.parquet: no column 'text'" in reports[2].problems[0]
    with pytest.raises(CorpusError, match="b-plain.txt.zst: cannot read shard .*set corpus.on_bad_record: skip"):
        read_all(CorpusConfig(shards=[str(tmp_path / "b-plain.txt.zst")]))


@pytest.mark.parametrize("name", ["long.txt", "long.jsonl", "long.parquet"])
def test_a_long_document_is_read_as_pieces_of_max_document_tokens_words(tmp_path, monkeypatch, name):
    monkeypatch.setattr(shards_module, "READ_BYTES", 64)  # a text line is read in many small steps
    words = [f"w{n}" for n in range(250)]
    text = " ".join(words)
    if name.endswith(".txt"):
        (tmp_path / name).write_text(f"short one\n{text}\n")
    elif name.endswith(".jsonl"):
        (tmp_path / name).write_text(json.dumps({"id": "s", "text": "short one"}) + "\n"
                                     + json.dumps({"id": "d", "text": text}) + "\n")
    else:
        pq.write_table(pa.table({"id": ["s", "d"], "text": ["short one", text]}), tmp_path / name)
    docs, reports = read_all(CorpusConfig(shards=[str(tmp_path / name)], max_document_tokens=100))
    first, second = ("long.txt:1", "long.txt:2") if name.endswith(".txt") else ("s", "d")
    assert [(doc_id, t.split()) for doc_id, t in docs] == [
        (first, ["short", "one"]), (second, words[:100]), (f"{second}#1", words[100:200]),
        (f"{second}#2", words[200:])]
    assert reports[0].documents == 4
    config = CorpusConfig(shards=[str(tmp_path / name)], max_document_tokens=100)
    [shard] = list_shards(config)
    whole = [(i, t.split()) for b in iter_documents(shard, config, ShardReport(shard.uri), whole=True)
             for i, t in zip(b.ids, b.texts)]
    assert whole == [(first, ["short", "one"]), (second, words)]  # as encoders read them
