"""Read a firth word table at NAME, NAME@VERSION or NAME@ALIAS without firth: the recipes.

    python examples/read_without_firth.py ./firth-store python-docs-glove@production

needs only `deltalake` and `polars` (and numpy for `.to_numpy()`); the other recipes import
pandas, DuckDB or PySpark when called. tests/schemas/test_read_without_firth.py runs each recipe
on a published table against firth's own reader, so these functions are the documentation
(schemas/README.md, "Reading without firth"). Three rules:

1. An alias is the file `<store>/tables/<name>/_aliases/<alias>.json`; its `version` is the Delta
   version it names (`format` 2 files are one JSON line; format 1 files, indented, read the same).
2. Read exactly that version: Delta time travel (`pl.read_delta(..., version=)`,
   `DeltaTable(..., version=)`), or, for a Parquet reader, exactly the files
   `DeltaTable(uri, version=v).file_uris()` lists. Never glob the table folder: it holds the files
   of every version still kept, so a glob counts each version's rows once more.
3. `vector` is stored as `list<float32>`: the Delta protocol has no fixed-size array type. Its
   length is the version's commit metadata `firth.dim`; cast it to a fixed-size array of that
   length (`pl.Array(pl.Float32, dim)`, DuckDB `FLOAT[dim]`) to get a (rows, dim) float32 matrix.
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

from deltalake import DeltaTable


@dataclass(frozen=True)
class TableVersion:
    table_uri: str  # <store>/tables/<name>
    version: int  # the Delta version
    dim: int  # vector length: commit metadata firth.dim
    rows: int  # rows of the version: commit metadata firth.rows
    files: list[str]  # exactly this version's Parquet data files


def resolve(store_uri: str, ref: str, storage_options: dict[str, str] | None = None) -> TableVersion:
    """NAME (latest), NAME@VERSION, NAME@latest or NAME@ALIAS -> the version, its dim, rows and files.
    `storage_options` as for deltalake (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...)."""
    name, _, at = ref.partition("@")
    table_uri = f"{store_uri.rstrip('/')}/tables/{name}"
    if at and at != "latest" and not at.isdigit():
        alias = read_json_lines(f"{table_uri}/_aliases/{at}.json", storage_options)[0]
        if alias.get("format", 1) > 2:
            raise ValueError(f"{table_uri}/_aliases/{at}.json has format {alias['format']}; this recipe reads "
                             "formats 1 and 2 - take the newer recipe from firth's examples/")
        at = str(alias["version"])
    table = DeltaTable(table_uri, version=int(at) if at.isdigit() else None, storage_options=storage_options)
    log = f"{table_uri}/_delta_log/{table.version():020d}.json"  # the commit: one JSON action per line
    commit = next(line["commitInfo"] for line in read_json_lines(log, storage_options) if line.get("commitInfo"))
    return TableVersion(table_uri, table.version(), int(commit["firth.dim"]), int(commit["firth.rows"]),
                        table.file_uris())


def read_json_lines(uri: str, storage_options: dict[str, str] | None = None) -> list[dict]:
    """The JSON objects of a small file, local or on an object store (there read by Polars, which
    takes the same storage options as deltalake)."""
    if "://" not in uri or uri.startswith("file://"):
        text = Path(uri.removeprefix("file://")).read_text()
        try:
            return [json.loads(text)]  # one object, on one line or indented (a format 1 alias)
        except json.JSONDecodeError:
            return [json.loads(line) for line in text.splitlines() if line.strip()]
    import polars as pl

    return pl.read_ndjson(uri, storage_options=storage_options).to_dicts()


def polars_frame(version: TableVersion, storage_options: dict[str, str] | None = None):
    """token, id, count, vector as pl.Array(pl.Float32, dim), rows by id. Needs no numpy."""
    import polars as pl

    frame = pl.read_delta(version.table_uri, version=version.version, storage_options=storage_options)
    frame = frame.sort("id").with_columns(pl.col("vector").cast(pl.Array(pl.Float32, version.dim)))
    return _checked(version, frame, frame.height)


def with_polars(version: TableVersion, storage_options: dict[str, str] | None = None):
    """(tokens, (rows, dim) float32 matrix) through Polars."""
    frame = polars_frame(version, storage_options)
    return frame["token"].to_list(), frame["vector"].to_numpy()


def with_pandas(version: TableVersion, storage_options: dict[str, str] | None = None):
    """(tokens, matrix) through deltalake's pandas reader; pandas holds each vector as an array."""
    import numpy as np

    frame = DeltaTable(version.table_uri, version=version.version, storage_options=storage_options).to_pandas()
    frame = _checked(version, frame.sort_values("id"), len(frame))
    return frame["token"].tolist(), np.stack(frame["vector"].to_numpy()).astype(np.float32, copy=False)


def with_duckdb(version: TableVersion):
    """(tokens, matrix) through DuckDB's read_parquet over exactly the version's files (DuckDB's
    delta extension downloads itself on first use; this needs no extension for local files, and
    httpfs for s3://)."""
    import duckdb
    import numpy as np

    columns = duckdb.sql(f"SELECT token, vector::FLOAT[{version.dim}] AS vector "
                         f"FROM read_parquet({version.files!r}) ORDER BY id").fetchnumpy()
    _checked(version, None, len(columns["token"]))
    return list(columns["token"]), np.stack(columns["vector"]).astype(np.float32, copy=False)


def with_spark(version: TableVersion, spark):
    """(tokens, matrix) through PySpark over exactly the version's files (`format("delta")` needs the
    Delta Lake jars; on S3 the files are s3a:// with hadoop-aws). Spark has no fixed-size array
    type either: `vector` is array<float>."""
    import numpy as np

    frame = spark.read.parquet(*version.files).orderBy("id").select("token", "vector").toPandas()
    _checked(version, None, len(frame))
    return frame["token"].tolist(), np.stack(frame["vector"].to_numpy()).astype(np.float32, copy=False)


def _checked(version: TableVersion, frame, rows: int):
    if rows != version.rows:
        raise ValueError(f"{version.table_uri}@{version.version}: read {rows} rows, its commit says {version.rows}; "
                         "read exactly the version's files (DeltaTable(uri, version=v).file_uris()), not a glob")
    return frame


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: python read_without_firth.py STORE NAME[@VERSION|@ALIAS]")
    found = resolve(sys.argv[1], sys.argv[2])
    vectors = polars_frame(found)["vector"]
    print(json.dumps({"version": found.version, "rows": vectors.len(), "dim": vectors.dtype.size,
                      "dtype": str(vectors.dtype.inner), "first": vectors[0].to_list()}))
