"""One run per table: a lock object in the store, `<store>/_locks/<table>.lock`, taken by conditional write.

    with run_lock(store_uri, table, storage_options, ttl_s=6 * 3600, run_id=...):
        ...  # statistics, training, publish

Taking it is one write that succeeds only if no lock exists: on S3 a PUT with
`If-None-Match: *` (s3fs `mode="create"`), locally a complete temporary file hard-linked to the
lock's name (`link` fails if the name exists, and the content is whole when it appears). The lock
holds JSON naming its holder (host:pid, run id, acquired and expiry times) and a random token.

A crashed holder leaves its lock behind. If the holder ran on this host and its process is gone
(its PID is dead, or now belongs to a process started later), the next run takes the lock over
at once; a holder on another host is taken over once `expires_at` has passed. `took_over` then
names the dead holder, so the caller can say so and mark its run abandoned. A takeover replaces
exactly that stale lock: on S3 a PUT with `If-Match: <stale ETag>`, locally a
rename of the stale file aside followed by the exclusive create (if the renamed file is not the
stale one it is put back). Of two runs taking over at once, one wins and the other gets LockHeld.
Choose ttl_s well above a run's duration, or call `refresh()` during long runs.

Releasing deletes the lock if it still holds our token. Neither S3 nor a local filesystem offers
a delete conditional on content, so a holder that outlived its expiry and was taken over could,
between its check and its delete, remove the new holder's lock; a ttl far above run times rules
that out in practice.
"""
from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

from firth.schemas.fs import filesystem, is_local, join

LOCKS_DIR = "_locks"
DEFAULT_TTL_S = 6 * 3600


class LockHeld(RuntimeError):
    """Another run holds the table's lock; the message names it and when its lock expires."""

    def __init__(self, table: str, holder: "Holder | None", uri: str):
        self.table, self.holder, self.uri = table, holder, uri
        if holder is None:
            who = "another run (its lock is being written)"
        else:
            who = (f"{holder.owner} (run {holder.run_id or '?'}, since {_iso(holder.acquired_at)}, "
                   f"expires {_iso(holder.expires_at)})")
        super().__init__(f"table {table!r} is locked by {who}; only one run per table at a time. Wait for it "
                         f"to finish; a dead holder on this host is taken over at once, one on another host "
                         f"at its expiry, or delete {uri} if you know that run is dead")


@dataclass(frozen=True)
class Holder:
    owner: str  # host:pid
    token: str  # random, tells our lock from a later holder's
    acquired_at: float  # epoch seconds
    expires_at: float
    run_id: str | None = None
    pid_started_at: float | None = None  # the holder process's start (epoch s): tells it from a reused PID

    def dead_on_this_host(self) -> bool:
        """True only when this holder ran on this host and its process no longer exists."""
        host, _, pid = self.owner.rpartition(":")
        if host != socket.gethostname() or not pid.isdigit():
            return False  # another host's process cannot be checked from here: its expiry decides
        return not _process_alive(int(pid), self.pid_started_at)


class RunLock:
    def __init__(self, store_uri: str, table: str, storage_options: Mapping[str, str] | None = None, *,
                 ttl_s: float = DEFAULT_TTL_S, run_id: str | None = None):
        if ttl_s <= 0:
            raise ValueError(f"lock ttl_s must be positive, got {ttl_s}")
        self.table, self.ttl_s, self.run_id = table, ttl_s, run_id
        self.uri = join(store_uri, LOCKS_DIR, f"{table}.lock")
        self.fs, self.path = filesystem(self.uri, dict(storage_options or {}))
        self.local = is_local(self.uri)
        self.holder: Holder | None = None
        self.took_over: Holder | None = None  # the expired or dead holder this acquire replaced

    # --- taking and giving back ---------------------------------------------------------------------

    def acquire(self) -> Holder:
        """Take the lock or raise LockHeld naming the holder; an expired lock, or one whose holder
        process is dead on this host, is taken over (`took_over` names it)."""
        holder = self._new_holder()
        if self._create(holder):
            self.holder = holder
            return holder
        current, version = self._read()
        if current is None or (current.expires_at > time.time() and not current.dead_on_this_host()):
            raise LockHeld(self.table, current, self.uri)
        if not self._take_over(current, version, holder):
            current, _ = self._read()
            raise LockHeld(self.table, current, self.uri)
        self.holder, self.took_over = holder, current
        return holder

    def current(self) -> Holder | None:
        """The holder of the lock now (None: free), without taking it."""
        return self._read()[0]

    def refresh(self) -> None:
        """Push our expiry ttl_s into the future (long runs); LockHeld if the lock is no longer ours."""
        current, version = self._read()
        if self.holder is None or current is None or current.token != self.holder.token:
            raise LockHeld(self.table, current, self.uri)
        renewed = Holder(**{**asdict(self.holder), "expires_at": time.time() + self.ttl_s})
        if not self._replace(version, renewed):
            raise LockHeld(self.table, self._read()[0], self.uri)
        self.holder = renewed

    def release(self) -> None:
        if self.holder is None:
            return
        current, _ = self._read()
        if current is not None and current.token == self.holder.token:
            self.fs.rm_file(self.path)
        self.holder = None

    def __enter__(self) -> "RunLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    # --- storage ------------------------------------------------------------------------------------

    def _new_holder(self) -> Holder:
        now = time.time()
        return Holder(f"{socket.gethostname()}:{os.getpid()}", uuid.uuid4().hex, now, now + self.ttl_s, self.run_id,
                      _process_started_at(os.getpid()))

    def _create(self, holder: Holder) -> bool:
        """Exclusive create; False if a lock exists."""
        body = json.dumps(asdict(holder)).encode()
        if self.local:
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            tmp = f"{self.path}.{holder.token}.tmp"
            with open(tmp, "wb") as f:  # firth.schemas.fs resolved this local path; link() has no fsspec form
                f.write(body)
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, self.path)
                return True
            except FileExistsError:
                return False
            finally:
                os.unlink(tmp)
        try:
            self.fs.pipe_file(self.path, body, mode="create")  # PUT with If-None-Match: *
            return True
        except FileExistsError:
            return False

    def _read(self) -> tuple[Holder | None, str | None]:
        """(holder, version: the S3 ETag or the local content) of the current lock; (None, None) if absent."""
        self.fs.invalidate_cache(self.path)
        try:
            body = self.fs.cat_file(self.path)
            etag = None if self.local else self.fs.info(self.path).get("ETag")
        except FileNotFoundError:
            return None, None
        try:
            return Holder(**json.loads(body)), etag if not self.local else body.decode()
        except (ValueError, TypeError):  # a foreign or damaged file: treat it as held until deleted
            return Holder("unreadable lock file", "", 0.0, float("inf")), None

    def _take_over(self, stale: Holder, version: str | None, holder: Holder) -> bool:
        if self.local:
            aside = f"{self.path}.stale.{holder.token}"
            try:
                os.rename(self.path, aside)
            except FileNotFoundError:  # someone else removed it first: compete for the create
                return self._create(holder)
            with open(aside, "rb") as f:
                moved = f.read().decode()
            if moved != version:  # we moved a fresh lock, not the stale one: put it back
                try:
                    os.link(aside, self.path)
                finally:
                    os.unlink(aside)
                return False
            os.unlink(aside)
            return self._create(holder)
        return self._replace(version, holder)

    def _replace(self, version: str | None, holder: Holder) -> bool:
        """Overwrite the lock only if it is still `version`."""
        body = json.dumps(asdict(holder)).encode()
        if self.local:
            current = self._read()[1]
            if current != version:
                return False
            tmp = f"{self.path}.{holder.token}.tmp"
            with open(tmp, "wb") as f:
                f.write(body)
            os.replace(tmp, self.path)
            return True
        bucket, key, _ = self.fs.split_path(self.path)
        try:
            self.fs.call_s3("put_object", Bucket=bucket, Key=key, Body=body, IfMatch=version)
        except OSError as exc:
            if _precondition_failed(exc):  # 412: the lock changed since we read it
                return False
            raise  # a timeout or a denied request is not "someone else holds the lock"
        self.fs.invalidate_cache(self.path)
        return True


def _precondition_failed(exc: OSError) -> bool:
    """Whether s3fs's OSError is S3's 412 Precondition Failed (s3fs keeps the ClientError as the cause)."""
    response = getattr(exc.__cause__, "response", None) or {}
    return response.get("Error", {}).get("Code") in ("PreconditionFailed", "412") or \
        response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 412


def run_lock(store_uri: str, table: str, storage_options: Mapping[str, str] | None = None, *,
             ttl_s: float = DEFAULT_TTL_S, run_id: str | None = None) -> RunLock:
    """A RunLock for `with`: acquired on entry (LockHeld if taken), released on exit."""
    return RunLock(store_uri, table, storage_options, ttl_s=ttl_s, run_id=run_id)


def _process_started_at(pid: int) -> float | None:
    """When process `pid` started (epoch seconds); None when that is unknown."""
    try:
        import psutil  # with the stats and train extras, which every `firth run` has
    except ImportError:
        return None
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def _process_alive(pid: int, started_at: float | None) -> bool:
    """Whether process `pid` lives and is the one that started at `started_at` (None: any)."""
    try:
        import psutil
    except ImportError:  # the reader's plain install (`firth tables gc`): cannot tell, so alive
        return True
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:  # killed, not yet reaped by its parent
            return False
        # a PID reused by a later process is not our holder (creation times agree to clock ticks)
        return started_at is None or abs(process.create_time() - started_at) < 1.0
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # another user's live process
        return True


def _iso(seconds: float) -> str:
    if seconds == float("inf"):
        return "never"
    return datetime.fromtimestamp(seconds, tz=timezone.utc).isoformat(timespec="seconds")
