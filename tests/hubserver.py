"""A local stand-in for the Hugging Face Hub (datasets only), for tests without internet.

`start_hub(repos)` runs a small `http.server.ThreadingHTTPServer` on ``127.0.0.1`` (any free port)
in a daemon thread and serves the routes that `huggingface_hub` uses for datasets:

* ``GET /api/datasets/{owner}/{name}[?blobs=true]`` and ``.../revision/{rev}``: repo info;
* ``GET /api/datasets/{owner}/{name}/tree/{rev}[/{path}]?recursive=...&expand=...``;
* ``POST /api/datasets/{owner}/{name}/paths-info/{rev}`` (form body, ``paths=`` repeated);
* ``GET /api/datasets/{owner}/{name}/refs`` and ``.../commits/{rev}``;
* ``HEAD``/``GET /datasets/{owner}/{name}/resolve/{rev}/{path}`` with ``Range`` support.

Revisions may be branch names (``main``), full 40-hex commit shas (older commits stay
reachable) or special refs such as ``refs/convert/parquet``, URL-encoded or not.

Using it from a pytest fixture (conftest is owned elsewhere)::

    import pytest
    # tests/ is not a package: pytest puts tests/ itself on sys.path, so import it top-level
    from hubserver import HUB_ENV_UNSET, all_repos, hub_env, point_client_at, start_hub

    @pytest.fixture(scope="session")
    def hub(tmp_path_factory):
        server = start_hub(all_repos())
        home = tmp_path_factory.mktemp("hf_home")
        mp = pytest.MonkeyPatch()
        for name in HUB_ENV_UNSET:          # a token/cache from the outer env must not leak in
            mp.delenv(name, raising=False)
        for name, value in hub_env(server.url, home).items():
            mp.setenv(name, value)          # HF_ENDPOINT, HF_HOME, HF_HUB_DISABLE_XET, ...
        # huggingface_hub reads its environment once, at import time (`huggingface_hub.constants`).
        # If it may already be imported (by conftest, pygestor, another test) patch it as well:
        point_client_at(server.url, hf_home=home, monkeypatch=mp)
        yield server
        mp.undo()
        server.stop()

The environment variables alone are enough only for a process that imports `huggingface_hub`
afterwards (e.g. a subprocess started with ``env={**os.environ, **hub_env(url, home)}``).
`point_client_at` patches, in an already-imported client: ``constants.ENDPOINT``,
``constants.HUGGINGFACE_CO_URL_TEMPLATE`` (the resolve-URL template is built from the endpoint at
import), ``constants.HF_URL_HOSTS``, the offline/telemetry/Xet switches, optionally the cache and
token paths, the copies of these names that other ``huggingface_hub.*`` modules took with
``from .constants import ...``, the module-level ``huggingface_hub.hf_api.api`` (behind the
function aliases ``huggingface_hub.dataset_info`` etc.) whose endpoint is fixed when created,
and ``utils._http._HUB_ORIGINS``. It also drops cached `HfFileSystem` instances and the pooled
HTTP session. `HfApi`/`HfFileSystem` objects built earlier keep their old endpoint.

Test hooks on `HubServer`: ``log`` (list of ``(method, unquoted path, Range header)``),
``requests()`` and ``clear_log()``; ``fail_paths`` / ``fail()`` (``"drop"``, ``"500"``,
``"500-get"``, optionally only n times); ``commit()`` to change a repo at runtime (a new commit
sha on the branch; older shas stay downloadable); ``add_repo()``/``remove_repo()``; ``tokens``
(accepted bearer tokens, default ``{VALID_TOKEN}``). The client retries failed requests with
pauses of up to 23 s in all: `skip_client_sleeps(monkeypatch)` makes those pauses instant.

Deliberately faithful details: siblings only carry ``size``/``blobId``/``lfs`` with
``?blobs=true`` and their ``lfs`` dict uses the key ``sha256`` (the tree/paths-info ``lfs`` dict
uses ``oid``); for LFS files (``*.parquet``, ``*.arrow``) ``oid``/``blobId`` is the git sha1 of
the LFS pointer file (not of the content) and ``pointerSize`` its length; a gated repo's info
and listings are public and only ``resolve`` needs a token (``HubRepo.gate_metadata=True``
gates the API routes too). No ``X-Xet-*`` header and no ``xetHash`` is ever sent.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import sys
import threading
import time
import traceback
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from os import PathLike
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, unquote, urlsplit

__all__ = [
    "HUB_ENV_UNSET",
    "LFS_SUFFIXES",
    "VALID_TOKEN",
    "Commit",
    "FailMode",
    "HubRepo",
    "HubServer",
    "all_repos",
    "converted_only",
    "default_config",
    "gated",
    "git_blob_sha1",
    "hub_env",
    "lfs_pointer",
    "librispeech_like",
    "make_parquet",
    "point_client_at",
    "restore_client",
    "skip_client_sleeps",
    "start_hub",
    "wikipedia_like",
]

VALID_TOKEN = "hf_hubserver_valid_token"
"""The bearer token a `HubServer` accepts by default (for gated and private repos)."""

LFS_SUFFIXES: tuple[str, ...] = (".parquet", ".arrow")
"""Files with these suffixes are served as LFS files; anything else as a plain git file."""

HUB_ENV_UNSET: tuple[str, ...] = (
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "HF_TOKEN_PATH",
    "HF_HUB_CACHE",
    "HUGGINGFACE_HUB_CACHE",
    "HF_ASSETS_CACHE",
    "HUGGINGFACE_ASSETS_CACHE",
    "HF_XET_CACHE",
    "HUGGINGFACE_CO_STAGING",
    "TRANSFORMERS_OFFLINE",
    "HF_HUB_DISABLE_IMPLICIT_TOKEN",
)
"""Environment variables a test should unset: they would override `hub_env` or leak a token."""

FailMode = Literal["drop", "500", "500-get"]

_BASE_DATE = datetime(2024, 1, 1, tzinfo=timezone.utc)
_LFS_POINTER_TEMPLATE = (
    "version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n"
)


# --------------------------------------------------------------------------------------------
# Hashes and file metadata
# --------------------------------------------------------------------------------------------


def git_blob_sha1(content: bytes) -> str:
    """Return the git blob id of `content` (``sha1(b"blob <len>\\0" + content)``)."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def lfs_pointer(content: bytes) -> bytes:
    """Return the git-LFS pointer file that git stores in place of `content`."""
    oid = hashlib.sha256(content).hexdigest()
    return _LFS_POINTER_TEMPLATE.format(oid=oid, size=len(content)).encode()


def _is_lfs(path: str) -> bool:
    return path.endswith(LFS_SUFFIXES)


@dataclass(frozen=True)
class _FileMeta:
    """Hashes of one file, computed once per commit."""

    size: int
    blob_id: str
    sha256: str | None  # set for LFS files only
    pointer_size: int | None

    @classmethod
    def of(cls, path: str, content: bytes) -> _FileMeta:
        if _is_lfs(path):
            pointer = lfs_pointer(content)
            return cls(
                size=len(content),
                blob_id=git_blob_sha1(pointer),
                sha256=hashlib.sha256(content).hexdigest(),
                pointer_size=len(pointer),
            )
        return cls(
            size=len(content), blob_id=git_blob_sha1(content), sha256=None, pointer_size=None
        )

    @property
    def etag(self) -> str:
        """The value (unquoted) of the ``ETag`` of a resolve answer for this file."""
        return self.sha256 if self.sha256 is not None else self.blob_id


@dataclass
class Commit:
    """One immutable snapshot of a repo revision."""

    sha: str
    files: dict[str, bytes]
    parent: str | None
    title: str
    date: datetime
    meta: dict[str, _FileMeta] = field(init=False, repr=False)
    dirs: frozenset[str] = field(init=False, repr=False)
    _tree_ids: dict[str, str] = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        self.meta = {path: _FileMeta.of(path, data) for path, data in self.files.items()}
        dirs: set[str] = set()
        for path in self.files:
            parts = path.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                dirs.add("/".join(parts[:i]))
        self.dirs = frozenset(dirs)

    @property
    def date_str(self) -> str:
        """The commit date in the Hub's JSON format."""
        return self.date.strftime("%Y-%m-%dT%H:%M:%S.000Z")

    def tree_id(self, directory: str) -> str:
        """Return a stable fake git tree id for `directory` (sha1 of what is below it)."""
        if directory not in self._tree_ids:
            prefix = directory + "/"
            listing = "".join(
                f"{p}\0{m.blob_id}\n" for p, m in sorted(self.meta.items()) if p.startswith(prefix)
            )
            self._tree_ids[directory] = hashlib.sha1(f"tree\0{listing}".encode()).hexdigest()
        return self._tree_ids[directory]


def _commit_sha(repo_id: str, rev: str, parent: str | None, files: Mapping[str, bytes]) -> str:
    listing = "".join(f"{p}\0{hashlib.sha256(files[p]).hexdigest()}\n" for p in sorted(files))
    return hashlib.sha1(f"{repo_id}\0{rev}\0{parent or ''}\0{listing}".encode()).hexdigest()


# --------------------------------------------------------------------------------------------
# Repos
# --------------------------------------------------------------------------------------------


@dataclass
class HubRepo:
    """An in-memory dataset repo.

    Args:
        repo_id: ``"owner/name"``.
        revisions: revision name -> ``{path: content}``; ``main`` is the default branch. Names
            starting with ``refs/`` (e.g. ``refs/convert/parquet``) are special refs.
        gated: downloads (``resolve``) need a valid bearer token; the info is ``gated: "manual"``.
        private: every route needs a valid bearer token (else ``RepoNotFound``).
        gate_metadata: with `gated`, the API routes (info, tree, paths-info) are gated as well.

    Each revision starts as one commit with a stable sha derived from the repo id, the revision
    name and the files. `commit` adds a new commit; old commits stay reachable by sha.
    """

    repo_id: str
    revisions: dict[str, dict[str, bytes]]
    gated: bool = False
    private: bool = False
    gate_metadata: bool = False
    refs: dict[str, str] = field(init=False, default_factory=dict)
    commits: dict[str, Commit] = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        if self.repo_id.count("/") != 1:
            raise ValueError(f"repo_id must be 'owner/name', got {self.repo_id!r}")
        for generation, (rev, files) in enumerate(sorted(self.revisions.items())):
            files = dict(files)
            sha = _commit_sha(self.repo_id, rev, None, files)
            date = _BASE_DATE + timedelta(hours=generation)
            self.commits[sha] = Commit(sha, files, None, "Initial commit", date)
            self.refs[rev] = sha
            self.revisions[rev] = files

    def sha(self, revision: str = "main") -> str:
        """Return the current commit sha of `revision`."""
        return self.refs[revision]

    def files(self, revision: str = "main") -> dict[str, bytes]:
        """Return the files (path -> content) at `revision` (a ref name or a commit sha)."""
        return dict(self.commits[self.refs.get(revision, revision)].files)

    def commit(
        self,
        changes: Mapping[str, bytes | None],
        *,
        revision: str = "main",
        title: str = "Update files",
    ) -> str:
        """Add or change (content) or delete (``None``) files on branch `revision`.

        Returns the new commit sha; the revision now points to it. Not thread-safe on its own:
        on a running server use `HubServer.commit`.
        """
        parent = self.refs.get(revision)
        files = dict(self.commits[parent].files) if parent is not None else {}
        for path, content in changes.items():
            path = path.strip("/")
            if content is None:
                files.pop(path, None)
            else:
                files[path] = bytes(content)
        sha = _commit_sha(self.repo_id, revision, parent, files)
        date = max(c.date for c in self.commits.values()) + timedelta(hours=1)
        self.commits[sha] = Commit(sha, files, parent, title, date)
        self.refs[revision] = sha
        self.revisions[revision] = files
        return sha


def make_parquet(start_id: int, num_rows: int, *, tag: str = "row") -> bytes:
    """Build a small deterministic parquet file (3 row groups or fewer of 100 rows).

    Columns: ``id`` (int64, ``start_id .. start_id + num_rows - 1``), ``text`` (string) and
    ``label`` (int64, ``id % 3``).
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    ids = list(range(start_id, start_id + num_rows))
    table = pa.table(
        {
            "id": pa.array(ids, type=pa.int64()),
            "text": pa.array([f"{tag} {i}: " + "lorem ipsum " * (i % 5 + 1) for i in ids]),
            "label": pa.array([i % 3 for i in ids], type=pa.int64()),
        }
    )
    buf = io.BytesIO()
    pq.write_table(table, buf, row_group_size=100)
    return buf.getvalue()


_GITATTRIBUTES = (
    b"*.parquet filter=lfs diff=lfs merge=lfs -text\n*.arrow filter=lfs diff=lfs merge=lfs -text\n"
)


def _readme(title: str, configs: Mapping[str, Mapping[str, str]] | None = None) -> bytes:
    """A dataset card; `configs` is ``{config: {split: glob}}`` for the YAML ``configs`` list."""
    lines = []
    if configs:
        lines += ["---", "configs:"]
        for name, splits in configs.items():
            lines += [f"- config_name: {name}", "  data_files:"]
            for split, glob in splits.items():
                lines += [f"  - split: {split}", f"    path: {glob}"]
        lines.append("---")
    lines += [f"# {title}", "", "A test double served by tests/hubserver.py.", ""]
    return "\n".join(lines).encode()


def _parquet_files(paths_and_rows: Iterable[tuple[str, int]], tag: str) -> dict[str, bytes]:
    """Parquet files with ids unique across the whole set (in the given order)."""
    out: dict[str, bytes] = {}
    next_id = 0
    for path, rows in paths_and_rows:
        out[path] = make_parquet(next_id, rows, tag=tag)
        next_id += rows
    return out


def wikipedia_like(repo_id: str = "wikimedia/wikipedia") -> HubRepo:
    """Multi-config repo: ``20231101.en`` (2 train shards) and ``20231101.fr`` (1 shard)."""
    files = _parquet_files(
        [
            ("20231101.en/train-00000-of-00002.parquet", 300),
            ("20231101.en/train-00001-of-00002.parquet", 250),
            ("20231101.fr/train-00000-of-00001.parquet", 200),
        ],
        tag="wiki",
    )
    configs = {
        "20231101.en": {"train": "20231101.en/train-*"},
        "20231101.fr": {"train": "20231101.fr/train-*"},
    }
    files["README.md"] = _readme("Wikipedia (fake)", configs)
    files[".gitattributes"] = _GITATTRIBUTES
    return HubRepo(repo_id, {"main": files})


def librispeech_like(repo_id: str = "facebook/multilingual_librispeech") -> HubRepo:
    """Config directories with one or more files per split (``dutch``, ``german``)."""
    files = _parquet_files(
        [
            ("dutch/train-00000-of-00002.parquet", 200),
            ("dutch/train-00001-of-00002.parquet", 200),
            ("dutch/test-00000-of-00001.parquet", 120),
            ("german/train-00000-of-00001.parquet", 220),
            ("german/dev-00000-of-00001.parquet", 110),
        ],
        tag="speech",
    )
    configs = {
        "dutch": {"train": "dutch/train-*", "test": "dutch/test-*"},
        "german": {"train": "german/train-*", "dev": "german/dev-*"},
    }
    files["README.md"] = _readme("Multilingual LibriSpeech (fake)", configs)
    files[".gitattributes"] = _GITATTRIBUTES
    return HubRepo(repo_id, {"main": files})


def converted_only(repo_id: str = "someone/csv-only") -> HubRepo:
    """``main`` holds only a CSV; the parquet files live on ``refs/convert/parquet``."""
    csv = "id,text,label\n" + "".join(f"{i},csv row {i},{i % 3}\n" for i in range(300))
    main = {
        "data.csv": csv.encode(),
        "README.md": _readme("CSV only (fake)"),
        ".gitattributes": _GITATTRIBUTES,
    }
    converted = _parquet_files(
        [("default/train/0000.parquet", 240), ("default/test/0000.parquet", 60)], tag="csv"
    )
    return HubRepo(repo_id, {"main": main, "refs/convert/parquet": converted})


def default_config(repo_id: str = "someone/plain") -> HubRepo:
    """A ``data/`` directory with ``{split}-*.parquet`` files (one config, ``default``)."""
    files = _parquet_files(
        [
            ("data/train-00000-of-00001.parquet", 300),
            ("data/validation-00000-of-00001.parquet", 100),
        ],
        tag="plain",
    )
    files["README.md"] = _readme("Plain (fake)")
    files[".gitattributes"] = _GITATTRIBUTES
    return HubRepo(repo_id, {"main": files})


def gated(repo_id: str = "secret/gated", *, gate_metadata: bool = False) -> HubRepo:
    """A gated repo with one parquet file; downloads need `VALID_TOKEN`."""
    files = _parquet_files([("data/train-00000-of-00001.parquet", 150)], tag="gated")
    files["README.md"] = _readme("Gated (fake)")
    files[".gitattributes"] = _GITATTRIBUTES
    return HubRepo(repo_id, {"main": files}, gated=True, gate_metadata=gate_metadata)


def all_repos() -> list[HubRepo]:
    """The five standard repos (fresh objects on each call)."""
    return [wikipedia_like(), librispeech_like(), converted_only(), default_config(), gated()]


# --------------------------------------------------------------------------------------------
# HTTP server
# --------------------------------------------------------------------------------------------


class _HubError(Exception):
    """An error answer: status, ``X-Error-Code`` and a JSON ``{"error": message}`` body."""

    def __init__(
        self, status: int, code: str | None, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


class _DropConnection(Exception):
    """Raised after a deliberately truncated body: the connection must be closed."""


def _truthy(value: str | None) -> bool:
    return value is not None and value.lower() in {"1", "true", "yes"}


def _parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """Parse a single ``bytes=`` range into an inclusive ``(start, end)``; None = whole file.

    Raises `_HubError` 416 when the range cannot be satisfied.
    """
    if not header:
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes" or "," in spec:
        return None  # unsupported: answer the whole file, like many servers do
    first, _, last = spec.strip().partition("-")
    try:
        if first == "":
            length = int(last)
            if length <= 0:
                raise ValueError
            start, end = max(size - length, 0), size - 1
        else:
            start = int(first)
            end = int(last) if last else size - 1
            end = min(end, size - 1)
    except ValueError:
        return None
    if start >= size or start > end:
        raise _HubError(
            416, None, f"Range not satisfiable: {header}", {"Content-Range": f"bytes */{size}"}
        )
    return start, end


class _Handler(BaseHTTPRequestHandler):
    """Routes one request to the `HubServer` that owns the HTTP server."""

    protocol_version = "HTTP/1.1"  # keep-alive, like the real Hub: every answer has a length
    timeout = 60  # idle keep-alive connections end after a minute
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        """Silence the default stderr access log (see `HubServer.log`)."""

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_POST(self) -> None:
        self._dispatch("POST")

    # -- plumbing ---------------------------------------------------------------------------

    def _dispatch(self, method: str) -> None:
        hub = self.server.hub
        url = urlsplit(self.path)
        hub._record(method, unquote(url.path), self.headers.get("Range"))
        body = b""
        if method == "POST":
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
        try:
            hub._route(self, method, url.path, parse_qs(url.query), body)
        except _DropConnection:
            self.close_connection = True
        except _HubError as err:
            self._send_error(method, err)
        except Exception as err:  # pragma: no cover - a bug in the server itself
            traceback.print_exc(file=sys.stderr)
            self._send_error(method, _HubError(500, None, f"hubserver bug: {err!r}"))

    def _send_error(self, method: str, err: _HubError) -> None:
        headers = dict(err.headers)
        if err.code:
            headers["X-Error-Code"] = err.code
        headers["X-Error-Message"] = err.message
        self._send(method, err.status, json.dumps({"error": err.message}).encode(), headers)

    def _send(
        self,
        method: str,
        status: int,
        body: bytes,
        headers: Mapping[str, str],
        content_type: str = "application/json; charset=utf-8",
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if method != "HEAD":
            self.wfile.write(body)

    def _send_json(self, method: str, data: Any, headers: Mapping[str, str] | None = None) -> None:
        self._send(method, 200, json.dumps(data).encode(), headers or {})


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, hub: HubServer) -> None:
        self.hub = hub
        super().__init__(("127.0.0.1", 0), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet when a client goes away (tests cut connections on purpose)."""
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)


class HubServer:
    """A fake Hub serving `HubRepo` objects over HTTP on 127.0.0.1.

    Attributes:
        repos: ``repo_id -> HubRepo``.
        tokens: accepted bearer tokens (for gated/private repos).
        log: ``(method, unquoted URL path, Range header or None)`` of every request, in order.
        fail_paths: ``{path: "drop" | "500" | "500-get"}`` for the resolve route; a key is a
            path in a repo (any repo) or ``"owner/name/path"``. ``"500"`` answers 500 to HEAD
            and GET; ``"500-get"`` only to GET (the HEAD before a download succeeds).
            ``"drop"`` leaves HEAD alone and makes GET send the headers of a normal answer,
            then half of the body, but never bytes past the middle of the *file* (a ranged
            GET resuming after the middle gets none), then close the connection: every GET
            fails and a resumed download can never complete either.
        fail_counts: optional ``{key: n}``: the failure for `key` only happens n more times
            (each failed request counts, retries included).

    The client retries, so persistent failures are slow unless `skip_client_sleeps` is used:
    `hf_hub_download` sends a HEAD answered 5xx 7 times (1 + 6, pauses 1+2+4+8+8 s = 23 s);
    it sends a GET cut short 6 times (1 s pauses; it starts over each time, since httpx2 hands
    over nothing of a body cut before its 10 MB read chunk) and then raises
    ``httpx2.RemoteProtocolError``; it does not retry a GET answered 500 (``"500-get"``).
    `HfFileSystem` range reads retry both 5xx and cut bodies 5 times (23 s of pauses).
    """

    def __init__(self, repos: Iterable[HubRepo] = (), tokens: Iterable[str] = (VALID_TOKEN,)):
        self.repos: dict[str, HubRepo] = {}
        self.tokens: set[str] = set(tokens)
        self.log: list[tuple[str, str, str | None]] = []
        self.fail_paths: dict[str, FailMode] = {}
        self.fail_counts: dict[str, int] = {}
        self._lock = threading.RLock()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        for repo in repos:
            self.add_repo(repo)

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> HubServer:
        """Bind a free port and serve in a daemon thread. Returns self."""
        if self._httpd is None:
            self._httpd = _HTTPServer(self)
            self._thread = threading.Thread(
                target=self._httpd.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"hubserver-{self.port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the listening socket (idempotent)."""
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> HubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (the server must be started)."""
        if self._httpd is None:
            raise RuntimeError("HubServer is not started")
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>`` (no trailing slash): the value for ``HF_ENDPOINT``."""
        return f"http://127.0.0.1:{self.port}"

    # -- state and hooks --------------------------------------------------------------------

    def add_repo(self, repo: HubRepo) -> HubRepo:
        """Serve `repo` (replacing a repo with the same id). Returns it."""
        with self._lock:
            self.repos[repo.repo_id] = repo
        return repo

    def remove_repo(self, repo_id: str) -> None:
        """Stop serving `repo_id` (it then answers ``RepoNotFound``)."""
        with self._lock:
            self.repos.pop(repo_id, None)

    def commit(
        self,
        repo_id: str,
        changes: Mapping[str, bytes | None],
        *,
        revision: str = "main",
        title: str = "Update files",
    ) -> str:
        """Add/modify (bytes) or delete (None) files of a served repo in a new commit.

        Returns the new sha of `revision` (a new branch is created if needed).
        """
        with self._lock:
            return self.repos[repo_id].commit(changes, revision=revision, title=title)

    def fail(self, path: str, mode: FailMode, times: int | None = None) -> None:
        """Make the resolve route fail for `path` (see `fail_paths`), `times` times or always."""
        if mode not in ("drop", "500", "500-get"):
            raise ValueError(f"unknown fail mode {mode!r}")
        with self._lock:
            self.fail_paths[path] = mode
            if times is None:
                self.fail_counts.pop(path, None)
            else:
                self.fail_counts[path] = times

    def clear_failures(self) -> None:
        """Remove every failure set with `fail` or `fail_paths`."""
        with self._lock:
            self.fail_paths.clear()
            self.fail_counts.clear()

    def clear_log(self) -> None:
        """Empty `log`."""
        with self._lock:
            self.log.clear()

    def requests(
        self, method: str | None = None, contains: str = ""
    ) -> list[tuple[str, str, str | None]]:
        """Logged requests, filtered by method and by a substring of the path."""
        with self._lock:
            return [
                entry
                for entry in self.log
                if (method is None or entry[0] == method) and contains in entry[1]
            ]

    def _record(self, method: str, path: str, range_header: str | None) -> None:
        with self._lock:
            self.log.append((method, path, range_header))

    def _take_failure(self, method: str, repo_id: str, path: str) -> FailMode | None:
        """The failure to apply to this resolve request, consuming one count if limited."""
        with self._lock:
            for key in (f"{repo_id}/{path}", path):
                mode = self.fail_paths.get(key)
                if mode is None or (mode in ("drop", "500-get") and method != "GET"):
                    continue
                if key in self.fail_counts:
                    self.fail_counts[key] -= 1
                    if self.fail_counts[key] <= 0:
                        del self.fail_counts[key]
                        del self.fail_paths[key]
                return mode
        return None

    # -- routing ----------------------------------------------------------------------------

    def _route(
        self,
        handler: _Handler,
        method: str,
        raw_path: str,
        query: dict[str, list[str]],
        body: bytes,
    ) -> None:
        segs = raw_path.split("/")[1:]
        if segs and segs[-1] == "":
            segs = segs[:-1]
        if len(segs) >= 4 and segs[0] == "api" and segs[1] in ("datasets", "models", "spaces"):
            if segs[1] != "datasets":
                raise _HubError(404, "RepoNotFound", "Repository not found (only datasets here)")
            repo = self._repo(unquote(segs[2]) + "/" + unquote(segs[3]))
            self._check_access(handler, repo, api=True)
            rest = segs[4:]
            if not rest and method == "GET":
                return handler._send_json(method, self._info(repo, "main", query))
            kind, rest = (rest[0], rest[1:]) if rest else ("", [])
            if kind == "revision" and method == "GET":
                rev, sha, _ = self._split_revision(repo, rest)
                return handler._send_json(method, self._info(repo, rev, query, sha))
            if kind == "tree" and method == "GET":
                _, sha, path_segs = self._split_revision(repo, rest)
                return handler._send_json(method, self._tree(repo, sha, path_segs, query))
            if kind == "paths-info" and method == "POST":
                _, sha, _ = self._split_revision(repo, rest)
                form = parse_qs(body.decode(), keep_blank_values=True)
                return handler._send_json(method, self._paths_info(repo, sha, form))
            if kind == "refs" and not rest and method == "GET":
                return handler._send_json(method, self._refs(repo))
            if kind == "commits" and method == "GET":
                _, sha, _ = self._split_revision(repo, rest or ["main"])
                return handler._send_json(method, self._commits(repo, sha))
            raise _HubError(404, None, f"Sorry, no route for {method} {raw_path}")
        if len(segs) >= 5 and segs[0] == "datasets" and segs[3] == "resolve":
            if method not in ("GET", "HEAD"):
                raise _HubError(405, None, f"{method} not allowed on resolve")
            repo = self._repo(unquote(segs[1]) + "/" + unquote(segs[2]))
            self._check_access(handler, repo, api=False)
            return self._resolve(handler, method, repo, segs[4:])
        if (len(segs) >= 3 and segs[2] == "resolve") or (len(segs) >= 4 and segs[0] == "spaces"):
            raise _HubError(404, "RepoNotFound", "Repository not found (only datasets here)")
        raise _HubError(404, None, f"Sorry, no route for {method} {raw_path}")

    def _repo(self, repo_id: str) -> HubRepo:
        with self._lock:
            repo = self.repos.get(repo_id)
        if repo is None:
            raise _HubError(404, "RepoNotFound", f"Repository not found: {repo_id}")
        return repo

    def _check_access(self, handler: _Handler, repo: HubRepo, *, api: bool) -> None:
        auth = handler.headers.get("Authorization") or ""
        scheme, _, token = auth.partition(" ")
        authorized = scheme.lower() == "bearer" and token.strip() in self.tokens
        if repo.private and not authorized:
            status = 404 if auth else 401
            raise _HubError(status, "RepoNotFound", f"Repository not found: {repo.repo_id}")
        if repo.gated and not authorized and (not api or repo.gate_metadata):
            raise _HubError(
                401,
                "GatedRepo",
                f"Access to dataset {repo.repo_id} is restricted. You must have access to it "
                "and be authenticated to access it. Please log in.",
            )

    def _split_revision(self, repo: HubRepo, segs: list[str]) -> tuple[str, str, list[str]]:
        """Find the revision at the start of raw path segments: ``(name, sha, rest_segments)``.

        The revision may be one URL-encoded segment (``refs%2Fconvert%2Fparquet``) or span
        several raw segments (``refs/convert/parquet``); the shortest known name wins.
        """
        if not segs or not segs[0]:
            raise _HubError(404, "RevisionNotFound", "Invalid rev id: (empty)")
        with self._lock:
            for i in range(1, len(segs) + 1):
                candidate = unquote("/".join(segs[:i]))
                if candidate in repo.refs:
                    return candidate, repo.refs[candidate], segs[i:]
                if candidate in repo.commits:
                    return candidate, candidate, segs[i:]
        raise _HubError(404, "RevisionNotFound", f"Invalid rev id: {unquote(segs[0])}")

    def _commit_of(self, repo: HubRepo, sha: str) -> Commit:
        with self._lock:
            return repo.commits[sha]

    # -- answers ----------------------------------------------------------------------------

    def _info(
        self, repo: HubRepo, rev: str, query: dict[str, list[str]], sha: str | None = None
    ) -> dict[str, Any]:
        if sha is None:
            if rev not in repo.refs:
                raise _HubError(404, "RevisionNotFound", f"Invalid rev id: {rev}")
            sha = repo.refs[rev]
        commit = self._commit_of(repo, sha)
        blobs = _truthy((query.get("blobs") or [None])[0])
        siblings = []
        for path in sorted(commit.files):
            sibling: dict[str, Any] = {"rfilename": path}
            if blobs:
                meta = commit.meta[path]
                sibling["size"] = meta.size
                sibling["blobId"] = meta.blob_id
                if meta.sha256 is not None:
                    sibling["lfs"] = {
                        "sha256": meta.sha256,
                        "size": meta.size,
                        "pointerSize": meta.pointer_size,
                    }
            siblings.append(sibling)
        owner = repo.repo_id.split("/")[0]
        first_date = min(c.date for c in repo.commits.values())
        return {
            "_id": hashlib.sha1(repo.repo_id.encode()).hexdigest()[:24],
            "id": repo.repo_id,
            "author": owner,
            "sha": sha,
            "lastModified": commit.date_str,
            "createdAt": first_date.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "private": repo.private,
            "gated": "manual" if repo.gated else False,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": ["format:parquet", "region:us"],
            "cardData": _card_data(commit.files.get("README.md")),
            "siblings": siblings,
            "usedStorage": sum(m.size for m in commit.meta.values()),
        }

    def _entry(self, commit: Commit, path: str, expand: bool) -> dict[str, Any]:
        if path in commit.meta:
            meta = commit.meta[path]
            entry: dict[str, Any] = {
                "type": "file",
                "oid": meta.blob_id,
                "size": meta.size,
                "path": path,
            }
            if meta.sha256 is not None:
                entry["lfs"] = {
                    "oid": meta.sha256,
                    "size": meta.size,
                    "pointerSize": meta.pointer_size,
                }
        else:
            entry = {"type": "directory", "oid": commit.tree_id(path), "size": 0, "path": path}
        if expand:
            entry["lastCommit"] = {"id": commit.sha, "title": commit.title, "date": commit.date_str}
        return entry

    def _tree(
        self, repo: HubRepo, sha: str, path_segs: list[str], query: dict[str, list[str]]
    ) -> list[dict[str, Any]]:
        commit = self._commit_of(repo, sha)
        path = unquote("/".join(path_segs)).strip("/")
        recursive = _truthy((query.get("recursive") or [None])[0])
        expand = _truthy((query.get("expand") or [None])[0])
        if path and path not in commit.dirs:
            raise _HubError(404, "EntryNotFound", f"{path} does not exist on {sha}")
        prefix = path + "/" if path else ""

        def below(p: str) -> bool:
            return p.startswith(prefix) and (recursive or "/" not in p[len(prefix) :])

        dirs = sorted(d for d in commit.dirs if below(d))
        files = sorted(f for f in commit.files if below(f))
        return [self._entry(commit, p, expand) for p in dirs + files]

    def _paths_info(
        self, repo: HubRepo, sha: str, form: dict[str, list[str]]
    ) -> list[dict[str, Any]]:
        commit = self._commit_of(repo, sha)
        expand = _truthy((form.get("expand") or [None])[0])
        out = []
        for raw in form.get("paths", []):
            path = raw.strip("/")
            if path in commit.meta or path in commit.dirs:
                out.append(self._entry(commit, path, expand))
        return out

    def _refs(self, repo: HubRepo) -> dict[str, Any]:
        out: dict[str, list[dict[str, str]]] = {
            "branches": [],
            "converts": [],
            "tags": [],
            "pullRequests": [],
        }
        with self._lock:
            refs = dict(repo.refs)
        for name, sha in sorted(refs.items()):
            if name.startswith("refs/convert/"):
                out["converts"].append(
                    {"name": name.rsplit("/", 1)[1], "ref": name, "targetCommit": sha}
                )
            elif name.startswith("refs/pr/"):
                out["pullRequests"].append(
                    {"name": name.rsplit("/", 1)[1], "ref": name, "targetCommit": sha}
                )
            elif name.startswith("refs/tags/"):
                out["tags"].append({"name": name[10:], "ref": name, "targetCommit": sha})
            else:
                out["branches"].append(
                    {"name": name, "ref": f"refs/heads/{name}", "targetCommit": sha}
                )
        return out

    def _commits(self, repo: HubRepo, sha: str) -> list[dict[str, Any]]:
        out = []
        current: str | None = sha
        while current is not None:
            commit = self._commit_of(repo, current)
            out.append(
                {
                    "id": commit.sha,
                    "title": commit.title,
                    "message": "",
                    "authors": [{"user": "hubserver"}],
                    "date": commit.date_str,
                }
            )
            current = commit.parent
        return out

    def _resolve(self, handler: _Handler, method: str, repo: HubRepo, segs: list[str]) -> None:
        _, sha, path_segs = self._split_revision(repo, segs)
        commit = self._commit_of(repo, sha)
        path = unquote("/".join(path_segs))
        if path not in commit.files:
            raise _HubError(
                404, "EntryNotFound", f"{path} does not exist on {sha}", {"X-Repo-Commit": sha}
            )
        failure = self._take_failure(method, repo.repo_id, path)
        if failure in ("500", "500-get"):
            raise _HubError(500, None, "Internal Error (simulated by hubserver)")
        content = commit.files[path]
        meta = commit.meta[path]
        size = len(content)
        headers = {
            "X-Repo-Commit": sha,
            "ETag": f'"{meta.etag}"',
            "Accept-Ranges": "bytes",
            "Content-Disposition": f'inline; filename="{path.rsplit("/", 1)[-1]}"',
        }
        if meta.sha256 is not None:
            headers["X-Linked-Etag"] = f'"{meta.sha256}"'
            headers["X-Linked-Size"] = str(size)
        byte_range = _parse_range(handler.headers.get("Range"), size) if size else None
        status, start, end = 200, 0, size - 1
        if byte_range is not None:
            status, (start, end) = 206, byte_range
            headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        body = content[start : end + 1]
        if failure != "drop":
            return handler._send(method, status, body, headers, "application/octet-stream")
        # Headers of a complete answer, then only the bytes before the middle of the file.
        handler.send_response(status)
        handler.send_header("Content-Type", "application/octet-stream")
        handler.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.send_header("Connection", "close")
        handler.end_headers()
        cut = max(0, min(len(body) // 2, size // 2 - start))
        handler.wfile.write(body[:cut])
        handler.wfile.flush()
        raise _DropConnection


def _card_data(readme: bytes | None) -> dict[str, Any] | None:
    """The YAML front matter of a dataset card, as the Hub returns it in ``cardData``."""
    if not readme or not readme.startswith(b"---\n"):
        return None
    end = readme.find(b"\n---", 4)
    if end < 0:
        return None
    try:
        import yaml
    except ImportError:  # pragma: no cover - pyyaml comes with huggingface_hub's deps here
        return None
    data = yaml.safe_load(readme[4:end].decode())
    return data if isinstance(data, dict) else None


def start_hub(
    repos: Iterable[HubRepo] | None = None, tokens: Iterable[str] = (VALID_TOKEN,)
) -> HubServer:
    """Create and start a `HubServer` serving `repos` (default: `all_repos()`)."""
    return HubServer(all_repos() if repos is None else repos, tokens=tokens).start()


# --------------------------------------------------------------------------------------------
# Pointing huggingface_hub at the server
# --------------------------------------------------------------------------------------------


def hub_env(url: str, hf_home: str | PathLike[str]) -> dict[str, str]:
    """Environment variables that make a freshly imported `huggingface_hub` use the server.

    Set them before `huggingface_hub` is imported (and unset `HUB_ENV_UNSET`).
    ``HF_HUB_DISABLE_XET=1`` is honoured by the client (`constants.HF_HUB_DISABLE_XET`, read by
    `utils._runtime.is_xet_available`).
    """
    return {
        "HF_ENDPOINT": url.rstrip("/"),
        "HF_HOME": str(hf_home),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_OFFLINE": "0",
        "HF_HUB_DISABLE_UPDATE_CHECK": "1",
    }


Patch = tuple[Any, str, Any]


def point_client_at(
    url: str,
    *,
    hf_home: str | PathLike[str] | None = None,
    monkeypatch: Any | None = None,
) -> list[Patch]:
    """Make an already-imported `huggingface_hub` talk to `url` (and use `hf_home` if given).

    With `monkeypatch` (a pytest ``MonkeyPatch``) every change goes through
    ``monkeypatch.setattr`` and is undone with it; otherwise undo with `restore_client`.
    Returns the ``(object, attribute, old value)`` list of what was changed. Also closes the
    client's pooled HTTP session and clears `HfFileSystem`'s instance cache (not undone).
    """
    import huggingface_hub  # noqa: F401 - make sure the constants exist
    from huggingface_hub import constants

    url = url.rstrip("/")
    host = urlsplit(url).hostname or ""
    new: dict[str, Any] = {
        "ENDPOINT": url,
        "HUGGINGFACE_CO_URL_TEMPLATE": url + "/{repo_id}/resolve/{revision}/{filename}",
        "HF_URL_HOSTS": frozenset(constants.HF_URL_HOSTS | {host.lower()}),
        "HF_HUB_OFFLINE": False,
        "HF_HUB_DISABLE_TELEMETRY": True,
        "HF_HUB_DISABLE_XET": True,
    }
    if hf_home is not None:
        home = str(Path(hf_home))
        hub_cache = str(Path(home) / "hub")
        assets = str(Path(home) / "assets")
        token_path = str(Path(home) / "token")
        new.update(
            {
                "HF_HOME": home,
                "default_cache_path": hub_cache,
                "default_assets_cache_path": assets,
                "HUGGINGFACE_HUB_CACHE": hub_cache,
                "HUGGINGFACE_ASSETS_CACHE": assets,
                "HF_HUB_CACHE": hub_cache,
                "HF_ASSETS_CACHE": assets,
                "HF_TOKEN_PATH": token_path,
                "HF_STORED_TOKENS_PATH": str(Path(home) / "stored_tokens"),
                "HF_XET_CACHE": str(Path(home) / "xet"),
                "default_xet_cache_path": str(Path(home) / "xet"),
                "CHECK_FOR_UPDATE_DONE_PATH": str(Path(home) / ".check_for_update_done"),
            }
        )

    patches: list[Patch] = []

    def setattr_(obj: Any, attr: str, value: Any) -> None:
        patches.append((obj, attr, getattr(obj, attr)))
        if monkeypatch is not None:
            monkeypatch.setattr(obj, attr, value)
        else:
            setattr(obj, attr, value)

    old = {name: getattr(constants, name) for name in new if hasattr(constants, name)}
    # Copies taken with `from .constants import NAME` by modules already imported.
    for mod_name, module in list(sys.modules.items()):
        if module is None or module is constants or not mod_name.startswith("huggingface_hub"):
            continue
        namespace = vars(module)
        for name, old_value in old.items():
            if name in namespace and namespace[name] == old_value:
                setattr_(module, name, new[name])
    for name in old:
        setattr_(constants, name, new[name])

    hf_api = sys.modules.get("huggingface_hub.hf_api")
    if hf_api is not None and hasattr(hf_api, "api"):
        setattr_(hf_api.api, "endpoint", url)
    http_mod = sys.modules.get("huggingface_hub.utils._http")
    if http_mod is not None:
        if hasattr(http_mod, "_HUB_ORIGINS") and hasattr(http_mod, "_url_origin"):
            origins = frozenset(http_mod._HUB_ORIGINS | {http_mod._url_origin(url)})
            setattr_(http_mod, "_HUB_ORIGINS", origins)
        if hasattr(http_mod, "close_session"):
            http_mod.close_session()  # pooled keep-alive connections may point at an old server
    hffs = sys.modules.get("huggingface_hub.hf_file_system")
    if hffs is not None:
        hffs.HfFileSystem.clear_instance_cache()
    return patches


def restore_client(patches: list[Patch]) -> None:
    """Undo `point_client_at` done without a monkeypatch (restores in reverse order)."""
    for obj, attr, old_value in reversed(patches):
        setattr(obj, attr, old_value)
    http_mod = sys.modules.get("huggingface_hub.utils._http")
    if http_mod is not None and hasattr(http_mod, "close_session"):
        http_mod.close_session()
    hffs = sys.modules.get("huggingface_hub.hf_file_system")
    if hffs is not None:
        hffs.HfFileSystem.clear_instance_cache()


class _NoSleepTime:
    """Stands for the `time` module in huggingface_hub's modules, with an instant `sleep`."""

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    @staticmethod
    def sleep(seconds: float) -> None:
        """Do not wait."""


def skip_client_sleeps(monkeypatch: Any) -> None:
    """Make huggingface_hub's retry pauses instant (its download and HTTP back-off modules).

    Patches the ``time`` name of ``huggingface_hub.file_download`` and
    ``huggingface_hub.utils._http`` (the only ``time.sleep`` callers on the download paths)
    through the pytest `monkeypatch`, so the real `time.sleep` stays untouched elsewhere.
    """
    import importlib

    for name in ("huggingface_hub.file_download", "huggingface_hub.utils._http"):
        monkeypatch.setattr(importlib.import_module(name), "time", _NoSleepTime())


@contextlib.contextmanager
def serving(repos: Iterable[HubRepo], hf_home: str | PathLike[str]) -> Iterator[HubServer]:
    """Start a hub with ``repos`` and point huggingface_hub at it (env and already-imported
    module state) for the duration; ``server.home`` is ``hf_home``. For module fixtures."""
    import pytest

    server = start_hub(repos)
    try:
        with pytest.MonkeyPatch.context() as mp:
            for name in HUB_ENV_UNSET:
                mp.delenv(name, raising=False)
            for name, value in hub_env(server.url, hf_home).items():
                mp.setenv(name, value)
            point_client_at(server.url, hf_home=hf_home, monkeypatch=mp)
            server.home = hf_home  # type: ignore[attr-defined]
            yield server
    finally:
        server.stop()
