"""The watchdog ends what a driver started when the driver is killed: a child that ignores SIGTERM
(as Ray's agents do) and a daemon already re-parented to init; a process the driver did not start
is left alone. (Whole runs killed in each stage: test_run_faults.py.)"""
import subprocess
import sys
import time

import psutil
import pytest

from tests.helpers import ROOT

pytestmark = pytest.mark.slow

DRIVER = """
import subprocess, sys, time
from firth.pipelines.ops.watchdog import tie_to_this_process

tie_to_this_process()
stubborn = subprocess.Popen([sys.executable, "-c", "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                             "print('ready', flush=True); time.sleep(300)"], stdout=subprocess.PIPE, text=True)
stubborn.stdout.readline()
daemon = subprocess.run(["sh", "-c", "sleep 300 > /dev/null 2>&1 & echo $!"], capture_output=True, text=True).stdout
print(stubborn.pid, daemon.strip(), flush=True)
time.sleep(300)
"""


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_a_killed_driver_takes_its_stubborn_child_and_its_daemon_with_it_and_nothing_else():
    bystander = subprocess.Popen(["sleep", "300"])  # started by the test, not by the driver
    driver = subprocess.Popen([sys.executable, "-c", DRIVER], cwd=ROOT, text=True, stdout=subprocess.PIPE)
    try:
        stubborn, daemon = map(int, driver.stdout.readline().split())
        watchdog = [p.pid for p in psutil.Process(driver.pid).children() if "ops.watchdog" in " ".join(p.cmdline())]
        assert len(watchdog) == 1 and psutil.Process(daemon).ppid() != driver.pid  # re-parented already
        driver.kill()
        driver.wait()
        deadline = time.monotonic() + 10
        while any(map(_alive, [stubborn, daemon, *watchdog])) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(map(_alive, [stubborn, daemon, *watchdog])), "alive 10 s after the driver was killed"
        assert _alive(bystander.pid)
    finally:
        bystander.kill()
        bystander.wait()


STRAGGLER = """
import subprocess, sys, time
from firth.pipelines.ops.watchdog import tie_to_this_process

tie_to_this_process()
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
print(child.pid, flush=True)
if sys.argv[1] == "wait":
    time.sleep(300)
"""


@pytest.mark.parametrize("ending", ["exits", "killed"])
def test_the_watchdog_ends_a_straggler_and_speaks_only_when_the_driver_was_killed(ending):
    driver = subprocess.Popen([sys.executable, "-c", STRAGGLER, "exit" if ending == "exits" else "wait"], cwd=ROOT,
                              text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    child = int(driver.stdout.readline())
    if ending == "killed":
        driver.kill()
    assert driver.wait(timeout=60) == (0 if ending == "exits" else -9)
    err = driver.stderr.read()  # to its end: the watchdog and the child write to the same stderr
    assert not _alive(child)  # ended either way
    if ending == "exits":
        assert err == ""
    else:
        assert err == (f"firth: the driver (pid {driver.pid}) ended; stopped 1 process(es) it had started "
                       "(Ray, Dask or Beam)\n")
