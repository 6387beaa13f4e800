"""The storage root: one fsspec filesystem plus a root path, and the few operations Pygestor needs.

Atomicity, by kind of storage:

- local folders and NFS mounts: a file is written to a temporary name in the same folder
  (``.<name>.tmp-<host>-<pid>-<random>``), flushed and fsynced, then renamed over the final name
  (``os.replace``: atomic on POSIX, and on NFS for a single client). Data coming from another
  filesystem is first copied next to its destination, so no rename ever crosses filesystems.
- object stores (S3, GCS, memory): an object appears only when its upload completes (one PUT, or a
  multipart/resumable upload that is committed at the end), so writing the final key directly is
  atomic; a failed upload leaves nothing behind.

Locks serialize read-modify-write cycles of one dataset's ``metadata.json``: a ``filelock`` next to
the record on local storage (works across processes, and across NFS clients where the NFS lock
service runs), and a lock file in a local folder keyed by the record's URL for object stores (safe
across processes of one machine; see docs/reliability.md for several machines).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from pygestor.errors import StorageError

log = logging.getLogger("pygestor.storage")

TEMP_MARKER = ".tmp-"
LOCK_TIMEOUT = 300.0
_HOST = socket.gethostname().replace("-", "_")[:40]


def temp_name(final_name: str) -> str:
    """A temporary sibling name that says who wrote it, so stale ones can be recognized."""
    return f".{final_name}{TEMP_MARKER}{_HOST}-{os.getpid()}-{uuid.uuid4().hex[:12]}"


def is_stale_temp(name: str, max_age: float | None = None, mtime: float | None = None) -> bool:
    """True for a temp file whose writer is gone (same host, dead pid) or that is too old."""
    base = name.rsplit("/", 1)[-1]
    if not base.startswith(".") or TEMP_MARKER not in base:
        return False
    tail = base.rsplit(TEMP_MARKER, 1)[1]
    parts = tail.split("-")
    if len(parts) >= 3 and parts[0] == _HOST:
        try:
            pid = int(parts[1])
        except ValueError:
            return True
        if pid == os.getpid():
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False
    if max_age is not None and mtime is not None:
        return time.time() - mtime > max_age
    return False


class Storage:
    """A storage root (``data_dir``) on any fsspec filesystem.

    Location:
        url: local path or fsspec URL of the root.
        storage_options: keyword arguments for the filesystem (credentials, ``endpoint_url``).
    """

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None) -> None:
        self.url = url
        self.storage_options = dict(storage_options or {})
        self._fs: fsspec.AbstractFileSystem | None = None
        self._fs_pid: int | None = None
        self._root: str | None = None

    # ------------------------------------------------------------------ filesystem
    @property
    def fs(self) -> fsspec.AbstractFileSystem:
        """The filesystem, created lazily and anew in each process (fork safety)."""
        if self._fs is None or self._fs_pid != os.getpid():
            self._fs, self._root = make_filesystem(self.url, self.storage_options)
            self._fs_pid = os.getpid()
        return self._fs

    @property
    def root(self) -> str:
        self.fs  # noqa: B018 - resolves the root
        assert self._root is not None
        return self._root

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, LocalFileSystem)

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

    # ------------------------------------------------------------------ reading
    def exists(self, path: str) -> bool:
        return self._guard("check", path, lambda: self.fs.exists(path))

    def info(self, path: str) -> dict[str, Any]:
        return self._guard("stat", path, lambda: self.fs.info(path))

    def read_bytes(self, path: str) -> bytes:
        return self._guard("read", path, lambda: self.fs.cat_file(path))

    def read_many(self, paths: list[str]) -> dict[str, bytes | Exception]:
        """Read several small files, concurrently where the filesystem can."""
        if not paths:
            return {}
        return self._guard("read", paths[0], lambda: self.fs.cat(paths, on_error="return"))

    def glob(self, pattern: str) -> list[str]:
        return self._guard("list", pattern, lambda: sorted(self.fs.glob(pattern)))

    def ls(self, path: str, detail: bool = False) -> list[Any]:
        def run() -> list[Any]:
            try:
                return self.fs.ls(path, detail=detail)
            except FileNotFoundError:
                return []
        return self._guard("list", path, run)

    def open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        return self.fs.open(path, mode, **kwargs)

    # ------------------------------------------------------------------ writing
    def write_bytes(self, path: str, data: bytes) -> None:
        """Replace ``path`` with ``data`` atomically (readers see the old or the new bytes)."""
        if self.is_local:
            folder, name = os.path.split(path)
            os.makedirs(folder, exist_ok=True)
            tmp = os.path.join(folder, temp_name(name))
            try:
                with open(tmp, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            return
        self._guard("write", path, lambda: self.fs.pipe_file(path, data))
        self._invalidate(path)

    def put_file(self, local_path: str, path: str) -> None:
        """Place a complete local file at ``path`` atomically (never a cross-device rename)."""
        if self.is_local:
            folder, name = os.path.split(path)
            os.makedirs(folder, exist_ok=True)
            tmp = os.path.join(folder, temp_name(name))
            try:
                if os.stat(local_path).st_dev == os.stat(folder).st_dev:
                    os.replace(local_path, tmp)
                else:
                    with open(local_path, "rb") as src, open(tmp, "wb") as dst:
                        while chunk := src.read(8 << 20):
                            dst.write(chunk)
                        dst.flush()
                        os.fsync(dst.fileno())
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            return
        self._guard("upload", path, lambda: self.fs.put_file(local_path, path))
        self._invalidate(path)

    def staging_dir(self, near: str | None = None) -> str:
        """A local folder for building files before they are placed in storage.

        On local storage it is ``near`` (the destination folder), so placing is a rename.
        """
        if self.is_local and near is not None:
            os.makedirs(near, exist_ok=True)
            return near
        folder = os.path.join(tempfile.gettempdir(), "pygestor-staging")
        os.makedirs(folder, exist_ok=True)
        return folder

    def remove(self, path: str) -> bool:
        """Remove one file; False if it was not there."""
        def run() -> bool:
            try:
                self.fs.rm_file(path)
            except FileNotFoundError:
                return False
            return True
        removed = self._guard("remove", path, run)
        self._invalidate(path)
        return removed

    def remove_tree(self, path: str) -> None:
        """Remove a folder and everything below it (nothing if it is not there)."""
        def run() -> None:
            try:
                self.fs.rm(path, recursive=True)
            except FileNotFoundError:
                pass
        self._guard("remove", path, run)
        self._invalidate(path)
        if self.is_local:
            with contextlib.suppress(OSError):
                os.rmdir(path)

    def _invalidate(self, path: str) -> None:
        with contextlib.suppress(Exception):
            self.fs.invalidate_cache(self.fs._parent(path))

    # ------------------------------------------------------------------ locks
    @contextlib.contextmanager
    def lock(self, path: str, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
        """An exclusive inter-process lock named after ``path`` (held for a short update)."""
        import filelock

        if self.is_local:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            lock_path = path + ".lock"
        else:
            folder = Path(tempfile.gettempdir()) / "pygestor-locks"
            folder.mkdir(parents=True, exist_ok=True)
            key = hashlib.sha256(self.url_of(path).encode()).hexdigest()[:32]
            lock_path = str(folder / f"{key}.lock")
        try:
            with filelock.FileLock(lock_path, timeout=timeout):
                yield
        except filelock.Timeout:
            raise StorageError(f"waited {timeout:.0f}s for the lock on {self.url_of(path)}; "
                               "another Pygestor process holds it (if none runs, delete "
                               f"{lock_path})") from None

    # ------------------------------------------------------------------ errors
    def _guard(self, action: str, path: str, fn: Any) -> Any:
        try:
            return fn()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise
        except PermissionError as exc:
            raise StorageError(f"permission denied to {action} {self.url_of(path)}: "
                               f"{_short(exc)}; check the credentials and storage_options"
                               ) from None
        except OSError as exc:
            if _looks_like_auth(exc):
                raise StorageError(f"access denied to {action} {self.url_of(path)}: "
                                   f"{_short(exc)}; check the credentials") from None
            raise


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text[:300]


def _looks_like_auth(exc: BaseException) -> bool:
    text = str(exc)
    return any(word in text for word in ("AccessDenied", "Forbidden", "403", "401",
                                         "InvalidAccessKeyId", "SignatureDoesNotMatch"))


def make_filesystem(url: str, storage_options: dict[str, Any]) -> tuple[Any, str]:
    """Create the fsspec filesystem for ``url`` and the root path inside it."""
    options = dict(storage_options)
    if "://" not in url and "::" not in url:
        root = str(Path(url).expanduser().resolve())
        return fsspec.filesystem("file", **options), root
    protocol = url.split("://", 1)[0].split("::")[-1]
    if protocol in ("gs", "gcs"):
        # Without this, gcsfs probes for hierarchical-namespace support over gRPC at every call.
        os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
    try:
        fs, root = fsspec.core.url_to_fs(url, **options)
    except ImportError:
        extra = {"s3": "s3", "s3a": "s3", "gs": "gcs", "gcs": "gcs", "hf": "hf"}.get(protocol)
        hint = f"pip install 'pygestor[{extra}]'" if extra else "install its fsspec backend"
        raise StorageError(f"no filesystem for {protocol}:// is installed; {hint}") from None
    except ValueError as exc:
        if "Protocol not known" in str(exc):
            raise StorageError(f"unsupported URL scheme {protocol}:// in {url!r}; use a local "
                               "path, file://, s3://, gs://, memory:// or another fsspec "
                               "protocol") from None
        raise StorageError(f"invalid storage options for {protocol}://: {exc}") from None
    except TypeError as exc:
        raise StorageError(f"invalid storage options for {protocol}://: {exc}") from None
    return fs, root.rstrip("/") or root


def open_storage(url: str, storage_options: dict[str, Any] | None = None) -> Storage:
    """The :class:`Storage` for a ``data_dir`` URL."""
    return Storage(url, storage_options)
