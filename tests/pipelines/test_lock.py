"""The run lock: two processes contend, one runs, the other exits naming the holder; expired locks
are taken over; local and S3 (moto, which enforces If-None-Match and If-Match)."""
import subprocess
import sys
import time

import pytest

from firth.pipelines.ops.lock import LockHeld, RunLock, run_lock
from tests.helpers import ROOT

CONTENDER = """
import sys, time

from firth.pipelines.ops.lock import LockHeld, run_lock
try:
    with run_lock(sys.argv[1], "wiki", run_id=sys.argv[2]):
        print("acquired", flush=True)
        time.sleep(4)
except LockHeld as e:
    print(f"firth: {e}", file=sys.stderr)
    sys.exit(3)
"""


@pytest.mark.slow
def test_two_processes_contend_one_gets_the_lock_the_other_exits_naming_it(tmp_path):
    store = str(tmp_path / "store")
    processes = [subprocess.Popen([sys.executable, "-c", CONTENDER, store, f"run-{n}"], cwd=ROOT, text=True,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for n in range(2)]
    results = [(p.wait(timeout=60), *p.communicate()) for p in processes]
    codes = sorted(code for code, _, _ in results)
    assert codes == [0, 3], results
    winner = next(n for n, (code, _, _) in enumerate(results) if code == 0)
    loser_err = results[1 - winner][2]
    assert f"table 'wiki' is locked by " in loser_err and f"(run run-{winner}," in loser_err
    assert str(tmp_path / "store" / "_locks" / "wiki.lock") in loser_err  # what to delete if the holder is dead
    assert results[winner][1] == "acquired\n"
    assert sorted(p.name for p in (tmp_path / "store" / "_locks").iterdir()) == []  # released, no temp files left


def test_an_expired_lock_is_taken_over_and_the_old_holder_cannot_release_the_new_one(tmp_path):
    store = str(tmp_path)
    crashed = RunLock(store, "t", ttl_s=0.05, run_id="crashed")
    crashed.acquire()
    with pytest.raises(LockHeld, match="run crashed"):
        RunLock(store, "t", run_id="early").acquire()
    time.sleep(0.1)
    with run_lock(store, "t", run_id="next") as lock:
        crashed.release()  # a late release by the crashed holder leaves the new lock alone
        assert lock._read()[0].run_id == "next"
        with pytest.raises(LockHeld, match="run next"):
            RunLock(store, "t").acquire()
    assert not (tmp_path / "_locks" / "t.lock").exists()
    assert sorted(p.name for p in (tmp_path / "_locks").iterdir()) == []


@pytest.mark.slow
def test_the_lock_on_s3_uses_conditional_writes(s3_bucket):
    bucket, _, delta_options = s3_bucket
    store = f"s3://{bucket}/store"
    first = RunLock(store, "t", delta_options, ttl_s=0.5, run_id="first")
    first.acquire()
    with pytest.raises(LockHeld, match="run first"):
        RunLock(store, "t", delta_options, run_id="second").acquire()
    first.refresh()  # still ours: expiry pushed on
    time.sleep(0.6)
    second = RunLock(store, "t", delta_options, run_id="second")
    second.acquire()  # expired: replaced with If-Match on the stale ETag
    with pytest.raises(LockHeld, match="run second"):
        first.refresh()
    first.release()
    assert second._read()[0].run_id == "second"
    second.release()
    assert second._read() == (None, None)
