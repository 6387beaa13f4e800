"""The verified download of one upstream file, and the local copies shared by its pieces.

The upstream file is downloaded once through the Hub's resolve route at the pinned sha into a
local staging file (resumed with a ``Range`` request after a dropped connection) and verified
against its size and sha256 (or git blob id). The partitions cut from one large file share that
one verified copy (a per-file lock; the copy is deleted when its last piece is written or when
the pipeline object goes away); range reads through ``HfFileSystem`` were not used because a
range cannot be verified against the file's sha256.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from pygestor.backends.storage import is_stale_temp, temp_name
from pygestor.errors import ConfigError, SourceError
from pygestor.pipelines.base import Progress
from pygestor.pipelines.huggingface.hub import hub_error, hub_module

#: bytes handed over by the HTTP client at a time while downloading a file
DOWNLOAD_CHUNK = 1 << 20


@dataclass
class _Upstream:
    """A local, verified copy of one upstream file, shared by the partitions cut from it."""

    path: str
    pieces: int
    lock: threading.Lock = field(default_factory=threading.Lock)
    ready: bool = False
    done: set[int] = field(default_factory=set)


def _remove_copies(copies: dict[Any, _Upstream]) -> None:
    for entry in list(copies.values()):
        with contextlib.suppress(OSError):
            os.unlink(entry.path)
    copies.clear()


class _Digest:
    """sha256 of the content (LFS files) or git's blob sha1 (plain git files)."""

    def __init__(self, sha256: str | None, blob_id: str | None, size: int) -> None:
        if sha256:
            self.kind, self.expected = "sha256", sha256
            self._hash = hashlib.sha256()
        elif blob_id:
            self.kind, self.expected = "git blob id", blob_id
            self._hash = hashlib.sha1(b"blob %d\0" % size, usedforsecurity=False)
        else:
            self.kind, self.expected = "", ""
            self._hash = hashlib.sha256()

    def update(self, data: bytes) -> None:
        self._hash.update(data)

    def ok(self) -> bool:
        return not self.expected or self._hash.hexdigest() == self.expected



# ====================================================================== one upstream file
def download_file(repo: str, revision: str, source: dict[str, Any], path: str,
                  progress: Progress, timeout: float) -> None:
    """Download one upstream file to ``path`` and verify its size and hash.

    A partial ``path`` left by a failed attempt is resumed with a ``Range`` request.
    """
    hub = hub_module()
    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

    url = hub.hf_hub_url(repo, source["path"], repo_type="dataset", revision=revision)
    expected = int(source["size"])
    digest = _Digest(source.get("sha256"), source.get("blob_id"), expected)
    have = os.path.getsize(path) if os.path.exists(path) else 0
    if have > expected:
        os.unlink(path)
        have = 0
    if have:
        with open(path, "rb") as handle:
            while chunk := handle.read(8 << 20):
                digest.update(chunk)
    headers = build_hf_headers()  # the token (HF_TOKEN or login) is added here, not stored
    if have:
        headers["Range"] = f"bytes={have}-"
    session = get_session()
    if not hasattr(session, "stream"):
        raise ConfigError("the HuggingFaceParquet pipeline needs huggingface_hub >= 1.0")
    try:
        with session.stream("GET", url, headers=headers, timeout=timeout,
                            follow_redirects=True) as response:
            hf_raise_for_status(response)
            mode = "ab"
            if have and response.status_code != 206:
                digest = _Digest(source.get("sha256"), source.get("blob_id"), expected)
                have, mode = 0, "wb"
            with open(path, mode) as out:
                for chunk in response.iter_bytes(chunk_size=DOWNLOAD_CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    have += len(chunk)
                    progress(len(chunk))
                    if have > expected:
                        break
    except Exception as exc:  # noqa: BLE001 - translated to one clear error
        raise hub_error(exc, repo, revision=revision, path=source["path"], url=url) from None
    if have != expected or not digest.ok():
        with contextlib.suppress(OSError):
            os.unlink(path)
        what = (f"{have} bytes instead of {expected}" if have != expected
                else f"its {digest.kind} does not match the Hub's")
        error = SourceError(f"{url}: the downloaded file is corrupt ({what}); "
                            "it will be fetched again")
        error.transient = True  # type: ignore[attr-defined]
        raise error


# ====================================================================== the shared local copies
class SharedCopies:
    """The local copies of upstream files one pipeline object holds, each shared by the pieces
    cut from its file. The copies go away with this object (end of a download) or the process.
    """

    def __init__(self) -> None:
        self._copies: dict[tuple[str, str, str, str], _Upstream] = {}
        self._guard = threading.Lock()
        self._swept: set[str] = set()
        weakref.finalize(self, _remove_copies, self._copies)

    @contextlib.contextmanager
    def piece(self, folder: str, repo: str, revision: str, source: dict[str, Any],
              download: Callable[[str], None]) -> Iterator[str]:
        """The path of a complete, verified local copy of the file of the piece ``source``
        describes, in the staging ``folder``, while the block writes the piece.

        ``download(path)`` makes the copy (once, whichever piece comes first). The copy is
        deleted when every piece of the file is written.
        """
        key = (folder, repo, revision, source["path"])
        entry = self._entry(key, source)
        _in_use(entry.path, +1)
        try:
            self._make_ready(entry, download)
            yield entry.path
        except BaseException:
            self._release(key, entry, source, done=False)
            raise
        finally:
            _in_use(entry.path, -1)
        self._release(key, entry, source, done=True)

    def _entry(self, key: tuple[str, str, str, str], source: dict[str, Any]) -> _Upstream:
        folder = key[0]
        with self._guard:
            if folder not in self._swept:
                self._swept.add(folder)
                _sweep_stale(folder)
            entry = self._copies.get(key)
            if entry is None:
                base = source["path"].rsplit("/", 1)[-1]
                entry = _Upstream(path=os.path.join(folder, temp_name(f"upstream-{base}")),
                                  pieces=int(source.get("pieces", 1)))
                self._copies[key] = entry
        return entry

    @staticmethod
    def _make_ready(entry: _Upstream, download: Callable[[str], None]) -> None:
        """Make ``entry`` a complete, verified local copy (once, whichever piece comes first)."""
        with entry.lock:
            if entry.ready and not os.path.exists(entry.path):
                entry.ready = False  # swept by another download in this process: fetch again
            if not entry.ready:
                try:
                    download(entry.path)
                except BaseException as exc:
                    # a partial copy is kept for a retry to resume (transient failures only)
                    if not getattr(exc, "transient", False):
                        with contextlib.suppress(OSError):
                            os.unlink(entry.path)
                    raise
                entry.ready = True

    def _release(self, key: tuple[str, str, str, str], entry: _Upstream,
                 source: dict[str, Any], done: bool) -> None:
        with self._guard:
            if done:
                entry.done.add(int(source.get("piece", 0)))
            if len(entry.done) >= entry.pieces and self._copies.get(key) is entry:
                del self._copies[key]
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)


_IN_USE: dict[str, int] = {}
_IN_USE_LOCK = threading.Lock()


def _in_use(path: str, delta: int) -> None:
    with _IN_USE_LOCK:
        count = _IN_USE.get(path, 0) + delta
        if count > 0:
            _IN_USE[path] = count
        else:
            _IN_USE.pop(path, None)


def _sweep_stale(folder: str) -> None:
    """Remove upstream copies nobody uses from a staging folder: those of dead processes, and
    this process's own that no fetch is using (left by a failed download)."""
    mine = f"-{os.getpid()}-"
    with contextlib.suppress(OSError):
        for entry in os.listdir(folder):
            if not entry.startswith(".upstream-"):
                continue
            path = os.path.join(folder, entry)
            owned = mine in entry.rsplit(".tmp-", 1)[-1]
            with _IN_USE_LOCK:
                unused = path not in _IN_USE
            if is_stale_temp(entry) or (owned and unused):
                with contextlib.suppress(OSError):
                    os.unlink(path)
