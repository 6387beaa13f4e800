"""Column statistics of a downloaded subset, computed once and stored with its record.

For every column: its type and how many values are null; then, by kind of column,

- numbers, dates, times, durations: min and max, a histogram of :data:`HISTOGRAM_BINS` bins
  (one bin per value when an integer column spans fewer values), mean and standard deviation
  for numbers, and NaNs for floats;
- strings, booleans, dictionary-encoded columns and integers: how many distinct values (exact,
  up to :data:`MAX_DISTINCT`) and the :data:`TOP_VALUES` most frequent, with their counts;
- strings, binaries and lists: a histogram of their lengths (characters, bytes, items);
- structs and anything else: nulls only.

Null counts, minima and maxima come from the parquet statistics in the partitions' footers
where every row group has them; what footers cannot tell (histograms, distinct and frequent
values, means) is computed from the data, read once through the verified reader
(:class:`~pygestor.loaders.stream.RowGroupReader`), a row group at a time with read-ahead, so
memory stays bounded by a few row groups and the value counters' caps. Numeric columns whose
footers lack a minimum or maximum are read once more, alone, to bin them.

The result is stored in the subset's record (``Subset.extra["stats"]``) with the digest of the
partitions it describes, so a reader can tell when downloads or removals made it stale.
"""

from __future__ import annotations

import math
import threading
import time
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from pygestor.errors import CancelledError, ConfigError, PartialDataWarning

if TYPE_CHECKING:
    from pygestor.loaders.stream import RowGroupReader
    from pygestor.manager import Manager
    from pygestor.selection import Selection

HISTOGRAM_BINS = 20
TOP_VALUES = 10
#: distinct values counted exactly per column; beyond, only "more than" is known
MAX_DISTINCT = 100_000
#: bytes of distinct string values kept per column while counting
MAX_VALUE_BYTES = 32 << 20
#: characters of a frequent value kept in the record
MAX_VALUE_CHARS = 200
#: distinct length buckets kept per column before the buckets are made twice as wide
MAX_LENGTH_BUCKETS = 4096
STATS_KEY = "stats"
STATS_VERSION = 1
Progress = Callable[[int, int], None]


def compute_column_stats(manager: Manager, ref: str, *, progress: Progress | None = None,
                         cancel: threading.Event | None = None) -> dict[str, Any]:
    """Compute the statistics of the subset ``ref`` and store them in its record.

    Args:
        manager: the storage root and catalog.
        ref: a subset reference (``dataset/subset``) with downloaded partitions.
        progress: called with (row groups read, row groups to read) as the work goes on.
        cancel: when set, the work stops between row groups with :class:`CancelledError`
            (nothing is stored).
    """
    target = manager.resolve(ref)
    if target.subset is None or target.partition is not None:
        raise ConfigError(f"{ref!r} is not a subset; statistics are per subset "
                          "(dataset/subset)")
    stats = column_stats(manager, ref, progress=progress, cancel=cancel)

    def store(record: Any) -> None:
        record.subset(target.subset).extra[STATS_KEY] = stats
    manager.catalog.update(target.dataset, store)
    return stats


def column_stats(manager: Manager, ref: str, *, progress: Progress | None = None,
                 cancel: threading.Event | None = None) -> dict[str, Any]:
    """The statistics of the downloaded rows of ``ref`` (computed, not stored)."""
    from pygestor.catalog import now
    from pygestor.loaders.stream import RowGroupReader

    started = time.monotonic()
    source = manager.select(ref)
    reader = RowGroupReader(source)
    try:
        schema = reader.schema()
        columns = [accumulator(field) for field in schema]
        footer = _footer_facts(reader, source, schema)
        for column in columns:
            column.use_footer(footer.get(column.field.name))
        pending = [c for c in columns if isinstance(c, Numbers) and c.edges is None]
        ticks = _Ticks(progress, cancel, len(source.row_group_sizes) * (2 if pending else 1))
        if pending:  # minima and maxima the footers lack: read those columns alone first
            alone = RowGroupReader(source, [c.field.name for c in pending])
            try:
                _scan(alone, lambda table: [c.add_range(table.column(c.field.name))
                                            for c in pending], ticks)
            finally:
                alone.close()
            for column in pending:
                column.fix_edges()
        _scan(reader, lambda table: [c.add(table.column(i)) for i, c in enumerate(columns)],
              ticks)
    finally:
        reader.close()
    return {"version": STATS_VERSION, "computed_at": now(), "rows": source.num_rows,
            "digest": source.digest(), "seconds": round(time.monotonic() - started, 3),
            "columns": [c.result() for c in columns]}


def stored_stats(manager: Manager, ref: str) -> dict[str, Any] | None:
    """The statistics stored for subset ``ref`` with ``stale`` set when the downloaded
    partitions changed since, or None when none are stored."""

    target = manager.resolve(ref)
    record = target.record or manager.dataset(target.dataset)
    found = record.subset(target.subset).extra.get(STATS_KEY) if target.subset else None
    if not isinstance(found, dict):
        return None
    try:
        with warnings.catch_warnings():  # a partial subset is only digested here, not read
            warnings.simplefilter("ignore", PartialDataWarning)
            digest = manager.select(ref).digest()
    except Exception:  # noqa: BLE001 - nothing downloaded any more: stale
        digest = None
    return {**found, "stale": digest != found.get("digest")}


# ============================================================================================
# Reading


class _Ticks:
    """Progress and cancellation, once per row group."""

    def __init__(self, progress: Progress | None, cancel: threading.Event | None,
                 total: int) -> None:
        self.progress, self.cancel, self.total, self.done = progress, cancel, total, 0

    def __call__(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise CancelledError("computing column statistics was cancelled; nothing stored")
        self.done += 1
        if self.progress is not None:
            self.progress(self.done, self.total)


def _scan(reader: RowGroupReader, consume: Callable[[pa.Table], Any], tick: _Ticks) -> None:
    """Every row group of the reader's source, verified, in order, with read-ahead."""
    from pygestor.loaders.prefetch import default_depth, prefetch

    source = reader.selection
    groups = range(len(source.row_group_sizes))
    for table in prefetch(lambda g: reader.read(*source.locate(g)), groups,
                          default_depth(source)):
        consume(table)
        tick()


def _footer_facts(reader: RowGroupReader, source: Selection, schema: pa.Schema
                  ) -> dict[str, dict[str, Any]]:
    """Per flat column: nulls, min and max summed over every row group's parquet statistics,
    where every row group has them (a column missing from any is left out)."""
    from pygestor.loaders.stream import leaf_map

    leaves = {name: idx[0] for name, idx in leaf_map(schema).items() if len(idx) == 1
              and not pa.types.is_nested(schema.field(name).type)}
    facts: dict[str, dict[str, Any]] = {name: {"nulls": 0} for name in leaves}
    for p, part in enumerate(source.partitions):
        metadata = reader.metadata(p)
        for i in range(len(part.row_groups)):
            group = metadata.row_group(i)
            for name, leaf in leaves.items():
                known = facts.get(name)
                if known is not None:
                    _merge_footer(known, group.column(leaf).statistics, facts, name)
    return facts


def _merge_footer(known: dict[str, Any], statistics: Any, facts: dict[str, Any],
                  name: str) -> None:
    if statistics is None or not statistics.has_null_count:
        facts.pop(name)
        return
    known["nulls"] += statistics.null_count
    if known.get("no_range") or not statistics.has_min_max:
        known["no_range"] = True
        return
    low, high = statistics.min, statistics.max
    known["min"] = low if "min" not in known else min(known["min"], low)
    known["max"] = high if "max" not in known else max(known["max"], high)


# ============================================================================================
# Accumulators


def accumulator(field: pa.Field) -> Column:
    """The accumulator for a column of this type."""
    kind = field.type
    if pa.types.is_dictionary(kind):
        return Values(field, lengths=_is_text(kind.value_type))
    if pa.types.is_boolean(kind) or _is_text(kind):
        return Values(field, lengths=_is_text(kind))
    if pa.types.is_integer(kind):
        return Numbers(field, values=True)
    if pa.types.is_floating(kind) or pa.types.is_decimal(kind) or _is_temporal(kind):
        return Numbers(field)
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind) or \
            pa.types.is_fixed_size_binary(kind) or _is_list(kind):
        return Lengths(field)
    return Column(field)


class Column:
    """Nulls only (structs, maps, unions...)."""

    kind = "other"

    def __init__(self, field: pa.Field) -> None:
        self.field = field
        self.nulls = 0
        self.nulls_from_footer = False

    def use_footer(self, facts: dict[str, Any] | None) -> None:
        if facts is not None:
            self.nulls, self.nulls_from_footer = int(facts["nulls"]), True

    def add(self, array: pa.ChunkedArray) -> None:
        if not self.nulls_from_footer:
            self.nulls += array.null_count

    def result(self) -> dict[str, Any]:
        return {"name": self.field.name, "type": str(self.field.type), "kind": self.kind,
                "nulls": self.nulls}


class Numbers(Column):
    """Numbers and times: range, histogram, mean and spread; integers also their values."""

    def __init__(self, field: pa.Field, values: bool = False) -> None:
        super().__init__(field)
        self.temporal = _is_temporal(field.type)
        self.kind = "date" if self.temporal else "number"
        self.low: Any = None
        self.high: Any = None
        self.edges: np.ndarray | None = None
        self.counts: np.ndarray | None = None
        self.count, self.mean, self.m2, self.nans = 0, 0.0, 0.0, 0
        self.values = Values(field, lengths=False) if values else None

    def use_footer(self, facts: dict[str, Any] | None) -> None:
        super().use_footer(facts)
        if facts is not None and "min" in facts and not facts.get("no_range"):
            kind = self.field.type
            self.low, self.high = _as_number(facts["min"], kind), _as_number(facts["max"], kind)
            self.fix_edges()

    def add_range(self, array: pa.ChunkedArray) -> None:
        data = _numbers(array)
        data = data[np.isfinite(data)]
        if len(data):
            low, high = float(data.min()), float(data.max())
            self.low = low if self.low is None else min(self.low, low)
            self.high = high if self.high is None else max(self.high, high)

    def fix_edges(self) -> None:
        if self.low is None or not (math.isfinite(self.low) and math.isfinite(self.high)):
            self.edges = np.zeros(0)
        elif self.integral:
            self.edges = integer_edges(int(self.low), int(self.high))
        else:
            self.edges = np.linspace(self.low, self.high, HISTOGRAM_BINS + 1)
        self.counts = np.zeros(max(len(self.edges) - 1, 0), dtype=np.int64)

    @property
    def integral(self) -> bool:
        return self.temporal or pa.types.is_integer(self.field.type)

    def add(self, array: pa.ChunkedArray) -> None:
        super().add(array)
        if self.values is not None:
            self.values.add_counts(array)
        data = _numbers(array)
        if pa.types.is_floating(self.field.type):
            finite = np.isfinite(data)
            self.nans += int(np.isnan(data).sum())
            data = data[finite]
        if not len(data):
            return
        if self.edges is not None and len(self.edges) > 1:
            self.counts += np.histogram(data, bins=self.edges)[0]
        mean, m2, n = float(data.mean()), float(data.var()) * len(data), len(data)
        delta, total = mean - self.mean, self.count + n
        self.mean += delta * n / total
        self.m2 += m2 + delta * delta * self.count * n / total
        self.count = total

    def result(self) -> dict[str, Any]:
        out = super().result()
        out.update(min=self._shown(self.low), max=self._shown(self.high))
        if not self.temporal and self.count:
            out.update(mean=self.mean, std=math.sqrt(self.m2 / self.count))
        if pa.types.is_floating(self.field.type):
            out["nans"] = self.nans
        if self.counts is not None and len(self.counts):
            edges = self.edges if self.edges is not None else np.zeros(0)
            out["histogram"] = {"edges": [self._shown(e) for e in edges],
                                "counts": self.counts.tolist(), "of": "values"}
        if self.values is not None:
            out.update({k: v for k, v in self.values.result().items()
                        if k in ("distinct", "distinct_more_than", "top")})
        return out

    def _shown(self, value: Any) -> Any:
        if value is None:
            return None
        if self.temporal:
            return str(pa.scalar(int(value), pa.int64()).cast(_storage_int(self.field.type))
                       .cast(self.field.type).as_py())
        return int(value) if self.integral and float(value).is_integer() else float(value)


class Values(Column):
    """Categories: distinct values and the most frequent ones; for text, also lengths."""

    def __init__(self, field: pa.Field, lengths: bool) -> None:
        super().__init__(field)
        self.kind = "bool" if pa.types.is_boolean(field.type) else "string"
        self.counter: dict[Any, int] | None = {}
        self.value_bytes = 0
        self.lengths = Lengths(field) if lengths else None

    def add(self, array: pa.ChunkedArray) -> None:
        super().add(array)
        self.add_counts(array)
        if self.lengths is not None:
            self.lengths.add_lengths(array)

    def add_counts(self, array: pa.ChunkedArray) -> None:
        if self.counter is None:
            return
        if pa.types.is_dictionary(array.type):
            array = array.cast(array.type.value_type)
        counted = pc.value_counts(array)
        for value, count in zip(counted.field("values").to_pylist(),
                                counted.field("counts").to_pylist(), strict=True):
            if value is None:
                continue
            if value not in self.counter:
                self.value_bytes += len(value) if isinstance(value, (str, bytes)) else 8
            self.counter[value] = self.counter.get(value, 0) + count
        if len(self.counter) > MAX_DISTINCT or self.value_bytes > MAX_VALUE_BYTES:
            self.counter = None  # too many to count: "more than" is all that is known

    def result(self) -> dict[str, Any]:
        out = super().result()
        if self.counter is None:
            out["distinct"], out["distinct_more_than"] = None, MAX_DISTINCT
        else:
            top = sorted(self.counter.items(), key=lambda kv: (-kv[1], str(kv[0])))[:TOP_VALUES]
            out["distinct"] = len(self.counter)
            out["top"] = [[_short(value), count] for value, count in top]
        if self.lengths is not None:
            out.update(min_length=self.lengths.low, max_length=self.lengths.high,
                       histogram=self.lengths.histogram())
        return out


class Lengths(Column):
    """Binaries and lists (and text, through :class:`Values`): a histogram of lengths, kept
    in integer buckets that double in width when there are too many (bounded memory)."""

    kind = "list"

    def __init__(self, field: pa.Field) -> None:
        super().__init__(field)
        if not _is_list(field.type):
            self.kind = "binary"
        self.width = 1
        self.buckets: dict[int, int] = {}
        self.low: int | None = None
        self.high: int | None = None

    def add(self, array: pa.ChunkedArray) -> None:
        super().add(array)
        self.add_lengths(array)

    def add_lengths(self, array: pa.ChunkedArray) -> None:
        kind = array.type.value_type if pa.types.is_dictionary(array.type) else array.type
        if pa.types.is_dictionary(array.type):
            array = array.cast(kind)
        if _is_list(kind):
            measured = pc.list_value_length(array)
        elif pa.types.is_fixed_size_binary(kind):
            measured = pa.array(np.full(len(array) - array.null_count, kind.byte_width))
        else:
            measured = pc.utf8_length(array) if _is_text(kind) else pc.binary_length(array)
        lengths = np.asarray(measured.drop_null().to_numpy(), dtype=np.int64)
        if not len(lengths):
            return
        low, high = int(lengths.min()), int(lengths.max())
        self.low = low if self.low is None else min(self.low, low)
        self.high = high if self.high is None else max(self.high, high)
        keys, counts = np.unique(lengths // self.width, return_counts=True)
        for key, count in zip(keys.tolist(), counts.tolist(), strict=True):
            self.buckets[key] = self.buckets.get(key, 0) + count
        while len(self.buckets) > MAX_LENGTH_BUCKETS:
            self.width *= 2
            merged: dict[int, int] = {}
            for key, count in self.buckets.items():
                merged[key // 2] = merged.get(key // 2, 0) + count
            self.buckets = merged

    def histogram(self) -> dict[str, Any] | None:
        if self.low is None or self.high is None:
            return None
        edges = integer_edges(self.low, self.high)
        counts = np.zeros(len(edges) - 1, dtype=np.int64)
        for key, count in self.buckets.items():
            start = max(key * self.width, self.low)
            bin_ = min(int(np.searchsorted(edges, start, side="right")) - 1, len(counts) - 1)
            counts[bin_] += count
        return {"edges": [int(e) for e in edges], "counts": counts.tolist(), "of": "length"}

    def result(self) -> dict[str, Any]:
        out = super().result()
        out.update(min_length=self.low, max_length=self.high, histogram=self.histogram())
        return out


# ============================================================================================
# Helpers


def integer_edges(low: int, high: int) -> np.ndarray:
    """Bin edges for integers in ``[low, high]``: at most :data:`HISTOGRAM_BINS` bins of one
    whole width, the last edge past ``high`` (bins are ``[edge, next edge)``)."""
    step = max(1, math.ceil((high - low + 1) / HISTOGRAM_BINS))
    bins = math.ceil((high - low + 1) / step)
    return low + step * np.arange(bins + 1, dtype=np.float64)


def _is_text(kind: pa.DataType) -> bool:
    return pa.types.is_string(kind) or pa.types.is_large_string(kind) or \
        getattr(pa.types, "is_string_view", lambda _: False)(kind)


def _is_list(kind: pa.DataType) -> bool:
    return pa.types.is_list(kind) or pa.types.is_large_list(kind) or \
        pa.types.is_fixed_size_list(kind)


def _is_temporal(kind: pa.DataType) -> bool:
    return pa.types.is_timestamp(kind) or pa.types.is_date(kind) or \
        pa.types.is_time(kind) or pa.types.is_duration(kind)


def _storage_int(kind: pa.DataType) -> pa.DataType:
    """The integer type a temporal type is stored as."""
    return pa.int32() if kind.bit_width == 32 else pa.int64()


def _numbers(array: pa.ChunkedArray) -> np.ndarray:
    """The non-null values of a numeric or temporal column as float64 (times as integers)."""
    values = array.drop_null()
    kind = values.type
    if _is_temporal(kind):
        values = values.cast(_storage_int(kind)).cast(pa.int64())
    elif pa.types.is_decimal(kind):
        values = values.cast(pa.float64())
    return np.asarray(values.to_numpy(), dtype=np.float64)


def _as_number(value: Any, kind: pa.DataType) -> float:
    """A footer's min or max of a column of type ``kind`` as a number (times as their integer
    storage, in the column's unit)."""
    if _is_temporal(kind):
        return float(pa.scalar(value, kind).cast(_storage_int(kind)).as_py())
    return float(value)


def _short(value: Any) -> Any:
    if isinstance(value, str) and len(value) > MAX_VALUE_CHARS:
        return value[:MAX_VALUE_CHARS] + "…"
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    return value
