"""Aliases: atomic moves, NAME@ALIAS / NAME@TIMESTAMP resolution, the rollback stack; local and moto S3."""
from __future__ import annotations

import json
import threading
import time
from datetime import timedelta

import pytest

from firth.schemas.aliases import alias_target, alias_uri, list_aliases, move_alias, read_alias, rollback_alias
from firth.schemas.errors import NotFoundError, StoreError
from firth.schemas.fs import filesystem
from tests.helpers.tables import STORES, publish_with_metrics, word_table


@pytest.mark.slow
@pytest.mark.parametrize("store_fixture", STORES)
def test_aliases_resolve_everywhere_and_keep_their_history(store_fixture, request):
    store = request.getfixturevalue(store_fixture)
    publish_with_metrics(store, "t", 0.1, 0.2, 0.3)
    assert read_alias(store, "t", "production") is None
    move_alias(store, "t", "production", 0)
    move_alias(store, "t", "production", 2, action="promote", note="nightly")
    move_alias(store, "t", "staging", 1)
    assert store.resolve("t@production") == ("t", 2)
    assert store.resolve("t@staging") == ("t", 1)
    assert store.resolve("t@latest") == store.resolve("t") == ("t", 2)
    assert store.resolve("t@1") == ("t", 1)
    assert sorted(list_aliases(store, "t")) == ["production", "staging"]

    fs, path = filesystem(alias_uri(store, "t", "production"), store.storage_options)
    stored = json.loads(fs.cat_file(path))
    assert (stored["alias"], stored["version"]) == ("production", 2)
    assert [(m["version"], m["action"], m["from"], m["note"]) for m in stored["history"]] == [
        (0, "set", None, ""), (2, "promote", 0, "nightly")]

    with pytest.raises(NotFoundError, match=r"has no alias 'canary'; aliases: production, staging, latest"):
        store.resolve("t@canary")
    with pytest.raises(NotFoundError, match="has no version 9"):
        move_alias(store, "t", "production", 9)
    with pytest.raises(StoreError, match="'latest' always points to the newest version"):
        move_alias(store, "t", "latest", 0)
    assert alias_target(store, "t", "production") == 2  # the refused moves changed nothing


def test_rollback_walks_back_down_the_promotions(local_store):
    publish_with_metrics(local_store, "t", 0.1, 0.2, 0.3, 0.4)
    for version in (0, 1, 2):
        move_alias(local_store, "t", "production", version, action="promote")
    assert read_alias(local_store, "t", "production").stack == [0, 1, 2]
    assert rollback_alias(local_store, "t", "production").version == 1
    assert rollback_alias(local_store, "t", "production").version == 0
    with pytest.raises(StoreError, match=r"t@production has no earlier target to roll back to"):
        rollback_alias(local_store, "t", "production")
    move_alias(local_store, "t", "production", 3, action="promote")
    record = read_alias(local_store, "t", "production")
    assert record.stack == [0, 3]
    assert [m.action for m in record.history] == ["promote", "promote", "promote", "rollback", "rollback", "promote"]
    assert rollback_alias(local_store, "t", "production").version == 0
    with pytest.raises(NotFoundError, match="has no alias 'staging'"):
        rollback_alias(local_store, "t", "staging")


def test_timestamps_resolve_to_the_latest_version_committed_at_or_before(local_store):
    for seed in range(3):
        local_store.publish("t", word_table(4, 2, seed))
        time.sleep(0.01)  # commit times in milliseconds: keep them apart
    v0, v1, v2 = local_store.versions("t")
    at = lambda moment: local_store.resolve(f"t@{moment.isoformat()}")  # noqa: E731
    assert at(v1.timestamp) == ("t", 1)
    assert at(v1.timestamp - timedelta(milliseconds=1)) == ("t", 0)
    assert at(v2.timestamp + timedelta(days=1)) == ("t", 2)
    with pytest.raises(NotFoundError, match=r"no version committed at or before .*; the first, version 0"):
        at(v0.timestamp - timedelta(seconds=1))


@pytest.mark.slow
@pytest.mark.parametrize("store_fixture", STORES)
def test_concurrent_readers_never_see_a_missing_alias(store_fixture, request):
    store = request.getfixturevalue(store_fixture)
    publish_with_metrics(store, "t", 0.1, 0.2)
    move_alias(store, "t", "production", 0)
    moves = 12
    failures: list[BaseException] = []

    def writer():
        try:
            for i in range(moves):
                move_alias(store, "t", "production", (i + 1) % 2)
        except BaseException as e:  # reported by the main thread
            failures.append(e)

    thread = threading.Thread(target=writer)
    thread.start()
    seen = []
    while thread.is_alive():
        seen.append(store.resolve("t@production")[1])  # raises NotFoundError if the alias were missing
    thread.join()
    assert not failures
    assert set(seen) <= {0, 1} and len(seen) > 0
    record = read_alias(store, "t", "production")
    assert len(record.history) == moves + 1 and record.version == moves % 2


def test_alias_files_are_format_2_json_lines_and_format_1_files_stay_readable(local_store):
    import polars as pl

    publish_with_metrics(local_store, "t", 0.1, 0.2)
    move_alias(local_store, "t", "production", 1)
    fs, path = filesystem(alias_uri(local_store, "t", "production"), local_store.storage_options)
    body = fs.cat_file(path)
    assert body.count(b"\n") == 1 and body.endswith(b"\n")  # one line: a JSON Lines file
    assert pl.read_ndjson(path).select("format", "alias", "version").rows() == [(2, "production", 1)]

    # a file written before the format field (indented, no "format") reads the same
    old = {"table": "t", "alias": "staging", "version": 0,
           "history": [{"version": 0, "action": "set", "at": "2026-11-01T00:00:00.000+00:00", "from": None,
                        "forced": False, "note": ""}]}
    fs.pipe_file(path.replace("production", "staging"), json.dumps(old, indent=1).encode())
    assert local_store.resolve("t@staging") == ("t", 0)
    assert move_alias(local_store, "t", "staging", 1, action="promote").stack == [0, 1]
    assert json.loads(fs.cat_file(path.replace("production", "staging")))["format"] == 2

    fs.pipe_file(path, json.dumps({**json.loads(body), "format": 3}).encode())
    with pytest.raises(StoreError, match=r"production.json has format 3, newer than the 2 this firth reads; "
                                         r"upgrade firth"):
        local_store.resolve("t@production")
