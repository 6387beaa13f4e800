"""Rebatch stage: a stream of tables cut into record batches of exactly ``batch_size`` rows."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import pyarrow as pa


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
