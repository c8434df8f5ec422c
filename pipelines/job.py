"""The main job: corpus → statistics (Dask) → training (Ray Train) → evaluation → a new table version.

Nothing is published until every stage has succeeded, and the publish itself is one Delta
commit, so a failed run leaves the table at its previous version. One run per table at a time:
a run holds the table's lock (pipelines/ops/lock.py) from before it writes anything until it has
cleaned up, writes its statistics and checkpoints in a scratch space of its own
(pipelines/ops/scratch.py), and the processes it starts end with it (pipelines/ops/watchdog.py).
SIGINT and SIGTERM cancel it cleanly (pipelines/ops/interrupts.py): its record says "cancelled",
nothing is published, the lock is released. Each stage is one log line as it starts and one as it
ends (logger "firth.pipelines.job"; the CLI shows them on stderr).
"""
from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib.metadata import version as package_version

from firth.pipelines.config import JobConfig
from firth.pipelines.corpus.shards import list_shards
from firth.pipelines.corpus.tokenizer_choice import statistics_artifacts
from firth.pipelines.evaluate import evaluate
from firth.pipelines.statistics.engines import open_engine
from firth.pipelines.statistics.steps import Location, compute_statistics
from firth.schemas import export, tables
from firth.schemas.store import TableStore

log = logging.getLogger(__name__)

@dataclass
class Published:
    table: str
    version: int
    store: str
    metrics: dict[str, float]
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    skipped: dict = field(default_factory=dict)  # bad records and empty shards, when skipping
    run_id: str = ""  # the run record's id (firth.pipelines.ops.run_records; `firth runs show`, `firth report`)
    promotion: str | None = None  # what promote_alias did, in words
    promotion_refused: bool = False  # the gate refused promote_alias (the version is published all the same)
    statistics_uri: str | None = None  # this run's statistics (the table's latest now); None if it counted none


def run(config: JobConfig, *, fault_injection: str | None = None, promote_alias: str | None = None) -> Published:
    """Run every stage under the table's lock (LockHeld, before anything is written, if another run
    holds it), with a run record in the store (firth.pipelines.ops.run_records). `promote_alias`:
    then move that alias to the new version if it passes the config's promotion rules.
    model.use_gpu without GPUs (on the Ray cluster, or here) is a ConfigError before anything is written."""
    from firth.pipelines.ops.interrupts import cancellable
    from firth.pipelines.ops.lock import run_lock
    from firth.pipelines.ops.run_records import RunRecorder, new_run_id
    from firth.pipelines.ops.scratch import RunScratch, ScratchRoots
    from firth.pipelines.ops.watchdog import tie_to_this_process

    if getattr(config.model, "use_gpu", False):  # before the lock, the run record, any statistics: like a config error
        from firth.workers.raytrain.harness import check_gpus

        check_gpus(True)
    run_id, store_uri, storage_options = new_run_id(), config.store.uri, config.store.storage_options
    with cancellable(), run_lock(store_uri, config.table, storage_options, run_id=run_id) as lock:
        tie_to_this_process()  # Dask's, Beam's and Ray's processes end with this one, even if it is killed
        _sweep_dead_runs(config, lock, run_id)
        scratch = RunScratch(ScratchRoots.of(config), run_id)
        with RunRecorder(config.table, config.lineage(), store_uri, storage_options, run_id=run_id) as recorder:
            try:
                published = _run_stages(config, recorder, scratch, fault_injection=fault_injection)
            except BaseException:
                scratch.discard()
                raise
            scratch.keep()
        if promote_alias:
            decision = _promote(config, published.version, promote_alias)
            published.promotion, published.promotion_refused = decision["message"], not decision["promoted"]
            recorder.note_promotion(decision)  # for `firth report`
        return published


def _sweep_dead_runs(config: JobConfig, lock, run_id: str) -> None:
    """Under the lock: mark the table's dead runs abandoned and remove their scratch; say so when
    this run took over a dead run's lock."""
    from firth.pipelines.ops.run_records import RunLog
    from firth.pipelines.ops.scratch import ScratchRoots, published_by, sweep_dead_runs

    dead, roots = lock.took_over, ScratchRoots.of(config)
    if dead is not None:
        state = "its process is gone" if dead.dead_on_this_host() else "its lock expired"
        log.warning("took over table %r from run %s (%s; %s)", config.table, dead.run_id or "?", dead.owner, state)
    swept = sweep_dead_runs(config.table, roots, RunLog(config.store.uri, roots.storage_options), lambda: run_id,
                            dead=(dead.run_id,) if dead and dead.run_id else (),
                            published_by=published_by(config.store.uri, config.table, roots), found_by=f"run {run_id}")
    if swept.abandoned or swept.removed:
        log.warning("marked %d dead run(s) abandoned (%s) and removed %d scratch folder(s) they left",
                    len(swept.abandoned), ", ".join(swept.abandoned) or "-", len(swept.removed))


def _promote(config: JobConfig, version: int, alias: str) -> dict:
    """{"alias", "promoted" (the alias holds the version now), "message", "comparisons" (the gate's, per rule)}"""
    from dataclasses import asdict

    from firth.schemas.promotion import GateRefused, promote

    store = TableStore(config.store.uri, config.store.storage_options)
    try:
        promotion = promote(store, f"{config.table}@{version}", alias, config.promotion.rules)
    except GateRefused as e:
        gate, promoted, message = e.gate, False, f"not promoted: {e}"
    else:
        gate, promoted = promotion.gate, True
        message = (f"promoted {config.table}@{alias} -> {version}" if promotion.moved
                   else f"{config.table}@{alias} already points at {version}")
    return {"alias": alias, "promoted": promoted, "message": message,
            "comparisons": [asdict(c) for c in gate.comparisons]}


def _run_stages(config: JobConfig, recorder, scratch, *, fault_injection: str | None = None) -> Published:
    from firth.pipelines.ops.interrupts import deferred
    from firth.workers.trainers import train  # Ray and torch load only when training starts

    timings = recorder.timings  # filled by _stage; the run record shares it
    storage_options = config.store.storage_options  # firth.schemas.fs translates them for fsspec
    location = Location(scratch.statistics_uri, storage_options, cache_uri=scratch.roots.cache)

    summary = vocabulary = None  # models that read the corpus themselves (encoders) skip the statistics
    needs_statistics = getattr(config.model, "needs_statistics", True)

    def stage(name: str):  # timed, announced, and recorded in the run record as it starts
        return _stage(name, timings, on_start=recorder.enter_stage)

    with stage("statistics" if needs_statistics else "corpus"):
        shards = list_shards(config.corpus)
        recorder.note_shards([{"uri": s.uri, "size": s.size, "fingerprint": s.fingerprint} for s in shards])
        if needs_statistics:
            with open_engine(config.statistics, warm_imports=[compute_statistics.__module__]) as engine:
                summary = compute_statistics(shards, config, engine, location)
            vocabulary = tables.read_parquet(location("vocabulary.parquet"), tables.VOCABULARY, storage_options)

    # A checkpoint folder per run: a worker failure resumes within the run, but the next
    # nightly run trains afresh instead of resuming this one. Removed once published.
    run_id = recorder.run_id
    with stage("training"):
        trained = train(config, summary, checkpoint_uri=scratch.checkpoint_uri, fault_injection=fault_injection)

    metrics = dict(trained.metrics)
    if trained.epoch_losses:
        metrics["final_loss"] = float(trained.epoch_losses[-1])
    if config.evaluation.enabled and trained.vectors is not None:
        with stage("evaluation"):
            metrics |= evaluate(vocabulary["token"].to_pylist(), trained.vectors, config.evaluation.analogy_vocab)

    with stage("publish"):
        table = trained.table if trained.table is not None else export.word_table(
            vocabulary["token"], trained.vectors, vocabulary["id"], vocabulary["count"])
        metadata = {
            "model": config.model.model,
            "config": config.lineage(),
            "corpus": {"shards": [{"uri": s.uri, "size": s.size, "fingerprint": s.fingerprint} for s in shards],
                       **({"documents": summary.n_documents, "tokens": summary.n_tokens,
                           "bad_records": summary.bad_records, "empty_shards": summary.empty_shards,
                           "unreadable_shards": summary.unreadable_shards,
                           "processed_shards": summary.processed_shards,
                           "reused_shards": summary.reused_shards} if summary else {})},
            "vocab_size": summary.vocab_size if summary else None,
            "metrics": metrics,
            "training": {"epoch_losses": [float(x) for x in trained.epoch_losses], "workers": trained.workers},
            "timings": timings,
            "run_id": run_id,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "firth_version": package_version("firth"),
            **trained.metadata,
        }
        store = TableStore(config.store.uri, config.store.storage_options)
        artifacts = {**statistics_artifacts(location.uri, storage_options), **trained.artifacts}  # + tokenizer.json
        with deferred():  # a signal now lets the commit and its record finish: never a version recorded "cancelled"
            version = store.publish(config.table, table, metadata, artifacts=artifacts)
            recorder.succeeded(version, metadata)
    skipped = {"bad_records": summary.bad_records, "empty_shards": summary.empty_shards,
               "unreadable_shards": summary.unreadable_shards, "problems": summary.problems} \
        if summary and (summary.bad_records or summary.empty_shards or summary.unreadable_shards) else {}
    return Published(config.table, version, config.store.uri, metrics, timings, skipped, run_id,
                     statistics_uri=location.uri if summary else None)


@contextmanager
def _stage(name: str, timings: dict[str, float], on_start=None):
    if on_start is not None:
        on_start(name)
    log.info("%s ...", name)
    start = time.perf_counter()
    try:
        yield
    except BaseException as e:
        if not hasattr(e, "firth_stage"):  # the innermost stage; firth.pipelines.ops.run_records records it
            try:
                e.firth_stage = name
            except (AttributeError, TypeError):  # an exception type that takes no attributes
                pass
        raise
    finally:
        timings[name] = round(time.perf_counter() - start, 3)
    log.info("%s done in %.1f s", name, timings[name])
