"""A local, size-limited cache of whole partitions streamed from object stores.

Used by the loaders when ``settings.cache_dir`` is set and the storage root is remote (S3, GCS,
HTTP...): the first read of a partition copies it whole into the cache, later epochs read the
local copy. Rules:

- content-addressed: a cached file is named after the partition's recorded checksum, so data
  that changed in storage (re-downloaded, repaired) is never served from a stale copy;
- atomic: a file is written to a temporary name in the cache folder, checked against its
  recorded size and checksum, then renamed; readers never see a partial file, and a killed run
  leaves at most a temporary file that the next eviction removes;
- bounded: ``cache_max_bytes`` is a hard limit; the least recently used files are evicted first
  (use time is the file's mtime, refreshed on every hit);
- it only ever holds copies: data whose home is local is never cached, so eviction can never
  delete the only copy of anything;
- safe across processes: one lock per file while it is filled, one lock for evictions. A file
  evicted while another process reads it stays readable through that process's open handle.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
from collections.abc import Callable
from pathlib import Path

from pygestor.backends.storage import is_stale_temp, temp_name
from pygestor.errors import ConfigError, IntegrityError, StorageError

log = logging.getLogger("pygestor.cache")

SUFFIX = ".parquet"
_SAFE_KEY = re.compile(r"^[A-Za-z0-9_.-]{8,200}$")


class PartitionCache:
    """Cached partition files under ``directory``, at most ``max_bytes`` in total.

    Location and limit:
        directory: a local folder (created on first use).
        max_bytes: byte limit of all cached files together.
    """

    def __init__(self, directory: str | os.PathLike[str], max_bytes: int) -> None:
        if max_bytes < 1:
            raise ConfigError(f"cache_max_bytes must be positive, got {max_bytes}")
        self.directory = Path(directory).expanduser().resolve()
        self.max_bytes = int(max_bytes)

    # ------------------------------------------------------------------ lookup
    def path_for(self, key: str) -> Path:
        """Where the file for ``key`` (a checksum like ``sha256:<hex>``) lives in the cache."""
        name = key.replace("sha256:", "sha256-")
        if not _SAFE_KEY.match(name):
            name = "k-" + hashlib.sha256(key.encode()).hexdigest()
        return self.directory / (name + SUFFIX)

    def get(self, key: str, size: int, fill: Callable[[str], None], *, what: str = "",
            checksum: str | None = None) -> str:
        """The local path of the cached copy of ``key``, filling it with ``fill(temp_path)``.

        Args:
            key: identity of the content (the partition checksum).
            size: the content's size in bytes (checked after filling).
            fill: writes the complete content to the given local path.
            what: the partition's name or URL, for messages.
            checksum: ``sha256:<hex>`` to verify the filled copy against (default: ``key``
                when it is a sha256 checksum).

        Raises:
            ConfigError: ``size`` exceeds the cache's byte limit.
            IntegrityError: the filled copy does not match its recorded size or checksum.
        """
        path = self.path_for(key)
        if self._touch(path):
            return str(path)
        if size > self.max_bytes:
            raise ConfigError(
                f"cache_max_bytes={self.max_bytes} is smaller than {what or key} "
                f"({size} bytes): raise cache_max_bytes above the largest partition, or "
                "disable the cache (cache_dir = \"\")")
        self.directory.mkdir(parents=True, exist_ok=True)
        with self._lock(path.name):
            if self._touch(path):
                return str(path)
            self._evict(size)
            tmp = self.directory / temp_name(path.name)
            try:
                fill(str(tmp))
                self._check(tmp, size, checksum or (key if key.startswith("sha256:") else None),
                            what or key)
                os.replace(tmp, path)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(tmp)
        log.debug("cached %s (%d bytes) at %s", what or key, size, path)
        return str(path)

    def usage(self) -> int:
        """Bytes currently held by complete cached files."""
        return sum(size for _, _, size in self._entries())

    def clear(self) -> None:
        """Delete every cached file (temporary files of live writers are left alone)."""
        with self._lock("evict"):
            for path, _, _ in self._entries():
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)

    # ------------------------------------------------------------------ internals
    @staticmethod
    def _touch(path: Path) -> bool:
        try:
            os.utime(path)
        except FileNotFoundError:
            return False
        return True

    def _entries(self) -> list[tuple[Path, float, int]]:
        out = []
        try:
            names = os.listdir(self.directory)
        except FileNotFoundError:
            return out
        for name in names:
            if not name.endswith(SUFFIX) or name.startswith("."):
                continue
            path = self.directory / name
            with contextlib.suppress(FileNotFoundError):
                stat = path.stat()
                out.append((path, stat.st_mtime, stat.st_size))
        return out

    def _evict(self, incoming: int) -> None:
        """Remove least recently used files until ``incoming`` more bytes fit."""
        with self._lock("evict"):
            for name in os.listdir(self.directory):
                if is_stale_temp(name, max_age=3600,
                                 mtime=_mtime(self.directory / name)):
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(self.directory / name)
            entries = sorted(self._entries(), key=lambda e: e[1])
            total = sum(size for _, _, size in entries)
            for path, _, size in entries:
                if total + incoming <= self.max_bytes:
                    break
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                    log.debug("evicted %s (%d bytes)", path.name, size)
                total -= size

    @staticmethod
    def _check(tmp: Path, size: int, checksum: str | None, what: str) -> None:
        actual = tmp.stat().st_size
        if actual != size:
            raise IntegrityError(f"{what}: copied {actual} bytes into the cache but its record "
                                 f"says {size}; run 'pygestor verify' on it")
        if checksum and checksum.startswith("sha256:"):
            digest = hashlib.sha256()
            with tmp.open("rb") as handle:
                while chunk := handle.read(8 << 20):
                    digest.update(chunk)
            if "sha256:" + digest.hexdigest() != checksum:
                raise IntegrityError(f"{what}: the copy fetched into the cache does not match "
                                     "its recorded checksum; run 'pygestor verify' on it")

    @contextlib.contextmanager
    def _lock(self, name: str, timeout: float = 600.0):  # type: ignore[no-untyped-def]
        import filelock

        lock_dir = self.directory / ".locks"
        lock_dir.mkdir(parents=True, exist_ok=True)
        try:
            with filelock.FileLock(str(lock_dir / (name + ".lock")), timeout=timeout):
                yield
        except filelock.Timeout:
            raise StorageError(f"waited {timeout:.0f}s for the cache lock {name} in "
                               f"{self.directory}; another process holds it") from None


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return None
