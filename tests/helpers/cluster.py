"""A multi-node layout on loopback for tests: each "node" is a folder of its own (HOME, TMPDIR, cwd,
Ray --temp-dir, Dask --local-directory) and the processes started for it, so that nodes share
nothing on disk but what the test gives them (S3).

Every process started here carries TRACE_VARIABLE=<this layout's id> in its environment, and so do
their children (Ray's raylets and workers, Dask's nannies): `survivors()` finds them all by it, and
`stop()` ends them by process id, never by name (`ray stop` would stop every Ray of the machine).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path


BIN = Path(sys.executable).parent
TRACE_VARIABLE = "FIRTH_TEST_LAYOUT"
# the test process's own settings that must not leak into a node: each node gets its own
_NOT_INHERITED = ("RAY_", "AWS_", "FIRTH_", "XDG_", "DASK_", "MOTO_", "TMP", "TEMP")


class Node:
    """One machine's local disk: home/ (with the XDG folders), cwd/ (empty), tmp/ (TMPDIR: the processes'
    temporary folder); Ray's and Dask's temporary folders go beside them."""

    def __init__(self, root: Path, name: str):
        self.name, self.root = name, root / name
        self.home, self.cwd, self.tmp = self.root / "home", self.root / "cwd", self.root / "tmp"
        for folder in (self.home, self.cwd, self.tmp):
            folder.mkdir(parents=True, exist_ok=True)

    def env(self, trace: str, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(_NOT_INHERITED)}
        env.update(HOME=str(self.home), TMPDIR=str(self.tmp), XDG_STATE_HOME=str(self.home / ".local/state"),
                   XDG_CACHE_HOME=str(self.home / ".cache"), XDG_CONFIG_HOME=str(self.home / ".config"),
                   XDG_DATA_HOME=str(self.home / ".local/share"),
                   **{TRACE_VARIABLE: trace}, **extra)
        return env


class Layout:
    def __init__(self, root: Path):
        self.root, self.trace = root, uuid.uuid4().hex
        self.groups: list[int] = []  # process groups started (each a session of its own)

    def node(self, name: str) -> Node:
        return Node(self.root, name)

    def start(self, node: Node, args: list[str], env: dict[str, str] | None = None, *,
              log: str) -> subprocess.Popen:
        """Start `args` on `node` (its cwd, its environment), output to node/tmp/<log>."""
        with open(node.tmp / log, "ab") as out:
            process = subprocess.Popen(args, cwd=node.cwd, env=env or node.env(self.trace), stdout=out,
                                       stderr=subprocess.STDOUT, start_new_session=True)
        self.groups.append(process.pid)
        return process

    def run(self, node: Node, args: list[str], env: dict[str, str] | None = None, *, log: str,
            timeout: float = 180, attempts: int = 1) -> None:
        """Start `args` and wait for it (e.g. `ray start`, whose daemons stay in its process group).
        A failed attempt's process group is killed before the next (`attempts`)."""
        for attempt in range(1, attempts + 1):
            process = self.start(node, args, env, log=log)
            code = process.wait(timeout=timeout)
            if code == 0:
                return
            _signal_group(process.pid, signal.SIGKILL)
        raise RuntimeError(f"{' '.join(args[:3])} exited with {code} ({attempts} attempts): "
                           f"{(node.tmp / log).read_text()[-3000:]}")

    def survivors(self) -> list[int]:
        """Process ids of every process still running with this layout's trace in its environment."""
        needle = f"{TRACE_VARIABLE}={self.trace}".encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                if needle in (entry / "environ").read_bytes().split(b"\0"):
                    found.append(int(entry.name))
            except OSError:  # ended meanwhile, or not ours
                continue
        return found

    def stop(self, grace_s: float = 10.0) -> list[int]:
        """SIGTERM every process group started, then SIGKILL whatever still carries the trace; returns
        the ids of processes still found after that (none, normally)."""
        for group in self.groups:
            _signal_group(group, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while self.survivors() and time.monotonic() < deadline:
            time.sleep(0.2)
        for pid in self.survivors():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + 5
        while self.survivors() and time.monotonic() < deadline:
            time.sleep(0.2)
        return self.survivors()


def _signal_group(group: int, sig: int) -> None:
    try:
        os.killpg(group, sig)
    except (ProcessLookupError, PermissionError):
        pass


def files_under(*roots: Path) -> dict[str, tuple[int, int]]:
    """path -> (size, mtime_ns) of every file under `roots` (links not followed)."""
    found = {}
    for root in roots:
        for folder, _, names in os.walk(root):
            for name in names:
                path = os.path.join(folder, name)
                try:
                    stat = os.lstat(path)
                except FileNotFoundError:  # removed while walking: a temporary file
                    continue
                found[path] = (stat.st_size, stat.st_mtime_ns)
    return found


def written_between(before: dict, after: dict, allowed: list[Path], code: Path) -> list[str]:
    """Files new or changed from `before` to `after`, outside the `allowed` folders and the
    __pycache__ folders under `code` (bytecode and numba's compiled kernels: caches of the code,
    which every node keeps beside its installed copy)."""
    prefixes = tuple(str(folder).rstrip("/") + "/" for folder in allowed)

    def cache_of_code(path: str) -> bool:
        return path.startswith(str(code).rstrip("/") + "/") and "/__pycache__/" in path

    return sorted(path for path, stat in after.items()
                  if before.get(path) != stat and not path.startswith(prefixes) and not cache_of_code(path))
