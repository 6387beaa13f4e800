"""``iter_batches``: a stream of batches from downloaded partitions, in several formats.

Reads row group by row group (:mod:`pygestor.loaders.stream`): only the selected columns, row
groups whose statistics exclude every row are skipped, the next row groups are read in a
background thread while the current one is consumed, and from an object store only the needed
column chunks are fetched, with ranged requests. Memory stays bounded by the read-ahead depth,
whatever the size of the dataset.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from pygestor.errors import ConfigError
from pygestor.loaders.prefetch import default_depth, prefetch
from pygestor.loaders.rebatch import rebatch
from pygestor.loaders.stream import Filters, RowGroupReader, check_columns, to_expression

if TYPE_CHECKING:
    from pygestor.manager import Manager

FORMATS = ("arrow", "pandas", "numpy", "torch", "dict")


def convert_batch(batch: pa.RecordBatch, fmt: str) -> Any:
    """One Arrow record batch in the requested format."""
    if fmt == "arrow":
        return batch
    if fmt == "pandas":
        return batch.to_pandas()
    if fmt == "dict":
        return batch.to_pydict()
    if fmt == "numpy":
        return {name: column.to_numpy(zero_copy_only=False)
                for name, column in zip(batch.schema.names, batch.columns, strict=True)}
    if fmt == "torch":
        from pygestor.loaders.torch import batch_to_torch

        return batch_to_torch(batch)
    raise ConfigError(f"unknown format {fmt!r}; use one of {', '.join(FORMATS)}")


def check_batch_size(batch_size: Any, name: str = "batch_size") -> int:
    """``batch_size`` if it is a positive integer; a clear error otherwise."""
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ConfigError(f"{name} must be a positive integer, got {batch_size!r}")
    return batch_size


def iter_batches(manager: Manager, ref: str, batch_size: int = 65536,
                 columns: list[str] | None = None, filters: Filters = None,
                 format: str = "arrow",  # noqa: A002 - public name
                 *, prefetch_depth: int | None = None,
                 cache: bool | None = None, schema: str | None = None) -> Iterator[Any]:
    """Batches of exactly ``batch_size`` rows (the last may be shorter), in catalog order.

    Args:
        manager: the storage root and catalog.
        ref: a dataset, subset or partition reference.
        batch_size: rows per batch.
        columns: columns to read (None: all).
        filters: ``[(column, op, value), ...]`` (AND), a list of such lists (OR), or a pyarrow
            expression; row groups whose statistics exclude every row are not read.
        format: ``arrow`` (RecordBatch), ``pandas``, ``numpy`` (dict of arrays), ``torch``
            (dict of tensors; strings stay lists) or ``dict`` (dict of lists).
        prefetch_depth: row groups read ahead in the background (default: 2 on local disk,
            enough for ~96 MB in flight from an object store; 0 disables read-ahead).
        cache: copy partitions from an object store into ``settings.cache_dir`` and read them
            from there (None: when ``cache_dir`` is set).
        schema: ``"union"`` to read subsets with different columns together (missing columns
            are nulls); such a read is refused otherwise.

    Errors in the arguments (unknown columns, bad filters, nothing downloaded) are raised
    here, before the first batch is asked for.
    """
    check_batch_size(batch_size)
    if format not in FORMATS:
        raise ConfigError(f"unknown format {format!r}; use one of {', '.join(FORMATS)}")
    if prefetch_depth is not None and (not isinstance(prefetch_depth, int) or prefetch_depth < 0):
        raise ConfigError(f"prefetch_depth must be an integer >= 0, got {prefetch_depth!r}")
    selection = manager.select(ref, schema)
    reader = RowGroupReader(selection, columns, filters, cache=cache)
    full = reader.schema()  # the first footer (and maybe row group): kept for reading
    columns = check_columns(columns, full)
    to_expression(filters, full)  # validates
    reader.columns = columns
    depth = default_depth(selection) if prefetch_depth is None else prefetch_depth
    tasks = [(p, i) for p, part in enumerate(selection.partitions)
             for i, rows in enumerate(part.row_groups) if rows > 0]
    return _generate(reader, tasks, batch_size, format, depth)


def _generate(reader: RowGroupReader, tasks: list[tuple[int, int]], batch_size: int,
              fmt: str, depth: int) -> Iterator[Any]:
    threads = 1 if reader.selection.is_local else depth
    tables = prefetch(lambda task: reader.read(*task), tasks, depth, threads)
    try:
        for batch in rebatch(tables, batch_size):
            yield batch if fmt == "arrow" else convert_batch(batch, fmt)
    finally:
        tables.close()
        reader.close()
