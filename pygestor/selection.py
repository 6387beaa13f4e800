"""What a read covers: the downloaded partitions of a reference, and how to reach their storage.

A :class:`Selection` is made once from the catalog (``Manager.select(ref)``) and taken by every
reader: ``load``, ``load_table``, ``sample``, ``schema``, ``iter_batches``, ``urls``,
``PygestorDataset`` and the dry run of ``pygestor plan``. It holds plain facts only (settings,
partition paths, sizes, row-group row counts, footer ranges, checksums), so it pickles to
DataLoader workers and to other machines; the filesystem is made lazily in each process.

Rules it applies when it is made, so that no reader has to:

- nothing downloaded is an error that says how to download;
- a reference of which only some partitions are downloaded follows the ``partial_reads``
  setting: a warning (once per process and reference), an error, or nothing;
- subsets whose columns differ are refused (the error names them), or read as the union of
  their columns with ``schema="union"``.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from pygestor.backends.storage import Storage
from pygestor.config import Settings
from pygestor.errors import (
    ConfigError,
    IntegrityError,
    NotDownloadedError,
    PartialDataWarning,
    SourceError,
)

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from pygestor.catalog import Dataset, Partition, Subset
    from pygestor.loaders.cache import PartitionCache
    from pygestor.manager import Manager


@dataclass(frozen=True)
class PartitionRef:
    """One downloaded partition as the catalog recorded it."""

    name: str  # "<dataset>/<subset>/<partition>", for messages
    path: str  # filesystem path in the storage root
    size: int
    row_groups: tuple[int, ...]
    footer: tuple[int, int] | None
    checksum: str | None
    footer_checksum: str | None = None


@dataclass(frozen=True, eq=False)
class Selection:
    """The downloaded partitions ``ref`` covers, in catalog order, and where they live.

    What:
        ref: the reference as the user gave it.
        dataset: the dataset's name.
        partitions: the downloaded partitions.
        schema: the schema every row group is conformed to (subsets read with
            ``schema="union"``); None: as stored.
    Where:
        settings: the storage root, its options, retries and the cache.
        is_local: the root is a local folder (read with pyarrow directly, never cached).
    """

    ref: str
    dataset: str
    partitions: tuple[PartitionRef, ...]
    settings: Settings
    is_local: bool
    schema: pa.Schema | None = None

    def __getstate__(self) -> dict[str, Any]:
        # the storage client is made again in the process that unpickles; derived arrays too
        return {k: v for k, v in self.__dict__.items()
                if k not in ("_storage", "row_group_sizes", "_index")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)

    # ------------------------------------------------------------------ storage
    @property
    def storage(self) -> Storage:
        """The storage root, made in this process on first use."""
        storage = self.__dict__.get("_storage")
        if storage is None:
            storage = Storage.for_settings(self.settings)
            object.__setattr__(self, "_storage", storage)
        return storage

    def url(self, p: int) -> str:
        """The URL of partition ``p`` (for messages, and for other engines)."""
        return self.storage.url_of(self.partitions[p].path)

    def urls(self) -> list[str]:
        return [self.url(p) for p in range(len(self.partitions))]

    def cache(self) -> PartitionCache | None:
        """The partition cache to use, or None (no ``cache_dir``, or a local root)."""
        if self.is_local or not self.settings.cache_dir:
            return None
        from pygestor.loaders.cache import PartitionCache

        return PartitionCache(self.settings.cache_dir, self.settings.cache_max_bytes)

    # ------------------------------------------------------------------ row groups
    @cached_property
    def row_group_sizes(self) -> np.ndarray:
        """Rows of every row group, partition after partition (global row group ``g``)."""
        import numpy as np

        return np.asarray([n for p in self.partitions for n in p.row_groups], dtype=np.int64)

    @cached_property
    def _index(self) -> tuple[np.ndarray, np.ndarray]:
        import numpy as np

        counts = [len(p.row_groups) for p in self.partitions]
        partition = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
        index = np.concatenate([np.arange(c, dtype=np.int64) for c in counts]) \
            if counts else np.zeros(0, dtype=np.int64)
        return partition, index

    def locate(self, g: int) -> tuple[int, int]:
        """(partition, row group inside it) of global row group ``g``."""
        partition, index = self._index
        return int(partition[g]), int(index[g])

    def row_group_bytes(self) -> np.ndarray:
        """Estimated stored bytes of every row group (a partition's size shared by rows)."""
        import numpy as np

        out = [(p.size or 0) * n / max(sum(p.row_groups), 1)
               for p in self.partitions for n in p.row_groups]
        return np.asarray(out, dtype=np.float64)

    @property
    def num_rows(self) -> int:
        return int(sum(sum(p.row_groups) for p in self.partitions))

    def average_row_group_bytes(self) -> float:
        groups = sum(len(p.row_groups) for p in self.partitions)
        return sum(p.size for p in self.partitions) / max(groups, 1)

    def digest(self) -> str:
        """A digest of the partitions' identities (names, sizes, checksums, row groups)."""
        h = hashlib.blake2b(digest_size=16, person=b"pygestor-data")
        for p in self.partitions:
            h.update(json.dumps([p.name, p.size, p.checksum, list(p.row_groups)]).encode())
        return h.hexdigest()


# ============================================================================================
# Making a selection from the catalog


def select(manager: Manager, ref: str, schema: str | None = None) -> Selection:
    """The selection of ``ref``'s downloaded partitions (``Manager.select`` calls this).

    Args:
        manager: the storage root and catalog.
        ref: a dataset, subset or partition reference.
        schema: how subsets with different columns are read together: refused (None or
            ``"strict"``, the error names them) or ``"union"`` (missing columns are nulls,
            types widened where lossless).
    """
    from pygestor.schemas import check_mode

    mode = check_mode(schema)
    record, selected = manager._select(ref)
    ready = [(s, p) for s, p in selected if p.downloaded]
    if not ready:
        raise NotDownloadedError(f"nothing of {ref!r} is downloaded yet ({len(selected)} "
                                 f"partitions registered); run 'pygestor download {ref}'")
    _check_partial(manager.settings, ref, len(ready), len(selected))
    parts = tuple(_partition_ref(manager, record, subset, part) for subset, part in ready)
    subsets = list(dict.fromkeys(s.name for s, _ in ready))
    selection = Selection(ref=ref, dataset=record.name, partitions=parts,
                          settings=manager.settings, is_local=manager.storage.is_local,
                          schema=_subsets_schema(record, subsets, mode))
    object.__setattr__(selection, "_storage", manager.storage)  # this process's client
    return selection


def _partition_ref(manager: Manager, record: Dataset, subset: Subset,
                   part: Partition) -> PartitionRef:
    if part.size is None or part.row_groups is None:
        raise IntegrityError(f"the record of {record.name}/{subset.name}/{part.name} lacks its "
                             f"size or row groups; run 'pygestor verify {record.name} --repair'")
    return PartitionRef(
        name=f"{record.name}/{subset.name}/{part.name}",
        path=manager.partition_path(record.name, subset.name, part.name),
        size=int(part.size), row_groups=tuple(int(n) for n in part.row_groups),
        footer=(int(part.footer[0]), int(part.footer[1])) if part.footer else None,
        checksum=part.checksum, footer_checksum=part.footer_checksum)


_PARTIAL_WARNED: set[tuple[str, str, int, int]] = set()


def _check_partial(settings: Settings, ref: str, ready: int, total: int) -> None:
    """Say once that a read covers only the downloaded partitions (``partial_reads``)."""
    if ready == total or settings.partial_reads == "allow":
        return
    message = (f"{ref!r}: reading {ready} of {total} partitions; the other {total - ready} are "
               f"not downloaded ('pygestor download {ref}' fetches them)")
    if settings.partial_reads == "error":
        raise NotDownloadedError(f"{message}. This job asks for complete data "
                                 "(partial_reads = 'error')")
    key = (settings.data_dir, ref, ready, total)
    if key not in _PARTIAL_WARNED:
        _PARTIAL_WARNED.add(key)
        warnings.warn(message, PartialDataWarning, stacklevel=5)


def _subsets_schema(record: Dataset, subsets: list[str], mode: str) -> pa.Schema | None:
    """None when the subsets read share their columns; their union with ``mode="union"``;
    an error naming them otherwise."""
    if len(subsets) < 2:
        return None
    from pygestor.pipelines.formats import schema_from_text
    from pygestor.schemas import reconcile

    known = [(name, record.subsets[name].schema) for name in subsets]
    if any(text is None for _, text in known):
        return None  # schemas unknown (older records): read as stored
    schemas = [(name, schema_from_text(text)) for name, text in known]  # type: ignore[arg-type]
    if all(s.equals(schemas[0][1]) for _, s in schemas[1:]):
        return None
    try:
        return reconcile(schemas, mode, what="subset",
                         fix=f"read one subset of {record.name!r} at a time")
    except SourceError as exc:
        raise ConfigError(f"{record.name!r} covers subsets with different columns: {exc}") \
            from None
