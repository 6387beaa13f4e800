"""Pure epoch planning: which rows of a subset one (rank, worker) reads, and in what order.

Nothing here touches files, torch or the network: the functions take the catalog's row-group
sizes (rows per row group, in catalog order, zeros allowed) plus settings, and return plain
Python/numpy values. The data loader calls them inside each DataLoader worker.

Vocabulary
----------
* **Row group** ``g``: index ``0..G-1`` into ``row_group_sizes``.
* **Epoch order**: a permutation of row groups, chosen by name from :data:`SHUFFLES` and
  deterministic in ``(seed, epoch)``. The *global sequence* of the epoch is the concatenation of
  the row groups in that order; a *global position* is an index ``0..N-1`` into it
  (``N = sum(row_group_sizes)``).
* **Rank span**: every rank gets the same number ``n`` of samples (:func:`samples_per_rank`).
  Rank ``r`` owns global positions ``[r*n, (r+1)*n)``. With ``drop_last`` the ``N - W*n``
  positions at the end are dropped; without it positions ``p >= N`` wrap to ``p mod N``
  (samples from the start of the epoch order are repeated). *Rank-span positions* ``0..n-1`` are
  relative to the rank's first position.
* **Worker piece**: the rank span is cut into ``K`` contiguous pieces (:func:`worker_pieces`):
  the span is divided into blocks of ``block`` positions (the last block may be short), and the
  blocks are dealt out contiguously and as evenly as possible, the first ``blocks % K`` workers
  getting one block more. So every piece is a multiple of ``block`` except the one holding the end
  of the span (and workers after it, which are empty when there are fewer blocks than workers).
  With ``block=1`` piece sizes differ by at most one; with ``block=batch_size`` every worker but
  the last non-empty one yields only full batches. ``num_workers=0`` means one worker, id 0.
* **Resume**: progress is recorded either as per-worker counts (how many samples each of the
  original ``K0`` workers delivered from the start of its piece), as an ``int`` (a prefix of the
  rank span, i.e. counts for ``K0 = 1``) or as explicit remaining rank-span ranges. When the
  current worker count equals ``K0`` (and ``block`` is unchanged) each worker continues its own
  piece (:attr:`Assignment.skip` > 0), which reproduces the original delivery order exactly,
  including the window shuffle. Otherwise the remaining positions are re-split among the current
  workers with the same block rule (:func:`split_ranges`).
  The data loader uses a third, worker-count-independent form: one count per piece of the
  epoch's original cut, the pieces dealt to the current workers round-robin
  (:func:`pieces_for_worker`, :func:`resume_after_batches`), which keeps every piece's shuffle
  windows and so its exact delivery order.
* **Window shuffle** (done by the reader): each worker's piece is cut into fixed-size windows of
  ``window`` rows at piece offsets ``0, window, 2*window, ...``; the rows of a window are delivered
  in the order :func:`window_permutation` gives. A resumed worker that must skip ``c`` samples
  skips ``c // window`` whole windows, re-reads the window containing offset ``c`` and discards
  the first ``c % window`` rows of its permuted order (:meth:`WorkerPlan.windows`).

Cost: the epoch order and its cumulative sums are ``O(G)`` vectorized numpy; everything else
is ``O(K + row groups touched by this worker)``. Other ranks' plans are never built.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from pygestor.errors import ConfigError, IntegrityError

Range = tuple[int, int]
"""A half-open range ``[start, stop)`` of positions."""

SizesLike = Sequence[int] | np.ndarray

ShuffleFn = Callable[[np.ndarray, int, int], np.ndarray]
"""``(row_group_sizes, seed, epoch) -> permutation of range(G)`` (int64)."""

_WINDOW_STREAM = 1
"""Spawn-key tag that separates window permutations from the row-group permutation stream."""

_FINGERPRINT_VERSION = 1


# --------------------------------------------------------------------------------------------
# Slices


class Slice(NamedTuple):
    """Rows ``[start, stop)`` of row group ``row_group`` (offsets inside the row group)."""

    row_group: int
    start: int
    stop: int

    @property
    def rows(self) -> int:
        """Number of rows in the slice."""
        return self.stop - self.start


def merge_slices(slices: Iterable[Slice]) -> list[Slice]:
    """Merge consecutive slices of the same row group whose rows are adjacent."""
    merged: list[Slice] = []
    for piece in slices:
        if piece.stop <= piece.start:
            continue
        if merged and merged[-1].row_group == piece.row_group and merged[-1].stop == piece.start:
            merged[-1] = Slice(piece.row_group, merged[-1].start, piece.stop)
        else:
            merged.append(piece)
    return merged


def trim_slices(slices: Iterable[Slice], count: int) -> list[Slice]:
    """Drop the first ``count`` rows of a slice list (in delivery order)."""
    out: list[Slice] = []
    for piece in slices:
        if count >= piece.rows:
            count -= piece.rows
            continue
        out.append(Slice(piece.row_group, piece.start + count, piece.stop))
        count = 0
    return out


# --------------------------------------------------------------------------------------------
# Epoch order


def seed_sequence(seed: int, epoch: int, *stream: int) -> np.random.SeedSequence:
    """The seed sequence for ``(seed, epoch)``; ``stream`` ints select an independent stream.

    Without ``stream`` this is exactly ``np.random.SeedSequence([seed, epoch])``; with it the
    stream ints are the ``spawn_key``.
    """
    for name, value in (("seed", seed), ("epoch", epoch)):
        if int(value) != value or value < 0:
            raise ConfigError(f"{name} must be a non-negative integer, got {value!r}")
    return np.random.SeedSequence([int(seed), int(epoch)], spawn_key=tuple(int(s) for s in stream))


def _shuffle_none(sizes: np.ndarray, seed: int, epoch: int) -> np.ndarray:
    """Catalog order."""
    return np.arange(sizes.size, dtype=np.int64)


def _shuffle_rowgroup(sizes: np.ndarray, seed: int, epoch: int) -> np.ndarray:
    """A uniform permutation of row groups from ``Generator(PCG64(seed_sequence(seed, epoch)))``."""
    rng = np.random.Generator(np.random.PCG64(seed_sequence(seed, epoch)))
    return rng.permutation(sizes.size).astype(np.int64, copy=False)


SHUFFLES: dict[str, ShuffleFn] = {
    "none": _shuffle_none,
    "rowgroup": _shuffle_rowgroup,
}
"""Row-group shuffle strategies by name. Each maps ``(sizes, seed, epoch)`` to a permutation."""


def as_sizes(row_group_sizes: SizesLike) -> np.ndarray:
    """Row-group sizes as a 1-D int64 array; raise :class:`ConfigError` on negative sizes."""
    sizes = np.asarray(row_group_sizes, dtype=np.int64).reshape(-1)
    if sizes.size and int(sizes.min()) < 0:
        raise ConfigError("row-group sizes must be >= 0 (the catalog holds a negative row count)")
    return sizes


def epoch_order(
    row_group_sizes: SizesLike, *, seed: int = 0, epoch: int = 0, shuffle: str = "none"
) -> np.ndarray:
    """The permutation of row-group indices for one epoch (identity for ``shuffle="none"``).

    Args:
        row_group_sizes: rows per row group, catalog order.
        seed, epoch: make the order deterministic.
        shuffle: a key of :data:`SHUFFLES`.
    """
    sizes = as_sizes(row_group_sizes)
    return _shuffle_fn(shuffle)(sizes, seed, epoch)


def _shuffle_fn(shuffle: str) -> ShuffleFn:
    try:
        return SHUFFLES[shuffle]
    except KeyError:
        known = ", ".join(sorted(SHUFFLES))
        raise ConfigError(f"unknown shuffle {shuffle!r}; choose one of: {known}") from None


@dataclass(frozen=True, eq=False)
class EpochLayout:
    """The global sample sequence of one epoch: row groups in epoch order and their offsets.

    ``offsets[i]`` is the global position of the first row of ``order[i]``;
    ``offsets[G] == total``. Build it with :func:`epoch_layout`; reuse it to plan many ranks.
    """

    sizes: np.ndarray
    order: np.ndarray
    offsets: np.ndarray
    seed: int
    epoch: int
    shuffle: str

    @property
    def total(self) -> int:
        """Samples in the epoch (``N``)."""
        return int(self.offsets[-1])

    def slices(self, ranges: Iterable[Range]) -> list[Slice]:
        """Slices for global position ranges (each within ``[0, total]``), in the given order."""
        out: list[Slice] = []
        for start, stop in ranges:
            out.extend(self._slices_in(start, stop))
        return merge_slices(out)

    def _slices_in(self, start: int, stop: int) -> list[Slice]:
        if stop <= start:
            return []
        if start < 0 or stop > self.total:
            raise ValueError(f"positions [{start}, {stop}) outside [0, {self.total})")
        first = int(np.searchsorted(self.offsets, start, side="right")) - 1
        end = int(np.searchsorted(self.offsets, stop, side="left"))
        begins = self.offsets[first:end]
        ends = self.offsets[first + 1 : end + 1]
        lo = np.maximum(begins, start) - begins
        hi = np.minimum(ends, stop) - begins
        keep = hi > lo
        groups = self.order[first:end][keep]
        return [
            Slice(g, a, b)
            for g, a, b in zip(groups.tolist(), lo[keep].tolist(), hi[keep].tolist(), strict=True)
        ]


def epoch_layout(
    row_group_sizes: SizesLike, *, seed: int = 0, epoch: int = 0, shuffle: str = "none"
) -> EpochLayout:
    """Build the :class:`EpochLayout` (``O(G)``: one permutation, one gather, one cumsum).

    Args:
        row_group_sizes: rows per row group, catalog order.
        seed, epoch, shuffle: see :func:`epoch_order`.
    """
    sizes = as_sizes(row_group_sizes)
    order = _shuffle_fn(shuffle)(sizes, seed, epoch)
    offsets = np.zeros(sizes.size + 1, dtype=np.int64)
    np.cumsum(sizes[order], out=offsets[1:])
    return EpochLayout(sizes, order, offsets, int(seed), int(epoch), shuffle)


# --------------------------------------------------------------------------------------------
# Ranks


def samples_per_rank(total: int, world_size: int, drop_last: bool) -> int:
    """``N // W`` with ``drop_last``, else ``ceil(N / W)`` (``0`` when ``N == 0``)."""
    _check_world(0, world_size)
    if total <= 0:
        return 0
    return total // world_size if drop_last else -(-total // world_size)


def rank_to_global(ranges: Iterable[Range], rank: int, n: int, total: int) -> list[Range]:
    """Map rank-span ranges of ``rank`` to non-wrapping global position ranges.

    Rank-span position ``i`` is global position ``(rank*n + i) mod total``; a range crossing the
    end of the sequence is split in two (or more when it is longer than ``total``).
    """
    out: list[Range] = []
    if total <= 0:
        return out
    for start, stop in ranges:
        length = stop - start
        position = (rank * n + start) % total
        while length > 0:
            take = min(length, total - position)
            out.append((position, position + take))
            length -= take
            position = 0
    return out


def _check_world(rank: int, world_size: int) -> None:
    if world_size < 1:
        raise ConfigError(f"world_size must be >= 1, got {world_size}")
    if not 0 <= rank < world_size:
        raise ConfigError(f"rank must be in [0, {world_size}), got {rank}")


# --------------------------------------------------------------------------------------------
# Workers and resume (all positions are rank-span positions)


def _effective_workers(num_workers: int) -> int:
    if num_workers < 0:
        raise ConfigError(f"num_workers must be >= 0, got {num_workers}")
    return max(num_workers, 1)


def _check_block(block: int) -> None:
    if block < 1:
        raise ConfigError(f"block must be >= 1, got {block}")


def worker_pieces(n: int, num_workers: int, block: int = 1) -> list[Range]:
    """Cut ``[0, n)`` into ``max(num_workers, 1)`` contiguous pieces (the block rule above).

    Args:
        n: positions to split.
        num_workers: worker count (0 means one worker).
        block: alignment; every piece is a multiple of ``block`` except the one that holds the
            end of the span and the (empty) pieces after it.
    """
    _check_block(block)
    workers = _effective_workers(num_workers)
    blocks = -(-n // block)
    base, extra = divmod(blocks, workers)
    bounds = [0]
    for k in range(workers):
        bounds.append(bounds[-1] + base + (1 if k < extra else 0))
    return [(min(a * block, n), min(b * block, n)) for a, b in itertools.pairwise(bounds)]


def normalize_ranges(ranges: Iterable[Range]) -> list[Range]:
    """Sort ranges, drop empty ones and merge touching ones; raise ``ValueError`` on overlap."""
    out: list[Range] = []
    for start, stop in sorted((int(a), int(b)) for a, b in ranges if b > a):
        if out and start < out[-1][1]:
            raise ValueError(f"ranges overlap at position {start}")
        if out and start == out[-1][1]:
            out[-1] = (out[-1][0], stop)
        else:
            out.append((start, stop))
    return out


def ranges_length(ranges: Iterable[Range]) -> int:
    """Total positions in a list of ranges."""
    return sum(stop - start for start, stop in ranges)


def drop_prefix(ranges: Sequence[Range], count: int) -> list[Range]:
    """The ranges left after removing the first ``count`` positions (in list order)."""
    out: list[Range] = []
    for start, stop in ranges:
        take = min(count, stop - start)
        count -= take
        if start + take < stop:
            out.append((start + take, stop))
    return out


def consume_ranges(
    assignments: Sequence[Sequence[Range]], consumed_per_worker: Sequence[int]
) -> list[Range]:
    """Remaining positions after worker ``k`` consumed the first ``consumed_per_worker[k]``
    positions of ``assignments[k]``; sorted and merged.

    Raises:
        IntegrityError: a count is negative or larger than its worker's share, or the number of
            counts differs from the number of workers.
    """
    if len(consumed_per_worker) != len(assignments):
        raise IntegrityError(
            f"resume state has {len(consumed_per_worker)} per-worker counts but the plan it "
            f"refers to has {len(assignments)} workers"
        )
    remaining: list[Range] = []
    for worker, (ranges, count) in enumerate(zip(assignments, consumed_per_worker, strict=True)):
        size = ranges_length(ranges)
        if not 0 <= count <= size:
            raise IntegrityError(
                f"resume state says worker {worker} consumed {count} samples but its share has "
                f"{size}; the data, world size or batch size changed since it was saved"
            )
        remaining.extend(drop_prefix(ranges, count))
    return normalize_ranges(remaining)


def remaining_ranges(
    n: int, num_workers: int, block: int, consumed_per_worker: Sequence[int]
) -> list[Range]:
    """Rank-span positions not consumed yet when each of the original ``num_workers`` workers
    (pieces from :func:`worker_pieces`) delivered ``consumed_per_worker[k]`` samples.

    Args:
        n: rank span length.
        num_workers, block: the ORIGINAL run's worker count (0 = one worker) and block.
        consumed_per_worker: one count per original worker, each <= its piece size.
    """
    pieces = worker_pieces(n, num_workers, block)
    return consume_ranges([[piece] for piece in pieces], consumed_per_worker)


def split_ranges(ranges: Sequence[Range], num_workers: int, block: int = 1) -> list[list[Range]]:
    """Split ``ranges`` (taken in list order) among ``max(num_workers, 1)`` workers.

    The concatenation of the ranges is cut with :func:`worker_pieces`, so the same block rule
    applies to the remaining positions; the result is disjoint and its union is ``ranges``.
    """
    ranges = [(a, b) for a, b in ranges if b > a]
    starts = [0, *itertools.accumulate(b - a for a, b in ranges)]
    return [
        _take(ranges, starts, lo, hi) for lo, hi in worker_pieces(starts[-1], num_workers, block)
    ]


def _take(ranges: Sequence[Range], starts: Sequence[int], lo: int, hi: int) -> list[Range]:
    """Positions ``[lo, hi)`` of the concatenation of ``ranges`` (``starts`` = prefix sums)."""
    out: list[Range] = []
    index = bisect.bisect_right(starts, lo) - 1
    while lo < hi and index < len(ranges):
        start, stop = ranges[index]
        a = start + lo - starts[index]
        b = min(stop, start + hi - starts[index])
        out.append((a, b))
        lo += b - a
        index += 1
    return out


@dataclass(frozen=True)
class Assignment:
    """One worker's share of a rank span.

    ``ranges`` are rank-span positions in delivery order; the first ``skip`` of them were already
    delivered before a resume (only when the worker continues its own original piece).
    """

    ranges: tuple[Range, ...]
    skip: int = 0

    @property
    def samples(self) -> int:
        """Positions in the share, including the skipped prefix."""
        return ranges_length(self.ranges)

    @property
    def remaining(self) -> int:
        """Positions still to deliver."""
        return self.samples - self.skip

    def position_at(self, offset: int) -> int:
        """Rank-span position of the share's ``offset``-th sample."""
        for start, stop in self.ranges:
            if offset < stop - start:
                return start + offset
            offset -= stop - start
        raise IndexError("offset beyond the worker's share")


def assign_workers(
    n: int,
    num_workers: int,
    *,
    block: int = 1,
    consumed: int | Sequence[int] = 0,
    remaining: Sequence[Range] | None = None,
) -> list[Assignment]:
    """Every current worker's share of an ``n``-position rank span (``O(K)``).

    Args:
        n: rank span length (:func:`samples_per_rank`).
        num_workers: current worker count (0 = one worker).
        block: alignment of the worker split (see :func:`worker_pieces`); must equal the
            original run's block for per-worker ``consumed`` counts.
        consumed: resume progress: an ``int`` (prefix of the rank span already consumed) or one
            count per ORIGINAL worker. If there are as many counts as current workers, each worker
            continues its own piece (``skip`` = its count); otherwise the remaining positions are
            re-split.
        remaining: alternatively, the exact remaining rank-span ranges (e.g. from
            :func:`remaining_after`); they are re-split among the current workers.
    """
    workers = _effective_workers(num_workers)
    if remaining is not None:
        if _any_consumed(consumed):
            raise ConfigError("give either consumed counts or remaining ranges, not both")
        ranges = normalize_ranges(remaining)
        if ranges and (ranges[0][0] < 0 or ranges[-1][1] > n):
            raise IntegrityError(f"remaining ranges fall outside the rank span [0, {n})")
        return [Assignment(tuple(share)) for share in split_ranges(ranges, workers, block)]
    counts = [int(consumed)] if isinstance(consumed, int | np.integer) else list(consumed)
    rest = remaining_ranges(n, len(counts), block, counts)  # also validates the counts
    if len(counts) == workers:
        pieces = worker_pieces(n, workers, block)
        return [
            Assignment(((a, b),) if b > a else (), count)
            for (a, b), count in zip(pieces, counts, strict=True)
        ]
    return [Assignment(tuple(share)) for share in split_ranges(rest, workers, block)]


def _any_consumed(consumed: int | Sequence[int]) -> bool:
    if isinstance(consumed, int | np.integer):
        return consumed != 0
    return any(count != 0 for count in consumed)


def remaining_after(assignments: Sequence[Assignment], delivered: Sequence[int]) -> list[Range]:
    """Remaining rank-span ranges once worker ``k`` delivered ``delivered[k]`` more samples.

    This is the ``num_workers``-independent resume state: pass it back as ``remaining=``.
    """
    return consume_ranges(
        [a.ranges for a in assignments],
        [a.skip + d for a, d in zip(assignments, delivered, strict=True)],
    )


# --------------------------------------------------------------------------------------------
# The plan of one (rank, worker)


class Window(NamedTuple):
    """A shuffle window of a worker's share.

    ``offset``/``length``: the window's rows as share offsets; ``position``: rank-span position of
    its first row (the ``window_start`` for :func:`window_permutation`); ``discard``: how many
    leading entries of the window's permuted order were already delivered (resume).
    """

    offset: int
    length: int
    position: int
    discard: int


@dataclass(frozen=True)
class WorkerPlan:
    """What one (rank, worker) reads in one epoch.

    ``piece_slices`` cover the whole share (including the ``skip`` prefix delivered before a
    resume); :attr:`slices` is what is left to deliver when no window shuffle is used.
    """

    rank: int
    worker: int
    seed: int
    epoch: int
    assignment: Assignment
    piece_slices: tuple[Slice, ...]
    _ends: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ends = tuple(itertools.accumulate(s.rows for s in self.piece_slices))
        object.__setattr__(self, "_ends", ends)

    @property
    def skip(self) -> int:
        """Samples of the share delivered before a resume."""
        return self.assignment.skip

    @property
    def samples(self) -> int:
        """Samples in the share (including the skipped prefix)."""
        return self.assignment.samples

    @property
    def slices(self) -> list[Slice]:
        """The slices still to deliver, in delivery order (no window shuffle)."""
        return self.slices_between(self.skip, self.samples)

    def slices_between(self, start: int, stop: int) -> list[Slice]:
        """Slices for share offsets ``[start, stop)``."""
        out: list[Slice] = []
        index = bisect.bisect_right(self._ends, start)
        while start < stop and index < len(self.piece_slices):
            piece = self.piece_slices[index]
            begin = self._ends[index] - piece.rows
            a = piece.start + start - begin
            b = piece.start + min(stop, self._ends[index]) - begin
            out.append(Slice(piece.row_group, a, b))
            start += b - a
            index += 1
        return out

    def windows(self, window: int) -> Iterator[Window]:
        """Shuffle windows still to (re-)read, from the one holding offset ``skip`` on."""
        if window < 1:
            raise ConfigError(f"window must be >= 1, got {window}")
        if self.skip >= self.samples:
            return
        first, discard = divmod(self.skip, window)
        for offset in range(first * window, self.samples, window):
            length = min(window, self.samples - offset)
            yield Window(offset, length, self.assignment.position_at(offset), discard)
            discard = 0


def plan_worker(
    layout: EpochLayout,
    *,
    rank: int,
    world_size: int,
    worker: int,
    num_workers: int,
    drop_last: bool = False,
    block: int = 1,
    consumed: int | Sequence[int] = 0,
    remaining: Sequence[Range] | None = None,
) -> WorkerPlan:
    """Plan one (rank, worker) of the epoch described by ``layout``.

    Args:
        layout: the epoch's sequence (:func:`epoch_layout`); reusable across ranks and workers.
        rank, world_size: this process's rank among ``world_size`` ranks.
        worker, num_workers: this DataLoader worker (``num_workers=0``: main process, worker 0).
        drop_last: drop the tail (``N // W`` per rank) instead of padding (``ceil(N / W)``).
        block: worker split alignment (e.g. the batch size); see :func:`worker_pieces`.
        consumed, remaining: resume progress; see :func:`assign_workers`.
    """
    _check_world(rank, world_size)
    workers = _effective_workers(num_workers)
    if not 0 <= worker < workers:
        raise ConfigError(f"worker must be in [0, {workers}), got {worker}")
    n = samples_per_rank(layout.total, world_size, drop_last)
    assignment = assign_workers(
        n, num_workers, block=block, consumed=consumed, remaining=remaining
    )[worker]
    positions = rank_to_global(assignment.ranges, rank, n, layout.total)
    return WorkerPlan(
        rank, worker, layout.seed, layout.epoch, assignment, tuple(layout.slices(positions))
    )


def plan_slices(
    row_group_sizes: SizesLike,
    *,
    rank: int,
    world_size: int,
    worker: int,
    num_workers: int,
    seed: int = 0,
    epoch: int = 0,
    shuffle: str = "none",
    drop_last: bool = False,
    block: int = 1,
    consumed: int | Sequence[int] = 0,
    remaining: Sequence[Range] | None = None,
) -> list[Slice]:
    """The slices one (rank, worker) still has to deliver this epoch, in delivery order.

    Args:
        row_group_sizes: rows per row group, catalog order.
        rank, world_size, worker, num_workers: topology (see :func:`plan_worker`).
        seed, epoch, shuffle: the epoch order (see :func:`epoch_order`).
        drop_last, block: rank and worker split (see :func:`plan_worker`).
        consumed, remaining: resume progress (see :func:`assign_workers`).
    """
    layout = epoch_layout(row_group_sizes, seed=seed, epoch=epoch, shuffle=shuffle)
    plan = plan_worker(
        layout,
        rank=rank,
        world_size=world_size,
        worker=worker,
        num_workers=num_workers,
        drop_last=drop_last,
        block=block,
        consumed=consumed,
        remaining=remaining,
    )
    return plan.slices


# --------------------------------------------------------------------------------------------
# DataLoader batches <-> samples


def batches_per_worker(
    piece_sizes: Sequence[int], batch_size: int, drop_incomplete: bool = False
) -> list[int]:
    """Batches each worker yields for its piece: ``ceil(size / batch_size)`` (floor when
    ``drop_incomplete``)."""
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    if drop_incomplete:
        return [size // batch_size for size in piece_sizes]
    return [-(-size // batch_size) for size in piece_sizes]


def consumed_per_worker_from_batches(
    batches_consumed: int, per_worker_batches: Sequence[int]
) -> list[int]:
    """Batches taken from each worker after the main process received ``batches_consumed``.

    Models PyTorch's in-order DataLoader: batch ``i`` comes from the next worker in round-robin
    order, skipping workers that already yielded all their batches. ``O(K log max)``.

    Raises:
        IntegrityError: ``batches_consumed`` is negative or more than all workers yield.
    """
    counts, full_rounds, left = _round_robin_position(batches_consumed, per_worker_batches)
    taken = np.minimum(counts, full_rounds)
    still_active = np.flatnonzero(counts > full_rounds)
    taken[still_active[:left]] += 1
    return taken.tolist()


def _round_robin_position(batches_consumed: int,
                          per_worker_batches: Sequence[int]) -> tuple[np.ndarray, int, int]:
    """(per-worker batch counts, complete rounds, batches taken in the partial round) after
    ``batches_consumed`` batches of PyTorch's round-robin; an error if out of range."""
    counts = np.asarray(per_worker_batches, dtype=np.int64).reshape(-1)
    total = int(counts.sum())
    if not 0 <= batches_consumed <= total:
        raise IntegrityError(
            f"resume state says {batches_consumed} batches were consumed but the epoch has {total}"
        )
    full_rounds = _full_rounds(counts, batches_consumed)
    return counts, full_rounds, batches_consumed - int(np.minimum(counts, full_rounds).sum())


def _full_rounds(counts: np.ndarray, batches: int) -> int:
    """The largest ``L`` with ``sum(min(counts, L)) <= batches`` (binary search)."""
    lo, hi = 0, int(counts.max(initial=0))
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if int(np.minimum(counts, mid).sum()) <= batches:
            lo = mid
        else:
            hi = mid - 1
    return lo


def samples_from_batches(
    batches_per_worker_consumed: Sequence[int], piece_sizes: Sequence[int], batch_size: int
) -> list[int]:
    """Samples each worker delivered: ``min(batches * batch_size, piece size)``."""
    return [
        min(batches * batch_size, size)
        for batches, size in zip(batches_per_worker_consumed, piece_sizes, strict=True)
    ]


def consumed_samples_from_batches(
    batches_consumed: int, piece_sizes: Sequence[int], batch_size: int
) -> list[int]:
    """Per-worker samples delivered once the main process consumed ``batches_consumed`` batches
    (each worker batching its own piece of ``piece_sizes[k]`` samples)."""
    per_worker = batches_per_worker(piece_sizes, batch_size)
    batches = consumed_per_worker_from_batches(batches_consumed, per_worker)
    return samples_from_batches(batches, piece_sizes, batch_size)


# --------------------------------------------------------------------------------------------
# Resuming with another worker count: the epoch's pieces dealt to the current workers
#
# An epoch is cut into ``K0`` pieces once, by the worker count of the run that started it
# (:func:`worker_pieces`). A run that resumes it with ``K`` workers keeps those pieces (so their
# shuffle windows, and with them the exact delivery order inside each piece, are unchanged):
# worker ``j`` reads pieces ``j, j + K, j + 2K, ...`` one after the other, each from its own
# resume offset. Progress therefore stays one count per original piece, whatever ``K`` is.


def pieces_for_worker(worker: int, num_workers: int, num_pieces: int) -> list[int]:
    """The original pieces worker ``worker`` of ``num_workers`` (0 = one worker) reads, in
    order: ``worker, worker + K, ...`` below ``num_pieces``."""
    workers = _effective_workers(num_workers)
    if not 0 <= worker < workers:
        raise ConfigError(f"worker must be in [0, {workers}), got {worker}")
    return list(range(worker, num_pieces, workers))


def distribute(delivered: int, remaining: Sequence[int]) -> list[int]:
    """Split ``delivered`` samples over pieces read one after the other, whose remaining sizes
    are ``remaining``: the first pieces fill up first."""
    out = []
    for size in remaining:
        take = min(delivered, size)
        out.append(take)
        delivered -= take
    if delivered > 0:
        raise IntegrityError(f"{delivered} more samples delivered than the pieces hold")
    return out


def pieces_of_workers(num_workers: int, num_pieces: int, rotation: int = 0) -> list[list[int]]:
    """For each current worker ``j``, the original pieces it reads: those of
    :func:`pieces_for_worker` ``((j + rotation) % K, K, num_pieces)``.

    ``rotation`` lets a resumed DataLoader, whose round-robin always starts at worker 0, hand
    the first batch to the worker whose turn it was when the state was saved
    (:func:`resume_after_batches`), so the delivery order continues exactly.
    """
    workers = _effective_workers(num_workers)
    return [pieces_for_worker((j + rotation) % workers, num_workers, num_pieces)
            for j in range(workers)]


def next_worker_after_batches(batches_consumed: int, per_worker_batches: Sequence[int]) -> int:
    """Where PyTorch's round-robin stands after ``batches_consumed`` batches: the worker to ask
    next, counting exhausted workers as skipped (0 at the start of a round)."""
    counts, full_rounds, left = _round_robin_position(batches_consumed, per_worker_batches)
    if left == 0:
        return 0
    active = np.flatnonzero(counts > full_rounds)
    return int(active[left - 1] + 1) % counts.size


def resume_after_batches(
    batches_consumed: int,
    piece_remaining: Sequence[int],
    num_workers: int,
    batch_size: int,
    drop_incomplete: bool = False,
    rotation: int = 0,
    *,
    bundle: int = 1,
    piece_consumed: Sequence[int] | None = None,
) -> tuple[list[int], int]:
    """What a DataLoader delivered from each original piece, and where its round-robin stands,
    once the main process received ``batches_consumed`` batches of ``batch_size``.

    Worker ``j`` streams its pieces (:func:`pieces_of_workers` with ``rotation``) back to back
    and batches that stream, so it yields ``ceil(sum of their remaining / batch_size)`` batches
    (floor with ``drop_incomplete``); batches arrive in PyTorch's in-order round-robin
    (:func:`consumed_per_worker_from_batches`).

    With ``bundle > 1`` a worker hands over its batches ``bundle`` at a time (one DataLoader item
    holds several batches) and the round-robin is over bundles. Bundles are aligned to multiples
    of ``bundle`` batches from the start of the worker's stream as it was before this iteration
    (``piece_consumed``: samples each piece had consumed before), so a resumed worker's first
    bundle is short and the delivery order continues exactly.

    Args:
        batches_consumed: batches the main process received in this iteration.
        piece_remaining: samples each original piece had left when the iteration started.
        num_workers: the DataLoader's worker count (0 = main process).
        batch_size: samples per batch.
        drop_incomplete: the DataLoader drops each worker's last incomplete batch.
        rotation: the rotation this iteration was started with.
        bundle: batches per DataLoader item.
        piece_consumed: samples consumed from each piece before this iteration (bundle
            alignment; zeros when omitted).

    Returns:
        ``(delivered, rotation)``: samples delivered per original piece in this iteration, and
        the rotation a resumed run with the same number of workers must use.
    """
    workers = _effective_workers(num_workers)
    if bundle < 1:
        raise ConfigError(f"bundle must be >= 1, got {bundle}")
    shares = pieces_of_workers(num_workers, len(piece_remaining), rotation)
    streams = [sum(piece_remaining[k] for k in share) for share in shares]
    per_worker = batches_per_worker(streams, batch_size, drop_incomplete)
    consumed_before = list(piece_consumed) if piece_consumed is not None \
        else [0] * len(piece_remaining)
    firsts = [bundle - (sum(consumed_before[k] for k in share) // batch_size) % bundle
              for share in shares]
    bundles = [0 if n == 0 else 1 + max(0, -(-(n - first) // bundle))
               for n, first in zip(per_worker, firsts, strict=True)]

    def batches_in(counts: Sequence[int]) -> list[int]:
        return [0 if c == 0 else min(n, first + (c - 1) * bundle)
                for c, n, first in zip(counts, per_worker, firsts, strict=True)]

    if not 0 <= batches_consumed <= sum(per_worker):
        raise IntegrityError(f"resume state says {batches_consumed} batches were consumed but "
                             f"the epoch has {sum(per_worker)}")
    lo, hi = 0, sum(bundles)
    while lo < hi:  # the most whole bundles that fit in batches_consumed
        mid = (lo + hi + 1) // 2
        if sum(batches_in(consumed_per_worker_from_batches(mid, bundles))) <= batches_consumed:
            lo = mid
        else:
            hi = mid - 1
    taken = consumed_per_worker_from_batches(lo, bundles)
    done = batches_in(taken)
    following = next_worker_after_batches(lo, bundles)
    partial = batches_consumed - sum(done)
    if partial:  # the next bundle, part-way through: it comes from the first active worker
        following = next(w for w in ((following + i) % workers for i in range(workers))
                         if taken[w] < bundles[w])
        done[following] += partial
    delivered = [0] * len(piece_remaining)
    for share, stream, count in zip(shares, streams, done, strict=True):
        spread = distribute(min(count * batch_size, stream), [piece_remaining[k] for k in share])
        for k, value in zip(share, spread, strict=True):
            delivered[k] = value
    return delivered, (following + rotation) % workers


# --------------------------------------------------------------------------------------------
# Window shuffle


def window_permutation(
    seed: int, epoch: int, window_start: int, length: int, *, rank: int = 0
) -> np.ndarray:
    """Deterministic permutation of ``range(length)`` for the window starting at rank-span
    position ``window_start`` (of rank ``rank``). Windows are fixed-size ranges of a worker's
    share; see :meth:`WorkerPlan.windows`."""
    sequence = seed_sequence(seed, epoch, _WINDOW_STREAM, rank, window_start)
    return np.random.Generator(np.random.PCG64(sequence)).permutation(length)


# --------------------------------------------------------------------------------------------
# Fingerprint and dry run


def plan_fingerprint(
    row_group_sizes: SizesLike,
    *,
    seed: int,
    shuffle: str,
    drop_last: bool,
    world_size: int,
    extra: str = "",
) -> str:
    """A 32-hex-digit blake2b digest of the sizes and the settings that define every rank's
    sequence; a resume state saved with a different fingerprint does not apply.

    ``extra`` is mixed in when not empty (e.g. a digest of the data's checksums and filters, so
    that changed data with unchanged row counts still changes the fingerprint).
    """
    settings = {
        "version": _FINGERPRINT_VERSION,
        "seed": int(seed),
        "shuffle": shuffle,
        "drop_last": bool(drop_last),
        "world_size": int(world_size),
    }
    if extra:
        settings["extra"] = str(extra)
    digest = hashlib.blake2b(digest_size=16, person=b"pygestor-plan")
    digest.update(json.dumps(settings, sort_keys=True).encode() + b"\0")
    digest.update(as_sizes(row_group_sizes).astype("<i8", copy=False).tobytes())
    return digest.hexdigest()


def summarize_plan(
    row_group_sizes: SizesLike,
    world_size: int,
    num_workers: int,
    seed: int = 0,
    epoch: int = 0,
    shuffle: str = "none",
    drop_last: bool = False,
    *,
    block: int = 1,
) -> dict:
    """Dry-run statistics of one epoch for all ranks (vectorized, ``O(G + W log G)``).

    Keys: ``samples``, ``row_groups``, ``empty_row_groups``, ``samples_per_rank``, ``dropped``,
    ``padded``, ``samples_per_worker`` (min/max), ``row_groups_per_rank`` (distinct non-empty row
    groups a rank reads: min/median/mean/max), ``skew`` (max / mean of that), ``fingerprint``,
    plus the settings.
    """
    _check_world(0, world_size)
    layout = epoch_layout(row_group_sizes, seed=seed, epoch=epoch, shuffle=shuffle)
    total = layout.total
    n = samples_per_rank(total, world_size, drop_last)
    touched = _touched_per_rank(layout, world_size, n)
    pieces = [b - a for a, b in worker_pieces(n, num_workers, block)]
    mean = float(touched.mean()) if touched.size else 0.0
    return {
        "samples": total,
        "row_groups": int(layout.sizes.size),
        "empty_row_groups": int(np.count_nonzero(layout.sizes == 0)),
        "world_size": world_size,
        "num_workers": num_workers,
        "block": block,
        "seed": seed,
        "epoch": epoch,
        "shuffle": shuffle,
        "drop_last": drop_last,
        "samples_per_rank": n,
        "dropped": total - world_size * n if drop_last else 0,
        "padded": world_size * n - total if not drop_last else 0,
        "samples_per_worker": {"min": min(pieces), "max": max(pieces)},
        "row_groups_per_rank": {
            "min": int(touched.min()),
            "median": float(np.median(touched)),
            "mean": mean,
            "max": int(touched.max()),
        },
        "skew": float(touched.max()) / mean if mean > 0 else 1.0,
        "fingerprint": plan_fingerprint(
            layout.sizes, seed=seed, shuffle=shuffle, drop_last=drop_last, world_size=world_size
        ),
    }


def _touched_per_rank(layout: EpochLayout, world_size: int, n: int) -> np.ndarray:
    """Distinct non-empty row groups each rank's span intersects (vectorized over ranks)."""
    total = layout.total
    if total == 0 or n == 0:
        return np.zeros(world_size, dtype=np.int64)
    non_empty = layout.sizes[layout.order] > 0
    starts = layout.offsets[:-1][non_empty]
    ends = layout.offsets[1:][non_empty]
    first = (np.arange(world_size, dtype=np.int64) * n) % total
    stop = first + n
    head_stop = np.minimum(stop, total)  # [first, head_stop)
    tail_stop = np.maximum(stop - total, 0)  # [0, tail_stop), the wrapped part (n <= total)
    count = _count_touched(starts, ends, first, head_stop)
    count += _count_touched(starts, ends, np.zeros_like(first), tail_stop)
    # n <= total, so the tail ends at or before the head starts; one row group may hold both.
    group_of_head = np.searchsorted(starts, first, side="right")
    group_of_tail_end = np.searchsorted(starts, np.maximum(tail_stop - 1, 0), side="right")
    count -= (tail_stop > 0) & (group_of_head == group_of_tail_end)
    return count


def _count_touched(
    starts: np.ndarray, ends: np.ndarray, lo: np.ndarray, hi: np.ndarray
) -> np.ndarray:
    """Row groups ``[starts, ends)`` (sorted, non-empty) intersecting each ``[lo, hi)``."""
    count = np.searchsorted(starts, hi, side="left") - np.searchsorted(ends, lo, side="right")
    return np.where(hi > lo, count, 0)
