"""A real S3-compatible server (moto_server) on a free loopback port, for benchmarks that measure S3."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time

BUCKET = "bench"


def start_moto() -> tuple[subprocess.Popen, dict[str, str]]:
    """moto_server with one bucket, `bench`; (process, deltalake/object_store-style storage options).
    The caller terminates the process."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    exe = shutil.which("moto_server", path=os.path.dirname(sys.executable)) or "moto_server"
    process = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    for _ in range(300):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            time.sleep(0.1)
    else:
        process.kill()
        raise RuntimeError(f"moto_server did not start on 127.0.0.1:{port}")
    options = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ALLOW_HTTP": "true", "AWS_REGION": "us-west-2",
               "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"}
    import s3fs

    s3fs.S3FileSystem(key="bench", secret="bench", client_kwargs={
        "endpoint_url": options["AWS_ENDPOINT_URL"], "region_name": "us-west-2"}).mkdir(BUCKET, region_name="us-west-2")
    return process, options
