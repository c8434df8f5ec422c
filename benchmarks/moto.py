"""A real S3-compatible server (moto_server) on a free loopback port, for benchmarks that measure S3:
the tests' own MotoServer (tests/helpers/s3.py), with one bucket."""
from __future__ import annotations

import subprocess

from tests.helpers.s3 import MotoServer

BUCKET = "bench"


def start_moto() -> tuple[subprocess.Popen, dict[str, str]]:
    """moto_server with the bucket `bench`; (process, deltalake/object_store-style storage options).
    The caller terminates the process."""
    server = MotoServer()
    server.make_bucket(BUCKET)
    return server.process, server.delta_options
