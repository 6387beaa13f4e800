"""Operations: add, download, remove, delete, verify, and the read-only views of the catalog.

The use-cases shared by the Python API, the CLI and the web UI. This layer owns the order of
steps that keeps storage and catalog consistent through crashes:

- download: the partition file is built locally, placed atomically, *then* recorded; a crash in
  between leaves a complete file that the next run adopts (checks and records) instead of
  fetching again.
- remove: the record is updated first, *then* the file is deleted; the catalog never says
  "downloaded" for a missing file.
- delete: partitions are marked removed, data deleted, then the record.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from pygestor.backends.retry import call_with_retries
from pygestor.backends.storage import Storage, temp_name
from pygestor.catalog import Catalog, Dataset, Partition, Reference, Subset, now
from pygestor.config import Settings
from pygestor.errors import (
    CancelledError,
    ConfigError,
    IntegrityError,
    InvalidNameError,
    NotDownloadedError,
    PygestorError,
    SourceError,
)
from pygestor.names import check_dataset_name, check_partition_name, check_subset_name
from pygestor.pipelines import get_pipeline, pipeline_for_url
from pygestor.pipelines.base import Pipeline

log = logging.getLogger("pygestor")


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
    """What a download did."""

    fetched: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    adopted: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    bytes_written: int = 0
    seconds: float = 0.0

    def __str__(self) -> str:
        text = (f"fetched {len(self.fetched)}, skipped {len(self.skipped)} already present, "
                f"{_size(self.bytes_written)} in {self.seconds:.1f}s")
        if self.adopted:
            text += f", adopted {len(self.adopted)} complete files"
        if self.failed:
            text += f", {len(self.failed)} failed"
        return text


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
    def add_dataset(self, name: str, url: str | None = None, pipeline: str = "auto",
                    **options: Any) -> Dataset:
        """Register a dataset: discover its subsets and partitions; nothing is downloaded."""
        check_dataset_name(name)
        if pipeline == "auto":
            if url is None:
                raise ConfigError("pipeline='auto' needs a URL to choose a pipeline from")
            pipeline = pipeline_for_url(url)
        pipeline_obj = self.pipeline(pipeline)
        if self.catalog.exists(name):
            raise_exists(name)
        self._check_no_nesting(name)
        description = options.pop("description", None)
        modality = options.pop("modality", None)
        dataset = pipeline_obj.discover(name, url, options)
        dataset.pipeline = pipeline
        for subset in dataset.subsets.values():
            check_subset_name(subset.name)
            for part in subset.partitions:
                check_partition_name(part.name)
        if description:
            dataset.description = description
        if modality:
            dataset.modality = modality
        self.catalog.create(dataset)
        log.info("registered %s: %d subsets", name, len(dataset.subsets))
        return dataset

    def _check_no_nesting(self, name: str) -> None:
        """A dataset's folder may not sit inside another's subset folders, nor hold one."""
        head = name.split("/")[0]
        if "/" in name and self.catalog.exists(head):
            existing = self.catalog.read(head)
            if any(s == name.split("/", 1)[1] or s.startswith(name.split("/", 1)[1] + "/")
                   for s in existing.subsets):
                raise InvalidNameError(f"{name!r} would live inside subset folders of dataset "
                                       f"{head!r}; choose another name")

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
        return self.storage.path(dataset, subset, partition)

    def downloaded_partitions(self, ref: str) -> tuple[Dataset, list[tuple[Subset, Partition]]]:
        """The downloaded partitions a reference covers; an error if it covers none."""
        dataset, selected = self._select(ref)
        ready = [(s, p) for s, p in selected if p.downloaded]
        if not ready:
            raise NotDownloadedError(f"nothing of {ref!r} is downloaded yet ({len(selected)} "
                                     f"partitions registered); run 'pygestor download {ref}'")
        return dataset, ready

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
        return dataset, selected

    # ================================================================== download
    def download(self, ref: str, partitions: Iterable[str] | None = None, force: bool = False,
                 *, progress: bool | ProgressCallback = True,
                 cancel: threading.Event | None = None,
                 max_workers: int | None = None) -> DownloadReport:
        """Fetch the partitions ``ref`` covers (or the named ``partitions`` of one subset).

        Partitions already present and matching their record are skipped unless ``force``.
        Runs ``max_workers`` fetches at once; each partition is placed atomically and recorded
        as soon as it is complete, so an interrupted download resumes where it stopped.
        """
        started = time.monotonic()
        dataset, selected = self._select(ref, partitions)
        pipeline = self.pipeline(dataset.pipeline)
        report = DownloadReport()
        todo: list[tuple[Subset, Partition]] = []
        stored = self._stored_sizes(dataset.name, {s.name for s, _ in selected})
        for subset, part in selected:
            size = stored.get((subset.name, part.name))
            if part.downloaded and not force and size == part.size:
                report.skipped.append(f"{subset.name}/{part.name}")
            else:
                todo.append((subset, part))
        self._cleanup_temps(dataset, {s.name for s, _ in selected})
        event = ProgressEvent(total=len(selected), skipped=len(report.skipped),
                              done=len(report.skipped))
        notify, close_bar = self._progress_sink(progress, event, dataset.name)
        recorder = _RecordBatcher(self.catalog, dataset.name,
                                  stored=lambda subsets: self._stored_sizes(dataset.name, subsets))
        workers = max(1, min(max_workers or self.settings.max_workers, len(todo) or 1))
        try:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="pygestor-dl") as pool:
                futures: dict[Future[Any], str] = {}
                queue = list(todo)
                while queue or futures:
                    while queue and len(futures) < workers * 2:
                        if cancel is not None and cancel.is_set():
                            queue.clear()
                            break
                        subset, part = queue.pop(0)
                        key = f"{subset.name}/{part.name}"
                        adoptable = not force and (subset.name, part.name) in stored
                        futures[pool.submit(self._fetch_one, pipeline, dataset, subset, part,
                                            adoptable, recorder, cancel)] = key
                    if not futures:
                        break
                    finished, _ = wait(futures, return_when=FIRST_COMPLETED)
                    for future in finished:
                        key = futures.pop(future)
                        try:
                            outcome, size = future.result()
                        except CancelledError:
                            continue
                        except PygestorError as exc:
                            report.failed[key] = str(exc)
                            event.failed += 1
                        except Exception as exc:  # noqa: BLE001 - reported per partition
                            report.failed[key] = f"{type(exc).__name__}: {exc}"
                            event.failed += 1
                        else:
                            (report.adopted if outcome == "adopted" else report.fetched).append(key)
                            report.bytes_written += size
                            event.bytes_written += size
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
            raise SourceError(f"{len(report.failed)} of {len(todo)} partitions of {ref!r} failed "
                              f"(the others are saved; run the download again to retry): "
                              f"{first[0]}: {first[1]}")
        return report

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
        if not hasattr(pipeline, "refresh") or not hasattr(pipeline, "merge_update"):
            raise ConfigError(f"the {dataset.pipeline} pipeline of {dataset.name!r} does not "
                              "track upstream revisions; use 'pygestor download --force'")
        latest = pipeline.refresh(dataset)
        had = [s.name for s in dataset.subsets.values() if s.downloaded]
        stale = self.catalog.update(dataset.name,
                                    lambda record: pipeline.merge_update(record, latest))
        for subset_name, part_name in stale:
            self.storage.remove(self.partition_path(dataset.name, subset_name, part_name))
        if target.subset:
            refs = [str(target)]
        else:
            names = list(self.catalog.read(dataset.name).subsets)
            partial = 0 < len(had) < len(dataset.subsets)
            refs = [f"{dataset.name}/{s}" for s in names if s in had] if partial \
                else [dataset.name]
        total = DownloadReport()
        for each in refs:
            report = self.download(each, progress=progress, max_workers=max_workers)
            total.fetched += report.fetched
            total.skipped += report.skipped
            total.adopted += report.adopted
            total.bytes_written += report.bytes_written
            total.seconds += report.seconds
        return total

    def _stored_sizes(self, dataset: str, subsets: Iterable[str]) -> dict[tuple[str, str], int]:
        """Sizes of the partition files present, one listing per subset (not one per file)."""
        sizes: dict[tuple[str, str], int] = {}
        for subset in subsets:
            for entry in self.storage.ls(self.storage.path(dataset, subset), detail=True):
                if entry.get("type") != "directory":
                    name = entry["name"].rstrip("/").rsplit("/", 1)[-1]
                    sizes[(subset, name)] = int(entry.get("size") or 0)
        return sizes

    def _fetch_one(self, pipeline: Pipeline, dataset: Dataset, subset: Subset, part: Partition,
                   adoptable: bool, recorder: _RecordBatcher,
                   cancel: threading.Event | None) -> tuple[str, int]:
        if cancel is not None and cancel.is_set():
            raise CancelledError("cancelled")
        final = self.partition_path(dataset.name, subset.name, part.name)
        if adoptable:  # a file is there already: keep it if it is complete and right
            adopted = self._adopt(final, part)
            if adopted is not None:
                recorder.add(subset.name, adopted)
                return "adopted", 0
        staging = self.storage.staging_dir(near=os.path.dirname(final)
                                           if self.storage.is_local else None)
        local = os.path.join(staging, temp_name(part.name))
        try:
            def attempt() -> None:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(local)
                pipeline.fetch(dataset, subset, part, local, lambda n: None)
            call_with_retries(attempt, attempts=self.settings.retries,
                              backoff=self.settings.retry_backoff,
                              what=f"fetching {part.source.get('url') or part.name} for "
                                   f"{dataset.name}/{subset.name}/{part.name}",
                              error=SourceError)
            if cancel is not None and cancel.is_set():
                raise CancelledError("cancelled")
            stats = partition_stats(local)
            call_with_retries(lambda: self.storage.put_file(local, final),
                              attempts=self.settings.retries, backoff=self.settings.retry_backoff,
                              what=f"storing {self.storage.url_of(final)}")
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(local)
        recorder.add(subset.name, Partition(name=part.name, **stats))
        return "fetched", stats["size"]

    def _adopt(self, final: str, part: Partition) -> Partition | None:
        """A complete file left by a run that died before recording it: check and keep it."""
        try:
            info = self.storage.info(final)
        except FileNotFoundError:
            return None
        try:
            with self.storage.open(final, "rb") as handle:
                stats = stats_from_stream(handle, int(info["size"]))
        except Exception:  # noqa: BLE001 - unreadable: fetch it again
            log.warning("ignoring unreadable file %s", self.storage.url_of(final))
            return None
        if part.source_rows is not None and stats["num_rows"] != part.source_rows:
            return None
        return Partition(name=part.name, **stats)

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
        """Unregister a dataset, and delete its data too unless ``data=False``."""
        check_dataset_name(name)
        dataset = self.catalog.read(name)
        if data:
            def unmark(record: Dataset) -> None:
                for _, part in record.partitions:
                    part.mark_removed()
            self.catalog.update(name, unmark)
            for subset in dataset.subsets:
                self.storage.remove_tree(self.storage.path(name, subset))
        self.catalog.delete_record(name)
        if data and self.storage.is_local:
            _prune_empty(self.storage.path(name))
            if "/" in name:
                _prune_empty(self.storage.path(name.split("/")[0]))

    # ================================================================== verify
    def verify(self, ref: str, repair: bool = False, checksums: bool = True) -> VerifyReport:
        """Check every downloaded partition against its record; ``repair`` fixes the catalog.

        Finds missing files, wrong sizes, wrong checksums, stale temporary files and complete
        files the catalog does not know about (``repair`` adopts those).
        """
        dataset, selected = self._select(ref)
        report = VerifyReport()
        broken: set[tuple[str, str]] = set()
        adopted: list[tuple[str, Partition]] = []

        def check(item: tuple[Subset, Partition]) -> tuple[str, str | None, Partition | None]:
            subset, part = item
            key = f"{subset.name}/{part.name}"
            path = self.partition_path(dataset.name, subset.name, part.name)
            if not part.downloaded:
                found = self._adopt(path, part)
                if found is not None:
                    return key, "complete file not in the catalog", found
                return key, None, None
            try:
                info = self.storage.info(path)
            except FileNotFoundError:
                return key, "file missing", None
            if int(info["size"]) != part.size:
                return key, f"size {info['size']} != recorded {part.size}", None
            if checksums:
                digest = file_checksum(self.storage, path)
                if digest != part.checksum:
                    return key, "checksum mismatch", None
            return key, "", None

        with ThreadPoolExecutor(max_workers=self.settings.max_workers) as pool:
            for (subset, part), (key, problem, found) in zip(selected, pool.map(check, selected),
                                                             strict=True):
                if problem is None:
                    continue
                if problem == "":
                    report.ok.append(key)
                elif found is not None:
                    report.problems.append(f"{key}: {problem}")
                    adopted.append((subset.name, found))
                else:
                    report.problems.append(f"{key}: {problem}")
                    broken.add((subset.name, part.name))
        folders = [self.storage.path(dataset.name)] + \
            [self.storage.path(dataset.name, s) for s in sorted({s.name for s, _ in selected})]
        for name in self.storage.stale_temps(folders):
            report.problems.append(f"stale temporary file {name}")
            with contextlib.suppress(FileNotFoundError):
                if repair:
                    os.unlink(name)
                    report.repaired.append(f"removed {name}")
        if repair and (broken or adopted):
            def fix(record: Dataset) -> None:
                for subset_name, found in adopted:
                    _replace_stats(record.subset(subset_name), found)
                for subset_name, part_name in broken:
                    record.subset(subset_name).partition(part_name).mark_removed()
            self.catalog.update(dataset.name, fix)
            for subset_name, part_name in broken:
                self.storage.remove(self.partition_path(dataset.name, subset_name, part_name))
                report.repaired.append(f"{subset_name}/{part_name}: marked not downloaded")
            report.repaired += [f"{s}/{p.name}: adopted" for s, p in adopted]
        return report


# ====================================================================== helpers
def raise_exists(name: str) -> None:
    from pygestor.errors import AlreadyExistsError

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
    for key in ("size", "num_rows", "row_groups", "checksum", "footer"):
        setattr(part, key, getattr(stats, key))
    part.downloaded_at = now()


def partition_stats(local_path: str) -> dict[str, Any]:
    """Size, rows, row groups, footer range and checksum of a finished local partition."""
    size = os.path.getsize(local_path)
    with open(local_path, "rb") as handle:
        return stats_from_stream(handle, size)


def stats_from_stream(handle: Any, size: int) -> dict[str, Any]:
    import pyarrow.parquet as pq

    digest = hashlib.sha256()
    while chunk := handle.read(8 << 20):
        digest.update(chunk)
    handle.seek(0)
    metadata = pq.ParquetFile(handle).metadata
    handle.seek(size - 8)
    tail = handle.read(8)
    if tail[4:] != b"PAR1":
        raise IntegrityError("not a complete parquet file (no PAR1 trailer)")
    footer_length = int.from_bytes(tail[:4], "little")
    return {"size": size, "num_rows": metadata.num_rows,
            "row_groups": [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)],
            "checksum": "sha256:" + digest.hexdigest(),
            "footer": [size - 8 - footer_length, footer_length + 8]}


def file_checksum(storage: Storage, path: str) -> str:
    digest = hashlib.sha256()
    with storage.open(path, "rb", block_size=8 << 20) as handle:
        while chunk := handle.read(8 << 20):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


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
        for entry in os.listdir(folder):
            if entry.endswith(".lock"):
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
