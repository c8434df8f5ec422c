"""Stage schemas, their check, and the IO layer (fsspec options, atomic Parquet writes) on local and S3."""
from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.fs as pafs
import pytest

from firth.schemas.fs import filesystem, fsspec_options, open_atomic, pyarrow_filesystem
from firth.schemas.tables import (
    COOCCURRENCE,
    IDF,
    TFIDF,
    TOKENS,
    VOCABULARY,
    SchemaError,
    check,
    embedding_schema,
    read_parquet,
    write_parquet,
)


def vocabulary() -> pa.Table:
    return pa.table({
        "token": ["the", "cat", "sat"],
        "id": pa.array([0, 1, 2], pa.int32()),
        "count": pa.array([7, 3, 2], pa.int64()),
        "doc_count": pa.array([2, 2, 1], pa.int64()),
    })


def test_schemas_have_the_contracted_fields_and_types():
    assert [(f.name, str(f.type)) for f in VOCABULARY] == [
        ("token", "string"), ("id", "int32"), ("count", "int64"), ("doc_count", "int64")]
    assert [(f.name, str(f.type)) for f in TOKENS] == [("doc_id", "string"), ("token_ids", "list<item: int32 not null>")]
    assert [(f.name, str(f.type)) for f in COOCCURRENCE] == [("i", "int32"), ("j", "int32"), ("x", "float")]
    assert [(f.name, str(f.type)) for f in TFIDF] == [
        ("doc_id", "string"), ("term_id", "int32"), ("tf", "int32"), ("tfidf", "float")]
    assert [(f.name, str(f.type)) for f in IDF] == [("term_id", "int32"), ("doc_count", "int64"), ("idf", "float")]
    vector = embedding_schema(3).field("vector").type
    assert pa.types.is_fixed_size_list(vector) and vector.list_size == 3 and vector.value_type == pa.float32()
    with pytest.raises(ValueError, match="positive integer"):
        embedding_schema(0)


def test_check_accepts_a_matching_table_and_returns_the_exact_schema():
    reordered = vocabulary().select(["doc_count", "token", "count", "id"])
    checked = check(reordered, VOCABULARY)
    assert checked.schema == VOCABULARY
    assert checked.column("token").to_pylist() == ["the", "cat", "sat"]
    assert checked.column("doc_count").to_pylist() == [2, 2, 1]


def test_check_names_the_missing_field():
    with pytest.raises(SchemaError, match=r"table 'vocabulary', field 'doc_count': missing field") as e:
        check(vocabulary().drop_columns(["doc_count"]), VOCABULARY)
    assert (e.value.table, e.value.field) == ("vocabulary", "doc_count")


def test_check_names_the_extra_field():
    with pytest.raises(SchemaError, match=r"table 'vocab-run1', field 'score': unexpected field"):
        check(vocabulary().append_column("score", pa.array([1.0, 2.0, 3.0])), VOCABULARY, "vocab-run1")


def test_check_names_the_field_of_wrong_type_and_is_strict_by_default():
    wide_ids = vocabulary().set_column(1, "id", pa.array([0, 1, 2], pa.int64()))
    with pytest.raises(SchemaError, match=r"field 'id': type int64, expected int32"):
        check(wide_ids, VOCABULARY)
    assert check(wide_ids, VOCABULARY, cast=True).column("id").type == pa.int32()  # lossless: values fit
    too_big = vocabulary().set_column(1, "id", pa.array([0, 1, 2**31], pa.int64()))
    with pytest.raises(SchemaError, match=r"field 'id': type int64 does not convert losslessly to int32"):
        check(too_big, VOCABULARY, cast=True)
    with pytest.raises(SchemaError, match=r"field 'x': type double, expected float"):
        check(pa.table({"i": pa.array([0], pa.int32()), "j": pa.array([1], pa.int32()), "x": [1.5]}), COOCCURRENCE)


def test_check_refuses_nulls_in_fields_and_list_elements():
    with pytest.raises(SchemaError, match=r"field 'count': 1 null values"):
        check(vocabulary().set_column(2, "count", pa.array([7, None, 2], pa.int64())), VOCABULARY)
    null_element = pa.table({"doc_id": ["d1", "d2"], "token_ids": pa.array([[0, None], [1]], pa.list_(pa.int32()))})
    with pytest.raises(SchemaError, match=r"table 'tokens', field 'token_ids\[\]': 1 null values"):
        check(null_element, TOKENS)


def test_check_ignores_the_list_child_name_parquet_writers_use():
    element_named = pa.table({"doc_id": ["d1"], "token_ids": pa.array([[3, 1, 3]], pa.list_(pa.field("element", pa.int32())))})
    checked = check(element_named, TOKENS)
    assert checked.schema == TOKENS
    assert checked.column("token_ids").to_pylist() == [[3, 1, 3]]


def test_fsspec_options_translates_object_store_options():
    assert fsspec_options({
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9000", "AWS_ACCESS_KEY_ID": "k", "AWS_SECRET_ACCESS_KEY": "s",
        "AWS_REGION": "us-west-2", "AWS_ALLOW_HTTP": "true", "AWS_SESSION_TOKEN": "t",
    }) == {"key": "k", "secret": "s", "token": "t",
           "client_kwargs": {"endpoint_url": "http://127.0.0.1:9000", "region_name": "us-west-2"}}
    assert fsspec_options({"aws_region": "eu-west-1", "AWS_S3_ALLOW_UNSAFE_RENAME": "true"}) == {
        "client_kwargs": {"region_name": "eu-west-1"}}
    with pytest.raises(ValueError, match="'AWS_BUCKET_NAME': not a known object_store"):
        fsspec_options({"AWS_BUCKET_NAME": "b"})
    with pytest.raises(ValueError, match="'AWS_ALLOW_HTTP': expected true or false"):
        fsspec_options({"AWS_ALLOW_HTTP": "maybe"})
    with pytest.raises(ValueError, match="mix object_store-style keys"):
        filesystem("s3://b/x", {"AWS_REGION": "us-west-2", "key": "k"})


def test_parquet_round_trip_local_leaves_no_temporary_file(tmp_path):
    uri = str(tmp_path / "stats" / "vocabulary.parquet")
    write_parquet(vocabulary(), uri, VOCABULARY)
    assert read_parquet(uri, VOCABULARY).equals(check(vocabulary(), VOCABULARY))
    write_parquet(vocabulary().slice(0, 2), uri, VOCABULARY)  # a rerun replaces the file whole
    assert read_parquet(uri, VOCABULARY).column("token").to_pylist() == ["the", "cat"]
    assert [p.name for p in (tmp_path / "stats").iterdir()] == ["vocabulary.parquet"]


def test_parquet_read_checks_the_schema(tmp_path):
    uri = str(tmp_path / "idf.parquet")
    write_parquet(vocabulary(), uri, VOCABULARY)
    with pytest.raises(SchemaError, match=r"table 'idf at .*idf.parquet', field 'term_id': missing field"):
        read_parquet(uri, IDF)
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_parquet(str(tmp_path / "absent.parquet"), IDF)


def test_write_parquet_refuses_a_bad_table_and_writes_nothing(tmp_path):
    uri = str(tmp_path / "vocabulary.parquet")
    with pytest.raises(SchemaError, match="field 'doc_count'"):
        write_parquet(vocabulary().drop_columns(["doc_count"]), uri, VOCABULARY)
    assert list(tmp_path.iterdir()) == []


def test_open_atomic_local_failure_leaves_nothing(tmp_path):
    uri = str(tmp_path / "part-0.bin")
    with pytest.raises(RuntimeError, match="disk on fire"):
        with open_atomic(uri) as f:
            f.write(b"half a file")
            raise RuntimeError("disk on fire")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_parquet_round_trip_s3_with_either_option_style(s3_bucket):
    bucket, fs_options, delta_options = s3_bucket
    table = pa.table({"doc_id": ["d1", "d2"], "token_ids": pa.array([[0, 2, 0], []], pa.list_(pa.int32()))})
    write_parquet(table, f"s3://{bucket}/stats/tokens-0.parquet", TOKENS, fs_options)
    back = read_parquet(f"s3://{bucket}/stats/tokens-0.parquet", TOKENS, delta_options)  # object_store style
    assert back.column("token_ids").to_pylist() == [[0, 2, 0], []]
    assert back.schema == TOKENS


@pytest.mark.slow
def test_open_atomic_s3_failure_leaves_no_object(s3_bucket):
    bucket, fs_options, _ = s3_bucket
    options = {**fs_options, "default_block_size": 5 * 2**20}  # S3's smallest part, so 6 MiB starts a multipart upload
    fs, _ = filesystem(f"s3://{bucket}", options)
    with pytest.raises(RuntimeError, match="interrupted"):
        with open_atomic(f"s3://{bucket}/big.bin", options) as f:
            f.write(b"x" * (6 * 2**20))
            f.flush()
            assert f.mpu is not None  # one part is already uploaded
            raise RuntimeError("interrupted")
    fs.invalidate_cache()
    assert fs.ls(bucket) == []
    assert fs.list_multipart_uploads(bucket) == []  # aborted, not left pending


@pytest.mark.slow
def test_pyarrow_filesystem_reads_what_fsspec_wrote(s3_bucket, tmp_path):
    bucket, _, delta_options = s3_bucket
    fs, path = filesystem(f"s3://{bucket}/a/b.txt", delta_options)
    fs.pipe(path, b"hello")
    pa_fs, pa_path = pyarrow_filesystem(f"s3://{bucket}/a/b.txt", delta_options)
    assert pa_path == f"{bucket}/a/b.txt"
    with pa_fs.open_input_stream(pa_path) as f:
        assert f.read() == b"hello"
    local_fs, local_path = pyarrow_filesystem(str(tmp_path / "c"))
    assert isinstance(local_fs, pafs.LocalFileSystem) and local_path == str(tmp_path / "c")


def test_embedding_check_refuses_a_wrong_dimension():
    vectors = pa.FixedSizeListArray.from_arrays(pa.array(np.zeros(6, np.float32)), 2)
    table = pa.table({"token": ["a", "b", "c"], "id": pa.array([0, 1, 2], pa.int32()),
                      "count": pa.array([3, 2, 1], pa.int64()), "vector": vectors})
    assert check(table, embedding_schema(2)).num_rows == 3
    with pytest.raises(SchemaError, match=r"field 'vector': type fixed_size_list<item: float>\[2\], expected"):
        check(table, embedding_schema(3))
