"""The ``files`` pipeline: a folder, glob or URL of parquet, CSV, JSON Lines and JSON files.

Sub-folders become subsets (``train/``, ``test/``, ``en/train/``); a flat folder is one subset,
``default``. When the dataset is added, every file's columns are read (parquet footers, CSV
headers and first lines, the first records of JSON files) and reconciled *by name*
(:mod:`pygestor.schemas`): files of one subset that do not have the same columns are refused
unless ``schema="union"``. Each file is planned into partitions of about ``partition_size``
bytes (parquet by row ranges from its footer, text files by byte ranges split at line
boundaries), so the catalog lists every partition before anything is downloaded.

Each partition's source records its file's identity (size, and ETag, generation or modification
time): a file that changed since ``add`` is refused at download instead of yielding other rows.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, ClassVar

import pyarrow as pa

from pygestor.catalog import Dataset, Partition, Subset
from pygestor.errors import NotSupportedError, SourceError, short_text
from pygestor.pipelines import formats
from pygestor.pipelines.base import Pipeline, Progress
from pygestor.schemas import check_mode, reconcile

log = logging.getLogger("pygestor.files")
_GLOB_CHARS = re.compile(r"[*?\[]")
#: details of a listing that tell one version of a file from another, best first
IDENTITY_KEYS = ("ETag", "etag", "md5Hash", "generation", "mtime", "Last-Modified")
#: file formats that can share one subset (a folder may mix JSON Lines and JSON arrays)
FAMILIES = {"parquet": "parquet", "csv": "csv", "jsonl": "json", "json": "json"}


def source_filesystem(url: str, options: dict[str, Any],
                      settings: Any = None) -> tuple[Any, str]:
    """The filesystem and path of a source URL; a clear error for unknown schemes.

    With ``settings``, network clients get its ``timeout`` and request ``retries`` unless the
    source options set their own.
    """
    from pygestor.backends.storage import make_filesystem
    from pygestor.errors import StorageError
    network = {} if settings is None else {"timeout": settings.timeout,
                                           "retries": settings.retries}
    try:
        return make_filesystem(url, options.get("source_options") or {}, **network)
    except StorageError as exc:
        raise SourceError(str(exc)) from None


@dataclass
class SourceFile:
    """One file of the source, as listed when the dataset is added."""

    path: str
    size: int
    fmt: str
    compression: str | None
    identity: dict[str, Any]
    ranges: bool = True  # the server answers range requests (http sources may not)


def identity_of(detail: dict[str, Any]) -> dict[str, Any]:
    """Size plus the first version marker the listing gives (ETag, generation, mtime...)."""
    found: dict[str, Any] = {"size": int(detail.get("size") or 0)}
    for key in IDENTITY_KEYS:
        value = detail.get(key)
        if isinstance(value, (str, int, float)) and value != "":
            found[key] = value
            break
    return found


class FilesPipeline(Pipeline):
    """Parquet, CSV, JSON Lines and JSON files (gzip, bz2, xz) from any fsspec URL.

    Options: see ``OPTIONS``.
    """

    name: ClassVar[str] = "files"
    description: ClassVar[str] = "parquet / CSV / JSON files from a folder, glob or URL"
    OPTIONS: ClassVar[dict[str, str]] = {
        "source_options": "fsspec options for the source (credentials are never stored: they "
                          "come from the environment at download time)",
        "delimiter": "CSV field delimiter (default ',' or tab for .tsv)",
        "header": "false when CSV files have no header line",
        "encoding": "text encoding of CSV files (default utf-8)",
        "column_types": "{column: arrow type name} overrides of inferred types",
        "schema": "'strict' (default: every file of a subset has the same columns) or 'union' "
                  "(missing columns become nulls, types widened where lossless)",
        "partition_size": "target bytes of source data per partition",
        "infer_bytes": "bytes of the first text file of a subset read to infer column types",
    }

    @classmethod
    def accepts(cls, url: str) -> bool:
        return True

    # ------------------------------------------------------------------ discover
    def discover(self, name: str, url: str | None, options: dict[str, Any]) -> Dataset:
        if not url:
            raise SourceError("the files pipeline needs a URL: a folder, a file or a glob")
        check_mode(options.get("schema"))
        formats.splittable_encoding(options.get("encoding"))  # a clear error for unknown codecs
        fs, path = source_filesystem(url, options, self.settings)
        files, base = self._list_sources(fs, path, url)
        by_subset: dict[str, list[SourceFile]] = {}
        for item in files:
            rel = item.path[len(base):].strip("/") if item.path.startswith(base) else item.path
            folder = rel.rsplit("/", 1)[0] if "/" in rel else ""
            by_subset.setdefault(folder or "default", []).append(item)
        dataset = Dataset(name=name, url=url, pipeline=self.name, options=dict(options))
        with self._readers() as pool:
            for subset_name in sorted(by_subset):
                dataset.subsets[subset_name] = self._plan_subset(
                    fs, subset_name, by_subset[subset_name], options, pool)
        return dataset

    @contextlib.contextmanager
    def _readers(self) -> Iterator[Executor]:
        """Where source files are read: the cluster's executor when the operation was given
        one (``self.executor``), else a pool of threads."""
        if self.executor is not None:
            yield self.executor
            return
        with ThreadPoolExecutor(max_workers=min(16, self.settings.max_workers * 2)) as pool:
            yield pool

    def _list_sources(self, fs: Any, path: str, url: str) -> tuple[list[SourceFile], str]:
        try:
            if _GLOB_CHARS.search(path):
                base = _GLOB_CHARS.split(path, 1)[0].rsplit("/", 1)[0]
                found = fs.glob(path, detail=True)
                entries = {p: d for p, d in found.items() if d.get("type") != "directory"}
            elif fs.isdir(path):
                base = path.rstrip("/")
                entries = fs.find(path, detail=True)
            elif fs.exists(path):
                base = path.rsplit("/", 1)[0]
                entries = {path: fs.info(path)}
            else:
                raise SourceError(f"{url} does not exist; check the path or URL")
        except SourceError:
            raise
        except FileNotFoundError:
            raise SourceError(f"{url} does not exist; check the path or URL") from None
        except PermissionError as exc:
            raise SourceError(f"permission denied listing {url}: {short_text(exc)}; check the "
                              "credentials") from None
        except OSError as exc:
            raise SourceError(f"cannot list {url}: {short_text(exc)}; check the URL and that the "
                              "host is reachable") from None
        entries = self._inside_root(fs, base, entries)
        files = []
        for file_path, detail in sorted(entries.items()):
            kind = formats.source_format(file_path)
            if kind is None:
                continue
            fmt, compression = kind
            if fmt == "jsonl" and _is_json_name(file_path):
                fmt = formats.sniff_json(fs, file_path, compression)
            files.append(SourceFile(file_path, int(detail.get("size") or 0), fmt, compression,
                                    identity_of(detail), _ranges_supported(fs, file_path)))
        if not files:
            raise SourceError(f"no parquet, CSV or JSON files found at {url}; supported: "
                              ".parquet, .csv, .tsv, .jsonl, .ndjson, .json (optionally .gz, "
                              ".bz2, .xz)")
        return files, base

    @staticmethod
    def _inside_root(fs: Any, base: str, entries: dict[str, Any]) -> dict[str, Any]:
        """Local sources: files whose real path leaves the source folder (symlinks out of it)
        are not followed; they are left out and reported."""
        from fsspec.implementations.local import LocalFileSystem

        if not isinstance(fs, LocalFileSystem):
            return entries
        root = os.path.realpath(base)
        kept = {p: d for p, d in entries.items()
                if os.path.realpath(p) == root or
                os.path.realpath(p).startswith(root.rstrip(os.sep) + os.sep)}
        left = sorted(set(entries) - set(kept))
        if left:
            log.warning("left out %d file(s) that are links out of %s: %s", len(left), base,
                        ", ".join(left[:5]))
        return kept

    def _plan_subset(self, fs: Any, subset_name: str, files: list[SourceFile],
                     options: dict[str, Any], pool: Executor) -> Subset:
        families = {FAMILIES[f.fmt] for f in files}
        if len(families) > 1:
            raise SourceError(f"subset {subset_name!r} mixes {' and '.join(sorted(families))} "
                              "files; put each format in its own folder")
        subset = Subset(name=subset_name)
        mode = check_mode(options.get("schema"))
        target = partition_target(self.settings, options)
        reader = FileReader(options, self.settings, target, remote=self.executor is not None)
        if families == {"parquet"}:
            plans = list(pool.map(reader.parquet, [(fs.unstrip_protocol(f.path), f.ranges)
                                                   for f in files]))
            schema = reconcile([(f.path, s) for f, (_, s) in zip(files, plans, strict=True)],
                               mode)
            subset.schema = formats.schema_to_text(schema)
            for item, (slices, _) in zip(files, plans, strict=True):
                for start, stop, size in slices:
                    self._add(subset, {**self._source(fs, item), "start": start, "stop": stop},
                              size, stop - start)
            return subset
        infer = int(options.get("infer_bytes") or formats.INFER_BYTES)
        probes = list(pool.map(reader.text, [
            (fs.unstrip_protocol(f.path), f.fmt, f.compression,
             infer if index == 0 else min(infer, formats.PROBE_BYTES))
            for index, f in enumerate(files)]))
        schema = reconcile([(f.path, p.schema) for f, p in zip(files, probes, strict=True)], mode,
                           fix="put them in separate folders, or set column_types")
        formats.check_overrides(schema, options, f"subset {subset_name!r}")
        subset.schema = formats.schema_to_text(schema)
        splittable = formats.splittable_encoding(options.get("encoding"))
        for item, probe in zip(files, probes, strict=True):
            source = self._source(fs, item)
            if probe.columns is not None:
                source["columns"] = probe.columns
            cut = splittable and item.compression is None and item.ranges and item.fmt != "json"
            for start, stop, size in _byte_ranges(item.size, target if cut else None):
                self._add(subset, {**source, "start": start, "stop": stop}, size, None)
        return subset

    @staticmethod
    def _source(fs: Any, item: SourceFile) -> dict[str, Any]:
        source: dict[str, Any] = {"url": fs.unstrip_protocol(item.path), "format": item.fmt,
                                  "identity": item.identity}
        if item.compression:
            source["compression"] = item.compression
        if not item.ranges:
            source["stream"] = True
        return source

    @staticmethod
    def _add(subset: Subset, source: dict[str, Any], size: int | None, rows: int | None) -> None:
        name = f"part-{len(subset.partitions):05d}.parquet"
        subset.partitions.append(Partition(name=name, source=source, source_bytes=size,
                                           source_rows=rows))

    def source_urls(self, dataset: Dataset, partition: Partition) -> Iterable[str]:
        """The partition's source file, which must lie below the dataset's URL."""
        url = partition.source.get("url")
        if isinstance(url, str) and dataset.url:
            _, base = source_filesystem(dataset.url, dataset.options, None)
            _, path = source_filesystem(url, dataset.options, None)
            if _GLOB_CHARS.search(base):
                base = _GLOB_CHARS.split(base, 1)[0].rsplit("/", 1)[0]
            if path == base or path.startswith(base.rstrip("/") + "/"):
                return [url]
        raise SourceError(f"the record of {dataset.name} names a source file {url!r} outside the "
                          f"dataset's source {dataset.url!r}; the record was damaged or tampered "
                          "with: add the dataset again")

    # ------------------------------------------------------------------ preview
    def preview(self, dataset: Dataset, subset: Subset, rows: int) -> pa.Table:
        """The first rows of the subset's first partition, from its source file: a parquet
        footer and the row group holding them, or the first lines of a text file, typed with
        the subset's schema (columns by name), as the partition would store them."""
        if not subset.partitions:
            raise SourceError(f"subset {subset.name!r} of {dataset.name} has no partitions")
        source = subset.partitions[0].source
        options = dataset.options
        fs, path = source_filesystem(source["url"], options, self.settings)
        check_identity(fs, path, source)
        schema = formats.schema_from_text(subset.schema) if subset.schema else None
        fill = options.get("schema") == "union"
        if source["format"] == "parquet":
            if source.get("stream"):
                raise NotSupportedError(f"{source['url']}: its server does not answer range "
                                        "requests, so a preview would download the whole file; "
                                        "download one partition to see its rows")
            table = formats.first_parquet_rows(fs, path, source["start"], rows)
            return formats.conform(table, schema, fill_missing=fill) if schema else table
        if schema is None:
            raise SourceError(f"the record of {dataset.name} lacks the schema of {subset.name!r}; "
                              "add the dataset again")
        size = int((source.get("identity") or {}).get("size") or 0)
        if source["format"] == "json" and size > formats.PREVIEW_MAX_BYTES:
            raise NotSupportedError(f"{source['url']} is one JSON array of {size:,} bytes, read "
                                    "whole; download one partition to see its rows")
        return formats.first_text_rows(
            fs, path, source["format"], source.get("compression"), rows, schema, options,
            start=source["start"], stop=source.get("stop"), columns=source.get("columns"),
            fill_missing=fill, stream=bool(source.get("stream")))

    # ------------------------------------------------------------------ fetch
    def fetch(self, dataset: Dataset, subset: Subset, partition: Partition, dest: str,
              progress: Progress) -> None:
        source = partition.source
        options = dataset.options
        fs, path = source_filesystem(source["url"], options, self.settings)
        check_identity(fs, path, source)
        schema = formats.schema_from_text(subset.schema) if subset.schema else None
        fill = options.get("schema") == "union"
        writer = self.open_writer(dest, schema, dataset, subset, partition)
        try:
            with contextlib.ExitStack() as stack:
                batches, per_row = self._batches(fs, path, source, schema, options, fill,
                                                 partition, stack)
                for batch in batches:
                    writer.write(batch)
                    progress(int(batch.num_rows * per_row) if per_row is not None
                             else batch.nbytes)
            written = writer.close()
        except BaseException:
            writer.abort()
            raise
        if source["format"] == "parquet" and written.num_rows != source["stop"] - source["start"]:
            raise SourceError(f"{source['url']}: expected {source['stop'] - source['start']} rows, "
                              f"read {written.num_rows}; the source changed since it was added")

    @staticmethod
    def _batches(fs: Any, path: str, source: dict[str, Any], schema: pa.Schema | None,
                 options: dict[str, Any], fill: bool, partition: Partition,
                 stack: contextlib.ExitStack) -> tuple[Iterator[pa.RecordBatch], float | None]:
        if source["format"] == "parquet":
            read_fs, read_path = stack.enter_context(
                _readable(fs, path, not source.get("stream")))
            rows = max(source["stop"] - source["start"], 1)
            return (formats.iter_parquet_rows(read_fs, read_path, source["start"], source["stop"]),
                    (partition.source_bytes or 0) / rows)
        assert schema is not None
        return formats.iter_text_batches(
            fs, path, source["format"], source.get("compression"), source["start"],
            source.get("stop"), schema, options, columns=source.get("columns"),
            fill_missing=fill, stream=bool(source.get("stream"))), None


class FileReader:
    """Reads what planning needs of one source file (a parquet footer; a text file's first
    lines): picklable, so that the files of a large source can be read on a cluster's workers.
    It carries no secret (workers use their own credentials)."""

    def __init__(self, options: dict[str, Any], settings: Any, target: int,
                 remote: bool = False) -> None:
        from pygestor.policy import drop_secrets

        self.options = drop_secrets(options)[0] if remote else options
        self.settings = settings.without_secrets() if remote else settings
        self.target = target

    def parquet(self, item: tuple[str, bool]) -> tuple[list[tuple[int, int, int]], pa.Schema]:
        url, ranges = item
        fs, path = source_filesystem(url, self.options, self.settings)
        with _readable(fs, path, ranges) as (read_fs, read_path):
            pf = formats.open_parquet(read_fs, read_path)
            try:
                return formats.plan_parquet_slices(pf.metadata, self.target), pf.schema_arrow
            finally:
                pf.close()

    def text(self, item: tuple[str, str, str | None, int]) -> formats.TextProbe:
        url, fmt, compression, sample = item
        fs, path = source_filesystem(url, self.options, self.settings)
        return formats.probe_text(fs, path, fmt, compression, self.options, sample)


def check_identity(fs: Any, path: str, source: dict[str, Any]) -> None:
    """Refuse a source file that is not the version planned when the dataset was added."""
    recorded = source.get("identity")
    if not recorded:
        return  # records written before identities were kept
    try:
        current = identity_of(fs.info(path))
    except FileNotFoundError:
        raise SourceError(f"{source['url']} is gone from the source; add the dataset again to "
                          "plan what is there now") from None
    changed = [k for k, v in recorded.items() if k in current and current[k] != v]
    if changed:
        raise SourceError(f"{source['url']} changed since the dataset was added ("
                          f"{', '.join(changed)} differ); its partitions would not hold the rows "
                          "planned: add the dataset again (under a new name, or delete it first)")


def partition_target(settings: Any, options: dict[str, Any]) -> int:
    """Partition size for one dataset: its ``partition_size`` option, else the setting."""
    from pygestor.config import parse_size

    if options.get("partition_size") is not None:
        return parse_size(options["partition_size"], "partition_size")
    return settings.partition_size


def _byte_ranges(size: int, target: int | None) -> list[tuple[int, int | None, int]]:
    """``(start, stop, bytes)`` ranges of about ``target`` bytes (None: the whole file)."""
    if target is None or size <= target:
        return [(0, None, size)]
    pieces = math.ceil(size / target)
    ranges: list[tuple[int, int | None, int]] = [
        (k * target, (k + 1) * target, target) for k in range(pieces - 1)]
    ranges.append(((pieces - 1) * target, None, size - (pieces - 1) * target))
    return ranges


def _is_json_name(path: str) -> bool:
    name = path.rsplit("/", 1)[-1].lower()
    for suffix in formats.COMPRESSION_SUFFIXES:
        name = name.removesuffix(suffix)
    return name.endswith(".json")


def _ranges_supported(fs: Any, path: str) -> bool:
    """Whether an http(s) server answers range requests (other filesystems always do)."""
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    if protocol not in ("http", "https"):
        return True
    try:
        with fs.open(path, "rb", block_size=1 << 10) as handle:
            if (handle.size or 0) < 2:
                return True
            handle.seek(handle.size // 2)
            handle.read(1)
    except ValueError:
        return False  # fsspec: "The HTTP server doesn't appear to support range requests"
    except OSError:
        return True  # other failures surface with their own message when the file is read
    return True


@contextlib.contextmanager
def _readable(fs: Any, path: str, ranges: bool) -> Iterator[tuple[Any, str]]:
    """``(fs, path)`` to read a parquet file with seeks: the file itself, or, from a server
    without range requests, a local copy streamed from the start."""
    if ranges:
        yield fs, path
        return
    import fsspec

    handle, local = tempfile.mkstemp(prefix=".pygestor-stream-", suffix=".parquet")
    try:
        with os.fdopen(handle, "wb") as out, fs.open(path, "rb", block_size=0) as src:
            while chunk := src.read(8 << 20):
                out.write(chunk)
        yield fsspec.filesystem("file"), local
    finally:
        with contextlib.suppress(OSError):
            os.unlink(local)
