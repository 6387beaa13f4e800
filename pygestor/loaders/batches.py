"""``iter_batches``: a stream of batches from downloaded partitions, in several formats."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from pygestor.errors import ConfigError
from pygestor.loaders.arrow import Filters, check_columns, open_dataset, to_expression

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


def iter_batches(manager: Manager, ref: str, batch_size: int = 65536,
                 columns: list[str] | None = None, filters: Filters = None,
                 format: str = "arrow") -> Iterator[Any]:  # noqa: A002 - public name
    """Batches of at most ``batch_size`` rows, in catalog order."""
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    if format not in FORMATS:
        raise ConfigError(f"unknown format {format!r}; use one of {', '.join(FORMATS)}")
    dataset = open_dataset(manager, ref)
    columns = check_columns(columns, dataset.schema)
    expression = to_expression(filters, dataset.schema)
    return _generate(dataset, batch_size, columns, expression, format)


def _generate(dataset: Any, batch_size: int, columns: list[str] | None, expression: Any,
              fmt: str) -> Iterator[Any]:
    pending: list[pa.RecordBatch] = []
    rows = 0
    for batch in dataset.to_batches(columns=columns, filter=expression, batch_size=batch_size):
        if batch.num_rows == 0:
            continue
        pending.append(batch)
        rows += batch.num_rows
        while rows >= batch_size:
            table = pa.Table.from_batches(pending).combine_chunks()
            out = table.slice(0, batch_size).to_batches()[0]
            rest = table.slice(batch_size)
            pending = rest.to_batches() if rest.num_rows else []
            rows = rest.num_rows
            yield convert_batch(out, fmt)
    if rows:
        table = pa.Table.from_batches(pending).combine_chunks()
        yield convert_batch(table.to_batches()[0], fmt)
