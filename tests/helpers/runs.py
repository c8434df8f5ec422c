"""Real `firth run` processes for the tests that stop, kill or signal them, and the processes a run
started (its Ray, Dask and watchdog), found by ancestry and by the watchdog's tag."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

from firth.pipelines.ops.watchdog import TAG_VARIABLE
from tests.helpers import ROOT

GONE_WITHIN_S = 10  # the acceptance bound: no process of an ended run alive 10 s after it ended


class FirthRun:
    """`firth run CONFIG [ARGS]` in a process of its own, stdout and stderr pipes (not a terminal);
    its stderr lines collected as written (bytes decoded, so a carriage return stays visible).
    With `stop_at`, the driver is stopped (SIGSTOP) the moment a line contains that text, so that
    `kill()` can look at its processes at leisure and kill it exactly there. `new_session`: the
    run leads a process group of its own, as a command started from a shell does, so that
    `signal_group` reaches it and everything it started, as Ctrl-C on a terminal does."""

    def __init__(self, config: Path, *args: str, stop_at: str | None = None, new_session: bool = False):
        self.process = subprocess.Popen([sys.executable, "-m", "firth.pipelines.cli.main", "run", str(config), *args],
                                        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                        start_new_session=new_session)
        self.lines: list[str] = []
        self.stopped = threading.Event()
        self._reader = threading.Thread(target=self._read, args=(stop_at,), daemon=True)
        self._reader.start()

    def _read(self, stop_at: str | None) -> None:
        for raw in self.process.stderr:
            line = raw.decode(errors="replace")
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
        out = self.process.stdout.read().decode(errors="replace")
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return code, out, self.stderr()

    def stderr(self) -> str:
        return "".join(self.lines)

    def kill(self, timeout: float = 300) -> tuple[float, list[str]]:
        """Once stopped, SIGKILL the driver; (seconds until none of its processes lives, what they were)."""
        assert self.stopped.wait(timeout), f"never reached the stop line:\n{self.stderr()}"
        started_by_it = processes_of(self.process.pid)
        assert started_by_it, "the driver had started no process yet: nothing to test"
        kinds = sorted({describe(p) for p in started_by_it})
        os.kill(self.process.pid, signal.SIGKILL)
        ended_at = time.monotonic()
        self.process.wait()
        return assert_all_end(self.process.pid, started_by_it, ended_at), kinds


def assert_all_end(driver_pid: int, started_by_it: list[psutil.Process], ended_at: float) -> float:
    """Wait until none of `started_by_it` (and nothing else the ended driver started) lives; the
    seconds that took since `ended_at`, failing past GONE_WITHIN_S (+5 s of slack for a loaded machine)."""
    while time.monotonic() - ended_at < GONE_WITHIN_S + 5:
        alive = [p for p in started_by_it + processes_of(driver_pid) if alive_now(p)]
        if not alive:
            break
        time.sleep(0.1)
    gone_after = time.monotonic() - ended_at
    assert not alive, f"alive {gone_after:.1f} s after the driver ended: {[describe(p) for p in alive]}"
    return gone_after


def processes_of(driver_pid: int) -> list[psutil.Process]:
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


def alive_now(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def describe(process: psutil.Process) -> str:
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
