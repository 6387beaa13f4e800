"""Downloads: the partitions of a selection fetched on an executor, placed, and recorded.

- :class:`PartitionTask` is one partition's work, wherever it runs (a thread of this process or
  a worker of a cluster): skip it if the stored file is still the recorded one, adopt a file that
  provably is it, else set aside what is in the way and fetch it from the source, build it
  locally, place it atomically and return its stats. It never writes the record.
- :class:`Download` runs the tasks on a ``concurrent.futures.Executor`` (a thread pool by
  default; a Dask cluster's, see :mod:`pygestor.cluster`), a bounded number in flight, as one
  job (:mod:`pygestor.jobboard`: progress, cancel), and records what finished in batches through the
  catalog (:class:`RecordBatcher`): once a second at most, compare-and-swap or under a lock.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ThreadPoolExecutor, wait
from concurrent.futures import CancelledError as FutureCancelled
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pygestor import integrity
from pygestor.backends.retry import TransientError, call_with_retries
from pygestor.backends.temps import temp_name
from pygestor.catalog import Catalog, Dataset, Partition, Subset, now
from pygestor.errors import CancelledError, PygestorError, SourceError, StorageError, short_text
from pygestor.policy import SourcePolicy

if TYPE_CHECKING:
    from pygestor.jobboard import Job
    from pygestor.manager import Manager
    from pygestor.pipelines.base import Pipeline

log = logging.getLogger("pygestor.download")
SET_ASIDE = "_pygestor/set-aside"
#: failed partitions listed in a job's record (with their error), at most
MAX_FAILURES = 200


@dataclass
class ProgressEvent:
    """A download's progress, for progress bars (tqdm in the CLI, a bar in the UI)."""

    total: int
    done: int = 0
    failed: int = 0
    skipped: int = 0
    bytes_written: int = 0
    current: str = ""
    finished: bool = False


ProgressCallback = Callable[[ProgressEvent], None]


@dataclass
class DownloadReport:
    """What a download did.

    ``set_aside``: files found where a partition belongs that were not provably it (damaged,
    from another source, foreign), moved to ``<dataset>/_pygestor/set-aside/``: key -> why.
    ``workers``: where each partition was built (host and pid), when not in this process.
    """

    fetched: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    set_aside: dict[str, str] = field(default_factory=dict)
    workers: dict[str, str] = field(default_factory=dict)
    bytes_written: int = 0
    seconds: float = 0.0
    job: str = ""

    def __str__(self) -> str:
        text = (f"fetched {len(self.fetched)}, skipped {len(self.skipped)} already present, "
                f"{_size(self.bytes_written)} in {self.seconds:.1f}s")
        if self.adopted:
            text += f", adopted {len(self.adopted)} complete files"
        if self.set_aside:
            text += (f", set aside {len(self.set_aside)} files that were not provably this "
                     f"dataset's (in {SET_ASIDE}/)")
        if self.failed:
            text += f", {len(self.failed)} failed"
        return text

    def merge(self, other: DownloadReport) -> None:
        self.fetched += other.fetched
        self.skipped += other.skipped
        self.adopted += other.adopted
        self.failed.update(other.failed)
        self.set_aside.update(other.set_aside)
        self.workers.update(other.workers)
        self.bytes_written += other.bytes_written
        self.seconds += other.seconds


@dataclass
class Outcome:
    """What a :class:`PartitionTask` did: ``fetched``, ``adopted`` or ``skipped``; the stats to
    record (fetched, adopted); why a file in the way was set aside; where it ran."""

    kind: str
    stats: Partition | None = None
    set_aside: str | None = None
    worker: str = ""


# ====================================================================== one partition
class PartitionTask:
    """One partition of a download (picklable: it can run on a cluster's worker, which makes
    its own filesystem clients from the settings; no credential travels with it)."""

    def __init__(self, manager: Manager, dataset: Dataset, subset: Subset, part: Partition,
                 detail: dict[str, Any] | None, force: bool,
                 pipeline: Pipeline | None = None) -> None:
        self.settings = manager.settings
        self.dataset, self.subset, self.part = dataset, subset, part
        self.detail = detail
        self.force = force
        self._manager: Manager | None = manager
        self._pipeline = pipeline  # shared by the tasks of one download in this process

    def __getstate__(self) -> dict[str, Any]:
        """What travels to a cluster's worker: no manager, no pipeline object, and settings
        without secrets (workers use their own credentials)."""
        state = self.__dict__.copy()
        state["_manager"] = state["_pipeline"] = None
        state["settings"] = self.settings.without_secrets()
        return state

    @property
    def manager(self) -> Manager:
        if self._manager is None:
            self._manager = _process_manager(self.settings)
        return self._manager

    @property
    def pipeline(self) -> Pipeline:
        if self._pipeline is None:
            self._pipeline = _process_pipeline(self.manager, self.dataset.pipeline)
        return self._pipeline

    def __call__(self, stop: threading.Event | None = None) -> Outcome:
        if self._manager is not None:
            return self._run(stop)
        try:  # on a cluster's worker: say which one when it fails
            return self._run(stop)
        except Exception as exc:  # noqa: BLE001 - reported to the client with the worker
            key = f"{self.dataset.name}/{self.subset.name}/{self.part.name}"
            error = SourceError(f"{key} on worker {worker_name()}: {short_text(exc)}")
            error.transient = getattr(exc, "transient", False)  # type: ignore[attr-defined]
            raise error from None

    def _run(self, stop: threading.Event | None) -> Outcome:
        manager = self.manager
        storage = manager.storage
        final = manager.partition_path(self.dataset.name, self.subset.name, self.part.name)
        moved = None
        if self.detail is not None:
            if self.part.downloaded and not self.force:
                problem = integrity.present(storage, final, self.part, self.detail)
                if problem is None:
                    return Outcome("skipped")
                if problem != "missing":
                    moved = self._set_aside(f"the stored file is not the recorded one ({problem})")
            elif not self.part.downloaded and not self.force:
                verdict = integrity.examine(storage, final, self.dataset, self.subset, self.part)
                if verdict.stats is not None:
                    verdict.stats.generation = self.part.generation
                    return Outcome("adopted", verdict.stats, worker=worker_name())
                if verdict.reason != "missing":
                    moved = self._set_aside(f"a file not provably this partition's: "
                                            f"{verdict.reason}")
            elif not self.part.downloaded:
                moved = self._set_aside("a file the record does not vouch for")
        stats = self._fetch(final, stop)
        return Outcome("fetched", stats, moved, worker_name())

    def _set_aside(self, reason: str) -> str | None:
        try:
            return self.manager.set_aside(self.dataset.name, self.subset.name, self.part.name,
                                          reason)
        except FileNotFoundError:
            return None  # gone meanwhile: nothing in the way

    def _fetch(self, final: str, stop: threading.Event | None) -> Partition:
        manager = self.manager
        storage, settings = manager.storage, self.settings
        pipeline = self.pipeline
        policy = SourcePolicy.for_settings(settings)
        for url in pipeline.source_urls(self.dataset, self.part):
            policy.check(url, self.dataset.options)  # a record is untrusted input
        staging = storage.staging_dir(near=os.path.dirname(final) if storage.is_local else None)
        local = os.path.join(staging, temp_name(self.part.name))
        key = f"{self.dataset.name}/{self.subset.name}/{self.part.name}"
        try:
            def attempt() -> None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(local)
                pipeline.fetch(self.dataset, self.subset, self.part, local, lambda n: None)
            call_with_retries(attempt, attempts=settings.retries, backoff=settings.retry_backoff,
                              what=f"fetching {self.part.source.get('url') or self.part.name} "
                                   f"for {key}", error=SourceError)
            if stop is not None and stop.is_set():
                raise CancelledError("cancelled")
            with open(local, "rb") as handle:
                stats = integrity.stats_from_stream(handle, os.path.getsize(local),
                                                    md5=not storage.is_local)
            md5 = stats.pop("md5", None)
            etag = call_with_retries(lambda: self._place(local, final, stats["size"], md5),
                                     attempts=settings.retries, backoff=settings.retry_backoff,
                                     what=f"storing {storage.url_of(final)}", error=StorageError)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(local)
        return Partition(name=self.part.name, **stats, etag=etag, downloaded_at=now(),
                         generation=self.part.generation)

    def _place(self, local: str, final: str, size: int, md5: str | None) -> str | None:
        """Put the file in place; on object stores, check what arrived (size, and the MD5 the
        store reports) and return its entity tag. Bytes corrupted in transit are sent again."""
        storage = self.manager.storage
        storage.put_file(local, final)
        if storage.is_local:
            return None
        try:
            info = storage.info(final)
        except FileNotFoundError:
            return None  # removed by a concurrent remove: the recorder will not record it
        tag = integrity.entity_tag(info)
        if int(info.get("size") or 0) != size or \
                (md5 is not None and integrity.md5_matches(tag, md5) is False):
            raise TransientError(f"{storage.url_of(final)} does not hold the bytes sent "
                                 "(corrupted in transit)")
        return tag


_PROCESS: dict[str, Any] = {}


def _process_manager(settings: Any) -> Manager:
    """One manager per process and storage root, for tasks that run on a cluster's worker."""
    from pygestor.manager import Manager

    key = f"manager:{settings.data_dir}"
    if key not in _PROCESS:
        _PROCESS[key] = Manager(settings)
    return _PROCESS[key]


def _process_pipeline(manager: Manager, name: str) -> Pipeline:
    """One pipeline object per process, storage root and pipeline (a pipeline may share work
    between the partitions of one source file, as the Hugging Face one does)."""
    key = f"pipeline:{manager.settings.data_dir}:{name}"
    if key not in _PROCESS:
        _PROCESS[key] = manager.pipeline(name)
    return _PROCESS[key]


def worker_name() -> str:
    """Where a task ran: host and pid."""
    import socket

    return f"{socket.gethostname()}:{os.getpid()}"


# ====================================================================== the whole download
class Download:
    """The partitions of one selection, fetched on ``executor`` as one job.

    Args:
        manager: the operations of the storage root.
        dataset, selected: the record read at the start, and the (subset, partition) pairs.
        force: fetch again what is present.
        job: the job this download runs as (progress, cancel).
        notify: called with a :class:`ProgressEvent` after each partition.
        workers: partitions in flight (twice as many are queued on the executor).
        executor: where tasks run (None: a thread pool of ``workers`` threads).
    """

    def __init__(self, manager: Manager, dataset: Dataset,
                 selected: list[tuple[Subset, Partition]], *, force: bool, job: Job,
                 notify: ProgressCallback, workers: int, executor: Executor | None = None
                 ) -> None:
        self.manager = manager
        self.dataset = dataset
        self.selected = selected
        self.force = force
        self.job = job
        self.notify = notify
        self.workers = workers
        self.executor = executor
        self.report = DownloadReport(job=job.id)
        self.event = ProgressEvent(total=len(selected))

    def run(self) -> DownloadReport:
        started = time.monotonic()
        manager, name = self.manager, self.dataset.name
        subsets = {s.name for s, _ in self.selected}
        stored = manager._stored(name, subsets)
        recorder = RecordBatcher(manager.catalog, name,
                                 stored=lambda names: manager._stored_sizes(name, names))
        pipeline = manager.pipeline(self.dataset.pipeline)
        if self.executor is None:
            tasks = [PartitionTask(manager, self.dataset, s, p, stored.get((s.name, p.name)),
                                   self.force, pipeline) for s, p in self.selected]
        else:  # each task carries its own partition only
            tasks = []
            for s, p in self.selected:
                one = self.dataset.only(s, p)
                tasks.append(PartitionTask(manager, one, one.subsets[s.name], p,
                                           stored.get((s.name, p.name)), self.force))
        try:
            self._schedule(tasks, recorder)
        finally:
            recorder.flush()  # also when interrupted: what finished is recorded
            self.event.finished = True
            self.notify(self.event)
        self.report.seconds = time.monotonic() - started
        return self.report

    def _schedule(self, tasks: list[PartitionTask], recorder: RecordBatcher) -> None:
        own = self.executor is None
        pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="pygestor-dl") \
            if own else self.executor
        assert pool is not None
        stop = self.job.stop
        futures: dict[Future[Any], str] = {}
        queue = list(tasks)
        try:
            while queue or futures:
                while queue and len(futures) < self.workers * 2 and not self.job.cancelled:
                    task = queue.pop(0)
                    key = f"{task.subset.name}/{task.part.name}"
                    futures[pool.submit(task, stop) if own else pool.submit(task)] = key
                if not futures:
                    break
                finished, _ = wait(futures, timeout=1.0, return_when=FIRST_COMPLETED)
                if self.job.cancelled:
                    for future in futures:
                        future.cancel()  # queued ones never start; running ones finish
                for future in finished:
                    self._account(future, futures.pop(future), recorder)
        finally:
            if own:
                pool.shutdown(wait=True, cancel_futures=True)

    def _account(self, future: Future[Any], key: str, recorder: RecordBatcher) -> None:
        report, event = self.report, self.event
        try:
            outcome: Outcome = future.result()
        except (CancelledError, FutureCancelled):
            return
        except PygestorError as exc:
            report.failed[key] = str(exc)
            event.failed += 1
            self.job.progress(failures=dict(list(report.failed.items())[:MAX_FAILURES]))
        except Exception as exc:  # noqa: BLE001 - reported per partition
            report.failed[key] = f"{type(exc).__name__}: {exc}"
            event.failed += 1
            self.job.progress(failures=dict(list(report.failed.items())[:MAX_FAILURES]))
        else:
            self._record(outcome, key, recorder)
        event.done += 1
        event.current = key
        self.job.progress(done=event.done, failed=event.failed, bytes_done=event.bytes_written)
        self.notify(event)

    def _record(self, outcome: Outcome, key: str, recorder: RecordBatcher) -> None:
        report, event = self.report, self.event
        if outcome.set_aside:
            report.set_aside[key] = outcome.set_aside
        if outcome.worker and outcome.worker != worker_name():
            report.workers[key] = outcome.worker
            counts: dict[str, int] = {}
            for worker in report.workers.values():
                counts[worker] = counts.get(worker, 0) + 1
            self.job.progress(workers=counts)
        if outcome.kind == "skipped":
            report.skipped.append(key)
            event.skipped += 1
            return
        assert outcome.stats is not None
        recorder.add(key.rsplit("/", 1)[0], outcome.stats)
        (report.adopted if outcome.kind == "adopted" else report.fetched).append(key)
        size = int(outcome.stats.size or 0) if outcome.kind == "fetched" else 0
        report.bytes_written += size
        event.bytes_written += size


# ====================================================================== recording
class RecordBatcher:
    """Records finished partitions, several per record write when downloads finish together.

    A partition removed since the download read the record (its generation moved) or whose
    file is gone (a concurrent remove) is not recorded: the record never claims a missing file;
    the file stays, to be adopted by a later run.
    """

    def __init__(self, catalog: Catalog, name: str, interval: float = 1.0,
                 stored: Callable[[Iterable[str]], dict[tuple[str, str], int]] | None = None
                 ) -> None:
        self.catalog = catalog
        self.name = name
        self.interval = interval
        self.stored = stored
        self._last_write = time.monotonic()
        self._pending: list[tuple[str, Partition]] = []
        self._guard = threading.Lock()
        self._writing = threading.Lock()

    def add(self, subset: str, stats: Partition) -> None:
        with self._guard:
            self._pending.append((subset, stats))
            due = time.monotonic() - self._last_write >= self.interval
        if due:  # a crash loses at most `interval` of records: their files are adopted later
            self._drain(wait=False)

    def flush(self) -> None:
        """Write everything pending (waits for a write in progress)."""
        self._drain(wait=True)

    def _drain(self, wait: bool) -> None:
        # One thread writes at a time; the others hand over their partitions and go back to
        # fetching, and the writer picks them up in its next round.
        while True:
            if not self._writing.acquire(blocking=wait):
                return
            try:
                with self._guard:
                    batch, self._pending = self._pending, []
                if batch:
                    try:
                        self._write(batch)
                    except Exception:
                        with self._guard:  # keep them for the next write (or the final flush)
                            self._pending[:0] = batch
                        if wait:
                            raise
                        log.warning("recording %d partitions of %s failed; will retry",
                                    len(batch), self.name, exc_info=True)
                        return
                    self._last_write = time.monotonic()
            finally:
                self._writing.release()
            with self._guard:
                if not self._pending:
                    return

    def _write(self, batch: list[tuple[str, Partition]]) -> None:
        def apply(record: Dataset) -> None:
            sizes = self.stored({s for s, _ in batch}) if self.stored is not None else None
            for subset_name, stats in batch:
                part = record.subset(subset_name).partition(stats.name)
                if part.generation != stats.generation or \
                        (sizes is not None and sizes.get((subset_name, stats.name)) != stats.size):
                    continue
                part.copy_stored(stats)
                part.downloaded_at = part.downloaded_at or now()
        self.catalog.update(self.name, apply)


def _size(n: int | float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"
