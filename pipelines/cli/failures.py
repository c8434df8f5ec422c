"""How `firth` reports a failed command: one line on stderr, an exit code per kind of failure, and
the traceback in the debug log (printed too with `firth --debug ...`).

    0    success
    1    internal error: a bug, or a failure firth does not recognise (the line names the debug log)
    2    bad input: a corpus shard, table reference, word, missing file, a missing extra, or the
         command line itself (argparse's usage errors); the line says what to fix
    3    the table's run lock is held by another run
    4    the store did not answer within its timeout, or refused the connection (store.timeout_s)
    5    config error: the config file or a --set override (the line names the key and what is allowed)
    6    the promotion gate refused: the version is worse than the alias's holder beyond a rule's
         tolerance (`tables promote`; `run --incremental`, whose version is published but not promoted)
    130  interrupted by SIGINT (Ctrl-C), 143 by SIGTERM: 128 + the signal, as a shell reports it;
         a run is recorded "cancelled", publishes nothing and releases its lock
    141  stdout was closed early (`firth runs list | head -1`): nothing more is printed, no traceback

The debug log is $FIRTH_DEBUG_LOG, else $XDG_STATE_HOME/firth/debug.log (~/.local/state/...). The
command sets $FIRTH_DEBUG_LOG for the processes it starts, so that their own tracebacks (a Dask
worker's) go there too instead of to the terminal.
"""
from __future__ import annotations

import os
import re
import signal
import sys
import traceback
from datetime import datetime, timezone
from pathlib import Path

from firth.pipelines.config import DEFAULT_STORE, ConfigError
from firth.pipelines.ops import interrupts
from firth.pipelines.ops.lock import LockHeld
from firth.schemas.fs import Bounds
from firth.schemas.promotion import GateRefused
from firth.schemas.unreachable import error_chain, unreachable

EXIT_UNEXPECTED, EXIT_BAD_INPUT, EXIT_LOCKED, EXIT_UNREACHABLE, EXIT_CONFIG, EXIT_GATE_REFUSED = 1, 2, 3, 4, 5, 6
EXIT_CLOSED_PIPE = 128 + signal.SIGPIPE  # 141, what a shell reports for a tool that SIGPIPE ended
EXIT_CODES_HELP = ("exit codes: 0 success; 1 internal error (traceback in the debug log, or use --debug); "
                   "2 bad input (data, table reference, command line); 3 the table's run lock is held; 4 the "
                   "store did not answer or refused the connection (store.timeout_s, $FIRTH_STORE_TIMEOUT_S); "
                   "5 config error (file or --set); 6 the promotion gate refused; 130 / 143 interrupted by "
                   "SIGINT / SIGTERM (a run is recorded cancelled, nothing published); 141 stdout closed early")
DEBUG_LOG_ENV = "FIRTH_DEBUG_LOG"
_DEBUG_LOG_MAX_BYTES = 10 << 20  # then the log starts afresh, the previous one kept as debug.log.1


def debug_log_path() -> Path:
    if os.environ.get(DEBUG_LOG_ENV):
        return Path(os.environ[DEBUG_LOG_ENV])
    state = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(state) / "firth" / "debug.log"


def report_failure(error: Exception, command: str, args, *, debug: bool) -> int:
    """Print one line for `error` (raised by `command`, e.g. "tables list"); return the exit code."""
    log = _write_debug_log(error, command)
    if debug:
        traceback.print_exception(error, file=sys.stderr)
    if (problem := unreachable(error)) is not None:
        print(f"firth: error: {command}: {_unreachable_line(problem, error, args)}", file=sys.stderr)
        return EXIT_UNREACHABLE
    if isinstance(error, LockHeld):
        print(f"firth: {error}", file=sys.stderr)
        return EXIT_LOCKED
    if isinstance(error, GateRefused):
        print(f"firth: error: {error}", file=sys.stderr)
        return EXIT_GATE_REFUSED
    if isinstance(error, ConfigError):
        print(f"firth: error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    if isinstance(error, (ValueError, KeyError, FileNotFoundError)):
        # Errors a user can cause carry their own explanation; a traceback would bury it.
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"firth: error: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    hints = ([f"the traceback is in {log}"] if log else []) + ([] if debug else ["run again with --debug to print it"])
    print(f"firth: error: {command}: unexpected {type(error).__name__}{_stage(error)}: {_one_line(error)} "
          f"({'; '.join(hints)})", file=sys.stderr)
    return EXIT_UNEXPECTED


def report_interrupt(error: BaseException, command: str) -> int:
    """One line for a command that SIGINT or SIGTERM stopped (`error`: what it raised as it stopped);
    the exit code 128 + the signal."""
    signum = interrupts.received() or getattr(error, "signum", None) or signal.SIGINT
    name = interrupts.signal_name(signum)
    run_id = getattr(error, "firth_run_id", None)
    if run_id:
        print(f"firth: {command}: cancelled by {name}{_stage(error)}; nothing was published and the table's lock "
              f"is released (run record: firth runs show {run_id})", file=sys.stderr)
    else:
        print(f"firth: {command}: interrupted by {name}", file=sys.stderr)
    return 128 + signum


def closed_pipe() -> int:
    """stdout was closed by its reader (`| head`): stop quietly. Python would print a BrokenPipeError
    when it flushes stdout at exit, so stdout becomes /dev/null first."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError):  # no real stdout (a test's capture): nothing will be flushed to it
        pass
    return EXIT_CLOSED_PIPE


def _unreachable_line(problem, error: Exception, args) -> str:
    uri = getattr(args, "store_uri", None) or getattr(args, "store", None) or os.environ.get("FIRTH_STORE") \
        or DEFAULT_STORE
    options = getattr(args, "store_options", None) or {}
    bounds = Bounds.of(options)
    endpoint = options.get("AWS_ENDPOINT_URL") or os.environ.get("AWS_ENDPOINT_URL") or "the S3 endpoint"
    attempts = f"{bounds.retries + 1} attempt{'s' if bounds.retries else ''}"
    request = f" ({problem.request})" if problem.request else ""
    if problem.timed_out:
        return (f"store {uri}{_stage(error)}: the endpoint did not answer within {bounds.timeout_s:g} s "
                f"(store.timeout_s) in {attempts}{request}; check that {endpoint} is up and reachable, or raise "
                "store.timeout_s / $FIRTH_STORE_TIMEOUT_S if it is only slow")
    return (f"store {uri}{_stage(error)}: could not connect to the endpoint in {attempts}{request}; check that "
            f"{endpoint} is up and that the store's endpoint (AWS_ENDPOINT_URL) is right")


def _stage(error: BaseException) -> str:
    """Where in a run `error` (or the error it interrupted: a lock release that failed too) arose."""
    # firth_stage: set by the job on the exception leaving a stage
    stage = next((link.firth_stage for link in error_chain(error) if getattr(link, "firth_stage", None)), None)
    return f" (in the {stage} stage)" if stage else ""


def _one_line(error: BaseException) -> str:
    """The message's first line (deltalake appends causes and a Rust backtrace below it), at most 300 characters."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))  # object_store colours its causes
    text = next((line.strip() for line in text.splitlines() if line.strip()), "") or repr(error)
    return text if len(text) <= 300 else text[:297] + "..."


def _write_debug_log(error: BaseException, command: str) -> Path | None:
    """Append the traceback to the debug log; its path, or None if it cannot be written."""
    path = debug_log_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() and path.stat().st_size > _DEBUG_LOG_MAX_BYTES:
            path.replace(path.with_name(path.name + ".1"))
        with path.open("a") as f:
            f.write(f"--- {datetime.now(timezone.utc).isoformat(timespec='seconds')} pid {os.getpid()}: "
                    f"firth {command}\n{''.join(traceback.format_exception(error))}")
    except OSError:
        return None
    return path
