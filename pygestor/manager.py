"""Operations: add, download, remove, delete, verify, and the read-only views of the catalog.

The use-cases shared by the Python API, the CLI and the web UI. This layer owns the order of
steps that keeps storage and catalog consistent through crashes, and the rules of trust
(:mod:`pygestor.integrity`, :mod:`pygestor.policy`):

- add: the source URL passes the source policy (no credentials, allowed scheme, root and host);
  credentials in options are dropped from the record; a dataset's folders never overlap another
  dataset's (``q/y`` and a subset ``y/...`` of ``q`` cannot both exist).
- download: every source URL a record names is checked against the policy again (a record is
  untrusted input). A partition file is built locally, placed atomically, *then* recorded; a
  crash in between leaves a complete file that the next run adopts only if its footer proves it
  is this partition's and it reads back whole with every checksum right. A recorded file is
  skipped only if it is still the recorded one (:func:`~pygestor.integrity.present`). Anything
  that is not provably ours is moved aside, never deleted.
- remove: the record is updated first, *then* the file is deleted; the catalog never says
  "downloaded" for a missing file. Nothing outside ``data_dir`` is deleted, symlinks included.
- delete: partitions are marked removed, their files deleted, then the record.
- verify: checks outside the lock, decisions under it from a fresh read of the record.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pygestor import integrity
from pygestor.backends.storage import Storage
from pygestor.catalog import RECORD_NAME, Catalog, Dataset, Partition, Reference, Subset, now
from pygestor.config import Settings
from pygestor.downloads import (
    SET_ASIDE,
    Download,
    DownloadReport,
    ProgressCallback,
    ProgressEvent,
)
from pygestor.downloads import _size as human_size
from pygestor.errors import (
    AlreadyExistsError,
    CancelledError,
    ConfigError,
    IntegrityError,
    InvalidNameError,
    NotFoundError,
    SourceError,
)
from pygestor.jobboard import Job, JobBoard, overlaps
from pygestor.names import check_dataset_name, check_partition_name, check_subset_name
from pygestor.pipelines import get_pipeline, pipeline_for_url
from pygestor.pipelines.base import COMMON_OPTIONS, Pipeline
from pygestor.policy import SourcePolicy, drop_secrets

if TYPE_CHECKING:
    import pyarrow as pa

    from pygestor.selection import Selection

log = logging.getLogger("pygestor")
#: the kinds of running job a new one on the same partitions waits for
WAITS_FOR = ("download", "remove", "delete")
#: partitions in flight on a cluster's executor (its scheduler spreads them over the workers)
REMOTE_IN_FLIGHT = 64


@dataclass
class VerifyReport:
    """What ``verify`` found: partitions that match, problems, and what ``repair`` fixed."""

    ok: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.problems


@dataclass
class _AddPlan:
    """What :meth:`Manager.add_dataset` checked before reading the source."""

    name: str
    url: str | None
    pipeline_name: str
    pipeline: Pipeline
    options: dict[str, Any]
    common: dict[str, Any]


@dataclass
class _Finding:
    """One partition's state as ``verify`` saw it, to re-check under the lock before acting."""

    subset: str
    part: str
    problem: str
    checksum: str | None  # the record's checksum when checked
    stat: tuple[int, float] | None  # the file's (size, mtime) when checked
    found: Partition | None = None  # an unrecorded file that is provably this partition


class Manager:
    """The operations on one storage root.

    Configuration:
        settings: effective :class:`~pygestor.config.Settings` (``Settings.load()`` if omitted).
    """

    def __init__(self, settings: Settings | None = None) -> None:
        self.settings = settings or Settings.load()
        self.storage = Storage.for_settings(self.settings)
        self.catalog = Catalog(self.storage)
        self.jobs = JobBoard(self.storage, self.settings)

    # ================================================================== registering
    def add_dataset(self, name: str, url: str | None = None, pipeline: str = "auto", *,
                    face: str = "cli", cluster: str | None = None, **options: Any) -> Dataset:
        """Register a dataset: discover its subsets and partitions; nothing is downloaded.

        ``face``: ``cli`` (the command line and the Python API) or ``ui`` (the web UI, whose
        source policy is closed to local paths outside the configured roots). Runs as a job
        (listing a large source takes a while). ``cluster`` (or the ``cluster`` setting): a
        Dask scheduler whose workers read the footers / first lines of the source files.
        """
        plan = self._check_add(name, url, pipeline, face, options)
        address = cluster if cluster is not None else self.settings.cluster
        with self.jobs.start("add", plan.url or name, name), self._executor(address) as executor:
            dataset = self._discover(plan, executor)
            self.catalog.create(dataset)
        log.info("registered %s: %d subsets", name, len(dataset.subsets))
        return dataset

    def plan_dataset(self, name: str, url: str | None = None, pipeline: str = "auto", *,
                     face: str = "cli", cluster: str | None = None,
                     **options: Any) -> Dataset:
        """What :meth:`add_dataset` would register, without writing anything (a dry run: the
        same policy checks, validation and discovery; the record is returned, not stored)."""
        plan = self._check_add(name, url, pipeline, face, options)
        address = cluster if cluster is not None else self.settings.cluster
        with self._executor(address) as executor:
            return self._discover(plan, executor)

    def _check_add(self, name: str, url: str | None, pipeline: str, face: str,
                   options: dict[str, Any]) -> _AddPlan:
        """Everything checked before a source is read: the name, the source policy, the
        pipeline, its options, and that the name is free and overlaps no other dataset."""
        check_dataset_name(name)
        self.storage.check_root()
        url = url.strip() if isinstance(url, str) else url
        common = {k: options.pop(k) for k in list(options) if k in COMMON_OPTIONS}
        if url:
            SourcePolicy.for_settings(self.settings, face).check(url, options)
        if pipeline == "auto":
            if not url:
                raise ConfigError("pipeline='auto' needs a URL to choose a pipeline from")
            pipeline = pipeline_for_url(url)
        pipeline_obj = self.pipeline(pipeline)
        pipeline_obj.check_url(url)
        pipeline_obj.check_options(options)
        if self.catalog.exists(name):
            raise_exists(name)
        self._check_nesting(name)
        return _AddPlan(name, url, pipeline, pipeline_obj, options, common)

    def _discover(self, plan: _AddPlan, executor: Executor | None) -> Dataset:
        """The record a source makes, checked like user input (nothing written)."""
        plan.pipeline.executor = executor
        dataset = plan.pipeline.discover(plan.name, plan.url, plan.options)
        dataset.pipeline = plan.pipeline_name
        self._accept(dataset, plan.common)
        return dataset

    @contextlib.contextmanager
    def _executor(self, address: str) -> Iterator[Executor | None]:
        """The executor of the Dask cluster at ``address``, or None (this machine)."""
        if not address:
            yield None
            return
        from pygestor.cluster import cluster_executor

        with cluster_executor(address) as executor:
            yield executor

    def _accept(self, dataset: Dataset, common: dict[str, Any]) -> None:
        """Check what a pipeline discovered like user input, and make it a record."""
        dataset.uid = uuid.uuid4().hex
        for subset in dataset.subsets.values():
            check_subset_name(subset.name)
            for part in subset.partitions:
                check_partition_name(part.name)
        self._check_nesting(dataset.name, dataset.subsets)
        dataset.options, dropped = drop_secrets(dataset.options)
        if dropped:
            log.warning("not stored in the record of %s (credentials come from the environment "
                        "when needed): %s", dataset.name, ", ".join(dropped))
        for key in ("description", "modality"):
            if common.get(key):
                setattr(dataset, key, str(common[key])[:10000])

    def _check_nesting(self, name: str, subsets: Iterable[str] = ()) -> None:
        """A dataset's folders may not overlap another's: ``q/y`` lives where a subset ``y``
        (or ``y/...``) of ``q`` would, so at most one of them can exist."""
        if "/" in name:
            head, tail = name.split("/", 1)
            if self.catalog.exists(head):
                existing = self.catalog.read(head)
                clash = [s for s in existing.subsets if s == tail or s.startswith(tail + "/")]
                if clash:
                    raise InvalidNameError(
                        f"{name!r} would share folders with subset {clash[0]!r} of dataset "
                        f"{head!r} (both live in {head}/{tail}/); choose another name")
            return
        for nested in self.nested_datasets(name):
            segment = nested.split("/", 1)[1]
            clash = [s for s in subsets if s == segment or s.startswith(segment + "/")]
            if clash:
                raise InvalidNameError(
                    f"subset {clash[0]!r} of {name!r} would share folders with dataset "
                    f"{nested!r} (both live in {nested}/); choose another name, or keep only "
                    "the other subsets")

    def nested_datasets(self, name: str) -> list[str]:
        """Two-part datasets registered inside the folder of the one-part dataset ``name``."""
        if "/" in name:
            return []
        pattern = self.storage.path(name, "*", RECORD_NAME)
        return sorted(path[len(self.storage.root.rstrip("/")):].strip("/")
                      [: -len(RECORD_NAME) - 1] for path in self.storage.glob(pattern))

    def _check_own_folders(self, dataset: Dataset) -> None:
        """Refuse to touch files of ``dataset`` that lie in another dataset's folders (records
        made before the overlap was refused, or tampered with)."""
        for nested in self.nested_datasets(dataset.name):
            segment = nested.split("/", 1)[1]
            clash = [s for s in dataset.subsets if s == segment or s.startswith(segment + "/")]
            if clash:
                raise IntegrityError(
                    f"subset {clash[0]!r} of {dataset.name!r} shares the folder of dataset "
                    f"{nested!r}; their files cannot be told apart. Unregister one of them "
                    f"with 'pygestor delete NAME --keep-data' and add it again under another "
                    "name")

    def pipeline(self, name: str) -> Pipeline:
        return get_pipeline(name)(self.settings)

    def update_metadata(self, name: str, **fields_: str) -> Dataset:
        """Edit descriptive fields of a dataset (description, modality, license)."""
        allowed = {"description", "modality", "license"}
        unknown = set(fields_) - allowed
        if unknown:
            raise ConfigError(f"cannot edit {', '.join(sorted(unknown))}; editable fields: "
                              f"{', '.join(sorted(allowed))}")

        def change(dataset: Dataset) -> Dataset:
            for key, value in fields_.items():
                if value is not None:
                    setattr(dataset, key, str(value)[:10000])
            return dataset
        return self.catalog.update(name, change)

    def check_updates(self, name: str) -> dict[str, Any]:
        """Ask the dataset's pipeline what changed upstream since it was recorded (a job)."""
        target = self.resolve(name)
        dataset = target.record or self.catalog.read(target.dataset)
        with self.jobs.start("check-updates", name, dataset.name):
            return self.pipeline(dataset.pipeline).check_updates(dataset)

    # ================================================================== jobs
    def list_jobs(self, all: bool = False) -> list[dict[str, Any]]:  # noqa: A002 - CLI --all
        """The jobs running on this data_dir (from any process or machine), and with ``all``
        the finished ones kept as history; newest first."""
        return self.jobs.list(all=all)

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Ask a job to stop, wherever it runs; returns its record."""
        return self.jobs.cancel(job_id)

    # ================================================================== exploring
    def preview(self, ref: str, rows: int = 20, *, face: str = "cli") -> pa.Table:
        """The first ``rows`` rows of the subset ``ref`` read straight from its source, before
        downloading (every URL read passes the source policy of ``face``; nothing is written).
        See :mod:`pygestor.preview`."""
        from pygestor.preview import source_rows

        target = self.resolve(ref)
        if target.subset is None or target.partition is not None:
            raise ConfigError(f"{ref!r} is not a subset; name one (dataset/subset)")
        record = target.record or self.catalog.read(target.dataset)
        return source_rows(self, record, target.subset, rows, face=face)

    def column_stats(self, ref: str, *, progress: Callable[[int, int], None] | None = None,
                     cancel: threading.Event | None = None) -> dict[str, Any]:
        """Compute the column statistics of the downloaded subset ``ref`` and store them with
        its record (``Subset.extra["stats"]``), as a job. ``progress(done, total)`` counts row
        groups; setting ``cancel`` (or cancelling the job) stops it (:class:`CancelledError`).
        See :mod:`pygestor.stats`."""
        from pygestor.stats import compute_column_stats

        target = self.resolve(ref)
        with self.jobs.start("stats", ref, target.dataset, cancel=cancel) as job:
            def tick(done: int, total: int) -> None:
                job.progress(done=done, total=total)
                job.cancelled  # noqa: B018 - folds the caller's cancel into the job's
                if progress is not None:
                    progress(done, total)
            return compute_column_stats(self, ref, progress=tick, cancel=job.stop)

    # ================================================================== views
    def resolve(self, ref: str) -> Reference:
        return self.catalog.resolve(ref)

    def dataset(self, name: str) -> Dataset:
        return self.catalog.read(name)

    def list_datasets(self) -> list[dict[str, Any]]:
        """One summary per registered dataset; a damaged record is listed with the reason
        (``damaged``) instead of hiding the others."""
        records, damaged = self.catalog.scan()
        rows = [summarize_dataset(d) for d in records]
        rows += [{"name": name, "damaged": reason} for name, reason in damaged.items()]
        return sorted(rows, key=lambda row: row["name"])

    def info(self, ref: str) -> dict[str, Any]:
        """Details of a dataset, a subset or a partition."""
        target = self.resolve(ref)
        dataset = target.record or self.catalog.read(target.dataset)
        if target.partition:
            assert target.subset
            part = dataset.subset(target.subset).partition(target.partition)
            return {"dataset": dataset.name, "subset": target.subset, **summarize_partition(part),
                    "path": self.storage.url_of(self.partition_path(dataset.name, target.subset,
                                                                    part.name))}
        if target.subset:
            return summarize_subset(dataset, dataset.subset(target.subset), detail=True)
        summary = summarize_dataset(dataset)
        summary["subsets"] = [summarize_subset(dataset, s) for s in dataset.subsets.values()]
        return summary

    def list_subsets(self, name: str) -> list[dict[str, Any]]:
        target = self.resolve(name)
        dataset = target.record or self.catalog.read(target.dataset)
        return [summarize_subset(dataset, s) for s in dataset.subsets.values()]

    def list_partitions(self, ref: str, failures: bool = False) -> list[dict[str, Any]]:
        """One summary per partition; with ``failures``, a partition not downloaded whose last
        download failed says so (``failed``: the error, ``failed_job``: the job)."""
        dataset, selected = self._select(ref)
        failed = self.download_failures(dataset.name) if failures else {}
        rows = []
        for subset, part in selected:
            row = {"subset": subset.name, **summarize_partition(part)}
            error = failed.get(f"{subset.name}/{part.name}")
            if error is not None and not part.downloaded:
                row["failed"], row["failed_job"] = error
            rows.append(row)
        return rows

    def download_failures(self, name: str) -> dict[str, tuple[str, str]]:
        """``subset/partition`` -> (error, job id) of the newest download job of ``name`` that
        tried it and failed (from the jobs' history)."""
        found: dict[str, tuple[str, str]] = {}
        tried: set[str] = set()
        for job in self.jobs.list(all=True):  # newest first
            if job.get("dataset") != name or job.get("kind") != "download" or \
                    job.get("state") == "running":
                continue
            for key, error in (job.get("failures") or {}).items():
                if key not in tried:
                    found[key] = (str(error), str(job["id"]))
            tried.update(job.get("failures") or {})
        return found

    def partition_path(self, dataset: str, subset: str, partition: str) -> str:
        """The file of a partition. Names are checked like user input (a record is untrusted):
        no path built here leaves the dataset's folder."""
        try:
            return self.storage.path(check_dataset_name(dataset), check_subset_name(subset),
                                     check_partition_name(partition))
        except InvalidNameError as exc:
            raise IntegrityError(f"the record of {dataset!r} holds an invalid name ({exc}); it "
                                 "was damaged or tampered with: nothing was read or changed. "
                                 f"Run 'pygestor verify {dataset} --repair' to rebuild it from "
                                 "its partition files") from None

    def select(self, ref: str, schema: str | None = None) -> Selection:
        """The downloaded partitions ``ref`` covers, as the one value every reader takes (see
        :mod:`pygestor.selection`): an error if none is downloaded; a partial read follows
        ``partial_reads``; ``schema="union"`` reads subsets with other columns together."""
        from pygestor.selection import select

        return select(self, ref, schema)

    def _select(self, ref: str, partitions: Iterable[str] | None = None
                ) -> tuple[Dataset, list[tuple[Subset, Partition]]]:
        target = self.resolve(ref)
        dataset = target.record or self.catalog.read(target.dataset)
        if target.subset:
            subsets = [dataset.subset(target.subset)]
        else:
            subsets = list(dataset.subsets.values())
        selected: list[tuple[Subset, Partition]] = []
        if target.partition:
            assert target.subset
            selected = [(subsets[0], subsets[0].partition(target.partition))]
        elif partitions is not None:
            names = list(partitions)
            if len(subsets) != 1 and names:
                raise ConfigError(f"{ref!r} has {len(subsets)} subsets: name one subset "
                                  "(dataset/subset) to select partitions")
            for part_name in names:
                check_partition_name(part_name)
                selected.append((subsets[0], subsets[0].partition(part_name)))
        else:
            selected = [(s, p) for s in subsets for p in s.partitions]
        for subset, part in selected:  # names from the record: untrusted
            self.partition_path(dataset.name, subset.name, part.name)
        return dataset, selected

    # ================================================================== download
    def download(self, ref: str, partitions: Iterable[str] | None = None, force: bool = False,
                 *, progress: bool | ProgressCallback = True,
                 cancel: threading.Event | None = None, max_workers: int | None = None,
                 executor: Executor | None = None, cluster: str | None = None
                 ) -> DownloadReport:
        """Fetch the partitions ``ref`` covers (or the named ``partitions`` of one subset).

        Runs as a job (``pygestor jobs``): it first waits for an earlier running job on the
        same partitions (so nothing is fetched twice), then fetches ``max_workers`` partitions
        at once on ``executor`` (a thread pool by default; any ``concurrent.futures.Executor``,
        e.g. a Dask cluster's). A partition whose stored file is still the recorded one is
        skipped unless ``force``; a damaged one is fetched again. Each is placed atomically and
        recorded as soon as it is complete, so an interrupted download resumes where it
        stopped. ``cancel`` (or ``pygestor cancel JOB`` from anywhere) stops queued partitions;
        running ones finish. ``cluster`` (or the ``cluster`` setting): the address of a Dask
        scheduler whose workers fetch the partitions (:mod:`pygestor.cluster`).
        """
        address = cluster if cluster is not None else self.settings.cluster
        if executor is None and address:
            with self._executor(address) as remote:
                return self.download(ref, partitions, force, progress=progress, cancel=cancel,
                                     max_workers=max_workers, executor=remote, cluster="")
        dataset, selected = self._select(ref, partitions)
        explicit = [f"{s.name}/{p.name}" for s, p in selected] \
            if partitions is not None or self.resolve(ref).partition else None
        subsets = sorted({s.name for s, _ in selected})
        with self.jobs.start("download", ref, dataset.name, subsets=subsets, partitions=explicit,
                             total=len(selected), cancel=cancel) as job:
            if self._settle(job, dataset.name, subsets, explicit):
                dataset, selected = self._select(ref, partitions)  # the other job's work counts
            self._check_own_folders(dataset)
            self._cleanup_temps(dataset, set(subsets))
            notify, close = self._progress_sink(progress, len(selected), dataset.name)
            in_flight = max_workers or (self.settings.max_workers if executor is None
                                        else REMOTE_IN_FLIGHT)
            workers = max(1, min(in_flight, len(selected) or 1))
            try:
                report = Download(self, dataset, selected, force=force, job=job, notify=notify,
                                  workers=workers, executor=executor).run()
            finally:
                close()
            if job.cancelled:
                raise CancelledError(f"download of {ref!r} cancelled: {report}")
            if report.failed:
                first = next(iter(report.failed.items()))
                tried = len(selected) - len(report.skipped)
                raise SourceError(f"{len(report.failed)} of {tried} partitions of {ref!r} "
                                  "failed (the others are saved; run the download again to "
                                  f"retry): {first[0]}: {first[1]}")
            return report

    def _settle(self, job: Job, name: str, subsets: list[str],
                partitions: list[str] | None) -> bool:
        """Before a job works on ``name``: file the jobs of dead processes as abandoned (their
        temporary files removed), and wait for earlier running jobs on the same partitions.
        True if it waited (the record is then read again)."""
        for record in self.jobs.abandoned(name):
            self._cleanup_abandoned(record)
        mine = (job.record["started_at"], job.id)
        earlier = [r for r in self.jobs.running(name, exclude=job.id)
                   if r.get("kind") in WAITS_FOR and overlaps(r, subsets, partitions)
                   and (r.get("started_at"), r.get("id")) < mine]
        if not earlier:
            return False
        ids = [str(r["id"]) for r in earlier]
        job.progress(message=f"waiting for {', '.join(ids)}")
        log.info("%s waits for %s working on the same partitions", job.id, ", ".join(ids))
        self.jobs.wait(ids, stop=job.stop)
        job.progress(message="")
        return True

    def _cleanup_abandoned(self, record: dict[str, Any]) -> None:
        """The temporary files of a job whose process died, then the job filed as abandoned
        (its complete partitions are adopted by the next download, under the integrity
        rules)."""
        name = str(record.get("dataset"))
        dead = {(str(record.get("host")), int(record.get("pid") or 0))}
        folders = [self.storage.path(name)] + \
            [self.storage.path(name, s) for s in record.get("subsets") or []]
        for path in self.storage.stale_temps(folders, dead=dead):
            with contextlib.suppress(OSError):
                os.unlink(path)
        self.jobs.file_abandoned(record, note="its process stopped renewing its lease; "
                                              "cleaned up by the next operation")

    def download_updates(self, ref: str, max_workers: int | None = None,
                         progress: bool | ProgressCallback = True) -> DownloadReport:
        """Move ``ref``'s dataset to its source's latest revision, then fetch what changed.

        The pipeline re-discovers the dataset (``refresh``) and merges the new plan into the
        record (``merge_update``): unchanged partitions stay downloaded, the files of changed or
        removed ones are deleted (record first, then data). Then ``ref`` is downloaded again:
        a subset or partition reference as named; a dataset reference in the subsets that had
        downloaded data (all subsets, new ones included, if all or none had), so only what
        changed is fetched.
        """
        target = self.resolve(ref)
        dataset = self.catalog.read(target.dataset)
        pipeline = self.pipeline(dataset.pipeline)
        if not pipeline.tracks_revisions:
            raise ConfigError(f"the {dataset.pipeline} pipeline of {dataset.name!r} does not "
                              "track upstream revisions; use 'pygestor download --force'")
        latest = pipeline.refresh(dataset)
        self._check_nesting(dataset.name, latest.subsets)
        had = [s.name for s in dataset.subsets.values() if s.downloaded]
        stale = self.catalog.update(dataset.name,
                                    lambda record: pipeline.merge_update(record, latest))
        self._delete_files(dataset.name, [self.partition_path(dataset.name, s, p)
                                          for s, p in stale])
        if target.subset:
            refs = [str(target)]
        else:
            names = list(self.catalog.read(dataset.name).subsets)
            partial = 0 < len(had) < len(dataset.subsets)
            refs = [f"{dataset.name}/{s}" for s in names if s in had] if partial \
                else [dataset.name]
        total = DownloadReport()
        for each in refs:
            total.merge(self.download(each, progress=progress, max_workers=max_workers))
        return total

    def _stored(self, dataset: str, subsets: Iterable[str]
                ) -> dict[tuple[str, str], dict[str, Any]]:
        """The partition files present, with their listing details (size, entity tag): one
        listing per subset, not one request per file."""
        found: dict[tuple[str, str], dict[str, Any]] = {}
        for subset in subsets:
            for entry in self.storage.ls(self.storage.path(dataset, subset), detail=True):
                if entry.get("type") != "directory":
                    name = entry["name"].rstrip("/").rsplit("/", 1)[-1]
                    found[(subset, name)] = entry
        return found

    def _stored_sizes(self, dataset: str, subsets: Iterable[str]) -> dict[tuple[str, str], int]:
        return {k: int(v.get("size") or 0) for k, v in self._stored(dataset, subsets).items()}

    def set_aside(self, dataset: str, subset: str, part: str, reason: str) -> str:
        """Move the file of ``dataset/subset/part`` to the dataset's set-aside folder (it may be
        someone's only copy: never deleted); returns where it went."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + uuid.uuid4().hex[:6]
        source = self.partition_path(dataset, subset, part)
        target = self.storage.path(dataset, SET_ASIDE, stamp, subset, part)
        self.storage.move(source, target)
        log.warning("set aside %s: %s (moved to %s)", self.storage.url_of(source), reason,
                    self.storage.url_of(target))
        return f"{reason}; moved to {self.storage.url_of(target)}"

    def _cleanup_temps(self, dataset: Dataset, subsets: set[str]) -> list[str]:
        """Remove temporary files whose writer is gone (local storage and local staging)."""
        removed: list[str] = []
        folders = [self.storage.path(dataset.name)] + \
            [self.storage.path(dataset.name, subset) for subset in subsets]
        for name in self.storage.stale_temps(folders):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)
                removed.append(name)
        return removed

    def _progress_sink(self, progress: bool | ProgressCallback, total: int,
                       name: str) -> tuple[ProgressCallback, Callable[[], None]]:
        if callable(progress):
            return progress, lambda: None
        if not progress:
            return (lambda e: None), lambda: None
        from tqdm.auto import tqdm

        bar = tqdm(total=total, unit="part", desc=name, disable=None, dynamic_ncols=True)
        state = {"done": 0}

        def notify(e: ProgressEvent) -> None:
            bar.update(e.done - state["done"])
            state["done"] = e.done
            bar.set_postfix_str(_size(e.bytes_written), refresh=False)
        return notify, bar.close

    # ================================================================== remove / delete
    def remove(self, ref: str, partitions: Iterable[str] | None = None) -> list[str]:
        """Delete downloaded partition files (the registration stays); returns what was removed.

        Runs as a job; the record is updated first, then the files are deleted."""
        dataset, selected = self._select(ref, partitions)
        subsets = sorted({s.name for s, _ in selected})
        with self.jobs.start("remove", ref, dataset.name, subsets=subsets, total=len(selected)):
            return self._remove(dataset, selected)

    def _remove(self, dataset: Dataset, selected: list[tuple[Subset, Partition]]) -> list[str]:
        self._check_own_folders(dataset)
        keys = {(s.name, p.name) for s, p in selected}
        marked: dict[tuple[str, str], int | None] = {}

        def unmark(record: Dataset) -> None:
            marked.clear()
            for subset in record.subsets.values():
                for part in subset.partitions:
                    if (subset.name, part.name) in keys:
                        part.mark_removed()
                        marked[(subset.name, part.name)] = part.generation
        removed: list[str] = []

        def delete_files() -> None:  # record first, then the files (under the lock if any)
            stored = self._stored(dataset.name, {s for s, _ in keys})
            present = sorted(k for k in keys if k in stored)
            self._delete_files(dataset.name, [self.partition_path(dataset.name, *k)
                                              for k in present])
            removed.extend(f"{s}/{p}" for s, p in present)
        self.catalog.update(dataset.name, unmark, after=delete_files)
        if not self.storage.locked_updates:
            self._reconcile_removed(dataset.name, marked)
        return removed

    def _reconcile_removed(self, name: str, marked: dict[tuple[str, str], int | None]) -> None:
        """After a remove without a lock (compare-and-swap records): a download that read the
        record after the remove marked it, and recorded its file before the remove deleted
        it, left a claim of a missing file; drop such claims."""
        stored = self._stored(name, {s for s, _ in marked})

        def drop(record: Dataset) -> None:
            for (subset, part_name), generation in marked.items():
                part = record.subset(subset).partition(part_name)
                if part.downloaded and part.generation == generation and \
                        (subset, part_name) not in stored:
                    part.mark_removed()
        self.catalog.update(name, drop)

    def delete_dataset(self, name: str, data: bool = True, force: bool = False) -> None:
        """Unregister a dataset, and delete its data too unless ``data=False``.

        A dataset with running jobs (a download in another process, another machine) is
        refused, naming the job, unless ``force``: then the jobs are cancelled and waited for
        first, so that nothing of the dataset is left afterwards. Only the dataset's own files
        are deleted (its partitions, files its partitions' footers say are its own, temporary
        files), never another dataset's folder nor a set-aside file; a damaged record can be
        deleted too.
        """
        check_dataset_name(name)
        running = self.jobs.running(name)
        if running and not force:
            first = running[0]
            raise ConfigError(
                f"{name!r} has {len(running)} running job(s), e.g. {first['id']} ({first['kind']} "
                f"of {first['ref']} on {first['host']}, pid {first['pid']}); cancel it with "
                f"'pygestor cancel {first['id']}', or delete with --force to cancel them first")
        with self.jobs.start("delete", name, name) as job:
            if running:
                ids = [str(r["id"]) for r in running]
                for job_id in ids:
                    self.jobs.cancel(job_id)
                self.jobs.wait(ids, stop=job.stop, timeout=max(60.0, 4 * self.jobs.lease))
            self._delete(name, data)

    def _delete(self, name: str, data: bool) -> None:
        try:
            dataset = self.catalog.read(name)
        except IntegrityError as exc:
            self._delete_damaged(name, data, str(exc))
            return
        if data:
            self._check_own_folders(dataset)

            def unmark(record: Dataset) -> None:
                for _, part in record.partitions:
                    part.mark_removed()
            self.catalog.update(name, unmark)
            paths = [self.partition_path(name, s.name, p.name) for s, p in dataset.partitions]
            self._delete_files(name, paths + self._leftovers(dataset, set(paths)))
            self._cleanup_temps(dataset, set(dataset.subsets))
        self.catalog.delete_record(name)
        if data:
            self._prune(name, list(dataset.subsets))

    def _leftovers(self, dataset: Dataset, known: set[str]) -> list[str]:
        """Files in the dataset's subset folders that the record does not list but whose footer
        says they are this dataset's (left by a download that died before recording them)."""
        import pyarrow.parquet as pq

        from pygestor.pipelines.formats import read_provenance

        found = []
        for (subset, _), detail in self._stored(dataset.name, set(dataset.subsets)).items():
            path = detail["name"]
            if path in known or not path.endswith(".parquet"):
                continue
            try:
                with self.storage.open(path, "rb") as handle:
                    claimed = read_provenance(pq.ParquetFile(handle).metadata)
            except Exception:  # noqa: BLE001 - unreadable: not provably ours, left in place
                claimed = None
            if claimed and claimed.get("dataset") == dataset.name and \
                    claimed.get("subset") == subset:
                found.append(path)
            else:
                log.warning("left %s in place: not provably a file of %s",
                            self.storage.url_of(path), dataset.name)
        return found

    def _delete_damaged(self, name: str, data: bool, reason: str) -> None:
        """Delete a dataset whose record cannot be read: the record, and with ``data`` the
        partition files in its folder (not the folders of datasets nested in it)."""
        log.warning("deleting %s, whose record is damaged: %s", name, reason)
        record = self.catalog.record_path(name)
        files: list[str] = []
        folders: set[str] = set()
        if data:
            nested = {n.split("/", 1)[1] for n in self.nested_datasets(name)}
            base = self.storage.path(name).rstrip("/")
            for path in self.storage.find(base):
                rel = path[len(base):].strip("/")
                top = rel.split("/", 1)[0]
                if top in nested or rel.startswith("_pygestor/") or path == record:
                    continue
                if rel.endswith(".parquet") or ".tmp-" in rel:
                    files.append(path)
                    if "/" in rel:
                        folders.add(rel.rsplit("/", 1)[0])
        self._delete_files(name, files)
        self.catalog.delete_record(name)
        if data:
            self._prune(name, sorted(folders))

    def _delete_files(self, name: str, paths: list[str]) -> None:
        """Delete files of dataset ``name`` (one bulk request per thousand on object stores)."""
        if paths:
            self.storage.remove_many(paths)

    def _prune(self, name: str, subsets: list[str]) -> None:
        """Remove the dataset's folders that are left empty (local storage)."""
        if not self.storage.is_local:
            return
        folders: set[str] = set()
        for subset in subsets:
            parts = subset.split("/")
            for depth in range(len(parts), 0, -1):
                folders.add(self.storage.path(name, "/".join(parts[:depth])))
        for folder in sorted(folders, key=lambda f: -f.count("/")):
            _prune_empty(folder)
        _prune_empty(self.storage.path(name))
        if "/" in name:
            _prune_empty(self.storage.path(name.split("/")[0]))

    # ================================================================== verify
    def verify(self, ref: str, repair: bool = False, checksums: bool = True) -> VerifyReport:
        """Check every downloaded partition against its record; ``repair`` fixes the catalog.

        Finds missing files, wrong sizes, wrong checksums, stale temporary files and complete
        files the catalog does not know about (``repair`` adopts those that are provably this
        dataset's and sets the others aside). The checks run without the record's lock; what
        ``repair`` does is decided under it, from a fresh read of the record and a fresh look
        at each file, so a concurrent download or remove is never undone. A dataset whose record
        is damaged is rebuilt from its partition files (``repair``).
        """
        try:
            dataset, selected = self._select(ref)
        except IntegrityError as exc:
            if repair and self._is_damaged_dataset(ref.strip("/")):
                with self.jobs.start("verify", ref, ref.strip("/")):
                    return self.rebuild_record(ref.strip("/"), str(exc))
            raise
        with self.jobs.start("verify", ref, dataset.name, total=len(selected)):
            return self._verify(dataset, selected, repair, checksums)

    def _verify(self, dataset: Dataset, selected: list[tuple[Subset, Partition]], repair: bool,
                checksums: bool) -> VerifyReport:
        report = VerifyReport()
        findings = self._check_partitions(dataset, selected, checksums)
        for finding in findings:
            key = f"{finding.subset}/{finding.part}"
            if finding.problem:
                report.problems.append(f"{key}: {finding.problem}")
            elif finding.checksum is not None:
                report.ok.append(key)
        folders = [self.storage.path(dataset.name)] + \
            [self.storage.path(dataset.name, s) for s in sorted({s.name for s, _ in selected})]
        for name in self.storage.stale_temps(folders):
            report.problems.append(f"stale temporary file {name}")
            with contextlib.suppress(FileNotFoundError):
                if repair:
                    os.unlink(name)
                    report.repaired.append(f"removed {name}")
        if repair:
            report.repaired += self._repair(dataset.name, [f for f in findings if f.problem])
        return report

    def _is_damaged_dataset(self, name: str) -> bool:
        try:
            self.catalog.read(name)
        except IntegrityError:
            return True
        except (NotFoundError, InvalidNameError):
            return False
        return False

    def _check_partitions(self, dataset: Dataset, selected: list[tuple[Subset, Partition]],
                          checksums: bool) -> list[_Finding]:
        """What each partition's file looks like now (run in threads, without the lock)."""
        def check(item: tuple[Subset, Partition]) -> _Finding:
            subset, part = item
            path = self.partition_path(dataset.name, subset.name, part.name)
            stat = self._stat(path)
            if not part.downloaded:
                if stat is None:
                    return _Finding(subset.name, part.name, "", None, None)
                verdict = integrity.examine(self.storage, path, dataset, subset, part)
                problem = "complete file not in the catalog" if verdict.stats is not None \
                    else f"unrecorded file that is not this partition's ({verdict.reason})"
                return _Finding(subset.name, part.name, problem, None, stat, verdict.stats)
            if stat is None:
                return _Finding(subset.name, part.name, "file missing", part.checksum, None)
            if stat[0] != part.size:
                return _Finding(subset.name, part.name, f"size {stat[0]} != recorded {part.size}",
                                part.checksum, stat)
            if checksums:
                try:
                    digest = integrity.file_checksum(self.storage, path)
                except FileNotFoundError:
                    return _Finding(subset.name, part.name, "file missing (removed while it "
                                    "was being checked)", part.checksum, None)
                if digest != part.checksum:
                    return _Finding(subset.name, part.name, "checksum mismatch", part.checksum,
                                    stat)
            return _Finding(subset.name, part.name, "", part.checksum, stat)

        with ThreadPoolExecutor(max_workers=self.settings.max_workers) as pool:
            return list(pool.map(check, selected))

    def _stat(self, path: str) -> tuple[int, float] | None:
        try:
            info = self.storage.info(path)
        except FileNotFoundError:
            return None
        stamp = info.get("mtime") or info.get("LastModified") or info.get("updated") or 0
        if not isinstance(stamp, (int, float)):
            stamp = hash(str(stamp))
        return int(info.get("size") or 0), float(stamp)

    def _repair(self, name: str, findings: list[_Finding]) -> list[str]:
        """Apply ``findings`` under the record's lock, each only if the record and the file are
        still as they were when checked."""
        repaired: list[str] = []

        def still(record: Dataset, finding: _Finding) -> Partition | None:
            try:
                part = record.subset(finding.subset).partition(finding.part)
            except NotFoundError:
                return None
            if part.checksum != finding.checksum:
                return None  # downloaded, removed or re-downloaded since the check
            path = self.partition_path(name, finding.subset, finding.part)
            return part if self._stat(path) == finding.stat else None

        def fix(record: Dataset) -> None:
            for finding in findings:
                part = still(record, finding)
                key = f"{finding.subset}/{finding.part}"
                if part is None:
                    repaired.append(f"{key}: changed while being checked; left as it is now")
                elif finding.found is not None:
                    part.copy_stored(finding.found)
                    repaired.append(f"{key}: adopted")
                elif part.downloaded:
                    part.mark_removed()
                    pending.append((finding, "marked not downloaded"))
                else:
                    pending.append((finding, "set aside"))

        pending: list[tuple[_Finding, str]] = []

        def act() -> None:  # still under the lock, after the record is saved
            for finding, what in pending:
                key = f"{finding.subset}/{finding.part}"
                if finding.stat is not None:
                    where = self.set_aside(name, finding.subset, finding.part, finding.problem)
                    what = f"{what}; the file was {where.split('; ', 1)[-1]}"
                repaired.append(f"{key}: {what}")
        self.catalog.update(name, fix, after=act)
        return repaired

    def rebuild_record(self, name: str, reason: str) -> VerifyReport:
        """A new record for ``name`` from the provenance its partition files carry (the damaged
        record is kept beside it as ``metadata.json.damaged-<time>``)."""
        from pygestor.rebuild import rebuild

        report = VerifyReport(problems=[f"{name}: damaged record ({reason})"])
        dataset, adopted = rebuild(self, name)
        dataset.uid = dataset.uid or uuid.uuid4().hex
        path = self.catalog.record_path(name)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        damaged = self.storage.read_bytes(path)
        self.storage.write_bytes(f"{path}.damaged-{stamp}", damaged)

        def replace(current: bytes | None) -> bytes:
            if current != damaged:
                raise IntegrityError(f"the record of {name!r} changed while it was being "
                                     "rebuilt; run 'pygestor verify --repair' again")
            dataset.updated_at = now()
            return dataset.to_json()
        self.storage.transact(path, replace)
        report.repaired.append(f"{name}: record rebuilt from {adopted} partition file(s); the "
                               f"damaged one is kept as {RECORD_NAME}.damaged-{stamp}")
        return report


# ====================================================================== helpers
def raise_exists(name: str) -> None:
    raise AlreadyExistsError(f"dataset {name!r} is already registered; pick another name or "
                             f"delete it first ('pygestor delete {name}')")


def summarize_partition(part: Partition) -> dict[str, Any]:
    return {"name": part.name, "downloaded": part.downloaded,
            "size": part.size, "rows": part.num_rows if part.num_rows is not None
            else part.source_rows, "row_groups": len(part.row_groups or []) or None,
            "source_bytes": part.source_bytes, "source": part.source.get("url"),
            "source_slice": source_slice(part.source),
            "checksum": part.checksum, "downloaded_at": part.downloaded_at}


def source_slice(source: dict[str, Any]) -> str:
    """Which part of its source file a partition comes from, for people (rows or bytes)."""
    start, stop = source.get("start"), source.get("stop")
    if source.get("pieces"):
        return f"piece {int(source.get('piece', 0)) + 1} of {source['pieces']}"
    if start is None:
        return "the whole file"
    unit = "rows" if source.get("format") == "parquet" else "bytes"
    return f"{unit} {start:,}-{stop:,}" if stop is not None else f"{unit} {start:,} to the end"


def summarize_subset(dataset: Dataset, subset: Subset, detail: bool = False) -> dict[str, Any]:
    summary: dict[str, Any] = {"dataset": dataset.name, "name": subset.name, **subset.stats()}
    if detail:
        summary["partition_list"] = [summarize_partition(p) for p in subset.partitions]
    return summary


def summarize_dataset(dataset: Dataset) -> dict[str, Any]:
    totals = {"partitions": 0, "downloaded": 0, "downloaded_bytes": 0, "source_bytes": 0}
    for subset in dataset.subsets.values():
        stats = subset.stats()
        for key in totals:
            totals[key] += stats[key]
    return {
        "name": dataset.name, "pipeline": dataset.pipeline, "url": dataset.url,
        "revision": dataset.revision, "description": dataset.description,
        "modality": dataset.modality, "license": dataset.license,
        "subsets": len(dataset.subsets), **totals,
        "created_at": dataset.created_at, "updated_at": dataset.updated_at,
    }


def _prune_empty(folder: str) -> None:
    """Remove a dataset folder if nothing but lock files is left (local storage)."""
    with contextlib.suppress(OSError):
        entries = os.listdir(folder)
        if not all(entry.endswith(".lock") for entry in entries):
            return
        for entry in entries:
            os.unlink(os.path.join(folder, entry))
        os.rmdir(folder)


_size = human_size


# ====================================================================== the process's manager
_DEFAULT: Manager | None = None
_DEFAULT_LOCK = threading.Lock()


def default_manager(settings: Settings | None = None) -> Manager:
    """The manager used when none is given (one per process): the one ``pygestor.configure``
    set (``settings``: replace it), else one made from ``Settings.load()`` on first use.
    Shared by the Python API, ``PygestorDataset`` and the web UI, so all read the same storage
    root (``pygestor.api.set_manager`` puts another in its place)."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if settings is not None or _DEFAULT is None:
            _DEFAULT = Manager(settings or Settings.load())
        return _DEFAULT
