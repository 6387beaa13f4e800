"""Temporary files: names that say who wrote them, and recognizing the stale ones.

A partition or record is first written under a temporary name in the folder it will live in
(``.<name>.tmp-<host>-<pid>-<random>``) and renamed when complete; partitions bound for an object
store are built in a local staging folder. A temporary file is *stale* when its writer is gone:
same host and a dead pid, or older than a day (another host's, or a reused pid).
"""

from __future__ import annotations

import contextlib
import os
import socket
import tempfile
import time
import uuid

TEMP_MARKER = ".tmp-"


def host_tag(host: str) -> str:
    """How a host is spelled in temporary names (no '-': it separates the parts)."""
    return host.replace("-", "_")[:40]


_HOST = host_tag(socket.gethostname())


def temp_name(final_name: str) -> str:
    """A temporary sibling name that says who wrote it, so stale ones can be recognized."""
    return f".{final_name}{TEMP_MARKER}{_HOST}-{os.getpid()}-{uuid.uuid4().hex[:12]}"


def is_stale_temp(name: str, max_age: float | None = None, mtime: float | None = None,
                  dead: set[tuple[str, int]] | frozenset[tuple[str, int]] = frozenset()) -> bool:
    """True for a temp file whose writer is gone (same host, dead pid) or that is older than
    ``max_age`` seconds (another host's, or a live pid's: pids are reused)."""
    base = name.rsplit("/", 1)[-1]
    if not base.startswith(".") or TEMP_MARKER not in base:
        return False
    tail = base.rsplit(TEMP_MARKER, 1)[1]
    parts = tail.split("-")
    if len(parts) >= 3 and parts[1].isdigit() and \
            (parts[0], int(parts[1])) in {(host_tag(h), p) for h, p in dead}:
        return True  # the writer's job was abandoned (its lease expired)
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


def stale_temps(folder: str, max_age: float = 24 * 3600,
                dead: set[tuple[str, int]] | frozenset[tuple[str, int]] = frozenset()
                ) -> list[str]:
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
        if is_stale_temp(entry.name, max_age=max_age, mtime=mtime, dead=dead):
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
