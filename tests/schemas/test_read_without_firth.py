"""The recipes of examples/read_without_firth.py (Polars, pandas, DuckDB; Spark in
benchmarks/spark_interop.py) read a published table at an alias, a version and the latest exactly as
firth's consumer does, import nothing of firth, and avoid the double count a glob over the table
folder makes."""
from __future__ import annotations

import ast
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from firth.schemas.aliases import alias_uri, move_alias
from firth.schemas.consumer import open_embeddings
from tests.helpers import ROOT
from tests.helpers.tables import word_table

RECIPES = ROOT / "examples" / "read_without_firth.py"
_spec = importlib.util.spec_from_file_location("read_without_firth", RECIPES)
recipes = sys.modules.setdefault("read_without_firth", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(recipes)  # registered first: its dataclass looks its module up
ROWS = (40, 25, 60)  # rows of versions 0, 1, 2


def publish_three(store):
    for version, rows in enumerate(ROWS):
        store.publish("t", word_table(rows, 8, seed=version))
    move_alias(store, "t", "production", 1)


@pytest.fixture
def store(local_store):
    publish_three(local_store)
    return local_store


def assert_same_as_firth(store, ref, tokens, matrix):
    expected = open_embeddings(store.uri, ref, store.storage_options)
    assert matrix.dtype == np.float32 and matrix.shape == (len(expected), expected.dim)
    assert tokens == expected.tokens
    assert matrix.tobytes() == expected.vectors.tobytes()


@pytest.mark.parametrize("ref, version", [("t@production", 1), ("t@0", 0), ("t", 2), ("t@latest", 2)])
@pytest.mark.parametrize("engine", ["polars", "pandas", "duckdb"])
def test_each_recipe_reads_what_firth_reads(store, ref, version, engine):
    found = recipes.resolve(store.uri, ref)
    assert (found.version, found.dim, found.rows) == (version, 8, ROWS[version])
    assert found.files == store.files("t", version)
    read = {"polars": recipes.with_polars, "pandas": recipes.with_pandas}.get(engine)
    tokens, matrix = read(found) if read else recipes.with_duckdb(found)
    assert_same_as_firth(store, ref, tokens, matrix)


def test_polars_frame_holds_fixed_size_float32_arrays(store):
    import polars as pl

    frame = recipes.polars_frame(recipes.resolve(store.uri, "t@production"))
    assert frame.schema["vector"] == pl.Array(pl.Float32, 8) and frame.height == 25
    assert frame["vector"].to_numpy().shape == (25, 8)  # 2-D, not an object array of lists


def test_a_glob_over_the_table_folder_counts_every_kept_version(store):
    import duckdb

    glob = f"{store.table_uri('t')}/*.parquet"
    (naive,), = duckdb.sql(f"SELECT count(*) FROM read_parquet('{glob}')").fetchall()
    assert naive == sum(ROWS) == 125  # the trap: every version's files are in the folder
    found = recipes.resolve(store.uri, "t@production")
    (exact,), = duckdb.sql(f"SELECT count(*) FROM read_parquet({found.files!r})").fetchall()
    assert exact == found.rows == 25
    globbed = recipes.TableVersion(found.table_uri, found.version, found.dim, found.rows, [glob])
    with pytest.raises(ValueError, match=r"read 125 rows, its commit says 25; read exactly the version's files"):
        recipes.with_duckdb(globbed)


def test_format_1_alias_files_resolve_and_newer_formats_are_refused(store):
    path = Path(alias_uri(store, "t", "production"))
    record = json.loads(path.read_text())
    record.pop("format")
    path.write_text(json.dumps(record, indent=1))  # as firth wrote aliases before format 2
    assert recipes.resolve(store.uri, "t@production").version == 1
    path.write_text(json.dumps({**record, "format": 3}))
    with pytest.raises(ValueError, match="production.json has format 3; this recipe reads formats 1 and 2"):
        recipes.resolve(store.uri, "t@production")


def test_the_recipes_import_nothing_of_firth():
    tree = ast.parse(RECIPES.read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
    assert imported and not any(name.split(".")[0] in {"firth", "tests"} for name in imported), imported


@pytest.mark.slow
def test_polars_recipe_reads_an_alias_on_s3(s3_store):
    publish_three(s3_store)
    found = recipes.resolve(s3_store.uri, "t@production", s3_store.storage_options)
    assert (found.version, found.dim, found.rows) == (1, 8, 25)
    assert_same_as_firth(s3_store, "t@production", *recipes.with_polars(found, s3_store.storage_options))
    assert_same_as_firth(s3_store, "t@production", *recipes.with_pandas(found, s3_store.storage_options))
