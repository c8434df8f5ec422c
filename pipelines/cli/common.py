"""What every command shares: where its log lines and progress bars go, and opening the table store
its arguments name."""
from __future__ import annotations

import json
import logging
import math
import os
import sys

from firth.pipelines.config import DEFAULT_STORE, load_config

LOG_LEVELS = ("debug", "info", "warning", "error")


def configure_output(log_level: str = "info", quiet: bool = False) -> None:
    """firth's log records (a line per stage and per epoch at INFO; warnings) go to stderr as
    `firth: MESSAGE` from `log_level` up (--quiet: warnings and errors only). Progress bars are
    drawn only on a terminal showing INFO: elsewhere (a pipe, a file, cron) their carriage-return
    frames would be all the log holds. TQDM_DISABLE turns off every tqdm bar of this process and
    of the processes it starts (tqdm reads it when imported, after this)."""
    level = logging.WARNING if quiet else getattr(logging, log_level.upper())
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("firth: %(message)s"))
    logger = logging.getLogger("firth")
    logger.handlers = [handler]
    logger.setLevel(level)
    logger.propagate = False
    if level > logging.INFO or not sys.stderr.isatty():
        os.environ["TQDM_DISABLE"] = "1"


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (a test's capture, a redirected stream)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def json_line(value) -> str:
    """`value` as strict JSON on one line: NaN and infinities (a metric with nothing to measure) as null."""
    def finite(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, dict):
            return {k: finite(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [finite(x) for x in v]
        return v
    return json.dumps(finite(value), default=str, allow_nan=False)


def open_store(args):
    """The store of `--store`, else `$FIRTH_STORE`, else the store of `--config CONFIG.yaml`, else ./firth-store."""
    from firth.schemas.store import TableStore

    if args.store or os.environ.get("FIRTH_STORE") or not args.config:
        store = TableStore(args.store or os.environ.get("FIRTH_STORE") or DEFAULT_STORE)
    else:
        config = load_config(args.config)
        store = TableStore(config.store.uri, config.store.storage_options)
    args.store_uri, args.store_options = store.uri, store.storage_options  # named when the store fails
    return store
