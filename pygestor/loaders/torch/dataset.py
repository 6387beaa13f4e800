"""Dataset stage: :class:`PygestorDataset`, a PyTorch ``IterableDataset`` over a selection.

How an epoch is read (see :mod:`pygestor.loaders.plan` for the exact rules):

1. At construction the catalog is read once (the reference's
   :class:`~pygestor.selection.Selection`): the row-group row counts of the downloaded
   partitions (with ``filters``, the matching rows of every row group, counted by reading only
   the filter columns). ``len()`` comes from these counts; nothing is listed.
2. When iteration starts, in each DataLoader worker, the rank, world size and worker are
   resolved (explicit arguments > ``torch.distributed`` > the rank captured in the main process
   > ``RANK``/``WORLD_SIZE`` > one process), and the pure planner decides which row-group slices
   this worker reads: row groups in a (seed, epoch)-shuffled global order, the same number of
   samples for every rank, each rank's span cut into contiguous pieces for its workers.
3. The worker reads its pieces (:mod:`pygestor.loaders.stream`, :mod:`~.prefetch`,
   :mod:`~.shuffle`), and yields rows (dicts) or ready batches (:mod:`~.rebatch`,
   :mod:`~.torch`, bundled for the hand-off by :mod:`~.handoff`).

Resume: the state is an :class:`~pygestor.loaders.state.EpochState`: epoch, seed, plan
fingerprint and the samples consumed from every piece of the epoch's cut. A
:class:`~pygestor.loaders.torch.loader.PygestorDataLoader` counts the batches the main process
received, which is all it takes to know what every worker delivered; loading the state seeks
straight to the right row group.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from pygestor.config import Settings
from pygestor.errors import ConfigError, IntegrityError
from pygestor.loaders import plan as P
from pygestor.loaders.batches import FORMATS, check_batch_size, convert_batch
from pygestor.loaders.mix import (
    Source,
    SourceSpec,
    apply_transform,
    conform,
    merge,
    open_sources,
    parse_sources,
)
from pygestor.loaders.prefetch import default_depth
from pygestor.loaders.rebatch import rebatch
from pygestor.loaders.shuffle import Windows, piece_tables
from pygestor.loaders.state import Cursor, EpochState, Progress
from pygestor.loaders.stream import Filters, RowGroupReader
from pygestor.loaders.topology import Topology, distributed_topology, resolve_topology
from pygestor.loaders.torch import batch_rows, batch_to_torch, check_stack
from pygestor.loaders.torch.handoff import Bundle
from pygestor.selection import Selection

ROWS_CHUNK = 4096
STRATA = 256
"""Strata of a shuffle window when the batch size is not known (rows for a plain DataLoader)."""

__all__ = ["PygestorDataset"]


@dataclass
class _Delivery:
    """What this process's current iteration started from and has delivered so far."""

    epoch: int
    start: Progress
    pieces: list[int]  # the pieces this worker reads, in order
    remaining: list[int]  # samples each of them had left when the iteration started
    worker: int
    workers: int
    delivered: int = 0
    ended: bool = False  # the iteration ran to its end in the main process


class PygestorDataset(IterableDataset):
    """Downloaded partitions, or a weighted mix of several references, as a PyTorch
    ``IterableDataset``.

    ``DataLoader(PygestorDataset("toy/train"), batch_size=32, num_workers=4)`` just works, in one
    process or under ``torchrun``: every rank gets the same number of samples, samples are split
    across ranks and workers with no overlap and no gap, shuffling is deterministic for
    (seed, epoch), and ``state_dict()`` / ``load_state_dict()`` resume mid-epoch.

    What to read:
        ref: ``dataset``, ``dataset/subset`` or ``dataset/subset/partition``, or a
            :class:`~pygestor.selection.Selection` (``manager.select(ref)``); or a weighted mix,
            ``{"web/train": 0.7, "code/train": 0.3}`` (a value may also be ``{"weight": w,
            "columns": [...], "filters": [...], "transform": table -> table}``): see
            :mod:`pygestor.loaders.mix`.
        columns: columns to read (None: all; for a mix, those all sources share).
        filters: ``[(column, op, value), ...]`` (AND), a list of such lists (OR), or a pyarrow
            expression. The matching rows of every row group are counted once, at construction,
            reading only the filter columns (row groups excluded by their statistics are not
            read), so that ranks still get equal shares and ``len()`` stays exact.
        manager, settings, data_dir: where the data lives (default: the process's manager,
            the one ``pygestor.configure`` set).
    How many:
        samples_per_epoch: samples of one epoch over all ranks (default: every row once, or
            for a mix, until a source runs out).
        stopping: what a source that runs out does: ``"repeat"`` (starts over; the default
            with ``samples_per_epoch``), ``"first_exhausted"`` (ends the epoch; the default of
            a mix without it) or ``"all_exhausted"`` (the epoch lasts until every source was
            read whole).
        drop_last: ranks get ``N // world_size`` samples and the remainder is dropped (True), or
            ``ceil(N / world_size)`` with the last rank(s) padded by repeating samples from the
            start of the epoch (False, the default, like ``DistributedSampler``: no sample is
            ever lost; at most ``world_size - 1`` are repeated). Either way ranks are equal, so a
            DDP job cannot hang on uneven ranks.
        rank, world_size: explicit topology (default: resolved when iteration starts).
    What to yield:
        batch_size: None yields rows (dicts of numpy scalars and strings: what PyTorch's
            default collate turns into the tensors of the batches mode, nulls included); an int
            yields ready batches of that many rows (:class:`~pygestor.loaders.torch.Batch`:
            tensors and lists by default; ``DataLoader(ds, batch_size=None)`` passes them
            through). Every batch is full except the last one of a rank's epoch.
        format: batch format in batches mode: ``torch`` (default), ``numpy``, ``arrow``,
            ``pandas`` or ``dict``.
        stack: numeric columns to hand over as ONE 2-D tensor per batch: a list of columns
            (key ``"features"``) or ``{key: [columns]}``. Much faster with DataLoader workers.
        stack_dtype: dtype of stacked tensors, e.g. ``torch.float32`` or ``"float32"``.
        transform: a function applied to every row (rows mode) or every batch (batches mode),
            in the worker. Must be picklable with the ``spawn`` start method.
        loader_batch_size: the batch size of the DataLoader that batches this dataset's rows:
            aligns worker shares to whole batches so only one batch per epoch is partial and
            ``len(loader)`` is exact. :class:`PygestorDataLoader` sets it for you.
    Order:
        shuffle: shuffle the order of row groups globally, then mix rows inside windows as
            large as ``shuffle_memory`` allows: every batch takes one row from each of as many
            parts of its window as it has rows. Deterministic for (seed, epoch); the samples
            of a rank do not depend on the number of workers (their order does).
        seed: the shuffle seed (same on every rank).
        shuffle_memory: bytes of rows each worker may hold to shuffle (default: the
            ``shuffle_memory`` setting, 128 MB): the window is about a third of it (a mix
            shares it among its sources).
        shuffle_buffer: rows per shuffle window instead (rounded up to whole batches).
    Reading:
        prefetch_depth: row groups read ahead in each worker (default: 2 local, more remote).
        cache: use the local partition cache for remote roots (None: if ``cache_dir`` is set).
    """

    def __init__(self, ref: str | Selection | Mapping[str, Any], batch_size: int | None = None,
                 columns: list[str] | None = None, filters: Filters = None,
                 shuffle: bool = False, seed: int = 0,
                 transform: Callable[[Any], Any] | None = None, drop_last: bool = False,
                 shuffle_buffer: int | None = None, rank: int | None = None,
                 world_size: int | None = None, *, format: str = "torch",  # noqa: A002
                 stack: Sequence[str] | Mapping[str, Sequence[str]] | None = None,
                 stack_dtype: Any = None, loader_batch_size: int | None = None,
                 prefetch_depth: int | None = None, cache: bool | None = None,
                 shuffle_memory: int | str | None = None,
                 samples_per_epoch: int | None = None, stopping: str | None = None,
                 manager: Any = None, settings: Settings | None = None,
                 data_dir: str | None = None) -> None:
        super().__init__()
        _check_arguments(batch_size=batch_size, loader_batch_size=loader_batch_size,
                         shuffle_buffer=shuffle_buffer, format=format, seed=seed,
                         transform=transform, rank=rank, world_size=world_size,
                         samples_per_epoch=samples_per_epoch, stopping=stopping)
        self.batch_size = batch_size
        self.shuffle = bool(shuffle)
        self.seed = seed
        self.transform = transform
        self.drop_last = bool(drop_last)
        self.shuffle_buffer = shuffle_buffer
        self.rank, self.world_size = rank, world_size
        self.format = format
        self.stack_dtype = stack_dtype
        self.loader_batch_size = loader_batch_size
        self.prefetch_depth = prefetch_depth
        self.cache = cache
        self.samples_per_epoch = samples_per_epoch
        self.cursor = Cursor()
        self._open(ref, columns, filters, manager, settings, data_dir)
        self.stopping = stopping or ("repeat" if samples_per_epoch is not None else
                                     "first_exhausted" if self.mixed or drop_last else
                                     "all_exhausted")
        self.samples_per_rank(1)  # checks the stopping rule against the data
        self.stack = check_stack(stack, self.columns or list(self.schema.names), self.schema)
        if self.stack and (batch_size is None or format != "torch"):
            raise ConfigError("stack needs batches of tensors: set batch_size (and "
                              "format='torch')")
        self.shuffle_memory = _memory(shuffle_memory, self.sources[0].selection.settings)
        self._captured: tuple[int, int] | None = distributed_topology()
        self._delivery: _Delivery | None = None  # what this process delivered this epoch
        self._iterations = 0
        self._warned_persistent = False

    def _open(self, ref: Any, columns: list[str] | None, filters: Filters, manager: Any,
              settings: Settings | None, data_dir: str | None) -> None:
        """The sources (one, or a mix's), and the schema handed out."""
        self.mixed = isinstance(ref, Mapping)
        specs = parse_sources(ref) if self.mixed else [SourceSpec(ref, 1)]
        found: list[Any] = []

        def select(name: str) -> Selection:
            if not found:
                found.append(_manager(manager, settings, data_dir))
            return found[0].select(name)

        self.sources, self.schema = open_sources(specs, select, columns=columns,
                                                 filters=filters, cache=self.cache,
                                                 depth=self.prefetch_depth)
        self.ref = " + ".join(src.ref for src in self.sources) if self.mixed else \
            self.sources[0].ref
        self.columns = list(self.schema.names) if self.mixed else self.sources[0].columns
        self.filters = filters

    # ------------------------------------------------------------------ sizes
    @property
    def epoch(self) -> int:
        """The epoch the next iteration reads (see :meth:`set_epoch`)."""
        return self.cursor.epoch

    @property
    def num_rows(self) -> int:
        """Rows the sources hold (after filters): one epoch over all ranks, before the
        drop/pad rule, unless ``samples_per_epoch`` or a mix says otherwise."""
        return sum(src.rows for src in self.sources)

    @property
    def row_group_sizes(self) -> np.ndarray:
        """Samples per row group (the planner's input), in catalog order, source by source."""
        return np.concatenate([src.sizes for src in self.sources])

    @property
    def weights(self) -> tuple[int, ...]:
        """The sources' shares of the mix, as integers (``(1,)`` for one source)."""
        return tuple(src.weight for src in self.sources)

    def topology(self) -> Topology:
        """This process's rank and DataLoader worker, resolved now."""
        if get_worker_info() is None:
            self._capture()
        return resolve_topology(self.rank, self.world_size, captured=self._captured)

    def samples_per_rank(self, world_size: int | None = None) -> int:
        """Samples every rank gets in one epoch."""
        world = self.topology().world_size if world_size is None else world_size
        return P.mix_per_rank([src.rows for src in self.sources], self.weights, world,
                              samples_per_epoch=self.samples_per_epoch,
                              stopping=self.stopping, drop_last=self.drop_last)

    def __len__(self) -> int:
        """Items this rank yields per epoch: samples in rows mode, batches in batches mode."""
        n = self.samples_per_rank()
        return math.ceil(n / self.batch_size) if self.batch_size else n

    def _capture(self) -> None:
        found = distributed_topology()
        if found is not None:
            self._captured = found

    def __getstate__(self) -> dict[str, Any]:
        if get_worker_info() is None:
            self._capture()  # spawn: the rank goes to the workers with the dataset
        state = self.__dict__.copy()
        state["_delivery"] = None
        return state

    # ------------------------------------------------------------------ epochs
    def set_epoch(self, epoch: int) -> None:
        """Use the shuffle order of ``epoch`` from the next iteration on. A loaded resume state
        of another epoch is dropped (the new epoch starts from its beginning)."""
        if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
            raise ConfigError(f"epoch must be a non-negative integer, got {epoch!r}")
        if get_worker_info() is None:
            self._capture()
        if epoch != self.cursor.epoch:
            self._delivery = None
        self.cursor.set_epoch(epoch)

    def _align(self) -> int:
        return self.batch_size or self.loader_batch_size or 1

    def _windows(self) -> list[Windows] | None:
        """Every source's shuffle windows: rows (from ``shuffle_buffer``, or its share of
        ``shuffle_memory``: its weight times its row bytes), alignment and strata (its share of
        the rows of a batch)."""
        if not self.shuffle:
            return None
        align, total = self._align(), sum(self.weights)
        spent = sum(src.weight * src.row_bytes for src in self.sources)
        out = []
        for src in self.sources:
            strata = max(1, round((align if align > 1 else STRATA) * src.weight / total))
            step = strata if len(self.sources) > 1 else align
            if self.shuffle_buffer:
                rows = -(-self.shuffle_buffer * src.weight // total // step) * step
            else:
                memory = self.shuffle_memory * src.weight * src.row_bytes / spent
                rows = P.window_rows(int(memory), src.row_bytes, step)
            out.append(Windows(max(rows, step), step, strata))
        return out

    def _window(self) -> int | list[int] | None:
        """Rows of a shuffle window (one per source of a mix)."""
        windows = self._windows()
        if windows is None:
            return None
        return windows[0].rows if len(windows) == 1 else [w.rows for w in windows]

    def fingerprint(self, world_size: int | None = None) -> str:
        """The plan fingerprint: data (row counts, checksums, columns, filters, mix) and the
        settings that decide every rank's samples and their order."""
        if world_size is None:
            world_size = self.topology().world_size
        mix = [(src.ref, src.weight, len(src.sizes), src.digest()) for src in self.sources]
        return P.plan_fingerprint(
            self.row_group_sizes, seed=self.seed, shuffle="rowgroup" if self.shuffle else "none",
            drop_last=self.drop_last, world_size=world_size,
            extra=f"{mix!r}|{self.samples_per_epoch}|{self.stopping}|{self._windows()}")

    # ------------------------------------------------------------------ iteration
    def __iter__(self) -> Iterator[Any]:
        info = get_worker_info()
        if info is None:
            self._capture()
        topology = resolve_topology(self.rank, self.world_size, captured=self._captured)
        if info is not None:
            self._warn_persistent()
        return self._generate(topology, self.cursor.epoch, self._start(topology))

    def _warn_persistent(self) -> None:
        if self._iterations and not self._warned_persistent and self.cursor.resume is None:
            self._warned_persistent = True
            warnings.warn("PygestorDataset is iterated again in the same DataLoader worker "
                          "(persistent_workers=True): set_epoch() in the main process does "
                          "not reach persistent workers. Use PygestorDataLoader, which "
                          "restarts them when the epoch changes.", stacklevel=3)
        self._iterations += 1

    def _start(self, topology: Topology) -> Progress:
        """Where this iteration starts: the epoch's cut and the samples consumed per piece."""
        progress = self.cursor.start()
        if progress is None:
            return Progress(pieces=topology.workers, block=self._align(),
                            consumed=(0,) * topology.workers, loader_workers=topology.workers)
        if progress.worker is not None and \
                (progress.worker, progress.loader_workers) != (topology.worker, topology.workers):
            raise IntegrityError(f"this resume state belongs to DataLoader worker "
                                 f"{progress.worker} of {progress.loader_workers}, not worker "
                                 f"{topology.worker} of {topology.workers}")
        if progress.loader_workers != topology.workers:  # the rotation is another run's
            return Progress(progress.pieces, progress.block, progress.consumed, 0,
                            topology.workers)
        return progress

    def _plans(self, topology: Topology, epoch: int, start: Progress, pieces: list[int]
               ) -> tuple[list[list[P.PiecePlan]], list[tuple[int, int]]]:
        """Every source's plans of this worker's pieces, and the positions of the mixed
        sequence those pieces still have to deliver."""
        n = self.samples_per_rank(topology.world_size)
        cuts = P.worker_pieces(n, start.pieces, start.block)
        per_rank = P.mix_counts(self.weights, n)
        ranges = [(cuts[k][0] + start.consumed[k], cuts[k][1]) for k in pieces]
        plans = []
        for s, src in enumerate(self.sources):
            layout = P.epoch_layout(src.sizes, seed=self.seed, epoch=epoch,
                                    shuffle="rowgroup" if self.shuffle else "none")
            plans.append([self._plan(layout, topology.rank, per_rank[s], s, k, cuts[k],
                                     start.consumed[k]) for k in pieces])
        return plans, ranges

    def _plan(self, layout: P.EpochLayout, rank: int, per_rank: int, source: int, piece: int,
              cut: tuple[int, int], consumed: int) -> P.PiecePlan:
        """Source ``source``'s part of piece ``piece`` (mixed positions ``cut``)."""
        def count(t: int) -> int:
            return P.mix_counts(self.weights, t)[source]

        a, b = count(cut[0]), count(cut[1])
        return P.plan_range(layout, rank=rank, per_rank=per_rank, start=a, stop=b,
                            skip=count(cut[0] + consumed) - a, piece=piece, source=source)

    def _tables(self, plans: list[list[P.PiecePlan]],
                ranges: list[tuple[int, int]]) -> Iterator[pa.Table]:
        """The rows of the plans in delivery order: one source's stream, or the mix."""
        windows = self._windows()
        streams = []
        for s, src in enumerate(self.sources):
            reader = RowGroupReader(src.selection, src.columns, src.filters, cache=self.cache)
            depth = default_depth(src.selection) if self.prefetch_depth is None \
                else self.prefetch_depth
            stream = piece_tables(reader, plans[s], sizes=src.sizes, depth=depth,
                                  windows=None if windows is None else windows[s])
            streams.append(_closing(stream, reader))
        if not self.mixed:
            return streams[0]
        conformed = [_conformed(stream, src, self.schema)
                     for src, stream in zip(self.sources, streams, strict=True)]
        return _closing(merge(conformed, self.weights, ranges), *streams)

    def _generate(self, topology: Topology, epoch: int, start: Progress) -> Iterator[Any]:
        pieces = P.pieces_of_workers(topology.workers, start.pieces,
                                     start.rotation)[topology.worker]
        plans, ranges = self._plans(topology, epoch, start, pieces)
        delivery = _Delivery(epoch, start, pieces, [b - a for a, b in ranges],
                             topology.worker, topology.workers)
        self._delivery = delivery
        tables = self._tables(plans, ranges)
        try:
            if self.batch_size is None:
                yield from self._rows(tables, delivery)
            else:
                done = sum(start.consumed[k] for k in pieces) // self.batch_size
                yield from self._batches(tables, delivery, done)
            if get_worker_info() is None:
                delivery.ended = True
                self.cursor.finished(epoch)
        finally:
            close = getattr(tables, "close", None)
            if close is not None:
                close()

    def _rows(self, tables: Iterator[pa.Table], delivery: _Delivery) -> Iterator[Any]:
        """Rows as dicts of the values the batches mode would hand out (collate-safe)."""
        for table in tables:
            for offset in range(0, table.num_rows, ROWS_CHUNK):
                for row in batch_rows(table.slice(offset, ROWS_CHUNK)):
                    delivery.delivered += 1
                    yield row if self.transform is None else self.transform(row)

    def _batches(self, tables: Iterator[pa.Table], delivery: _Delivery,
                 done: int) -> Iterator[Any]:
        """Ready batches; in a worker of a PygestorDataLoader, bundled ``cursor.handoff`` at a
        time, aligned to the worker's stream (``done`` batches were delivered before)."""
        bundle = self.cursor.handoff if get_worker_info() is not None else 1
        size = bundle - done % bundle
        pending: list[Any] = []
        for batch in rebatch(tables, self.batch_size or 1):
            delivery.delivered += batch.num_rows
            if self.format == "torch":
                out: Any = batch_to_torch(batch, self.stack, self.stack_dtype)
            else:
                out = convert_batch(batch, self.format)
            if self.transform is not None:
                out = self.transform(out)
            if bundle == 1:
                yield out
                continue
            pending.append(out)
            if len(pending) == size:
                yield Bundle(pending)
                pending, size = [], bundle
        if pending:
            yield Bundle(pending)

    # ------------------------------------------------------------------ resume
    def _state(self, world_size: int, epoch: int, progress: Progress | None) -> EpochState:
        n = self.samples_per_rank(world_size)
        facts: dict[str, Any] = {
            "ref": self.ref, "shuffle": self.shuffle, "drop_last": self.drop_last,
            "world_size": world_size, "window": self._window(), "num_rows": self.num_rows,
            "samples_per_rank": n, "samples_per_epoch": self.samples_per_epoch,
            "stopping": self.stopping}
        if self.mixed:
            facts["weights"] = {src.ref: src.weight for src in self.sources}
            facts["sources"] = dict(zip([src.ref for src in self.sources],
                                        _contributed(self.weights, n, progress), strict=True))
        return EpochState(epoch, self.seed, self.fingerprint(world_size), progress, facts)

    def state_dict(self, loader: DataLoader | None = None,
                   batches: int | None = None) -> dict[str, Any]:
        """Where this rank is in the epoch, as plain data (save it with ``torch.save`` or JSON).

        - In the process that iterates the dataset (``num_workers=0``), call it without
          arguments: it counts what was yielded. Once an iteration ran to its end, the state
          is the epoch's start (the next iteration reads it whole, as torchdata's
          ``StatefulDataLoader`` does after an ended epoch, with workers or without).
        - With a plain ``DataLoader`` and workers, pass the loader and the number of batches you
          received this epoch: ``ds.state_dict(loader=loader, batches=k)``. Or use
          :class:`PygestorDataLoader`, which counts for you (``loader.state_dict()``).
        - Inside a DataLoader worker (torchdata's ``StatefulDataLoader`` calls it there) it
          describes that worker's share.

        The state is the same on every rank (ranks consume equal numbers of batches), so saving
        rank 0's state is enough.
        """
        if loader is not None or batches is not None:
            if loader is None or batches is None:
                raise ConfigError("pass both loader= and batches= (the number of batches "
                                  "the main process received this epoch)")
            return self.state_after_batches(
                batches, num_workers=loader.num_workers,
                batch_size=loader.batch_size if self.batch_size is None else self.batch_size,
                drop_incomplete=bool(loader.drop_last) and self.batch_size is None).to_dict()
        topology = resolve_topology(self.rank, self.world_size, captured=self._captured)
        delivery = self._delivery
        if delivery is None or delivery.epoch != self.cursor.epoch or delivery.ended:
            # nothing read yet, or an iteration that ended: the next one starts afresh (as
            # torchdata starts a new pass after an ended epoch, with workers or without)
            return self._state(topology.world_size, self.cursor.epoch,
                               self.cursor.start()).to_dict()
        return self._state(topology.world_size, delivery.epoch,
                           _delivered(delivery, get_worker_info() is not None)).to_dict()

    def state_after_batches(self, batches: int, *, num_workers: int, batch_size: int | None,
                            drop_incomplete: bool, finished: bool = False,
                            bundle: int = 1) -> EpochState:
        """The state once the main process of a DataLoader received ``batches`` batches of an
        epoch that started from the current resume point (or the beginning)."""
        if batch_size is None:
            raise ConfigError("the DataLoader has batch_size=None but the dataset yields rows: "
                              "cannot count samples from batches")
        if not isinstance(batches, int) or batches < 0:
            raise ConfigError(f"batches must be a non-negative integer, got {batches!r}")
        topology = resolve_topology(self.rank, self.world_size, captured=self._captured,
                                    worker_info=(0, num_workers))
        start = self._start(topology)
        n = self.samples_per_rank(topology.world_size)
        sizes = [b - a for a, b in P.worker_pieces(n, start.pieces, start.block)]
        if finished:
            consumed, rotation = sizes, 0
        else:
            remaining = [s - c for s, c in zip(sizes, start.consumed, strict=True)]
            delivered, rotation = P.resume_after_batches(
                batches, remaining, num_workers, batch_size, drop_incomplete,
                rotation=start.rotation, bundle=bundle, piece_consumed=start.consumed)
            consumed = [c + d for c, d in zip(start.consumed, delivered, strict=True)]
        progress = Progress(start.pieces, start.block, tuple(consumed), rotation,
                            topology.workers)
        return self._state(topology.world_size, self.cursor.epoch, progress)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume from ``state``: the next iteration continues that epoch where it stopped,
        without re-reading what was consumed (it seeks to the row group).

        Raises:
            IntegrityError: the state was saved for other data (partitions added, removed or
                re-downloaded; other filters), another world size, seed, shuffle or drop rule.
        """
        loaded = EpochState.from_dict(state)
        if get_worker_info() is None:
            self._capture()
        topology = resolve_topology(self.rank, self.world_size, captured=self._captured)
        _check_compatible(self, loaded, topology.world_size)
        progress = loaded.progress
        if progress is not None:
            n = self.samples_per_rank(topology.world_size)
            sizes = [b - a for a, b in P.worker_pieces(n, progress.pieces, progress.block)]
            if any(c > s for c, s in zip(progress.consumed, sizes, strict=True)):
                raise IntegrityError("the resume state's consumed counts do not fit this "
                                     "epoch's plan; it was not saved by this dataset")
        self._delivery = None
        self.cursor.resume_from(loaded)


def _delivered(delivery: _Delivery, in_worker: bool) -> Progress:
    """The progress after what ``delivery`` delivered: the whole epoch's, or in a DataLoader
    worker with siblings, that worker's own view."""
    start = delivery.start
    consumed = list(start.consumed)
    for k, d in zip(delivery.pieces, P.distribute(delivery.delivered, delivery.remaining),
                    strict=True):
        consumed[k] += d
    if in_worker and delivery.workers > 1:
        return Progress(start.pieces, start.block, tuple(consumed), start.rotation,
                        delivery.workers, worker=delivery.worker)
    return Progress(start.pieces, start.block, tuple(consumed), 0, 1)


def _contributed(weights: tuple[int, ...], n: int, progress: Progress | None) -> list[int]:
    """Samples each source of a mix gave this rank (a worker's view: that worker's pieces)."""
    if progress is None:
        return [0] * len(weights)
    cuts = P.worker_pieces(n, progress.pieces, progress.block)
    own = range(progress.pieces) if progress.worker is None else P.pieces_of_workers(
        progress.loader_workers, progress.pieces, progress.rotation)[progress.worker]
    total = [0] * len(weights)
    for k in own:
        start = P.mix_counts(weights, cuts[k][0])
        now = P.mix_counts(weights, cuts[k][0] + progress.consumed[k])
        total = [t + b - a for t, a, b in zip(total, start, now, strict=True)]
    return total


def _conformed(tables: Iterator[pa.Table], source: Source, schema: pa.Schema
               ) -> Iterator[pa.Table]:
    """A mix source's tables after its transform, with the mix's columns and types."""
    for table in tables:
        yield conform(apply_transform(source.transform, table, source.ref), schema)


def _closing(tables: Iterator[pa.Table], *closers: Any) -> Iterator[pa.Table]:
    """``tables``; closes it and ``closers`` when done or closed early."""
    try:
        yield from tables
    finally:
        for item in (tables, *closers):
            close = getattr(item, "close", None)
            if close is not None:
                close()


def _check_arguments(*, batch_size: Any, loader_batch_size: Any, shuffle_buffer: Any,
                     format: Any, seed: Any, transform: Any, rank: Any,  # noqa: A002
                     world_size: Any, samples_per_epoch: Any, stopping: Any) -> None:
    if batch_size is not None:
        check_batch_size(batch_size)
    if loader_batch_size is not None:
        check_batch_size(loader_batch_size, "loader_batch_size")
    if shuffle_buffer is not None:
        check_batch_size(shuffle_buffer, "shuffle_buffer")
    if format not in FORMATS:
        raise ConfigError(f"unknown format {format!r}; use one of {', '.join(FORMATS)}")
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")
    if transform is not None and not callable(transform):
        raise ConfigError("transform must be a function (row or batch -> anything)")
    if (rank is None) != (world_size is None):
        raise ConfigError("give both rank and world_size, or neither")
    if rank is not None:
        resolve_topology(rank, world_size, environ={}, worker_info=(0, 0))  # validates
    if samples_per_epoch is not None:
        check_batch_size(samples_per_epoch, "samples_per_epoch")
    if stopping is not None and stopping not in P.STOPPING:
        raise ConfigError(f"stopping must be one of {', '.join(P.STOPPING)}, got {stopping!r}")


def _check_compatible(dataset: PygestorDataset, state: EpochState, world_size: int) -> None:
    if state.fingerprint == dataset.fingerprint(world_size):
        return
    mine = dataset._state(world_size, state.epoch, None).facts
    reasons = []
    for key in ("world_size", "seed", "shuffle", "drop_last", "window"):
        theirs = state.seed if key == "seed" else state.facts.get(key)
        now = dataset.seed if key == "seed" else mine[key]
        if theirs != now:
            label = "the shuffle window (rows, from shuffle_memory or shuffle_buffer)" \
                if key == "window" else key
            reasons.append(f"{label} was {theirs!r}, now {now!r}")
    if state.facts.get("num_rows") != dataset.num_rows:
        reasons.append(f"the data had {state.facts.get('num_rows')} rows, now "
                       f"{dataset.num_rows}")
    if not reasons:
        reasons.append("the data changed (partitions re-downloaded, added or removed, or other "
                       "filters)")
    raise IntegrityError(f"cannot resume {dataset.ref!r} from this state: "
                         f"{'; '.join(reasons)}. Resume with the same data and settings, or "
                         "start the epoch afresh")


def _memory(value: int | str | None, settings: Settings) -> int:
    """``shuffle_memory`` in bytes (``"256MB"`` or an int; None: the setting)."""
    from pygestor.config import parse_size

    if value is None:
        return settings.shuffle_memory
    memory = parse_size(value, "shuffle_memory")
    if memory < 1:
        raise ConfigError(f"shuffle_memory must be positive, got {value!r}")
    return memory


def _manager(manager: Any, settings: Settings | None, data_dir: str | None) -> Any:
    from pygestor.manager import Manager, default_manager

    if manager is not None:
        return manager
    if settings is not None:
        return Manager(settings if data_dir is None else settings.with_overrides(
            data_dir=data_dir))
    if data_dir is not None:
        return Manager(Settings.load(data_dir=data_dir))
    return default_manager()
