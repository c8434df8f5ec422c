"""Publisher processes for the concurrency and kill tests, and the check that a table's every
version is exactly one publish (tests/schemas/publisher_process.py is the process)."""
from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

from firth.schemas.fs import filesystem
from firth.schemas.store import TableStore
from tests.helpers.tables import vectors_of, word_table

PUBLISHER = str(Path(__file__).resolve().parents[1] / "schemas" / "publisher_process.py")


def start_publisher(store: TableStore, mode: str, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, PUBLISHER, store.uri, json.dumps(store.storage_options), mode, *args],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@contextlib.contextmanager
def serving_publishers(store: TableStore, count: int) -> Iterator[list[subprocess.Popen]]:
    """`count` publisher processes in "serve" mode, each imported and waiting for its line."""
    processes = [start_publisher(store, "serve") for _ in range(count)]
    try:
        for process in processes:
            assert process.stdout.readline().strip() == "ready", process.stderr.read()
        yield processes
    finally:
        for process in processes:
            process.stdin.close()
        for process in processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def race(processes: list[subprocess.Popen], name: str, rows_by_seed: dict[int, int]) -> dict[int, dict]:
    """Each process publishes one seed's table to `name`, all released at once; seed -> its result."""
    assert len(processes) == len(rows_by_seed)
    for process, (seed, rows) in zip(processes, rows_by_seed.items()):
        process.stdin.write(f"{name} {seed} {rows}\n")
    for process in processes:  # the lines went into the pipes above; flushing releases them together
        process.stdin.flush()
    return {seed: json.loads(process.stdout.readline()) for process, seed in zip(processes, rows_by_seed)}


def one_publish_per_version(store: TableStore, name: str, rows_by_seed: dict[int, int]) -> dict[int, int]:
    """Assert every version of `name` is exactly one publish of word_table(rows, 8, seed) (metadata
    {"seed": seed}), read through TableStore.read, whose checks must pass; return version -> seed."""
    seeds = {}
    for info in store.versions(name):
        seed = info.metadata["seed"]
        table = store.read(name, info.version)
        assert info.rows == table.num_rows == rows_by_seed[seed], (info.version, info.rows, table.num_rows)
        assert table["token"].to_pylist() == [f"w{i}" for i in range(rows_by_seed[seed])]
        assert vectors_of(table).tobytes() == vectors_of(word_table(rows_by_seed[seed], 8, seed)).tobytes()
        seeds[info.version] = seed
    return seeds


def stored_files(store: TableStore, name: str) -> tuple[set[str], set[str]]:
    """(data file names in the table folder, artifact folder names under _artifacts/)."""
    fs, root = filesystem(store.table_uri(name), store.storage_options)
    fs.invalidate_cache()
    data = {p.rsplit("/", 1)[-1] for p in fs.ls(root, detail=False) if p.endswith(".parquet")}
    artifacts = {p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(f"{root}/_artifacts", detail=False)} \
        if fs.exists(f"{root}/_artifacts") else set()
    return data, artifacts


def named_files(store: TableStore, name: str) -> tuple[set[str], set[str]]:
    """(data file names, artifact folder names) that the table's versions name."""
    versions = store.versions(name)
    data = {uri.rsplit("/", 1)[-1] for v in versions for uri in store.files(name, v.version)}
    return data, {v.publish_id for v in versions if v.artifacts}
