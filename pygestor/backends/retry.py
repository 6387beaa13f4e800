"""Bounded retries with exponential back-off and jitter for transient storage/network errors.

fsspec's object-store backends retry some calls themselves; this wraps whole operations (a
partition fetch, a metadata read) so a dropped connection or a 5xx answer mid-transfer is retried
too, a bounded number of times, and then reported with the URL and the cause.
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable
from typing import TypeVar

import tenacity

T = TypeVar("T")
log = logging.getLogger("pygestor.retry")

_TRANSIENT_ERRNOS = {errno.ECONNRESET, errno.ECONNREFUSED, errno.ECONNABORTED, errno.EPIPE,
                     errno.ETIMEDOUT, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EAGAIN}
_TRANSIENT_NAMES = ("Timeout", "ConnectionError", "ClientPayloadError", "ServerDisconnected",
                    "ClientOSError", "IncompleteRead", "ProtocolError", "ChunkedEncodingError",
                    "ServiceUnavailable", "InternalError", "SlowDown", "RemoteDisconnected",
                    "HttpError", "ResponseStreamingError", "EndpointConnectionError",
                    "ReadTimeout", "ConnectTimeout", "TransientError")


def is_transient(exc: BaseException) -> bool:
    """True for errors worth another attempt: connection drops, time-outs, 5xx answers."""
    from pygestor.errors import PygestorError

    if isinstance(exc, PygestorError) and not getattr(exc, "transient", False):
        return False
    if getattr(exc, "transient", False):
        return True
    if isinstance(exc, (TimeoutError, ConnectionError)):
        return True
    if isinstance(exc, (FileNotFoundError, PermissionError, IsADirectoryError)):
        return False
    if isinstance(exc, OSError) and exc.errno in _TRANSIENT_ERRNOS:
        return True
    status = _status_code(exc)
    if status is not None:
        return status >= 500 or status in (408, 429)
    return any(name in type(exc).__name__ for name in _TRANSIENT_NAMES)


def _status_code(exc: BaseException) -> int | None:
    for attr in ("status", "status_code", "code"):
        value = getattr(exc, attr, None)
        if isinstance(value, int) and 100 <= value < 600:
            return value
    response = getattr(exc, "response", None)
    if isinstance(response, dict):  # botocore ClientError
        value = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return value if isinstance(value, int) else None
    value = getattr(response, "status_code", None)
    return value if isinstance(value, int) else None


def call_with_retries(fn: Callable[[], T], *, attempts: int, backoff: float,
                      what: str = "operation") -> T:
    """Call ``fn`` until it succeeds, retrying transient errors at most ``attempts - 1`` times."""
    retrying = tenacity.Retrying(
        stop=tenacity.stop_after_attempt(max(1, attempts)),
        wait=tenacity.wait_exponential_jitter(multiplier=backoff, jitter=backoff,
                                             max=max(backoff, 30.0)),
        retry=tenacity.retry_if_exception(is_transient),
        reraise=True,
        before_sleep=lambda state: log.warning(
            "%s failed (%s: %s); retry %d of %d", what, type(state.outcome.exception()).__name__,
            state.outcome.exception(), state.attempt_number, attempts - 1),
    )
    return retrying(fn)
