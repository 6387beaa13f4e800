"""The pipeline interface, and the pieces every pipeline shares.

A pipeline turns a source URL into a dataset record (:meth:`Pipeline.discover`) and fetches one
partition at a time (:meth:`Pipeline.fetch`). The operations layer calls only the hooks declared
here; each has a default, so a pipeline implements what it supports and inherits a clear error
for the rest.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import Executor
from typing import TYPE_CHECKING, Any, ClassVar

from pygestor.catalog import Dataset, Partition, Subset
from pygestor.config import Settings
from pygestor.errors import ConfigError, NotSupportedError

if TYPE_CHECKING:
    import pyarrow as pa

    from pygestor.pipelines.formats import PartitionWriter

#: called with the number of source bytes processed since the last call
Progress = Callable[[int], None]

#: options the operations layer handles for every pipeline (never passed to ``discover``)
COMMON_OPTIONS: dict[str, str] = {
    "description": "a short description of the dataset",
    "modality": "text, image, audio, tabular...",
}


class Pipeline:
    """Turns a source URL into a dataset record, and fetches one partition at a time.

    Subclasses set ``name`` and implement :meth:`discover` and :meth:`fetch`. Both are called by
    the operations layer, which owns locking, atomic placement, checksums and the record update:
    a pipeline only reads its source and writes one local parquet file (through
    :meth:`open_writer`, which stamps the file with its provenance).

    Class attributes:
        name: the registry name.
        description: one line for listings.
        OPTIONS: option name -> what it does; anything else given to ``add`` is refused.
        tracks_revisions: :meth:`refresh` and :meth:`merge_update` are implemented
            (``download --update``).
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    OPTIONS: ClassVar[dict[str, str]] = {}
    tracks_revisions: ClassVar[bool] = False

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        #: where many source files may be read while planning (a Dask cluster's executor when
        #: the operation was given one; None: the pipeline's own threads)
        self.executor: Executor | None = None

    # ------------------------------------------------------------------ choosing and checking
    @classmethod
    def accepts(cls, url: str) -> bool:
        """Whether ``pipeline="auto"`` may pick this pipeline for ``url``."""
        return False

    def check_url(self, url: str | None) -> None:
        """Refuse, before any network call, a URL this pipeline cannot read (ConfigError)."""

    def check_options(self, options: dict[str, Any]) -> None:
        """Refuse options this pipeline does not understand, listing the ones it does."""
        unknown = sorted(set(options) - set(self.OPTIONS))
        if unknown:
            known = ", ".join(sorted({*self.OPTIONS, *COMMON_OPTIONS}))
            raise ConfigError(f"unknown option(s) {', '.join(unknown)} for the {self.name} "
                              f"pipeline; it understands {known}")

    # ------------------------------------------------------------------ the work
    def discover(self, name: str, url: str | None, options: dict[str, Any]) -> Dataset:
        """Describe the dataset at ``url``: subsets, planned partitions, metadata. No data."""
        raise NotImplementedError

    def fetch(self, dataset: Dataset, subset: Subset, partition: Partition, dest: str,
              progress: Progress) -> None:
        """Write ``partition`` as a complete parquet file at the local path ``dest``."""
        raise NotImplementedError

    def preview(self, dataset: Dataset, subset: Subset, rows: int) -> pa.Table:
        """The first ``rows`` rows of ``subset`` read straight from its source with ranged
        reads, before anything is downloaded (typed as the partitions would be). Reads only the
        source of the subset's first partition: the URLs :meth:`source_urls` gives for it, which
        the operations layer checks against the source policy first. Writes nothing."""
        raise NotSupportedError(f"the {self.name} pipeline cannot show rows before they are "
                                "downloaded; download one partition to see them")

    def source_urls(self, dataset: Dataset, partition: Partition) -> Iterable[str]:
        """The URLs :meth:`fetch` will read for ``partition`` (checked against the source
        policy before every fetch: a record is untrusted input)."""
        url = partition.source.get("url")
        return [url] if isinstance(url, str) else []

    def open_writer(self, dest: str, schema: pa.Schema | None, dataset: Dataset,
                    subset: Subset, partition: Partition) -> PartitionWriter:
        """The writer of one partition file: settings' row groups and codec, page checksums,
        columns matched by name (missing ones as nulls with ``schema="union"``), and the
        file's provenance in its footer (what :func:`provenance` describes)."""
        from pygestor.pipelines.formats import PartitionWriter

        return PartitionWriter(dest, schema, self.settings.row_group_size,
                               self.settings.compression,
                               provenance=provenance(dataset, subset, partition),
                               fill_missing=dataset.options.get("schema") == "union")

    # ------------------------------------------------------------------ upstream changes
    def check_updates(self, dataset: Dataset) -> dict[str, Any]:
        """What changed upstream since ``dataset`` was recorded (pipelines that can tell)."""
        return {"supported": False}

    def refresh(self, dataset: Dataset) -> Dataset:
        """The dataset re-discovered at its source's latest revision."""
        raise ConfigError(f"the {self.name} pipeline of {dataset.name!r} does not track upstream "
                          "revisions; use 'pygestor download --force'")

    def merge_update(self, record: Dataset, latest: Dataset) -> list[tuple[str, str]]:
        """Move ``record`` to ``latest``; the ``(subset, partition)`` whose files are stale."""
        raise ConfigError(f"the {self.name} pipeline of {record.name!r} does not track upstream "
                          "revisions")


def provenance(dataset: Dataset, subset: Subset, partition: Partition) -> dict[str, Any]:
    """What a partition file says about where it comes from (kept in its parquet footer).

    A file found in ``data_dir`` is adopted only when this matches the record: the same
    pipeline, conversion options, subset schema (a digest of it) and source slice (with the
    source file's identity: size, ETag or modification time). A file left by another source, by
    an earlier dataset of the same name from elsewhere, or by an older Pygestor is not ours.
    The dataset's URL, options and revision are there too, so a damaged record can be rebuilt
    from its files (``verify --repair``). Options hold no secret (dropped at ``add``). Nothing
    in it changes from one registration of the same source to the next: the same source gives
    byte-identical partitions.
    """
    import hashlib

    schema = hashlib.sha256((subset.schema or "").encode()).hexdigest()[:32]
    return {"format": 1, "pipeline": dataset.pipeline, "dataset": dataset.name,
            "url": dataset.url, "dataset_options": conversion_options(dataset.options),
            "revision": dataset.revision, "subset": subset.name, "partition": partition.name,
            "options": conversion_options(dataset.options), "schema": schema,
            "source": partition.source}


def conversion_options(options: dict[str, Any]) -> dict[str, Any]:
    """The dataset options that change what a partition file holds."""
    ignored = {"description", "modality", "source_options"}
    return {k: v for k, v in sorted(options.items()) if k not in ignored}
