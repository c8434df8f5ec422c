"""Corpus reading: formats, compression, s3, and the errors a user sees for bad shards."""
import gzip
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import s3fs
import zstandard

from firth.pipelines.config import CorpusConfig
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
    (b'{"text": "fine"}\n{"text": broken\n', "line 2: malformed JSON"),
    (b'{"text": "fine"}\n{"body": "x"}\n', "line 2: no string field 'text'"),
    (b'{"text": "fine"}\n\xff\xfe\n', "line 2: not valid UTF-8"),
])
def test_bad_record_is_an_error_naming_shard_and_line_or_is_skipped_and_counted(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_bytes(content)
    with pytest.raises(CorpusError, match=f"bad.jsonl: {message}.*on_bad_record: skip"):
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
def test_s3_shards_with_etag_fingerprints(s3_bucket):
    bucket, fs_options, _ = s3_bucket
    fs = s3fs.S3FileSystem(**fs_options)
    fs.pipe(f"{bucket}/corpus/part-0.jsonl.gz", gzip.compress(b'{"id": "d0", "text": "on s3"}\n'))
    fs.pipe(f"{bucket}/corpus/part-1.txt", b"plain line\n")
    config = CorpusConfig(shards=[f"s3://{bucket}/corpus/*"], storage_options=fs_options)
    shards = list_shards(config)
    assert [s.uri for s in shards] == [f"s3://{bucket}/corpus/part-0.jsonl.gz", f"s3://{bucket}/corpus/part-1.txt"]
    assert all(s.fingerprint.startswith("etag:") for s in shards)
    docs, _ = read_all(config)
    assert docs == [("d0", "on s3"), ("part-1.txt:1", "plain line")]
