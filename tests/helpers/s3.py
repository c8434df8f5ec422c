"""A moto_server process on 127.0.0.1 that a test owns: started, frozen (SIGSTOP), thawed and killed.

The session's shared server is the `s3_server` fixture (tests/conftest.py, started with this class);
a test that freezes or kills an endpoint starts its own, so the other tests keep theirs.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time

S3_REGION = "us-west-2"  # moto refuses bucket creation in us-east-1 without a location constraint
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": S3_REGION,
               "AWS_DEFAULT_REGION": S3_REGION}


def wait_for_port(port: int, what: str, timeout_s: float = 60) -> None:
    """Return once something accepts connections on 127.0.0.1:`port`; RuntimeError after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {timeout_s:.0f} s")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MotoServer:
    def __init__(self):
        port = free_port()
        exe = shutil.which("moto_server", path=os.path.dirname(sys.executable)) or "moto_server"
        self.process = subprocess.Popen([exe, "-H", "127.0.0.1", "-p", str(port)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.endpoint = f"http://127.0.0.1:{port}"
        try:
            wait_for_port(port, "moto_server", timeout_s=30)
        except RuntimeError:
            self.process.kill()
            raise

    @property
    def delta_options(self) -> dict[str, str]:
        """deltalake/object_store-style storage options for this endpoint."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ALLOW_HTTP": "true", **CREDENTIALS}

    def make_bucket(self, name: str) -> None:
        import s3fs

        s3fs.S3FileSystem(key="testing", secret="testing", skip_instance_cache=True,
                          client_kwargs={"endpoint_url": self.endpoint, "region_name": S3_REGION}
                          ).mkdir(name, region_name=S3_REGION)

    def freeze(self) -> None:
        """The process stops; its socket still accepts connections, which then never get an answer."""
        os.kill(self.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        os.kill(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        """Kill it (thawed first, if frozen): connections are then refused."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGCONT)
            self.process.kill()
        self.process.wait(timeout=10)
