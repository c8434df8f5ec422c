"""SIGINT and SIGTERM cancel a run cleanly: the signal becomes an exception in the main thread, which
leaves every stage's `with` block on its way out (scratch removed, run record "cancelled", Ray and
Dask shut down, lock released), and nothing is published.

Why the handlers are guarded: `ray.init` sets SIGTERM to `sys.exit(15)` and Ray Train's `fit()` sets
SIGINT to its own abort, which ends in `SystemExit` (a run was recorded "failed in training:
SystemExit: 1", with a traceback). While `cancellable()` is active, other code's attempts to replace
the SIGINT or SIGTERM handler are ignored; the handlers in place before it are restored after it.

Only the first signal raises. Later ones are noted and ignored, so a second Ctrl-C cannot cut the
clean-up short (its store requests are bounded by store.timeout_s; SIGKILL remains, and the
watchdog then ends the run's processes). Inside `deferred()` (the publish: one commit, then the
record says so) a signal is noted but not raised, and the run finishes.
"""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(KeyboardInterrupt):
    """Raised in the main thread by SIGINT or SIGTERM inside `cancellable()`; `signum` says which."""

    def __init__(self, signum: int):
        super().__init__(f"{signal.Signals(signum).name} received")
        self.signum = signum


_received: int | None = None  # the first signal received inside cancellable()
_deferring = False


def received() -> int | None:
    """The signal that cancelled the current (or last) cancellable block, if any."""
    return _received


def signal_name(signum: int) -> str:
    return signal.Signals(signum).name


def _on_signal(signum, frame) -> None:
    global _received
    if _received is None:
        _received = signum
        if not _deferring:
            raise Interrupted(signum)


@contextmanager
def cancellable():
    """SIGINT and SIGTERM raise Interrupted in the main thread until the block ends (no-op elsewhere)."""
    global _received
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _received = None
    previous = {signum: signal.getsignal(signum) for signum in SIGNALS}
    install = signal.signal
    for signum in SIGNALS:
        install(signum, _on_signal)

    def guarded(signum, handler):  # what Ray calls instead of signal.signal while the run is on
        # ours stay, and are installed again: that also unwraps a handler installed below Python
        # (workers/raytrain/harness.py: Ray's C++ failure handler)
        return install(signum, _on_signal if signum in SIGNALS else handler)

    signal.signal = guarded
    try:
        yield
    finally:
        signal.signal = install
        for signum, handler in previous.items():
            install(signum, handler if handler is not None else signal.SIG_DFL)


@contextmanager
def deferred():
    """A block a signal does not interrupt (it is noted: `received()`)."""
    global _deferring
    before, _deferring = _deferring, True
    try:
        yield
    finally:
        _deferring = before
