"""Run records: one JSON file per `firth run`, in the store at `<store>/_runs/<table>/<run_id>.json`.

A record is written when the run starts (outcome "running"), again as each stage starts
(`stage`), and when it ends, as "succeeded" (with the published version, metrics and stage
timings), "failed" (with the stage that failed, the error's type and message) or "cancelled" (SIGINT
or SIGTERM: the stage it was in and the signal; pipelines/ops/interrupts.py). Each write is
atomic (firth.schemas.fs.open_atomic), so a reader sees a whole record or none. A run that was
killed cannot write its end: its record says "running" until the next run of the table (which
takes over the dead run's lock) or `firth tables gc` marks it "abandoned", naming the stage it
died in (pipelines/ops/scratch.py).

Run ids sort by start time ("20261124T091530123-1a2b3c4d", milliseconds), so listing is a sorted directory listing.
"""
from __future__ import annotations

import json
import os
import socket
import sys
import traceback
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any

from firth.pipelines.ops import interrupts
from firth.schemas.fs import filesystem, join, open_atomic
from firth.schemas.paths import inside, segment

RUNS_DIR = "_runs"
OUTCOMES = ("running", "succeeded", "failed", "cancelled", "abandoned")
STAGE_ATTRIBUTE = "firth_stage"  # set on an exception by firth.pipelines.job._stage: the stage it escaped from


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%f")[:-3] + "-" + uuid.uuid4().hex[:8]  # ms: sorts by start


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class RunRecord:
    run_id: str
    table: str
    outcome: str  # one of OUTCOMES
    started_at: str  # ISO 8601, UTC
    updated_at: str
    config: dict  # JobConfig.lineage(): no storage options, so no credentials
    shards: list[dict] = field(default_factory=list)  # [{uri, size, fingerprint}] the run read
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage, in stage order
    metrics: dict[str, float] = field(default_factory=dict)
    epoch_losses: list[float] = field(default_factory=list)
    workers: list[dict] = field(default_factory=list)  # [{rank, node_id, ip, host, pid}]: where Ray Train trained
    version: int | None = None  # the table version published (succeeded runs; abandoned ones that got that far)
    error: dict | None = None  # {"stage", "type", "message", "traceback"} (failed, cancelled and abandoned runs)
    stage: str | None = None  # the stage running now, or the last one started
    host: str = field(default_factory=socket.gethostname)
    submission_id: str | None = None  # the Ray job that ran it, when submitted with `firth submit`
    promotion: dict | None = None  # {"alias", "promoted", "message", "comparisons"}: runs that asked to promote

    @property
    def failed_stage(self) -> str | None:
        return (self.error or {}).get("stage")

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "RunRecord":
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}  # newer fields are ignored
        return cls(**known)


class RunLog:
    """The run records of one store."""

    def __init__(self, store_uri: str, storage_options: Mapping[str, str] | None = None):
        self.store_uri = store_uri
        self.storage_options = dict(storage_options or {})

    def uri(self, table: str, run_id: str) -> str:
        what = f"run record of table {table!r}"
        relative = f"{segment(table, what)}/{segment(run_id, what + ': run id')}.json"
        return inside(join(self.store_uri, RUNS_DIR), relative, what)

    def write(self, record: RunRecord) -> None:
        record.updated_at = _now()
        body = json.dumps(record.to_json(), indent=1, sort_keys=False, default=str, allow_nan=True).encode()
        with open_atomic(self.uri(record.table, record.run_id), self.storage_options) as f:
            f.write(body)

    def list(self, table: str | None = None) -> list[RunRecord]:
        """Records of `table` (every table when None), oldest first."""
        fs, root = filesystem(join(self.store_uri, RUNS_DIR), self.storage_options)
        fs.invalidate_cache()
        pattern = f"{root}/{segment(table, 'run records: table') if table else '*'}/*.json"
        paths = sorted(fs.glob(pattern), key=lambda p: p.rsplit("/", 1)[-1])  # by run id = start time
        return [RunRecord.from_json(json.loads(fs.cat_file(p))) for p in paths]

    def get(self, run_id: str) -> RunRecord:
        """The record of `run_id`, in whichever table; KeyError naming the latest runs when absent."""
        fs, root = filesystem(join(self.store_uri, RUNS_DIR), self.storage_options)
        fs.invalidate_cache()
        paths = fs.glob(f"{root}/*/{segment(run_id, 'run id')}.json")
        if not paths:
            latest = [r.run_id for r in self.list()[-5:]]
            raise KeyError(f"no run {run_id!r} in store {self.store_uri} (latest runs: "
                           f"{', '.join(latest) or 'none yet'}); list them with `firth runs list`")
        return RunRecord.from_json(json.loads(fs.cat_file(paths[0])))

    def exists(self, table: str, run_id: str) -> bool:
        fs, path = filesystem(self.uri(table, run_id), self.storage_options)
        fs.invalidate_cache(path)
        return fs.exists(path)

    def read(self, table: str, run_id: str) -> RunRecord:
        fs, path = filesystem(self.uri(table, run_id), self.storage_options)
        fs.invalidate_cache(path)
        return RunRecord.from_json(json.loads(fs.cat_file(path)))

    def abandon(self, table: str, run_id: str, reason: str, version: int | None = None) -> RunRecord | None:
        """Mark a dead run's record "abandoned" (only if it still says "running"); the record, or None
        when it had ended. `version`: what the run published before it died, if anything."""
        record = self.read(table, run_id)
        if record.outcome != "running":
            return None
        record.outcome, record.version = "abandoned", version
        record.error = {"stage": record.stage or "outside a stage", "type": "Abandoned", "message": reason,
                        "traceback": ""}
        self.write(record)
        return record

    def previous_success(self, record: RunRecord) -> RunRecord | None:
        """The last succeeded run of the same table that started before `record`."""
        earlier = [r for r in self.list(record.table) if r.run_id < record.run_id and r.outcome == "succeeded"]
        return earlier[-1] if earlier else None


class RunRecorder:
    """Context manager around one run: writes the record at the start and at the end.

    The job fills `timings` (shared with its stage timer), `shards` and, on success, calls
    `succeeded(version, metadata)`. An exception leaving the block marks the run failed, naming
    the stage from the exception's `firth_stage` attribute, and propagates unchanged.
    """

    def __init__(self, table: str, config_lineage: dict, store_uri: str,
                 storage_options: Mapping[str, str] | None = None, run_id: str | None = None):
        self.log = RunLog(store_uri, storage_options)
        now = _now()
        self.record = RunRecord(run_id=run_id or new_run_id(), table=table, outcome="running", started_at=now,
                                updated_at=now, config=config_lineage,
                                submission_id=os.environ.get("FIRTH_SUBMISSION_ID"))

    @property
    def run_id(self) -> str:
        return self.record.run_id

    @property
    def timings(self) -> dict[str, float]:
        return self.record.timings

    def enter_stage(self, name: str) -> None:
        """Record that stage `name` starts (so a record left by a killed run says where it died)."""
        self.record.stage = name
        self.log.write(self.record)

    def note_shards(self, shards: list[dict]) -> None:
        self.record.shards = list(shards)

    def succeeded(self, version: int, metadata: Mapping[str, Any]) -> None:
        self.record.version = version
        self.record.metrics = dict(metadata.get("metrics", {}))
        self.record.epoch_losses = list(metadata.get("training", {}).get("epoch_losses", []))
        self.record.workers = list(metadata.get("training", {}).get("workers", []))
        self.record.outcome = "succeeded"

    def note_promotion(self, decision: dict) -> None:
        """After the run: what promoting its version did (the record only; a failed write is a warning,
        the version is published and the alias moved or not already)."""
        self.record.promotion = decision
        try:
            self.log.write(self.record)
        except Exception as write_error:
            print(f"firth: could not add the promotion to run record {self.record.run_id}: {write_error}",
                  file=sys.stderr)

    def __enter__(self) -> "RunRecorder":
        self.log.write(self.record)
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        signum = interrupts.received()
        if exc is not None and (signum is not None or isinstance(exc, KeyboardInterrupt)):
            # whatever the signal made the run raise (Ray's own errors when Ctrl-C reached its processes
            # too), it was stopped on purpose: no traceback, and nothing was published
            self.record.outcome = "cancelled"
            self.record.error = {
                "stage": getattr(exc, STAGE_ATTRIBUTE, None) or "outside a stage", "type": "Cancelled",
                "message": f"{interrupts.signal_name(signum) if signum else 'KeyboardInterrupt'} received: "
                           "the run stopped before publishing", "traceback": ""}
            try:
                exc.firth_run_id = self.run_id  # for the command's one line
            except (AttributeError, TypeError):
                pass
        elif exc is not None:
            self.record.outcome = "failed"
            self.record.error = {
                "stage": getattr(exc, STAGE_ATTRIBUTE, None) or "outside a stage",
                "type": exc_type.__name__,
                "message": str(exc),
                "traceback": "".join(traceback.format_exception(exc_type, exc, tb))[-4000:],
            }
        elif self.record.outcome == "running":  # the block ended without succeeded(): nothing published
            self.record.outcome = "failed"
            self.record.error = {"stage": "outside a stage", "type": "Incomplete",
                                 "message": "the run ended without publishing", "traceback": ""}
        try:
            self.log.write(self.record)
        except Exception as write_error:  # never hide the run's own error behind the record's
            print(f"firth: could not write run record {self.record.run_id}: {write_error}", file=sys.stderr)
            if exc is None:
                raise
