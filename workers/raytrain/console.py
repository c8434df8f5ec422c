"""What a user sees of a Ray Train run: one progress bar, the workers' warnings, failures, restores.

Ray's own streaming of worker output to the driver carries Ray Train's INFO lines and redraws
worker-side bars between them, so the trainers start Ray with `log_to_driver=False` and use
this instead: a `Channel` actor carries events from the workers (entries done, epoch losses,
log records at WARNING and above via `ForwardLogs`) and from the controller (`FailureCallback`);
a `Console` thread on the driver drains it while `trainer.fit()` runs. Ray's full logs stay in
its session folder (/tmp/ray/session_latest/logs).

Each epoch is one log line (INFO: loss and units/s), so a log piped to a file or a cron mail has
the losses in plain lines; the bar is drawn only where tqdm draws (the `firth` command turns it off
on a non-terminal and with --quiet: TQDM_DISABLE, pipelines/cli/common.py).
"""
from __future__ import annotations

import logging
import threading

import ray
from ray.train import UserCallback
from tqdm.auto import tqdm

log = logging.getLogger(__name__)
PROGRESS_EVERY_S = 0.25  # a worker sends its entry count at most this often; the driver polls as often


@ray.remote(num_cpus=0)
class Channel:
    """Events for the driver, in arrival order: ("placed", rank, where), ("start", epochs_done),
    ("progress", rank, entries), ("epoch", epochs_done, loss, seconds), ("log", rank, levelno, text),
    ("failed", {rank: text})."""

    def __init__(self):
        self.events: list[tuple] = []

    def put(self, event: tuple) -> None:
        self.events.append(event)

    def take(self) -> list[tuple]:
        events, self.events = self.events, []
        return events


class FailureCallback(UserCallback):
    """Runs in the Ray Train controller: tells the driver which workers failed, and why."""

    def __init__(self, channel):
        self.channel = channel

    def after_exception(self, run_context, worker_exceptions: dict[int, Exception]) -> None:
        # one line each (a dead worker's ActorDiedError runs to several); fit() raises the whole
        # error with the worker's traceback if no restart is left
        rank_to_error = {}
        for rank, error in worker_exceptions.items():
            first_line = str(error).strip().split("\n", 1)[0]
            rank_to_error[rank] = f"{type(error).__name__}: {first_line}"
        self.channel.put.remote(("failed", rank_to_error))


class ForwardLogs(logging.Handler):
    """A worker's log records at WARNING and above, sent to the driver through the channel."""

    def __init__(self, channel, rank: int):
        super().__init__(logging.WARNING)
        self.channel, self.rank, self.sending = channel, rank, threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        if getattr(self.sending, "active", False):  # a record logged while sending one: drop, not recurse
            return
        self.sending.active = True
        try:
            self.channel.put.remote(("log", self.rank, record.levelno, self.format(record)))
        except Exception:
            self.handleError(record)
        finally:
            self.sending.active = False


class Console:
    """Driver side of the channel: a thread that draws the progress bar and logs the workers'
    warnings, failures and restores while the block (trainer.fit()) runs."""

    def __init__(self, channel, label: str, epochs: int, max_failures: int, rank_to_share: list[int], progress: bool,
                 unit: str = "entries"):
        self.channel, self.label, self.rank_to_share = channel, label, rank_to_share  # units per epoch
        self.epochs, self.max_failures = epochs, max_failures
        self.bar = tqdm(total=epochs * sum(rank_to_share), desc=f"{label} (starting Ray Train workers)",
                        unit=unit, unit_scale=True, leave=False) if progress else None
        self.unit = unit
        self.rank_to_position = [0] * len(rank_to_share)  # entries each rank has trained, all epochs
        self.rank_to_worker: dict[int, dict] = {}  # where each rank runs (harness.placement), the latest start
        self.starts = self.failures = 0
        self.pending = None  # the channel's answer being waited for
        self.display_behind = False
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._poll, name=f"{label}-console", daemon=True)

    def __enter__(self) -> Console:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()
        if exc[0] is None or issubclass(exc[0], Exception):
            # a take still pending, if one timed out; then the last events: the end of the last epoch
            # (and where each rank ran), or the failure fit() raises
            self._drain(timeout_s=60)
            self._drain(timeout_s=60)
        if self.bar is not None:
            self.bar.close()

    def _poll(self) -> None:
        while not self.stop.wait(PROGRESS_EVERY_S):
            self._drain()

    def _drain(self, timeout_s: float = 10) -> None:
        # a take that timed out is waited for again, not asked anew: its events are not lost
        self.pending = self.pending or self.channel.take.remote()
        try:
            events = ray.get(self.pending, timeout=timeout_s)
        except Exception as error:  # the display must never stop the training; a loaded machine may
            if not self.display_behind:  # answer late: say so once, keep waiting
                log.warning("%s progress display is behind: %s", self.label, error)
            self.display_behind = True
            if not isinstance(error, ray.exceptions.GetTimeoutError):
                self.pending = None  # the channel failed: ask afresh
            return
        self.pending = None
        for kind, *args in events:
            getattr(self, "_on_" + kind)(*args)

    def _on_placed(self, rank: int, where: dict) -> None:
        self.rank_to_worker[rank] = where

    def _on_start(self, epochs_done: int) -> None:
        self.starts += 1
        if self.starts > 1:  # Ray Train restarted the workers after a failure
            origin = f"the epoch {epochs_done} checkpoint" if epochs_done else "the start (no checkpoint yet)"
            self._say(logging.WARNING, f"{self.label} training resumed from {origin} (failure {self.failures} of "
                                       f"model.max_failures {self.max_failures})")
        elif self.bar is not None:
            self.bar.reset()  # the clock starts with training, not with Ray Train's start-up
        self._describe(epochs_done)
        for rank, share in enumerate(self.rank_to_share):
            self._on_progress(rank, epochs_done * share)

    def _on_progress(self, rank: int, position: int) -> None:
        self.rank_to_position[rank] = position
        if self.bar is not None:
            self.bar.update(sum(self.rank_to_position) - self.bar.n)  # < 0 after a restore

    def _on_epoch(self, epochs_done: int, loss: float, seconds: float) -> None:
        rate = sum(self.rank_to_share) / max(seconds, 1e-9)  # every rank's units of one epoch
        self._describe(epochs_done)
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{loss:.4f}")
        self._say(logging.INFO, f"{self.label} epoch {epochs_done}/{self.epochs}: loss {loss:.4f}, "
                                f"{_si(rate)} {self.unit}/s, {seconds:.1f} s")

    def _on_log(self, rank: int, level: int, text: str) -> None:
        self._say(level, f"{self.label} worker rank {rank}: {text}")

    def _on_failed(self, rank_to_error: dict[int, str]) -> None:
        self.failures += 1
        for rank, error in sorted(rank_to_error.items()):
            self._say(logging.WARNING, f"{self.label} worker rank {rank} failed: {error}")

    def _describe(self, epochs_done: int) -> None:
        if self.bar is not None:
            self.bar.set_description(f"{self.label} epoch {min(epochs_done + 1, self.epochs)}/{self.epochs}")

    def _say(self, level: int, text: str) -> None:
        with tqdm.external_write_mode():  # clear the bar, write the line, redraw the bar below it
            log.log(level, text)


def _si(value: float) -> str:
    """1234567 -> "1.23M": the rate as tqdm's bar shows it."""
    for threshold, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= threshold:
            return f"{value / threshold:.3g}{suffix}"
    return f"{value:.3g}"
