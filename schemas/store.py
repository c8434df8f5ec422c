"""The versioned table store: each embedding table is a Delta table at `<store>/tables/<name>`.

Every publish is one Delta commit that adds the publish's own data files and removes all of the
version it read (schemas/commit.py), so a table's versions are Delta versions, each holding
exactly one publish, and any older one can be read back (time travel). The commit is the only
step that makes data visible: a publish that fails anywhere before it leaves at most orphaned data
files, which no version references (gc removes them). The caller's metadata (the job config, run
figures) travels as JSON in the commit's custom metadata under the key "firth". Every read checks
that a version holds the row count its commit recorded and unique keys.

Delta has no fixed-size list type: `vector` is stored as list<float32> and read back as
fixed_size_list<float32>[dim] after checking every row's length.

A table is a word table (firth.schemas.tables.embedding_schema) or a document table
(document_embedding_schema), told apart by its columns. Files that belong with a version (a
fastText n-gram matrix, an encoder's model and tokenizer) are its *artifacts*: written under
`<table>/_artifacts/<publish id>/` before the commit and named in the commit, so they become
visible with the version and never without it. Delta ignores folders that start with "_".

Beside the data, a table keeps its aliases (`_aliases/`, schemas/aliases.py) and a record of the
versions whose files `firth tables gc` removed (`_collected.json`, schemas/retention.py). Table
layout and column types are documented in schemas/README.md.
"""
from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.fs as pafs
from deltalake import DeltaTable
from deltalake.exceptions import DeltaError, TableNotFoundError

from firth.schemas import refs
from firth.schemas.aliases import alias_target  # aliases and the gc record are files beside the Delta log
from firth.schemas.commit import PUBLISH_ID_KEY, ROWS_KEY, NothingCommitted, commit_files, write_data_files
from firth.schemas.delta_format import (
    CheckedBatches,
    dim_of,
    from_delta,
    key_columns,
    validate_embeddings,
    verify_version,
)
from firth.schemas.errors import CollectedError, NotFoundError, StoreError, UnsafePathError
from firth.schemas.fs import (bounded_options, filesystem, is_object_store_style, join, normalize_uri,
                             pyarrow_filesystem)
from firth.schemas.paths import SEGMENT, artifact_folder, inside
from firth.schemas.retention import read_collected
from firth.schemas.tables import check, published_schema

NAME_PATTERN = refs.NAME_PATTERN
METADATA_KEY = "firth"  # commit custom metadata: the caller's metadata as JSON
_DIM_KEY, _ARTIFACTS_KEY = "firth.dim", "firth.artifacts"
_PARENT_KEY = "firth.parent"  # "name@version" this version was trained from (continued training)


@dataclass(frozen=True)
class VersionInfo:
    version: int
    timestamp: datetime  # commit time, UTC
    metadata: dict = field(default_factory=dict)  # what the publisher passed
    dim: int | None = None  # None for commits not made by TableStore.publish
    rows: int | None = None
    artifacts: dict[str, str] = field(default_factory=dict)  # artifact name -> path under the table URI
    parent: str | None = None  # "name@version" it was trained from, when the publisher said so
    publish_id: str | None = None  # names its artifacts folder, _artifacts/<publish_id>/


validate_name = refs.validate_name


def parse_ref(ref: str) -> tuple[str, int | None]:
    """'name@3' -> ('name', 3); 'name' -> ('name', None) meaning the latest version.

    Only plain version refs: `TableStore.resolve` also serves NAME@ALIAS and NAME@TIMESTAMP."""
    parsed = refs.parse(ref)
    if parsed.alias is not None or parsed.timestamp is not None:
        raise StoreError(f"table reference {ref!r} names an alias or a time; resolve it against a store "
                         "with TableStore(uri).resolve(ref), which returns (name, version)")
    return parsed.name, parsed.version


class TableStore:
    """Embedding tables under one URI (local directory or s3://bucket/prefix).

    `storage_options` are deltalake/object_store-style (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...);
    listing and reading data files use the same options translated for fsspec (firth.schemas.fs).
    """

    def __init__(self, uri: str, storage_options: Mapping[str, str] | None = None):
        options = dict(storage_options or {})
        if options and not is_object_store_style(options):
            raise StoreError(f"store {uri}: storage_options must be deltalake/object_store-style "
                             f"(AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, ...), got {sorted(options)}")
        self.uri = normalize_uri(uri)
        self.storage_options = bounded_options(self.uri, options)  # S3: every request has a timeout and retry limit

    def __repr__(self) -> str:
        return f"TableStore({self.uri!r})"

    def table_uri(self, name: str) -> str:
        return join(self.uri, "tables", validate_name(name))

    # --- writing -------------------------------------------------------------------------------

    def publish(self, name: str, table: pa.Table | pa.RecordBatchReader, metadata: Mapping[str, Any] | None = None,
                artifacts: Mapping[str, bytes | str | os.PathLike] | None = None, *,
                parent: int | str | None = None) -> int:
        """Write `table` (a word or document table) as the next version of `name`; return that version.

        A RecordBatchReader is streamed batch by batch (each batch checked as it passes); a bad
        batch or a reader that raises aborts the write before the commit, so no version appears.
        `artifacts` maps a name ("subwords.parquet", "model") to bytes or a local file or folder,
        copied beside the table before the commit (see the module docstring).
        `parent` (continued training): the version it started from, a version of `name` or any ref
        ('other@3', 'other@production'); recorded resolved, as 'name@version', in VersionInfo.parent.

        Any number of publishers at once (processes, machines): each version holds exactly one
        publish. The data files are written once; a commit that loses the race to another publisher
        is made again on top of the new version, up to 10 times, and then raises StoreError with
        nothing published (schemas/commit.py). Table and RecordBatchReader publishes alike.
        """
        uri = self.table_uri(name)
        try:
            metadata_json = json.dumps(dict(metadata or {}), sort_keys=True, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise StoreError(f"publish {name!r}: metadata is not JSON-serialisable ({e}); pass plain "
                             "dicts/lists/str/numbers, e.g. JobConfig.model_dump(mode='json')") from None
        if not isinstance(table, (pa.Table, pa.RecordBatchReader)):
            raise TypeError(f"publish {name!r}: expected a pyarrow Table or RecordBatchReader, "
                            f"got {type(table).__name__}")
        dim = dim_of(table.schema, name)
        if isinstance(table, pa.Table):
            table = validate_embeddings(check(table, published_schema(table.column_names, dim), name), name)
            if table.num_rows == 0:
                raise StoreError(f"publish {name!r}: the table has no rows; nothing to publish")
        if artifacts is not None and not isinstance(artifacts, Mapping):
            raise TypeError(f"publish {name!r}: artifacts must map names to bytes or local paths")
        parent_ref = None if parent is None else self._parent_ref(name, parent)

        publish_id = uuid.uuid4().hex
        source = (CheckedBatches(table.to_reader(), name, dim, checked=True) if isinstance(table, pa.Table)
                  else CheckedBatches(table, name, dim, checked=False))
        written = self._write_artifacts(name, publish_id, artifacts or {})
        custom_metadata = {METADATA_KEY: metadata_json, _DIM_KEY: str(dim), PUBLISH_ID_KEY: publish_id,
                           _ARTIFACTS_KEY: json.dumps(written, sort_keys=True)}
        if parent_ref is not None:
            custom_metadata[_PARENT_KEY] = parent_ref
        files = None
        try:
            files = write_data_files(uri, self.storage_options, publish_id, source)
            return commit_files(name, uri, self.storage_options, source.delta_schema, files, custom_metadata,
                          lambda: self._find_publish(name, publish_id))
        except BaseException as e:
            if written and (files is None or isinstance(e, NothingCommitted)):  # certainly named by no commit
                fs, folder = filesystem(artifact_folder(uri, publish_id, f"publish {name!r}"), self.storage_options)
                fs.rm(folder, recursive=True)
            raise

    def _parent_ref(self, name: str, parent: int | str) -> str:
        """`parent` as 'table@version', checked to exist."""
        if isinstance(parent, bool) or not isinstance(parent, (int, str)):
            raise StoreError(f"publish {name!r}: parent must be a version number or a table reference, "
                             f"got {parent!r}")
        ref = f"{name}@{parent}" if isinstance(parent, int) else parent
        try:
            parent_name, version = self.resolve(ref)
        except NotFoundError as e:
            raise NotFoundError(f"publish {name!r}: parent {parent!r} does not exist: {e}") from None
        return f"{parent_name}@{version}"

    def _write_artifacts(self, name: str, publish_id: str, artifacts: Mapping[str, Any]) -> dict[str, str]:
        """Copy each artifact to <table>/_artifacts/<publish_id>/<artifact name>; return name -> relative path."""
        written = {}
        for artifact, content in artifacts.items():
            if not isinstance(artifact, str) or not SEGMENT.match(artifact):
                raise StoreError(f"publish {name!r}: bad artifact name {artifact!r}; use letters, digits, "
                                 "'.', '_' and '-' (e.g. 'subwords.parquet')")
            target = inside(artifact_folder(self.table_uri(name), publish_id, f"publish {name!r}"), artifact,
                            f"publish {name!r}: artifact")
            relative = target[len(self.table_uri(name)) + 1:]
            fs, path = filesystem(target, self.storage_options)
            fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)  # local folders; a no-op on object stores
            if isinstance(content, bytes):
                with fs.open(path, "wb") as f:
                    f.write(content)
            elif isinstance(content, (str, os.PathLike)) and Path(content).is_dir():
                fs.put(str(Path(content)).rstrip("/") + "/", path, recursive=True)
            elif isinstance(content, (str, os.PathLike)) and Path(content).is_file():
                fs.put_file(str(content), path)
            else:
                raise StoreError(f"publish {name!r}: artifact {artifact!r} must be bytes or an existing local "
                                 f"file or folder, got {content!r}")
            written[artifact] = relative
        return written

    def artifact_uri(self, name: str, version: int | None, artifact: str) -> str:
        """URI of an artifact published with `version` (latest when None); NotFoundError listing the others."""
        info = self.info(name, version)
        if artifact not in info.artifacts:
            raise NotFoundError(f"{name}@{info.version} has no artifact {artifact!r}; it has "
                                f"{sorted(info.artifacts) or 'none'}")
        what = f"table {name!r} in store {self.uri}, version {info.version}, artifact {artifact!r}"
        uri = inside(artifact_folder(self.table_uri(name), info.publish_id, what), artifact, what)
        if join(self.table_uri(name), str(info.artifacts[artifact])) != uri:  # its own folder and name, nothing else
            raise UnsafePathError(f"{what}: the commit names {info.artifacts[artifact]!r}, not this version's own "
                                  f"{uri}; refusing to read it")
        return uri

    def fetch_artifact(self, name: str, version: int | None, artifact: str, destination: str | os.PathLike) -> Path:
        """Copy an artifact (file or folder) to the local `destination` path; return that path."""
        source = self.artifact_uri(name, version, artifact)
        fs, path = filesystem(source, self.storage_options)
        destination = Path(destination)
        if fs.isdir(path):
            fs.get(path.rstrip("/") + "/", str(destination), recursive=True)
        else:
            destination.parent.mkdir(parents=True, exist_ok=True)
            fs.get_file(path, str(destination))
        return destination

    def _find_publish(self, name: str, publish_id: str) -> int | None:
        """The version whose commit carries `publish_id`, or None."""
        try:
            latest = DeltaTable(self.table_uri(name), storage_options=self.storage_options or None).version()
        except TableNotFoundError:
            return None
        for commit in reversed(self._commits(name, range(max(0, latest - 31), latest + 1))):  # others may have
            if commit.get(PUBLISH_ID_KEY) == publish_id:                                   # published since
                return int(commit["version"])
        return None

    def _commits(self, name: str, versions: range) -> list[dict]:
        """The commitInfo of each version, read from its own log file, oldest first.

        Not DeltaTable.history(): it numbers the commits it lists by counting down from the
        version its snapshot loaded, so a commit landing in between shifts every number (seen
        with two publishers on S3: a publisher was told its version was 0)."""
        log = join(self.table_uri(name), "_delta_log")
        fs, root = filesystem(log, self.storage_options)
        paths = {version: f"{root}/{version:020d}.json" for version in versions}
        bodies = fs.cat(list(paths.values()), on_error="omit")  # concurrent GETs on object stores
        commits = []
        for version, path in paths.items():
            body = bodies.get(path)
            if body is None:
                continue  # log file cleaned up (log retention is a century, so: not by firth)
            info = next((json.loads(line)["commitInfo"] for line in body.splitlines() if b'"commitInfo"' in line), {})
            commits.append({**info, "version": version})
        return commits

    # --- references ----------------------------------------------------------------------------

    def resolve(self, ref: str | refs.Ref) -> tuple[str, int]:
        """(name, version) for NAME, NAME@VERSION, NAME@ALIAS or NAME@TIMESTAMP (see schemas/refs.py).

        NAME@TIMESTAMP is the newest version committed at or before that instant."""
        parsed = refs.parse(ref) if isinstance(ref, str) else ref
        if parsed.alias is not None and parsed.alias != refs.LATEST:
            return parsed.name, alias_target(self, parsed.name, parsed.alias)
        if parsed.timestamp is not None:
            return parsed.name, self._version_at(parsed.name, parsed.timestamp)
        return parsed.name, self.info(parsed.name, parsed.version).version

    def _version_at(self, name: str, moment: datetime) -> int:
        versions = self.versions(name)
        before = [v for v in versions if v.timestamp <= moment]
        if not before:
            raise NotFoundError(f"table {name!r} in store {self.uri} has no version committed at or before "
                                f"{moment.isoformat()}; the first, version {versions[0].version}, was committed "
                                f"at {versions[0].timestamp.isoformat()}")
        return before[-1].version

    def check_readable(self, name: str, version: int) -> None:
        """Raise NotFoundError (CollectedError after gc) unless version `version` of `name` can be read."""
        self._open(name, version)

    def files(self, name: str, version: int | None = None) -> list[str]:
        """URIs of the Parquet data files of a version (latest when None): what DuckDB's
        read_parquet or any Parquet reader takes. Vectors there are list<float>, not fixed-size."""
        return self._data_files(name, self._open(name, version))

    # --- reading -------------------------------------------------------------------------------

    def tables(self) -> list[str]:
        """Names of the tables in this store, sorted."""
        fs, root = filesystem(join(self.uri, "tables"), self.storage_options)
        fs.invalidate_cache(root)  # Delta writes bypass fsspec, so a cached listing may be stale
        if not fs.exists(root):
            return []
        names = sorted(entry.rstrip("/").rsplit("/", 1)[-1] for entry in fs.ls(root, detail=False))
        return [n for n in names if NAME_PATTERN.match(n)
                and DeltaTable.is_deltatable(self.table_uri(n), self.storage_options or None)]

    def versions(self, name: str) -> list[VersionInfo]:
        """Every version of `name`, oldest first."""
        return [_version_info(c) for c in self._commits(name, range(self._open(name).version() + 1))]

    def collected(self, name: str) -> dict[int, str]:
        """Versions of `name` whose data files gc removed -> when (ISO-8601); their metadata stays listed."""
        return read_collected(self, name)

    def info(self, name: str, version: int | None = None) -> VersionInfo:
        """The commit of `version` (latest when None)."""
        dt = self._open(name)
        latest = dt.version()
        target = latest if version is None else version
        if not isinstance(target, int) or not 0 <= target <= latest:
            raise self._missing_version(name, version)
        for commit in self._commits(name, range(target, target + 1)):
            return _version_info(commit)
        raise self._missing_version(name, version)

    def read(self, name: str, version: int | None = None) -> pa.Table:
        """Version `version` (latest when None) of `name`: a word table rows by `id`, or a document
        table rows by (doc_id, chunk). CorruptVersionError for a version that is not exactly one
        publish (row count unlike its commit's, repeated keys); UnsafePathError for data files
        outside the table's folder."""
        dt = self._open(name, version)
        table = from_delta(self._scan(name, dt), f"{name}@{dt.version()}")
        self._verify(name, dt.version(), table.select(key_columns(table.column_names)))
        return table

    def verify(self, name: str, version: int) -> None:
        """The checks of `read` (row count as committed, unique keys), reading only the key columns."""
        dt = self._open(name, version)
        self._verify(name, version, self._scan(name, dt, key_columns(pa.schema(dt.schema().to_arrow()).names)))

    def _scan(self, name: str, dt: DeltaTable, columns: list[str] | None = None) -> pa.Table:
        """The loaded version's rows (only `columns`, when given), its data files checked to lie in the table."""
        self._data_files(name, dt)
        fs, root = pyarrow_filesystem(self.table_uri(name), self.storage_options)
        # Our own filesystem instead of deltalake's default one: with the default, the process
        # aborted at exit about half the time here ("terminate called without an active exception").
        return dt.to_pyarrow_table(columns=columns, filesystem=pafs.SubTreeFileSystem(root, fs))

    def _verify(self, name: str, version: int, keys: pa.Table) -> None:
        commits = self._commits(name, range(version, version + 1))
        rows = _version_info(commits[0]).rows if commits else None
        verify_version(f"table {name!r} version {version} in store {self.uri}", keys, rows)

    def _data_files(self, name: str, dt: DeltaTable) -> list[str]:
        """URIs of the loaded version's data files; UnsafePathError for one outside the table folder."""
        what = f"table {name!r} in store {self.uri}, version {dt.version()}: data file"
        paths = pa.table(dt.get_add_actions(flatten=True)).column("path").to_pylist()  # arro3 -> pyarrow
        return [inside(self.table_uri(name), path, what, encoded=True) for path in paths]

    def _open(self, name: str, version: int | None = None) -> DeltaTable:
        uri = self.table_uri(name)
        try:
            dt = DeltaTable(uri, storage_options=self.storage_options or None)
        except TableNotFoundError:
            existing = self.tables()
            listing = f"tables there: {', '.join(existing)}" if existing else "the store has no tables yet"
            raise NotFoundError(f"no table {name!r} in store {self.uri} ({listing})") from None
        if version is not None:
            if not isinstance(version, int) or not 0 <= version <= dt.version():
                raise self._missing_version(name, version)
            collected = self.collected(name) if version != dt.version() else {}
            if version in collected:
                raise CollectedError(f"table {name!r} in store {self.uri}: version {version} was removed by "
                                     f"`firth tables gc` at {collected[version]}; its metadata is still listed, "
                                     "its data is not. Read a kept version (`firth tables versions "
                                     f"{name}`), or pin versions with an alias before gc to keep them")
            try:
                dt.load_as_version(version)
            except DeltaError as e:  # e.g. a version whose log was cleaned up
                raise NotFoundError(f"table {name!r} in store {self.uri}: version {version} cannot be "
                                    f"loaded ({e}); versions: {self._version_list(name)}") from None
        return dt

    def _missing_version(self, name: str, version: Any) -> NotFoundError:
        return NotFoundError(f"table {name!r} in store {self.uri} has no version {version!r}; "
                             f"versions: {self._version_list(name)}")

    def _version_list(self, name: str) -> str:
        numbers = [v.version for v in self.versions(name)]
        if numbers and numbers == list(range(numbers[0], numbers[-1] + 1)):
            return f"{numbers[0]}..{numbers[-1]}" if len(numbers) > 1 else str(numbers[0])
        return ", ".join(map(str, numbers))


def _version_info(commit: Mapping[str, Any]) -> VersionInfo:
    timestamp = datetime.fromtimestamp(int(commit["timestamp"]) / 1000, tz=timezone.utc)
    metadata = json.loads(commit[METADATA_KEY]) if METADATA_KEY in commit else {}
    # firth.rows since publishes commit their own files; before, the overwrite's num_added_rows
    rows = commit.get(ROWS_KEY, (commit.get("operationMetrics") or {}).get("num_added_rows"))
    artifacts = json.loads(commit[_ARTIFACTS_KEY]) if _ARTIFACTS_KEY in commit else {}
    return VersionInfo(int(commit["version"]), timestamp, metadata, _count(commit.get(_DIM_KEY)), _count(rows),
                       artifacts, commit.get(_PARENT_KEY), commit.get(PUBLISH_ID_KEY))


def _count(value: Any) -> int | None:
    """A number from commit metadata; None when absent or not a count (a reader then refuses the version)."""
    return int(value) if str(value).isdigit() and str(value).isascii() else None
