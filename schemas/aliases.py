"""Named aliases of a table's versions (`production`, `staging`, any name), moved atomically.

Each alias is one small JSON object, `<table>/_aliases/<alias>.json`, replaced whole on every move
by one atomic write (firth.schemas.fs.open_atomic: a local temp file renamed over it; on S3 a single
PUT). A reader therefore sees the old record or the new one, never a missing or partial one.

The record is a versioned contract that readers without firth rely on (schemas/README.md,
"Alias files"; examples/read_without_firth.py reads it): `version` is the Delta version it names,
`format` the record's format (FORMAT; a file without it is format 1, read the same), and it is
written on one line so that JSON Lines readers (pl.read_ndjson, DuckDB read_json, Spark) read it
from object stores. It carries the alias's history, an append-only list of moves:

    {"format": 2, "table": "wiki", "alias": "production", "version": 4,
     "history": [{"version": 2, "action": "promote", "at": "...", "from": null, "forced": false, "note": ""},
                 {"version": 4, "action": "promote", "at": "...", "from": 2, ...}]}

`promote` (and `set`) push a target, `rollback` pops one: replaying the history gives the
*rollback stack*, whose top is the current target and whose lower entries are where successive
rollbacks go. Retention keeps every version on some alias's stack (schemas/retention.py).

`latest` is automatic: it is the newest version and is never stored. Two operators moving the
same alias at the same instant: the last write wins and both records are whole; the store does
not serialise alias moves (promotion is an operator's or the nightly job's act, one at a time).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Literal

from firth.schemas import refs
from firth.schemas.errors import NotFoundError, StoreError
from firth.schemas.fs import filesystem, join, open_atomic
from firth.schemas.paths import inside

if TYPE_CHECKING:
    from firth.schemas.store import TableStore

ALIASES_DIR = "_aliases"
Action = Literal["set", "promote", "rollback"]
ACTIONS = ("set", "promote", "rollback")
# Format of the alias record, raised only by a change an older reader would misread (new fields do
# not raise it: readers ignore fields they do not know). 1: indented, no `format` field (before
# 2026-11); 2: one line, `format` field.
FORMAT = 2


@dataclass(frozen=True)
class AliasMove:
    version: int
    action: Action
    at: str  # ISO-8601 UTC
    previous: int | None = None  # the target before this move
    forced: bool = False  # promoted past a failing quality gate
    note: str = ""

    def to_json(self) -> dict:
        return {"version": self.version, "action": self.action, "at": self.at, "from": self.previous,
                "forced": self.forced, "note": self.note}

    @classmethod
    def from_json(cls, data: dict) -> "AliasMove":
        return cls(data["version"], data["action"], data["at"], data.get("from"), bool(data.get("forced")),
                   data.get("note", ""))


@dataclass(frozen=True)
class Alias:
    table: str
    name: str
    version: int  # current target
    history: tuple[AliasMove, ...] = field(default_factory=tuple)

    @property
    def stack(self) -> list[int]:
        """Rollback stack, bottom first: the last entry is the current target."""
        return rollback_stack(self.history)

    def to_json(self) -> dict:
        return {"format": FORMAT, "table": self.table, "alias": self.name, "version": self.version,
                "history": [move.to_json() for move in self.history]}


def rollback_stack(history: tuple[AliasMove, ...] | list[AliasMove]) -> list[int]:
    stack: list[int] = []
    for move in history:
        if move.action == "rollback":
            stack.pop()
        else:
            stack.append(move.version)
    return stack


def alias_uri(store: "TableStore", table: str, alias: str) -> str:
    name = refs.validate_alias(alias, movable=False)
    return inside(join(store.table_uri(table), ALIASES_DIR), f"{name}.json", f"table {table!r}: alias")


def read_alias(store: "TableStore", table: str, alias: str) -> Alias | None:
    """The alias record, or None when the alias was never set; StoreError for a record that is not
    one (versions must be non-negative integers, actions known)."""
    uri = alias_uri(store, table, alias)
    fs, path = filesystem(uri, store.storage_options)
    try:
        data = json.loads(fs.cat_file(path))
        if not isinstance(data.get("format", 1), int) or data.get("format", 1) > FORMAT:
            raise StoreError(f"alias {table}@{alias}: {uri} has format {data.get('format')!r}, newer than the "
                             f"{FORMAT} this firth reads; upgrade firth (pip install -U firth)")
        history = tuple(AliasMove.from_json(m) for m in data.get("history", []))
        record = Alias(table, alias, data["version"], history)
        versions = [record.version, *(m.version for m in history)]
        versions += [m.previous for m in history if m.previous is not None]
        if not all(type(v) is int and v >= 0 for v in versions) or any(m.action not in ACTIONS for m in history):
            raise ValueError("versions must be non-negative integers and actions one of " + ", ".join(ACTIONS))
    except FileNotFoundError:
        return None
    except StoreError:
        raise
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise StoreError(f"alias {table}@{alias}: {uri} is not an alias record ({type(e).__name__}: {e}); "
                         f"remove that file and set the alias again (`firth tables promote {table}@VERSION "
                         f"--alias {alias}`)") from None
    return record


def list_aliases(store: "TableStore", table: str) -> dict[str, Alias]:
    """Every stored alias of `table` by name (not `latest`, which is not stored)."""
    fs, folder = filesystem(join(store.table_uri(table), ALIASES_DIR), store.storage_options)
    fs.invalidate_cache(folder)  # an alias made by another process since the last listing
    try:
        entries = fs.ls(folder, detail=False)
    except FileNotFoundError:
        return {}
    names = sorted(e.rstrip("/").rsplit("/", 1)[-1].removesuffix(".json") for e in entries if e.endswith(".json"))
    found = {name: read_alias(store, table, name) for name in names if refs.ALIAS_PATTERN.match(name)}
    return {name: alias for name, alias in found.items() if alias is not None}


def alias_target(store: "TableStore", table: str, alias: str) -> int:
    """The version `table@alias` points to; NotFoundError listing the table's aliases."""
    if alias == refs.LATEST:
        return store.info(table).version
    record = read_alias(store, table, alias)
    if record is None:
        store.info(table)  # a missing table is reported as such
        existing = sorted(list_aliases(store, table)) + [refs.LATEST]
        raise NotFoundError(f"table {table!r} in store {store.uri} has no alias {alias!r}; aliases: "
                            f"{', '.join(existing)}. Set it with `firth tables promote {table}@VERSION "
                            f"--alias {alias}`")
    return record.version


def move_alias(store: "TableStore", table: str, alias: str, version: int, *, action: Action = "set",
               forced: bool = False, note: str = "") -> Alias:
    """Point `alias` at `version` (which must exist and be readable) in one atomic write."""
    refs.validate_alias(alias)
    if action == "rollback":
        raise StoreError("use rollback_alias() to roll an alias back")
    store.check_readable(table, version)
    current = read_alias(store, table, alias)
    history = current.history if current else ()
    move = AliasMove(version, action, _now(), None if current is None else current.version, forced, note)
    record = Alias(table, alias, version, (*history, move))
    _write(store, record)
    return record


def rollback_alias(store: "TableStore", table: str, alias: str, note: str = "") -> Alias:
    """Move `alias` back to the target it had before its last promotion (one step down its stack)."""
    refs.validate_alias(alias)
    current = read_alias(store, table, alias)
    if current is None:
        alias_target(store, table, alias)  # raises NotFoundError naming the aliases that exist
    stack = current.stack
    if len(stack) < 2:
        raise StoreError(f"{table}@{alias} has no earlier target to roll back to (history: "
                         f"{[m.version for m in current.history]}); promote a version instead")
    target = stack[-2]
    store.check_readable(table, target)
    move = AliasMove(target, "rollback", _now(), current.version, False, note)
    record = Alias(table, alias, target, (*current.history, move))
    _write(store, record)
    return record


def _write(store: "TableStore", record: Alias) -> None:
    body = json.dumps(record.to_json(), sort_keys=True).encode() + b"\n"  # one line: a JSON Lines file too
    with open_atomic(alias_uri(store, record.table, record.name), store.storage_options) as f:
        f.write(body)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")
