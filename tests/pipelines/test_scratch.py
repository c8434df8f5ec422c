"""Run-scoped scratch: swapped in on success, removed on failure, and what dead runs left is swept
(their records marked abandoned) by the next run or `firth tables gc`, local and on S3 (moto)."""
import json
import os
import time

import pytest

from firth.pipelines.cli.main import main
from firth.pipelines.ops.lock import RunLock
from firth.pipelines.ops.run_records import RunLog, RunRecord
from firth.pipelines.ops.scratch import RunScratch, ScratchRoots, collect_dead_runs
from firth.schemas.fs import filesystem, join
from firth.schemas.store import TableStore
from tests.helpers.tables import word_table

TABLE = "t"


def _touch(roots: ScratchRoots, *uris: str) -> None:
    for uri in uris:
        fs, path = filesystem(join(uri, "part.parquet"), roots.storage_options)
        fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        fs.pipe_file(path, b"scratch")


def _record(log: RunLog, run_id: str, outcome: str, stage: str = "training") -> None:
    log.write(RunRecord(run_id=run_id, table=TABLE, outcome=outcome, started_at="", updated_at="", config={},
                        stage=stage))


def _scratch(roots: ScratchRoots) -> set[str]:
    found = set()
    for kind, folder in [("statistics", roots.statistics_runs), ("checkpoints", roots.checkpoints)]:
        fs, path = filesystem(folder, roots.storage_options)
        fs.invalidate_cache()
        if fs.exists(path):
            found |= {f"{kind}/{p.rstrip('/').rsplit('/', 1)[-1]}" for p in fs.ls(path, detail=False)}
    return found


def test_a_success_swaps_its_statistics_in_and_a_failure_leaves_nothing(tmp_path):
    roots = ScratchRoots.default(str(tmp_path), TABLE, {})
    first, second, failed = (RunScratch(roots, run_id) for run_id in ("r1", "r2", "r3"))
    for scratch in (first, second, failed):
        _touch(roots, scratch.statistics_uri, scratch.checkpoint_uri)
    first.keep()
    assert roots.latest_statistics() == ("r1", first.statistics_uri)
    assert _scratch(roots) == {"statistics/r1", "statistics/r2", "checkpoints/r2", "statistics/r3", "checkpoints/r3"}
    second.keep()  # replaces r1's statistics, which go
    assert roots.latest_statistics() == ("r2", second.statistics_uri)
    failed.discard()
    assert _scratch(roots) == {"statistics/r2"}


@pytest.mark.parametrize("where", ["local", pytest.param("s3", marks=pytest.mark.slow)])
def test_gc_marks_dead_runs_abandoned_and_removes_their_scratch_but_not_the_live_run_s(where, tmp_path, request):
    if where == "s3":
        bucket, _, options = request.getfixturevalue("s3_bucket")
        store_uri = f"s3://{bucket}/store"
    else:
        store_uri, options = str(tmp_path / "store"), {}
    roots, log = ScratchRoots.default(store_uri, TABLE, options), RunLog(store_uri, options)
    # "published" committed version 0 and died before it could record that
    TableStore(store_uri, options).publish(TABLE, word_table(4, 2, seed=0), {"run_id": "published"})
    _record(log, "killed", "running")
    _record(log, "published", "running", stage="publish")
    _record(log, "failed", "failed")  # its cleanup failed: scratch left, record already final
    _record(log, "succeeded", "succeeded")  # its statistics are the table's latest
    _record(log, "live", "running")
    _record(log, "no-scratch", "running")  # killed before writing anything
    _touch(roots, *(roots.statistics_of(r) for r in ("killed", "published", "failed", "succeeded", "live", "nobody")),
           *(roots.checkpoints_of(r) for r in ("killed", "live")))
    RunScratch(roots, "succeeded").keep()
    lock = RunLock(store_uri, TABLE, options, run_id="live")
    lock.acquire()  # this process: a live holder

    dry = collect_dead_runs(store_uri, TABLE, roots, orphan_grace_hours=24, dry_run=True)
    assert sorted(dry.abandoned) == ["killed", "no-scratch", "published"]
    assert [r.outcome for r in log.list(TABLE)].count("running") == 4  # a dry run changes nothing
    swept = collect_dead_runs(store_uri, TABLE, roots, orphan_grace_hours=24)
    assert (sorted(swept.abandoned), sorted(swept.removed)) == (sorted(dry.abandoned), sorted(dry.removed))
    assert sorted(swept.abandoned) == ["killed", "no-scratch", "published"]
    assert _scratch(roots) == {"statistics/succeeded", "statistics/live", "checkpoints/live", "statistics/nobody"}
    killed, published = log.read(TABLE, "killed"), log.read(TABLE, "published")
    assert (killed.outcome, killed.error["stage"], killed.version) == ("abandoned", "training", None)
    assert (published.outcome, published.error["stage"], published.version) == ("abandoned", "publish", 0)
    assert "firth tables gc" in killed.error["message"]
    assert log.read(TABLE, "live").outcome == "running" and log.read(TABLE, "failed").outcome == "failed"

    # Scratch no record names goes once older than the grace period; the live run's, never.
    if where == "local":
        old = time.time() - 25 * 3600
        nobody = tmp_path / "store" / "_statistics" / TABLE / "runs" / "nobody"
        for path in [*nobody.rglob("*"), nobody]:
            os.utime(path, (old, old))
        grace = 24
    else:
        grace = 0  # moto's LastModified cannot be set back
    assert collect_dead_runs(store_uri, TABLE, roots, orphan_grace_hours=grace).removed == [
        roots.statistics_of("nobody")]
    lock.release()
    assert _scratch(roots) == {"statistics/succeeded", "statistics/live", "checkpoints/live"}


def test_the_gc_command_sweeps_a_table_whose_every_run_died(tmp_path, capsys):
    store_uri = str(tmp_path / "store")
    roots, log = ScratchRoots.default(store_uri, TABLE, {}), RunLog(store_uri)
    _record(log, "killed", "running", stage="statistics")
    _touch(roots, roots.statistics_of("killed"))
    assert main(["tables", "gc", TABLE, "--store", store_uri, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["abandoned_runs"] == ["killed"] and out["removed_scratch"] == [roots.statistics_of("killed")]
    assert log.read(TABLE, "killed").outcome == "abandoned" and _scratch(roots) == set()
    assert main(["tables", "gc", "nothing-here", "--store", store_uri]) == 2  # a name with nothing: an error
    assert "no table 'nothing-here'" in capsys.readouterr().err
    assert main(["runs", "list", "--store", store_uri]) == 0
    listed = capsys.readouterr().out
    assert "killed  t  abandoned" in listed and "died in statistics: Abandoned" in listed
