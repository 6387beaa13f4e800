"""Shuffle stage: the rows of a worker's pieces, read and put in delivery order.

The planner (:mod:`pygestor.loaders.plan`) decides everything: which row-group slices a piece
holds, its windows and the order of each window's rows. This stage reads the row groups those
slices touch (each once, in order, read ahead by :func:`~pygestor.loaders.prefetch.prefetch`),
cuts them into the planned slices, gathers each window and puts its rows in the planned order.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import pyarrow as pa

from pygestor.errors import IntegrityError
from pygestor.loaders import plan as P
from pygestor.loaders.prefetch import prefetch
from pygestor.loaders.stream import RowGroupReader


def piece_tables(reader: RowGroupReader, plans: Sequence[P.PiecePlan], *, sizes: np.ndarray,
                 window: int | None, depth: int) -> Iterator[pa.Table]:
    """The rows ``plans`` still have to deliver, in delivery order, as tables (one per slice,
    or one per shuffle window).

    Args:
        reader: reads (and filters) row groups of the selection.
        plans: the pieces this worker reads, one after the other.
        sizes: rows every row group yields (after filters), as the plans were made from.
        window: rows per shuffle window (None: no shuffle).
        depth: row groups read ahead.
    """
    selection = reader.selection
    units: list[tuple[list[P.Slice], P.Window | None, P.PiecePlan]] = []
    for plan in plans:
        if window is None:
            units.extend(([piece], None, plan) for piece in plan.rest())
        else:
            units.extend((plan.slices_between(w.offset, w.offset + w.length), w, plan)
                         for w in plan.windows(window))
    reads: list[int] = []
    for unit, _, _ in units:
        for piece in unit:
            if not reads or reads[-1] != piece.row_group:
                reads.append(piece.row_group)
    threads = 1 if selection.is_local else max(depth, 1)
    groups = prefetch(lambda g: (g, reader.read(*selection.locate(g))), reads, depth, threads)
    try:
        current: tuple[int, pa.Table] | None = None
        for unit, w, plan in units:
            parts = []
            for piece in unit:
                if current is None or current[0] != piece.row_group:
                    current = next(groups)
                    _check_rows(selection.ref, piece.row_group, current[1], sizes)
                parts.append(current[1].slice(piece.start, piece.rows))
            table = parts[0] if len(parts) == 1 else pa.concat_tables(parts)
            if w is not None:
                order = P.window_permutation(plan.seed, plan.epoch, w.position, w.length,
                                             rank=plan.rank)[w.discard:]
                table = table.take(pa.array(order))
            yield table
    finally:
        groups.close()


def _check_rows(ref: str, g: int, table: pa.Table, sizes: np.ndarray) -> None:
    if table.num_rows != sizes[g]:
        raise IntegrityError(f"row group {g} of {ref!r} has {table.num_rows} rows but the "
                             f"catalog said {sizes[g]}; the data changed: run 'pygestor "
                             "verify' and build the dataset again")
