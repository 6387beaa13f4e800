"""Reconciling the columns of several files (or subsets) into one schema. Pure: no I/O.

Columns are matched by *name*, never by position. Two modes:

- ``strict`` (the default): every input has the same columns, in any order; a type may differ
  only where one widens to the other without loss (``int32`` -> ``int64``, ``float32`` ->
  ``float64``, ``int32`` -> ``float64``, ``string`` -> ``large_string``, ``null`` -> anything).
- ``union``: the columns of all inputs, in order of first appearance; an input without a column
  gets nulls there; types are widened as above and nowhere else.

Anything else is refused with a :class:`~pygestor.errors.SourceError` that names the inputs and the
columns, and says what to do.
"""

from __future__ import annotations

from collections.abc import Sequence

import pyarrow as pa

from pygestor.errors import ConfigError, SourceError

MODES = ("strict", "union")

_SIGNED = [pa.int8(), pa.int16(), pa.int32(), pa.int64()]
_UNSIGNED = [pa.uint8(), pa.uint16(), pa.uint32(), pa.uint64()]
_FLOATS = [pa.float16(), pa.float32(), pa.float64()]


def check_mode(mode: object) -> str:
    """``strict`` or ``union``; a clear error for anything else."""
    if mode is None:
        return "strict"
    if mode not in MODES:
        raise ConfigError(f"schema must be 'strict' or 'union', got {mode!r}")
    return str(mode)


def widen(a: pa.DataType, b: pa.DataType) -> pa.DataType | None:
    """The narrowest type both ``a`` and ``b`` convert to without loss, or None."""
    if a.equals(b):
        return a
    if pa.types.is_null(a):
        return b
    if pa.types.is_null(b):
        return a
    if pa.types.is_dictionary(a):
        return widen(a.value_type, b)
    if pa.types.is_dictionary(b):
        return widen(a, b.value_type)
    if pa.types.is_integer(a) and pa.types.is_integer(b):
        return _common_integer(a, b)
    if pa.types.is_floating(a) and pa.types.is_floating(b):
        return max(a, b, key=lambda t: t.bit_width)
    if pa.types.is_integer(a) and pa.types.is_floating(b):
        return _int_to_float(a, b)
    if pa.types.is_floating(a) and pa.types.is_integer(b):
        return _int_to_float(b, a)
    for small, large in ((pa.string(), pa.large_string()), (pa.binary(), pa.large_binary())):
        if {str(a), str(b)} == {str(small), str(large)}:
            return large
    if _is_list(a) and _is_list(b) and type(a) is type(b) and \
            not pa.types.is_fixed_size_list(a):
        inner = widen(a.value_type, b.value_type)
        if inner is None:
            return None
        return pa.large_list(inner) if pa.types.is_large_list(a) else pa.list_(inner)
    return None


def _is_list(kind: pa.DataType) -> bool:
    return pa.types.is_list(kind) or pa.types.is_large_list(kind) or \
        pa.types.is_fixed_size_list(kind)


def _common_integer(a: pa.DataType, b: pa.DataType) -> pa.DataType | None:
    signed_a, signed_b = pa.types.is_signed_integer(a), pa.types.is_signed_integer(b)
    if signed_a == signed_b:
        return max(a, b, key=lambda t: t.bit_width)
    unsigned, signed = (b, a) if signed_a else (a, b)
    bits = max(signed.bit_width, unsigned.bit_width * 2)
    return next((t for t in _SIGNED if t.bit_width >= bits), None)


def _int_to_float(integer: pa.DataType, floating: pa.DataType) -> pa.DataType | None:
    # a float holds every integer of at most its mantissa's bits (+1 for the sign)
    mantissa = {16: 11, 32: 24, 64: 53}[floating.bit_width]
    needed = integer.bit_width - (1 if pa.types.is_signed_integer(integer) else 0)
    if needed <= mantissa:
        return floating
    return pa.float64() if needed <= 53 else None


def reconcile(inputs: Sequence[tuple[str, pa.Schema]], mode: str = "strict", *,
              what: str = "file", fix: str = "") -> pa.Schema:
    """One schema for ``inputs`` (``(name, schema)`` pairs, e.g. file paths or subset names).

    ``what`` names the kind of input in messages; ``fix`` is appended to them (what the user
    can do besides ``schema='union'``).
    """
    mode = check_mode(mode)
    if not inputs:
        raise ValueError("nothing to reconcile")
    first_name, first = inputs[0]
    fields: dict[str, pa.Field] = {f.name: f for f in first}
    origin: dict[str, str] = {f.name: first_name for f in first}
    _check_unique(first_name, first, what)
    for name, schema in inputs[1:]:
        _check_unique(name, schema, what)
        if mode == "strict":
            _check_same_columns(first_name, first, name, schema, what, fix)
        for field in schema:
            known = fields.get(field.name)
            if known is None:
                fields[field.name] = field.with_nullable(True)
                origin[field.name] = name
                continue
            common = widen(known.type, field.type)
            if common is None:
                raise SourceError(
                    f"column {field.name!r} is {known.type} in {what} {origin[field.name]} but "
                    f"{field.type} in {name}, and one does not convert to the other without "
                    f"loss; {fix or 'give the column one type (column_types)'}")
            fields[field.name] = pa.field(field.name, common,
                                          nullable=known.nullable or field.nullable)
    if mode == "union":
        everywhere = set.intersection(*(set(s.names) for _, s in inputs))
        fields = {k: (f if k in everywhere else f.with_nullable(True)) for k, f in fields.items()}
    same_order = all(s.names == first.names for _, s in inputs)
    metadata = first.metadata if same_order and len(fields) == len(first) else None
    return pa.schema(list(fields.values()), metadata=metadata)


def _check_unique(name: str, schema: pa.Schema, what: str) -> None:
    seen: set[str] = set()
    for column in schema.names:
        if column in seen:
            raise SourceError(f"{what} {name} has two columns named {column!r}; column names "
                              "must be unique")
        seen.add(column)


def _check_same_columns(first_name: str, first: pa.Schema, name: str, schema: pa.Schema,
                        what: str, fix: str) -> None:
    missing = [c for c in first.names if c not in schema.names]
    extra = [c for c in schema.names if c not in first.names]
    if not missing and not extra:
        return
    parts = []
    if missing:
        parts.append(f"lacks {_columns(missing)}")
    if extra:
        parts.append(f"has {_columns(extra)} which {first_name} lacks")
    hint = fix or "put them in separate folders (subsets)"
    raise SourceError(f"{what} {name} does not have the columns of {first_name}: it "
                      f"{' and '.join(parts)}; columns are matched by name, so these are not one "
                      f"table: {hint}, or use schema='union' (missing columns become nulls)")


def _columns(names: list[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:10])
    return shown + (f" and {len(names) - 10} more" if len(names) > 10 else "")
