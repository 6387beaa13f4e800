"""Local folders and NFS mounts: temp file + rename, and a file lock around record updates.

- A file is written to a temporary name in the same folder (``.<name>.tmp-<host>-<pid>-<rand>``),
  flushed and fsynced, then renamed over the final name (``os.replace``: atomic on POSIX, and on
  NFS for a single client), and the folder is fsynced. Data coming from another filesystem is
  first copied next to its destination, so no rename ever crosses filesystems.
- A record is updated under a ``filelock`` next to it (works across processes, and across NFS
  clients where the NFS lock service runs).
- Nothing outside the root is deleted or moved: a path whose folder resolves out of the root (a
  symlinked dataset or subset folder) is refused, and a symlinked folder is unlinked, never
  followed.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator
from typing import ClassVar

from pygestor.backends.storage import LOCK_TIMEOUT, Apply, Storage, _file_lock
from pygestor.backends.temps import TEMP_MARKER, stale_temps, temp_name
from pygestor.errors import IntegrityError, StorageError


class LocalStorage(Storage):
    """A storage root on a local filesystem or an NFS mount."""

    is_local: ClassVar[bool] = True

    def _check_root(self) -> None:
        root = self.root
        if os.path.exists(root) and not os.path.isdir(root):
            raise StorageError(f"data_dir {root} is a file, not a folder; point data_dir "
                               "(--data-dir, PYGESTOR_DATA_DIR or the config file) at a folder")

    # ------------------------------------------------------------------ reading
    def read_bytes(self, path: str, limit: int | None = None) -> bytes:
        if limit is not None:
            size = os.stat(path).st_size
            if size > limit:
                raise IntegrityError(f"{path} is {size} bytes, above the {limit}-byte limit; "
                                     "it is not read")
        with open(path, "rb") as handle:
            return handle.read()

    # ------------------------------------------------------------------ writing
    def write_bytes(self, path: str, data: bytes) -> None:
        folder, name = os.path.split(path)
        _place(path, lambda tmp: _write_synced(tmp, [data]))
        # temp files of this name left by writers that were killed (kill -9, power loss)
        for stale in stale_temps(folder):
            if os.path.basename(stale).startswith(f".{name}{TEMP_MARKER}"):
                with contextlib.suppress(OSError):
                    os.unlink(stale)

    def create_bytes(self, path: str, data: bytes) -> None:
        with self._lock(path):
            if os.path.exists(path):
                raise FileExistsError(path)
            self.write_bytes(path, data)

    def transact(self, path: str, apply: Apply, after: Callable[[], None] | None = None
                 ) -> None:
        with self._lock(path):
            try:
                with open(path, "rb") as handle:
                    old: bytes | None = handle.read()
            except FileNotFoundError:
                old = None
            new = apply(old)
            if new is not None:
                self.write_bytes(path, new)
            if after is not None:
                after()

    def put_file(self, local_path: str, path: str) -> None:
        def fill(tmp: str) -> None:
            if os.stat(local_path).st_dev == os.stat(os.path.dirname(tmp)).st_dev:
                _fsync_path(local_path)  # the bytes are on disk before the name is
                os.replace(local_path, tmp)
                return
            with open(local_path, "rb") as src:  # another filesystem: never a cross-device rename
                _write_synced(tmp, iter(lambda: src.read(8 << 20), b""))
        _place(path, fill)

    def remove_record(self, path: str) -> None:
        with self._lock(path):
            self.remove(path)
        with contextlib.suppress(OSError):
            os.unlink(path + ".lock")

    def staging_dir(self, near: str | None = None) -> str:
        """The destination folder itself (placing is then a rename), else the machine's."""
        if near is not None:
            os.makedirs(near, exist_ok=True)
            return near
        return super().staging_dir()

    def stale_temps(self, folders: list[str],
                    dead: set[tuple[str, int]] | frozenset[tuple[str, int]] = frozenset()
                    ) -> list[str]:
        return [p for folder in folders for p in stale_temps(folder, dead=dead)]

    # ------------------------------------------------------------------ removing, moving
    def check_inside(self, path: str) -> None:
        root = os.path.realpath(self.root)
        folder = os.path.realpath(os.path.dirname(path))
        if folder != root and not folder.startswith(root.rstrip(os.sep) + os.sep):
            raise StorageError(f"{path} leads out of data_dir ({root}) through a symbolic link; "
                               "Pygestor does not delete or move files outside its root")

    def remove_many(self, paths: list[str]) -> None:
        for path in paths:
            self.check_inside(path)
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    def move(self, source: str, target: str) -> None:
        self.check_inside(source)
        self.check_inside(target)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        os.replace(source, target)
        _fsync_dir(os.path.dirname(target))

    # ------------------------------------------------------------------ locks
    @contextlib.contextmanager
    def _lock(self, path: str, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
        """The lock of one record: a ``filelock`` beside it."""
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with _file_lock(path + ".lock", path, timeout):
            yield


def _place(path: str, fill: Callable[[str], None]) -> None:
    """Make ``path`` appear whole or not at all: ``fill`` writes a temporary sibling, which is
    then renamed over ``path`` and the rename made durable (the temporary file is removed if
    anything fails)."""
    folder, name = os.path.split(path)
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, temp_name(name))
    try:
        fill(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(folder)


def _write_synced(path: str, chunks: Iterable[bytes]) -> None:
    with open(path, "wb") as handle:
        for chunk in chunks:
            handle.write(chunk)
        handle.flush()
        os.fsync(handle.fileno())


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
