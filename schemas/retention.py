"""Retention: remove the data files of old versions, keeping the newest N and every aliased one.

Kept: the newest `keep` versions, and every version on some alias's rollback stack (its current
target and each version a rollback could move it back to; schemas/aliases.py). Versions that
an alias pointed to once but can no longer roll back to are not kept.

Why not Delta's `vacuum`: every publish is a commit that logically removes all of the previous
version's files (schemas/commit.py), so vacuum would delete the files of every older version, aliased
ones included. Instead the data files of each kept version (its add actions) are computed, and
only files referenced by a collected version and by no kept one are deleted, along with the
collected versions' `_artifacts/<publish id>/` folders. Files of a publish still in flight are
referenced by no version yet, so gc never touches them.

The collected versions are recorded in `<table>/_collected.json` (written atomically *before*
any file is deleted), so reading one raises CollectedError saying so, instead of a missing-file
error from the middle of Parquet. Their commits, metadata and metrics stay in the Delta log.

Orphans: data files and artifact folders that no commit names (left by a publish that was
killed, or failed with an unknown outcome) are removed too, once older than `orphan_grace_hours`: a
younger one may belong to a publish still writing. Two gc runs at once on one table are not
serialised (the second may re-record what the first did); run gc from one place.

Every path gc builds from the log (publish ids, data file paths) goes through schemas/paths.py:
one that could leave the table folder makes gc refuse the table before it removes anything.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING

import pyarrow as pa
from deltalake import DeltaTable

from firth.schemas.aliases import list_aliases
from firth.schemas.errors import StoreError
from firth.schemas.fs import filesystem, join, open_atomic
from firth.schemas.paths import ARTIFACTS_DIR, artifact_folder, inside

if TYPE_CHECKING:
    from firth.schemas.store import TableStore

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
    orphans: list[str] = field(default_factory=list)  # data files / artifact folders no commit names
    done: bool = False  # False for a dry run

    @property
    def bytes(self) -> int:
        return sum(f.size for f in self.files)

    def to_json(self) -> dict:
        return {"table": self.table, "kept": {str(v): why for v, why in sorted(self.kept.items())},
                "collected": self.collected, "files": [f.uri for f in self.files], "bytes": self.bytes,
                "artifacts": self.artifacts, "orphans": self.orphans, "dry_run": not self.done}


def plan_gc(store: "TableStore", name: str, keep: int = 10, orphan_grace_hours: float = 24.0) -> GcPlan:
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

    uri = store.table_uri(name)
    kept_files = set()
    for version in kept:
        if version not in already:
            kept_files |= {f.uri for f in _data_files(store, uri, version)}
    files: dict[str, DataFile] = {}
    named_by_collected = set()
    for version in collected:
        version_files = _data_files(store, uri, version)
        named_by_collected |= {f.uri for f in version_files}
        files |= {f.uri: f for f in version_files if f.uri not in kept_files}
    by_version = {v.version: v for v in versions}
    artifacts = [artifact_folder(uri, by_version[v].publish_id, f"gc {name!r}: version {v}'s commit")
                 for v in collected if by_version[v].artifacts]
    cutoff = datetime.now(timezone.utc) - timedelta(hours=orphan_grace_hours)
    named = kept_files | named_by_collected
    orphans = [entry for entry, modified in _table_entries(store, uri, "")
               if entry.endswith(".parquet") and entry not in named and modified < cutoff]
    publish_ids = {v.publish_id for v in versions}
    orphans += [entry for entry, _ in _table_entries(store, uri, ARTIFACTS_DIR)
                if entry.rsplit("/", 1)[-1] not in publish_ids and _newest_under(store, entry) < cutoff]
    return GcPlan(name, kept, collected, sorted(files.values(), key=lambda f: f.uri), artifacts, sorted(orphans))


def collect_garbage(store: "TableStore", name: str, keep: int = 10, dry_run: bool = False,
                    orphan_grace_hours: float = 24.0) -> GcPlan:
    """Delete the data files and artifacts of versions outside the retention, and orphans older
    than the grace period; return what was (for a dry run: would be) removed."""
    plan = plan_gc(store, name, keep, orphan_grace_hours)
    if dry_run:
        return plan
    if not (plan.collected or plan.orphans):
        plan.done = True  # a real run with nothing to remove is not a dry run
        return plan
    if plan.collected:
        at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        _write_collected(store, name, {**read_collected(store, name), **{v: at for v in plan.collected}})
    fs, _ = filesystem(store.table_uri(name), store.storage_options)
    paths = [filesystem(f.uri, store.storage_options)[1] for f in plan.files]
    if paths:
        fs.rm(paths)
    for folder in plan.artifacts + plan.orphans:
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


def _table_entries(store: "TableStore", uri: str, folder: str) -> list[tuple[str, datetime]]:
    """(URI, last modified) of what lies directly in `uri`/`folder`; [] when it does not exist."""
    fs, path = filesystem(join(uri, folder) if folder else uri, store.storage_options)
    fs.invalidate_cache(path)
    try:
        entries = fs.ls(path, detail=True)
    except FileNotFoundError:
        return []
    base = join(uri, folder) if folder else uri
    found = []
    for entry in entries:
        modified = _modified(entry) or datetime.now(timezone.utc)  # an S3 "folder" has no time: new
        found.append((join(base, entry["name"].rstrip("/").rsplit("/", 1)[-1]), modified))
    return found


def _newest_under(store: "TableStore", uri: str) -> datetime:
    """Last modification of anything under the folder `uri` (now, when nothing says)."""
    fs, path = filesystem(uri, store.storage_options)
    times = [_modified(entry) for entry in fs.find(path, detail=True).values()]
    return max((t for t in times if t is not None), default=datetime.now(timezone.utc))


def _modified(entry: dict) -> datetime | None:
    modified = entry.get("LastModified") or entry.get("mtime")  # s3fs / local
    if isinstance(modified, (int, float)):
        return datetime.fromtimestamp(modified, tz=timezone.utc)
    return modified


def _data_files(store: "TableStore", uri: str, version: int) -> list[DataFile]:
    """The Parquet files version `version` reads (its add actions), as URIs with sizes."""
    dt = DeltaTable(uri, storage_options=store.storage_options or None, version=version)
    actions = pa.table(dt.get_add_actions(flatten=True))  # arro3 -> pyarrow via the Arrow C interface
    paths = actions.column("path").to_pylist()
    sizes = actions.column("size_bytes").to_pylist()
    what = f"table {uri}, version {version}: data file"
    return [DataFile(inside(uri, p, what, encoded=True), int(s)) for p, s in zip(paths, sizes)]
