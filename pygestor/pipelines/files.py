"""The ``files`` pipeline: any fsspec URL, folder or glob of parquet, CSV and JSON Lines files.

Sub-folders become subsets (``train/``, ``test/``, ``en/train/``); a flat folder is one subset,
``default``. Each source file is planned into partitions of about ``partition_size`` bytes when
the dataset is added (parquet by row ranges from its footer, text files by byte ranges split at
line boundaries), so the catalog lists every partition before anything is downloaded.
"""

from __future__ import annotations

import math
import re
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

from pygestor.catalog import Dataset, Partition, Subset
from pygestor.config import SECRET_KEY_PATTERN
from pygestor.errors import SourceError, short_text
from pygestor.pipelines import formats
from pygestor.pipelines.base import Pipeline, Progress

_GLOB_CHARS = re.compile(r"[*?\[]")


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


class FilesPipeline(Pipeline):
    """Parquet, CSV and JSON Lines files (gzip, bz2, xz) from any fsspec URL.

    Options: see ``OPTIONS``.
    """

    name: ClassVar[str] = "files"
    description: ClassVar[str] = "parquet / CSV / JSON Lines files from a folder, glob or URL"
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
        "infer_bytes": "bytes of the first text file read to infer column types",
    }

    @classmethod
    def accepts(cls, url: str) -> bool:
        return True

    # ------------------------------------------------------------------ discover
    def discover(self, name: str, url: str | None, options: dict[str, Any]) -> Dataset:
        if not url:
            raise SourceError("the files pipeline needs a URL: a folder, a file or a glob")
        fs, path = source_filesystem(url, options, self.settings)
        files, base = self._list_sources(fs, path, url)
        by_subset: dict[str, list[tuple[str, str, str | None, int]]] = {}
        for file_path, size in files:
            fmt = formats.source_format(file_path)
            assert fmt is not None
            rel = file_path[len(base):].strip("/") if file_path.startswith(base) else file_path
            folder = rel.rsplit("/", 1)[0] if "/" in rel else ""
            by_subset.setdefault(folder or "default", []).append((file_path, *fmt, size))
        dataset = Dataset(name=name, url=url, pipeline=self.name,
                          options=_storable_options(options))
        with ThreadPoolExecutor(max_workers=min(16, self.settings.max_workers * 2)) as pool:
            for subset_name in sorted(by_subset):
                dataset.subsets[subset_name] = self._plan_subset(
                    fs, subset_name, by_subset[subset_name], options, pool)
        return dataset

    def _list_sources(self, fs: Any, path: str, url: str) -> tuple[list[tuple[str, int]], str]:
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
            raise SourceError(f"permission denied listing {url}: {exc}; check the "
                              "credentials") from None
        except OSError as exc:
            raise SourceError(f"cannot list {url}: {short_text(exc)}; check the URL and that the "
                              "host is reachable") from None
        files = sorted((p, int(d.get("size") or 0)) for p, d in entries.items()
                       if formats.source_format(p) is not None)
        if not files:
            raise SourceError(f"no parquet, CSV or JSON Lines files found at {url}; supported: "
                              ".parquet, .csv, .tsv, .jsonl, .ndjson, .json (optionally .gz, "
                              ".bz2, .xz)")
        return files, base

    def _plan_subset(self, fs: Any, subset_name: str,
                     files: list[tuple[str, str, str | None, int]], options: dict[str, Any],
                     pool: ThreadPoolExecutor) -> Subset:
        subset = Subset(name=subset_name)
        target = partition_target(self.settings, options)
        kinds = {fmt for _, fmt, _, _ in files}
        if len(kinds) > 1:
            raise SourceError(f"subset {subset_name!r} mixes {' and '.join(sorted(kinds))} files; "
                              "put each format in its own folder")
        fmt = kinds.pop()
        if fmt == "parquet":
            plans = list(pool.map(lambda f: self._plan_parquet(fs, f[0], target), files))
            schemas = [schema for _, schema in plans]
            subset.schema = formats.schema_to_text(schemas[0])
            for (path, *_), (slices, schema) in zip(files, plans, strict=True):
                if schema != schemas[0]:
                    raise SourceError(f"{path} has a different schema from {files[0][0]}; "
                                      "files of one subset must share their columns")
                for start, stop, size in slices:
                    self._add(subset, {"url": fs.unstrip_protocol(path), "format": "parquet",
                                       "start": start, "stop": stop}, size, stop - start)
            return subset
        first_path, _, first_compression, _ = files[0]
        schema = formats.infer_text_schema(fs, first_path, fmt, first_compression, options)
        subset.schema = formats.schema_to_text(schema)
        for path, _, compression, size in files:
            if compression is None and size > target:
                pieces = math.ceil(size / target)
                ranges = [(k * target, (k + 1) * target if k < pieces - 1 else None, target)
                          for k in range(pieces)]
                ranges[-1] = (ranges[-1][0], None, size - (pieces - 1) * target)
            else:
                ranges = [(0, None, size)]
            for start, stop, part_size in ranges:
                self._add(subset, {"url": fs.unstrip_protocol(path), "format": fmt,
                                   "compression": compression, "start": start, "stop": stop},
                          part_size, None)
        return subset

    def _plan_parquet(self, fs: Any, path: str,
                      target: int) -> tuple[list[tuple[int, int, int]], Any]:
        pf = formats.open_parquet(fs, path)
        try:
            slices = formats.plan_parquet_slices(pf.metadata, target)
            return slices, pf.schema_arrow
        finally:
            pf.close()

    @staticmethod
    def _add(subset: Subset, source: dict[str, Any], size: int | None, rows: int | None) -> None:
        name = f"part-{len(subset.partitions):05d}.parquet"
        subset.partitions.append(Partition(name=name, source=source, source_bytes=size,
                                           source_rows=rows))

    # ------------------------------------------------------------------ fetch
    def fetch(self, dataset: Dataset, subset: Subset, partition: Partition, dest: str,
              progress: Progress) -> None:
        source = partition.source
        options = dataset.options
        fs, path = source_filesystem(source["url"], options, self.settings)
        schema = formats.schema_from_text(subset.schema) if subset.schema else None
        writer = formats.PartitionWriter(dest, schema, self.settings.row_group_size,
                                         self.settings.compression)
        try:
            if source["format"] == "parquet":
                batches = formats.iter_parquet_rows(fs, path, source["start"], source["stop"])
                rows = max(source["stop"] - source["start"], 1)
                per_row = (partition.source_bytes or 0) / rows
            else:
                assert schema is not None
                batches = formats.iter_text_batches(fs, path, source["format"],
                                                    source.get("compression"), source["start"],
                                                    source.get("stop"), schema, options)
                per_row = None
            for batch in batches:
                writer.write(batch)
                progress(int(batch.num_rows * per_row) if per_row is not None else batch.nbytes)
            written = writer.close()
        except BaseException:
            writer.abort()
            raise
        if source["format"] == "parquet" and written.num_rows != source["stop"] - source["start"]:
            raise SourceError(f"{source['url']}: expected {source['stop'] - source['start']} rows, "
                              f"read {written.num_rows}; the source changed since it was added")


def partition_target(settings: Any, options: dict[str, Any]) -> int:
    """Partition size for one dataset: its ``partition_size`` option, else the setting."""
    from pygestor.config import parse_size

    if options.get("partition_size") is not None:
        return parse_size(options["partition_size"], "partition_size")
    return settings.partition_size


def _storable_options(options: dict[str, Any]) -> dict[str, Any]:
    """Pipeline options without credentials (those come from the environment when needed)."""
    stored: dict[str, Any] = {}
    for key, value in options.items():
        if SECRET_KEY_PATTERN.search(key):
            continue
        if isinstance(value, dict):
            value = {k: v for k, v in value.items() if not SECRET_KEY_PATTERN.search(str(k))}
        stored[key] = value
    return stored
