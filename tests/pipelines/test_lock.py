"""The run lock: two processes contend, one runs, the other exits naming the holder; expired locks
are taken over; local and S3 (moto, which enforces If-None-Match and If-Match)."""
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
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


def _plant(store, table, **fields):
    """Write a lock as some other holder left it."""
    import json
    import uuid
    from dataclasses import asdict

    from firth.pipelines.ops.lock import Holder

    now = time.time()
    holder = Holder(**{"owner": f"{socket.gethostname()}:{os.getpid()}", "token": uuid.uuid4().hex,
                       "acquired_at": now, "expires_at": now + 3600, **fields})
    path = Path(store) / "_locks" / f"{table}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(asdict(holder)))
    return holder


def test_a_live_holder_on_this_host_keeps_the_lock_but_a_reused_pid_or_a_dead_one_does_not(tmp_path):
    store = str(tmp_path)
    started = psutil.Process().create_time()
    _plant(store, "t", run_id="alive", pid_started_at=started)  # this very process: alive
    with pytest.raises(LockHeld, match=r"\(run alive,"):
        RunLock(store, "t", run_id="next").acquire()

    # Same PID, but the process holding it started later than the holder did: the holder is gone.
    _plant(store, "t", run_id="reused", pid_started_at=started - 3600)
    lock = RunLock(store, "t", run_id="next")
    lock.acquire()
    assert lock.took_over.run_id == "reused" and lock.current().run_id == "next"
    lock.release()

    # A holder on another host cannot be checked from here: it keeps the lock until it expires.
    _plant(store, "t", run_id="remote", owner="another-host:1", pid_started_at=1.0)
    with pytest.raises(LockHeld, match=r"another-host:1 \(run remote,"):
        RunLock(store, "t", run_id="next").acquire()


@pytest.mark.slow
def test_a_holder_killed_on_this_host_is_taken_over_at_once_naming_its_run(tmp_path):
    store = str(tmp_path / "store")
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, store], cwd=ROOT, text=True, stdout=subprocess.PIPE)
    assert holder.stdout.readline() == "held\n"
    with pytest.raises(LockHeld, match=rf":{holder.pid} \(run crashed,"):  # alive: held
        RunLock(store, "wiki", run_id="next").acquire()
    holder.kill()
    holder.wait()
    lock = RunLock(store, "wiki", ttl_s=3600, run_id="next")
    lock.acquire()  # at once, although the dead holder's lock had an hour to go
    assert lock.took_over.run_id == "crashed" and lock.took_over.owner.endswith(f":{holder.pid}")
    assert lock.current().run_id == "next"
    lock.release()
    assert sorted(p.name for p in (tmp_path / "store" / "_locks").iterdir()) == []


HOLDER = """
import sys, time
from firth.pipelines.ops.lock import RunLock
RunLock(sys.argv[1], "wiki", ttl_s=3600, run_id="crashed").acquire()
print("held", flush=True)
time.sleep(120)
"""


@pytest.mark.slow
def test_an_s3_error_other_than_a_changed_lock_is_raised_not_reported_as_lock_held(own_s3, monkeypatch):
    """Only S3's 412 (the lock changed since it was read) means "held"; a missing bucket is an error."""
    for k, v in own_s3.delta_options.items():
        monkeypatch.setenv(k, v)
    lock = RunLock("s3://own/store", "t", own_s3.delta_options, run_id="first")
    lock.acquire()
    holder, version = lock._read()
    assert lock._replace("not-the-etag", holder) is False  # a real 412 from the server
    lock.fs.rm("own", recursive=True)  # the bucket is gone: a 404, not a contender
    with pytest.raises(FileNotFoundError):
        lock._replace(version, holder)
