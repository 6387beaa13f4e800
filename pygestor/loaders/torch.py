"""PyTorch: :class:`PygestorDataset` (an ``IterableDataset``) and :class:`PygestorDataLoader`.

How an epoch is read (see :mod:`pygestor.loaders.plan` for the exact rules):

1. At construction the catalog is read once: the row-group row counts of the downloaded
   partitions (with ``filters``, the matching rows of every row group, counted by reading only
   the filter columns). ``len()`` comes from these counts; nothing is listed.
2. When iteration starts, in each DataLoader worker, the rank, world size and worker are
   resolved (explicit arguments > ``torch.distributed`` > the rank captured in the main process
   > ``RANK``/``WORLD_SIZE`` > one process), and the pure planner decides which row-group slices
   this worker reads: row groups in a (seed, epoch)-shuffled global order, the same number of
   samples for every rank, each rank's span cut into contiguous pieces for its workers.
3. The worker reads its slices (:mod:`pygestor.loaders.stream`: only the needed columns, the
   next row groups prefetched in a thread, ranged reads from object stores), shuffles rows inside
   fixed windows of ``shuffle_buffer`` rows, and yields rows (dicts) or ready batches.

Resume: the state is (epoch, seed, samples consumed per piece of the epoch, plan fingerprint).
A :class:`PygestorDataLoader` counts the batches the main process received, which is all it takes
to know what every worker delivered; loading the state seeks straight to the right row group.
"""

from __future__ import annotations

import math
import warnings
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa
import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from pygestor.config import Settings
from pygestor.errors import ConfigError, IntegrityError
from pygestor.loaders import plan as P
from pygestor.loaders.arrow import Filters, check_columns, to_expression
from pygestor.loaders.batches import FORMATS, check_batch_size, convert_batch
from pygestor.loaders.stream import (
    RowGroupReader,
    Source,
    default_depth,
    filter_columns,
    prefetch,
    rebatch,
)
from pygestor.loaders.topology import Topology, distributed_topology, resolve_topology

STATE_FORMAT = "pygestor.dataset-state/1"
DEFAULT_SHUFFLE_BUFFER = 8192
ROWS_CHUNK = 4096
STACK_KEY = "features"
HANDOFF_ROWS = 4096
"""Rows per worker-to-main hand-off with PygestorDataLoader (batches are bundled up to this)."""

__all__ = ["PygestorDataLoader", "PygestorDataset", "batch_to_torch", "column_to_torch",
           "keep_batch"]


# ============================================================================================
# Arrow -> torch


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


# ============================================================================================
# Worker -> main hand-off


class _Slot(NamedTuple):
    """Where one tensor of a packed bundle lives in the bundle's buffer."""

    dtype: torch.dtype
    shape: tuple[int, ...]
    offset: int
    nbytes: int


class Bundle:
    """Several ready batches handed from a DataLoader worker to the main process as one item.

    Moving a tensor between processes costs about the same whatever its size (a shared memory
    segment and a file descriptor each), so when a bundle is pickled in the worker every tensor
    of every batch is copied into ONE buffer tensor; unpickling in the main process gives the
    batches back as views of that buffer. :class:`PygestorDataLoader` opens bundles, so users
    only ever see ordinary batches.
    """

    __slots__ = ("batches",)

    def __init__(self, batches: list[Any]) -> None:
        self.batches = batches

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return _unpack_bundle, _pack_bundle(self.batches)

    def pin_memory(self) -> Bundle:
        from torch.utils.data._utils.pin_memory import pin_memory

        return Bundle([pin_memory(batch) for batch in self.batches])


def _pack_bundle(batches: list[Any]) -> tuple[torch.Tensor, list[Any]]:
    tensors: list[tuple[torch.Tensor, int]] = []
    skeletons: list[Any] = []
    total = 0
    for batch in batches:
        if not isinstance(batch, dict):
            skeletons.append(batch)
            continue
        skeleton = {}
        for key, value in batch.items():
            if isinstance(value, torch.Tensor) and value.device.type == "cpu" \
                    and not value.requires_grad and value.layout == torch.strided:
                value = value.contiguous()
                nbytes = value.numel() * value.element_size()
                tensors.append((value, total))
                skeleton[key] = _Slot(value.dtype, tuple(value.shape), total, nbytes)
                total += -(-nbytes // 64) * 64
            else:
                skeleton[key] = value
        skeletons.append(skeleton)
    buffer = torch.empty(total, dtype=torch.uint8)
    for value, offset in tensors:
        if value.numel():
            buffer[offset:offset + value.numel() * value.element_size()].copy_(
                value.reshape(-1).view(torch.uint8))
    return buffer, skeletons


def _unpack_bundle(buffer: torch.Tensor, skeletons: list[Any]) -> Bundle:
    batches = []
    for skeleton in skeletons:
        if isinstance(skeleton, dict):
            skeleton = {key: buffer[v.offset:v.offset + v.nbytes].view(v.dtype).view(v.shape)
                        if isinstance(v, _Slot) else v for key, v in skeleton.items()}
        batches.append(skeleton)
    return Bundle(batches)


# ============================================================================================
# The dataset


class PygestorDataset(IterableDataset):
    """The downloaded partitions of a dataset, subset or partition as a PyTorch ``IterableDataset``.

    ``DataLoader(PygestorDataset("toy/train"), batch_size=32, num_workers=4)`` just works, in one
    process or under ``torchrun``: every rank gets the same number of samples, samples are split
    across ranks and workers with no overlap and no gap, shuffling is deterministic for
    (seed, epoch), and ``state_dict()`` / ``load_state_dict()`` resume mid-epoch.

    Args:
        ref: ``dataset``, ``dataset/subset`` or ``dataset/subset/partition``.
        batch_size: None yields rows (dicts); an int yields ready batches of that many rows
            (dicts of tensors by default; use ``DataLoader(ds, batch_size=None)``). Every batch
            is full except the last one of a rank's epoch.
        columns: columns to read (None: all).
        filters: ``[(column, op, value), ...]`` (AND), a list of such lists (OR), or a pyarrow
            expression. The matching rows of every row group are counted once, at construction,
            reading only the filter columns (row groups excluded by their statistics are not
            read), so that ranks still get equal shares and ``len()`` stays exact.
        shuffle: shuffle the order of row groups globally, then rows inside windows of
            ``shuffle_buffer`` rows. Deterministic for (seed, epoch); the samples of a rank and
            their order do not depend on the number of workers.
        seed: the shuffle seed (same on every rank).
        transform: a function applied to every row (rows mode) or every batch (batches mode),
            in the worker. Must be picklable with the ``spawn`` start method.
        drop_last: ranks get ``N // world_size`` samples and the remainder is dropped (True), or
            ``ceil(N / world_size)`` with the last rank(s) padded by repeating samples from the
            start of the epoch (False, the default, like ``DistributedSampler``: no sample is
            ever lost; at most ``world_size - 1`` are repeated). Either way ranks are equal, so a
            DDP job cannot hang on uneven ranks.
        shuffle_buffer: rows per shuffle window (memory per worker is about this many rows plus
            the row groups read ahead). Rounded up to a multiple of the batch size.
        rank, world_size: explicit topology (default: resolved when iteration starts).
        format: batch format in batches mode: ``torch`` (default), ``numpy``, ``arrow``,
            ``pandas`` or ``dict``.
        stack: numeric columns to hand over as ONE 2-D tensor per batch: a list of columns
            (key ``"features"``) or ``{key: [columns]}``. Much faster with DataLoader workers.
        stack_dtype: dtype of stacked tensors, e.g. ``torch.float32`` or ``"float32"``.
        loader_batch_size: the batch size of the DataLoader that batches this dataset's rows:
            aligns worker shares to whole batches so only one batch per epoch is partial and
            ``len(loader)`` is exact. :class:`PygestorDataLoader` sets it for you.
        prefetch_depth: row groups read ahead in each worker (default: 2 local, more remote).
        cache: use the local partition cache for remote roots (None: if ``cache_dir`` is set).
        manager, settings, data_dir: where the data lives (default: the API's manager, from the
            configuration).
    """

    def __init__(self, ref: str, batch_size: int | None = None,
                 columns: list[str] | None = None, filters: Filters = None,
                 shuffle: bool = False, seed: int = 0,
                 transform: Callable[[Any], Any] | None = None, drop_last: bool = False,
                 shuffle_buffer: int = DEFAULT_SHUFFLE_BUFFER, rank: int | None = None,
                 world_size: int | None = None, *, format: str = "torch",  # noqa: A002
                 stack: Sequence[str] | Mapping[str, Sequence[str]] | None = None,
                 stack_dtype: Any = None, loader_batch_size: int | None = None,
                 prefetch_depth: int | None = None, cache: bool | None = None,
                 manager: Any = None, settings: Settings | None = None,
                 data_dir: str | None = None) -> None:
        super().__init__()
        if batch_size is not None:
            check_batch_size(batch_size)
        if loader_batch_size is not None:
            check_batch_size(loader_batch_size, "loader_batch_size")
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
        self.ref = ref
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
        self.epoch = 0

        manager = _manager(manager, settings, data_dir)
        self._source = Source.open(manager, ref)
        probe = RowGroupReader(self._source, cache=cache)
        schema = probe.schema()
        self.columns = check_columns(columns, schema)
        to_expression(filters, schema)  # validates
        self.filters = filters
        self.stack = _check_stack(stack, self.columns or list(schema.names), schema)
        if self.stack and (batch_size is None or format != "torch"):
            raise ConfigError("stack needs batches of tensors: set batch_size (and "
                              "format='torch')")
        if filters is None:
            self._sizes = self._source.sizes.copy()
        else:
            self._sizes = _count_matches(self._source, filters, schema, cache, prefetch_depth)
        self._data = self._source.digest() + "|" + repr(filters)
        self._captured: tuple[int, int] | None = distributed_topology()
        self._resume: dict[str, Any] | None = None  # progress to start the epoch from
        self._progress: dict[str, Any] | None = None  # what this process delivered
        self._resume_version = 0  # changes whenever the resume point does
        self._handoff = 1  # batches per DataLoader item in workers (set by PygestorDataLoader)
        self._iterations = 0
        self._warned_persistent = False

    # ------------------------------------------------------------------ sizes
    @property
    def num_rows(self) -> int:
        """Samples in one epoch over all ranks, before the drop/pad rule (after filters)."""
        return int(self._sizes.sum())

    @property
    def row_group_sizes(self) -> np.ndarray:
        """Samples per row group (the planner's input), in catalog order."""
        return self._sizes.copy()

    def topology(self) -> Topology:
        """This process's rank and DataLoader worker, resolved now."""
        if get_worker_info() is None:
            self._capture()
        return resolve_topology(self.rank, self.world_size, captured=self._captured)

    def samples_per_rank(self) -> int:
        """Samples every rank gets in one epoch."""
        return P.samples_per_rank(self.num_rows, self.topology().world_size, self.drop_last)

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
        state["_progress"] = None
        return state

    # ------------------------------------------------------------------ epochs
    def set_epoch(self, epoch: int) -> None:
        """Use the shuffle order of ``epoch`` from the next iteration on. A loaded resume state
        of another epoch is dropped (the new epoch starts from its beginning)."""
        if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
            raise ConfigError(f"epoch must be a non-negative integer, got {epoch!r}")
        if get_worker_info() is None:
            self._capture()
        if self._resume is not None and self._resume["epoch"] != epoch:
            self._resume = None
            self._resume_version += 1
        if epoch != self.epoch:
            self._progress = None
        self.epoch = epoch

    def _align(self) -> int:
        return self.batch_size or self.loader_batch_size or 1

    def _window(self) -> int | None:
        if not self.shuffle:
            return None
        align = self._align()
        return -(-self.shuffle_buffer // align) * align

    def _block(self) -> int:
        return self._window() or self._align()

    def fingerprint(self, world_size: int | None = None) -> str:
        """The plan fingerprint: data (row counts, checksums, filters) and the settings that
        decide every rank's samples."""
        if world_size is None:
            world_size = self.topology().world_size
        return P.plan_fingerprint(self._sizes, seed=self.seed,
                                  shuffle="rowgroup" if self.shuffle else "none",
                                  drop_last=self.drop_last, world_size=world_size,
                                  extra=self._data)

    # ------------------------------------------------------------------ iteration
    def __iter__(self) -> Iterator[Any]:
        info = get_worker_info()
        if info is None:
            self._capture()
        topology = resolve_topology(self.rank, self.world_size, captured=self._captured)
        epoch = self.epoch
        if info is not None:
            if self._iterations and not self._warned_persistent and self._resume is None:
                self._warned_persistent = True
                warnings.warn("PygestorDataset is iterated again in the same DataLoader worker "
                              "(persistent_workers=True): set_epoch() in the main process does "
                              "not reach persistent workers. Use PygestorDataLoader, which "
                              "restarts them when the epoch changes.", stacklevel=2)
            self._iterations += 1
        start = self._start(topology)
        return self._generate(topology, epoch, start)

    def _start(self, topology: Topology) -> dict[str, Any]:
        """Where this epoch starts: the original cut (K0 pieces, block) and consumed counts."""
        n = P.samples_per_rank(self.num_rows, topology.world_size, self.drop_last)
        resume = self._resume
        if resume is not None and resume["epoch"] == self.epoch:
            progress = resume["progress"]
            kind = progress["kind"]
            if kind == "counts":
                rotation = progress.get("rotation", 0) \
                    if progress.get("loader_workers") == topology.workers else 0
                return {"num_pieces": progress["num_workers"], "block": progress["block"],
                        "consumed": list(progress["consumed"]), "n": n, "rotation": rotation}
            if kind == "worker":
                if (progress["worker"], progress["num_workers"]) != (topology.worker,
                                                                     topology.workers):
                    raise IntegrityError(
                        f"this resume state belongs to DataLoader worker {progress['worker']} "
                        f"of {progress['num_workers']}, not worker {topology.worker} of "
                        f"{topology.workers}")
                consumed = [0] * progress["num_pieces"]
                for k, count in progress["pieces"].items():
                    consumed[int(k)] = int(count)
                return {"num_pieces": progress["num_pieces"], "block": progress["block"],
                        "consumed": consumed, "n": n, "rotation": progress["rotation"]}
        return {"num_pieces": topology.workers, "block": self._block(),
                "consumed": [0] * topology.workers, "n": n, "rotation": 0}

    def _generate(self, topology: Topology, epoch: int, start: dict[str, Any]) -> Iterator[Any]:
        pieces = P.pieces_of_workers(topology.workers, start["num_pieces"],
                                     start["rotation"])[topology.worker]
        shuffle = "rowgroup" if self.shuffle else "none"
        layout = P.epoch_layout(self._sizes, seed=self.seed, epoch=epoch, shuffle=shuffle)
        plans = [P.plan_worker(layout, rank=topology.rank, world_size=topology.world_size,
                               worker=k, num_workers=start["num_pieces"],
                               drop_last=self.drop_last, block=start["block"],
                               consumed=start["consumed"]) for k in pieces]
        progress = {"epoch": epoch, "start": start, "pieces": pieces,
                    "remaining": [plan.samples - plan.skip for plan in plans], "delivered": 0,
                    "worker": topology.worker, "num_workers": topology.workers}
        self._progress = progress
        tables = self._tables(plans, topology.rank, epoch)
        try:
            if self.batch_size is None:
                for table in tables:
                    for offset in range(0, table.num_rows, ROWS_CHUNK):
                        for row in table.slice(offset, ROWS_CHUNK).to_pylist():
                            progress["delivered"] += 1
                            yield row if self.transform is None else self.transform(row)
            else:
                stack = self.stack
                bundle = self._handoff if get_worker_info() is not None else 1
                done = sum(start["consumed"][k] for k in pieces) // self.batch_size
                size = bundle - done % bundle  # bundles align to the worker's stream
                pending: list[Any] = []
                for batch in rebatch(tables, self.batch_size):
                    progress["delivered"] += batch.num_rows
                    if self.format == "torch":
                        out: Any = batch_to_torch(batch, stack, self.stack_dtype)
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
            if get_worker_info() is None:
                self._epoch_finished(epoch)
        finally:
            tables.close()

    def _epoch_finished(self, epoch: int) -> None:
        """A resume point is used once: iterating the same epoch again reads all of it."""
        if self._resume is not None and self._resume["epoch"] == epoch:
            self._resume = None
            self._resume_version += 1

    def _tables(self, plans: list[P.WorkerPlan], rank: int, epoch: int) -> Iterator[pa.Table]:
        """The rows of ``plans`` in delivery order, as tables (one per slice or window)."""
        window = self._window()
        units: list[tuple[list[P.Slice], P.Window | None]] = []
        for plan in plans:
            if window is None:
                units.extend(([piece], None) for piece in plan.slices)
            else:
                units.extend((plan.slices_between(w.offset, w.offset + w.length), w)
                             for w in plan.windows(window))
        flat = [piece for unit, _ in units for piece in unit]
        reads: list[int] = []
        for piece in flat:
            if not reads or reads[-1] != piece.row_group:
                reads.append(piece.row_group)
        reader = RowGroupReader(self._source, self.columns, self.filters, cache=self.cache)
        depth = default_depth(self._source) if self.prefetch_depth is None \
            else self.prefetch_depth
        threads = 1 if self._source.is_local else max(depth, 1)
        groups = prefetch(lambda g: (g, reader.read(*self._source.locate(g))), reads, depth,
                          threads)
        try:
            current: tuple[int, pa.Table] | None = None
            for unit, w in units:
                parts = []
                for piece in unit:
                    if current is None or current[0] != piece.row_group:
                        current = next(groups)
                        if current[1].num_rows != self._sizes[piece.row_group]:
                            raise IntegrityError(
                                f"row group {piece.row_group} of {self.ref!r} has "
                                f"{current[1].num_rows} rows but the catalog said "
                                f"{self._sizes[piece.row_group]}; the data changed: run "
                                "'pygestor verify' and build the dataset again")
                    parts.append(current[1].slice(piece.start, piece.rows))
                table = parts[0] if len(parts) == 1 else pa.concat_tables(parts)
                if w is not None:
                    order = P.window_permutation(self.seed, epoch, w.position, w.length,
                                                 rank=rank)[w.discard:]
                    table = table.take(pa.array(order))
                yield table
        finally:
            groups.close()
            reader.close()

    # ------------------------------------------------------------------ resume
    def _header(self, world_size: int, epoch: int) -> dict[str, Any]:
        return {"format": STATE_FORMAT, "ref": self.ref, "epoch": epoch, "seed": self.seed,
                "shuffle": self.shuffle, "drop_last": self.drop_last, "world_size": world_size,
                "window": self._window(), "num_rows": self.num_rows,
                "samples_per_rank": P.samples_per_rank(self.num_rows, world_size,
                                                       self.drop_last),
                "fingerprint": self.fingerprint(world_size)}

    def state_dict(self, loader: DataLoader | None = None,
                   batches: int | None = None) -> dict[str, Any]:
        """Where this rank is in the epoch, as plain data (save it with ``torch.save`` or JSON).

        - In the process that iterates the dataset (``num_workers=0``), call it without
          arguments: it counts what was yielded.
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
            return self._state_after_batches(
                batches, num_workers=loader.num_workers,
                batch_size=loader.batch_size if self.batch_size is None else self.batch_size,
                drop_incomplete=bool(loader.drop_last) and self.batch_size is None,
                finished=False)
        topology = resolve_topology(self.rank, self.world_size, captured=self._captured)
        header = self._header(topology.world_size, self.epoch)
        progress = self._progress
        if progress is None or progress["epoch"] != self.epoch:
            if self._resume is not None and self._resume["epoch"] == self.epoch:
                state = {**header, "progress": dict(self._resume["progress"])}
                state["samples_consumed"] = self._resume["samples_consumed"]
                return state
            return {**header, "progress": {"kind": "start"}, "samples_consumed": 0}
        start = progress["start"]
        delivered = P.distribute(progress["delivered"], progress["remaining"])
        if get_worker_info() is not None and progress["num_workers"] > 1:
            pieces = {str(k): start["consumed"][k] + d
                      for k, d in zip(progress["pieces"], delivered, strict=True)}
            return {**header, "samples_consumed": sum(pieces.values()),
                    "progress": {"kind": "worker", "worker": progress["worker"],
                                 "num_workers": progress["num_workers"],
                                 "num_pieces": start["num_pieces"], "block": start["block"],
                                 "rotation": start["rotation"], "pieces": pieces}}
        consumed = list(start["consumed"])
        for k, d in zip(progress["pieces"], delivered, strict=True):
            consumed[k] += d
        return self._counts_state(header, start["num_pieces"], start["block"], consumed, 0, 1)

    def _counts_state(self, header: dict[str, Any], num_pieces: int, block: int,
                      consumed: list[int], rotation: int, loader_workers: int
                      ) -> dict[str, Any]:
        return {**header, "samples_consumed": int(sum(consumed)),
                "progress": {"kind": "counts", "num_workers": num_pieces, "block": block,
                             "consumed": [int(c) for c in consumed], "rotation": rotation,
                             "loader_workers": loader_workers}}

    def _state_after_batches(self, batches: int, *, num_workers: int, batch_size: int | None,
                             drop_incomplete: bool, finished: bool,
                             bundle: int = 1) -> dict[str, Any]:
        """The state once the main process received ``batches`` batches of an epoch that
        started from the current resume point (``self._resume`` or the beginning)."""
        if batch_size is None:
            raise ConfigError("the DataLoader has batch_size=None but the dataset yields rows: "
                              "cannot count samples from batches")
        if not isinstance(batches, int) or batches < 0:
            raise ConfigError(f"batches must be a non-negative integer, got {batches!r}")
        topology = resolve_topology(self.rank, self.world_size, captured=self._captured,
                                    worker_info=(0, num_workers))
        header = self._header(topology.world_size, self.epoch)
        start = self._start(topology)
        n = start["n"]
        sizes = [b - a for a, b in P.worker_pieces(n, start["num_pieces"], start["block"])]
        remaining = [size - count for size, count in zip(sizes, start["consumed"], strict=True)]
        if finished:
            consumed, rotation = sizes, 0
        else:
            delivered, rotation = P.resume_after_batches(
                batches, remaining, num_workers, batch_size, drop_incomplete,
                rotation=start["rotation"], bundle=bundle, piece_consumed=start["consumed"])
            consumed = [c + d for c, d in zip(start["consumed"], delivered, strict=True)]
        return self._counts_state(header, start["num_pieces"], start["block"], consumed,
                                  rotation, topology.workers)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Resume from ``state``: the next iteration continues that epoch where it stopped,
        without re-reading what was consumed (it seeks to the row group).

        Raises:
            IntegrityError: the state was saved for other data (partitions added, removed or
                re-downloaded; other filters), another world size, seed, shuffle or drop rule.
        """
        if not isinstance(state, Mapping) or state.get("format") != STATE_FORMAT:
            raise IntegrityError("not a PygestorDataset state (expected a dict from "
                                 "PygestorDataset.state_dict() or PygestorDataLoader.state_dict())")
        if get_worker_info() is None:
            self._capture()
        topology = resolve_topology(self.rank, self.world_size, captured=self._captured)
        _check_compatible(self, state, topology.world_size)
        progress = dict(state["progress"])
        kind = progress.get("kind")
        n = P.samples_per_rank(self.num_rows, topology.world_size, self.drop_last)
        if kind == "counts":
            sizes = [b - a for a, b in P.worker_pieces(n, progress["num_workers"],
                                                         progress["block"])]
            counts = progress["consumed"]
            if len(counts) != len(sizes) or any(not 0 <= c <= s
                                                for c, s in zip(counts, sizes, strict=True)):
                raise IntegrityError("the resume state's consumed counts do not fit this epoch's "
                                     "plan; it was not saved by this dataset")
        elif kind not in ("start", "worker"):
            raise IntegrityError(f"unknown progress kind {kind!r} in the resume state")
        self.epoch = int(state["epoch"])
        self._progress = None
        self._resume_version += 1
        self._resume = None if kind == "start" else {
            "epoch": self.epoch, "progress": progress,
            "samples_consumed": int(state.get("samples_consumed", 0))}


def _check_compatible(dataset: PygestorDataset, state: Mapping[str, Any], world_size: int) -> None:
    if state.get("fingerprint") == dataset.fingerprint(world_size) and \
            state.get("window") == dataset._window():
        return
    reasons = []
    for key, mine in (("world_size", world_size), ("seed", dataset.seed),
                      ("shuffle", dataset.shuffle), ("drop_last", dataset.drop_last),
                      ("window", dataset._window())):
        if state.get(key) != mine:
            label = "shuffle_buffer (window rows)" if key == "window" else key
            reasons.append(f"{label} was {state.get(key)!r}, now {mine!r}")
    if state.get("num_rows") != dataset.num_rows:
        reasons.append(f"the data had {state.get('num_rows')} rows, now {dataset.num_rows}")
    if not reasons:
        reasons.append("the data changed (partitions re-downloaded, added or removed, or other "
                       "filters)")
    raise IntegrityError(f"cannot resume {dataset.ref!r} from this state: "
                         f"{'; '.join(reasons)}. Resume with the same data and settings, or "
                         "start the epoch afresh")


def _manager(manager: Any, settings: Settings | None, data_dir: str | None) -> Any:
    if manager is not None:
        return manager
    from pygestor.manager import Manager

    if settings is not None:
        return Manager(settings if data_dir is None else settings.with_overrides(
            data_dir=data_dir))
    if data_dir is not None:
        return Manager(Settings.load(data_dir=data_dir))
    from pygestor.api import get_manager

    return get_manager()


def _check_stack(stack: Any, columns: list[str], schema: pa.Schema
                 ) -> dict[str, list[str]] | None:
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


def _count_matches(source: Source, filters: Any, schema: pa.Schema, cache: bool | None,
                   depth: int | None) -> np.ndarray:
    """Rows of every row group that pass ``filters`` (reads only the filter columns)."""
    columns = filter_columns(filters, schema)
    reader = RowGroupReader(source, columns, filters, cache=cache)
    tasks = [source.locate(g) for g in range(len(source.sizes))]
    depth = max(depth or 0, default_depth(source), 4)
    try:
        counts = prefetch(lambda task: reader.count(*task) if source.partitions[task[0]]
                          .row_groups[task[1]] else 0, tasks, depth, depth)
        return np.fromiter(counts, dtype=np.int64, count=len(tasks))
    finally:
        reader.close()


# ============================================================================================
# The loader


def keep_batch(batch: Any) -> Any:
    """A ``collate_fn`` that hands ready batches over unchanged.

    PyTorch's default for ``batch_size=None`` (``default_convert``) walks every element of
    every list, so a batch with a column of 256 strings costs hundreds of Python calls; ready
    batches from :class:`PygestorDataset` are already tensors and lists.
    """
    return batch


class PygestorDataLoader(DataLoader):
    """A ``DataLoader`` over a :class:`PygestorDataset` that knows where it is in the epoch.

    It counts the batches the main process received; with the dataset's plan that tells what
    every worker delivered, so ``state_dict()`` is exact mid-epoch with any number of workers.
    ``load_state_dict()`` makes the next iteration continue there (also with another number of
    workers). Everything else is ``torch.utils.data.DataLoader``.

    ``batch_size`` defaults to None (no re-batching) when the dataset yields batches, else 1;
    with ``batch_size=None`` the default ``collate_fn`` is :func:`keep_batch` (ready batches
    pass through as they are, several times faster than PyTorch's ``default_convert``).

    With workers and ready batches, each worker hands over about ``handoff_rows`` rows at a
    time: several batches whose tensors travel packed in one shared-memory buffer
    (:class:`Bundle`); the loader gives them back one batch at a time. Workers then take turns
    per bundle instead of per batch; every other property (samples per rank, resume) holds.
    ``handoff_rows=0`` hands over batch by batch.
    With ``persistent_workers=True`` the workers are restarted when the epoch or the resume
    point changes (``set_epoch`` cannot reach them otherwise).
    """

    _AUTO = object()

    def __init__(self, dataset: PygestorDataset, batch_size: Any = _AUTO, *,
                 handoff_rows: int = HANDOFF_ROWS, **kwargs: Any) -> None:
        if not isinstance(dataset, PygestorDataset):
            raise ConfigError("PygestorDataLoader needs a PygestorDataset; use DataLoader for "
                              "other datasets")
        if batch_size is PygestorDataLoader._AUTO:
            batch_size = None if dataset.batch_size else 1
        if dataset.batch_size and batch_size is not None:
            raise ConfigError(f"the dataset already yields batches of {dataset.batch_size}; "
                              "use batch_size=None in the loader (or batch_size=None in the "
                              "dataset and batch_size here)")
        if batch_size is None and kwargs.get("collate_fn") is None:
            kwargs["collate_fn"] = keep_batch
        if kwargs.get("in_order") is False:
            raise ConfigError("in_order=False makes the delivered order unknowable; "
                              "PygestorDataLoader needs in_order=True")
        super().__init__(dataset, batch_size=batch_size, **kwargs)
        if batch_size is not None and dataset.batch_size is None:
            dataset.loader_batch_size = batch_size
        self._bundle = 1
        if self.num_workers > 0 and dataset.batch_size and self.collate_fn is keep_batch:
            self._bundle = max(1, int(handoff_rows) // dataset.batch_size)
        self._batches = 0
        self._finished = False
        self._started = False
        self._worker_token: Any = None

    def _token(self) -> Any:
        ds = self.dataset
        return (ds.epoch, ds._resume_version, ds.loader_batch_size,
                self._bundle)

    def __iter__(self) -> _CountingIterator:
        dataset = self.dataset
        dataset.topology()  # captures the rank before workers start
        token = self._token()
        if self.persistent_workers and self._iterator is not None and token != self._worker_token:
            self._iterator._shutdown_workers()
            self._iterator = None
        self._worker_token = token
        self._batches = 0
        self._finished = False
        self._started = True
        dataset._handoff = self._bundle  # copied into the workers started now
        try:
            inner = super().__iter__()
        finally:
            dataset._handoff = 1
        return _CountingIterator(self, inner)

    def _epoch_done(self) -> None:
        self._finished = True
        self.dataset._epoch_finished(self.dataset.epoch)

    def state_dict(self) -> dict[str, Any]:
        """The dataset state after the batches received so far in this epoch (see
        :meth:`PygestorDataset.state_dict`); pass it to :meth:`load_state_dict` or to the
        dataset's."""
        dataset = self.dataset
        if not self._started:
            return dataset.state_dict()
        return dataset._state_after_batches(
            self._batches, num_workers=self.num_workers,
            batch_size=self.batch_size if dataset.batch_size is None else dataset.batch_size,
            drop_incomplete=bool(self.drop_last) and dataset.batch_size is None,
            finished=self._finished, bundle=self._bundle)

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from ``state`` at the next iteration."""
        self.dataset.load_state_dict(state)
        self._batches = 0
        self._finished = False
        self._started = False


class _CountingIterator:
    """Counts the batches the main process takes from a DataLoader iterator, and opens the
    bundles workers hand over."""

    def __init__(self, loader: PygestorDataLoader, inner: Iterator[Any]) -> None:
        self._loader = loader
        self._inner = inner
        self._pending: deque[Any] = deque()

    def __iter__(self) -> _CountingIterator:
        return self

    def __next__(self) -> Any:
        if not self._pending:
            try:
                item = next(self._inner)
            except StopIteration:
                self._loader._epoch_done()
                raise
            if isinstance(item, Bundle):
                self._pending.extend(item.batches)
            else:
                self._pending.append(item)
        self._loader._batches += 1
        return self._pending.popleft()

    def __len__(self) -> int:
        return len(self._inner)  # type: ignore[arg-type]
