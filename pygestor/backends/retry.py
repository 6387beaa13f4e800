"""Bounded retries with exponential back-off and jitter for transient storage/network errors.

fsspec's object-store backends retry single requests themselves (botocore: ``retries`` attempts
per request, see ``storage.network_options``); this wraps whole operations (a partition fetch, an
upload, a metadata read, one read of a remote file) so a dropped connection, a stall past the
time-out, a 5xx answer or a truncated body is retried too, a bounded number of times, and then
reported as one :class:`~pygestor.errors.PygestorError` naming what was being done (with its URL)
and the cause. A :class:`~pygestor.errors.PygestorError` raised by a lower layer after its own
retries is not retried again, so nested layers add up instead of multiplying.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

import tenacity

if TYPE_CHECKING:
    from pygestor.errors import PygestorError

T = TypeVar("T")
log = logging.getLogger("pygestor.retry")

_TRANSIENT_ERRNOS = {errno.ECONNRESET, errno.ECONNREFUSED, errno.ECONNABORTED, errno.EPIPE,
                     errno.ETIMEDOUT, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EAGAIN,
                     errno.ENETRESET, errno.ENETDOWN,
                     errno.EREMOTEIO,  # s3fs: HTTP 500 InternalError
                     errno.EBUSY}  # s3fs: HTTP 503 SlowDown/ServiceUnavailable, 409 conflicts
_TRANSIENT_NAMES = ("Timeout", "ConnectionError", "ClientPayloadError", "ServerDisconnected",
                    "ClientOSError", "IncompleteRead", "ProtocolError", "ChunkedEncodingError",
                    "ServiceUnavailable", "InternalError", "SlowDown", "RemoteDisconnected",
                    "HttpError", "ResponseStreamingError", "EndpointConnectionError",
                    "ReadTimeout", "ConnectTimeout", "TransientError", "ConnectionClosedError",
                    "ClientConnectionError", "ClientConnectorError", "ContentLengthError",
                    "TransferEncodingError", "ConnectionResetError", "ResponseParserError",
                    "HTTPClientError", "ServerTimeoutError")
#: S3 error codes worth another attempt (throttling and server-side trouble)
_TRANSIENT_CODES = {"InternalError", "ServiceUnavailable", "SlowDown", "RequestTimeout",
                    "Throttling", "ThrottlingException", "RequestTimeTooSkewed",
                    "BadDigest", "XAmzContentSHA256Mismatch"}


class TransientError(OSError):
    """A failure worth another attempt that no library flagged: e.g. a read that came back
    shorter than the bytes the file holds."""

    transient = True


def is_transient(exc: BaseException) -> bool:
    """True for errors worth another attempt: connection drops, time-outs, 5xx answers,
    throttling, truncated bodies. Looks through the chain of causes (s3fs turns a botocore
    ``ClientError`` into an ``OSError`` whose ``__cause__`` holds the HTTP status)."""
    return _deciding(exc)[0]


def _deciding(exc: BaseException) -> tuple[bool, BaseException]:
    """(transient?, the exception of the chain that decided it)."""
    from pygestor.errors import PygestorError

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, PygestorError):
            return bool(getattr(current, "transient", False)), current
        verdict = _transient_here(current)
        if verdict is not None:
            return verdict, current
        current = current.__cause__ or (None if current.__suppress_context__
                                        else current.__context__)
    return False, exc


def _transient_here(exc: BaseException) -> bool | None:
    """True/False when ``exc`` itself decides; None to look at its cause."""
    if getattr(exc, "transient", False):
        return True
    if isinstance(exc, (TimeoutError, ConnectionError)):
        return True
    if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError,
                        NotADirectoryError, FileExistsError)):
        return False
    status = _status_code(exc)
    if status is not None:
        return status >= 500 or status in (408, 429)
    code = _error_code(exc)
    if code is not None:
        return code in _TRANSIENT_CODES
    if isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNOS:
        return True
    name = type(exc).__name__
    if any(part in name for part in _TRANSIENT_NAMES):
        return True
    return any(any(part in base.__name__ for part in _TRANSIENT_NAMES)
               for base in type(exc).__mro__[1:] if base not in (Exception, BaseException))\
        or None


def _status_code(exc: BaseException) -> int | None:
    for attr in ("status", "status_code", "code"):
        value = getattr(exc, attr, None)
        if isinstance(value, int) and not isinstance(value, bool) and 100 <= value < 600:
            return value
    response = getattr(exc, "response", None)
    if isinstance(response, dict):  # botocore ClientError
        value = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return value if isinstance(value, int) else None
    value = getattr(response, "status_code", None)
    return value if isinstance(value, int) else None


def _error_code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return code if isinstance(code, str) else None
    return None


def describe(exc: BaseException) -> str:
    """``Type: first line of the message`` of an exception, for one-line error messages.

    When a library turned a network error into something unrelated while handling it (s3fs
    raises ``IndexError`` while handling some time-outs), the network error is described.
    """
    transient, deciding = _deciding(exc)
    if transient:
        exc = deciding
    text = str(exc).strip()
    first = text.splitlines()[0] if text else ("timed out" if isinstance(exc, TimeoutError)
                                                else "")
    described = f"{type(exc).__name__}: {first[:300]}" if first else type(exc).__name__
    cause: BaseException | None = exc
    while cause is not None:  # s3fs hides the HTTP answer in the cause: show it
        response = getattr(cause, "response", None)
        status = _status_code(cause) if isinstance(response, dict) else None
        code = _error_code(cause)
        if status is not None or code is not None:
            answer = " ".join(str(v) for v in (status, code) if v is not None)
            return f"{described} (HTTP {answer})"
        cause = cause.__cause__
    return described


def call_with_retries(fn: Callable[[], T], *, attempts: int, backoff: float,
                      what: str = "operation",
                      error: type[PygestorError] | None = None) -> T:
    """Call ``fn`` until it succeeds, retrying transient errors at most ``attempts - 1`` times.

    Waits ``backoff`` seconds before the first retry, doubling each time, plus up to ``backoff``
    seconds of random jitter (at most 30 s). Errors that are not transient are raised at once,
    unchanged. When the attempts are spent on a transient error, it is raised as ``error``
    (default :class:`~pygestor.errors.StorageError`): "<what> failed after N attempts: <cause>".
    """
    from pygestor.config import redact_url
    from pygestor.errors import PygestorError, StorageError

    attempts = max(1, attempts)
    what = redact_url(what)  # a URL's user:password@ never reaches a log or an error
    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(attempts),
        wait=tenacity.wait_exponential_jitter(multiplier=backoff, jitter=backoff,
                                             max=max(backoff, 30.0)),
        retry=tenacity.retry_if_exception(is_transient),
        reraise=True,
        before_sleep=lambda state: log.warning(
            "%s failed (%s); retry %d of %d", what,
            redact_url(describe(state.outcome.exception())), state.attempt_number,
            attempts - 1),
    )
    try:
        return retrying(fn)
    except PygestorError:
        raise
    except Exception as exc:
        if not is_transient(exc):
            raise
        tries = "1 attempt" if attempts == 1 else f"{attempts} attempts"
        raise (error or StorageError)(f"{what} failed after {tries}: "
                                      f"{redact_url(describe(exc))}; check the network and "
                                      "the server, then try again") from exc
