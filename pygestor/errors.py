"""The exceptions Pygestor raises for problems a user can fix.

Every message says what was wrong and what to do. The CLI prints ``str(error)`` as one line and
exits non-zero; anything that is not a :class:`PygestorError` is a bug (or an environment fault)
and is reported the same way, without a traceback unless ``PYGESTOR_DEBUG=1``.
"""

from __future__ import annotations


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
