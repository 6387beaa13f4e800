"""Object stores: an object appears only when its upload completes, so writing the final key is
atomic; a failed upload leaves nothing behind.

:class:`ObjectStorage` updates records under a lock of this machine: safe for the processes of
one machine, last-writer-wins across machines (one writer machine at a time). The S3 and GCS
kinds (:mod:`pygestor.backends.s3`, :mod:`pygestor.backends.gcs`) replace that with
compare-and-swap writes when the store honours the conditions, which they check once per
``data_dir`` (:meth:`ObjectStorage.compare_and_swap`).
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable
from typing import Any, ClassVar

from pygestor.backends.storage import Apply, Storage
from pygestor.errors import StorageError

log = logging.getLogger("pygestor.storage")
#: attempts of a compare-and-swap update before giving up (each after a conflict)
CAS_ATTEMPTS = 25
_PROBED: dict[str, bool] = {}
_WARNED: set[str] = set()


class Conflict(Exception):
    """A conditional write lost: the object changed (or appeared) since it was read."""


class ObjectStorage(Storage):
    """A storage root on an object store (or any fsspec filesystem that is not local)."""

    #: protocols whose bucket is the root's first part (checked to exist)
    has_buckets: ClassVar[bool] = False

    def _check_root(self) -> None:
        if not self.has_buckets:
            return
        bucket = self.root.split("/", 1)[0]
        if not self._guard("check", bucket, lambda: self.call("exists", bucket)):
            raise StorageError(f"the bucket {bucket!r} of data_dir {self.url} does not exist "
                               "(or these credentials cannot see it); create it, or fix "
                               "data_dir")

    # ------------------------------------------------------------------ writing
    def write_bytes(self, path: str, data: bytes) -> None:
        self._guard("write", path, lambda: self.call("pipe_file", path, data, size=len(data)))
        self._invalidate(path)

    def put_file(self, local_path: str, path: str) -> None:
        import os

        size = os.path.getsize(local_path)
        self._guard("upload", path, lambda: self.call("put_file", local_path, path, size=size))
        self._invalidate(path)

    def create_bytes(self, path: str, data: bytes) -> None:
        if self.compare_and_swap():
            try:
                self._conditional_write(path, data, None)
            except Conflict:
                raise FileExistsError(path) from None
            finally:
                self._invalidate(path)
            return
        with self.machine_lock(path):
            if self.exists(path):
                raise FileExistsError(path)
            self.write_bytes(path, data)

    def transact(self, path: str, apply: Apply, after: Callable[[], None] | None = None
                 ) -> None:
        if not self.compare_and_swap():
            with self.machine_lock(path):
                old = self._read_or_none(path)
                new = apply(old)
                if new is not None:
                    self.write_bytes(path, new)
                if after is not None:
                    after()
            return
        for attempt in range(CAS_ATTEMPTS):
            old, tag = self._guard("read", path, lambda: self._get(path))
            new = apply(old)
            if new is None:
                break
            try:
                self._conditional_write(path, new, tag)
            except Conflict:
                # another writer won: read its record again and re-apply the change
                time.sleep(random.uniform(0.005, 0.05) * min(2 ** attempt, 16))  # noqa: S311
                continue
            finally:
                self._invalidate(path)
            break
        else:
            raise StorageError(f"{self.url_of(path)} kept changing under {CAS_ATTEMPTS} attempts "
                               "to update it (too many concurrent writers); try again")
        if after is not None:
            after()

    def _conditional_write(self, path: str, data: bytes, tag: Any) -> None:
        """:meth:`_put` under the retry policy. A write that loses its condition may have lost
        to itself: an earlier attempt (ours, or the client library's own retry) that the store
        applied but whose answer never came (a dropped connection, a time-out). So on a
        conflict the object is read back: holding exactly ``data`` (which carries the record's
        unique id and time), it is this write, done; anything else is another writer's
        (:class:`Conflict`)."""
        def attempt() -> None:
            try:
                self._put(path, data, tag)
            except Conflict:
                if self._get(path)[0] != data:
                    raise
                log.info("%s: an earlier attempt of this write landed", self.url_of(path))

        self._guard("write", path, attempt)

    def _read_or_none(self, path: str) -> bytes | None:
        try:
            return self.read_bytes(path)
        except FileNotFoundError:
            return None

    # ------------------------------------------------------------------ compare-and-swap
    @property
    def locked_updates(self) -> bool:
        return not self.compare_and_swap()

    def compare_and_swap(self) -> bool:
        """Whether record updates are compare-and-swap here: the kind implements it and this
        store honours the conditions (probed once per data_dir and process). Otherwise a
        warning says that one writer machine at a time is safe."""
        if not self.cas_kind():
            self._warn_single_writer("this kind of store offers no conditional writes")
            return False
        key = self.url
        if key not in _PROBED:
            _PROBED[key] = self._probe()
            if not _PROBED[key]:
                self._warn_single_writer("the store ignored a write condition when probed")
        return _PROBED[key]

    def cas_kind(self) -> bool:
        """Whether this kind implements :meth:`_get` and :meth:`_put` with conditions."""
        return False

    def _get(self, path: str) -> tuple[bytes | None, Any]:
        """(bytes, version tag) of ``path`` read together; (None, None) if it is absent."""
        raise NotImplementedError

    def _put(self, path: str, data: bytes, tag: Any) -> None:
        """Write ``path`` if its version is still ``tag`` (None: if it is absent); Conflict
        otherwise."""
        raise NotImplementedError

    def _probe(self) -> bool:
        """Write a probe object twice under the same condition: the second must lose."""
        path = self.path("_pygestor", f"probe-{uuid.uuid4().hex}")
        try:
            self._put(path, b"1", None)
            _, tag = self._get(path)
            try:
                self._put(path, b"2", None)
                return False  # create-if-absent was not honoured
            except Conflict:
                pass
            self._put(path, b"3", tag)
            try:
                self._put(path, b"4", tag)
                return False  # write-if-version was not honoured
            except Conflict:
                return True
        except (OSError, StorageError) as exc:
            log.warning("probing conditional writes on %s failed: %s", self.url, exc)
            return False
        finally:
            try:
                self.call("rm_file", path)
            except (OSError, StorageError):
                log.debug("probe object %s left behind", path)

    def _warn_single_writer(self, why: str) -> None:
        if self.url not in _WARNED:
            _WARNED.add(self.url)
            log.warning("%s: %s; records are updated under a lock of this machine, so run one "
                        "writer machine at a time on it (docs/storage.md)", self.url, why)
