"""How one publish becomes exactly one table version, under any number of concurrent publishers.

1. The publish writes its own data files, `part-<publish id>-<n>.parquet`, in the table folder.
   Nothing references them yet: a failure or a kill here leaves orphans, which gc removes after
   its grace period (schemas/retention.py).
2. It commits one Delta transaction built on the version it read: *add* its files and *remove*
   every file of that version (for a new table: create it with its files). The commit is made with
   `max_commit_retries=0`, so Delta writes it as version read + 1 with a conditional put (local:
   an atomic rename that refuses to replace; S3: If-None-Match) or not at all. deltalake never
   rebases it onto a newer version: its own retry of an overwrite once committed a table-creating
   publish that lost the race on top of the winner, without removing the winner's files.
3. A commit that loses the race changes nothing; the publish reads the new latest version and
   commits the same files again, with a short random back-off, up to COMMIT_ATTEMPTS times. Every
   retry is a whole, fresh transaction, so the version it makes holds its rows and nothing else.
4. Before declaring success it loads the version it committed: its data files must be exactly the
   publish's own.

A publish that certainly committed nothing (it lost every race, or the table is of another kind)
removes its own data files and raises NothingCommitted; after an error whose outcome is unknown
its files stay for gc, which removes them only if no commit names them. The row count goes into
the commit (`firth.rows`), where every reader checks it (firth.schemas.delta_format.verify_version).
"""
from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.parquet as pq
from deltalake import CommitProperties, DeltaTable
from deltalake import Schema as DeltaSchema
from deltalake.exceptions import CommitFailedError, DeltaError, TableNotFoundError
from deltalake.transaction import AddAction, RemoveAction, create_table_with_add_actions

from firth.schemas.delta_format import CheckedBatches
from firth.schemas.errors import StoreError, UnsafePathError
from firth.schemas.fs import pyarrow_filesystem
from firth.schemas.paths import inside

COMMIT_ATTEMPTS = 10
READ_VERSION_KEY, ROWS_KEY, ATTEMPT_KEY = "firth.read_version", "firth.rows", "firth.attempt"
PUBLISH_ID_KEY = "firth.publish_id"  # names the publish's data files and artifacts folder
_ROW_GROUP_BYTES = 64 << 20  # Arrow bytes buffered per Parquet row group
_ROW_GROUPS_PER_FILE = 8  # so a data file holds about 512 MiB of Arrow data
# Keep the commit log (and so time travel to every version) for a century instead of Delta's
# 30-day default, after which a checkpoint would clean old commits away.
TABLE_CONFIGURATION = {"delta.logRetentionDuration": "interval 36500 days"}


class NothingCommitted(StoreError):
    """The publish certainly made no version (it lost every race, or the table is of another kind)."""


@dataclass
class DataFiles:
    """The Parquet files one publish wrote, not yet named by any commit."""

    adds: list[AddAction]
    rows: int


def write_data_files(uri: str, storage_options: Mapping[str, str], publish_id: str,
                     source: CheckedBatches) -> DataFiles:
    """Stream `source` into `part-<publish_id>-<n>.parquet` files under the table folder `uri`.

    A bad batch raises before any commit; the files written so far are then removed."""
    fs, root = pyarrow_filesystem(uri, storage_options)
    fs.create_dir(root, recursive=True)  # local folders; a no-op on object stores
    files = DataFiles([], 0)
    pending: list[pa.RecordBatch] = []
    writer, name, groups, rows = None, "", 0, 0

    def flush(close: bool) -> None:
        nonlocal writer, name, groups, rows
        if pending:
            if writer is None:
                name = f"part-{publish_id}-{len(files.adds):05d}.parquet"
                writer = pq.ParquetWriter(f"{root}/{name}", source.delta_schema, filesystem=fs)
            chunk = pa.Table.from_batches(pending, source.delta_schema)
            writer.write_table(chunk, row_group_size=chunk.num_rows)
            rows, groups = rows + chunk.num_rows, groups + 1
            pending.clear()
        if writer is not None and (close or groups >= _ROW_GROUPS_PER_FILE):
            writer.close()
            size = fs.get_file_info(f"{root}/{name}").size
            stats = json.dumps({"numRecords": rows})
            files.adds.append(AddAction(name, size, {}, int(time.time() * 1000), True, stats))
            files.rows += rows
            writer, groups, rows = None, 0, 0

    try:
        buffered = 0
        for batch in source.reader():
            pending.append(batch)
            buffered += batch.nbytes
            if buffered >= _ROW_GROUP_BYTES:
                flush(close=False)
                buffered = 0
        flush(close=True)
    except BaseException:
        if writer is not None:
            writer.close()
        remove_data_files(uri, storage_options, [a.path for a in files.adds] + ([name] if name else []))
        raise
    return files


def remove_data_files(uri: str, storage_options: Mapping[str, str], names: list[str]) -> None:
    """Delete data files of a publish that committed nothing (best effort: gc sweeps what stays)."""
    fs, root = pyarrow_filesystem(uri, storage_options)
    for name in names:
        try:
            fs.delete_file(f"{root}/{name}")
        except (FileNotFoundError, OSError):
            pass


def commit_files(name: str, uri: str, storage_options: Mapping[str, str], schema: pa.Schema, files: DataFiles,
           custom_metadata: Mapping[str, str], committed_version: Callable[[], int | None]) -> int:
    """Commit `files` as the next version of the table at `uri` (created if need be); return it.

    `committed_version()` finds this publish's commit by its publish id (after an error whose
    outcome is unknown, e.g. a lost response to a put that landed)."""
    options = dict(storage_options) or None
    delta_schema = DeltaSchema.from_arrow(schema)
    read_version, lost = None, None
    for attempt in range(1, COMMIT_ATTEMPTS + 1):
        metadata = {**custom_metadata, ROWS_KEY: str(files.rows), ATTEMPT_KEY: str(attempt)}
        try:
            try:
                table = DeltaTable(uri, storage_options=options)
            except TableNotFoundError:
                read_version = None
                create_table_with_add_actions(
                    uri, delta_schema, files.adds, mode="error", configuration=TABLE_CONFIGURATION,
                    storage_options=options,
                    commit_properties=CommitProperties(custom_metadata=metadata, max_commit_retries=0))
            else:
                read_version = table.version()
                _check_same_columns(name, uri, table, schema)
                actions = [*files.adds, *_remove_all(name, uri, table)]
                table.create_write_transaction(actions, "append", delta_schema, commit_properties=CommitProperties(
                    custom_metadata={**metadata, READ_VERSION_KEY: str(read_version)}, max_commit_retries=0))
        except NothingCommitted:
            remove_data_files(uri, storage_options, [a.path for a in files.adds])
            raise
        except Exception as e:
            version = committed_version()
            if version is not None:  # the commit landed, though the call reported otherwise
                return version
            if not _lost_commit_race(e):
                raise StoreError(f"publish {name!r} to {uri} failed ({_attempted(read_version)}); no version was "
                                 f"committed, and its data files stay until `firth tables gc` removes them: {e}") from e
            lost = e
            time.sleep(random.uniform(0, min(2.0, 0.05 * 2 ** attempt)))  # let the winners' commits land
            continue
        version = 0 if read_version is None else read_version + 1
        _check_commit(name, uri, storage_options, version, files.adds)
        return version
    remove_data_files(uri, storage_options, [a.path for a in files.adds])
    raise NothingCommitted(
        f"publish {name!r} to {uri}: lost the commit race {COMMIT_ATTEMPTS} times in a row - each time another "
        f"publisher committed first (last: {_attempted(read_version)}; Delta said: {lost}). Nothing was "
        "published and this publish's data files were removed; publish again")


def _attempted(read_version: int | None) -> str:
    if read_version is None:
        return "creating the table as version 0"
    return f"committing version {read_version + 1} on top of version {read_version}, which it read"


def _remove_all(name: str, uri: str, table: DeltaTable) -> list[RemoveAction]:
    """Remove actions for every data file of the version `table` has loaded, each checked to lie in
    the table folder (a tampered log could name others: never build on such a version)."""
    files = pa.table(table.get_add_actions(flatten=True))  # arro3 -> pyarrow via the Arrow C interface
    now = int(time.time() * 1000)
    try:
        paths = [inside(uri, path, f"version {table.version()}: data file", encoded=True)
                 for path in files.column("path").to_pylist()]
    except UnsafePathError as e:
        raise NothingCommitted(f"publish {name!r} to {uri}: the latest version is not firth's to replace: {e}. "
                               "Nothing was published") from None
    # RemoveAction takes the path decoded (get_add_actions gives it percent-encoded) and encodes it itself
    return [RemoveAction(path[len(uri) + 1:], True, now, size)
            for path, size in zip(paths, files.column("size_bytes").to_pylist())]


def _check_commit(name: str, uri: str, storage_options: Mapping[str, str], version: int, adds: list[AddAction]) -> None:
    """The committed version's data files must be exactly this publish's, or it is not declared a success."""
    table = DeltaTable(uri, storage_options=dict(storage_options) or None, version=version)
    files = sorted(unquote(p) for p in pa.table(table.get_add_actions(flatten=True)).column("path").to_pylist())
    if files != sorted(a.path for a in adds):
        raise StoreError(f"publish {name!r} to {uri}: version {version} was committed, but it holds the data files "
                         f"{files}, not exactly this publish's {sorted(a.path for a in adds)}; readers refuse it if "
                         "its rows are not one publish's - report this")


def _check_same_columns(name: str, uri: str, table: DeltaTable, schema: pa.Schema) -> None:
    """A word table cannot become a document table (and back) under the same name."""
    stored = pa.schema(table.schema().to_arrow()).names
    if stored != schema.names:
        raise NothingCommitted(f"publish {name!r} to {uri}: the table has columns {stored}, this publish has "
                               f"{schema.names}; a table keeps its kind (word or document table) - publish under "
                               "another name. Nothing was published")


def _lost_commit_race(error: Exception) -> bool:
    """Delta refused the commit because another writer committed that version (or created the table) first."""
    return isinstance(error, CommitFailedError) or (isinstance(error, DeltaError)
                                                     and "already exists" in str(error).lower())
