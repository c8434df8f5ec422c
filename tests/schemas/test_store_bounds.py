"""Bounded object-store calls: every S3 request has a timeout and a retry limit, for deltalake and
s3fs alike, and a publish against an endpoint that froze or died fails within them."""
from __future__ import annotations

import time

import pytest
from botocore.exceptions import ReadTimeoutError

from firth.pipelines.config import StoreConfig
from firth.schemas.errors import StoreError
from firth.schemas.fs import Bounds, bounded_options, filesystem, fsspec_options, open_atomic
from firth.schemas.unreachable import Unreachable, unreachable
from firth.schemas.store import TableStore
from tests.helpers.tables import word_table


def test_bounds_are_added_to_s3_options_only_and_given_ones_kept(monkeypatch):
    monkeypatch.delenv("FIRTH_STORE_TIMEOUT_S", raising=False)
    monkeypatch.delenv("FIRTH_STORE_RETRIES", raising=False)
    assert bounded_options("s3://b/store", {"AWS_REGION": "us-west-2"}) == {
        "AWS_REGION": "us-west-2", "TIMEOUT": "15000ms", "CONNECT_TIMEOUT": "15000ms",
        "retry_timeout": "37500ms"}  # object_store retries no more after (2 + 1/2) x 15 s: 2 retries
    assert bounded_options("/data/store", {"AWS_REGION": "us-west-2"}) == {"AWS_REGION": "us-west-2"}
    # explicit storage options win; MAX_RETRIES is written the way delta-rs reads it
    assert bounded_options("s3://b/x", {"TIMEOUT": "3s", "MAX_RETRIES": "0"}, timeout_s=9, retries=5) == {
        "TIMEOUT": "3s", "max_retries": "0", "CONNECT_TIMEOUT": "3000ms", "retry_timeout": "1500ms"}
    assert Bounds.of(bounded_options("s3://b/x", {}, timeout_s=4, retries=3)) == Bounds(4.0, 3)
    monkeypatch.setenv("FIRTH_STORE_TIMEOUT_S", "2.5")
    monkeypatch.setenv("FIRTH_STORE_RETRIES", "1")
    assert Bounds.of(TableStore("s3://b/store").storage_options) == Bounds(2.5, 1)
    assert StoreConfig(uri="s3://b/x", timeout_s=4, retries=3).storage_options["TIMEOUT"] == "4000ms"
    monkeypatch.setenv("FIRTH_STORE_TIMEOUT_S", "soon")
    with pytest.raises(ValueError, match=r"\$FIRTH_STORE_TIMEOUT_S='soon': expected seconds > 0"):
        TableStore("s3://b/store")


def test_s3fs_gets_the_same_bounds_and_no_retries_of_its_own():
    options = bounded_options("s3://b/x", {"AWS_REGION": "us-west-2"}, timeout_s=4, retries=3)
    assert fsspec_options(options)["config_kwargs"] == {
        "read_timeout": 4.0, "connect_timeout": 4.0, "retries": {"max_attempts": 3, "mode": "standard"}}
    fs, _ = filesystem("s3://b/x", options)
    config = fs.s3.meta.config  # the botocore client's: 3 retries are 4 attempts
    assert (config.read_timeout, config.connect_timeout, config.retries, fs.retries) == (
        4.0, 4.0, {"total_max_attempts": 4, "mode": "standard"}, 1)
    # fsspec-style options (the corpus's) get the default bounds unless they set their own
    fs, _ = filesystem("s3://b/y", {"config_kwargs": {"read_timeout": 7}})
    assert (fs.config_kwargs["read_timeout"], fs.config_kwargs["connect_timeout"]) == (7, 15.0)


def test_unreachable_follows_the_causes_and_reads_object_store_messages():
    try:
        try:
            raise ReadTimeoutError(endpoint_url="http://127.0.0.1:1/b/k")
        except ReadTimeoutError as e:
            raise StoreError("publish 't' failed") from e
    except StoreError as wrapped:
        assert unreachable(wrapped) == unreachable(wrapped.__cause__)
        assert unreachable(wrapped).timed_out and unreachable(wrapped).request == "http://127.0.0.1:1/b/k"
    delta = OSError("Generic S3 error\n  \x1b[31m↳\x1b[0m Error performing GET http://h:1/b/_delta_log/x in 4s"
                    "\n  ↳ error sending request\n  ↳ client error (Connect)\n  ↳ tcp connect error")
    assert unreachable(delta).request == "GET http://h:1/b/_delta_log/x" and not unreachable(delta).timed_out
    arrow = OSError("When reading information for key 'x' in bucket 'b': AWS Error NETWORK_CONNECTION during "
                    "HeadObject operation: curlCode: 28, Timeout was reached")  # pyarrow's client, without s3fs
    assert unreachable(arrow) == Unreachable(True, "HeadObject")
    assert unreachable(OSError("[Errno 28] No space left on device")) is None
    assert unreachable(ValueError("timed out")) is None


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("failure", ["freeze", "stop"])
def test_publish_to_a_dead_endpoint_fails_within_its_bounds(own_s3, failure):
    store = TableStore("s3://own/store", {**own_s3.delta_options, "TIMEOUT": "1s", "MAX_RETRIES": "1"})
    store.publish("t", word_table(4, 2, seed=0))
    getattr(own_s3, failure)()
    start = time.monotonic()
    with pytest.raises(Exception) as raised:
        store.publish("t", word_table(5, 2, seed=1))
    elapsed = time.monotonic() - start
    problem = unreachable(raised.value)
    assert problem is not None and problem.timed_out == (failure == "freeze")
    # unbounded, a frozen endpoint held a publish for over 19 minutes; here a few requests of 2 x 1 s
    assert elapsed < 30
    if failure == "freeze":  # the endpoint answers again: the failed publish left no version behind
        own_s3.thaw()
        assert [v.version for v in store.versions("t")] == [0]
        assert store.read("t").num_rows == 4


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_a_write_to_a_frozen_endpoint_times_out_like_a_read(own_s3):
    # botocore sends PUTs with `Expect: 100-continue`, and aiohttp waits for the "100 Continue" with
    # no timeout: a run record's PUT hung for ever before filesystem() dropped that header
    options = bounded_options("s3://own/x", own_s3.delta_options, timeout_s=1, retries=0)
    fs, path = filesystem("s3://own/x/record.json", options)
    fs.pipe_file(path, b"{}")  # a kept-alive connection, as a run's first record leaves
    own_s3.freeze()
    start = time.monotonic()
    with pytest.raises(ReadTimeoutError):
        with open_atomic("s3://own/x/record.json", options) as f:
            f.write(b'{"outcome": "failed"}')
    assert time.monotonic() - start < 20


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_without_s3fs_the_readers_pyarrow_client_has_the_same_bounds(own_s3, monkeypatch):
    from firth.schemas import fs as fs_module

    monkeypatch.setattr(fs_module, "_has_s3fs", lambda: False)  # as in the plain install (no extras)
    options = bounded_options("s3://own/x", own_s3.delta_options, timeout_s=1, retries=1)
    fs, path = filesystem("s3://own/x/alias.json", options)
    assert type(fs).__name__ == "ArrowFSWrapper"
    fs.pipe_file(path, b"{}")
    own_s3.freeze()
    start = time.monotonic()
    with pytest.raises(OSError) as raised:
        fs.cat_file(path)
    assert unreachable(raised.value) == Unreachable(True, "HeadObject") and time.monotonic() - start < 20
