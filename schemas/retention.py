"""Retention: remove the data files of old versions, keeping the newest N and every aliased one.

Kept: the newest `keep` versions, and every version on some alias's rollback stack (its current
target and each version a rollback could move it back to; schemas/aliases.py). Versions that
an alias pointed to once but can no longer roll back to are not kept.

Why not Delta's `vacuum`: every publish is an `overwrite` commit, which logically removes all of
the previous version's files, so vacuum would delete the files of every older version, aliased
ones included. Instead the data files of each kept version (its add actions) are computed, and
only files referenced by a collected version and by no kept one are deleted, along with the
collected versions' `_artifacts/<publish id>/` folders. Files of a publish still in flight are
referenced by no version yet, so gc never touches them.

The collected versions are recorded in `<table>/_collected.json` (written atomically *before*
any file is deleted), so reading one raises CollectedError saying so, instead of a missing-file
error from the middle of Parquet. Their commits, metadata and metrics stay in the Delta log.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING
from urllib.parse import unquote

import pyarrow as pa
from deltalake import DeltaTable

from schemas.aliases import list_aliases
from schemas.errors import StoreError
from schemas.fs import filesystem, join, open_atomic

if TYPE_CHECKING:
    from schemas.store import TableStore

COLLECTED_FILE = "_collected.json"


@dataclass(frozen=True)
class DataFile:
    uri: str
    size: int  # bytes


@dataclass
class GcPlan:
    table: str
    kept: dict[int, list[str]]  # version -> why it is kept ("newest 3", "alias production", ...)
    collected: list[int]  # versions whose files go now
    files: list[DataFile] = field(default_factory=list)  # data files to delete
    artifacts: list[str] = field(default_factory=list)  # artifact folders to delete
    done: bool = False  # False for a dry run

    @property
    def bytes(self) -> int:
        return sum(f.size for f in self.files)

    def to_json(self) -> dict:
        return {"table": self.table, "kept": {str(v): why for v, why in sorted(self.kept.items())},
                "collected": self.collected, "files": [f.uri for f in self.files], "bytes": self.bytes,
                "artifacts": self.artifacts, "dry_run": not self.done}


def plan_gc(store: "TableStore", name: str, keep: int = 10) -> GcPlan:
    """What `collect_garbage` would remove, without removing anything."""
    if not isinstance(keep, int) or isinstance(keep, bool) or keep < 1:
        raise StoreError(f"gc {name!r}: keep must be a positive number of versions, got {keep!r}")
    versions = store.versions(name)
    already = read_collected(store, name)
    kept: dict[int, list[str]] = {}
    for info in versions[-keep:]:
        kept.setdefault(info.version, []).append(f"newest {keep}")
    for alias in list_aliases(store, name).values():
        stack = alias.stack
        for version in stack:
            why = f"alias {alias.name}" if version == alias.version else f"alias {alias.name} rollback target"
            kept.setdefault(version, []).append(why)
    collected = [v.version for v in versions if v.version not in kept and v.version not in already]
    if not collected:
        return GcPlan(name, kept, [])

    uri = store.table_uri(name)
    kept_files = set()
    for version in kept:
        if version not in already:
            kept_files |= {f.uri for f in _data_files(store, uri, version)}
    files: dict[str, DataFile] = {}
    for version in collected:
        files |= {f.uri: f for f in _data_files(store, uri, version) if f.uri not in kept_files}
    by_version = {v.version: v for v in versions}
    artifacts = [join(uri, "_artifacts", by_version[v].publish_id) for v in collected
                 if by_version[v].artifacts and by_version[v].publish_id]
    return GcPlan(name, kept, collected, sorted(files.values(), key=lambda f: f.uri), artifacts)


def collect_garbage(store: "TableStore", name: str, keep: int = 10, dry_run: bool = False) -> GcPlan:
    """Delete the data files and artifacts of versions outside the retention; return what was removed."""
    plan = plan_gc(store, name, keep)
    if dry_run or not plan.collected:
        return plan
    at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    _write_collected(store, name, {**read_collected(store, name), **{v: at for v in plan.collected}})
    fs, _ = filesystem(store.table_uri(name), store.storage_options)
    paths = [filesystem(f.uri, store.storage_options)[1] for f in plan.files]
    if paths:
        fs.rm(paths)
    for folder in plan.artifacts:
        folder_path = filesystem(folder, store.storage_options)[1]
        if fs.exists(folder_path):
            fs.rm(folder_path, recursive=True)
    plan.done = True
    return plan


def read_collected(store: "TableStore", name: str) -> dict[int, str]:
    """Version -> when gc removed its files."""
    fs, path = filesystem(join(store.table_uri(name), COLLECTED_FILE), store.storage_options)
    try:
        data = json.loads(fs.cat_file(path))
    except FileNotFoundError:
        return {}
    return {int(v): at for v, at in data.get("versions", {}).items()}


def _write_collected(store: "TableStore", name: str, versions: dict[int, str]) -> None:
    body = json.dumps({"versions": {str(v): at for v, at in sorted(versions.items())}}, indent=1).encode()
    with open_atomic(join(store.table_uri(name), COLLECTED_FILE), store.storage_options) as f:
        f.write(body)


def _data_files(store: "TableStore", uri: str, version: int) -> list[DataFile]:
    """The Parquet files version `version` reads (its add actions), as URIs with sizes."""
    dt = DeltaTable(uri, storage_options=store.storage_options or None, version=version)
    actions = pa.table(dt.get_add_actions(flatten=True))  # arro3 -> pyarrow via the Arrow C interface
    paths = actions.column("path").to_pylist()
    sizes = actions.column("size_bytes").to_pylist()
    return [DataFile(join(uri, unquote(p)), int(s)) for p, s in zip(paths, sizes)]
