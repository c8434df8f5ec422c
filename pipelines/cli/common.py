"""What every command shares: opening the table store its arguments name."""
from __future__ import annotations

import os

from firth.pipelines.config import DEFAULT_STORE, load_config


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
