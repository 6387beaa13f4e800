"""Downloaded partitions as Arrow: whole tables, DataFrames, schemas, samples and URLs.

Every function takes the manager and a reference, makes the reference's
:class:`~pygestor.selection.Selection` once (``manager.select``), and reads through
:class:`~pygestor.loaders.stream.RowGroupReader`, the one reader of partition files: column
projection, row groups skipped by their statistics, read-ahead, and every footer and page
checksum verified, locally and from buckets.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from pygestor.errors import ConfigError
from pygestor.loaders.stream import Filters, RowGroupReader, check_columns, to_expression

if TYPE_CHECKING:
    import pandas as pd

    from pygestor.manager import Manager

__all__ = ["Filters", "check_columns", "load", "load_table", "sample", "schema", "to_expression",
           "urls"]


def load_table(manager: Manager, ref: str, columns: list[str] | None = None,
               filters: Filters = None, schema: str | None = None) -> pa.Table:
    """The downloaded data of ``ref`` as one Arrow table, read through the verified reader
    (:class:`~pygestor.loaders.stream.RowGroupReader`: footers and page checksums checked).

    ``schema="union"`` reads subsets with different columns together (missing columns are
    nulls); without it such a read is refused with a message naming the subsets.
    """
    from pygestor.loaders.prefetch import default_depth, prefetch

    selection = manager.select(ref, schema)
    reader = RowGroupReader(selection, columns, filters)
    try:
        full = reader.schema()
        wanted = check_columns(columns, full)
        to_expression(filters, full)  # validates
        reader.columns = wanted
        tasks = [(p, i) for p, part in enumerate(selection.partitions)
                 for i, rows in enumerate(part.row_groups) if rows > 0]
        depth = default_depth(selection)
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
    """The schema of ``ref``: from a downloaded partition's (verified) footer, else from the
    record when nothing is downloaded yet. ``mode="union"``: the union of subsets with
    different columns."""
    from pygestor.errors import NotDownloadedError
    from pygestor.pipelines.formats import schema_from_text

    try:
        selection = manager.select(ref, mode)
    except NotDownloadedError:
        target = manager.resolve(ref)
        record = target.record or manager.dataset(target.dataset)
        subsets = [record.subset(target.subset)] if target.subset else \
            list(record.subsets.values())
        for subset in subsets:
            if subset.schema:
                return schema_from_text(subset.schema)
        raise
    reader = RowGroupReader(selection)
    try:
        return reader.schema()
    finally:
        reader.close()


def sample(manager: Manager, ref: str, n: int = 10, schema: str | None = None
           ) -> pd.DataFrame:
    """The first ``n`` rows of the downloaded partitions (verified like every read)."""
    if not isinstance(n, int) or n < 0:
        raise ConfigError(f"n must be >= 0, got {n}")
    reader = RowGroupReader(manager.select(ref, schema))
    tables: list[pa.Table] = []
    rows = 0
    try:
        for p, part in enumerate(reader.selection.partitions):
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
    selection = manager.select(ref)
    return {"urls": selection.urls(), "storage_options": dict(manager.settings.storage_options)}
