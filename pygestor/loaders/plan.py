"""Pure epoch planning: which rows of a subset one piece of a rank reads, and in what order.

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
* **Pieces**: the rank span is cut into ``K`` contiguous pieces (:func:`worker_pieces`), ``K``
  being the worker count of the run that starts the epoch: the span is divided into blocks of
  ``block`` positions (the last block may be short), and the blocks are dealt out contiguously and
  as evenly as possible, the first ``blocks % K`` pieces getting one block more. So every piece is
  a multiple of ``block`` except the one holding the end of the span (and pieces after it, which
  are empty when there are fewer blocks than pieces). With ``block=batch_size`` every worker but
  the last non-empty one yields only full batches. ``num_workers=0`` means one worker, id 0.
* **Resume**: progress is one count per piece of the epoch's cut: the samples delivered from
  the start of that piece (:class:`~pygestor.loaders.state.Progress`). A run with ``K`` workers
  deals the pieces round-robin: worker ``j`` reads pieces ``j, j + K, ...`` one after the other,
  each from its own count (:func:`pieces_of_workers`). The pieces, and with them their shuffle
  windows, never change within an epoch, so a resumed piece delivers exactly what the
  uninterrupted one would have; with the same worker count, in the same order
  (:func:`resume_after_batches` also tells whose turn it was).
* **Window shuffle** (done by the reader): each piece is cut into windows of near-equal size, at
  most ``window`` rows each (:func:`window_rows` derives it from a byte budget), their bounds on
  whole batches; the rows of a window are delivered in the stratified order of
  :func:`window_order`. Row groups being in a global random order, a window holds rows from many
  places of the stored order, and every batch takes one row from each of ``strata`` parts of
  its window. A piece resumed at count ``c`` skips the windows before ``c``, re-reads the one
  holding ``c`` and discards the rows of its order already delivered (:meth:`PiecePlan.windows`).

Cost: the epoch order and its cumulative sums are ``O(G)`` vectorized numpy; everything else
is ``O(K + row groups touched by the piece)``. Other ranks' plans are never built.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import json
import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import NamedTuple, TypeVar

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
        seed, epoch: make the order deterministic.
        shuffle: a key of :data:`SHUFFLES`.
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


# --------------------------------------------------------------------------------------------
# The plan of one (rank, worker)


class Window(NamedTuple):
    """A shuffle window of a piece.

    ``offset``/``length``: the window's rows as piece offsets; ``position``: rank-span position of
    its first row (the ``window_start`` for :func:`window_permutation`); ``discard``: how many
    leading entries of the window's permuted order were already delivered (resume).
    """

    offset: int
    length: int
    position: int
    discard: int


@dataclass(frozen=True)
class PiecePlan:
    """What one piece of one rank's epoch holds (of one source, in a mix), and what of it is
    left after a resume.

    ``slices`` cover the whole piece (rank-span positions ``[start, start + samples)``) in
    delivery order; the first ``skip`` samples were delivered before a resume.
    """

    rank: int
    piece: int
    seed: int
    epoch: int
    start: int
    samples: int
    skip: int
    slices: tuple[Slice, ...]
    source: int = 0
    _ends: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        ends = tuple(itertools.accumulate(s.rows for s in self.slices))
        object.__setattr__(self, "_ends", ends)

    @property
    def remaining(self) -> int:
        """Samples still to deliver."""
        return self.samples - self.skip

    def rest(self) -> list[Slice]:
        """The slices still to deliver, in delivery order (no window shuffle)."""
        return self.slices_between(self.skip, self.samples)

    def slices_between(self, start: int, stop: int) -> list[Slice]:
        """Slices for piece offsets ``[start, stop)``."""
        out: list[Slice] = []
        index = bisect.bisect_right(self._ends, start)
        while start < stop and index < len(self.slices):
            piece = self.slices[index]
            begin = self._ends[index] - piece.rows
            a = piece.start + start - begin
            b = piece.start + min(stop, self._ends[index]) - begin
            out.append(Slice(piece.row_group, a, b))
            start += b - a
            index += 1
        return out

    def windows(self, window: int, align: int = 1) -> Iterator[Window]:
        """Shuffle windows still to (re-)read, from the one holding offset ``skip`` on.

        The piece is cut into ``ceil(samples / window)`` windows of near-equal size, their
        bounds on multiples of ``align`` (the batch size: a batch is one round of a window's
        order, see :func:`window_order`), so no window is a short tail."""
        if window < 1 or align < 1:
            raise ConfigError(f"window and align must be >= 1, got {window} and {align}")
        bounds = window_bounds(self.samples, window, align)
        if self.skip >= self.samples:
            return
        first = bisect.bisect_right(bounds, self.skip) - 1
        for k in range(first, len(bounds) - 1):
            offset, end = bounds[k], bounds[k + 1]
            discard = self.skip - offset if k == first else 0
            yield Window(offset, end - offset, self.start + offset, discard)


def window_bounds(samples: int, window: int, align: int = 1) -> list[int]:
    """Bounds of the windows of a piece of ``samples`` positions: ``ceil(samples / window)``
    windows of near-equal size, every inner bound a multiple of ``align``."""
    if samples <= 0:
        return [0]
    count = -(-samples // window)
    units = -(-samples // align)
    inner = [min(samples, (units * k // count) * align) for k in range(1, count)]
    return [0, *inner, samples]


def plan_piece(
    layout: EpochLayout,
    *,
    rank: int,
    world_size: int,
    piece: int,
    num_pieces: int,
    drop_last: bool = False,
    block: int = 1,
    skip: int = 0,
) -> PiecePlan:
    """Plan piece ``piece`` of the ``num_pieces`` pieces of rank ``rank``'s span (one source).

    Args:
        layout: the epoch's sequence (:func:`epoch_layout`); reusable across ranks and pieces.
        rank, world_size: this process's rank among ``world_size`` ranks.
        piece, num_pieces: which piece of the span's cut (:func:`worker_pieces`).
        drop_last: drop the tail (``N // W`` per rank) instead of padding (``ceil(N / W)``).
        block: alignment of the cut (e.g. the batch size); see :func:`worker_pieces`.
        skip: samples of the piece already delivered (resume).
    """
    _check_world(rank, world_size)
    if not 0 <= piece < max(num_pieces, 1):
        raise ConfigError(f"piece must be in [0, {max(num_pieces, 1)}), got {piece}")
    n = samples_per_rank(layout.total, world_size, drop_last)
    a, b = worker_pieces(n, num_pieces, block)[piece]
    return plan_range(layout, rank=rank, per_rank=n, start=a, stop=b, skip=skip, piece=piece)


def plan_range(layout: EpochLayout, *, rank: int, per_rank: int, start: int, stop: int,
               skip: int = 0, piece: int = 0, source: int = 0) -> PiecePlan:
    """Plan rank-span positions ``[start, stop)`` of rank ``rank``, whose span is ``per_rank``
    samples of ``layout``'s sequence (wrapping around its end as often as needed).

    Raises:
        IntegrityError: ``skip`` is negative or beyond the range.
    """
    if not 0 <= skip <= stop - start:
        raise IntegrityError(f"resume state says piece {piece} consumed {skip} samples but it "
                             f"holds {stop - start}; the data, world size or batch size changed "
                             "since it was saved")
    positions = rank_to_global([(start, stop)], rank, per_rank, layout.total)
    return PiecePlan(rank, piece, layout.seed, layout.epoch, start, stop - start, skip,
                     tuple(layout.slices(positions)), source)


# --------------------------------------------------------------------------------------------
# Mixing several sources


def mix_weights(weights: Sequence[float | int | Fraction]) -> tuple[int, ...]:
    """Positive weights as the smallest integers in the same proportions (decimal weights are
    taken exactly as written, to six digits).

    Raises:
        ConfigError: a weight is not a positive number.
    """
    exact = []
    for weight in weights:
        if isinstance(weight, bool) or not isinstance(weight, (int, float, Fraction)) or \
                not weight > 0 or weight != weight or weight == float("inf"):
            raise ConfigError(f"mix weights must be positive numbers, got {weight!r}")
        exact.append(Fraction(str(weight)).limit_denominator(10**6) if isinstance(weight, float)
                     else Fraction(weight))
    common = math.lcm(*(f.denominator for f in exact))
    ints = [int(f * common) for f in exact]
    divisor = math.gcd(*ints)
    return tuple(i // divisor for i in ints)


#: a count of positions: one (int), or one per position (an array)
Count = TypeVar("Count", int, np.ndarray)


def mix_counts(weights: Sequence[int], t: Count) -> list[Count]:
    """Samples of each source among the first ``t`` positions of a rank's mixed sequence
    (``t`` an int, or an array of positions: then arrays of counts, element by element).

    The sources are halved recursively; at each split the left half gets ``round(t * left /
    total)`` positions (halves up), the right half the rest. So every prefix of the sequence
    holds each source within about ``log2(sources) / 2`` samples of its exact share, the counts
    never decrease as ``t`` grows, and they always add up to ``t``. Exact integers.
    """
    if len(weights) == 1:
        return [t]
    half = len(weights) // 2
    left, total = sum(weights[:half]), sum(weights)
    take = (2 * t * left + total) // (2 * total)
    return mix_counts(weights[:half], take) + mix_counts(weights[half:], t - take)


def mix_sources(weights: Sequence[int], start: int, stop: int) -> np.ndarray:
    """The source of every position ``start <= t < stop`` of the mixed sequence (the one
    whose count grows from ``t`` to ``t + 1``), vectorized."""
    risky = 2 * (stop + 1) * sum(weights) >= 1 << 62  # int64 would overflow: Python ints
    positions = np.arange(start, stop + 1, dtype=object if risky else np.int64)
    if len(weights) == 1:
        return np.zeros(max(stop - start, 0), dtype=np.int64)
    grown = np.diff(np.stack(mix_counts(list(weights), positions)), axis=1).astype(np.int64)
    return np.argmax(grown, axis=0).astype(np.int64)


STOPPING = ("repeat", "first_exhausted", "all_exhausted")


def mix_per_rank(rows: Sequence[int], weights: Sequence[int], world_size: int, *,
                 samples_per_epoch: int | None, stopping: str, drop_last: bool = False) -> int:
    """Samples every rank gets in one epoch of a mix of sources holding ``rows`` rows.

    - ``repeat``: ``samples_per_epoch`` over the ranks (``// world_size`` with ``drop_last``,
      else rounded up); a source that runs out starts over.
    - ``first_exhausted``: the most samples with which no source is read more than once
      (over all ranks).
    - ``all_exhausted``: the fewest samples with which every source is read whole at least
      once (the ones that run out first start over).

    ``samples_per_epoch`` also caps the two others. One source with ``drop_last`` and no
    ``samples_per_epoch`` is the plain rule: ``first_exhausted`` is ``N // W``,
    ``all_exhausted`` ``ceil(N / W)``.
    """
    _check_world(0, world_size)
    if stopping not in STOPPING:
        raise ConfigError(f"stopping must be one of {', '.join(STOPPING)}, got {stopping!r}")
    cap = None if samples_per_epoch is None else (
        samples_per_epoch // world_size if drop_last else -(-samples_per_epoch // world_size))
    if stopping == "repeat":
        if cap is None:
            raise ConfigError("stopping='repeat' needs samples_per_epoch= (how many samples an "
                              "epoch holds); or stop when a source runs out: "
                              "stopping='first_exhausted' or 'all_exhausted'")
        return cap

    def fits(n: int) -> bool:  # no source read more than once
        return all(world_size * c <= r for c, r in zip(mix_counts(weights, n), rows,
                                                       strict=True))

    def covers(n: int) -> bool:  # every source read whole
        return all(world_size * c >= r for c, r in zip(mix_counts(weights, n), rows,
                                                       strict=True))

    if stopping == "first_exhausted":
        lo, hi = 0, sum(rows) // world_size + 1  # the largest n that fits
        while lo + 1 < hi:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if fits(mid) else (lo, mid)
        n = lo
    else:
        lo, hi = -1, (sum(rows) + len(rows)) * sum(weights) + 1  # the smallest n that covers
        while lo + 1 < hi:
            mid = (lo + hi) // 2
            lo, hi = (lo, mid) if covers(mid) else (mid, hi)
        n = hi
    return n if cap is None else min(n, cap)


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


def window_order(seed: int, epoch: int, window_start: int, length: int, *, rank: int = 0,
                 strata: int = 256, source: int = 0) -> np.ndarray:
    """The delivery order of a window's ``length`` rows (indices into the window as read).

    Stratified: the window is cut into ``strata`` contiguous strata of near-equal size; round
    ``r`` delivers one row of every stratum (the strata in a random order per round), each
    stratum's rows in a random order. So any round, and any batch that is a round, holds rows
    from ``strata`` places spread over the whole window, where a uniform permutation leaves
    some places out and takes others twice. Deterministic for (seed, epoch, rank, the window's
    rank-span position ``window_start``, ``source`` in a mix); ``O(length)``.
    """
    s = max(1, min(strata, length))
    base = length // s  # rows of the short strata; the long ones have one more
    sizes = np.diff((np.arange(s + 1, dtype=np.int64) * length) // s)
    if length % s == 0:  # whole batches: stratum x round, no gaps
        matrix = np.arange(length, dtype=np.int64).reshape(s, base)
    else:
        matrix = np.full((s, base + 1), -1, dtype=np.int64)
        matrix[np.arange(base + 1)[None, :] < sizes[:, None]] = np.arange(length)
    rng = np.random.Generator(np.random.PCG64(
        seed_sequence(seed, epoch, _WINDOW_STREAM, rank, window_start, source)))
    rng.permuted(matrix[:, :base], axis=1, out=matrix[:, :base])  # each stratum in random order
    long = np.flatnonzero(sizes > base)
    if long.size and base:  # a long stratum's last row goes to a random place of its order
        swap = rng.integers(0, base + 1, size=long.size)
        matrix[long, base], matrix[long, swap] = matrix[long, swap], matrix[long, base]
    by_round = np.ascontiguousarray(matrix.T)
    rng.permuted(by_round, axis=1, out=by_round)  # each round's strata in a random order
    order = by_round.ravel()
    return order if length % s == 0 else order[order >= 0]  # only the last round has gaps


def window_rows(memory: int, row_bytes: float, align: int = 1) -> int:
    """Rows of a shuffle window that a worker holding at most ``memory`` bytes can mix: a
    third of the budget (the window read out, the next one assembled, their read-ahead), a
    multiple of ``align``, at least one ``align``."""
    rows = int(memory // (3 * max(row_bytes, 1.0)))
    return max(align, rows // align * align)


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
