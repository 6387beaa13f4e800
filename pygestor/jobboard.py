"""Jobs: long operations recorded where the data is, seen and cancelled from anywhere.

Every long operation (download, remove, delete, verify, check-updates, add) runs as a
:class:`Job`. Its record lives in ``data_dir/_pygestor/jobs/<id>.json`` (``_pygestor`` can never
be a dataset name): who runs it (host, pid), when it started, a lease renewed while it lives,
progress (partitions and bytes done of total), state, and the error if it failed. So every
process, browser tab and machine that sees the storage root sees the same jobs, after a reload
too.

- Only the job's own process writes its record (a single writer: no conflict is possible); a
  cancel request is a separate marker object (``<id>.cancel``) that anyone may create and that
  the job's heartbeat notices within a second.
- A running job whose lease expired (killed process, dead machine) shows as ``abandoned``; the
  next operation on its dataset cleans up after it (its temporary files; its complete
  partitions are adopted under the integrity rules) and files it as abandoned.
- Finished jobs move to ``_pygestor/jobs/history/`` and are kept ``job_history_days``.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import logging
import os
import re
import socket
import threading
import time
import uuid
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pygestor.errors import CancelledError, ConfigError, NotFoundError, PygestorError

if TYPE_CHECKING:
    from pygestor.backends.storage import Storage
    from pygestor.config import Settings

log = logging.getLogger("pygestor.jobs")
FOLDER = ("_pygestor", "jobs")
HISTORY = "history"
JOB_ID = re.compile(r"^\d{8}T\d{6}Z-[a-z-]+-[0-9a-f]{8}$")
#: seconds between heartbeats (progress written, cancel marker checked)
BEAT = 1.0
FINAL_STATES = ("done", "failed", "cancelled", "abandoned")
HOST = socket.gethostname()


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def state_of(record: dict[str, Any], at: float | None = None) -> str:
    """The state a job record shows: ``abandoned`` once a running job's lease has expired, or
    at once when its process is known to be gone (this machine's, with a dead pid)."""
    state = str(record.get("state"))
    if state == "running":
        lease = float(record.get("lease") or 0)
        if (at or time.time()) > float(record.get("heartbeat") or 0) + lease or \
                _dead_here(record):
            return "abandoned"
    return state


def _dead_here(record: dict[str, Any]) -> bool:
    """Whether the job ran on this machine in a process that no longer exists."""
    if record.get("host") != HOST:
        return False
    try:
        os.kill(int(record.get("pid") or 0), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, ValueError, OSError):
        return False
    return False


def overlaps(record: dict[str, Any], subsets: Iterable[str],
             partitions: Iterable[str] | None) -> bool:
    """Whether a job works on any of these partitions (``subset/partition`` keys), or on any
    partition of these subsets when ``partitions`` is None."""
    theirs = record.get("partitions")
    mine = None if partitions is None else set(partitions)
    if theirs is not None and mine is not None:
        return bool(set(theirs) & mine)
    their_subsets = set(record.get("subsets") or [])
    mine_subsets = set(subsets) if mine is None else {k.rsplit("/", 1)[0] for k in mine}
    if theirs is not None:
        their_subsets = {k.rsplit("/", 1)[0] for k in theirs}
    return bool(their_subsets & mine_subsets) or not their_subsets


class JobBoard:
    """The jobs of one storage root.

    Args:
        storage: the storage root (its ``_pygestor/jobs/`` folder holds the records).
        settings: ``job_lease`` (seconds a job may go without a heartbeat before it is
            abandoned) and ``job_history_days``.
    """

    def __init__(self, storage: Storage, settings: Settings) -> None:
        self.storage = storage
        self.lease = float(settings.job_lease)
        self.history_days = float(settings.job_history_days)

    # ------------------------------------------------------------------ paths
    def _path(self, job_id: str, suffix: str = ".json", history: bool = False) -> str:
        parts = [*FOLDER, HISTORY] if history else list(FOLDER)
        return self.storage.path(*parts, f"{job_id}{suffix}")

    # ------------------------------------------------------------------ starting
    def start(self, kind: str, ref: str, dataset: str, *, subsets: Iterable[str] = (),
              partitions: Iterable[str] | None = None, total: int = 0,
              cancel: threading.Event | None = None) -> Job:
        """A new job (not yet written: use it as a context manager)."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        job_id = f"{stamp}-{kind}-{uuid.uuid4().hex[:8]}"
        record = {"id": job_id, "kind": kind, "ref": ref, "dataset": dataset,
                  "subsets": sorted(set(subsets)),
                  "partitions": None if partitions is None else sorted(set(partitions)),
                  "host": HOST, "pid": os.getpid(), "user": _user(),
                  "started_at": now_iso(), "heartbeat": time.time(), "lease": self.lease,
                  "state": "running", "done": 0, "total": total, "failed": 0,
                  "bytes_done": 0, "message": "", "error": None, "finished_at": None}
        return Job(self, record, cancel)

    # ------------------------------------------------------------------ reading
    def list(self, all: bool = False) -> list[dict[str, Any]]:  # noqa: A002 - CLI's --all
        """Jobs that run (and abandoned ones), newest first; with ``all``, finished ones too."""
        self.storage.check_root()
        records = self._read_folder(list(FOLDER), suffix=".json")
        if all:
            self._prune_history()
            records += self._read_folder([*FOLDER, HISTORY], suffix=".json")
        at = time.time()
        for record in records:
            record["state"] = state_of(record, at)
        return sorted(records, key=lambda r: r.get("id", ""), reverse=True)

    def get(self, job_id: str) -> dict[str, Any]:
        check_job_id(job_id)
        for history in (False, True):
            try:
                record = _loads(self.storage.read_bytes(self._path(job_id, history=history)))
            except FileNotFoundError:
                continue
            record["state"] = state_of(record)
            return record
        raise NotFoundError(f"no job {job_id!r} in this data_dir; 'pygestor jobs --all' lists "
                            "them")

    def running(self, dataset: str, exclude: str | None = None) -> list[dict[str, Any]]:
        """Live jobs (lease not expired) on ``dataset``, other than ``exclude``."""
        return [r for r in self.list() if r.get("dataset") == dataset and
                r["state"] == "running" and r.get("id") != exclude]

    def _read_folder(self, parts: list[str], suffix: str) -> list[dict[str, Any]]:
        pattern = self.storage.path(*parts, f"*{suffix}")
        try:
            paths = self.storage.glob(pattern)
        except FileNotFoundError:
            return []
        records = []
        for raw in self.storage.read_many(paths).values():
            if isinstance(raw, bytes):
                with contextlib.suppress(ValueError):
                    records.append(_loads(raw))
        return records

    # ------------------------------------------------------------------ control
    def cancel(self, job_id: str) -> dict[str, Any]:
        """Ask a job to stop (it notices within a second, wherever it runs). A job that is
        abandoned is filed as such at once; a finished one is left as it is."""
        record = self.get(job_id)
        if record["state"] == "running":
            self.storage.write_bytes(self._path(job_id, ".cancel"), now_iso().encode())
            record["cancel_requested"] = True
        elif record["state"] == "abandoned":
            self.file_abandoned(record, note="cancelled after its process stopped")
            record["state"] = "abandoned"
        return record

    def wait(self, job_ids: Iterable[str], stop: threading.Event | None = None,
             timeout: float | None = None) -> None:
        """Wait until these jobs have finished (or been abandoned)."""
        pending = set(job_ids)
        deadline = None if timeout is None else time.monotonic() + timeout
        while pending:
            for job_id in list(pending):
                try:
                    if self.get(job_id)["state"] != "running":
                        pending.discard(job_id)
                except NotFoundError:
                    pending.discard(job_id)
            if not pending:
                return
            if stop is not None and stop.is_set():
                raise CancelledError("cancelled while waiting for " + ", ".join(sorted(pending)))
            if deadline is not None and time.monotonic() > deadline:
                raise PygestorError(f"job(s) {', '.join(sorted(pending))} did not stop within "
                                    f"{timeout:.0f}s")
            time.sleep(BEAT / 2)

    def file_abandoned(self, record: dict[str, Any], note: str = "") -> None:
        """Move an abandoned job's record to the history, marked ``abandoned``."""
        final = {**record, "state": "abandoned", "finished_at": now_iso(),
                 "message": note or "its process stopped renewing its lease"}
        self.storage.write_bytes(self._path(record["id"], history=True), _dumps(final))
        for suffix in (".json", ".cancel"):
            with contextlib.suppress(FileNotFoundError):
                self.storage.remove(self._path(record["id"], suffix))

    def abandoned(self, dataset: str) -> list[dict[str, Any]]:
        return [r for r in self.list() if r.get("dataset") == dataset and
                r["state"] == "abandoned"]

    def _prune_history(self) -> None:
        cutoff = time.time() - self.history_days * 86400
        for record in self._read_folder([*FOLDER, HISTORY], suffix=".json"):
            if float(record.get("heartbeat") or 0) < cutoff:
                with contextlib.suppress(FileNotFoundError):
                    self.storage.remove(self._path(record["id"], history=True))


class Job:
    """One running job: its record, progress, heartbeat and cancel request.

    ``with board.start(...) as job:`` writes the record and starts the heartbeat; leaving the
    block files the job as done, failed (with the error) or cancelled. ``job.stop`` is set
    when anyone asks to cancel it (or when ``cancel``, the caller's own event, is set).
    """

    def __init__(self, board: JobBoard, record: dict[str, Any],
                 cancel: threading.Event | None = None) -> None:
        self.board = board
        self.record = record
        self.stop = threading.Event()
        self._caller_cancel = cancel
        self._guard = threading.Lock()
        self._dirty = True
        self._done = threading.Event()
        self._beat: threading.Thread | None = None

    @property
    def id(self) -> str:
        return str(self.record["id"])

    @property
    def cancelled(self) -> bool:
        if self._caller_cancel is not None and self._caller_cancel.is_set():
            self.stop.set()
        return self.stop.is_set()

    def progress(self, **fields: Any) -> None:
        """Update progress fields (``done``, ``total``, ``failed``, ``bytes_done``, ``message``);
        written by the next heartbeat."""
        with self._guard:
            self.record.update(fields)
            self._dirty = True

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> Job:
        self.board.storage.check_root()
        self._write()
        self._beat = threading.Thread(target=self._heartbeat, name=f"pygestor-job-{self.id}",
                                      daemon=True)
        self._beat.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: object) -> None:
        self._done.set()
        if self._beat is not None:
            self._beat.join(timeout=5)
        if exc is None:
            state, error = "done", None
        elif isinstance(exc, (CancelledError, KeyboardInterrupt)) or self.stop.is_set():
            state, error = "cancelled", None
        else:
            state, error = "failed", str(exc) if isinstance(exc, PygestorError) else \
                f"{type(exc).__name__}: {exc}"
        self._finish(state, error)

    def _finish(self, state: str, error: str | None) -> None:
        with self._guard:
            self.record.update(state=state, error=error, finished_at=now_iso(),
                               heartbeat=time.time())
            final = _dumps(self.record)
        try:
            self.board.storage.write_bytes(self.board._path(self.id, history=True), final)
            for suffix in (".json", ".cancel"):
                with contextlib.suppress(FileNotFoundError):
                    self.board.storage.remove(self.board._path(self.id, suffix))
        except PygestorError as exc:  # the operation's own outcome matters more
            log.warning("could not file job %s as %s: %s", self.id, state, exc)

    def _heartbeat(self) -> None:
        lease = float(self.record["lease"])
        last = time.monotonic()
        while not self._done.wait(BEAT):
            try:
                if self._cancel_requested():
                    self.stop.set()
                with self._guard:
                    due = self._dirty or time.monotonic() - last > lease / 3
                if due:
                    self._write()
                    last = time.monotonic()
            except PygestorError as exc:  # a missed beat; the lease covers a few
                log.warning("job %s heartbeat: %s", self.id, exc)

    def _cancel_requested(self) -> bool:
        if self.cancelled:
            return True
        return self.board.storage.exists(self.board._path(self.id, ".cancel"))

    def _write(self) -> None:
        with self._guard:
            self.record["heartbeat"] = time.time()
            self.record["cancel_requested"] = self.stop.is_set()
            data = _dumps(self.record)
            self._dirty = False
        self.board.storage.write_bytes(self.board._path(self.id), data)


def check_job_id(job_id: str) -> str:
    if not isinstance(job_id, str) or not JOB_ID.match(job_id):
        raise ConfigError(f"{job_id!r} is not a job id; 'pygestor jobs' lists them (ids look "
                          "like 20261129T181500Z-download-1a2b3c4d)")
    return job_id


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""


def _dumps(record: dict[str, Any]) -> bytes:
    return json.dumps(record, sort_keys=True, default=str).encode()


def _loads(raw: bytes) -> dict[str, Any]:
    value = json.loads(raw)
    if not isinstance(value, dict) or not isinstance(value.get("id"), str):
        raise ValueError("not a job record")
    return value
