"""Table references: `NAME`, `NAME@VERSION`, `NAME@ALIAS` and `NAME@TIMESTAMP`, parsed without IO.

    wiki-glove                      the latest version
    wiki-glove@3                    version 3
    wiki-glove@production           the version the alias `production` points to (`latest` is automatic)
    wiki-glove@2026-11-24T09:00Z    the latest version committed at or before that instant (ISO-8601;
                                    a date alone means its midnight; no zone means UTC)

The three selectors cannot be confused: a version is all digits, a timestamp starts with a digit
and has a '-', an alias starts with a letter. `TableStore.resolve` turns a Ref into a version.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone

from firth.schemas.errors import StoreError

NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}\Z")  # \Z: "$" would accept a trailing newline
ALIAS_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,63}\Z")
LATEST = "latest"  # the automatic alias: always the newest version, never stored
# Folder and file names a table keeps beside its data, and the store's own folder names: never table names.
RESERVED_NAMES = frozenset({"tables", "_aliases", "_artifacts", "_delta_log", "_statistics", "_checkpoints",
                            "latest"})
_TIMESTAMP = re.compile(r"^\d{4}-\d{2}-\d{2}")


class RefError(StoreError):
    """A name, alias or reference that is not well formed; the message shows a good one."""


def validate_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise RefError(f"bad table name {name!r}: use 1-64 characters of a-z, 0-9, '_' and '-', "
                       "starting with a letter or digit (e.g. 'wiki-glove-100')")
    if name in RESERVED_NAMES:
        raise RefError(f"bad table name {name!r}: reserved (the store uses {sorted(RESERVED_NAMES)}); "
                       "pick another, e.g. 'wiki-glove'")
    return name


def validate_alias(alias: str, *, movable: bool = True) -> str:
    """An alias name; `movable` refuses `latest`, which follows the newest version by itself."""
    if not isinstance(alias, str) or not ALIAS_PATTERN.match(alias):
        raise RefError(f"bad alias {alias!r}: use 1-64 characters of a-z, 0-9, '_' and '-', starting with "
                       "a letter (e.g. 'production', 'staging')")
    if movable and alias == LATEST:
        raise RefError(f"alias {LATEST!r} always points to the newest version and cannot be moved; "
                       "use another alias name, e.g. 'production'")
    return alias


@dataclass(frozen=True)
class Ref:
    """One of version / alias / timestamp is set, or none (the latest version)."""

    name: str
    version: int | None = None
    alias: str | None = None
    timestamp: datetime | None = None  # timezone-aware, UTC

    def __str__(self) -> str:
        if self.version is not None:
            return f"{self.name}@{self.version}"
        if self.alias is not None:
            return f"{self.name}@{self.alias}"
        if self.timestamp is not None:
            return f"{self.name}@{self.timestamp.isoformat()}"
        return self.name


def parse(ref: str) -> Ref:
    """'t' -> Ref('t'); 't@3' -> version 3; 't@production' -> alias; 't@2026-11-24T09:00:00Z' -> timestamp."""
    if not isinstance(ref, str) or ref.count("@") > 1:
        raise RefError(f"bad table reference {ref!r}: {_FORMS}")
    name, _, selector = ref.partition("@")
    try:
        validate_name(name)
    except RefError as e:
        raise RefError(f"bad table reference {ref!r}: {e}") from None
    if "@" not in ref:
        return Ref(name)
    if selector.isdigit() and selector.isascii():
        return Ref(name, version=int(selector))
    if _TIMESTAMP.match(selector):
        return Ref(name, timestamp=parse_timestamp(selector, ref))
    if ALIAS_PATTERN.match(selector):
        return Ref(name, alias=selector)
    raise RefError(f"bad table reference {ref!r}: {_FORMS}")


def parse_timestamp(text: str, context: str | None = None) -> datetime:
    """ISO-8601 text as an aware UTC datetime; naive times are taken as UTC."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        where = f"bad table reference {context!r}" if context else f"bad timestamp {text!r}"
        raise RefError(f"{where}: {text!r} is not an ISO-8601 time; write e.g. 2026-11-24, "
                       "2026-11-24T09:30:00Z or 2026-11-24T10:30:00+01:00") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


_FORMS = ("expected NAME, NAME@VERSION (a non-negative integer), NAME@ALIAS (a-z, 0-9, '_', '-', starting "
          "with a letter) or NAME@TIMESTAMP (ISO-8601), e.g. 'wiki-glove', 'wiki-glove@3', "
          "'wiki-glove@production' or 'wiki-glove@2026-11-24T09:00:00Z'")
