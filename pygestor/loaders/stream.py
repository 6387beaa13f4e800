"""Read stage: row groups of downloaded partitions, from local disk or straight from object stores.

The unit of work is one row group of one partition of a :class:`~pygestor.selection.Selection`.
:class:`RowGroupReader` is the one reader of partition files in Pygestor (``load``,
``load_table``, ``sample``, ``schema``, ``iter_batches`` and ``PygestorDataset`` all read
through it). It verifies every footer against the sha256 recorded at download, its row groups
against the record, every page checksum and each row group's row count:

- local roots: pyarrow's own file reader (no fsspec in the hot path);
- remote roots (S3, GCS, ...): the footer is fetched with one ranged request at the range the
  catalog recorded (no HEAD, no listing), then for each row group only the byte ranges of the
  needed column chunks (merged by ``fsspec.utils.merge_offset_ranges``) with ``fs.cat_ranges``,
  which object-store filesystems run concurrently; pyarrow decodes them from fsspec's
  ``KnownPartsOfAFile``, given the verified footer as parsed metadata. Every fetch is retried
  with back-off (``settings.retries``, ``settings.retry_backoff``); bytes that fail a check are
  fetched once more before the partition is declared damaged;
- with ``settings.cache_dir`` set and a remote root, whole partitions are copied into a local
  :class:`~pygestor.loaders.cache.PartitionCache` on first use and read from there afterwards;
- with filters, row groups whose statistics rule out every row are not read (pyarrow's own
  pruning, ``ParquetFileFragment.subset``, over the verified footer).

Filesystem objects are made per process (``Storage.fs`` checks the pid), so forked DataLoader
workers never share a client with their parent.
"""

from __future__ import annotations

import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from pygestor.backends.retry import TransientError, call_with_retries
from pygestor.errors import ConfigError, IntegrityError, short_text

if TYPE_CHECKING:
    from pygestor.selection import Selection

log = logging.getLogger("pygestor.loaders")
T = TypeVar("T")
Filters = Any  # list of (column, op, value) tuples, a list of such lists (OR), or an Expression

MERGE_GAP = 1 << 20
"""Column chunks closer than this many bytes are fetched with one request."""
TAIL_GUESS = 64 << 10
SPECULATE_MAX = 64 << 20
"""Largest first-row-group guess fetched together with a footer."""


# ============================================================================================
# Arguments checked against the schema


def to_expression(filters: Filters, schema: pa.Schema) -> pads.Expression | None:
    """Validate ``filters`` against ``schema`` (columns, operators, and the values' types
    against the columns', so a bad filter fails here, not at the first batch) and turn them
    into a pyarrow expression."""
    if filters is None:
        return None
    expression = filters if isinstance(filters, pads.Expression) else _dnf_expression(
        filters, schema)
    try:
        schema.empty_table().filter(expression)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise ConfigError(f"cannot apply filters {filters!r} to these columns: "
                          f"{str(exc).splitlines()[0]}") from None
    return expression


def _dnf_expression(filters: Any, schema: pa.Schema) -> pads.Expression:
    if not isinstance(filters, (list, tuple)) or not filters:
        raise ConfigError(f"filters must be a non-empty list of (column, op, value) tuples, got "
                          f"{filters!r}")
    groups = filters if isinstance(filters[0], (list,)) and filters[0] and \
        isinstance(filters[0][0], (list, tuple)) else [filters]
    for group in groups:
        for item in group:
            if not isinstance(item, (list, tuple)) or len(item) != 3:
                raise ConfigError(f"bad filter {item!r}: expected (column, op, value), e.g. "
                                  "('label', '<', 5)")
            column, op, _ = item
            if column not in schema.names:
                raise ConfigError(f"filter on unknown column {column!r}; columns: "
                                  f"{', '.join(schema.names)}")
            if op not in ("=", "==", "!=", "<", ">", "<=", ">=", "in", "not in"):
                raise ConfigError(f"bad filter operator {op!r} in {item!r}; use one of = == != "
                                  "< > <= >= in, not in")
    try:
        return pq.filters_to_expression([list(map(tuple, g)) for g in groups])
    except (TypeError, ValueError, pa.ArrowInvalid) as exc:
        raise ConfigError(f"bad filters {filters!r}: {exc}") from None


def check_columns(columns: list[str] | None, schema: pa.Schema) -> list[str] | None:
    """``columns`` as a list, checked against ``schema`` (None: all)."""
    if columns is None:
        return None
    if isinstance(columns, str):
        columns = [columns]
    if not columns:
        raise ConfigError("columns=[] selects no column, so every batch would be empty; name "
                          "at least one column, or pass None for all of them")
    missing = [c for c in columns if c not in schema.names]
    if missing:
        raise ConfigError(f"unknown column(s) {', '.join(map(repr, missing))}; columns: "
                          f"{', '.join(schema.names)}")
    return list(columns)


# ============================================================================================
# Filters


def filter_columns(filters: Any, schema: pa.Schema) -> list[str]:
    """Columns a filter reads (for list filters; all of ``schema`` for an Expression)."""
    if filters is None:
        return []
    groups = dnf_groups(filters)
    if groups is None:
        return list(schema.names)
    seen: list[str] = []
    for group in groups:
        for column, _, _ in group:
            if column not in seen:
                seen.append(column)
    return seen


def dnf_groups(filters: Any) -> list[list[tuple[str, str, Any]]] | None:
    """List filters as OR-of-AND groups; None for a pyarrow Expression."""
    if filters is None or isinstance(filters, pads.Expression):
        return None
    if isinstance(filters[0], list) and filters[0] and isinstance(filters[0][0], (list, tuple)):
        return [[tuple(item) for item in group] for group in filters]  # type: ignore[misc]
    return [[tuple(item) for item in filters]]  # type: ignore[misc]


# ============================================================================================
# Parquet layout helpers


def leaf_map(schema: pa.Schema) -> dict[str, list[int]]:
    """Top-level column name -> indices of its leaf columns in the parquet file."""
    out: dict[str, list[int]] = {}
    index = 0
    for field in schema:
        count = _leaves(field.type)
        out[field.name] = list(range(index, index + count))
        index += count
    return out


def _leaves(kind: pa.DataType) -> int:
    if isinstance(kind, pa.ExtensionType):
        return _leaves(kind.storage_type)
    if pa.types.is_struct(kind):
        return sum(_leaves(kind.field(i).type) for i in range(kind.num_fields))
    if pa.types.is_map(kind):
        return _leaves(kind.key_type) + _leaves(kind.item_type)
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or \
            pa.types.is_fixed_size_list(kind) or getattr(pa.types, "is_list_view",
                                                         lambda _: False)(kind):
        return _leaves(kind.value_type)
    if pa.types.is_dictionary(kind):
        return 1
    return 1


def chunk_range(column: pq.ColumnChunkMetaData) -> tuple[int, int]:
    """Byte range ``[start, end)`` of one column chunk."""
    start = column.data_page_offset
    if column.has_dictionary_page and column.dictionary_page_offset:
        start = min(start, column.dictionary_page_offset)
    return start, start + column.total_compressed_size


# ============================================================================================
# Reading


class RowGroupReader:
    """Reads (and optionally filters) row groups of a :class:`Selection` in this process.

    Args:
        selection: what to read.
        columns: columns to return (None: all).
        filters: list filters or a pyarrow Expression (already validated); rows that do not pass
            are removed, and row groups whose statistics exclude every row are not read.
        cache: use the partition cache when the selection is remote and ``cache_dir`` is set
            (None: whenever ``cache_dir`` is set).
    """

    #: verify footers against the record and page checksums (always, in Pygestor; the loader
    #: benchmark switches it off in a process of its own to measure what verification costs)
    verify: ClassVar[bool] = True

    def __init__(self, selection: Selection, columns: list[str] | None = None,
                 filters: Any = None, cache: bool | None = None) -> None:
        self.selection = selection
        self.columns = None if columns is None else list(columns)
        self.filters = filters
        self._expression: pads.Expression | None = None
        self._cache = selection.cache() if cache is not False else None
        if cache is True and self._cache is None and not selection.is_local:
            raise ConfigError("cache=True needs settings.cache_dir (a local folder for the "
                              "partition cache)")
        self._lock = threading.Lock()
        self._metadata: OrderedDict[int, Future[pq.FileMetaData]] = OrderedDict()
        self._local_files: dict[tuple[int, int], tuple[int, pq.ParquetFile]] = {}
        self._layout: dict[int, tuple[list[str] | None, dict[str, list[int]]]] = {}
        self._matching: dict[int, frozenset[int]] = {}
        self._speculated: dict[int, tuple[int, bytes]] = {}
        self.requests = 0  # remote requests made (footer and data), for benchmarks

    # ------------------------------------------------------------------ schema and metadata
    def metadata(self, p: int, speculate: tuple[int, int] | None = None) -> pq.FileMetaData:
        """The parquet footer of partition ``p`` (fetched once per process, kept for 256).

        ``speculate``: a byte range fetched together with the footer (one round trip instead
        of two for the first row group of a partition); kept until :meth:`read` uses it.
        """
        with self._lock:
            future = self._metadata.get(p)
            owner = future is None
            if owner:
                future = Future()
                self._metadata[p] = future
                while len(self._metadata) > 256:
                    self._metadata.popitem(last=False)
            else:
                self._metadata.move_to_end(p)
        assert future is not None
        if owner:
            try:
                future.set_result(self._load_metadata(p, speculate))
            except BaseException as exc:  # noqa: BLE001 - handed to every waiter, re-raised
                future.set_exception(exc)
                with self._lock:
                    self._metadata.pop(p, None)
        return future.result()

    def schema(self) -> pa.Schema:
        """The Arrow schema of the rows (the first partition's, whose first row group, when it
        will be read whole, is fetched in the same round trip as the footer; or the union of
        the subsets read with ``schema="union"``)."""
        if self.selection.schema is not None:
            return self.selection.schema
        if self._speculating(0, 0):
            with self._lock:
                known = 0 in self._metadata
            if not known:
                return self.metadata(0, speculate=self._first_group_guess(0)) \
                    .schema.to_arrow_schema()
        return self.metadata(0).schema.to_arrow_schema()

    def row_bytes(self, columns: list[str] | None = None) -> float:
        """Bytes one row of ``columns`` takes once decoded, from the first partition's footer:
        fixed-width types exactly, others from the footer's uncompressed sizes."""
        metadata = self.metadata(0)
        schema = metadata.schema.to_arrow_schema()
        leaves = leaf_map(schema)
        rows = max(metadata.num_rows, 1)
        total = 0.0
        for name in columns if columns is not None else schema.names:
            if name not in leaves:
                total += 1.0  # a column this partition lacks (union): nulls
                continue
            try:
                total += schema.field(name).type.bit_width / 8
            except ValueError:  # variable width: what the footer says it takes
                total += sum(metadata.row_group(i).column(j).total_uncompressed_size
                             for i in range(metadata.num_row_groups)
                             for j in leaves[name]) / rows
        return max(total, 1.0)

    def _speculating(self, p: int, i: int) -> bool:
        return i == 0 and self.columns is None and self.filters is None \
            and not self.selection.is_local and self._cache is None

    def _load_metadata(self, p: int, speculate: tuple[int, int] | None = None
                       ) -> pq.FileMetaData:
        """The footer of partition ``p``, checked against the record (checksum of its bytes,
        row groups); a remote footer that fails the check is fetched once more (bytes can be
        damaged in transit) before the partition is declared damaged."""
        local = self._local_path(p)
        for attempt in (0, 1):
            raw = self._local_footer(p, local) if local is not None else \
                self._remote_footer(p, speculate if attempt == 0 else None)
            try:
                return self._check_footer(p, raw)
            except IntegrityError:
                if local is not None or attempt == 1:
                    raise
                log.warning("footer of %s failed its check; fetching it again",
                            self.selection.url(p))
                with self._lock:
                    self._speculated.pop(p, None)
        raise AssertionError("unreachable")

    def _local_footer(self, p: int, path: str) -> bytes:
        part = self.selection.partitions[p]
        try:
            with open(path, "rb") as handle:
                if part.footer:
                    handle.seek(part.footer[0])
                    return handle.read(part.footer[1])
                handle.seek(max(0, part.size - TAIL_GUESS))
                return handle.read()
        except FileNotFoundError:
            raise self._missing(p) from None
        except OSError as exc:
            raise self._damaged(p, f"cannot be read ({short_text(exc)})") from None

    def _remote_footer(self, p: int, speculate: tuple[int, int] | None) -> bytes:
        part = self.selection.partitions[p]
        fs = self.selection.storage.fs
        try:
            if part.footer and speculate is not None:
                start, length = part.footer
                ranges = [(start, start + length), speculate]
                got = self._fetch(lambda: _checked(ranges, fs.cat_ranges(
                    [part.path] * 2, [a for a, _ in ranges], [b for _, b in ranges])),
                    p, "footer and first row group", requests=2)
                raw, blob = got[ranges[0]], got[ranges[1]]
                with self._lock:
                    self._speculated[p] = (speculate[0], blob)
                return raw
            if part.footer:
                start, length = part.footer
                return self._fetch(lambda: fs.cat_file(part.path, start=start,
                                                       end=start + length), p, "footer")
            return self._fetch(lambda: fs.cat_file(part.path, start=max(0, part.size - TAIL_GUESS),
                                                   end=part.size), p, "footer")
        except FileNotFoundError:
            raise self._missing(p) from None

    def _check_footer(self, p: int, raw: bytes) -> pq.FileMetaData:
        """Parse a footer after checking its bytes, and that it describes the recorded rows."""
        from pygestor.integrity import footer_checksum

        part = self.selection.partitions[p]
        if self.verify and part.footer_checksum and \
                footer_checksum(raw) != part.footer_checksum:
            raise self._damaged(p, "its footer differs from the one recorded")
        if raw[-4:] != b"PAR1":
            raise self._damaged(p, "it does not end with a parquet footer")
        length = int.from_bytes(raw[-8:-4], "little") + 8
        if length > len(raw):
            raise self._damaged(p, "its footer length is wrong")
        try:
            metadata = pq.read_metadata(pa.BufferReader(raw[-length:]))
        except (pa.ArrowException, OSError) as exc:
            raise self._damaged(p, f"its footer cannot be parsed ({short_text(exc)})") from None
        found = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
        if found != list(part.row_groups):
            raise self._damaged(p, "its row groups differ from the recorded ones")
        return metadata

    def _damaged(self, p: int, what: str) -> IntegrityError:
        part = self.selection.partitions[p]
        dataset = self.selection.dataset
        return IntegrityError(f"partition {part.name} is damaged: {what}; nothing of it was "
                              f"returned. Run 'pygestor verify {dataset} --repair' (the file is "
                              f"set aside) and 'pygestor download {self.selection.ref}' to fetch "
                              "it again")

    def _missing(self, p: int) -> IntegrityError:
        part = self.selection.partitions[p]
        return IntegrityError(f"partition {part.name} is recorded as downloaded but its file is "
                              f"gone (removed meanwhile?); run 'pygestor verify "
                              f"{self.selection.dataset} --repair' and read again")

    def _prepare(self, p: int) -> tuple[list[str] | None, dict[str, list[int]],
                                         pq.FileMetaData]:
        """Columns to read, leaf indices by column, and footer of partition ``p``."""
        metadata = self.metadata(p)
        with self._lock:
            known = self._layout.get(p)
        if known is None:
            schema = metadata.schema.to_arrow_schema()
            leaves = leaf_map(schema)
            if sum(len(v) for v in leaves.values()) != metadata.num_columns:
                leaves = {}
            wanted = None
            if self.columns is not None:
                extra = [c for c in filter_columns(self.filters, schema) if c not in self.columns]
                wanted = [*self.columns, *extra]
            if self.selection.schema is not None and wanted is not None:
                wanted = [c for c in wanted if c in schema.names]  # the others become nulls
            known = (wanted, leaves)
            with self._lock:
                self._layout[p] = known
        return known[0], known[1], metadata

    # ------------------------------------------------------------------ rows
    def read(self, p: int, i: int) -> pa.Table:
        """Row group ``i`` of partition ``p``: the selected columns of the rows that pass."""
        if self._speculating(p, i):
            with self._lock:
                known = p in self._metadata
            if not known:
                self.metadata(p, speculate=self._first_group_guess(p))
        columns, leaves, metadata = self._prepare(p)
        if self.filters is not None and i not in self.may_match(p):
            return self._empty(metadata, columns)
        return self._finish(self._read_verified(p, i, columns, leaves, metadata))

    def may_match(self, p: int) -> frozenset[int]:
        """Row groups of partition ``p`` whose statistics do not rule out every row passing the
        filters (pyarrow's own pruning: ``ParquetFileFragment.subset``, over the verified
        footer). All of them without filters, or when the statistics cannot tell."""
        with self._lock:
            known = self._matching.get(p)
        if known is not None:
            return known
        metadata = self.metadata(p)
        everything = frozenset(range(metadata.num_row_groups))
        expression = None if self.filters is None else to_expression(
            self.filters, self.selection.schema or metadata.schema.to_arrow_schema())
        if expression is None:
            return everything
        sink = pa.BufferOutputStream()
        metadata.write_metadata_file(sink)  # a parquet file holding only this footer
        fragment = pads.ParquetFileFormat().make_fragment(pa.BufferReader(sink.getvalue()))
        try:
            found = frozenset(rg.id for rg in fragment.subset(
                filter=expression, schema=self.selection.schema).row_groups)
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            found = everything  # the statistics cannot tell: read and filter every row
        with self._lock:
            self._matching[p] = found
        return found

    def _read_verified(self, p: int, i: int, columns: list[str] | None,
                       leaves: dict[str, list[int]], metadata: pq.FileMetaData) -> pa.Table:
        """Row group ``i`` with every page checksum verified and its row count checked; remote
        bytes that fail are fetched once more (damage in transit) before the partition is
        declared damaged."""
        local = self._local_path(p)
        expected = self.selection.partitions[p].row_groups[i]
        for attempt in (0, 1):
            try:
                if local is not None:
                    table = self._local_file(p, local, metadata).read_row_group(
                        i, columns=columns, use_threads=True)
                else:
                    table = self._read_remote(p, i, columns, leaves, metadata)
                if table.num_rows == expected:
                    return table
                what = f"row group {i} holds {table.num_rows} rows, not {expected}"
            except FileNotFoundError:
                raise self._missing(p) from None
            except (pa.ArrowException, OSError, ValueError) as exc:
                what = f"row group {i} cannot be read ({short_text(exc)})"
            if local is not None or attempt == 1:
                raise self._damaged(p, what)
            log.warning("%s: %s; fetching it again", self.selection.url(p), what)
        raise AssertionError("unreachable")

    def count(self, p: int, i: int) -> int:
        """How many rows of row group ``i`` of partition ``p`` pass the filters."""
        if self.filters is None:
            return self.selection.partitions[p].row_groups[i]
        return self.read(p, i).num_rows

    def _finish(self, table: pa.Table) -> pa.Table:
        if self.selection.schema is not None:
            from pygestor.pipelines.formats import conform

            union = self.selection.schema
            if self.columns is not None:
                keep = set(self.columns) | set(filter_columns(self.filters, union))
                union = pa.schema([f for f in union if f.name in keep])
            table = conform(table, union, fill_missing=True)
        if self.filters is not None:
            if self._expression is None:
                self._expression = to_expression(self.filters, table.schema)
            try:
                table = table.filter(self._expression)
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
                raise ConfigError(f"cannot apply filters {self.filters!r}: "
                                  f"{str(exc).splitlines()[0]}") from None
        if self.columns is not None and table.column_names != self.columns:
            table = table.select(self.columns)
        return table

    def _empty(self, metadata: pq.FileMetaData, columns: list[str] | None) -> pa.Table:
        schema = self.selection.schema or metadata.schema.to_arrow_schema()
        if columns is not None:
            schema = pa.schema([schema.field(c) for c in columns if c in schema.names])
        table = schema.empty_table()
        return table.select(self.columns) if self.columns is not None else table

    def _first_group_guess(self, p: int) -> tuple[int, int] | None:
        """The bytes the first row group probably spans (data is written in row-group order at
        about the same bytes per row), or None if unknown or large."""
        part = self.selection.partitions[p]
        if not part.footer or not part.row_groups or not sum(part.row_groups):
            return None
        data = part.footer[0] - 4
        share = part.row_groups[0] / sum(part.row_groups)
        end = min(part.footer[0], 4 + int(data * share * 1.05) + (64 << 10))
        return (4, end) if end - 4 <= SPECULATE_MAX else None

    def _read_remote(self, p: int, i: int, columns: list[str] | None,
                        leaf_map_: dict[str, list[int]], metadata: pq.FileMetaData) -> pa.Table:
        """The column chunks of row group ``i``, merged with ``fsspec.utils.merge_offset_ranges``
        and handed to pyarrow as a file of known parts (``fsspec.caching.KnownPartsOfAFile``);
        the verified footer is given to pyarrow as parsed metadata, so it is never read again.
        """
        from fsspec.spec import AbstractBufferedFile
        from fsspec.utils import merge_offset_ranges

        part = self.selection.partitions[p]
        row_group = metadata.row_group(i)
        leaves = [leaf for c in columns for leaf in leaf_map_[c]] \
            if leaf_map_ and columns is not None else list(range(row_group.num_columns))
        chunks = sorted(chunk_range(row_group.column(j)) for j in leaves)
        _, starts, ends = merge_offset_ranges([part.path] * len(chunks), [a for a, _ in chunks],
                                              [b for _, b in chunks], max_gap=MERGE_GAP,
                                              sort=False)
        wanted = list(zip(starts, ends, strict=True))
        known: dict[tuple[int, int], bytes] = {}
        with self._lock:
            speculated = self._speculated.pop(p, None) if i == 0 else None
        if speculated is not None:  # fetched with the footer
            start, blob = speculated
            for a, b in wanted:
                if start <= a and b <= start + len(blob):
                    known[(a, b)] = blob[a - start:b - start]
            wanted = [r for r in wanted if r not in known]
        if wanted:
            fs = self.selection.storage.fs
            # checked inside the retried call: cat_ranges returns failed ranges as exceptions
            known.update(self._fetch(lambda: _checked(wanted, fs.cat_ranges(
                [part.path] * len(wanted), [a for a, _ in wanted], [b for _, b in wanted])),
                p, f"row group {i}", requests=len(wanted)))
        file = AbstractBufferedFile(None, part.path, mode="rb", cache_type="parts",
                                    cache_options={"data": known, "strict": True},
                                    size=part.size)
        return pq.ParquetFile(file, metadata=metadata, page_checksum_verification=self.verify
                              ).read_row_group(i, columns=columns, use_threads=True)

    def _fetch(self, fn: Callable[[], T], p: int, what: str, requests: int = 1) -> T:
        settings = self.selection.settings
        self.requests += requests
        return call_with_retries(fn, attempts=settings.retries, backoff=settings.retry_backoff,
                                 what=f"reading {what} of {self.selection.url(p)}")

    # ------------------------------------------------------------------ local files and cache
    def _local_path(self, p: int) -> str | None:
        part = self.selection.partitions[p]
        if self.selection.is_local:
            return part.path
        if self._cache is None:
            return None
        fs = self.selection.storage.fs
        return self._cache.get(part.checksum or f"{part.path}:{part.size}", part.size,
                               lambda tmp: self._fetch(lambda: fs.get_file(part.path, tmp),
                                                       p, "partition"),
                               what=self.selection.url(p), checksum=part.checksum)

    def _local_file(self, p: int, path: str, metadata: pq.FileMetaData) -> pq.ParquetFile:
        """The open reader of a local partition for this thread (pyarrow's reader is not shared
        between threads). One per thread: an open reader keeps the buffers of its last read
        (the compressed column chunks of a row group), so readers of partitions this thread
        has moved past are closed."""
        key = (os.getpid(), threading.get_ident())
        with self._lock:
            current = self._local_files.get(key)
        if current is not None and current[0] == p:
            return current[1]
        parquet = pq.ParquetFile(path, metadata=metadata,
                                 page_checksum_verification=self.verify)
        with self._lock:
            self._local_files[key] = (p, parquet)
        if current is not None:
            current[1].close()
        return parquet

    def close(self) -> None:
        with self._lock:
            for _, parquet in self._local_files.values():
                parquet.close()
            self._local_files.clear()


def _checked(ranges: Sequence[tuple[int, int]], blobs: Sequence[Any]
             ) -> dict[tuple[int, int], bytes]:
    """``cat_ranges`` results by range; a failed or short range raises (and is retried)."""
    for (a, b), blob in zip(ranges, blobs, strict=True):
        if isinstance(blob, BaseException):
            raise blob
        if len(blob) != b - a:
            raise TransientError(f"short read: asked {b - a} bytes at {a}, got {len(blob)}")
    return dict(zip(ranges, blobs, strict=True))
