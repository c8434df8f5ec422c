"""Whole runs under faults: real `firth run` processes on the shipped sample corpus (2 shards, dim 8,
2 epochs), two at once on one table, or killed (SIGKILL of the driver) in statistics, training and
publish. Invariants: one run per table (the other exits 3 naming the holder and writes nothing);
every visible version is one whole publish; no Ray, Dask or watchdog process of a killed run is
alive 10 s after the kill; its record ends "abandoned", naming the stage; the next run takes the
lock over at once; what a dead run left is removed by the next run or `firth tables gc`."""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import pyarrow.parquet as pq
import pytest
import yaml

from firth.pipelines.ops.lock import RunLock
from firth.pipelines.ops.watchdog import TAG_VARIABLE
from firth.schemas.consumer import open_embeddings
from firth.schemas.store import TableStore
from tests.helpers import ROOT, SAMPLE_SHARDS
from tests.helpers.statistics import run_statistics

pytestmark = pytest.mark.slow

TABLE = "faults"
STATISTICS = {"n_workers": 1, "min_count": 5, "window": 3, "n_buckets": 2}
GONE_WITHIN_S = 10  # the acceptance bound: no process of a killed run alive 10 s after the kill


def _config(tmp_path) -> Path:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump({
        "table": TABLE, "corpus": {"shards": [str(s) for s in SAMPLE_SHARDS[:2]]}, "statistics": STATISTICS,
        "model": {"dim": 8, "epochs": 2, "num_workers": 1, "x_max": 10}, "store": {"uri": str(tmp_path / "store")}}))
    return path


class FirthRun:
    """`firth run CONFIG` in a process of its own; its stderr lines (tqdm's \r updates too) collected.
    With `stop_at`, the driver is stopped (SIGSTOP) the moment a line contains that text, so that
    `kill()` can look at its processes at leisure and kill it exactly there."""

    def __init__(self, config: Path, stop_at: str | None = None):
        self.process = subprocess.Popen([sys.executable, "-m", "firth.pipelines.cli.main", "run", str(config)],
                                        cwd=ROOT, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.lines: list[str] = []
        self.stopped = threading.Event()
        self._reader = threading.Thread(target=self._read, args=(stop_at,), daemon=True)
        self._reader.start()

    def _read(self, stop_at: str | None) -> None:
        for line in self.process.stderr:
            if stop_at and stop_at in line and not self.stopped.is_set():
                os.kill(self.process.pid, signal.SIGSTOP)
                self.stopped.set()
            self.lines.append(line)

    def wait_for(self, text: str, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            assert self.process.poll() is None, f"the run ended before {text!r}:\n{self.stderr()}"
            assert time.monotonic() < deadline, f"no {text!r} within {timeout} s:\n{self.stderr()}"
            time.sleep(0.02)

    def finish(self, timeout: float = 300) -> tuple[int, str, str]:
        out = self.process.stdout.read()
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return code, out, self.stderr()

    def stderr(self) -> str:
        return "".join(self.lines)

    def kill(self, timeout: float = 300) -> tuple[float, list[str]]:
        """Once stopped, SIGKILL the driver; (seconds until none of its processes lives, what they were)."""
        assert self.stopped.wait(timeout), f"never reached the stop line:\n{self.stderr()}"
        started_by_it = _processes_of(self.process.pid)
        assert started_by_it, "the driver had started no process yet: nothing to test"
        kinds = sorted({_describe(p) for p in started_by_it})
        os.kill(self.process.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        self.process.wait()
        while time.monotonic() - killed_at < GONE_WITHIN_S + 5:
            alive = [p for p in started_by_it + _processes_of(self.process.pid) if _alive(p)]
            if not alive:
                break
            time.sleep(0.1)
        gone_after = time.monotonic() - killed_at
        assert not alive, f"alive {gone_after:.1f} s after the kill: {[_describe(p) for p in alive]}"
        return gone_after, kinds


def _processes_of(driver_pid: int) -> list[psutil.Process]:
    """The driver's descendants and every process carrying its watchdog tag (re-parented ones too)."""
    found = {}
    try:
        found = {p.pid: p for p in psutil.Process(driver_pid).children(recursive=True)}
    except psutil.NoSuchProcess:
        pass
    for process in psutil.process_iter():
        try:
            if process.environ().get(TAG_VARIABLE, "").startswith(f"{driver_pid}-"):
                found[process.pid] = process
                found.update({c.pid: c for c in process.children(recursive=True)})
        except psutil.Error:
            continue
    return list(found.values())


def _alive(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _describe(process: psutil.Process) -> str:
    """A short name of what the process is (Ray's titles, Dask's spawned workers, our watchdog)."""
    try:
        command = " ".join(process.cmdline())
    except psutil.Error:
        return "?"
    for name, kind in [("raylet", "raylet"), ("gcs_server", "gcs_server"), ("dashboard.py", "dashboard"),
                       ("ray-dashboard-", "dashboard head"), ("log_monitor", "log_monitor"), ("monitor.py", "monitor"),
                       ("ray::", "ray::" + command.partition("ray::")[2].split(" ")[0].split(".")[0]),
                       ("multiprocessing.spawn", "spawned worker (Dask)"), ("resource_tracker", "resource_tracker"),
                       ("forkserver", "forkserver"), ("ops.watchdog", "watchdog")]:
        if name in command:
            return kind
    return command[:40]


def _scratch(store: Path) -> set[str]:
    """The run-scoped folders in the store: statistics/<run id>, checkpoints/<run id>."""
    folders = {"statistics": store / "_statistics" / TABLE / "runs", "checkpoints": store / "_checkpoints" / TABLE}
    return {f"{kind}/{p.name}" for kind, folder in folders.items() if folder.exists() for p in folder.iterdir()}


def _holder(store: Path) -> str:
    return json.loads((store / "_locks" / f"{TABLE}.lock").read_text())["run_id"]


def _record(store: Path, run_id: str) -> dict:
    return json.loads((store / "_runs" / TABLE / f"{run_id}.json").read_text())


def _assert_versions_whole(store: Path, expected_tokens: list[str]) -> list[int]:
    """Every visible version is exactly one publish: the vocabulary, once each, and readable vectors."""
    table_store = TableStore(str(store))
    if TABLE not in table_store.tables():
        return []
    versions = [v.version for v in table_store.versions(TABLE)]
    for version in versions:
        embeddings = open_embeddings(str(store), f"{TABLE}@{version}")
        assert embeddings.tokens == expected_tokens, f"version {version} does not hold one run's vocabulary"
        assert embeddings.vectors.shape == (len(expected_tokens), 8) and np.isfinite(embeddings.vectors).all()
    return versions


@pytest.fixture(scope="module")
def expected_tokens(tmp_path_factory) -> list[str]:
    """The vocabulary a clean run of the config counts (in-process statistics: no engine needed)."""
    output = tmp_path_factory.mktemp("reference")
    run_statistics(output, [str(s) for s in SAMPLE_SHARDS[:2]], **STATISTICS, cache=False)
    return pq.read_table(output / "vocabulary.parquet")["token"].to_pylist()


def test_two_concurrent_runs_one_publishes_the_other_exits_naming_it_and_writes_nothing(tmp_path, expected_tokens):
    config, store = _config(tmp_path), tmp_path / "store"
    first = FirthRun(config)
    first.wait_for("firth: statistics ...")  # the lock is taken before anything else is written
    first_run = _holder(store)
    second = FirthRun(config)
    code, out, err = second.finish(timeout=120)
    assert first.process.poll() is None, "the first run ended before the second tried: nothing was contended"
    assert code == 3, err
    assert f"table '{TABLE}' is locked by" in err and f"(run {first_run}," in err, err
    assert "published" not in out and "Traceback" not in err

    code, out, err = first.finish()
    assert code == 0, err
    assert f"published {TABLE}@0" in out
    assert _assert_versions_whole(store, expected_tokens) == [0]
    assert sorted(p.name for p in (store / "_runs" / TABLE).iterdir()) == [f"{first_run}.json"]  # none of the second
    assert _record(store, first_run)["outcome"] == "succeeded"
    # what stays: the statistics swapped in, the shared cache; no checkpoints, no lock
    statistics = store / "_statistics" / TABLE
    assert json.loads((statistics / "latest.json").read_text())["run_id"] == first_run
    assert _scratch(store) == {f"statistics/{first_run}"}
    assert list((store / "_locks").iterdir()) == []


def test_a_run_killed_in_each_stage_leaves_no_process_no_lock_and_no_half_version(tmp_path, expected_tokens):
    config, store = _config(tmp_path), tmp_path / "store"
    measured = {}
    killed = []
    previous = None
    for stage, moment in [("statistics", "EncodeShards"), ("training", "GloVe epoch 1/2"),
                          ("publish", "firth: publish ...")]:
        run = FirthRun(config, stop_at=moment)
        if previous is not None:  # the dead run's lock is taken over at once, naming it
            run.wait_for(f"took over table '{TABLE}' from run {previous}", timeout=60)
        gone_after, processes = run.kill()
        run_id = _holder(store)
        measured[stage] = (round(gone_after, 1), processes)
        record = _record(store, run_id)
        assert (record["outcome"], record["stage"]) == ("running", stage)  # dead, so far unknown as such
        _assert_versions_whole(store, expected_tokens)
        killed.append((run_id, stage))
        previous = run_id
    print(f"\nseconds until no process of the killed run was alive, and what it had started: {measured}")
    assert "raylet" in measured["training"][1] and "spawned worker (Dask)" in measured["statistics"][1]

    # The first two dead runs were swept by the run after each; the last one is for gc.
    assert _scratch(store) <= {f"{kind}/{killed[-1][0]}" for kind in ("statistics", "checkpoints")}
    print(f"scratch left by the dead runs before gc: {sorted(_scratch(store))}")
    abandoned = [_record(store, run_id) for run_id, _ in killed[:2]]
    assert [(r["outcome"], r["error"]["stage"]) for r in abandoned] == [("abandoned", "statistics"),
                                                                        ("abandoned", "training")]
    gc = subprocess.run([sys.executable, "-m", "firth.pipelines.cli.main", "tables", "gc", TABLE, "--json",
                         "--store", str(store)], cwd=ROOT, text=True, capture_output=True, timeout=120, check=False)
    assert gc.returncode == 0, gc.stderr
    last, _ = killed[-1]
    assert json.loads(gc.stdout)["abandoned_runs"] == [last]
    versions = _assert_versions_whole(store, expected_tokens)  # killed before its commit: none; after: one, whole
    record = _record(store, last)
    assert (record["outcome"], record["error"]["stage"], record["version"]) == (
        "abandoned", "publish", versions[-1] if versions else None)
    latest = store / "_statistics" / TABLE / "latest.json"  # a kill after the swap keeps the swapped-in statistics
    kept = {f"statistics/{last}"} if latest.exists() and json.loads(latest.read_text())["run_id"] == last else set()
    assert _scratch(store) == kept
    print(f"publish kill landed {'after' if versions else 'before'} the commit; versions visible: {versions}")

    lock = RunLock(str(store), TABLE, run_id="next")
    lock.acquire()  # the last dead run's lock does not block the next run either
    assert lock.took_over.run_id == last
    lock.release()
