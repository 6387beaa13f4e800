"""The exceptions Pygestor raises for problems a user can fix.

Every message says what was wrong and what to do. The CLI prints ``str(error)`` as one line and
exits non-zero; anything that is not a :class:`PygestorError` is a bug (or an environment fault)
and is reported the same way, without a traceback unless ``PYGESTOR_DEBUG=1``.
"""

from __future__ import annotations

import re as _re


class PygestorError(Exception):
    """Base class: a problem with the input, the configuration, the data or the storage."""

    exit_code = 1


class ConfigError(PygestorError):
    """A setting, a config file or a storage option is invalid."""

    exit_code = 2


class InvalidNameError(PygestorError, ValueError):
    """A dataset, subset or partition name breaks the naming rules."""

    exit_code = 2


class NotFoundError(PygestorError, KeyError):
    """A reference names no registered dataset, subset or partition."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class AlreadyExistsError(PygestorError):
    """A dataset is registered already."""


class AmbiguousReferenceError(PygestorError):
    """A reference could mean more than one thing."""


class SourceError(PygestorError):
    """A source URL cannot be listed or read, or a source file cannot be converted."""


class StorageError(PygestorError):
    """The storage root cannot be reached, read or written."""


class IntegrityError(PygestorError):
    """Stored data does not match its record (size, rows, checksum) or a resume state."""


class NotDownloadedError(PygestorError):
    """The data asked for is registered but not downloaded yet."""


class CancelledError(PygestorError):
    """An operation was cancelled by the user."""


class QueryError(PygestorError):
    """A sort, filter or SQL condition over a subset's rows is invalid, too slow or too large."""

    exit_code = 2


class NotSupportedError(PygestorError):
    """An operation the pipeline (or the data) does not offer, e.g. rows before downloading."""


class PolicyError(PygestorError):
    """A source is outside what the settings allow (scheme, local root, private address)."""

    exit_code = 2


class PartialDataWarning(UserWarning):
    """Only some of the partitions a reference covers are downloaded; the read covers those."""


# ---------------------------------------------------------------------- message text
#: pieces of library messages that quote the data being read (a row, a value)
_QUOTED_CONTENT = (
    (_re.compile(r"(Expected \d+ columns?, got \d+)\s*:.*$"), r"\1"),
    (_re.compile(r"(invalid value|value|string|token)\s+(['\"`]).*?\2", _re.I), r"\1"),
    (_re.compile(r"(in row \d+)\s*:.*$"), r"\1"),
    (_re.compile(r"(Straddling object straddles two block boundaries).*$"), r"\1"),
)
_URL_CREDENTIALS = _re.compile(r"(?<=://)[^/@\s]+@")
_URL_QUERY = _re.compile(r"(\w+://[^\s?#'\"]+)\?[^\s'\"]*")


def short_text(exc: BaseException | str, limit: int = 300) -> str:
    """One line for a message: the first line of ``exc``, with no data content and no secret.

    Library errors quote what they failed on (a CSV row, a value, a request URL with its query
    string); messages built from them drop the quoted row or value, user names and passwords in
    URLs, and query strings (presigned signatures, tokens), then keep ``limit`` characters.
    """
    text = str(exc).strip()
    line = text.splitlines()[0].strip() if text else ""
    if not line:
        return type(exc).__name__ if isinstance(exc, BaseException) else ""
    for pattern, replacement in _QUOTED_CONTENT:
        line = pattern.sub(replacement, line)
    line = _URL_CREDENTIALS.sub("***@", line)
    line = _URL_QUERY.sub(r"\1?***", line)
    return line if len(line) <= limit else line[: limit - 3] + "..."
