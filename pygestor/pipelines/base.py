"""The pipeline interface, and the pieces every pipeline shares."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from pygestor.catalog import Dataset, Partition, Subset
from pygestor.config import Settings

#: called with the number of source bytes processed since the last call
Progress = Callable[[int], None]


class Pipeline:
    """Turns a source URL into a dataset record, and fetches one partition at a time.

    Subclasses set ``name`` and implement :meth:`discover` and :meth:`fetch`. Both are called by
    the operations layer, which owns locking, atomic placement, checksums and the record update:
    a pipeline only reads its source and writes one local parquet file.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @classmethod
    def accepts(cls, url: str) -> bool:
        """Whether ``pipeline="auto"`` may pick this pipeline for ``url``."""
        return False

    def discover(self, name: str, url: str | None, options: dict[str, Any]) -> Dataset:
        """Describe the dataset at ``url``: subsets, planned partitions, metadata. No data."""
        raise NotImplementedError

    def fetch(self, dataset: Dataset, subset: Subset, partition: Partition, dest: str,
              progress: Progress) -> None:
        """Write ``partition`` as a complete parquet file at the local path ``dest``."""
        raise NotImplementedError

    def check_updates(self, dataset: Dataset) -> dict[str, Any]:
        """What changed upstream since ``dataset`` was recorded (pipelines that can tell)."""
        return {"supported": False}
