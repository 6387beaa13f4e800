"""Shuffle stage: the rows of a worker's pieces, read and put in delivery order.

The planner (:mod:`pygestor.loaders.plan`) decides everything: which row-group slices a piece
holds, its windows and the order of each window's rows. This stage reads the row groups those
slices touch (each once, in order, read ahead by :func:`~pygestor.loaders.prefetch.prefetch`),
cuts them into the planned slices and, when shuffling, gathers each window's rows in the planned
order. A background thread (:func:`~pygestor.loaders.prefetch.ahead`) reads and gathers the next
window while the caller works on the current one.

Memory when shuffling: the window being read out, the next one (its row groups and its gathered
copy while it is made) and the row groups read ahead: at most about three windows.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from pygestor.errors import IntegrityError
from pygestor.loaders import plan as P
from pygestor.loaders.prefetch import ahead, prefetch
from pygestor.loaders.stream import RowGroupReader


@dataclass(frozen=True)
class Windows:
    """How a shuffle cuts and orders pieces: at most ``rows`` rows per window, bounds on
    multiples of ``align``, ``strata`` strata per window (:func:`~pygestor.loaders.plan
    .window_order`)."""

    rows: int
    align: int = 1
    strata: int = 256


def piece_tables(reader: RowGroupReader, plans: Sequence[P.PiecePlan], *, sizes: np.ndarray,
                 windows: Windows | None, depth: int) -> Iterator[pa.Table]:
    """The rows ``plans`` still have to deliver, in delivery order, as tables (one per slice,
    or one per shuffle window).

    Args:
        reader: reads (and filters) row groups of the selection.
        plans: the pieces this worker reads, one after the other.
        sizes: rows every row group yields (after filters), as the plans were made from.
        windows: the shuffle (None: catalog order within the plan's slices).
        depth: row groups read ahead.
    """
    if windows is None:
        units = [([piece], None, plan) for plan in plans for piece in plan.rest()]
        return (table for table, _ in _read(reader, units, sizes, depth))
    units = [(plan.slices_between(w.offset, w.offset + w.length), w, plan)
             for plan in plans for w in plan.windows(windows.rows, windows.align)]
    return ahead(_ordered(_read(reader, units, sizes, depth), windows.strata))


Unit = tuple[list[P.Slice], P.Window | None, P.PiecePlan]


def _read(reader: RowGroupReader, units: list[Unit], sizes: np.ndarray,
          depth: int) -> Iterator[tuple[pa.Table, Unit]]:
    """Every unit's rows as read (a slice, or a window's slices together), with the unit."""
    selection = reader.selection
    reads: list[int] = []
    for unit, _, _ in units:
        for piece in unit:
            if not reads or reads[-1] != piece.row_group:
                reads.append(piece.row_group)
    threads = 1 if selection.is_local else max(depth, 1)
    groups = prefetch(lambda g: (g, reader.read(*selection.locate(g))), reads, depth, threads)
    try:
        current: tuple[int, pa.Table] | None = None
        for item in units:
            parts = []
            for piece in item[0]:
                if current is None or current[0] != piece.row_group:
                    current = next(groups)
                    _check_rows(selection.ref, piece.row_group, current[1], sizes)
                parts.append(current[1].slice(piece.start, piece.rows))
            yield (parts[0] if len(parts) == 1 else pa.concat_tables(parts)), item
    finally:
        groups.close()


def _ordered(windows: Iterator[tuple[pa.Table, Unit]], strata: int) -> Iterator[pa.Table]:
    """Each window's rows in the order they are delivered (what a resume already delivered
    left out)."""
    for table, (_, w, plan) in windows:
        assert w is not None
        order = P.window_order(plan.seed, plan.epoch, w.position, w.length, rank=plan.rank,
                               strata=strata, source=plan.source)
        yield table.take(pa.array(order[w.discard:]))


def _check_rows(ref: str, g: int, table: pa.Table, sizes: np.ndarray) -> None:
    if table.num_rows != sizes[g]:
        raise IntegrityError(f"row group {g} of {ref!r} has {table.num_rows} rows but the "
                             f"catalog said {sizes[g]}; the data changed: run 'pygestor "
                             "verify' and build the dataset again")


def batch_diversity(positions: Sequence[int] | np.ndarray, *, batch: int = 256,
                    block: int = 1024) -> float:
    """How well a shuffle mixes: the distinct ``block``-row blocks of the stored order that a
    batch of ``batch`` rows touches, on average, as a share of what a batch of a uniform
    permutation touches (exactly: its expectation). 1.0 is as good as a uniform permutation;
    a shuffle that keeps neighbours together scores near ``batch / block`` of it.

    Args:
        positions: the delivered rows' positions in the stored order (e.g. a sorted id).
        batch, block: batch size and block size of the measure.
    """
    ids = np.asarray(positions, dtype=np.int64)
    total = len(ids)
    whole = total // batch * batch
    if whole == 0:
        raise ValueError(f"need at least one batch of {batch} rows")
    blocks = np.sort(ids[:whole].reshape(-1, batch) // block, axis=1)
    touched = float(np.mean(1 + np.count_nonzero(np.diff(blocks, axis=1), axis=1)))
    sizes = np.diff(np.append(np.arange(0, total, block), total))
    picks = np.arange(batch)
    # P(a block is missed by a uniform batch) = C(N - n, b) / C(N, b)
    missed = [np.exp(np.sum(np.log1p(-n / (total - picks)))) if total - n >= batch else 0.0
              for n in sizes]
    return touched / float(np.sum(1.0 - np.asarray(missed)))
