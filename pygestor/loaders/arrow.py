"""Downloaded partitions as Arrow: whole tables, DataFrames, schemas, samples and URLs.

Reads go through ``pyarrow.dataset`` over the storage's filesystem (pyarrow's own local
filesystem for local roots, fsspec's otherwise), with column projection and filter pushdown to
row groups.
"""

from __future__ import annotations

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


def arrow_filesystem(manager: Manager) -> Any:
    storage = manager.storage
    if storage.is_local:
        return pa.fs.LocalFileSystem()
    return pa.fs.PyFileSystem(pa.fs.FSSpecHandler(storage.fs))


def open_dataset(manager: Manager, ref: str) -> pads.Dataset:
    paths = partition_paths(manager, ref)
    return pads.dataset(paths, filesystem=arrow_filesystem(manager), format="parquet")


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
               filters: Filters = None) -> pa.Table:
    if not manager.storage.is_local:
        return _load_remote(manager, ref, columns, filters)
    dataset = open_dataset(manager, ref)
    columns = check_columns(columns, dataset.schema)
    expression = to_expression(filters, dataset.schema)
    try:
        return dataset.to_table(columns=columns, filter=expression)
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
        raise ConfigError(f"cannot apply filters {filters!r}: {str(exc).splitlines()[0]}") \
            from None


def _remote_files(manager: Manager, ref: str) -> Any:
    """Parquet files of ``ref`` opened through fsspec, read synchronously in this thread.

    pyarrow's dataset scanner over an fsspec handler leaves read-ahead work on pyarrow's own
    threads that can still be calling into Python when the interpreter exits (and abort it);
    whole-file reads finish before they return.
    """
    for path in partition_paths(manager, ref):
        with manager.storage.open(path, "rb") as handle:
            yield pq.ParquetFile(handle)


def _load_remote(manager: Manager, ref: str, columns: list[str] | None,
                 filters: Filters) -> pa.Table:
    tables = []
    for parquet in _remote_files(manager, ref):
        schema = parquet.schema_arrow
        wanted = check_columns(columns, schema)
        expression = to_expression(filters, schema)
        needed = None
        if wanted is not None:
            needed = list(wanted)
            if filters is not None:
                needed += [c for c in _filter_columns(filters) if c not in needed]
        table = parquet.read(columns=needed)
        if expression is not None:
            try:
                table = table.filter(expression)
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as exc:
                raise ConfigError(f"cannot apply filters {filters!r}: "
                                  f"{str(exc).splitlines()[0]}") from None
        tables.append(table.select(wanted) if wanted is not None else table)
    return pa.concat_tables(tables)


def _filter_columns(filters: Filters) -> list[str]:
    if isinstance(filters, pads.Expression):
        return []
    groups = filters if isinstance(filters[0], list) else [filters]
    return [item[0] for group in groups for item in group]


def load(manager: Manager, ref: str, columns: list[str] | None = None,
         filters: Filters = None) -> pd.DataFrame:
    return load_table(manager, ref, columns, filters).to_pandas()


def schema(manager: Manager, ref: str) -> pa.Schema:
    """The schema of ``ref``: from the record when known, else from a downloaded partition."""
    from pygestor.pipelines.formats import schema_from_text

    target = manager.resolve(ref)
    record = manager.dataset(target.dataset)
    subsets = [record.subset(target.subset)] if target.subset else list(record.subsets.values())
    for subset in subsets:
        for part in subset.downloaded:
            path = manager.partition_path(record.name, subset.name, part.name)
            with manager.storage.open(path, "rb") as handle:
                return pq.ParquetFile(handle).schema_arrow
    for subset in subsets:
        if subset.schema:
            return schema_from_text(subset.schema)
    manager.downloaded_partitions(ref)  # raises the "not downloaded" error
    raise AssertionError("unreachable")


def sample(manager: Manager, ref: str, n: int = 10) -> pd.DataFrame:
    """The first ``n`` rows of the first downloaded partitions."""
    if n < 0:
        raise ConfigError(f"n must be >= 0, got {n}")
    if manager.storage.is_local:
        return open_dataset(manager, ref).head(n).to_pandas()
    batches: list[pa.RecordBatch] = []
    rows = 0
    schema = None
    for parquet in _remote_files(manager, ref):
        schema = parquet.schema_arrow
        for batch in parquet.iter_batches(batch_size=max(n, 1), use_threads=False):
            if rows >= n:
                break
            batches.append(batch.slice(0, n - rows))
            rows += batches[-1].num_rows
        if rows >= n:
            break
    return pa.Table.from_batches(batches, schema=schema).to_pandas()


def urls(manager: Manager, ref: str) -> dict[str, Any]:
    """Partition URLs and the storage options to open them with, for Dask, Ray, Spark, DuckDB."""
    paths = partition_paths(manager, ref)
    storage = manager.storage
    return {"urls": [storage.url_of(p) for p in paths],
            "storage_options": dict(manager.settings.storage_options)}
