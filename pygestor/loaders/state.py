"""Where an epoch stands: :class:`EpochState` (what ``state_dict()`` saves) and :class:`Cursor`
(where a dataset's next iteration starts).

An epoch is cut once into pieces of every rank's samples (the worker count of the run that
starts it decides how many, see :mod:`pygestor.loaders.plan`); progress is one count per piece.
That is the only resume model: a resumed run, with any number of workers, reads every piece
from its count on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pygestor.errors import IntegrityError

STATE_FORMAT = "pygestor.dataset-state/2"


@dataclass(frozen=True)
class Progress:
    """Samples consumed from every piece of an epoch's cut.

    The cut:
        pieces: how many pieces every rank's samples were cut into.
        block: the cut's alignment (pieces are whole multiples of it but the last).
    Where it stands:
        consumed: samples delivered from the start of each piece.
        rotation: the worker whose turn it is in PyTorch's round-robin, for a run with
            ``loader_workers`` workers (so the same worker count continues the exact order).
        loader_workers: the worker count of the run that saved it.
        worker: set when this is one DataLoader worker's own view (torchdata's
            ``StatefulDataLoader`` saves one state per worker): only that worker's pieces
            (:func:`~pygestor.loaders.plan.pieces_of_workers`) are counted.
    """

    pieces: int
    block: int
    consumed: tuple[int, ...]
    rotation: int = 0
    loader_workers: int = 1
    worker: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"pieces": self.pieces, "block": self.block, "consumed": list(self.consumed),
                "rotation": self.rotation, "loader_workers": self.loader_workers,
                "worker": self.worker}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Progress:
        try:
            progress = cls(pieces=_count(data["pieces"]), block=_count(data["block"]),
                           consumed=tuple(_count(c) for c in data["consumed"]),
                           rotation=_count(data.get("rotation", 0)),
                           loader_workers=_count(data.get("loader_workers", 1)),
                           worker=None if data.get("worker") is None
                           else _count(data["worker"]))
        except (KeyError, TypeError, ValueError):
            raise _not_ours() from None
        if progress.pieces < 1 or progress.block < 1 or \
                len(progress.consumed) != progress.pieces:
            raise _not_ours()
        return progress


@dataclass(frozen=True)
class EpochState:
    """The state of one rank's epoch, as ``state_dict()`` returns it (``to_dict``) and
    ``load_state_dict()`` takes it (``from_dict``).

    Args:
        epoch, seed: which epoch, shuffled how.
        fingerprint: the plan's fingerprint (data, settings, world size); a state loaded into a
            dataset with another fingerprint is refused.
        progress: how far it got; None: the epoch has not started.
        facts: what the fingerprint covers, in words (world size, seed, rows...), so that a
            refused state can say what changed; also what each source contributed to a mix.
    """

    epoch: int
    seed: int
    fingerprint: str
    progress: Progress | None = None
    facts: Mapping[str, Any] = field(default_factory=dict)

    @property
    def samples_consumed(self) -> int:
        """Samples this rank consumed in the epoch (one worker's, for a worker's view)."""
        if self.progress is None:
            return 0
        from pygestor.loaders.plan import pieces_of_workers

        progress = self.progress
        if progress.worker is None:
            return sum(progress.consumed)
        own = pieces_of_workers(progress.loader_workers, progress.pieces,
                                progress.rotation)[progress.worker]
        return sum(progress.consumed[k] for k in own)

    def to_dict(self) -> dict[str, Any]:
        """Plain data (JSON or ``torch.save``)."""
        return {**self.facts, "format": STATE_FORMAT, "epoch": self.epoch, "seed": self.seed,
                "fingerprint": self.fingerprint, "samples_consumed": self.samples_consumed,
                "progress": None if self.progress is None else self.progress.to_dict()}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> EpochState:
        """A state from :meth:`to_dict`; an :class:`IntegrityError` for anything else."""
        found = data.get("format") if isinstance(data, Mapping) else None
        if isinstance(found, str) and found.startswith("pygestor.dataset-state/") and \
                found != STATE_FORMAT:
            raise IntegrityError(f"this state was saved by another version of Pygestor "
                                 f"({found}, this one reads {STATE_FORMAT}); it cannot be "
                                 "resumed: start the epoch afresh")
        if found != STATE_FORMAT:
            raise IntegrityError("not a PygestorDataset state (expected a dict from "
                                 "PygestorDataset.state_dict() or "
                                 "PygestorDataLoader.state_dict())")
        try:
            epoch, seed = _count(data["epoch"]), _count(data["seed"])
            fingerprint = str(data["fingerprint"])
        except (KeyError, TypeError, ValueError):
            raise _not_ours() from None
        raw = data.get("progress")
        progress = None if raw is None else Progress.from_dict(raw)
        facts = {k: v for k, v in data.items()
                 if k not in ("format", "epoch", "seed", "fingerprint", "samples_consumed",
                              "progress")}
        return cls(epoch, seed, fingerprint, progress, facts)


class Cursor:
    """Where a dataset's next iteration starts: the epoch, and a resume point that is used
    once. The one owner of an epoch's beginning and end: ``set_epoch``, ``load_state_dict``,
    the end of an iteration in the main process and the end of a loader's epoch all go
    through it.

    ``version`` changes whenever the start point changes, so a loader knows that its
    persistent workers hold a stale one. ``handoff`` is how many batches a worker bundles per
    hand-off (set by :class:`~pygestor.loaders.torch.loader.PygestorDataLoader` while its workers
    start, 1 otherwise).
    """

    def __init__(self) -> None:
        self.epoch = 0
        self.resume: EpochState | None = None
        self.version = 0
        self.handoff = 1

    def set_epoch(self, epoch: int) -> None:
        """Read ``epoch`` next; a resume point of another epoch is dropped."""
        if self.resume is not None and self.resume.epoch != epoch:
            self.resume = None
            self.version += 1
        self.epoch = epoch

    def resume_from(self, state: EpochState) -> None:
        """Continue ``state``'s epoch where it stopped at the next iteration."""
        self.epoch = state.epoch
        self.resume = state if state.progress is not None else None
        self.version += 1

    def finished(self, epoch: int) -> None:
        """An iteration of ``epoch`` ended: its resume point is spent (the same epoch again
        is read whole)."""
        if self.resume is not None and self.resume.epoch == epoch:
            self.resume = None
            self.version += 1

    def start(self) -> Progress | None:
        """The progress the next iteration starts from (None: the beginning)."""
        if self.resume is not None and self.resume.epoch == self.epoch:
            return self.resume.progress
        return None


def _count(value: Any) -> int:
    if isinstance(value, bool) or int(value) != value or value < 0:
        raise ValueError(value)
    return int(value)


def _not_ours() -> IntegrityError:
    return IntegrityError("the resume state is damaged or was not saved by PygestorDataset "
                          "(its progress does not parse)")
