"""To-torch stage: Arrow record batches as dicts of tensors (strings stay lists).

``batch_to_torch`` is what ``PygestorDataset`` (batches mode) and ``iter_batches(format="torch")``
hand out; ``stack`` puts numeric columns side by side in one 2-D tensor, which crosses from a
DataLoader worker to the main process much faster than many.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import torch

from pygestor.errors import ConfigError

STACK_KEY = "features"

__all__ = ["STACK_KEY", "batch_to_torch", "check_stack", "column_to_torch"]


def column_to_torch(array: pa.Array | pa.ChunkedArray) -> Any:
    """One Arrow column as a tensor when it is numeric, else as a Python list.

    Numbers and booleans become tensors of the same dtype (integers with nulls become float64
    with NaN); timestamps, dates and durations become int64 tensors; fixed-size lists of numbers
    become 2-D tensors; strings, binaries and nested values stay Python lists.
    """
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks() if array.num_chunks != 1 else array.chunk(0)
    kind = array.type
    if pa.types.is_dictionary(kind):
        return column_to_torch(array.dictionary_decode())
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
        if array.null_count:
            if pa.types.is_boolean(kind) or pa.types.is_integer(kind):
                array = array.cast(pa.float64())
            values = array.to_numpy(zero_copy_only=False)
        else:
            values = array.to_numpy(zero_copy_only=False)
        return torch.from_numpy(_writable(values))
    if pa.types.is_temporal(kind):
        width = pa.int32() if kind.bit_width == 32 else pa.int64()
        return torch.from_numpy(_writable(array.view(width).to_numpy(zero_copy_only=False)))
    if pa.types.is_decimal(kind):
        return torch.from_numpy(_writable(array.cast(pa.float64()).to_numpy(zero_copy_only=False)))
    if pa.types.is_fixed_size_list(kind) and not array.null_count and (
            pa.types.is_integer(kind.value_type) or pa.types.is_floating(kind.value_type)):
        flat = array.flatten().to_numpy(zero_copy_only=False)
        return torch.from_numpy(_writable(flat).reshape(len(array), kind.list_size))
    return array.to_pylist()


def _numpy_dtype(dtype: Any) -> np.dtype:
    if isinstance(dtype, torch.dtype):
        return torch.empty(0, dtype=dtype).numpy().dtype
    try:
        return np.dtype(dtype)
    except TypeError:
        raise ConfigError(f"stack_dtype {dtype!r} is not a numpy or torch dtype") from None


def _writable(values: np.ndarray) -> np.ndarray:
    return values if values.flags.writeable else values.copy()


def _numeric(batch: pa.RecordBatch, name: str) -> np.ndarray:
    column = batch.column(name)
    kind = column.type
    if not (pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind)):
        raise ConfigError(f"stack: column {name!r} is {kind}, not a number")
    if column.null_count and not pa.types.is_floating(kind):
        column = column.cast(pa.float64())
    return column.to_numpy(zero_copy_only=False)


def batch_to_torch(batch: pa.RecordBatch, stack: Mapping[str, Sequence[str]] | None = None,
                   stack_dtype: Any = None) -> dict[str, Any]:
    """A record batch as a dict of tensors (see :func:`column_to_torch`).

    Args:
        batch: the rows.
        stack: ``{key: [columns]}``: put these numeric columns side by side in one 2-D tensor
            under ``key`` (one tensor crosses from a DataLoader worker to the main process much
            faster than many).
        stack_dtype: dtype of stacked tensors (default: the columns' common numpy type).
    """
    out: dict[str, Any] = {}
    stacked: set[str] = set()
    for key, names in (stack or {}).items():
        arrays = [_numeric(batch, name) for name in names]
        dtype = _numpy_dtype(stack_dtype) if stack_dtype is not None \
            else np.result_type(*arrays)
        matrix = np.empty((batch.num_rows, len(arrays)), dtype=dtype)
        for j, values in enumerate(arrays):
            matrix[:, j] = values
        out[key] = torch.from_numpy(matrix)
        stacked.update(names)
    for name, column in zip(batch.schema.names, batch.columns, strict=True):
        if name not in stacked:
            out[name] = column_to_torch(column)
    return out


def check_stack(stack: Any, columns: list[str], schema: pa.Schema
                ) -> dict[str, list[str]] | None:
    """``stack`` as ``{key: [columns]}``, checked against the columns read; None if None."""
    if stack is None:
        return None
    if isinstance(stack, str):
        raise ConfigError("stack must be a list of columns or {key: [columns]}, not a string")
    groups = dict(stack) if isinstance(stack, Mapping) else {STACK_KEY: list(stack)}
    seen: set[str] = set()
    for key, names in groups.items():
        names = list(names)
        if not names:
            raise ConfigError(f"stack {key!r} has no columns")
        for name in names:
            if name not in columns:
                raise ConfigError(f"stack: column {name!r} is not among the columns read "
                                  f"({', '.join(columns)})")
            kind = schema.field(name).type
            if not (pa.types.is_integer(kind) or pa.types.is_floating(kind)
                    or pa.types.is_boolean(kind)):
                raise ConfigError(f"stack: column {name!r} is {kind}, not a number")
            if name in seen:
                raise ConfigError(f"stack: column {name!r} appears twice")
            seen.add(name)
        if key in columns and key not in names:
            raise ConfigError(f"stack key {key!r} is also a column name; pick another key")
        groups[key] = names
    return groups
