"""Paths built from stored metadata, checked before any read, write or delete.

Commit metadata (publish ids, artifact paths, data file paths), alias files and run records are
written by firth, but they live in the store where anyone with write access can edit them; a
publish id of `../../../../victim` once made `gc` delete a folder outside the store. So every path
built from such a value goes through `inside()`: each segment must be a plain name (letters,
digits, '.', '_', '-', not starting with '.'), so no '..', no absolute path, no URL scheme, no
backslash; and the result must lie under the folder it was joined to. Anything else raises
UnsafePathError naming what was refused.

Used by the store (data file paths of a version, artifact paths), its commits (the files a
publish replaces), gc (publish ids, data file paths), aliases (alias files) and run records
(table names, run ids).
"""
from __future__ import annotations

import posixpath
import re
from urllib.parse import unquote

from firth.schemas.errors import UnsafePathError
from firth.schemas.fs import join

ARTIFACTS_DIR = "_artifacts"  # <table>/_artifacts/<publish id>/<artifact>: files published with a version
SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}\Z")  # \Z: "$" would accept a trailing newline
PUBLISH_ID = re.compile(r"^[0-9a-f]{32}\Z")  # uuid4().hex, as TableStore.publish makes them


def segment(value: object, what: str, pattern: re.Pattern = SEGMENT) -> str:
    """`value` if it is one plain path segment matching `pattern`; UnsafePathError otherwise."""
    if not isinstance(value, str) or not pattern.match(value):
        rule = ("32 hex digits" if pattern is PUBLISH_ID
                else "letters, digits, '.', '_' and '-', not starting with '.', '_' or '-'")
        raise UnsafePathError(f"{what}: {value!r} is not a plain name ({rule}); refusing to use it in a path, "
                              "so that nothing outside its folder is read, written or deleted")
    return value


def inside(folder: str, relative: str, what: str, *, encoded: bool = False) -> str:
    """The URI of `relative` under `folder`, after checking each segment (`encoded`: a Delta log
    path, percent-encoded) and that the joined path stays inside `folder`."""
    text = unquote(relative) if encoded and isinstance(relative, str) else relative
    if not isinstance(text, str) or not text:
        raise UnsafePathError(f"{what}: {relative!r} is not a relative path inside {folder}")
    for part in text.split("/"):
        segment(part, f"{what} ({relative!r} under {folder})")
    path = join(folder, text)
    if not posixpath.normpath(path).startswith(posixpath.normpath(folder) + "/"):  # the segments make it so
        raise UnsafePathError(f"{what}: {relative!r} leaves {folder}")
    return path


def artifact_folder(table_uri: str, publish_id: object, what: str) -> str:
    """`<table>/_artifacts/<publish id>` for a publish id of firth's form (32 hex digits)."""
    return inside(join(table_uri, ARTIFACTS_DIR), segment(publish_id, f"{what}: publish id", PUBLISH_ID), what)
