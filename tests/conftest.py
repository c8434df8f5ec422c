"""Shared fixtures: real services on loopback only (moto_server for S3)."""
from __future__ import annotations

import os
import uuid

import pytest

import tests.helpers.cudasim  # noqa: F401  (first: numba.cuda is the simulator, before numba loads)
from tests.helpers.s3 import S3_REGION, MotoServer, free_port  # noqa: F401  (free_port: used by test modules)

# Local Ray for the tests: on loopback, no usage reporting, and a short worker health-check
# interval (the 2 s default adds ~5 s to every Ray Train run).
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.2")


@pytest.fixture(scope="session", autouse=True)
def debug_log_of_the_session(tmp_path_factory):
    """Failed CLI calls write their tracebacks under the session's temporary folder, not the user's
    ~/.local/state/firth/debug.log (a test may set its own $FIRTH_DEBUG_LOG)."""
    patch = pytest.MonkeyPatch()
    patch.setenv("FIRTH_DEBUG_LOG", str(tmp_path_factory.mktemp("firth-debug") / "debug.log"))
    yield
    patch.undo()


@pytest.fixture(scope="session")
def s3_server():
    """A real S3-compatible HTTP server (moto_server) on 127.0.0.1 for the whole session."""
    server = MotoServer()
    yield server.endpoint
    server.stop()


@pytest.fixture
def own_s3():
    """A moto_server of the test's own with a bucket 'own', which the test may freeze or stop
    (tests/helpers/s3.py); the shared `s3_server` is never disturbed."""
    server = MotoServer()
    try:
        server.make_bucket("own")
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(s3_server, monkeypatch):
    """A fresh bucket; returns (bucket, fsspec storage_options, deltalake storage_options)."""
    import s3fs

    for k, v in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_DEFAULT_REGION": S3_REGION, "AWS_REGION": S3_REGION}.items():
        monkeypatch.setenv(k, v)
    fs_options = {"key": "testing", "secret": "testing",
                  "client_kwargs": {"endpoint_url": s3_server, "region_name": S3_REGION}}
    delta_options = {"AWS_ENDPOINT_URL": s3_server, "AWS_ALLOW_HTTP": "true", "AWS_REGION": S3_REGION,
                     "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    bucket = f"firth-{uuid.uuid4().hex[:12]}"
    fs = s3fs.S3FileSystem(**fs_options)
    fs.mkdir(bucket, create_parents=True, region_name=S3_REGION)
    return bucket, fs_options, delta_options


@pytest.fixture
def local_store(tmp_path):
    """An empty table store in a local directory."""
    from firth.schemas.store import TableStore

    return TableStore(str(tmp_path / "store"))


@pytest.fixture
def s3_store(s3_bucket):
    """An empty table store on moto S3."""
    from firth.schemas.store import TableStore

    bucket, _, delta_options = s3_bucket
    return TableStore(f"s3://{bucket}/stores/main", delta_options)


@pytest.fixture
def no_ray():
    """No Ray initialised in this process, as in a fresh `firth run` (an earlier test may have left one)."""
    import ray

    if ray.is_initialized():
        ray.shutdown()


@pytest.fixture(scope="module")
def ray_session():
    """A fresh local Ray on 127.0.0.1 for a module's training tests (a job test earlier in the
    session may have left its own Ray initialised in this process)."""
    import ray

    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=True, _node_ip_address="127.0.0.1")
    yield
    ray.shutdown()
