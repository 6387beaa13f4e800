"""Downloaded partitions as Arrow: whole tables, DataFrames, schemas, samples and URLs.

Every read goes through :class:`~pygestor.loaders.stream.RowGroupReader`, the one reader of
partition files: column projection, row groups skipped by their statistics, read-ahead, and
every footer and page checksum verified, locally and from buckets.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from pygestor.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

    from pygestor.manager import Manager

Filters = Any  # list of (column, op, value) tuples, a list of such lists (OR), or an Expression


def partition_paths(manager: Manager, ref: str) -> list[str]:
    """Filesystem paths of the downloaded partitions ``ref`` covers, in catalog order."""
    dataset, parts = manager.downloaded_partitions(ref)
    return [manager.partition_path(dataset.name, s.name, p.name) for s, p in parts]


def to_expression(filters: Filters, schema: pa.Schema) -> pads.Expression | None:
    """Validate ``filters`` against ``schema`` and turn them into a pyarrow expression."""
    if filters is None:
        return None
    if isinstance(filters, pads.Expression):
        return filters
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
    if columns is None:
        return None
    if isinstance(columns, str):
        columns = [columns]
    missing = [c for c in columns if c not in schema.names]
    if missing:
        raise ConfigError(f"unknown column(s) {', '.join(map(repr, missing))}; columns: "
                          f"{', '.join(schema.names)}")
    return list(columns)


def load_table(manager: Manager, ref: str, columns: list[str] | None = None,
               filters: Filters = None, schema: str | None = None) -> pa.Table:
    """The downloaded data of ``ref`` as one Arrow table, read through the verified reader
    (:class:`~pygestor.loaders.stream.RowGroupReader`: footers and page checksums checked).

    ``schema="union"`` reads subsets with different columns together (missing columns are
    nulls); without it such a read is refused with a message naming the subsets.
    """
    from pygestor.loaders.stream import RowGroupReader, Source, default_depth, prefetch

    source = Source.open(manager, ref, schema)
    reader = RowGroupReader(source, columns, filters)
    try:
        full = reader.schema()
        wanted = check_columns(columns, full)
        to_expression(filters, full)  # validates
        reader.columns = wanted
        tasks = [(p, i) for p, part in enumerate(source.partitions)
                 for i, rows in enumerate(part.row_groups) if rows > 0]
        depth = default_depth(source)
        tables = list(prefetch(lambda task: reader.read(*task), tasks, depth,
                               threads=min(depth, os.cpu_count() or 1)))
    finally:
        reader.close()
    if not tables:
        empty = full if wanted is None else pa.schema([full.field(c) for c in wanted])
        return empty.empty_table()
    return pa.concat_tables(tables)


def load(manager: Manager, ref: str, columns: list[str] | None = None,
         filters: Filters = None, schema: str | None = None) -> pd.DataFrame:
    return load_table(manager, ref, columns, filters, schema).to_pandas()


def schema(manager: Manager, ref: str, mode: str | None = None) -> pa.Schema:
    """The schema of ``ref``: from the record when known, else from a downloaded partition's
    (verified) footer. ``mode="union"``: the union of subsets with different columns."""
    from pygestor.loaders.stream import RowGroupReader, Source
    from pygestor.pipelines.formats import schema_from_text

    target = manager.resolve(ref)
    record = target.record or manager.dataset(target.dataset)
    subsets = [record.subset(target.subset)] if target.subset else list(record.subsets.values())
    if any(s.downloaded for s in subsets):
        reader = RowGroupReader(Source.open(manager, ref, mode))
        try:
            return reader.schema()
        finally:
            reader.close()
    for subset in subsets:
        if subset.schema:
            return schema_from_text(subset.schema)
    manager.downloaded_partitions(ref)  # raises the "not downloaded" error
    raise AssertionError("unreachable")


def sample(manager: Manager, ref: str, n: int = 10, schema: str | None = None
           ) -> pd.DataFrame:
    """The first ``n`` rows of the downloaded partitions (verified like every read)."""
    from pygestor.loaders.stream import RowGroupReader, Source

    if not isinstance(n, int) or n < 0:
        raise ConfigError(f"n must be >= 0, got {n}")
    reader = RowGroupReader(Source.open(manager, ref, schema))
    tables: list[pa.Table] = []
    rows = 0
    try:
        for p, part in enumerate(reader.source.partitions):
            for i, count in enumerate(part.row_groups):
                if rows >= n:
                    break
                if count:
                    table = reader.read(p, i).slice(0, n - rows)
                    tables.append(table)
                    rows += table.num_rows
        full = reader.schema()
    finally:
        reader.close()
    table = pa.concat_tables(tables) if tables else full.empty_table()
    return table.to_pandas()


def urls(manager: Manager, ref: str) -> dict[str, Any]:
    """Partition URLs and the storage options to open them with, for Dask, Ray, Spark, DuckDB."""
    paths = partition_paths(manager, ref)
    storage = manager.storage
    return {"urls": [storage.url_of(p) for p in paths],
            "storage_options": dict(manager.settings.storage_options)}
