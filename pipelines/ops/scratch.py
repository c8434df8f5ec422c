"""Each run's own scratch space, swapped in when it succeeds, removed when it fails or dies.

    <statistics uri>/runs/<run id>/     this run's statistics (vocabulary, tokens, co-occurrence, ...)
    <statistics uri>/latest.json        {"run_id", "uri"}: the statistics of the last successful run
    <statistics uri>/cache/             the shard cache, shared by every run (content-keyed, atomic
                                        entries: pipelines/statistics/shard_cache.py)
    <checkpoint uri>/<run id>/          this run's training checkpoints

(<statistics uri> is `statistics.output`, by default <store>/_statistics/<table>; <checkpoint uri>
is `model.checkpoint_dir`, by default <store>/_checkpoints/<table>.) A run never writes where
another run reads: a success rewrites `latest.json` in one atomic write, then removes the
statistics it replaced and its checkpoints; a failure removes its own scratch.

A run that is killed cannot clean up. Its lock stays, naming its run id, and every run holds its
table's lock from before it writes anything until after it has cleaned up, so under the lock any
scratch folder named by a run record of the table belongs to a dead run. `sweep_dead_runs` removes
those and marks their records "abandoned": the next run does it (having taken over the dead
run's lock at once, on the same host), and `firth tables gc` does it against the current lock
holder. Folders that no run record of the table names (another table sharing the folder, an old
layout) are only removed by gc, once older than its orphan grace period.
"""
from __future__ import annotations

import json
import posixpath
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from firth.pipelines.config import CHECKPOINTS_DIR, STATISTICS_DIR, JobConfig
from firth.pipelines.ops.lock import RunLock
from firth.pipelines.ops.run_records import RunLog
from firth.schemas.fs import filesystem, join, open_atomic
from firth.schemas.store import TableStore

RUNS_DIR = "runs"
LATEST_FILE = "latest.json"
CACHE_DIR = "cache"


@dataclass(frozen=True)
class ScratchRoots:
    """Where a table's runs keep their scratch (statistics and checkpoints)."""
    statistics: str
    checkpoints: str
    storage_options: Mapping

    @classmethod
    def of(cls, config: JobConfig) -> "ScratchRoots":
        return cls(config.statistics_uri, config.checkpoint_uri, config.store.storage_options)

    @classmethod
    def default(cls, store_uri: str, table: str, storage_options: Mapping) -> "ScratchRoots":
        """The roots of a config that sets neither statistics.output nor model.checkpoint_dir."""
        return cls(join(store_uri, STATISTICS_DIR, table), join(store_uri, CHECKPOINTS_DIR, table), storage_options)

    @property
    def statistics_runs(self) -> str:
        return join(self.statistics, RUNS_DIR)

    def statistics_of(self, run_id: str) -> str:
        return join(self.statistics_runs, run_id)

    def checkpoints_of(self, run_id: str) -> str:
        return join(self.checkpoints, run_id)

    @property
    def cache(self) -> str:
        return join(self.statistics, CACHE_DIR)

    def latest_statistics(self) -> tuple[str | None, str | None]:
        """(run id, URI) of the statistics of the last successful run; (None, None) before any."""
        fs, path = filesystem(join(self.statistics, LATEST_FILE), self.storage_options)
        fs.invalidate_cache(path)
        try:
            latest = json.loads(fs.cat_file(path))
        except FileNotFoundError:
            return None, None
        return latest["run_id"], latest["uri"]


class RunScratch:
    """The scratch of one run: `statistics_uri` and `checkpoint_uri` to write to, `keep()` on
    success, `discard()` on failure. Neither raises: a cleanup that fails is reported and left to
    the next run or gc."""

    def __init__(self, roots: ScratchRoots, run_id: str):
        self.roots, self.run_id = roots, run_id
        self.statistics_uri = roots.statistics_of(run_id)
        self.checkpoint_uri = roots.checkpoints_of(run_id)

    def keep(self) -> None:
        """Make this run's statistics the table's latest (one atomic write), then remove the ones
        it replaced and this run's checkpoints."""
        try:
            previous, _ = self.roots.latest_statistics()
            if _exists(self.statistics_uri, self.roots.storage_options):
                with open_atomic(join(self.roots.statistics, LATEST_FILE), self.roots.storage_options) as f:
                    f.write(json.dumps({"run_id": self.run_id, "uri": self.statistics_uri}).encode())
                if previous and previous != self.run_id:
                    _remove(self.roots.statistics_of(previous), self.roots.storage_options)
            _remove(self.checkpoint_uri, self.roots.storage_options)
        except Exception as e:  # the run has published: a failed cleanup must not turn it into a failure
            _warn(f"could not swap in the statistics of run {self.run_id} or remove its checkpoints ({e})")

    def discard(self) -> None:
        try:
            for uri in (self.statistics_uri, self.checkpoint_uri):
                _remove(uri, self.roots.storage_options)
        except Exception as e:  # never hide the run's own error behind the cleanup's
            _warn(f"could not remove the scratch of failed run {self.run_id} ({e})")


@dataclass
class Swept:
    """What `sweep_dead_runs` found: records marked abandoned, folders removed (or, dry, to remove)."""
    abandoned: list[str] = field(default_factory=list)  # run ids
    removed: list[str] = field(default_factory=list)  # folder URIs

    def to_json(self) -> dict:
        return {"abandoned_runs": self.abandoned, "removed_scratch": self.removed}


def sweep_dead_runs(table: str, roots: ScratchRoots, log: RunLog, live_run_id: Callable[[], str | None], *,
                    dead: tuple[str, ...] = (), all_records: bool = False, orphan_grace_hours: float | None = None,
                    published_by: Callable[[str], int | None] = lambda run_id: None, found_by: str,
                    dry_run: bool = False) -> Swept:
    """Remove the scratch of the table's dead runs and mark their records "abandoned".

    Dead: named by a record of `table` (or in `dead`), and not `live_run_id()`, which is asked
    only after everything is listed: a run writes its record and scratch only while holding the
    lock, so a run seen in the listing is either the holder at that later moment or over.
    `live_run_id()` returns "" when a live run holds the lock without a run id: nothing is swept.
    `all_records`: also look for "running" records without scratch (gc). `orphan_grace_hours`:
    also remove folders that no record of the table names, once older than that (gc).
    """
    opts = roots.storage_options
    folders = dict(_children(roots.statistics_runs, opts) + _children(roots.checkpoints, opts))  # URI -> run id
    running = {r.run_id for r in log.list(table) if r.outcome == "running"} if all_records else set()
    candidates = set(folders.values()) | running | set(dead)
    live = live_run_id()
    swept = Swept()
    if live == "":
        return swept
    latest, _ = roots.latest_statistics()
    cutoff = datetime.now(timezone.utc) - timedelta(hours=orphan_grace_hours or 0)
    for run_id in sorted(candidates - {live}):
        has_record = log.exists(table, run_id)
        if has_record and not dry_run:
            abandoned = log.abandon(table, run_id, f"its process ended without finishing (killed or crashed); "
                                                   f"found by {found_by}", version=published_by(run_id))
            if abandoned is not None:
                swept.abandoned.append(run_id)
        elif has_record and log.read(table, run_id).outcome == "running":
            swept.abandoned.append(run_id)
        for uri in [u for u, owner in folders.items() if owner == run_id]:
            if run_id == latest and uri == roots.statistics_of(run_id):
                continue  # the statistics a successful run swapped in (it died just after)
            if has_record or (orphan_grace_hours is not None and _newest(uri, opts) < cutoff):
                swept.removed.append(uri)
                if not dry_run:
                    _remove(uri, opts)
    return swept


def collect_dead_runs(store_uri: str, table: str, roots: ScratchRoots, *, orphan_grace_hours: float,
                      dry_run: bool = False) -> Swept:
    """`firth tables gc`: sweep_dead_runs against whichever run holds the table's lock now (an
    expired holder, or one whose process is gone on this host, is dead), every "running" record
    included, and scratch no record names once older than `orphan_grace_hours`."""
    lock = RunLock(store_uri, table, roots.storage_options)

    def live_run_id() -> str | None:
        holder = lock.current()
        if holder is None or holder.expires_at <= time.time() or holder.dead_on_this_host():
            return None
        return holder.run_id or ""

    return sweep_dead_runs(table, roots, RunLog(store_uri, roots.storage_options), live_run_id, all_records=True,
                           orphan_grace_hours=orphan_grace_hours, published_by=published_by(store_uri, table, roots),
                           found_by="firth tables gc", dry_run=dry_run)


def published_by(store_uri: str, table: str, roots: ScratchRoots) -> Callable[[str], int | None]:
    """run id -> the version that run published (None if none): a dead run may have got that far."""
    def lookup(run_id: str) -> int | None:
        try:
            versions = TableStore(store_uri, roots.storage_options).versions(table)
        except Exception:  # no table yet
            return None
        return next((v.version for v in reversed(versions) if v.metadata.get("run_id") == run_id), None)
    return lookup


def _children(folder_uri: str, storage_options: Mapping) -> list[tuple[str, str]]:
    """(URI, name) of the folders directly in `folder_uri`; [] when it does not exist."""
    fs, path = filesystem(folder_uri, storage_options)
    fs.invalidate_cache(path)
    try:
        entries = fs.ls(path, detail=True)
    except FileNotFoundError:
        return []
    names = [posixpath.basename(e["name"].rstrip("/")) for e in entries if e["type"] == "directory"]
    return [(join(folder_uri, name), name) for name in names]


def _newest(uri: str, storage_options: Mapping) -> datetime:
    """Last modification of anything in the folder `uri` (now, when nothing says)."""
    fs, path = filesystem(uri, storage_options)
    times = []
    for entry in fs.find(path, detail=True, withdirs=True).values():
        modified = entry.get("LastModified") or entry.get("mtime")  # s3fs / local
        if isinstance(modified, (int, float)):
            modified = datetime.fromtimestamp(modified, tz=timezone.utc)
        if modified is not None:
            times.append(modified)
    return max(times, default=datetime.now(timezone.utc))


def _exists(uri: str, storage_options: Mapping) -> bool:
    fs, path = filesystem(uri, storage_options)
    fs.invalidate_cache(path)
    return fs.exists(path)


def _remove(uri: str, storage_options: Mapping) -> None:
    fs, path = filesystem(uri, storage_options)
    fs.invalidate_cache(path)
    if fs.exists(path):
        fs.rm(path, recursive=True)


def _warn(message: str) -> None:
    print(f"firth: warning: {message}; the next run of the table or `firth tables gc` removes what is left",
          file=sys.stderr, flush=True)
