"""Reading a file of an object store with every read retried (see :class:`RetryingReader`)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pygestor.backends.retry import TransientError, call_with_retries
from pygestor.errors import StorageError

if TYPE_CHECKING:
    from pygestor.backends.storage import Storage


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
