"""Reading row groups of downloaded partitions, from local disk or straight from object stores.

The unit of work is one row group of one partition. :class:`Source` is the picklable description
of what to read, taken from the catalog once (paths, sizes, row-group row counts, footer ranges,
checksums); :class:`RowGroupReader` reads row groups in one process:

- local roots: pyarrow's own file reader (no fsspec in the hot path);
- remote roots (S3, GCS, ...): the footer is fetched with one ranged request at the range the
  catalog recorded (no HEAD, no listing), then for each row group only the byte ranges of the
  needed column chunks are fetched (adjacent chunks merged, large ones split) with
  ``fs.cat_ranges``, which object-store filesystems run concurrently; pyarrow decodes them from
  memory. Every fetch is retried with back-off (``settings.retries``, ``settings.retry_backoff``);
- with ``settings.cache_dir`` set and a remote root, whole partitions are copied into a local
  :class:`~pygestor.loaders.cache.PartitionCache` on first use and read from there afterwards.

:func:`prefetch` runs reads in background threads a bounded number of row groups ahead, in order.
Filesystem objects are made per process (``Storage.fs`` checks the pid), so forked DataLoader
workers never share a client with their parent.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import logging
import os
import threading
import warnings
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from pygestor.backends.retry import TransientError, call_with_retries
from pygestor.backends.storage import Storage
from pygestor.catalog import Dataset
from pygestor.config import Settings
from pygestor.errors import (
    ConfigError,
    IntegrityError,
    NotDownloadedError,
    PartialDataWarning,
    SourceError,
    short_text,
)

if TYPE_CHECKING:
    from pygestor.loaders.cache import PartitionCache
    from pygestor.manager import Manager

log = logging.getLogger("pygestor.loaders")
T = TypeVar("T")
R = TypeVar("R")

MERGE_GAP = 1 << 20
"""Column chunks closer than this many bytes are fetched with one request."""
SPLIT_ABOVE = 16 << 20
"""Ranges larger than this are fetched as several concurrent requests of ``SPLIT_SIZE``."""
SPLIT_SIZE = 8 << 20
PREFETCH_BYTES = 96 << 20
"""Target compressed bytes in flight when prefetching from a remote root."""
TAIL_GUESS = 64 << 10
SPECULATE_MAX = 64 << 20
"""Largest first-row-group guess fetched together with a footer."""


# ============================================================================================
# What to read


@dataclass(frozen=True)
class PartitionRef:
    """One downloaded partition as the catalog recorded it."""

    name: str  # "<subset>/<partition>", for messages
    path: str  # filesystem path in the storage root
    size: int
    row_groups: tuple[int, ...]
    footer: tuple[int, int] | None
    checksum: str | None
    footer_checksum: str | None = None


class Source:
    """The downloaded partitions a reference covers, and how to reach their storage.

    Picklable (settings and catalog facts only); the filesystem is made lazily in each process.
    Global row group ``g`` is row group ``rg_index[g]`` of partition ``rg_partition[g]``.
    """

    def __init__(self, settings: Settings, ref: str, dataset: str,
                 partitions: Sequence[PartitionRef], is_local: bool,
                 schema: pa.Schema | None = None) -> None:
        self.settings = settings
        self.ref = ref
        self.dataset = dataset
        self.partitions = tuple(partitions)
        self.is_local = is_local
        #: the schema every row group is conformed to (several subsets read with
        #: ``schema="union"``); None: as stored
        self.schema = schema
        counts = [len(p.row_groups) for p in self.partitions]
        self.rg_partition = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
        self.rg_index = np.concatenate([np.arange(c, dtype=np.int64) for c in counts]) \
            if counts else np.zeros(0, dtype=np.int64)
        self.sizes = np.asarray([n for p in self.partitions for n in p.row_groups], dtype=np.int64)
        self._storage: Storage | None = None

    # ------------------------------------------------------------------ building
    @classmethod
    def open(cls, manager: Manager, ref: str, schema: str | None = None) -> Source:
        """Read the catalog once: the downloaded partitions of ``ref`` in catalog order.

        Args:
            manager: the storage root and catalog.
            ref: a dataset, subset or partition reference.
            schema: how subsets with different columns are read together: refused (None or
                ``"strict"``, the error names them) or ``"union"`` (missing columns are nulls,
                types widened where lossless).

        Reading a reference of which only some partitions are downloaded follows the
        ``partial_reads`` setting: a warning (once per process and reference), an error, or
        nothing.
        """
        from pygestor.schemas import check_mode

        mode = check_mode(schema)
        record, selected = manager._select(ref)
        ready = [(s, p) for s, p in selected if p.downloaded]
        if not ready:
            raise NotDownloadedError(f"nothing of {ref!r} is downloaded yet ({len(selected)} "
                                     f"partitions registered); run 'pygestor download {ref}'")
        _check_partial(manager.settings, ref, len(ready), len(selected))
        parts = []
        for subset, part in ready:
            if part.size is None or part.row_groups is None:
                raise IntegrityError(f"the record of {record.name}/{subset.name}/{part.name} "
                                     "lacks its size or row groups; run 'pygestor verify "
                                     f"{record.name} --repair'")
            parts.append(PartitionRef(
                name=f"{record.name}/{subset.name}/{part.name}",
                path=manager.partition_path(record.name, subset.name, part.name),
                size=int(part.size), row_groups=tuple(int(n) for n in part.row_groups),
                footer=tuple(part.footer) if part.footer else None,  # type: ignore[arg-type]
                checksum=part.checksum, footer_checksum=part.footer_checksum))
        subsets = list(dict.fromkeys(s.name for s, _ in ready))
        unified = _subsets_schema(record, subsets, mode)
        source = cls(manager.settings, ref, record.name, parts, manager.storage.is_local,
                     schema=unified)
        source._storage = manager.storage
        return source

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_storage"] = None
        return state

    # ------------------------------------------------------------------ views
    @property
    def storage(self) -> Storage:
        if self._storage is None:
            factory = getattr(Storage, "for_settings", None)  # with time-outs and retries
            self._storage = factory(self.settings) if factory is not None else \
                Storage(self.settings.data_dir, self.settings.storage_options)
        return self._storage

    @property
    def num_rows(self) -> int:
        return int(self.sizes.sum())

    def url(self, p: int) -> str:
        return self.storage.url_of(self.partitions[p].path)

    def locate(self, g: int) -> tuple[int, int]:
        """(partition, row group inside it) of global row group ``g``."""
        return int(self.rg_partition[g]), int(self.rg_index[g])

    def digest(self) -> str:
        """A digest of the partitions' identities (names, sizes, checksums, row groups)."""
        h = hashlib.blake2b(digest_size=16, person=b"pygestor-data")
        for p in self.partitions:
            h.update(json.dumps([p.name, p.size, p.checksum, list(p.row_groups)]).encode())
        return h.hexdigest()

    def average_row_group_bytes(self) -> float:
        groups = sum(len(p.row_groups) for p in self.partitions)
        return sum(p.size for p in self.partitions) / max(groups, 1)

    def cache(self) -> PartitionCache | None:
        """The partition cache to use, or None (no cache_dir, or a local root)."""
        if self.is_local or not self.settings.cache_dir:
            return None
        from pygestor.loaders.cache import PartitionCache

        return PartitionCache(self.settings.cache_dir, self.settings.cache_max_bytes)


_PARTIAL_WARNED: set[tuple[str, str, int, int]] = set()


def _check_partial(settings: Settings, ref: str, ready: int, total: int) -> None:
    """Say once that a read covers only the downloaded partitions (``partial_reads``)."""
    if ready == total or settings.partial_reads == "allow":
        return
    message = (f"{ref!r}: reading {ready} of {total} partitions; the other {total - ready} are "
               f"not downloaded ('pygestor download {ref}' fetches them)")
    if settings.partial_reads == "error":
        raise NotDownloadedError(f"{message}. This job asks for complete data "
                                 "(partial_reads = 'error')")
    key = (settings.data_dir, ref, ready, total)
    if key not in _PARTIAL_WARNED:
        _PARTIAL_WARNED.add(key)
        warnings.warn(message, PartialDataWarning, stacklevel=4)


def _subsets_schema(record: Dataset, subsets: list[str], mode: str) -> pa.Schema | None:
    """None when the subsets read share their columns; their union with ``mode="union"``;
    an error naming them otherwise."""
    if len(subsets) < 2:
        return None
    from pygestor.pipelines.formats import schema_from_text
    from pygestor.schemas import reconcile

    known = [(name, record.subsets[name].schema) for name in subsets]
    if any(text is None for _, text in known):
        return None  # schemas unknown (older records): read as stored
    schemas = [(name, schema_from_text(text)) for name, text in known]  # type: ignore[arg-type]
    if all(s.equals(schemas[0][1]) for _, s in schemas[1:]):
        return None
    try:
        unified = reconcile(schemas, mode, what="subset", fix=f"read one subset of "
                            f"{record.name!r} at a time")
    except SourceError as exc:
        raise ConfigError(f"{record.name!r} covers subsets with different columns: {exc}") \
            from None
    return unified


# ============================================================================================
# Filters: validation helpers and row-group pruning by statistics


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


def row_group_may_match(row_group: pq.RowGroupMetaData, leaf_of: dict[str, int],
                        groups: list[list[tuple[str, str, Any]]] | None) -> bool:
    """False only when min/max statistics prove no row of the row group passes the filters.

    Conservative: unknown statistics, nested columns, or values that do not compare with the
    statistics keep the row group.
    """
    if not groups:
        return True
    return any(all(_term_may_match(row_group, leaf_of, term) for term in group)
               for group in groups)


def _term_may_match(row_group: pq.RowGroupMetaData, leaf_of: dict[str, int],
                    term: tuple[str, str, Any]) -> bool:
    column, op, value = term
    leaf = leaf_of.get(column)
    if leaf is None:
        return True
    try:
        stats = row_group.column(leaf).statistics
        if stats is None or not stats.has_min_max:
            return True
        low, high = stats.min, stats.max
        if op in ("=", "=="):
            return bool(low <= value <= high)
        if op == "<":
            return bool(low < value)
        if op == "<=":
            return bool(low <= value)
        if op == ">":
            return bool(high > value)
        if op == ">=":
            return bool(high >= value)
        if op == "in":
            return any(low <= v <= high for v in value)
    except Exception:  # noqa: BLE001 - incomparable values: keep the row group
        return True
    return True


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


def merge_ranges(ranges: Iterable[tuple[int, int]], gap: int = MERGE_GAP
                 ) -> list[tuple[int, int]]:
    """Sort ranges and merge those closer than ``gap`` bytes."""
    out: list[tuple[int, int]] = []
    for start, end in sorted(ranges):
        if out and start <= out[-1][1] + gap:
            out[-1] = (out[-1][0], max(out[-1][1], end))
        else:
            out.append((start, end))
    return out


def split_ranges(ranges: Iterable[tuple[int, int]], above: int = SPLIT_ABOVE,
                 size: int = SPLIT_SIZE) -> list[tuple[int, int]]:
    """Cut ranges longer than ``above`` into pieces of ``size`` (fetched concurrently)."""
    out: list[tuple[int, int]] = []
    for start, end in ranges:
        if end - start <= above:
            out.append((start, end))
            continue
        for piece in range(start, end, size):
            out.append((piece, min(end, piece + size)))
    return out


class SparseFile:
    """A read-only file over known byte ranges of a remote file (what pyarrow needs to decode
    some column chunks). A read outside the known ranges is fetched on demand (``fallback``)."""

    def __init__(self, parts: Sequence[tuple[int, Any]], size: int,
                 fallback: Callable[[int, int], bytes]) -> None:
        self._parts = sorted(parts, key=lambda part: part[0])
        self._starts = [start for start, _ in self._parts]
        self._size = size
        self._fallback = fallback
        self._pos = 0
        self.closed = False
        self.misses = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def seek(self, offset: int, whence: int = 0) -> int:
        if whence == 0:
            self._pos = offset
        elif whence == 1:
            self._pos += offset
        else:
            self._pos = self._size + offset
        return self._pos

    def tell(self) -> int:
        return self._pos

    def size(self) -> int:
        return self._size

    def read(self, n: int = -1) -> Any:
        if n is None or n < 0:
            n = self._size - self._pos
        n = max(0, min(n, self._size - self._pos))
        index = bisect.bisect_right(self._starts, self._pos) - 1
        if index >= 0:
            start, data = self._parts[index]
            if self._pos + n <= start + len(data):
                offset = self._pos - start
                self._pos += n
                return memoryview(data)[offset:offset + n]
        self.misses += 1
        data = self._fallback(self._pos, self._pos + n)
        self._pos += len(data)
        return data

    def close(self) -> None:
        self.closed = True

    def __enter__(self) -> SparseFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# ============================================================================================
# Reading


class RowGroupReader:
    """Reads (and optionally filters) row groups of a :class:`Source` in this process.

    Args:
        source: what to read.
        columns: columns to return (None: all).
        filters: list filters or a pyarrow Expression (already validated); rows that do not pass
            are removed, and row groups whose statistics exclude every row are not read.
        cache: use the partition cache when the source is remote and ``cache_dir`` is set
            (None: whenever ``cache_dir`` is set).
    """

    #: verify footers against the record and page checksums (always, in Pygestor; the loader
    #: benchmark switches it off in a process of its own to measure what verification costs)
    verify: ClassVar[bool] = True

    def __init__(self, source: Source, columns: list[str] | None = None,
                 filters: Any = None, cache: bool | None = None) -> None:
        self.source = source
        self.columns = None if columns is None else list(columns)
        self.filters = filters
        self._groups = dnf_groups(filters)
        self._expression: pads.Expression | None = None
        self._cache = source.cache() if cache is not False else None
        if cache is True and self._cache is None and not source.is_local:
            raise ConfigError("cache=True needs settings.cache_dir (a local folder for the "
                              "partition cache)")
        self._lock = threading.Lock()
        self._metadata: OrderedDict[int, Future[pq.FileMetaData]] = OrderedDict()
        self._local_files: dict[tuple[int, int], tuple[int, pq.ParquetFile]] = {}
        self._layout: dict[int, tuple[list[str] | None, dict[str, list[int]]]] = {}
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
        if self.source.schema is not None:
            return self.source.schema
        if self._speculating(0, 0):
            with self._lock:
                known = 0 in self._metadata
            if not known:
                return self.metadata(0, speculate=self._first_group_guess(0)) \
                    .schema.to_arrow_schema()
        return self.metadata(0).schema.to_arrow_schema()

    def _speculating(self, p: int, i: int) -> bool:
        return i == 0 and self.columns is None and self.filters is None \
            and not self.source.is_local and self._cache is None

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
                log.warning("footer of %s failed its check; fetching it again", self.source.url(p))
                with self._lock:
                    self._speculated.pop(p, None)
        raise AssertionError("unreachable")

    def _local_footer(self, p: int, path: str) -> bytes:
        part = self.source.partitions[p]
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
        part = self.source.partitions[p]
        fs = self.source.storage.fs
        try:
            if part.footer and speculate is not None:
                start, length = part.footer
                ranges = [(start, start + length), speculate]
                raw, blob = self._fetch(lambda: [data for _, data in _join_adjacent(
                    ranges, fs.cat_ranges([part.path] * 2, [a for a, _ in ranges],
                                          [b for _, b in ranges]))],
                    p, "footer and first row group", requests=2)
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

        part = self.source.partitions[p]
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
        part = self.source.partitions[p]
        dataset = self.source.dataset
        return IntegrityError(f"partition {part.name} is damaged: {what}; nothing of it was "
                              f"returned. Run 'pygestor verify {dataset} --repair' (the file is "
                              f"set aside) and 'pygestor download {self.source.ref}' to fetch it "
                              "again")

    def _missing(self, p: int) -> IntegrityError:
        part = self.source.partitions[p]
        return IntegrityError(f"partition {part.name} is recorded as downloaded but its file is "
                              f"gone (removed meanwhile?); run 'pygestor verify "
                              f"{self.source.dataset} --repair' and read again")

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
            if self.source.schema is not None and wanted is not None:
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
        row_group = metadata.row_group(i)
        if self._groups is not None:
            leaf_first = {name: idx[0] for name, idx in leaves.items() if len(idx) == 1}
            if not row_group_may_match(row_group, leaf_first, self._groups):
                return self._empty(metadata, columns)
        return self._finish(self._read_verified(p, i, columns, leaves, metadata))

    def _read_verified(self, p: int, i: int, columns: list[str] | None,
                       leaves: dict[str, list[int]], metadata: pq.FileMetaData) -> pa.Table:
        """Row group ``i`` with every page checksum verified and its row count checked; remote
        bytes that fail are fetched once more (damage in transit) before the partition is
        declared damaged."""
        local = self._local_path(p)
        expected = self.source.partitions[p].row_groups[i]
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
            log.warning("%s: %s; fetching it again", self.source.url(p), what)
        raise AssertionError("unreachable")

    def count(self, p: int, i: int) -> int:
        """How many rows of row group ``i`` of partition ``p`` pass the filters."""
        if self.filters is None:
            return self.source.partitions[p].row_groups[i]
        return self.read(p, i).num_rows

    def _finish(self, table: pa.Table) -> pa.Table:
        if self.source.schema is not None:
            from pygestor.pipelines.formats import conform

            union = self.source.schema
            if self.columns is not None:
                keep = set(self.columns) | set(filter_columns(self.filters, union))
                union = pa.schema([f for f in union if f.name in keep])
            table = conform(table, union, fill_missing=True)
        if self.filters is not None:
            if self._expression is None:
                from pygestor.loaders.arrow import to_expression

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
        schema = self.source.schema or metadata.schema.to_arrow_schema()
        if columns is not None:
            schema = pa.schema([schema.field(c) for c in columns if c in schema.names])
        table = schema.empty_table()
        return table.select(self.columns) if self.columns is not None else table

    def _first_group_guess(self, p: int) -> tuple[int, int] | None:
        """The bytes the first row group probably spans (data is written in row-group order at
        about the same bytes per row), or None if unknown or large."""
        part = self.source.partitions[p]
        if not part.footer or not part.row_groups or not sum(part.row_groups):
            return None
        data = part.footer[0] - 4
        share = part.row_groups[0] / sum(part.row_groups)
        end = min(part.footer[0], 4 + int(data * share * 1.05) + (64 << 10))
        return (4, end) if end - 4 <= SPECULATE_MAX else None

    def _read_remote(self, p: int, i: int, columns: list[str] | None,
                     leaf_map_: dict[str, list[int]], metadata: pq.FileMetaData) -> pa.Table:
        part = self.source.partitions[p]
        row_group = metadata.row_group(i)
        if leaf_map_ and columns is not None:
            leaves = [leaf for c in columns for leaf in leaf_map_[c]]
        else:
            leaves = list(range(row_group.num_columns))
        wanted = merge_ranges(chunk_range(row_group.column(j)) for j in leaves)
        parts: list[tuple[int, bytes]] = []
        with self._lock:
            speculated = self._speculated.pop(p, None) if i == 0 else None
        if speculated is not None:  # fetched with the footer
            start, blob = speculated
            covered = [(a, b) for a, b in wanted if start <= a and b <= start + len(blob)]
            view = memoryview(blob)
            parts += [(a, view[a - start:b - start]) for a, b in covered]
            wanted = [r for r in wanted if r not in covered]
        ranges = split_ranges(wanted)
        fs = self.source.storage.fs
        if ranges:
            # checked inside the retried call: cat_ranges returns failed ranges as exceptions
            parts += self._fetch(lambda: _join_adjacent(ranges, fs.cat_ranges(
                [part.path] * len(ranges), [a for a, _ in ranges], [b for _, b in ranges])),
                p, f"row group {i}", requests=len(ranges))
        sparse = SparseFile(parts, part.size, fallback=lambda a, b: self._fetch(
            lambda: fs.cat_file(part.path, start=a, end=b), p, "extra range"))
        table = pq.ParquetFile(sparse, metadata=metadata, page_checksum_verification=self.verify
                               ).read_row_group(i, columns=columns, use_threads=True)
        if sparse.misses:
            log.debug("%s row group %d: %d reads outside the planned ranges",
                      self.source.url(p), i, sparse.misses)
        return table

    def _fetch(self, fn: Callable[[], T], p: int, what: str, requests: int = 1) -> T:
        settings = self.source.settings
        self.requests += requests
        return call_with_retries(fn, attempts=settings.retries, backoff=settings.retry_backoff,
                                 what=f"reading {what} of {self.source.url(p)}")

    # ------------------------------------------------------------------ local files and cache
    def _local_path(self, p: int) -> str | None:
        part = self.source.partitions[p]
        if self.source.is_local:
            return part.path
        if self._cache is None:
            return None
        fs = self.source.storage.fs
        return self._cache.get(part.checksum or f"{part.path}:{part.size}", part.size,
                               lambda tmp: self._fetch(lambda: fs.get_file(part.path, tmp),
                                                       p, "partition"),
                               what=self.source.url(p), checksum=part.checksum)

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


def _join_adjacent(ranges: Sequence[tuple[int, int]], blobs: Sequence[bytes]
                   ) -> list[tuple[int, bytes]]:
    """Re-join the pieces of split ranges into contiguous blobs."""
    out: list[tuple[int, bytes]] = []
    pending: list[bytes] = []
    start = end = -1
    for (a, b), blob in zip(ranges, blobs, strict=True):
        if isinstance(blob, BaseException):
            raise blob
        if len(blob) != b - a:
            raise TransientError(f"short read: asked {b - a} bytes at {a}, got {len(blob)}")
        if pending and a == end:
            pending.append(blob)
            end = b
            continue
        if pending:
            out.append((start, pending[0] if len(pending) == 1 else b"".join(pending)))
        pending, start, end = [blob], a, b
    if pending:
        out.append((start, pending[0] if len(pending) == 1 else b"".join(pending)))
    return out


# ============================================================================================
# Prefetching


def default_depth(source: Source) -> int:
    """Row groups to read ahead: 2 on local disk; remote: enough to keep about
    :data:`PREFETCH_BYTES` in flight (2 to 16)."""
    if source.is_local:
        return 2
    per_group = max(source.average_row_group_bytes(), 1.0)
    return int(min(16, max(2, PREFETCH_BYTES // per_group)))


def prefetch(fn: Callable[[T], R], items: Iterable[T], depth: int,
             threads: int | None = None, start: int | None = None) -> Iterator[R]:
    """``map(fn, items)`` in order, running up to ``depth`` calls ahead in background threads.

    The window opens gradually: ``start`` calls at first (default 1 for deep windows), one more
    each time a result is taken, so the first result does not compete with ``depth`` others
    for the network. Memory is bounded by ``depth`` results. Closing the iterator early cancels
    what has not started and waits for what has.
    """
    if depth <= 0:
        for item in items:
            yield fn(item)
        return
    iterator = iter(items)
    pool = ThreadPoolExecutor(max_workers=threads or depth, thread_name_prefix="pygestor-read")
    pending: deque[Future[R]] = deque()
    window = min(depth, start if start is not None else (1 if depth > 2 else depth))

    def fill() -> None:
        for item in iterator:
            pending.append(pool.submit(fn, item))
            if len(pending) >= window:
                break

    try:
        fill()
        while pending:
            head = pending.popleft()
            result = head.result()
            window = min(depth, window + 1)
            fill()
            yield result
    finally:
        for future in pending:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


# ============================================================================================
# Batching


def rebatch(tables: Iterable[pa.Table], batch_size: int) -> Iterator[pa.RecordBatch]:
    """Cut a stream of tables into record batches of exactly ``batch_size`` rows (the last one
    may be shorter). Slices are zero-copy; a batch that spans two tables is combined."""
    carry: pa.Table | None = None
    for table in tables:
        if table.num_rows == 0:
            continue
        if carry is not None:
            table = pa.concat_tables([carry, table])
            carry = None
        offset, rows = 0, table.num_rows
        while rows - offset >= batch_size:
            yield to_batch(table.slice(offset, batch_size))
            offset += batch_size
        if offset < rows:
            carry = table.slice(offset)
    if carry is not None and carry.num_rows:
        yield to_batch(carry)


def to_batch(table: pa.Table) -> pa.RecordBatch:
    """One record batch holding all of ``table`` (zero-copy when every column is one chunk)."""
    if all(column.num_chunks == 1 for column in table.columns):
        return pa.RecordBatch.from_arrays([column.chunk(0) for column in table.columns],
                                          schema=table.schema)
    combined = table.combine_chunks()
    batches = combined.to_batches()
    if len(batches) == 1:
        return batches[0]
    if not batches:
        return pa.RecordBatch.from_pylist([], schema=table.schema)
    return pa.RecordBatch.from_arrays([column.chunk(0) if column.num_chunks == 1
                                       else pa.concat_arrays(column.chunks)
                                       for column in combined.columns], schema=table.schema)
