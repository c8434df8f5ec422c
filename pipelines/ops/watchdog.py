"""The processes a run starts end with its driver, even when the driver is killed (SIGKILL).

A local Ray (raylet, GCS, dashboard, its agents and workers), a Dask LocalCluster (nannies,
workers) and Beam's worker processes are started by the driver, but not all of them die with it:
Ray's raylet does (it is tied to the driver by the kernel), but its DashboardAgent and
RuntimeEnvAgent, re-parented to init, outlived a SIGKILLed driver by 8 to more than 60 s.
So `tie_to_this_process()` starts this module, once per driver process, as a small watchdog in
its own session (a Ctrl-C or a kill of the driver's process group does not reach it). While the
driver lives, the watchdog notes the driver's descendants every SNAPSHOT_S; when the driver has
ended, however it ended, it ends every process it noted that still lives, every process carrying
the driver's tag (below), and all their descendants: SIGTERM, and SIGKILL to those alive
TERM_GRACE_S later. The tag, FIRTH_DRIVER=<pid>-<random> in the driver's environment from then
on, catches processes started since the last snapshot: every launcher passes the environment on.
(It alone is not enough: a process that sets its title, as Ray's agents do, may blank the
environment others can read.) A process is recognised by its PID and start time, never by a PID
alone, so a PID reused by an unrelated process is left alone.

A driver that ended normally has stopped its Ray and Dask itself; the watchdog then finds nothing,
or a straggler, ends it and exits without a word. It tells the two apart by a line the driver
writes into the watchdog's stdin as it exits (atexit: a normal exit, an exception, a cancelled run);
a killed driver writes none, and only then does the watchdog say what it stopped. Processes of a remote cluster (`RAY_ADDRESS`, `statistics.scheduler_address`)
are not the driver's descendants and carry no tag: untouched. A long-lived process that calls
`firth.pipelines.job.run` itself (a notebook) gets the same: what it started ends when it ends.
"""
from __future__ import annotations

import atexit
import os
import select
import subprocess
import sys
import time
import uuid

import psutil

TAG_VARIABLE = "FIRTH_DRIVER"
POLL_S = 0.1  # how often the watchdog looks at the driver
SNAPSHOT_S = 1.0  # how often it notes the driver's descendants
TERM_GRACE_S = 2.0  # SIGTERM, then SIGKILL after this long
ENDED_NORMALLY = b"ended normally\n"  # the driver's last words to its watchdog

_watchdog: subprocess.Popen | None = None  # this process's watchdog, once started


def tie_to_this_process() -> str:
    """Make every process started from now on end when this process ends; returns the tag."""
    global _watchdog
    tag = os.environ.get(TAG_VARIABLE, "")
    if _watchdog is not None and _watchdog.poll() is None and tag.startswith(f"{os.getpid()}-"):
        return tag  # already tied (a second run in the same process)
    tag = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"  # an inherited tag is our parent's: ours is new
    environment = {k: v for k, v in os.environ.items() if k != TAG_VARIABLE}
    _watchdog = subprocess.Popen(
        [sys.executable, "-m", __name__, str(os.getpid()), repr(psutil.Process().create_time()), tag],
        env=environment, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, start_new_session=True)
    atexit.register(_say_goodbye, _watchdog)
    os.environ[TAG_VARIABLE] = tag
    return tag


def _say_goodbye(watchdog: subprocess.Popen) -> None:
    try:
        watchdog.stdin.write(ENDED_NORMALLY)
        watchdog.stdin.close()
    except OSError:  # the watchdog is gone: nothing to tell
        pass


def _ended_normally() -> bool:
    """Whether the driver said goodbye (it has ended by now: its line is in the pipe or never will be)."""
    try:  # never block: a child that inherited the pipe's write end keeps it open without writing
        readable, _, _ = select.select([sys.stdin], [], [], 0)
        return bool(readable) and os.read(sys.stdin.fileno(), len(ENDED_NORMALLY)) == ENDED_NORMALLY
    except (OSError, ValueError):
        return False


def processes_to_end(tag: str, noted: dict[int, float], exclude: set[int] = frozenset()) -> list[psutil.Process]:
    """Live processes that are in `noted` (pid -> start time) or carry `tag`, and their descendants."""
    found: dict[int, psutil.Process] = {}
    for process in psutil.process_iter():
        if process.pid in exclude:
            continue
        try:
            if _started_at(process) == noted.get(process.pid) or process.environ().get(TAG_VARIABLE) == tag:
                found[process.pid] = process
                found.update({c.pid: c for c in process.children(recursive=True) if c.pid not in exclude})
        except psutil.Error:  # gone, a zombie, or another user's
            continue
    return list(found.values())


def _started_at(process: psutil.Process) -> float:
    return round(process.create_time(), 2)


def end_processes(processes: list[psutil.Process]) -> int:
    """SIGTERM, then SIGKILL what is alive TERM_GRACE_S later; returns how many were signalled."""
    signalled = []
    for process in processes:
        try:
            process.terminate()
            signalled.append(process)
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(signalled, timeout=TERM_GRACE_S)
    for process in alive:
        try:
            process.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=TERM_GRACE_S)
    return len(signalled)


def _watch(pid: int, started_at: float) -> dict[int, float]:
    """Wait for the driver to end; returns its descendants as last noted (pid -> start time)."""
    noted: dict[int, float] = {}
    try:
        driver = psutil.Process(pid)
        if abs(driver.create_time() - started_at) > 1.0:
            return noted  # the PID already belongs to another process: the driver is gone
        next_snapshot = 0.0
        # Polled, not waited on: a killed driver stays a zombie until its parent reaps it.
        while driver.is_running() and driver.status() != psutil.STATUS_ZOMBIE:
            if time.monotonic() >= next_snapshot:
                for child in driver.children(recursive=True):
                    try:
                        noted[child.pid] = _started_at(child)
                    except psutil.Error:
                        pass
                next_snapshot = time.monotonic() + SNAPSHOT_S
            time.sleep(POLL_S)
    except psutil.NoSuchProcess:
        pass
    return noted


def main(argv: list[str]) -> int:
    pid, started_at, tag = int(argv[0]), float(argv[1]), argv[2]
    noted = _watch(pid, started_at)
    ended = 0
    for _ in range(5):  # a launcher caught mid-start may still spawn a child: look again
        processes = processes_to_end(tag, noted, exclude={os.getpid()})
        if not processes:
            break
        ended += end_processes(processes)
    if ended and not _ended_normally():
        print(f"firth: the driver (pid {pid}) ended; stopped {ended} process(es) it had started "
              f"(Ray, Dask or Beam)", file=sys.stderr, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
