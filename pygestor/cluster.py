"""Work on a Dask cluster when one machine is not enough.

Pygestor does not grow a cluster of its own: it hands partitions to an existing distributed
engine. ``distributed.Client(address).get_executor()`` is a ``concurrent.futures.Executor``, so
the download path (:class:`pygestor.downloads.Download`) takes it like its default thread pool:

- each partition is one task: the worker reads its source and writes the partition straight into
  ``data_dir`` under the usual atomic-write rules, and returns the partition's stats; the client
  records them in batches through the compare-and-swap path, so tasks never fight over
  ``metadata.json``;
- no secret travels in a task: storage options that look like credentials are dropped from the
  settings a task carries, and workers use their own (environment, instance roles);
- a worker that dies mid-task: Dask runs the task again elsewhere (``retries``); nothing
  half-written remains (the partition is built in the worker's staging folder and placed in one
  step), and the new run's partition is checked like any other;
- cancelling the job cancels the queued tasks; running ones finish.

``distributed`` is imported here only, when a cluster is asked for.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from concurrent.futures import Executor

from pygestor.errors import ConfigError, short_text

#: times Dask runs a task again after its worker died or it failed
TASK_RETRIES = 2


@contextlib.contextmanager
def cluster_executor(address: str, *, timeout: float = 30.0) -> Iterator[Executor]:
    """An executor whose tasks run on the Dask cluster at ``address`` (``tcp://host:8786``)."""
    try:
        from distributed import Client
    except ImportError:
        raise ConfigError("running on a cluster needs Dask's distributed: "
                          "pip install 'pygestor[cluster]'") from None
    try:
        client = Client(address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise ConfigError(f"cannot reach the Dask scheduler at {address}: {short_text(exc)}; "
                          "check the address (tcp://host:8786) and that the scheduler runs"
                          ) from None
    try:
        yield client.get_executor(pure=False, retries=TASK_RETRIES)
    finally:
        client.close()
