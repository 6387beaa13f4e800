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

Network faults (object stores): every operation of :class:`Storage` is retried on transient errors
(dropped connections, time-outs, 5xx answers, truncated bodies) with exponential back-off and
jitter, ``retries`` attempts at most, then fails with a :class:`StorageError` naming the URL and
the cause; reads of remote files (``Storage.open(path, "rb")``) are retried per read and never
return fewer bytes than the file holds. Underneath, ``make_filesystem`` gives s3fs, gcsfs and
HTTP clients connect/read time-outs of ``timeout`` seconds and request-level retries, unless the
storage options set their own. See docs/reliability.md for the bounds.
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

from pygestor.backends.retry import TransientError, call_with_retries, is_transient
from pygestor.errors import StorageError, short_text

log = logging.getLogger("pygestor.storage")

TEMP_MARKER = ".tmp-"
LOCK_TIMEOUT = 300.0
_HOST = socket.gethostname().replace("-", "_")[:40]


def temp_name(final_name: str) -> str:
    """A temporary sibling name that says who wrote it, so stale ones can be recognized."""
    return f".{final_name}{TEMP_MARKER}{_HOST}-{os.getpid()}-{uuid.uuid4().hex[:12]}"


def is_stale_temp(name: str, max_age: float | None = None, mtime: float | None = None) -> bool:
    """True for a temp file whose writer is gone (same host, dead pid) or that is older than
    ``max_age`` seconds (another host's, or a live pid's: pids are reused)."""
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
            pass
        # alive: its writer, or another process that got the pid since; no file takes a day
    if max_age is not None and mtime is not None:
        return time.time() - mtime > max_age
    return False


def stale_temps(folder: str, max_age: float = 24 * 3600) -> list[str]:
    """Temporary files in a local ``folder`` whose writer is gone (see :func:`is_stale_temp`)."""
    found = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return found
    for entry in entries:
        if not entry.name.startswith(".") or TEMP_MARKER not in entry.name:
            continue
        try:
            mtime = entry.stat(follow_symlinks=False).st_mtime
        except OSError:
            continue
        if is_stale_temp(entry.name, max_age=max_age, mtime=mtime):
            found.append(entry.path)
    return found


def remove_stale_temps(folder: str, max_age: float = 24 * 3600) -> list[str]:
    """Delete the stale temporary files of a local ``folder``; the paths removed."""
    removed = []
    for path in stale_temps(folder, max_age):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
            removed.append(path)
    return removed


def staging_root() -> str:
    """The local folder where partitions bound for an object store are built."""
    return os.path.join(tempfile.gettempdir(), "pygestor-staging")


_STAGING_CLEANED: set[tuple[int, str]] = set()


class Storage:
    """A storage root (``data_dir``) on any fsspec filesystem.

    Location:
        url: local path or fsspec URL of the root.
        storage_options: keyword arguments for the filesystem (credentials, ``endpoint_url``).
    Network (object stores; defaults from :class:`~pygestor.config.Settings`):
        timeout: connect/read time-out in seconds given to the client, unless the storage
            options set one.
        retries: attempts of an operation (and of each request) on a transient error.
        retry_backoff: first back-off delay in seconds (doubles, with jitter).
    """

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
        """The storage root of ``settings`` (data_dir, storage options, network settings)."""
        return cls(settings.data_dir, settings.storage_options, timeout=settings.timeout,
                   retries=settings.retries, retry_backoff=settings.retry_backoff)

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

    def check_root(self) -> None:
        """A clear error, once per process, when ``data_dir`` cannot be a storage root: a local
        path that is a file, or a bucket that does not exist."""
        if self._root_checked == os.getpid():
            return
        root = self.root
        if self.is_local:
            if os.path.exists(root) and not os.path.isdir(root):
                raise StorageError(f"data_dir {root} is a file, not a folder; point data_dir "
                                   "(--data-dir, PYGESTOR_DATA_DIR or the config file) at a "
                                   "folder")
        elif self.protocol in ("s3", "s3a", "gs", "gcs"):
            bucket = root.split("/", 1)[0]
            if not self._guard("check", bucket, lambda: self.fs.exists(bucket)):
                raise StorageError(f"the bucket {bucket!r} of data_dir {self.url} does not exist "
                                   "(or these credentials cannot see it); create it, or fix "
                                   "data_dir")
        self._root_checked = os.getpid()

    # ------------------------------------------------------------------ reading
    def exists(self, path: str) -> bool:
        return self._guard("check", path, lambda: self.fs.exists(path))

    def info(self, path: str) -> dict[str, Any]:
        return self._guard("stat", path, lambda: self.fs.info(path))

    def read_bytes(self, path: str, limit: int | None = None) -> bytes:
        """The bytes of ``path``; with ``limit``, a file larger than ``limit`` bytes is refused
        (IntegrityError) without reading more than ``limit + 1`` of them."""
        from pygestor.errors import IntegrityError

        if limit is None:
            return self._guard("read", path, lambda: self.fs.cat_file(path))
        if self.is_local:
            size = os.stat(path).st_size
            if size > limit:
                raise IntegrityError(f"{path} is {size} bytes, above the {limit}-byte limit; "
                                     "it is not read")
            return self._guard("read", path, lambda: self.fs.cat_file(path))
        data = self._guard("read", path, lambda: self.fs.cat_file(path, start=0, end=limit + 1))
        if len(data) > limit:
            raise IntegrityError(f"{self.url_of(path)} is larger than the {limit}-byte limit; "
                                 "it is not read")
        return data

    def read_many(self, paths: list[str]) -> dict[str, bytes | Exception]:
        """Read several small files, concurrently where the filesystem can."""
        if not paths:
            return {}
        found = self._guard("read", paths[0], lambda: self.fs.cat(paths, on_error="return"))
        for key, value in list(found.items()):  # a transient failure: once more, with retries
            if isinstance(value, Exception) and is_transient(value):
                try:
                    found[key] = self.read_bytes(key)
                except Exception as exc:  # noqa: BLE001 - returned like fs.cat's errors
                    found[key] = exc
        return found

    def glob(self, pattern: str) -> list[str]:
        return self._guard("list", pattern, lambda: sorted(self.fs.glob(pattern)))

    def glob_detail(self, pattern: str) -> dict[str, dict[str, Any]]:
        """Paths matching ``pattern`` with their details (size, type...), fresh."""
        def run() -> dict[str, dict[str, Any]]:
            with contextlib.suppress(Exception):
                self.fs.invalidate_cache()
            found = self.fs.glob(pattern, detail=True)
            return {p: d for p, d in found.items() if d.get("type") != "directory"}
        return self._guard("list", pattern, run)

    def ls(self, path: str, detail: bool = False) -> list[Any]:
        """The entries of a folder, fresh (never from a listing cache: other processes write)."""
        def run() -> list[Any]:
            try:
                with contextlib.suppress(Exception):
                    self.fs.invalidate_cache(path)
                return self.fs.ls(path, detail=detail)
            except FileNotFoundError:
                return []
        return self._guard("list", path, run)

    def open(self, path: str, mode: str = "rb", **kwargs: Any) -> Any:
        """A file object; remote files opened for reading retry every read (see RetryingReader)."""
        if mode == "rb" and not self.is_local:
            return RetryingReader(self, path, **kwargs)
        return self.fs.open(path, mode, **kwargs)

    def retrying(self, fn: Any, what: str) -> Any:
        """Call ``fn`` with this storage's retry policy; StorageError naming ``what`` at the end."""
        if self.is_local:
            return fn()
        return call_with_retries(fn, attempts=self.retries, backoff=self.retry_backoff,
                                 what=what, error=StorageError)

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
            _fsync_dir(folder)
            # temp files of this name left by writers that were killed (kill -9, power loss)
            for stale in stale_temps(folder):
                if os.path.basename(stale).startswith(f".{name}{TEMP_MARKER}"):
                    with contextlib.suppress(OSError):
                        os.unlink(stale)
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
                    _fsync_path(local_path)  # the bytes are on disk before the name is
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
            _fsync_dir(folder)
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
        folder = staging_root()
        os.makedirs(folder, exist_ok=True)
        key = (os.getpid(), folder)
        if key not in _STAGING_CLEANED:  # what killed processes left here, once per process
            _STAGING_CLEANED.add(key)
            for path in remove_stale_temps(folder):
                log.info("removed stale staging file %s", path)
        return folder

    def stale_temps(self, folders: list[str]) -> list[str]:
        """Stale temporary files in storage ``folders`` (local roots; object stores never hold
        any) and in the local staging folder (object stores)."""
        if self.is_local:
            return [p for folder in folders for p in stale_temps(folder)]
        return stale_temps(staging_root())

    def remove(self, path: str) -> bool:
        """Remove one file; False if it was not there. On local storage a path whose folder
        leads out of the root (a symlink) is refused, and a symlink is removed, not its target."""
        self.check_inside(path)

        def run() -> bool:
            try:
                self.fs.rm_file(path)
            except FileNotFoundError:
                return False
            return True
        removed = self._guard("remove", path, run)
        self._invalidate(path)
        return removed

    def remove_many(self, paths: list[str]) -> None:
        """Remove files (absent ones are fine): one bulk request per batch on object stores."""
        for path in paths:
            self.check_inside(path)
        if self.is_local:
            for path in paths:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
            return
        for start in range(0, len(paths), 1000):
            batch = paths[start:start + 1000]

            def run(batch: list[str] = batch) -> None:
                with contextlib.suppress(FileNotFoundError):
                    self.fs.rm(batch)
            self._guard("remove", batch[0], run)
        for path in {self.fs._parent(p) for p in paths}:
            self._invalidate(path + "/x")

    def remove_tree(self, path: str) -> None:
        """Remove a folder and everything below it (nothing if it is not there). On local
        storage a symlinked folder is unlinked, never followed."""
        self.check_inside(path)
        if self.is_local and os.path.islink(path):
            os.unlink(path)
            return

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

    def move(self, source: str, target: str) -> None:
        """Move one file inside the root (FileNotFoundError if ``source`` is gone)."""
        self.check_inside(source)
        self.check_inside(target)
        if self.is_local:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.replace(source, target)
            _fsync_dir(os.path.dirname(target))
            return
        # copy then delete: some stores (the GCS emulator) answer moves slowly or not at all
        self._guard("copy", source, lambda: self.fs.copy(source, target))
        self._guard("remove", source, lambda: self.fs.rm_file(source))
        self._invalidate(source)
        self._invalidate(target)

    def find(self, path: str) -> list[str]:
        """Every file below ``path`` (fresh; none if it is not there)."""
        def run() -> list[str]:
            with contextlib.suppress(Exception):
                self.fs.invalidate_cache(path)
            try:
                return sorted(self.fs.find(path))
            except FileNotFoundError:
                return []
        return self._guard("list", path, run)

    def check_inside(self, path: str) -> None:
        """On local storage, refuse a path whose folder resolves outside the root (a symlinked
        dataset or subset folder): nothing outside ``data_dir`` is deleted or moved."""
        if not self.is_local:
            return
        root = os.path.realpath(self.root)
        folder = os.path.realpath(os.path.dirname(path))
        if folder != root and not folder.startswith(root.rstrip(os.sep) + os.sep):
            raise StorageError(f"{path} leads out of data_dir ({root}) through a symbolic link; "
                               "Pygestor does not delete or move files outside its root")

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
            if self.is_local:
                return fn()
            return call_with_retries(fn, attempts=self.retries, backoff=self.retry_backoff,
                                     what=f"{action} {self.url_of(path)}", error=StorageError)
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError, StorageError):
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


class RetryingReader:
    """A read-only file of an object store whose every read is retried on transient errors.

    A read that fails (dropped connection, time-out, 5xx, truncated body) is repeated from the
    same offset with a fresh handle, with back-off, ``storage.retries`` attempts at most; a read
    that returns fewer bytes than the file holds counts as a failure too, so a caller never gets
    a silently short file. When the attempts are spent: :class:`StorageError` with the URL and
    the cause. Works wherever a binary file object does (pyarrow, hashlib loops, ``shutil``).
    """

    def __init__(self, storage: Storage, path: str, **kwargs: Any) -> None:
        self._storage = storage
        self._path = path
        self._kwargs = kwargs
        self._handle: Any = None
        self._pos = 0
        self._size: int | None = None
        self.closed = False
        self.name = path
        self.mode = "rb"
        self._handle = self._call(self._open, "open")

    @property
    def size(self) -> int:
        if self._size is None:
            self._size = int(self._call(lambda: self._storage.fs.size(self._path), "stat"))
        return self._size

    def _open(self) -> Any:
        handle = self._storage.fs.open(self._path, "rb", **self._kwargs)
        size = getattr(handle, "size", None)
        if isinstance(size, int):
            self._size = size
        return handle

    def _call(self, fn: Any, action: str) -> Any:
        return call_with_retries(fn, attempts=self._storage.retries,
                                 backoff=self._storage.retry_backoff,
                                 what=f"{action} {self._storage.url_of(self._path)}",
                                 error=StorageError)

    def _drop_handle(self) -> None:
        handle, self._handle = self._handle, None
        if handle is not None:
            with contextlib.suppress(Exception):
                handle.close()

    def read(self, n: int = -1) -> bytes:
        if self.closed:
            raise ValueError("I/O operation on closed file")
        start = self._pos
        size = self.size
        wanted = max(0, size - start) if n is None or n < 0 else max(0, min(n, size - start))
        if wanted == 0:
            return b""

        def attempt() -> bytes:
            try:
                if self._handle is None:
                    self._handle = self._open()
                self._handle.seek(start)
                data = self._handle.read(wanted)
            except BaseException:
                self._drop_handle()
                raise
            if len(data) != wanted:
                self._drop_handle()
                raise TransientError(f"short read: {len(data)} of {wanted} bytes at offset "
                                     f"{start}")
            return bytes(data)

        data = self._call(attempt, f"read bytes {start}-{start + wanted} of")
        self._pos = start + len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def readall(self) -> bytes:
        return self.read(-1)

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence == 0:
            position = offset
        elif whence == 1:
            position = self._pos + offset
        elif whence == 2:
            position = self.size + offset
        else:
            raise ValueError(f"invalid whence {whence}")
        if position < 0:
            raise ValueError("negative seek position")
        self._pos = position
        return position

    def tell(self) -> int:
        return self._pos

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def close(self) -> None:
        self.closed = True
        self._drop_handle()

    def __enter__(self) -> RetryingReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line

    def readline(self, limit: int = -1) -> bytes:
        chunks = []
        while limit < 0 or sum(map(len, chunks)) < limit:
            piece = self.read(1 << 16 if limit < 0 else min(1 << 16, limit))
            if not piece:
                break
            cut = piece.find(b"\n")
            if cut >= 0:
                self._pos -= len(piece) - cut - 1
                chunks.append(piece[: cut + 1])
                break
            chunks.append(piece)
        return b"".join(chunks)


def _fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: str) -> None:
    """Make a rename in ``folder`` durable (a no-op where directories cannot be synced)."""
    with contextlib.suppress(OSError):
        _fsync_path(folder)



def _looks_like_auth(exc: BaseException) -> bool:
    text = str(exc)
    return any(word in text for word in ("AccessDenied", "Forbidden", "403", "401",
                                         "InvalidAccessKeyId", "SignatureDoesNotMatch"))


def network_options(protocol: str, storage_options: dict[str, Any], timeout: float | None,
                    retries: int | None) -> dict[str, Any]:
    """``storage_options`` plus client time-outs and request retries, where the user set none.

    - s3 (s3fs/botocore): ``config_kwargs`` ``connect_timeout`` and ``read_timeout`` of
      ``timeout`` seconds, and at most 2 attempts per request in botocore's "standard" mode
      (one quick retry of a 5xx, a throttling answer, a dropped connection or a time-out, even
      in code paths that Pygestor does not wrap). s3fs's own retry loop is reduced to one
      attempt (see make_filesystem): its nested loops would multiply the attempts. The
      ``retries`` attempts with the configured back-off are made by :class:`Storage` (and the
      download, the loaders) around whole operations, so a request is tried at most
      ``2 * retries`` times and a stalled endpoint is given up after about
      ``2 * retries * timeout`` seconds plus back-off.
    - gs (gcsfs): ``requests_timeout`` (connect and read) of ``timeout`` seconds.
    - http/https (aiohttp): ``client_kwargs`` ``timeout`` (connect and read, no total limit),
      and ``trust_env`` (credentials from ``~/.netrc``, proxies from the environment).
    """
    options = dict(storage_options)
    if protocol in ("s3", "s3a") and (timeout is not None or retries is not None):
        config = dict(options.get("config_kwargs") or {})
        if timeout is not None:
            config.setdefault("connect_timeout", timeout)
            config.setdefault("read_timeout", timeout)
        if retries is not None:  # one quick retry per request; Storage retries operations
            config.setdefault("retries", {"total_max_attempts": min(2, max(1, int(retries))),
                                          "mode": "standard"})
        options["config_kwargs"] = config
    elif protocol in ("gs", "gcs") and timeout is not None:
        if "requests_timeout" not in options:
            import aiohttp

            options["requests_timeout"] = aiohttp.ClientTimeout(
                total=None, sock_connect=timeout, sock_read=timeout)
    elif protocol in ("http", "https"):
        client = dict(options.get("client_kwargs") or {})
        client.setdefault("trust_env", True)  # credentials from ~/.netrc, proxies from the env
        if "timeout" not in client and timeout is not None:
            import aiohttp

            client["timeout"] = aiohttp.ClientTimeout(total=None, sock_connect=timeout,
                                                      sock_read=timeout)
        options["client_kwargs"] = client
    return options


def make_filesystem(url: str, storage_options: dict[str, Any], *, timeout: float | None = None,
                    retries: int | None = None) -> tuple[Any, str]:
    """Create the fsspec filesystem for ``url`` and the root path inside it.

    With ``timeout``/``retries`` (from the settings), network clients get those time-outs and
    request retries unless ``storage_options`` set their own (:func:`network_options`).
    """
    options = dict(storage_options)
    if "://" not in url and "::" not in url:
        root = str(Path(url).expanduser().resolve())
        return fsspec.filesystem("file", **options), root
    protocol = url.split("://", 1)[0].split("::")[-1]
    if protocol in ("gs", "gcs"):
        # Without this, gcsfs probes for hierarchical-namespace support over gRPC at every call.
        os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
    user_config = options.get("config_kwargs") or {}
    options = network_options(protocol, options, timeout, retries)
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
    if retries is not None and protocol in ("s3", "s3a") and "retries" not in user_config \
            and hasattr(fs, "retries"):
        fs.retries = 1  # botocore retries each request; Storage retries operations
    return fs, root.rstrip("/") or root


def open_storage(url: str, storage_options: dict[str, Any] | None = None) -> Storage:
    """The :class:`Storage` for a ``data_dir`` URL."""
    return Storage(url, storage_options)
