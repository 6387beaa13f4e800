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
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pygestor import integrity
from pygestor.backends.retry import TransientError, call_with_retries
from pygestor.backends.storage import Storage, temp_name
from pygestor.catalog import RECORD_NAME, Catalog, Dataset, Partition, Reference, Subset, now
from pygestor.config import Settings
from pygestor.errors import (
    AlreadyExistsError,
    CancelledError,
    ConfigError,
    IntegrityError,
    InvalidNameError,
    NotFoundError,
    PygestorError,
    SourceError,
    StorageError,
)
from pygestor.names import check_dataset_name, check_partition_name, check_subset_name
from pygestor.pipelines import get_pipeline, pipeline_for_url
from pygestor.pipelines.base import COMMON_OPTIONS, Pipeline
from pygestor.policy import SourcePolicy, drop_secrets

if TYPE_CHECKING:
    from pygestor.selection import Selection

log = logging.getLogger("pygestor")
#: where files that are not provably a partition's are moved, inside the dataset's folder
SET_ASIDE = "_pygestor/set-aside"


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


@dataclass
class DownloadReport:
    """What a download did.

    ``set_aside``: files found where a partition belongs that were not provably it (damaged,
    from another source, foreign), moved to ``<dataset>/_pygestor/set-aside/``: key -> why.
    """

    fetched: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    set_aside: dict[str, str] = field(default_factory=dict)
    bytes_written: int = 0
    seconds: float = 0.0

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
        self.bytes_written += other.bytes_written
        self.seconds += other.seconds


@dataclass
class VerifyReport:
    """What ``verify`` found: partitions that match, problems, and what ``repair`` fixed."""

    ok: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    repaired: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.problems


ProgressCallback = Callable[[ProgressEvent], None]


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

    # ================================================================== registering
    def add_dataset(self, name: str, url: str | None = None, pipeline: str = "auto", *,
                    face: str = "cli", **options: Any) -> Dataset:
        """Register a dataset: discover its subsets and partitions; nothing is downloaded.

        ``face``: ``cli`` (the command line and the Python API) or ``ui`` (the web UI, whose
        source policy is closed to local paths outside the configured roots).
        """
        check_dataset_name(name)
        self.storage.check_root()
        url = url.strip() if isinstance(url, str) else url
        common = {k: options.pop(k) for k in list(options) if k in COMMON_OPTIONS}
        policy = SourcePolicy.for_settings(self.settings, face)
        if url:
            policy.check(url, options)
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
        dataset = pipeline_obj.discover(name, url, options)
        dataset.pipeline = pipeline
        dataset.uid = uuid.uuid4().hex
        for subset in dataset.subsets.values():
            check_subset_name(subset.name)
            for part in subset.partitions:
                check_partition_name(part.name)
        self._check_nesting(name, dataset.subsets)
        dataset.options, dropped = drop_secrets(dataset.options)
        if dropped:
            log.warning("not stored in the record of %s (credentials come from the environment "
                        "when needed): %s", name, ", ".join(dropped))
        for key in ("description", "modality"):
            if common.get(key):
                setattr(dataset, key, str(common[key])[:10000])
        self.catalog.create(dataset)
        log.info("registered %s: %d subsets", name, len(dataset.subsets))
        return dataset

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
        """Ask the dataset's pipeline what changed upstream since it was recorded."""
        target = self.resolve(name)
        dataset = target.record or self.catalog.read(target.dataset)
        return self.pipeline(dataset.pipeline).check_updates(dataset)

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

    def list_partitions(self, ref: str) -> list[dict[str, Any]]:
        return [{"subset": subset.name, **summarize_partition(part)}
                for subset, part in self._select(ref)[1]]

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
                 cancel: threading.Event | None = None,
                 max_workers: int | None = None) -> DownloadReport:
        """Fetch the partitions ``ref`` covers (or the named ``partitions`` of one subset).

        A partition whose stored file is still the recorded one is skipped unless ``force``
        (checked by :func:`~pygestor.integrity.present`); a damaged one is fetched again. Runs
        ``max_workers`` partitions at once; each is placed atomically and recorded as soon as it
        is complete, so an interrupted download resumes where it stopped.
        """
        started = time.monotonic()
        dataset, selected = self._select(ref, partitions)
        self._check_own_folders(dataset)
        pipeline = self.pipeline(dataset.pipeline)
        policy = SourcePolicy.for_settings(self.settings)
        report = DownloadReport()
        stored = self._stored(dataset.name, {s.name for s, _ in selected})
        self._cleanup_temps(dataset, {s.name for s, _ in selected})
        event = ProgressEvent(total=len(selected))
        notify, close_bar = self._progress_sink(progress, event, dataset.name)
        recorder = _RecordBatcher(self.catalog, dataset.name,
                                  stored=lambda subsets: self._stored_sizes(dataset.name, subsets))
        workers = max(1, min(max_workers or self.settings.max_workers, len(selected) or 1))

        def one(subset: Subset, part: Partition) -> tuple[str, int, str | None]:
            if cancel is not None and cancel.is_set():
                raise CancelledError("cancelled")
            job = _PartitionJob(self, pipeline, policy, dataset, subset, part, recorder, cancel)
            return job.run(stored.get((subset.name, part.name)), force)

        try:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pygestor-dl") as pool:
                futures: dict[Future[Any], str] = {}
                queue = list(selected)
                while queue or futures:
                    while queue and len(futures) < workers * 2:
                        if cancel is not None and cancel.is_set():
                            queue.clear()
                            break
                        subset, part = queue.pop(0)
                        futures[pool.submit(one, subset, part)] = f"{subset.name}/{part.name}"
                    if not futures:
                        break
                    finished, _ = wait(futures, return_when=FIRST_COMPLETED)
                    for future in finished:
                        key = futures.pop(future)
                        self._account(future, key, report, event)
                        event.done += 1
                        event.current = key
                        notify(event)
        finally:
            recorder.flush()  # also when interrupted: what finished is recorded
            event.finished = True
            notify(event)
            close_bar()
        report.seconds = time.monotonic() - started
        if cancel is not None and cancel.is_set():
            raise CancelledError(f"download of {ref!r} cancelled: {report}")
        if report.failed:
            first = next(iter(report.failed.items()))
            tried = len(selected) - len(report.skipped)
            raise SourceError(f"{len(report.failed)} of {tried} partitions of {ref!r} failed "
                              f"(the others are saved; run the download again to retry): "
                              f"{first[0]}: {first[1]}")
        return report

    @staticmethod
    def _account(future: Future[Any], key: str, report: DownloadReport,
                 event: ProgressEvent) -> None:
        try:
            outcome, size, set_aside = future.result()
        except CancelledError:
            return
        except PygestorError as exc:
            report.failed[key] = str(exc)
            event.failed += 1
            return
        except Exception as exc:  # noqa: BLE001 - reported per partition
            report.failed[key] = f"{type(exc).__name__}: {exc}"
            event.failed += 1
            return
        if set_aside:
            report.set_aside[key] = set_aside
        if outcome == "skipped":
            report.skipped.append(key)
            event.skipped += 1
            return
        (report.adopted if outcome == "adopted" else report.fetched).append(key)
        report.bytes_written += size
        event.bytes_written += size

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

    def _progress_sink(self, progress: bool | ProgressCallback, event: ProgressEvent,
                       name: str) -> tuple[ProgressCallback, Callable[[], None]]:
        if callable(progress):
            return progress, lambda: None
        if not progress:
            return (lambda e: None), lambda: None
        from tqdm.auto import tqdm

        bar = tqdm(total=event.total, initial=event.done, unit="part", desc=name,
                   disable=None, dynamic_ncols=True)
        state = {"done": event.done}

        def notify(e: ProgressEvent) -> None:
            bar.update(e.done - state["done"])
            state["done"] = e.done
            bar.set_postfix_str(_size(e.bytes_written), refresh=False)
        return notify, bar.close

    # ================================================================== remove / delete
    def remove(self, ref: str, partitions: Iterable[str] | None = None) -> list[str]:
        """Delete downloaded partition files (the registration stays); returns what was removed."""
        dataset, selected = self._select(ref, partitions)
        self._check_own_folders(dataset)
        keys = {(s.name, p.name) for s, p in selected}

        def unmark(record: Dataset) -> None:
            for subset in record.subsets.values():
                for part in subset.partitions:
                    if (subset.name, part.name) in keys:
                        part.mark_removed()
        removed: list[str] = []

        def delete_files() -> None:  # under the record's lock: no download records them now
            for subset, part in selected:
                if self.storage.remove(self.partition_path(dataset.name, subset.name, part.name)):
                    removed.append(f"{subset.name}/{part.name}")
        self.catalog.update(dataset.name, unmark, after=delete_files)
        return removed

    def delete_dataset(self, name: str, data: bool = True) -> None:
        """Unregister a dataset, and delete its data too unless ``data=False``.

        Only the dataset's own files are deleted (its partitions, stale temporary files, its
        lock), never another dataset's folder nor a set-aside file; a damaged record can be
        deleted too.
        """
        check_dataset_name(name)
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
            self._delete_files(name, [self.partition_path(name, s.name, p.name)
                                      for s, p in dataset.partitions])
            self._cleanup_temps(dataset, set(dataset.subsets))
        self.catalog.delete_record(name)
        if data:
            self._prune(name, list(dataset.subsets))

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
                return self.rebuild_record(ref.strip("/"), str(exc))
            raise
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
        with self.storage.lock(path):
            with contextlib.suppress(FileNotFoundError):
                self.storage.move(path, f"{path}.damaged-{stamp}")
            self.catalog.write(dataset)
        report.repaired.append(f"{name}: record rebuilt from {adopted} partition file(s); the "
                               f"damaged one is kept as {RECORD_NAME}.damaged-{stamp}")
        return report


class _PartitionJob:
    """One partition of a download: skip it if present, adopt it if provably ours, else fetch
    it; a file in the way that is neither is set aside first."""

    def __init__(self, manager: Manager, pipeline: Pipeline, policy: SourcePolicy,
                 dataset: Dataset, subset: Subset, part: Partition, recorder: _RecordBatcher,
                 cancel: threading.Event | None) -> None:
        self.manager = manager
        self.storage = manager.storage
        self.settings = manager.settings
        self.pipeline = pipeline
        self.policy = policy
        self.dataset, self.subset, self.part = dataset, subset, part
        self.recorder = recorder
        self.cancel = cancel
        self.final = manager.partition_path(dataset.name, subset.name, part.name)

    def run(self, detail: dict[str, Any] | None, force: bool) -> tuple[str, int, str | None]:
        """(outcome, bytes written, why a file was set aside or None)."""
        moved = None
        if detail is not None:
            if self.part.downloaded and not force:
                problem = integrity.present(self.storage, self.final, self.part, detail)
                if problem is None:
                    return "skipped", 0, None
                if problem != "missing":
                    moved = self._set_aside(f"the stored file is not the recorded one ({problem})")
            elif not self.part.downloaded and not force:
                verdict = integrity.examine(self.storage, self.final, self.dataset, self.subset,
                                            self.part)
                if verdict.stats is not None:
                    self.recorder.add(self.subset.name, verdict.stats)
                    return "adopted", 0, None
                if verdict.reason != "missing":
                    moved = self._set_aside(f"a file not provably this partition's: "
                                            f"{verdict.reason}")
            elif not self.part.downloaded:
                moved = self._set_aside("a file the record does not vouch for")
        return "fetched", self._fetch(), moved

    def _set_aside(self, reason: str) -> str | None:
        try:
            return self.manager.set_aside(self.dataset.name, self.subset.name, self.part.name,
                                          reason)
        except FileNotFoundError:
            return None  # gone meanwhile: nothing in the way

    def _fetch(self) -> int:
        for url in self.pipeline.source_urls(self.dataset, self.part):
            self.policy.check(url, self.dataset.options)  # a record is untrusted input
        staging = self.storage.staging_dir(near=os.path.dirname(self.final)
                                           if self.storage.is_local else None)
        local = os.path.join(staging, temp_name(self.part.name))
        key = f"{self.dataset.name}/{self.subset.name}/{self.part.name}"
        try:
            def attempt() -> None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(local)
                self.pipeline.fetch(self.dataset, self.subset, self.part, local, lambda n: None)
            call_with_retries(attempt, attempts=self.settings.retries,
                              backoff=self.settings.retry_backoff,
                              what=f"fetching {self.part.source.get('url') or self.part.name} "
                                   f"for {key}", error=SourceError)
            if self.cancel is not None and self.cancel.is_set():
                raise CancelledError("cancelled")
            with open(local, "rb") as handle:
                stats = integrity.stats_from_stream(handle, os.path.getsize(local),
                                                    md5=not self.storage.is_local)
            md5 = stats.pop("md5", None)
            etag = call_with_retries(lambda: self._place(local, stats["size"], md5),
                                     attempts=self.settings.retries,
                                     backoff=self.settings.retry_backoff,
                                     what=f"storing {self.storage.url_of(self.final)}",
                                     error=StorageError)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(local)
        self.recorder.add(self.subset.name, Partition(name=self.part.name, **stats, etag=etag,
                                                      downloaded_at=now()))
        return int(stats["size"])

    def _place(self, local: str, size: int, md5: str | None) -> str | None:
        """Put the file in place; on object stores, check what arrived (size, and the MD5 the
        store reports) and return its entity tag. Bytes corrupted in transit are sent again."""
        self.storage.put_file(local, self.final)
        if self.storage.is_local:
            return None
        try:
            info = self.storage.info(self.final)
        except FileNotFoundError:
            return None  # removed by a concurrent remove: the recorder will not record it
        tag = integrity.entity_tag(info)
        if int(info.get("size") or 0) != size or \
                (md5 is not None and integrity.md5_matches(tag, md5) is False):
            raise TransientError(f"{self.storage.url_of(self.final)} does not hold the bytes "
                                 "sent (corrupted in transit)")
        return tag

# ====================================================================== helpers
def raise_exists(name: str) -> None:
    raise AlreadyExistsError(f"dataset {name!r} is already registered; pick another name or "
                             f"delete it first ('pygestor delete {name}')")


class _RecordBatcher:
    """Records finished partitions, several per metadata write when downloads finish together."""

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
            # Under the lock: a file removed since it was placed (a concurrent remove) is not
            # recorded, so the record never claims a missing file.
            sizes = self.stored({s for s, _ in batch}) if self.stored is not None else None
            for subset_name, stats in batch:
                if sizes is not None and sizes.get((subset_name, stats.name)) != stats.size:
                    continue
                _replace_stats(record.subset(subset_name), stats)
        self.catalog.update(self.name, apply)


def _replace_stats(subset: Subset, stats: Partition) -> None:
    part = subset.partition(stats.name)
    part.copy_stored(stats)
    part.downloaded_at = part.downloaded_at or now()


def summarize_partition(part: Partition) -> dict[str, Any]:
    return {"name": part.name, "downloaded": part.downloaded,
            "size": part.size, "rows": part.num_rows if part.num_rows is not None
            else part.source_rows, "row_groups": len(part.row_groups or []) or None,
            "source_bytes": part.source_bytes, "source": part.source.get("url"),
            "checksum": part.checksum, "downloaded_at": part.downloaded_at}


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


def _size(n: int | float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"


human_size = _size


# ====================================================================== the process's manager
_DEFAULT: Manager | None = None
_DEFAULT_LOCK = threading.Lock()


def default_manager(settings: Settings | None = None) -> Manager:
    """The manager used when none is given: the one ``pygestor.configure`` set (``settings``:
    replace it), else one made from ``Settings.load()`` on first use. Shared by the Python API
    and ``PygestorDataset``, so both read the same storage root."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if settings is not None or _DEFAULT is None:
            _DEFAULT = Manager(settings or Settings.load())
        return _DEFAULT
