"""Telling an unreachable object store from other failures, whichever client raised it.

An S3 request that got no answer within its bounds (schemas/fs.py `Bounds`), or no connection, fails
differently in each client: botocore/aiohttp errors under s3fs, an OSError with object_store's text
from deltalake, an OSError with curl's from pyarrow's client, or only text in a Ray worker's error
re-raised on the driver. `unreachable(error)` reads all of them, anywhere in the error's chain.
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Unreachable:
    """An object store that did not answer in time (`timed_out`) or refused or dropped the connection."""
    timed_out: bool
    request: str  # the failed request as the error names it ("GET http://host/bucket/key"), or ""


# botocore / aiohttp / fsspec error classes that mean "no answer" or "no connection", and the
# messages that say the same where only text survives (object_store's OSError from deltalake,
# pyarrow's OSError without s3fs, a Ray worker's error re-raised on the driver).
_TIMEOUT_CLASSES = {"ReadTimeoutError", "ConnectTimeoutError", "ServerTimeoutError", "FSTimeoutError"}
_CONNECTION_CLASSES = {"EndpointConnectionError", "ConnectionClosedError", "ClientConnectorError",
                       "ServerDisconnectedError"}
_UNREACHABLE_TEXT = re.compile(r"error sending request|(Read|Connect) timeout on endpoint URL|"
                               r"Could not connect to the endpoint URL|AWS Error NETWORK_CONNECTION")  # (pyarrow's)
_REQUEST_TEXT = re.compile(r'Error performing (\w+ \S+)|endpoint URL: "([^"]+)"|NETWORK_CONNECTION during (\w+)')
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def unreachable(error: BaseException | None) -> Unreachable | None:
    """How `error`, or any error in its chain, says the object store was unreachable; None if it does not."""
    for link in error_chain(error):
        names = {c.__name__ for c in type(link).__mro__
                 if c.__module__.split(".")[0] in ("botocore", "aiobotocore", "aiohttp", "fsspec", "s3fs")}
        text = _ANSI.sub("", str(link))
        if names & (_TIMEOUT_CLASSES | _CONNECTION_CLASSES) or _UNREACHABLE_TEXT.search(text):
            request = _REQUEST_TEXT.search(text)
            timed_out = bool(names & _TIMEOUT_CLASSES) or any(t in text for t in ("timed out", "timeout on",
                                                                                  "Timeout was reached"))
            return Unreachable(timed_out,
                               next(filter(None, request.groups()), "") if request else "")
    return None


def error_chain(error: BaseException | None) -> Iterator[BaseException]:
    """`error`, then every error it was raised from (__cause__) or while handling (__context__),
    nearest first: a cleanup that failed too hides the first error in its __context__."""
    queue, seen = [error], set()
    while queue:
        link = queue.pop(0)
        if link is None or id(link) in seen:
            continue
        seen.add(id(link))
        yield link
        queue += [link.__cause__, link.__context__]
