"""Spark reads a firth table at an alias without firth: PySpark (local[1], offline) over exactly the
version's Parquet files, as examples/read_without_firth.py's `with_spark` does, compared value for
value with deltalake's read of the same version; and the glob over the table folder that counts
every kept version (the trap the recipe avoids).

    .venv/bin/pip install pyspark          # not in requirements.lock; Java 17 at /usr/bin/java
    .venv/bin/python benchmarks/spark_interop.py                                   # a table it publishes
    .venv/bin/python benchmarks/spark_interop.py --store ./firth-store --ref python-docs-glove@production

Without --store it publishes three versions of a random word table (8,396 rows x 100, as the sample
job's table) to a temporary store and points `production` at version 0. `format("delta")` is not
used: it needs the Delta Lake jars, which Spark would download. Figures go to
benchmarks/results/spark_interop.json.
"""
from __future__ import annotations

import argparse
import importlib.util
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run from anywhere, as a script

import numpy as np
import pyarrow as pa
from deltalake import DeltaTable

from benchmarks.results import save

_spec = importlib.util.spec_from_file_location("read_without_firth", ROOT / "examples" / "read_without_firth.py")
recipes = sys.modules.setdefault("read_without_firth", importlib.util.module_from_spec(_spec))
_spec.loader.exec_module(recipes)


def publish_sample(folder: str) -> tuple[str, str]:
    """Three versions of a random word table (rows 8,396, 8,000, 9,000; dim 100); production -> 0."""
    from firth.schemas.aliases import move_alias
    from firth.schemas.store import TableStore

    store = TableStore(folder)
    for seed, rows in enumerate((8_396, 8_000, 9_000)):
        vectors = np.random.default_rng(seed).standard_normal((rows, 100)).astype(np.float32)  # (rows, 100)
        store.publish("sample", pa.table({
            "token": [f"w{i}" for i in range(rows)], "id": pa.array(range(rows), pa.int32()),
            "count": pa.array(np.arange(rows, 0, -1), pa.int64()),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), 100)}))
    move_alias(store, "sample", "production", 0)
    return store.uri, "sample@production"


def spark_session():
    from pyspark.sql import SparkSession

    return (SparkSession.builder.master("local[1]").appName("firth-spark-interop")
            .config("spark.driver.host", "127.0.0.1").config("spark.driver.bindAddress", "127.0.0.1")
            .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "1")
            .config("spark.sql.execution.arrow.pyspark.enabled", "true").getOrCreate())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--store", help="a firth store (default: publish a sample table to a temporary one)")
    parser.add_argument("--ref", default="python-docs-glove@production")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        store_uri, ref = (args.store, args.ref) if args.store else publish_sample(folder)
        found = recipes.resolve(store_uri, ref)
        delta = DeltaTable(found.table_uri, version=found.version).to_pyarrow_table().sort_by("id")
        expected = np.stack(delta.column("vector").to_numpy(zero_copy_only=False)).astype(np.float32)

        import pyspark

        start = time.perf_counter()
        spark = spark_session()
        try:
            started_s = time.perf_counter() - start
            start = time.perf_counter()
            tokens, matrix = recipes.with_spark(found, spark)
            read_s = time.perf_counter() - start
            glob_rows = spark.read.parquet(f"{found.table_uri}/*.parquet").count()
            versions_kept = DeltaTable(found.table_uri).version() + 1
        finally:
            spark.stop()
        same = tokens == delta.column("token").to_pylist() and matrix.tobytes() == expected.tobytes()
        figures = {"ref": ref, "version": found.version, "rows": found.rows, "dim": found.dim,
                   "spark_shape": list(matrix.shape), "spark_dtype": str(matrix.dtype),
                   "identical_to_deltalake": same, "naive_glob_rows": glob_rows, "versions_in_folder": versions_kept,
                   "pyspark": pyspark.__version__, "spark_start_s": round(started_s, 1), "spark_read_s": round(read_s, 1)}
    print(figures)
    save("spark_interop", figures)
    if not same:
        sys.exit("Spark's read differs from deltalake's")


if __name__ == "__main__":
    main()
