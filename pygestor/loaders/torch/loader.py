"""Loader stage: :class:`PygestorDataLoader`, a ``DataLoader`` that knows where it is in the
epoch."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping
from typing import Any

from torch.utils.data import DataLoader

from pygestor.errors import ConfigError
from pygestor.loaders.torch.dataset import PygestorDataset
from pygestor.loaders.torch.handoff import Bundle, keep_batch

HANDOFF_ROWS = 4096
"""Rows per worker-to-main hand-off (batches are bundled up to this)."""

__all__ = ["HANDOFF_ROWS", "PygestorDataLoader"]


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
    (:class:`~pygestor.loaders.torch.handoff.Bundle`); the loader gives them back one batch at a
    time. Workers then take turns per bundle instead of per batch; every other property
    (samples per rank, resume) holds. ``handoff_rows=0`` hands over batch by batch.
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
        self._workers_token: Any = None

    def __iter__(self) -> _CountingIterator:
        dataset: PygestorDataset = self.dataset  # type: ignore[assignment]
        dataset.topology()  # captures the rank before workers start
        token = (dataset.cursor.version, dataset.cursor.epoch, dataset.loader_batch_size,
                 self._bundle)
        if self.persistent_workers and self._iterator is not None and \
                token != self._workers_token:
            self._restart_workers()
        self._workers_token = token
        self._batches = 0
        self._finished = False
        self._started = True
        dataset.cursor.handoff = self._bundle  # copied into the workers started now
        try:
            inner = super().__iter__()
        finally:
            dataset.cursor.handoff = 1
        return _CountingIterator(self, inner)

    def _restart_workers(self) -> None:
        """Persistent workers hold the dataset as it was when they started: stop them, so the
        next iteration starts workers with the current epoch and resume point."""
        self._iterator._shutdown_workers()  # type: ignore[union-attr]
        self._iterator = None

    def _epoch_done(self) -> None:
        self._finished = True
        dataset: PygestorDataset = self.dataset  # type: ignore[assignment]
        dataset.cursor.finished(dataset.epoch)

    def state_dict(self) -> dict[str, Any]:
        """The dataset state after the batches received so far in this epoch (see
        :meth:`PygestorDataset.state_dict`); pass it to :meth:`load_state_dict` or to the
        dataset's."""
        dataset: PygestorDataset = self.dataset  # type: ignore[assignment]
        if not self._started:
            return dataset.state_dict()
        return dataset.state_after_batches(
            self._batches, num_workers=self.num_workers,
            batch_size=self.batch_size if dataset.batch_size is None else dataset.batch_size,
            drop_incomplete=bool(self.drop_last) and dataset.batch_size is None,
            finished=self._finished, bundle=self._bundle).to_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from ``state`` at the next iteration."""
        self.dataset.load_state_dict(state)  # type: ignore[attr-defined]
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
