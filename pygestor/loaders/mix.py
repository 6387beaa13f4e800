"""Mix stage: several sources read as one weighted sequence.

``PygestorDataset({"web/train": 0.7, "code/train": 0.2, "books/train": 0.1}, ...)`` reads each
source through its own pipeline (read, prefetch, shuffle) and this stage interleaves them in the
order the planner gives (:func:`~pygestor.loaders.plan.mix_sources`): every stretch of the
sequence, so every batch, holds each source in its proportion, to within a sample or two.

A source is a reference with a weight, or a mapping with ``weight`` and, optionally, its own
``columns``, ``filters`` and ``transform`` (an Arrow table in, an Arrow table out, applied
before mixing). The mix hands out the columns all sources share, in the first source's order
(or ``columns=`` among them); a column whose types differ is widened where that loses nothing
(``int32`` and ``int64``...), else refused.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from pygestor.errors import ConfigError
from pygestor.loaders import plan as P
from pygestor.loaders.prefetch import default_depth, prefetch
from pygestor.loaders.stream import (
    RowGroupReader,
    check_columns,
    filter_columns,
    to_expression,
)
from pygestor.selection import Selection

Transform = Callable[[pa.Table], pa.Table]
MIX_CHUNK = 4096
"""Positions of the mixed sequence put together at a time."""


@dataclass(frozen=True)
class SourceSpec:
    """One source of a mix as the user gave it."""

    ref: Any  # a reference or a Selection
    weight: float
    columns: list[str] | None = None
    filters: Any = None
    transform: Transform | None = None


_KEYS = ("weight", "columns", "filters", "transform")


def parse_sources(sources: Mapping[Any, Any]) -> list[SourceSpec]:
    """``{ref: weight}`` or ``{ref: {"weight": w, "columns": [...], "filters": [...],
    "transform": fn}}`` as specs; a clear error for anything else."""
    if not sources:
        raise ConfigError("a mix needs at least one source: {'dataset/subset': weight, ...}")
    specs = []
    for ref, value in sources.items():
        if isinstance(value, Mapping):
            unknown = sorted(set(value) - set(_KEYS))
            if unknown or "weight" not in value:
                raise ConfigError(f"mix source {ref!r}: give 'weight' and optionally "
                                  f"'columns', 'filters', 'transform' (got {sorted(value)})")
            spec = SourceSpec(ref, value["weight"], value.get("columns"), value.get("filters"),
                              value.get("transform"))
        else:
            spec = SourceSpec(ref, value)
        if spec.transform is not None and not callable(spec.transform):
            raise ConfigError(f"mix source {ref!r}: transform must be a function (Arrow table "
                              "-> Arrow table)")
        specs.append(spec)
    P.mix_weights([s.weight for s in specs])  # validates
    return specs


@dataclass(frozen=True, eq=False)
class Source:
    """One source of a dataset (a plain dataset has one), as opened at construction.

    What: ``selection``; ``columns`` read (None: all); ``filters``; ``transform`` (a mix's
    per-source one); ``stored``, the schema as stored; ``schema``, what it hands on. How much:
    ``sizes``, rows of every row group after the filters; ``row_bytes``, one row decoded;
    ``weight``, its integer share of a mix.
    """

    ref: str
    weight: int
    selection: Selection
    columns: list[str] | None
    filters: Any
    transform: Transform | None
    stored: pa.Schema
    schema: pa.Schema
    sizes: np.ndarray
    row_bytes: float

    @property
    def rows(self) -> int:
        return int(self.sizes.sum())

    def digest(self) -> str:
        """What decides its samples: the partitions, the columns and the filters."""
        return f"{self.selection.digest()}|{self.columns!r}|{self.filters!r}"


def open_sources(specs: Sequence[SourceSpec], select: Callable[[str], Selection], *,
                 columns: list[str] | None, filters: Any, cache: bool | None,
                 depth: int | None) -> tuple[list[Source], pa.Schema]:
    """Open every source (one footer each, and a count of matching rows with filters) and
    the schema the dataset hands out. One source: its ``columns``. Several: the columns all
    of them share after their transforms (:func:`common_schema`), read only where needed."""
    weights = P.mix_weights([spec.weight for spec in specs])
    mixed = len(specs) > 1 or specs[0].transform is not None
    opened = []
    for spec, weight in zip(specs, weights, strict=True):
        selection = spec.ref if isinstance(spec.ref, Selection) else select(spec.ref)
        wanted = spec.columns if spec.columns is not None else (None if mixed else columns)
        opened.append(_probe(selection, weight, wanted, spec.filters if spec.filters
                             is not None else filters, spec.transform, cache))
    if not mixed:
        return [_counted(opened[0], cache, depth)], opened[0].schema
    schema = common_schema([(src.ref, src.schema) for src in opened], columns)
    narrowed = [_narrow(src, schema, cache) for src in opened]
    return [_counted(src, cache, depth) for src in narrowed], schema


def _probe(selection: Selection, weight: int, columns: list[str] | None, filters: Any,
           transform: Transform | None, cache: bool | None) -> Source:
    reader = RowGroupReader(selection, cache=cache)
    try:
        stored = reader.schema()
        columns = check_columns(columns, stored)
        to_expression(filters, stored)  # validates
        row_bytes = reader.row_bytes(columns)
    finally:
        reader.close()
    read = stored if columns is None else pa.schema([stored.field(c) for c in columns])
    schema = apply_transform(transform, read.empty_table(), selection.ref).schema
    return Source(selection.ref, weight, selection, columns, filters, transform, stored, schema,
                  selection.row_group_sizes, row_bytes)


def _narrow(source: Source, schema: pa.Schema, cache: bool | None) -> Source:
    """Without a transform, read only the columns the mix hands out."""
    if source.transform is not None or source.columns is not None:
        return source
    return _probe(source.selection, source.weight, list(schema.names), source.filters, None,
                  cache)


def _counted(source: Source, cache: bool | None, depth: int | None) -> Source:
    """``source`` with the matching rows of every row group counted (with filters)."""
    if source.filters is None:
        return source
    selection = source.selection
    reader = RowGroupReader(selection, filter_columns(source.filters, source.stored),
                            source.filters, cache=cache)
    tasks = [selection.locate(g) for g in range(len(selection.row_group_sizes))]
    depth = max(depth or 0, default_depth(selection), 4)
    try:
        counts = prefetch(lambda task: reader.count(*task) if selection.partitions[task[0]]
                          .row_groups[task[1]] else 0, tasks, depth, depth)
        sizes = np.fromiter(counts, dtype=np.int64, count=len(tasks))
    finally:
        reader.close()
    return Source(source.ref, source.weight, selection, source.columns, source.filters,
                  source.transform, source.stored, source.schema, sizes, source.row_bytes)


def apply_transform(transform: Transform | None, table: pa.Table, ref: str) -> pa.Table:
    """A source's transform applied to ``table``; it must give an Arrow table back."""
    if transform is None:
        return table
    out = transform(table)
    if not isinstance(out, pa.Table):
        raise ConfigError(f"the transform of mix source {ref!r} returned "
                          f"{type(out).__name__}, not a pyarrow Table")
    return out


def common_schema(schemas: Sequence[tuple[str, pa.Schema]],
                  columns: list[str] | None) -> pa.Schema:
    """The columns every source has (in the first source's order), each in a type all of
    them convert to without loss; ``columns`` picks some of them."""
    from pygestor.schemas import widen

    first = schemas[0][1]
    shared = [name for name in first.names if all(name in s.names for _, s in schemas)]
    if columns is not None:
        missing = [c for c in columns if c not in shared]
        if missing:
            raise ConfigError(f"column(s) {', '.join(map(repr, missing))} are not in every "
                              f"source of the mix; shared columns: {', '.join(shared) or 'none'}")
        shared = list(columns)
    if not shared:
        raise ConfigError("the sources of the mix share no column; give each source "
                          "'columns' or a 'transform' that names them alike")
    fields = []
    for name in shared:
        kind: pa.DataType | None = first.field(name).type
        for _, schema in schemas[1:]:
            kind = widen(kind, schema.field(name).type) if kind is not None else None
            if kind is None:
                types = ", ".join(f"{r}: {s.field(name).type}" for r, s in schemas)
                raise ConfigError(f"column {name!r} has types that do not convert without loss "
                                  f"({types}); cast it in a source's 'transform'")
        fields.append(pa.field(name, kind))
    return pa.schema(fields)


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` with exactly ``schema``'s columns and types."""
    table = table.select(schema.names)
    return table if table.schema.equals(schema) else table.cast(schema)


class Rows:
    """Exactly ``n`` rows at a time from a stream of tables."""

    def __init__(self, tables: Iterator[pa.Table]) -> None:
        self._tables = tables
        self._carry: pa.Table | None = None

    def take(self, n: int) -> pa.Table:
        parts: list[pa.Table] = []
        while n > 0:
            if self._carry is None or self._carry.num_rows == 0:
                self._carry = next(self._tables)
                continue
            part = self._carry.slice(0, n)
            self._carry = self._carry.slice(part.num_rows)
            parts.append(part)
            n -= part.num_rows
        return parts[0] if len(parts) == 1 else pa.concat_tables(parts)


def merge(streams: Sequence[Iterator[pa.Table]], weights: Sequence[int],
          ranges: Sequence[tuple[int, int]]) -> Iterator[pa.Table]:
    """The mixed sequence at positions ``ranges`` (in order): each source's rows, in its own
    stream's order, put where :func:`~pygestor.loaders.plan.mix_sources` places that source."""
    rows = [Rows(stream) for stream in streams]
    for start, stop in ranges:
        for a in range(start, stop, MIX_CHUNK):
            sources = P.mix_sources(weights, a, min(stop, a + MIX_CHUNK))
            counts = np.bincount(sources, minlength=len(rows))
            parts = [rows[s].take(int(c)) for s, c in enumerate(counts) if c]
            grouped = np.argsort(sources, kind="stable")  # positions, source by source
            where = np.empty_like(grouped)
            where[grouped] = np.arange(grouped.size)
            table = parts[0] if len(parts) == 1 else pa.concat_tables(parts)
            yield table.take(pa.array(where))
