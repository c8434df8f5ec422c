"""`firth submit`: the whole pipeline as one Ray job, through the Ray Jobs API.

What travels to the cluster (the job's runtime environment):

- the code: the installed `firth` package (from a wheel or an editable checkout alike), copied into
  one `firth/` folder shipped as a `py_module` (`ship_code=False` leaves it out, for a cluster whose
  image has firth installed: infra/Dockerfile);
- the config's folder as `working_dir`, so the config and whatever it names relative to itself
  (the sample corpus) are there; `.git`, `.venv`, stores, benchmark data and caches are left out
  (DEFAULT_EXCLUDES, plus `excludes`). Ray caps a working_dir at 500 MiB: put big corpora on S3.

The job's entrypoint is `python -m firth.pipelines.cli.main run CONFIG --store STORE` on the head node. Ray
sets RAY_ADDRESS for it, so the training (workers/glove/train.py) joins the cluster; the statistics run
on the engine the config names (Dask: a LocalCluster on the head node unless
`statistics.scheduler_address` names a Dask scheduler). The store is passed as an absolute path
or an s3:// URI, and must be reachable from the cluster: a local path works only on a one-machine
cluster or a shared filesystem.

Ray 2.60 auth: a head started where ~/.ray/auth_token exists (or with RAY_AUTH_MODE=token) requires
that token from clients, which send it only with RAY_AUTH_MODE=token; `client()` sets that when a
token is at hand (~/.ray/auth_token, $RAY_AUTH_TOKEN_PATH, $RAY_AUTH_TOKEN). A head without a
token runs without auth, and a client sending one is still served. Ray reads RAY_AUTH_MODE once, when
it is first imported: a program that imported Ray before calling `client()` must set it itself.
"""
from __future__ import annotations

import atexit
import importlib
import os
import shlex
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import urlparse

from firth.pipelines.config import load_config

# Never shipped in a working_dir: VCS, environments, stores, benchmark data, caches (gitignore syntax).
DEFAULT_EXCLUDES = [".git", ".venv", "venv", "firth-store", "firth-work", "bench-corpus", "benchmarks/data",
                    "__pycache__", "*.pyc", ".pytest_cache", "*.egg-info", "*.log"]
CODE_PACKAGES = ("pipelines", "workers", "schemas")  # firth.pipelines, firth.workers, firth.schemas
TERMINAL = {"SUCCEEDED", "FAILED", "STOPPED"}


@dataclass(frozen=True)
class Submission:
    """What `submit` sends: built without a cluster, so it can be inspected and tested."""

    submission_id: str
    entrypoint: str
    runtime_env: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)


def build_submission(config_path: str | os.PathLike, *, store: str | None = None, ship_code: bool = True,
                     excludes: list[str] | None = None, env: dict[str, str] | None = None,
                     python: str = "python", submission_id: str | None = None) -> Submission:
    """The Ray job for `firth run CONFIG`; the config is loaded here first, so a bad one fails before submitting.

    `python`: the interpreter the entrypoint runs on the head node (`default_python(address)`).
    """
    config_path = Path(config_path).resolve()
    config = load_config(config_path, store=store)  # raises ConfigError naming the key
    submission_id = submission_id or (
        f"firth-{config.table}-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%S')}-{os.urandom(3).hex()}")
    entrypoint = " ".join(shlex.quote(part) for part in [
        python, "-m", "firth.pipelines.cli.main", "run", config_path.name, "--store", config.store.uri])
    runtime_env: dict = {
        "working_dir": str(config_path.parent),
        "excludes": DEFAULT_EXCLUDES + list(excludes or []),
        # FIRTH_SUBMISSION_ID ties the run record (firth.pipelines.ops.run_records) to this job
        "env_vars": {"FIRTH_SUBMISSION_ID": submission_id, "RAY_USAGE_STATS_ENABLED": "0", **(env or {})},
    }
    if ship_code:
        runtime_env["py_modules"] = [str(code_folder())]
    return Submission(submission_id, entrypoint, runtime_env, {"table": config.table, "config": config_path.name})


def code_folder() -> Path:
    """A temporary `firth/` folder holding a copy of the installed package, for Ray to ship as a py_module.

    `firth` is a namespace package whose parts may live in three folders (an editable install maps
    them to the checkout), so they are gathered under one folder named `firth`, which Ray ships whole
    and puts on the job's import path. Removed when this process exits.
    """
    staging = Path(tempfile.mkdtemp(prefix="firth-code-"))
    atexit.register(shutil.rmtree, staging, ignore_errors=True)
    for package in CODE_PACKAGES:
        source = Path(importlib.import_module(f"firth.{package}").__file__).parent
        shutil.copytree(source, staging / "firth" / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return staging / "firth"


def default_python(address: str) -> str:
    """This interpreter for a head on this machine (loopback), where `python` on the Ray node's PATH
    may be another one (a head started as .venv/bin/ray start); plain `python` elsewhere (an image)."""
    host = urlparse(address).hostname or ""
    return sys.executable if host in ("127.0.0.1", "localhost", "::1") else "python"


def client(address: str):
    """A JobSubmissionClient for `address` (http://HEAD:8265), with token auth when a token is present."""
    if not address.startswith(("http://", "https://")):
        raise ValueError(f"--address {address!r}: expected the Ray dashboard URL, e.g. http://HEAD:8265 "
                         "(not the GCS address HEAD:6379)")
    token_file = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", Path.home() / ".ray" / "auth_token"))
    if (os.environ.get("RAY_AUTH_TOKEN") or token_file.exists()) and not os.environ.get("RAY_AUTH_MODE"):
        os.environ["RAY_AUTH_MODE"] = "token"
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    from ray._raylet import AuthenticationTokenLoader
    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobSubmissionClient

    AuthenticationTokenLoader.instance().reset_cache()  # Ray caches the token per process; read it afresh

    try:
        return JobSubmissionClient(address)
    except ConnectionError as e:
        raise ValueError(f"--address {address}: no Ray dashboard answers there ({e}); start a head with "
                         "`ray start --head` or check the URL and port (default 8265)") from None
    except AuthenticationError:
        raise ValueError(_NO_TOKEN.format(address=address)) from None


_NO_TOKEN = ("--address {address}: the Ray cluster requires its auth token and none is here; copy the head's "
             "~/.ray/auth_token to this machine's ~/.ray/auth_token, or set RAY_AUTH_TOKEN")


def submit(submission: Submission, address: str) -> str:
    """Submit; returns the job (submission) id."""
    return _known(address, submission.submission_id, lambda c: c.submit_job(
        entrypoint=submission.entrypoint, runtime_env=submission.runtime_env,
        submission_id=submission.submission_id, metadata=submission.metadata))


def status(address: str, job_id: str) -> dict:
    """Status, message, entrypoint and times of a job, as plain JSON-able values."""
    info = _known(address, job_id, lambda c: c.get_job_info(job_id))
    return {"job_id": job_id, "status": str(info.status.value if hasattr(info.status, "value") else info.status),
            "message": info.message, "entrypoint": info.entrypoint,
            "start_time": _iso(info.start_time), "end_time": _iso(info.end_time), "metadata": info.metadata or {}}


def logs(address: str, job_id: str) -> str:
    return _known(address, job_id, lambda c: c.get_job_logs(job_id))


def stop(address: str, job_id: str) -> bool:
    """Ask Ray to stop the job; False when it had already ended."""
    return _known(address, job_id, lambda c: c.stop_job(job_id))


def wait(address: str, job_id: str, timeout_s: float = 3600, poll_s: float = 1.0) -> str:
    """Block until the job ends; its final status. TimeoutError after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        current = status(address, job_id)["status"]
        if current in TERMINAL:
            return current
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} still {current} after {timeout_s:.0f} s")
        time.sleep(poll_s)


def _known(address: str, job_id: str, call):
    """call(client), with Ray's errors for an unknown job or a missing token as messages that say what to do."""
    ray_client = client(address)  # first: it sets the auth environment before Ray is imported
    from ray.exceptions import AuthenticationError

    try:
        return call(ray_client)
    except AuthenticationError:
        raise ValueError(_NO_TOKEN.format(address=address)) from None
    except RuntimeError as e:
        if "does not exist" in str(e) or "404" in str(e):
            raise KeyError(f"no job {job_id!r} at {address}; list them with `ray job list --address {address}`") \
                from None
        raise


def _iso(milliseconds: int | None) -> str | None:
    if not milliseconds:
        return None
    return datetime.fromtimestamp(milliseconds / 1000, tz=timezone.utc).isoformat(timespec="seconds")
