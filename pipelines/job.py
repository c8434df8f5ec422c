"""The main job: corpus → statistics (Dask) → training (Ray Train) → evaluation → a new table version.

Nothing is published until every stage has succeeded, and the publish itself is one Delta
commit, so a failed run leaves the table at its previous version.
"""
from __future__ import annotations

import sys
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
from firth.schemas.fs import filesystem, join
from firth.schemas.store import TableStore


@dataclass
class Published:
    table: str
    version: int
    store: str
    metrics: dict[str, float]
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    skipped: dict = field(default_factory=dict)  # bad records and empty shards, when skipping
    run_id: str = ""  # the run record's id (firth.pipelines.ops.run_records; `firth runs show`, `firth report`)


def run(config: JobConfig, *, fault_injection: str | None = None) -> Published:
    """Run every stage, with a run record in the store (firth.pipelines.ops.run_records) written at start and end."""
    from firth.pipelines.ops.run_records import RunRecorder

    with RunRecorder(config.table, config.lineage(), config.store.uri, config.store.storage_options) as recorder:
        return _run_stages(config, recorder, fault_injection=fault_injection)


def _run_stages(config: JobConfig, recorder, *, fault_injection: str | None = None) -> Published:
    from firth.workers.trainers import train  # Ray and torch load only when training starts

    timings = recorder.timings  # filled by _stage; the run record shares it
    storage_options = config.store.storage_options  # firth.schemas.fs translates them for fsspec
    location = Location(config.statistics_uri, storage_options)

    summary = vocabulary = None  # models that read the corpus themselves (encoders) skip the statistics
    needs_statistics = getattr(config.model, "needs_statistics", True)
    with _stage("statistics" if needs_statistics else "corpus", timings):
        shards = list_shards(config.corpus)
        recorder.note_shards([{"uri": s.uri, "size": s.size, "fingerprint": s.fingerprint} for s in shards])
        if needs_statistics:
            with open_engine(config.statistics, warm_imports=[compute_statistics.__module__]) as engine:
                summary = compute_statistics(shards, config, engine, location)
            vocabulary = tables.read_parquet(location("vocabulary.parquet"), tables.VOCABULARY, storage_options)

    # A checkpoint folder per run: a worker failure resumes within the run, but the next
    # nightly run trains afresh instead of resuming this one. Removed once published.
    run_id = recorder.run_id
    checkpoint_uri = join(config.checkpoint_uri, run_id)
    with _stage("training", timings):
        trained = train(config, summary, checkpoint_uri=checkpoint_uri, fault_injection=fault_injection)

    metrics = dict(trained.metrics)
    if trained.epoch_losses:
        metrics["final_loss"] = float(trained.epoch_losses[-1])
    if config.evaluation.enabled and trained.vectors is not None:
        with _stage("evaluation", timings):
            metrics |= evaluate(vocabulary["token"].to_pylist(), trained.vectors, config.evaluation.analogy_vocab)

    with _stage("publish", timings):
        table = trained.table if trained.table is not None else export.word_table(
            vocabulary["token"], trained.vectors, vocabulary["id"], vocabulary["count"])
        metadata = {
            "model": config.model.model,
            "config": config.lineage(),
            "corpus": {"shards": [{"uri": s.uri, "size": s.size, "fingerprint": s.fingerprint} for s in shards],
                       **({"documents": summary.n_documents, "tokens": summary.n_tokens,
                           "bad_records": summary.bad_records, "empty_shards": summary.empty_shards,
                           "processed_shards": summary.processed_shards,
                           "reused_shards": summary.reused_shards} if summary else {})},
            "vocab_size": summary.vocab_size if summary else None,
            "metrics": metrics,
            "training": {"epoch_losses": [float(x) for x in trained.epoch_losses]},
            "timings": timings,
            "run_id": run_id,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "firth_version": package_version("firth"),
            **trained.metadata,
        }
        store = TableStore(config.store.uri, config.store.storage_options)
        artifacts = {**statistics_artifacts(location.uri, storage_options), **trained.artifacts}  # + tokenizer.json
        version = store.publish(config.table, table, metadata, artifacts=artifacts)
        recorder.succeeded(version, metadata)
    fs, path = filesystem(checkpoint_uri, storage_options)
    if fs.exists(path):  # models without checkpoints (the count-based ones) leave none
        fs.rm(path, recursive=True)
    skipped = {"bad_records": summary.bad_records, "empty_shards": summary.empty_shards,
               "problems": summary.problems} if summary and (summary.bad_records or summary.empty_shards) else {}
    return Published(config.table, version, config.store.uri, metrics, timings, skipped, run_id)


@contextmanager
def _stage(name: str, timings: dict[str, float]):
    print(f"firth: {name} ...", file=sys.stderr, flush=True)
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
    print(f"firth: {name} done in {timings[name]:.1f} s", file=sys.stderr, flush=True)
