"""Reference parsing: NAME, NAME@VERSION, NAME@ALIAS, NAME@TIMESTAMP, and alias names."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from firth.schemas.refs import Ref, RefError, parse, validate_alias


def test_each_selector_is_told_apart():
    assert parse("wiki") == Ref("wiki")
    assert parse("wiki@12") == Ref("wiki", version=12)
    assert parse("wiki@production") == Ref("wiki", alias="production")
    assert parse("wiki@latest") == Ref("wiki", alias="latest")
    assert parse("wiki@2026-11-24T09:30:00Z") == Ref("wiki", timestamp=datetime(2026, 11, 24, 9, 30, tzinfo=timezone.utc))
    # a date is its midnight; no zone is UTC; an offset is converted to UTC
    assert parse("wiki@2026-11-24").timestamp == datetime(2026, 11, 24, tzinfo=timezone.utc)
    assert parse("wiki@2026-11-24T10:30:00+01:00").timestamp == datetime(2026, 11, 24, 9, 30, tzinfo=timezone.utc)
    assert str(parse("wiki@production")) == "wiki@production" and str(parse("wiki@3")) == "wiki@3"


@pytest.mark.parametrize("ref", ["wiki@", "wiki@Prod", "wiki@-1", "wiki@1.5", "wiki@a@b",
                                 "wiki@_x", "wiki@٣", "wiki@prod\n"])
def test_bad_refs_say_which_forms_exist(ref):
    with pytest.raises(RefError, match=r"bad table reference .*NAME@ALIAS"):
        parse(ref)


def test_bad_timestamps_show_an_example():
    with pytest.raises(RefError, match=r"'2026-13-01' is not an ISO-8601 time; write e.g. 2026-11-24"):
        parse("wiki@2026-13-01")


def test_alias_names():
    assert validate_alias("production") == "production"
    with pytest.raises(RefError, match="'latest' always points to the newest version and cannot be moved"):
        validate_alias("latest")
    for bad in ["", "3", "Prod", "../x", "a/b", "a" * 65]:
        with pytest.raises(RefError, match="bad alias"):
            validate_alias(bad)


@pytest.mark.parametrize("ref", ["@3", "../x@1", "tables@1", "Wiki"])
def test_bad_names_in_refs_are_named(ref):
    with pytest.raises(RefError, match=rf"bad table reference '{ref.replace('.', '[.]')}': bad table name"):
        parse(ref)
