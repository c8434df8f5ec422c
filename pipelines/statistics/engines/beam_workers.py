"""Long-lived SDK worker processes for the local Beam runner.

In `multi_processing` mode FnApiRunner starts fresh SDK worker processes for every pipeline, and
the Beam engine runs one pipeline per step. A fresh Python here spends 3.5–5 s importing Beam's
SDK worker and the statistics kernels before its first element (benchmarks/README.md): a fixed
cost per step that more workers do not shrink, which held Beam's 1 → 2 worker speed-up to 1.5×.

So the engine starts its `n_workers` worker processes once. Each is a Beam external worker pool
(`BeamFnExternalWorkerPoolServicer`, the service behind Beam's EXTERNAL environment) that runs
every pipeline's SDK harness in a thread of the already-warm process. FnApiRunner is pointed at a
dispatcher here, in the driver, which hands each pipeline's workers to the processes in turn:
FnApiRunner asks for `n_workers` workers per pipeline, one after another, so any `n_workers`
consecutive requests land on distinct processes and every process hosts one worker of each
pipeline (one bundle at a time, so threads never contend for a process's GIL).
"""
from __future__ import annotations

import importlib
import itertools
import logging
import os
import subprocess
import sys
from concurrent import futures
from typing import Sequence

_START_TIMEOUT_S = 120  # imports on a loaded machine take tens of seconds


def import_beam() -> None:
    """Import Beam without its import-time warnings about the Google Cloud clients it finds missing
    (GCS, BigQuery: not dependencies of this project), printed once per process otherwise."""
    logging.disable(logging.WARNING)
    try:
        import apache_beam  # noqa: F401
    finally:
        logging.disable(logging.NOTSET)


class SdkWorkerProcesses:
    """`n` worker processes and the dispatcher in front of them; `environment` is what FnApiRunner runs on."""

    def __init__(self, n: int, warm_imports: Sequence[str] = ()):
        self.n = n
        self.warm_imports = tuple(warm_imports)
        self._processes: list[subprocess.Popen] = []
        self._dispatcher = None
        self._channels = []

    def __enter__(self) -> "SdkWorkerProcesses":
        import grpc
        from apache_beam.portability.api import beam_fn_api_pb2_grpc

        try:
            # stdin stays open as the processes' lifeline: they exit when it closes (here, or when
            # the driver dies); stdout carries each one's address, then its prints go to stderr.
            # Their own session: Ctrl-C reaches the driver alone, which then closes their stdin.
            self._processes = [subprocess.Popen([sys.executable, "-m", __name__, *self.warm_imports], stdin=subprocess.PIPE,
                                                stdout=subprocess.PIPE, text=True, start_new_session=True)
                               for _ in range(self.n)]
            self._channels = [grpc.insecure_channel(self._address(p)) for p in self._processes]
            stubs = [beam_fn_api_pb2_grpc.BeamFnExternalWorkerPoolStub(c) for c in self._channels]
            self._dispatcher = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
            beam_fn_api_pb2_grpc.add_BeamFnExternalWorkerPoolServicer_to_server(_Dispatcher(stubs), self._dispatcher)
            self.url = f"localhost:{self._dispatcher.add_insecure_port('localhost:0')}"
            self._dispatcher.start()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self._dispatcher is not None:
            self._dispatcher.stop(grace=None)
        for channel in self._channels:  # before the processes go, or gRPC logs their goodbye
            channel.close()
        for process in self._processes:
            if process.stdin and not process.stdin.closed:
                process.stdin.close()
        for process in self._processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    @property
    def environment(self):
        from apache_beam.transforms.environments import ExternalEnvironment
        return ExternalEnvironment(self.url)

    def check_alive(self) -> None:
        """Raise if a worker process has died: the pipeline it was running cannot finish."""
        for n, process in enumerate(self._processes):
            if process.poll() is not None:
                raise RuntimeError(f"Beam SDK worker process {n} (pid {process.pid}) exited with code "
                                   f"{process.returncode} during the pipeline; a negative code is the signal "
                                   "that killed it, and -9 is most often the OS out of memory: lower "
                                   "statistics.memory_mb or statistics.n_workers. Its own error, if any, is "
                                   "printed above.")

    def _address(self, process: subprocess.Popen) -> str:
        import select

        ready, _, _ = select.select([process.stdout], [], [], _START_TIMEOUT_S)
        line = process.stdout.readline().strip() if ready else ""
        if not line:
            state = ("it is still importing: is the machine overloaded?" if process.poll() is None
                     else f"it exited with code {process.returncode}; its error is printed above")
            raise RuntimeError(f"Beam SDK worker process (pid {process.pid}) did not start within "
                               f"{_START_TIMEOUT_S} s: {state}")
        return line


class _Dispatcher:
    """Passes each StartWorker request to the next process in turn (see the module docstring)."""

    def __init__(self, stubs):
        self._stubs = stubs
        self._turn = itertools.count()

    def StartWorker(self, request, context):  # noqa: N802 (gRPC method names)
        return self._stubs[next(self._turn) % len(self._stubs)].StartWorker(request)

    def StopWorker(self, request, context):  # noqa: N802
        for stub in self._stubs:  # a process that does not host the worker ignores the request
            stub.StopWorker(request)
        from apache_beam.portability.api import beam_fn_api_pb2
        return beam_fn_api_pb2.StopWorkerResponse()


def _serve(warm_imports: Sequence[str]) -> None:
    """A worker process: warm imports, a worker pool on loopback, its address on stdout, until stdin closes."""
    import_beam()
    import grpc
    from apache_beam.portability.api import beam_fn_api_pb2_grpc
    from apache_beam.runners.worker.worker_pool_main import BeamFnExternalWorkerPoolServicer

    for module in warm_imports:  # the caller's step functions and their kernels, imported once
        importlib.import_module(module)

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    beam_fn_api_pb2_grpc.add_BeamFnExternalWorkerPoolServicer_to_server(
        BeamFnExternalWorkerPoolServicer(use_process=False), server)  # each SDK harness in a thread of this process
    port = server.add_insecure_port("localhost:0")
    server.start()
    print(f"localhost:{port}", flush=True)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())  # nobody reads stdout from here on: a full pipe would block
    sys.stdin.read()
    server.stop(grace=None)


if __name__ == "__main__":
    _serve(sys.argv[1:])
