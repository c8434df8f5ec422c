"""The one IO layer: every path is a URI (local path, file://, s3://) resolved through fsspec.

Two option styles exist in the config. Corpus options are fsspec-style (`key`, `secret`,
`client_kwargs`, ...); store options are deltalake/object_store-style (`AWS_ENDPOINT_URL`,
`AWS_ACCESS_KEY_ID`, ...), so that one set serves both Delta and plain Parquet under the store.
`filesystem()` accepts either: a mapping whose keys are all UPPER_CASE is object_store-style and
is translated by `fsspec_options()`; lowercase keys pass to fsspec unchanged.

S3 goes through s3fs, which the pipeline's extras install. The plain `pip install firth` (the
reader) has no s3fs: there `s3://` falls back to pyarrow's own S3 client behind fsspec's
ArrowFSWrapper, so the consumer and `firth tables` read (and move aliases) on S3 without
botocore's ~50 MB. The run lock's conditional create needs s3fs (ops/lock.py).

Every S3 request is bounded: it gives up after `timeout_s` without an answer and is retried at most
`retries` times (`store.timeout_s`, `store.retries`; else $FIRTH_STORE_TIMEOUT_S, $FIRTH_STORE_RETRIES;
else 15 s and 2), so an unreachable endpoint fails a call within about (retries + 1) x timeout_s.
`bounded_options()` writes the bounds as object_store options (deltalake reads them), and
`filesystem()` hands the same values to s3fs/botocore (or pyarrow's S3 client); schemas/unreachable.py
recognises the errors they raise when the endpoint does not answer or refuses the connection.
"""
from __future__ import annotations

import contextlib
import functools
import io
import os
import posixpath
import re
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO

import fsspec
import pyarrow.fs as pafs
from fsspec.core import url_to_fs
from fsspec.implementations.arrow import ArrowFSWrapper

# object_store key (upper case) -> fsspec/s3fs option. Aliases follow object_store's own.
_TOP_LEVEL = {
    "AWS_ACCESS_KEY_ID": "key", "ACCESS_KEY_ID": "key",
    "AWS_SECRET_ACCESS_KEY": "secret", "SECRET_ACCESS_KEY": "secret",
    "AWS_SESSION_TOKEN": "token", "AWS_TOKEN": "token", "SESSION_TOKEN": "token", "TOKEN": "token",
    "AWS_PROFILE": "profile",
}
_CLIENT_KWARGS = {
    "AWS_ENDPOINT_URL": "endpoint_url", "AWS_ENDPOINT": "endpoint_url", "ENDPOINT_URL": "endpoint_url",
    "ENDPOINT": "endpoint_url",
    "AWS_REGION": "region_name", "AWS_DEFAULT_REGION": "region_name", "REGION": "region_name",
}
_BOOLEAN = {"AWS_ALLOW_HTTP", "ALLOW_HTTP", "AWS_SKIP_SIGNATURE", "SKIP_SIGNATURE"}
# Options that only matter to Delta's commit protocol or object_store's HTTP client; s3fs has
# no counterpart, so they are accepted and not translated.
_DELTA_ONLY = {
    "AWS_S3_ALLOW_UNSAFE_RENAME", "AWS_CONDITIONAL_PUT", "AWS_S3_LOCKING_PROVIDER", "DELTA_DYNAMO_TABLE_NAME",
    "AWS_COPY_IF_NOT_EXISTS", "AWS_IMDSV1_FALLBACK", "AWS_UNSIGNED_PAYLOAD", "AWS_CHECKSUM_ALGORITHM",
    "POOL_IDLE_TIMEOUT", "POOL_MAX_IDLE_PER_HOST", "ALLOW_INVALID_CERTIFICATES",
}
# Request bounds. delta-rs reads object_store's retry settings only under their lowercase names
# (deltalake 1.6.6 ignores MAX_RETRIES), so those two are written lowercase and count as
# object_store-style. The retry limit is written as retry_timeout = (retries + 1/2) x timeout
# (object_store retries no more once that long has passed since the first attempt), not as
# max_retries: Delta wants it a string, polars (pl.read_delta with the store's options) a number.
_BOUND_KEYS = {"TIMEOUT", "CONNECT_TIMEOUT", "MAX_RETRIES", "RETRY_TIMEOUT"}
_RETRY_KEYS = ("max_retries", "retry_timeout")

DEFAULT_TIMEOUT_S, DEFAULT_RETRIES = 15.0, 2  # a dead endpoint fails a request in ~50 s
TIMEOUT_ENV, RETRIES_ENV = "FIRTH_STORE_TIMEOUT_S", "FIRTH_STORE_RETRIES"


@dataclass(frozen=True)
class Bounds:
    """How long one object-store request may wait for an answer, and how often it is retried."""
    timeout_s: float
    retries: int

    @classmethod
    def resolve(cls, timeout_s: float | None = None, retries: int | None = None) -> "Bounds":
        """The given values, else $FIRTH_STORE_TIMEOUT_S / $FIRTH_STORE_RETRIES, else the defaults."""
        if timeout_s is None:
            timeout_s = _env_number(TIMEOUT_ENV, float, DEFAULT_TIMEOUT_S)
        if retries is None:
            retries = _env_number(RETRIES_ENV, int, DEFAULT_RETRIES)
        return cls(float(timeout_s), int(retries))

    @classmethod
    def of(cls, options: Mapping[str, Any] | None, timeout_s: float | None = None,
           retries: int | None = None) -> "Bounds":
        """The bounds object_store-style `options` set (TIMEOUT; MAX_RETRIES, else RETRY_TIMEOUT as
        bounded_options writes it), else `timeout_s` and `retries`, else the environment's, else the defaults."""
        given = {str(k).upper(): v for k, v in (options or {}).items()}
        if "TIMEOUT" in given:
            timeout_s = _seconds("TIMEOUT", given["TIMEOUT"])
        elif timeout_s is None:
            timeout_s = _env_number(TIMEOUT_ENV, float, DEFAULT_TIMEOUT_S)
        if "MAX_RETRIES" in given:
            retries = _count("MAX_RETRIES", given["MAX_RETRIES"])
        elif "RETRY_TIMEOUT" in given:
            retries = max(0, round(_seconds("RETRY_TIMEOUT", given["RETRY_TIMEOUT"]) / timeout_s - 0.5))
        return cls.resolve(timeout_s, retries)


def _env_number(name: str, kind: type, default):
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = kind(text)
    except ValueError:
        value = -1
    if value < 0 or (kind is float and value == 0):
        raise ValueError(f"${name}={text!r}: expected {'seconds > 0' if kind is float else 'a count >= 0'}, "
                         f"e.g. {name}={default}")
    return value


def _seconds(key: str, value: Any) -> float:
    """object_store durations ("15s", "1500ms", "2m" or bare seconds) in seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|min)?\s*", str(value))
    if not match:
        raise ValueError(f"storage option {key!r}: expected a duration such as '15s' or '1500ms', got {value!r}")
    number, unit = float(match.group(1)), match.group(2) or "s"
    return number * {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0}[unit]


def _count(key: str, value: Any) -> int:
    try:
        count = int(value)
    except (TypeError, ValueError):
        count = -1
    if count < 0:
        raise ValueError(f"storage option {key!r}: expected a count >= 0, got {value!r}")
    return count


def bounded_options(uri: str, options: Mapping[str, Any] | None, timeout_s: float | None = None,
                    retries: int | None = None) -> dict[str, str]:
    """object_store-style `options` with request bounds added for an S3 `uri` (others unchanged).

    Bounds already in `options` (TIMEOUT, CONNECT_TIMEOUT, MAX_RETRIES, RETRY_TIMEOUT) are kept;
    the rest come from `timeout_s` / `retries`, else the environment, else the defaults.
    """
    bounded = {(k.lower() if k.lower() in _RETRY_KEYS else k): str(v) for k, v in (options or {}).items()}
    if not _is_s3(uri):
        return bounded
    given = {k.upper() for k in bounded}
    bounds = Bounds.of(bounded, timeout_s, retries)
    milliseconds = f"{round(bounds.timeout_s * 1000)}ms"
    defaults = {"TIMEOUT": milliseconds, "CONNECT_TIMEOUT": milliseconds,
                "retry_timeout": f"{round(bounds.timeout_s * (bounds.retries + 0.5) * 1000)}ms"}
    return bounded | {k: v for k, v in defaults.items() if k.upper() not in given}


def _is_s3(uri: str) -> bool:
    return str(uri).startswith(("s3://", "s3a://"))


def _s3_bounds(options: dict[str, Any]) -> dict[str, Any]:
    """fsspec-style s3fs options with botocore's timeouts and retries set (those given are kept)."""
    bounds = Bounds.resolve()
    config_kwargs = {"connect_timeout": bounds.timeout_s, "read_timeout": bounds.timeout_s,
                     "retries": {"max_attempts": bounds.retries, "mode": "standard"},
                     **(options.get("config_kwargs") or {})}
    return {**options, "config_kwargs": config_kwargs}


def fsspec_options(object_store_options: Mapping[str, str] | None) -> dict[str, Any]:
    """Translate deltalake/object_store storage options into s3fs constructor options.

    `{"AWS_ENDPOINT_URL": "http://127.0.0.1:9000", "AWS_REGION": "us-west-2", "AWS_ACCESS_KEY_ID": k,
    "AWS_SECRET_ACCESS_KEY": s}` -> `{"key": k, "secret": s, "client_kwargs": {"endpoint_url": ...,
    "region_name": "us-west-2"}}`. Keys are case-insensitive, as in object_store. AWS_ALLOW_HTTP has
    no s3fs counterpart (s3fs follows the endpoint's scheme) and is only checked to be a boolean.
    """
    options: dict[str, Any] = {}
    client_kwargs: dict[str, Any] = {}
    bounded = False
    for raw_key, value in (object_store_options or {}).items():
        key = str(raw_key).upper()
        if key in _TOP_LEVEL:
            options[_TOP_LEVEL[key]] = value
        elif key in _CLIENT_KWARGS:
            client_kwargs[_CLIENT_KWARGS[key]] = value
        elif key in _BOUND_KEYS:
            bounded = True
        elif key in _BOOLEAN:
            flag = _boolean(raw_key, value)
            if key.endswith("SKIP_SIGNATURE") and flag:
                options["anon"] = True
        elif key not in _DELTA_ONLY:
            known = sorted({*_TOP_LEVEL, *_CLIENT_KWARGS, *_BOOLEAN, *_DELTA_ONLY, *_BOUND_KEYS})
            raise ValueError(
                f"storage option {raw_key!r}: not a known object_store (deltalake) option, so it cannot be "
                f"translated for fsspec. Known: {', '.join(known)}. For fsspec-style options "
                "(key, secret, client_kwargs) use lowercase keys and do not mix the two styles.")
    if client_kwargs:
        options["client_kwargs"] = client_kwargs
    if bounded:  # botocore's own settings: the same timeouts, the same retries after the first attempt
        bounds = Bounds.of(object_store_options)
        connect = {str(k).upper(): v for k, v in object_store_options.items()}.get("CONNECT_TIMEOUT")
        options["config_kwargs"] = {"read_timeout": bounds.timeout_s,
                                    "connect_timeout": bounds.timeout_s if connect is None
                                    else _seconds("CONNECT_TIMEOUT", connect),
                                    "retries": {"max_attempts": bounds.retries, "mode": "standard"}}
    return options


def _boolean(key: str, value: Any) -> bool:
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise ValueError(f"storage option {key!r}: expected true or false, got {value!r}")


def is_object_store_style(options: Mapping[str, Any] | None) -> bool:
    """True when every key is UPPER_CASE (object_store style); raise when the styles are mixed."""
    keys = [str(k) for k in (options or {})]
    upper = [k for k in keys if k == k.upper() or k in _RETRY_KEYS]
    if upper and len(upper) != len(keys):
        lower = sorted(set(keys) - set(upper))
        raise ValueError(
            f"storage options mix object_store-style keys {sorted(upper)} with fsspec-style keys {lower}; "
            "use one style: AWS_ENDPOINT_URL/AWS_ACCESS_KEY_ID/... or endpoint_url/key/secret/client_kwargs")
    return bool(upper)


def is_local(uri: str) -> bool:
    return "://" not in uri or uri.startswith("file://")


def normalize_uri(uri: str) -> str:
    """Local paths become absolute (deltalake and fsspec then agree); remote URIs lose a trailing '/'."""
    uri = str(uri)
    if is_local(uri):
        fs, path = url_to_fs(uri)
        return fs._strip_protocol(path)
    return uri.rstrip("/")


def join(base: str, *parts: str) -> str:
    return "/".join([str(base).rstrip("/"), *parts])


def filesystem(uri: str, storage_options: Mapping[str, Any] | None = None) -> tuple[fsspec.AbstractFileSystem, str]:
    """(fsspec filesystem, path inside it) for a local path, file:// or s3:// URI.

    `storage_options` may be fsspec-style or object_store-style (all keys UPPER_CASE; translated).
    """
    options = dict(storage_options or {})
    if is_object_store_style(options):
        options = fsspec_options(options) if not is_local(str(uri)) else {}
    if not _is_s3(uri):
        return url_to_fs(str(uri), **options)
    options = _s3_bounds(options)
    if str(uri).startswith("s3://") and not _has_s3fs():
        return _pyarrow_s3(options), str(uri).removeprefix("s3://").rstrip("/")
    fs, path = url_to_fs(str(uri), **options)
    fs.retries = 1  # botocore retries each request (config_kwargs); s3fs would retry each of those 5 times
    _without_expect_continue(fs)
    return fs, path


def _without_expect_continue(fs) -> None:
    """Drop botocore's `Expect: 100-continue` from this s3fs client's PUTs: aiohttp waits for the
    "100 Continue" with no timeout, so a PUT to a frozen endpoint hung for ever (a GET timed out)."""
    from botocore.handlers import add_expect_header

    client = fs.s3  # created now if need be (no request is sent)
    if getattr(fs, "_firth_unhooked_client", None) is not client:
        client.meta.events.unregister("before-call.s3", add_expect_header)
        fs._firth_unhooked_client = client


@functools.cache
def _has_s3fs() -> bool:
    try:
        import s3fs  # noqa: F401  (fsspec would import it for s3:// anyway)
    except ImportError:
        return False
    return True


def _pyarrow_s3(options: Mapping[str, Any]) -> fsspec.AbstractFileSystem:
    """pyarrow's S3 client as an fsspec filesystem, from fsspec-style (s3fs) options."""
    client = dict(options.get("client_kwargs") or {})
    bounds = dict(options.get("config_kwargs") or {})  # _s3_bounds: the same timeouts and retries as botocore's
    unknown = set(options) - {"key", "secret", "token", "anon", "client_kwargs", "config_kwargs"}
    unknown |= set(client) - {"endpoint_url", "region_name"}
    unknown |= {f"config_kwargs.{k}" for k in set(bounds) - {"connect_timeout", "read_timeout", "retries"}}
    if unknown:
        raise ValueError(f"storage options {sorted(unknown)}: need s3fs, which this install lacks; "
                         "install it (pip install s3fs, or 'firth[stats]') or leave them out")
    # botocore (s3fs) and object_store (deltalake) also take the endpoint and region from the environment
    endpoint = client.get("endpoint_url") or os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
    region = client.get("region_name") or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    retries = (bounds.get("retries") or {}).get("max_attempts")
    return _pyarrow_s3_client(options.get("key"), options.get("secret"), options.get("token"),
                              bool(options.get("anon")), region, endpoint, bounds.get("connect_timeout"),
                              bounds.get("read_timeout"), retries)


@functools.lru_cache(maxsize=16)
def _pyarrow_s3_client(key, secret, token, anonymous, region, endpoint, connect_timeout, read_timeout,
                       retries) -> fsspec.AbstractFileSystem:
    """One client per distinct settings, as fsspec keeps one s3fs instance: a new client resolves
    its credentials again."""
    scheme, _, host = endpoint.partition("://") if endpoint else (None, "", None)
    return ArrowFSWrapper(pafs.S3FileSystem(
        access_key=key, secret_key=secret, session_token=token, anonymous=anonymous, region=region,
        endpoint_override=host or None, scheme=scheme or None,
        connect_timeout=connect_timeout, request_timeout=read_timeout,
        retry_strategy=None if retries is None else pafs.AwsStandardS3RetryStrategy(max_attempts=retries + 1)))


def pyarrow_filesystem(uri: str, storage_options: Mapping[str, Any] | None = None) -> tuple[pafs.FileSystem, str]:
    """(pyarrow.fs filesystem, path inside it), for libraries that take one (Ray Train's
    `storage_filesystem`, pyarrow datasets). Local paths get pyarrow's native LocalFileSystem;
    anything else wraps the fsspec filesystem, so both see the same options and credentials."""
    fs, path = filesystem(uri, storage_options)
    if _fs_is_local(fs):
        return pafs.LocalFileSystem(), path
    if isinstance(fs, ArrowFSWrapper):  # already pyarrow's: the reader's S3 without s3fs
        return fs.fs, path
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path


def _fs_is_local(fs: fsspec.AbstractFileSystem) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return "file" in protocol


@contextlib.contextmanager
def open_atomic(uri: str, storage_options: Mapping[str, Any] | None = None) -> Iterator[BinaryIO]:
    """Open `uri` for writing so that a reader never sees a half-written file.

    Local: write `.<name>.<random>.tmp` in the same folder, then rename (atomic on one filesystem).
    Object stores: an object appears only when its single PUT or multipart upload completes, so the
    file is written in place and, if the body raises, the upload is discarded instead of completed.
    """
    fs, path = filesystem(uri, storage_options)
    if _fs_is_local(fs):
        parent = posixpath.dirname(path)
        fs.makedirs(parent, exist_ok=True)
        tmp = posixpath.join(parent, f".{posixpath.basename(path)}.{uuid.uuid4().hex}.tmp")
        try:
            with fs.open(tmp, "wb") as f:
                yield f
            fs.mv(tmp, path)
        except BaseException:
            if fs.exists(tmp):
                fs.rm(tmp)
            raise
    elif not isinstance(fs, ArrowFSWrapper):
        f = fs.open(path, "wb")
        try:
            yield f
        except BaseException:
            f.discard()  # s3fs: aborts the multipart upload; a single PUT was never sent
            f.closed = True  # so close() cannot flush the partial buffer
            raise
        f.close()
    else:  # pyarrow's S3 client cannot discard an upload: buffer the (small) body, one PUT on success
        buffer = io.BytesIO()
        yield buffer
        fs.pipe_file(path, buffer.getvalue())
