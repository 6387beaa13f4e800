"""Rows before downloading: the first rows of a subset read straight from its source.

An admin judges a dataset before fetching terabytes: the pipeline's
:meth:`~pygestor.pipelines.base.Pipeline.preview` reads the subset's first partition from the
source with ranged reads (a parquet footer and one row group, or the first lines of a text
file). Every URL it reads passes the source policy first, exactly as a download's do (a record is
untrusted input; the web UI's policy is closed to local paths outside ``source_roots``). Nothing
is written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pygestor.errors import ConfigError, SourceError
from pygestor.policy import SourcePolicy

if TYPE_CHECKING:
    import pyarrow as pa

    from pygestor.catalog import Dataset
    from pygestor.manager import Manager

#: rows a preview returns at most
MAX_PREVIEW_ROWS = 1000


def source_rows(manager: Manager, dataset: Dataset, subset: str, rows: int = 20, *,
                face: str = "cli") -> pa.Table:
    """The first ``rows`` rows of ``subset`` of ``dataset`` (registered or only planned by
    :meth:`~pygestor.manager.Manager.plan_dataset`), read from the source.

    Args:
        manager: the settings (source policy, time-outs) and pipelines.
        dataset, subset: what to show.
        rows: how many rows (1 to :data:`MAX_PREVIEW_ROWS`).
        face: whose source policy applies: ``cli`` or ``ui``.
    """
    if not isinstance(rows, int) or isinstance(rows, bool) or not 0 < rows <= MAX_PREVIEW_ROWS:
        raise ConfigError(f"rows must be between 1 and {MAX_PREVIEW_ROWS}, got {rows!r}")
    record = dataset.subset(subset)
    if not record.partitions:
        raise SourceError(f"subset {subset!r} of {dataset.name} has no partitions to preview")
    pipeline = manager.pipeline(dataset.pipeline)
    policy = SourcePolicy.for_settings(manager.settings, face)
    for url in pipeline.source_urls(dataset, record.partitions[0]):
        policy.check(url, dataset.options)
    return pipeline.preview(dataset, record, rows).slice(0, rows)
