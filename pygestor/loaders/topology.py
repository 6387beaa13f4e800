"""Where this process sits: distributed rank and DataLoader worker.

Call :func:`resolve_topology` when iteration starts (inside the DataLoader worker), never when the
dataset is constructed: the worker id only exists inside a worker, and ``torch.distributed`` may
be initialized after the dataset is built. Torch is never imported by this module; it is only
consulted when the process already imported it.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass

from pygestor.errors import ConfigError


@dataclass(frozen=True)
class Topology:
    """Rank ``rank`` of ``world_size``; DataLoader worker ``worker`` of ``num_workers``.

    ``num_workers == 0`` means the main process loads the data itself (worker 0).
    """

    rank: int
    world_size: int
    worker: int
    num_workers: int

    @property
    def workers(self) -> int:
        """Workers that split a rank's samples: ``max(num_workers, 1)``."""
        return max(self.num_workers, 1)


def resolve_topology(
    rank: int | None = None,
    world_size: int | None = None,
    *,
    captured: tuple[int, int] | None = None,
    worker_info: tuple[int, int] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Topology:
    """Find this process's rank and worker.

    Rank and world size, each from the first source that has it:

    1. the explicit ``rank`` / ``world_size`` arguments;
    2. ``torch.distributed`` when torch is already imported and the process group is initialized;
    3. the parent's process group at the moment this process was forked (see
       :func:`forked_topology`: DataLoader workers started with ``fork``);
    4. ``captured``: ``(rank, world_size)`` the dataset recorded in the main process before the
       workers started (inside a worker ``torch.distributed.is_initialized()`` is False);
    5. the ``RANK`` / ``WORLD_SIZE`` environment variables (torchrun sets them);
    6. rank 0 of 1.

    Worker: ``worker_info`` as ``(worker, num_workers)`` if given, else
    ``torch.utils.data.get_worker_info()`` when torch is imported, else ``(0, 0)``.

    Args:
        rank, world_size: explicit overrides.
        captured: rank and world size captured in the main process.
        worker_info: explicit worker override (tests, custom loaders).
        environ: environment to read (default ``os.environ``).

    Raises:
        ConfigError: rank outside ``[0, world_size)``, a non-integer environment value, or a
            worker outside ``[0, max(num_workers, 1))``.
    """
    env = os.environ if environ is None else environ
    sources = [(rank, world_size), _from_torch_distributed(), _FORKED_FROM, captured,
               _from_environ(env)]
    found_rank = _first(index=0, sources=sources, default=0)
    found_world = _first(index=1, sources=sources, default=1)
    worker, num_workers = worker_info if worker_info is not None else _from_worker_info()
    topology = Topology(int(found_rank), int(found_world), int(worker), int(num_workers))
    _validate(topology)
    return topology


def _first(index: int, sources: list[tuple[int | None, int | None] | None], default: int) -> int:
    for source in sources:
        if source is not None and source[index] is not None:
            return source[index]
    return default


_FORKED_FROM: tuple[int, int] | None = None
"""``(rank, world_size)`` of the parent's process group when this process was forked."""


def forked_topology() -> tuple[int, int] | None:
    """The rank and world size the parent process had when it forked this one (None if it had
    no process group, or this process was not forked after this module was imported).

    PyTorch's DataLoader forks its workers, and inside them ``torch.distributed`` reports no
    process group. A fork hook registered at import records the parent's topology just before
    every fork, so a worker knows its rank however the job was started (``mp.spawn`` with a
    ``tcp://`` init method sets no ``RANK``/``WORLD_SIZE``) and whenever the group was made.
    """
    return _FORKED_FROM


def _remember_before_fork() -> None:
    global _FORKED_FROM
    try:
        _FORKED_FROM = _from_torch_distributed()
    except Exception:  # noqa: BLE001 - a fork hook must never fail the fork
        _FORKED_FROM = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_remember_before_fork)


def distributed_topology() -> tuple[int, int] | None:
    """``(rank, world_size)`` from ``torch.distributed`` if this process initialized a process
    group (torch already imported), else None. Call it in the main process to capture the rank
    for DataLoader workers, where the process group is not visible."""
    return _from_torch_distributed()


def _from_torch_distributed() -> tuple[int, int] | None:
    if "torch" not in sys.modules:
        return None
    try:
        import torch.distributed as dist
    except ImportError:
        return None
    if not (dist.is_available() and dist.is_initialized()):
        return None
    return dist.get_rank(), dist.get_world_size()


def _from_environ(env: Mapping[str, str]) -> tuple[int | None, int | None]:
    return _env_int(env, "RANK"), _env_int(env, "WORLD_SIZE")


def _env_int(env: Mapping[str, str], name: str) -> int | None:
    value = env.get(name)
    if value is None or value.strip() == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"environment variable {name}={value!r} is not an integer") from None


def _from_worker_info() -> tuple[int, int]:
    if "torch" not in sys.modules:
        return 0, 0
    import torch.utils.data

    info = torch.utils.data.get_worker_info()
    if info is None:
        return 0, 0
    return info.id, info.num_workers


def _validate(topology: Topology) -> None:
    if topology.world_size < 1:
        raise ConfigError(
            f"world size must be >= 1, got {topology.world_size} (check WORLD_SIZE or the "
            "world_size argument)"
        )
    if not 0 <= topology.rank < topology.world_size:
        raise ConfigError(
            f"rank {topology.rank} is outside [0, {topology.world_size}); check RANK/WORLD_SIZE "
            "or the rank/world_size arguments"
        )
    if topology.num_workers < 0 or not 0 <= topology.worker < topology.workers:
        raise ConfigError(
            f"DataLoader worker {topology.worker} of {topology.num_workers} is invalid"
        )
