"""Run records: written at start and end, failures name their stage, listed by the CLI, local and S3."""
import json

import pytest

from firth.pipelines.cli.main import main
from firth.pipelines.config import load_config
from firth.pipelines.corpus.shards import CorpusError
from firth.pipelines.job import _stage, run
from firth.pipelines.ops.run_records import RunLog, RunRecorder
from tests.helpers import write_job


def test_a_recorder_writes_running_then_succeeded_with_the_stage_timings(tmp_path):
    store = str(tmp_path / "store")
    log = RunLog(store)
    with RunRecorder("t", {"table": "t"}, store) as recorder:
        assert [(r.run_id, r.outcome) for r in log.list("t")] == [(recorder.run_id, "running")]
        with _stage("statistics", recorder.timings):
            recorder.note_shards([{"uri": "a", "size": 1, "fingerprint": "sha256:x"}])
        with _stage("publish", recorder.timings):
            recorder.succeeded(3, {"metrics": {"m": 0.5}, "training": {"epoch_losses": [2.0, 1.0]}})
    record = log.get(recorder.run_id)
    assert record.outcome == "succeeded" and record.version == 3 and record.error is None
    assert list(record.timings) == ["statistics", "publish"] and all(s >= 0 for s in record.timings.values())
    assert record.metrics == {"m": 0.5} and record.epoch_losses == [2.0, 1.0] and len(record.shards) == 1
    assert sorted(p.name for p in (tmp_path / "store" / "_runs" / "t").iterdir()) == [f"{recorder.run_id}.json"]


def test_a_failure_records_the_innermost_stage_and_the_error_and_propagates(tmp_path):
    store = str(tmp_path / "store")
    with pytest.raises(ZeroDivisionError):
        with RunRecorder("t", {}, store) as recorder:
            with _stage("statistics", recorder.timings):
                pass
            with _stage("training", recorder.timings):
                1 / 0
    record = RunLog(store).get(recorder.run_id)
    assert record.outcome == "failed" and record.version is None
    assert record.failed_stage == "training"
    assert record.error["type"] == "ZeroDivisionError" and "division by zero" in record.error["message"]
    assert "1 / 0" in record.error["traceback"]
    assert list(record.timings) == ["statistics", "training"]  # the failed stage's time is kept too


def test_a_block_that_ends_without_publishing_is_a_failure(tmp_path):
    with RunRecorder("t", {}, str(tmp_path)) as recorder:
        pass
    assert RunLog(str(tmp_path)).get(recorder.run_id).outcome == "failed"


@pytest.mark.slow
def test_a_failed_job_run_records_the_statistics_stage_and_the_cli_shows_it(tmp_path, capsys):
    path = write_job(tmp_path, {"table": "broken", "corpus": {"shards": ["missing/*.jsonl"]}})
    config = load_config(path)
    with pytest.raises(CorpusError, match="matches no file"):
        run(config)
    (record,) = RunLog(config.store.uri).list()
    assert (record.table, record.outcome, record.failed_stage, record.error["type"]) == (
        "broken", "failed", "statistics", "CorpusError")
    assert record.config == config.lineage()

    capsys.readouterr()
    assert main(["runs", "list", "--store", config.store.uri]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(record.run_id) and "failed in statistics: CorpusError" in line
    assert main(["runs", "show", record.run_id, "--json", "--store", config.store.uri]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["run_id"] == record.run_id and shown["error"]["stage"] == "statistics"
    assert main(["runs", "show", "20990101T000000-nothere", "--store", config.store.uri]) == 2
    err = capsys.readouterr().err
    assert "no run '20990101T000000-nothere'" in err and record.run_id in err  # names the latest runs


@pytest.mark.slow
def test_runs_are_listed_oldest_first_across_tables_and_by_table_on_s3(s3_bucket):
    bucket, _, delta_options = s3_bucket
    store = f"s3://{bucket}/store"
    ids = []
    for table in ["b", "a", "b"]:
        with RunRecorder(table, {}, store, delta_options) as recorder:
            recorder.succeeded(len(ids), {})
        ids.append(recorder.run_id)
    log = RunLog(store, delta_options)
    assert [r.run_id for r in log.list()] == sorted(ids)
    assert [r.run_id for r in log.list("b")] == sorted([ids[0], ids[2]])
    assert log.get(ids[1]).table == "a"
    assert log.previous_success(log.get(ids[2])).run_id == ids[0]
