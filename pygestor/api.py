"""The one-line Python API: module-level functions over a default :class:`Manager`.

The default manager is built on first use from :class:`~pygestor.config.Settings` (config file,
environment), and can be replaced with :func:`configure`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from pygestor.config import Settings

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from pygestor.catalog import Dataset
    from pygestor.manager import DownloadReport, Manager, VerifyReport


def configure(config: str | None = None, **settings: Any) -> Manager:
    """Set the settings every API call (and ``PygestorDataset`` without ``manager=``) uses:
    ``data_dir=``, ``storage_options=``, ..."""
    from pygestor.manager import default_manager

    return default_manager(Settings.load(config, **settings))


def set_manager(manager: Manager | None) -> None:
    """Use ``manager`` for every API call (and the web UI) from now on; ``None``: build one
    from the settings on next use. For embedding and tests; :func:`configure` is the usual way."""
    from pygestor import manager as managers
    from pygestor.manager import _DEFAULT_LOCK

    with _DEFAULT_LOCK:
        managers._DEFAULT = manager


def get_manager() -> Manager:
    """The manager the API functions (and the web UI, and ``PygestorDataset`` without
    ``manager=``) use: one per process, created from the settings on first use."""
    from pygestor.manager import default_manager

    return default_manager()


# ---------------------------------------------------------------------- catalog
def add_dataset(name: str, url: str | None = None, pipeline: str = "auto",
                **options: Any) -> Dataset:
    """Register a dataset from ``url`` (metadata only; nothing is downloaded)."""
    return get_manager().add_dataset(name, url, pipeline, **options)


def list_datasets() -> list[dict[str, Any]]:
    """A summary of every registered dataset."""
    return get_manager().list_datasets()


def info(ref: str) -> dict[str, Any]:
    """Details of a dataset, subset or partition."""
    return get_manager().info(ref)


def list_subsets(name: str) -> list[dict[str, Any]]:
    return get_manager().list_subsets(name)


def list_partitions(ref: str) -> list[dict[str, Any]]:
    return get_manager().list_partitions(ref)


# ---------------------------------------------------------------------- data
def download(ref: str, partitions: Iterable[str] | None = None, force: bool = False,
             **kwargs: Any) -> DownloadReport:
    """Fetch a dataset, a subset, or some ``partitions`` of a subset into ``data_dir``."""
    return get_manager().download(ref, partitions, force, **kwargs)


def remove(ref: str, partitions: Iterable[str] | None = None) -> list[str]:
    """Delete downloaded data (the dataset stays registered)."""
    return get_manager().remove(ref, partitions)


def delete_dataset(name: str, data: bool = True, force: bool = False) -> None:
    """Unregister a dataset (and delete its data unless ``data=False``); ``force`` cancels its
    running jobs first instead of refusing."""
    get_manager().delete_dataset(name, data, force)


def jobs(all: bool = False) -> list[dict[str, Any]]:  # noqa: A002 - mirrors `pygestor jobs --all`
    """The long operations running on this data_dir, from any process or machine (``all``:
    finished ones too)."""
    return get_manager().list_jobs(all)


def cancel(job_id: str) -> dict[str, Any]:
    """Ask a job to stop, wherever it runs."""
    return get_manager().cancel(job_id)


def verify(ref: str, repair: bool = False) -> VerifyReport:
    """Check every downloaded partition against its record."""
    return get_manager().verify(ref, repair=repair)


# ---------------------------------------------------------------------- reading
def load(ref: str, columns: list[str] | None = None, filters: Any = None,
         schema: str | None = None) -> pd.DataFrame:
    """The downloaded data of ``ref`` as one pandas DataFrame (``schema="union"``: subsets
    with different columns together, missing columns as nulls)."""
    from pygestor.loaders import arrow

    return arrow.load(get_manager(), ref, columns, filters, schema)


def load_table(ref: str, columns: list[str] | None = None, filters: Any = None,
               schema: str | None = None) -> pa.Table:
    """Like :func:`load`, as an Arrow table."""
    from pygestor.loaders import arrow

    return arrow.load_table(get_manager(), ref, columns, filters, schema)


def iter_batches(ref: str, batch_size: int = 65536, columns: list[str] | None = None,
                 filters: Any = None, format: str = "arrow",  # noqa: A002
                 **kwargs: Any) -> Iterator[Any]:
    """Stream batches of ``ref``: ``format`` is arrow, pandas, numpy, torch or dict."""
    from pygestor.loaders import batches

    return batches.iter_batches(get_manager(), ref, batch_size=batch_size, columns=columns,
                                filters=filters, format=format, **kwargs)


def schema(ref: str) -> pa.Schema:
    from pygestor.loaders import arrow

    return arrow.schema(get_manager(), ref)


def sample(ref: str, n: int = 10) -> pd.DataFrame:
    from pygestor.loaders import arrow

    return arrow.sample(get_manager(), ref, n)


def urls(ref: str) -> dict[str, Any]:
    """Partition URLs plus storage options, for Dask, Ray Data, Spark or DuckDB."""
    from pygestor.loaders import arrow

    return arrow.urls(get_manager(), ref)


def check_updates(name: str) -> dict[str, Any]:
    """What changed upstream since ``name`` was added (pipelines that can tell)."""
    return get_manager().check_updates(name)
