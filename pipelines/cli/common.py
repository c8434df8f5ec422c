"""What every command shares: opening the table store its arguments name."""
from __future__ import annotations

import os

from firth.pipelines.config import DEFAULT_STORE, load_config


def open_store(args):
    """The store of `--store`, else `$FIRTH_STORE`, else the store of `--config CONFIG.yaml`, else ./firth-store."""
    from firth.schemas.store import TableStore

    if args.store or os.environ.get("FIRTH_STORE") or not args.config:
        return TableStore(args.store or os.environ.get("FIRTH_STORE") or DEFAULT_STORE)
    config = load_config(args.config)
    return TableStore(config.store.uri, config.store.storage_options)
