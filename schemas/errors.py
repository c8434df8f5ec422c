"""The store's errors, shared by the store, references, aliases, promotion and retention."""
from __future__ import annotations


class StoreError(ValueError):
    """A store request that cannot be served: bad name or ref, bad table, bad options."""


class NotFoundError(StoreError, LookupError):
    """A table, version or alias that does not exist; the message lists what does."""


class CollectedError(NotFoundError):
    """A version whose data files were removed by `firth tables gc`; its metadata is still listed."""


class UnsafePathError(StoreError):
    """A name or path from stored metadata (a commit, an alias, a run record) that would leave its
    folder in the store; refused before any read, write or delete."""


class CorruptVersionError(StoreError):
    """A version whose rows are not exactly one publish: row count unlike its commit's, repeated keys."""
