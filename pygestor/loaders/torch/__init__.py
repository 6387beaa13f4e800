"""To-torch stage: Arrow record batches as batches of tensors, and as rows.

``batch_to_torch`` is what ``PygestorDataset`` (batches mode) and ``iter_batches(format="torch")``
hand out: a :class:`Batch`, column name -> tensor (numbers) or list (strings, nested values).
``batch_rows`` is what the rows mode hands out: one dict per row, with the very values of the
batches mode (numpy scalars of the same dtypes, NaN and empty strings for nulls), so that
PyTorch's ``default_collate`` builds the same tensors from them, wherever the nulls are.
``stack`` puts numeric columns side by side in one 2-D tensor, which crosses from a DataLoader
worker to the main process much faster than many.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from pygestor.errors import ConfigError

STACK_KEY = "features"

__all__ = ["STACK_KEY", "Batch", "batch_rows", "batch_to_torch", "check_stack",
           "column_to_numpy", "column_to_torch"]


class Batch:
    """A ready batch: column name -> tensor (numbers) or list (strings, nested values).

    It reads like a dict (``batch["x"]``, ``keys()``, ``items()``, ``dict(batch)``,
    ``model(**batch)``), moves with ``.to(device)`` and pins with ``.pin_memory()``. It is no
    ``Mapping`` on purpose: PyTorch's ``default_convert`` (what a plain
    ``DataLoader(ds, batch_size=None)`` applies) hands it through untouched instead of walking
    every string of every text column.
    """

    __slots__ = ("_data",)

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._data[key] = value

    def __delitem__(self, key: str) -> None:
        del self._data[key]

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __eq__(self, other: object) -> bool:
        return self._data == (other._data if isinstance(other, Batch) else other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Batch({self._data!r})"

    def keys(self) -> Any:
        return self._data.keys()

    def values(self) -> Any:
        return self._data.values()

    def items(self) -> Any:
        return self._data.items()

    def get(self, key: str, default: Any = None) -> Any:
        return self._data.get(key, default)

    def to_dict(self) -> dict[str, Any]:
        """The columns as a plain dict."""
        return dict(self._data)

    def to(self, *args: Any, **kwargs: Any) -> Batch:
        """The batch with every tensor moved (``batch.to("cuda", non_blocking=True)``)."""
        return Batch({k: v.to(*args, **kwargs) if isinstance(v, torch.Tensor) else v
                      for k, v in self._data.items()})

    def pin_memory(self) -> Batch:
        return Batch({k: v.pin_memory() if isinstance(v, torch.Tensor) else v
                      for k, v in self._data.items()})


def column_to_numpy(array: pa.Array | pa.ChunkedArray) -> np.ndarray | list[Any]:
    """One Arrow column as a writable numpy array when it is numeric, else as a list.

    Numbers and booleans keep their dtype (integers and booleans with nulls become float64
    with NaN; floats with nulls hold NaN); timestamps, dates and durations become integers;
    decimals float64; fixed-size lists of numbers 2-D arrays. Strings and binaries become
    lists, nulls as empty values; nested values stay Python lists (nulls as None).
    """
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks() if array.num_chunks != 1 else array.chunk(0)
    kind = array.type
    if pa.types.is_dictionary(kind):
        return column_to_numpy(array.dictionary_decode())
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
        if array.null_count and not pa.types.is_floating(kind):
            array = array.cast(pa.float64())
        return _writable(array.to_numpy(zero_copy_only=False))
    if pa.types.is_temporal(kind):
        width = pa.int32() if kind.bit_width == 32 else pa.int64()
        return _writable(array.view(width).to_numpy(zero_copy_only=False))
    if pa.types.is_decimal(kind):
        return _writable(array.cast(pa.float64()).to_numpy(zero_copy_only=False))
    if pa.types.is_fixed_size_list(kind) and not array.null_count and (
            pa.types.is_integer(kind.value_type) or pa.types.is_floating(kind.value_type)):
        flat = array.flatten().to_numpy(zero_copy_only=False)
        return _writable(flat).reshape(len(array), kind.list_size)
    if array.null_count and (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        array = pc.fill_null(array, "")
    elif array.null_count and (pa.types.is_binary(kind) or pa.types.is_large_binary(kind)):
        array = pc.fill_null(array, b"")
    return array.to_pylist()


def column_to_torch(array: pa.Array | pa.ChunkedArray) -> Any:
    """One Arrow column as a tensor when it is numeric, else as a list
    (:func:`column_to_numpy`'s rules)."""
    values = column_to_numpy(array)
    return torch.from_numpy(values) if isinstance(values, np.ndarray) else values


def batch_rows(batch: pa.RecordBatch | pa.Table) -> list[dict[str, Any]]:
    """The rows of ``batch`` as dicts holding the values :func:`batch_to_torch` would put in
    tensors (numpy scalars of the same dtype, rows of 2-D arrays), so collating rows gives
    what the batches mode gives."""
    names = list(batch.schema.names)
    columns = [column_to_numpy(column) for column in batch.columns]
    values = [list(c) if isinstance(c, np.ndarray) else c for c in columns]
    return [dict(zip(names, row, strict=True)) for row in zip(*values, strict=True)]


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
                   stack_dtype: Any = None) -> Batch:
    """A record batch as a :class:`Batch` of tensors and lists (see :func:`column_to_numpy`).

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
    return Batch(out)


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
