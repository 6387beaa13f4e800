"""The storage root: one fsspec filesystem plus a root path, and the operations Pygestor needs.

:class:`Storage` holds what every kind of storage shares (paths, reading, listing, removing,
bounded and retried calls); one small subclass per kind says how a write is made atomic and how
a record is updated without losing a concurrent writer's change:

- :class:`~pygestor.backends.local.LocalStorage` (local folders, NFS mounts): temp file + rename,
  read-modify-write under a ``filelock`` next to the record;
- :class:`~pygestor.backends.s3.S3Storage`: one PUT; records written compare-and-swap
  (``IfMatch`` / ``IfNoneMatch="*"``), so writers on many machines lose no update;
- :class:`~pygestor.backends.gcs.GCSStorage`: the same with ``ifGenerationMatch``;
- :class:`~pygestor.backends.objectstore.ObjectStorage`: any other object store (and S3/GCS
  servers that do not honour the conditions, detected by a probe): one PUT, updates under a lock
  of this machine (one writer machine at a time; a warning says so).

:func:`storage_for` picks the class from the URL's protocol (a small registry, as in fsspec).

Network faults (object stores): every call is bounded in time (``2 * timeout`` plus the transfer
of its bytes at a minimal rate, see :meth:`Storage.call_bound`) and retried on transient errors
(dropped connections, time-outs, 5xx answers, truncated bodies) with exponential back-off and
jitter, ``retries`` attempts at most, then fails with a :class:`StorageError` naming the URL and
the cause. Reads of remote files (``Storage.open(path, "rb")``) are retried per read and never
return fewer bytes than the file holds. See docs/reliability.md for the bounds.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import fsspec
from fsspec.asyn import AsyncFileSystem

from pygestor.backends.filesystem import make_filesystem, network_options  # noqa: F401
from pygestor.backends.reader import RetryingReader
from pygestor.backends.retry import call_with_retries, is_transient
from pygestor.backends.temps import (  # noqa: F401 - the public names of this module
    TEMP_MARKER,
    is_stale_temp,
    remove_stale_temps,
    staging_root,
    stale_temps,
    temp_name,
)
from pygestor.errors import IntegrityError, StorageError, short_text

log = logging.getLogger("pygestor.storage")

LOCK_TIMEOUT = 300.0
#: slowest transfer rate a call is allowed before it is abandoned (bytes per second)
MIN_RATE = 256 << 10
_STAGING_CLEANED: set[tuple[int, str]] = set()
#: apply(old bytes or None) -> new bytes, or None to write nothing
Apply = Callable[[bytes | None], bytes | None]


class Storage:
    """A storage root (``data_dir``) on any fsspec filesystem.

    Location:
        url: local path or fsspec URL of the root.
        storage_options: keyword arguments for the filesystem (credentials, ``endpoint_url``).
    Network (object stores; defaults from :class:`~pygestor.config.Settings`):
        timeout: connect/read time-out in seconds given to the client, unless the storage
            options set one; every call is also bounded by :meth:`call_bound`.
        retries: attempts of an operation (and of each request) on a transient error.
        retry_backoff: first back-off delay in seconds (doubles, with jitter).
    """

    is_local: ClassVar[bool] = False

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None, *,
                 timeout: float | None = None, retries: int | None = None,
                 retry_backoff: float | None = None) -> None:
        from pygestor.config import Settings

        self.url = url
        self.storage_options = dict(storage_options or {})
        self.timeout = Settings.timeout if timeout is None else float(timeout)
        self.retries = Settings.retries if retries is None else max(1, int(retries))
        self.retry_backoff = Settings.retry_backoff if retry_backoff is None \
            else float(retry_backoff)
        self._fs: fsspec.AbstractFileSystem | None = None
        self._fs_pid: int | None = None
        self._root: str | None = None
        self._root_checked: int | None = None

    @classmethod
    def for_settings(cls, settings: Any) -> Storage:
        """The storage root of ``settings`` (data_dir, storage options, network settings),
        as the class of its kind."""
        kind = storage_class(settings.data_dir) if cls is Storage else cls
        return kind(settings.data_dir, settings.storage_options, timeout=settings.timeout,
                    retries=settings.retries, retry_backoff=settings.retry_backoff)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.update(_fs=None, _fs_pid=None)  # made again in the process that unpickles it
        return state

    # ------------------------------------------------------------------ filesystem
    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        """The filesystem, created lazily and anew in each process (fork safety)."""
        if self._fs is None or self._fs_pid != os.getpid():
            self._fs, self._root = make_filesystem(self.url, self.storage_options,
                                                   timeout=self.timeout, retries=self.retries)
            self._fs_pid = os.getpid()
        return self._fs

    @property
    def root(self) -> str:
        self.fs  # noqa: B018 - resolves the root
        assert self._root is not None
        return self._root

    @property
    def protocol(self) -> str:
        protocol = self.fs.protocol
        return protocol if isinstance(protocol, str) else protocol[0]

    def path(self, *parts: str) -> str:
        """The full filesystem path of ``parts`` below the root."""
        return "/".join([self.root.rstrip("/"), *[p.strip("/") for p in parts if p]])

    def url_of(self, path: str) -> str:
        """A URL other tools (pyarrow, Dask, DuckDB) can open with ``storage_options``."""
        return path if self.is_local else self.fs.unstrip_protocol(path)

    def check_root(self) -> None:
        """A clear error, once per process, when ``data_dir`` cannot be a storage root."""
        if self._root_checked == os.getpid():
            return
        self._check_root()
        self._root_checked = os.getpid()

    def _check_root(self) -> None:
        """Raise StorageError if the root cannot hold data (each kind says how)."""

    @property
    def locked_updates(self) -> bool:
        """Whether record updates run under a lock (True) or compare-and-swap (False)."""
        return True

    # ------------------------------------------------------------------ bounded calls
    def call_bound(self, size: int = 0) -> float:
        """Seconds one call may take before it is abandoned: two request attempts of
        ``timeout`` each, plus ``size`` bytes at :data:`MIN_RATE`. A server that accepts a
        request and never answers (``Expect: 100-continue`` unanswered) is cut off here."""
        return 2 * self.timeout + 5 + size / MIN_RATE

    def call(self, method: str, *args: Any, size: int = 0, **kwargs: Any) -> Any:
        """``fs.<method>(*args, **kwargs)``, bounded by :meth:`call_bound` on asynchronous
        filesystems (s3fs, gcsfs, http): fsspec cancels the request when the bound passes."""
        fs = self.fs
        if isinstance(fs, AsyncFileSystem) and not fs.asynchronous:
            kwargs["timeout"] = self.call_bound(size)
        return getattr(fs, method)(*args, **kwargs)

    def _guard(self, action: str, path: str, fn: Any) -> Any:
        """Run ``fn`` with this storage's retry policy and one-line errors."""
        try:
            if self.is_local:
                return fn()
            return call_with_retries(fn, attempts=self.retries, backoff=self.retry_backoff,
                                     what=f"{action} {self.url_of(path)}", error=StorageError)
        except (FileNotFoundError, FileExistsError, IsADirectoryError, NotADirectoryError,
                StorageError):
            raise
        except PermissionError as exc:
            raise StorageError(f"permission denied to {action} {self.url_of(path)}: "
                               f"{short_text(exc)}; check the credentials and storage_options"
                               ) from None
        except OSError as exc:
            if _looks_like_auth(exc):
                raise StorageError(f"access denied to {action} {self.url_of(path)}: "
                                   f"{short_text(exc)}; check the credentials") from None
            raise

    def retrying(self, fn: Any, what: str) -> Any:
        """Call ``fn`` with this storage's retry policy; StorageError naming ``what`` at the end."""
        if self.is_local:
            return fn()
        return call_with_retries(fn, attempts=self.retries, backoff=self.retry_backoff,
                                 what=what, error=StorageError)

    # ------------------------------------------------------------------ reading
    def exists(self, path: str) -> bool:
        return self._guard("check", path, lambda: self.call("exists", path))

    def info(self, path: str) -> dict[str, Any]:
        return self._guard("stat", path, lambda: self.call("info", path))

    def read_bytes(self, path: str, limit: int | None = None) -> bytes:
        """The bytes of ``path``; with ``limit``, a file larger than ``limit`` bytes is refused
        (IntegrityError) without reading more than ``limit + 1`` of them."""
        if limit is None:
            return self._guard("read", path, lambda: self.call("cat_file", path))
        data = self._guard("read", path, lambda: self.call("cat_file", path, start=0,
                                                           end=limit + 1, size=limit))
        if len(data) > limit:
            raise IntegrityError(f"{self.url_of(path)} is larger than the {limit}-byte limit; "
                                 "it is not read")
        return data

    def read_many(self, paths: list[str]) -> dict[str, bytes | Exception]:
        """Read several small files, concurrently where the filesystem can."""
        if not paths:
            return {}
        found = self._guard("read", paths[0],
                            lambda: self.call("cat", paths, on_error="return"))
        for key, value in list(found.items()):  # a transient failure: once more, with retries
            if isinstance(value, Exception) and is_transient(value):
                try:
                    found[key] = self.read_bytes(key)
                except Exception as exc:  # noqa: BLE001 - returned like fs.cat's errors
                    found[key] = exc
        return found

    def glob(self, pattern: str) -> list[str]:
        return sorted(self.glob_detail(pattern))

    def glob_detail(self, pattern: str) -> dict[str, dict[str, Any]]:
        """Files matching ``pattern`` with their details (size, type...), fresh."""
        def run() -> dict[str, dict[str, Any]]:
            with contextlib.suppress(Exception):
                self.fs.invalidate_cache()
            found = self.call("glob", pattern, detail=True)
            return {p: d for p, d in found.items() if d.get("type") != "directory"}
        return self._guard("list", pattern, run)

    def ls(self, path: str, detail: bool = False) -> list[Any]:
        """The entries of a folder, fresh (never from a listing cache: other processes write)."""
        def run() -> list[Any]:
            try:
                with contextlib.suppress(Exception):
                    self.fs.invalidate_cache(path)
                return self.call("ls", path, detail=detail)
            except FileNotFoundError:
                return []
        return self._guard("list", path, run)

    def find(self, path: str) -> list[str]:
        """Every file below ``path`` (fresh; none if it is not there)."""
        def run() -> list[str]:
            with contextlib.suppress(Exception):
                self.fs.invalidate_cache(path)
            try:
                return sorted(self.call("find", path))
            except FileNotFoundError:
                return []
        return self._guard("list", path, run)

    def open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        """A file object; remote files opened for reading retry every read (RetryingReader)."""
        if mode == "rb" and not self.is_local:
            return RetryingReader(self, path, **kwargs)
        return self.fs.open(path, mode, **kwargs)

    # ------------------------------------------------------------------ writing (per kind)
    def write_bytes(self, path: str, data: bytes) -> None:
        """Replace ``path`` with ``data`` atomically (readers see the old or the new bytes)."""
        raise NotImplementedError

    def create_bytes(self, path: str, data: bytes) -> None:
        """Write ``path`` only if it does not exist (FileExistsError otherwise)."""
        raise NotImplementedError

    def transact(self, path: str, apply: Apply, after: Callable[[], None] | None = None
                 ) -> None:
        """Update ``path`` from its latest bytes without losing a concurrent writer's change.

        ``apply`` gets the current bytes (None if absent) and returns the new ones (None: no
        write); it may be called more than once (after a conflict it sees the winner's bytes).
        ``after`` runs once the new bytes are stored (still under the lock where there is one).
        """
        raise NotImplementedError

    def put_file(self, local_path: str, path: str) -> None:
        """Place a complete local file at ``path`` atomically."""
        raise NotImplementedError

    def remove_record(self, path: str) -> None:
        """Remove a record (and whatever the kind keeps beside it, e.g. its lock file)."""
        self.remove(path)

    def staging_dir(self, near: str | None = None) -> str:
        """A local folder for building files before they are placed in storage (the machine's
        staging folder; stale files of dead processes are removed once per process)."""
        folder = staging_root()
        os.makedirs(folder, exist_ok=True)
        key = (os.getpid(), folder)
        if key not in _STAGING_CLEANED:
            _STAGING_CLEANED.add(key)
            for path in remove_stale_temps(folder):
                log.info("removed stale staging file %s", path)
        return folder

    def stale_temps(self, folders: list[str],
                    dead: set[tuple[str, int]] | frozenset[tuple[str, int]] = frozenset()
                    ) -> list[str]:
        """Stale temporary files of storage ``folders`` and of the local staging folder
        (``dead``: (host, pid) of writers known to be gone, e.g. of abandoned jobs)."""
        return stale_temps(staging_root(), dead=dead)

    # ------------------------------------------------------------------ removing, moving
    def check_inside(self, path: str) -> None:
        """Refuse a path that resolves outside the root (local storage: symlinks)."""

    def remove(self, path: str) -> bool:
        """Remove one file; False if it was not there."""
        self.check_inside(path)

        def run() -> bool:
            try:
                self.call("rm_file", path)
            except FileNotFoundError:
                return False
            return True
        removed = self._guard("remove", path, run)
        self._invalidate(path)
        return removed

    def remove_many(self, paths: list[str]) -> None:
        """Remove files (absent ones are fine): one bulk request per thousand."""
        for path in paths:
            self.check_inside(path)
        for start in range(0, len(paths), 1000):
            batch = paths[start:start + 1000]

            def run(batch: list[str] = batch) -> None:
                with contextlib.suppress(FileNotFoundError):
                    self.call("rm", batch)
            self._guard("remove", batch[0], run)
        for path in {self.fs._parent(p) for p in paths}:
            self._invalidate(path + "/x")

    def move(self, source: str, target: str) -> None:
        """Move one file inside the root (FileNotFoundError if ``source`` is gone): copy then
        delete (some stores, like the GCS emulator, answer moves slowly or not at all). The copy
        proves the source was there, so a delete that finds it gone is done: an earlier attempt
        whose answer was lost (GCS answers the retry with 404)."""
        self.check_inside(source)
        self.check_inside(target)
        self._guard("copy", source, lambda: self.call("copy", source, target))
        self.remove(source)  # (forgets the source's cached listing)
        self._invalidate(target)

    def _invalidate(self, path: str) -> None:
        with contextlib.suppress(Exception):
            self.fs.invalidate_cache(self.fs._parent(path))

    # ------------------------------------------------------------------ this machine's locks
    @contextlib.contextmanager
    def machine_lock(self, path: str, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
        """A lock of this machine named after ``path``'s URL, in a local folder (serializes the
        processes of one machine; another machine does not see it)."""
        folder = Path(tempfile.gettempdir()) / "pygestor-locks"
        folder.mkdir(parents=True, exist_ok=True)
        key = hashlib.sha256(self.url_of(path).encode()).hexdigest()[:32]
        with _file_lock(str(folder / f"{key}.lock"), self.url_of(path), timeout):
            yield


@contextlib.contextmanager
def _file_lock(lock_path: str, what: str, timeout: float) -> Iterator[None]:
    import filelock

    try:
        with filelock.FileLock(lock_path, timeout=timeout):
            yield
    except filelock.Timeout:
        raise StorageError(f"waited {timeout:.0f}s for the lock on {what}; another Pygestor "
                           f"process holds it (if none runs, delete {lock_path})") from None


def _looks_like_auth(exc: BaseException) -> bool:
    text = str(exc)
    return any(word in text for word in ("AccessDenied", "Forbidden", "403", "401",
                                         "InvalidAccessKeyId", "SignatureDoesNotMatch"))


# ====================================================================== the kinds
#: protocol -> "module:Class" (imported when used), as fsspec's registry does it
KINDS: dict[str, str] = {
    "file": "pygestor.backends.local:LocalStorage",
    "local": "pygestor.backends.local:LocalStorage",
    "s3": "pygestor.backends.s3:S3Storage",
    "s3a": "pygestor.backends.s3:S3Storage",
    "gs": "pygestor.backends.gcs:GCSStorage",
    "gcs": "pygestor.backends.gcs:GCSStorage",
}
DEFAULT_KIND = "pygestor.backends.objectstore:ObjectStorage"


def storage_class(url: str) -> type[Storage]:
    """The :class:`Storage` subclass for a ``data_dir`` URL."""
    import importlib

    protocol = "file" if "://" not in url and "::" not in url else \
        url.split("://", 1)[0].split("::")[-1].lower()
    module, _, name = KINDS.get(protocol, DEFAULT_KIND).partition(":")
    return getattr(importlib.import_module(module), name)


def open_storage(url: str, storage_options: dict[str, Any] | None = None) -> Storage:
    """The :class:`Storage` for a ``data_dir`` URL."""
    return storage_class(url)(url, storage_options)
