"""Rebuilding a damaged dataset record from the provenance its partition files carry.

Every partition file Pygestor writes says in its footer which dataset, source, pipeline and
options it comes from (:func:`pygestor.pipelines.base.provenance`). ``verify NAME --repair`` on a
dataset whose ``metadata.json`` is damaged reads those footers and:

1. asks the pipeline to discover the source again (the full plan, partitions not yet downloaded
   included) and adopts each file that is provably its partition (read whole, checksums
   verified), or, when the source cannot be reached,
2. builds a record of the downloaded partitions alone, from the files.

Files without provenance, or whose provenance disagrees with their place, are left alone.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pygestor import integrity
from pygestor.catalog import Dataset, Partition, Subset
from pygestor.errors import IntegrityError, InvalidNameError, PygestorError, short_text
from pygestor.names import check_partition_name, check_subset_name

if TYPE_CHECKING:
    from pygestor.manager import Manager

log = logging.getLogger("pygestor.rebuild")


@dataclass
class Claim:
    """A partition file and the provenance it carries."""

    subset: str
    partition: str
    path: str
    provenance: dict[str, Any]


def rebuild(manager: Manager, name: str) -> tuple[Dataset, int]:
    """A new record for ``name`` and the number of partition files it adopted."""
    claims = find_claims(manager, name)
    if not claims:
        raise IntegrityError(f"no partition file of {name!r} says where it comes from, so its "
                             f"record cannot be rebuilt; delete it with 'pygestor delete {name}' "
                             "and add it again")
    first = claims[0].provenance
    try:
        dataset = manager.pipeline(str(first.get("pipeline"))).discover(
            name, first.get("url"), dict(first.get("dataset_options") or {}))
        dataset.pipeline = str(first.get("pipeline"))
    except PygestorError as exc:
        log.warning("cannot reach the source of %s (%s): rebuilding from its files alone", name,
                    short_text(exc))
        return _from_files(manager, name, claims)
    adopted = 0
    for claim in claims:
        subset = dataset.subsets.get(claim.subset)
        if subset is None:
            continue
        try:
            part = subset.partition(claim.partition)
        except PygestorError:
            continue
        verdict = integrity.examine(manager.storage, claim.path, dataset, subset, part)
        if verdict.stats is not None:
            part.copy_stored(verdict.stats)
            adopted += 1
    return dataset, adopted


def find_claims(manager: Manager, name: str) -> list[Claim]:
    """The parquet files in ``name``'s folder (not in nested datasets' or set-aside folders)
    whose footer names this place."""
    import pyarrow.parquet as pq

    from pygestor.pipelines.formats import read_provenance

    storage = manager.storage
    base = storage.path(name).rstrip("/")
    nested = {n.split("/", 1)[1] for n in manager.nested_datasets(name)}
    claims = []
    for path in storage.find(base):
        rel = path[len(base):].strip("/")
        if not rel.endswith(".parquet") or "/" not in rel or rel.startswith("_pygestor/") or \
                rel.split("/", 1)[0] in nested:
            continue
        subset, part = rel.rsplit("/", 1)
        try:
            check_subset_name(subset)
            check_partition_name(part)
            with storage.open(path, "rb") as handle:
                provenance = read_provenance(pq.ParquetFile(handle).metadata)
        except (InvalidNameError, OSError, ValueError) as exc:
            log.info("skipping %s: %s", path, short_text(exc))
            continue
        if provenance and provenance.get("subset") == subset and \
                provenance.get("partition") == part:
            claims.append(Claim(subset, part, path, provenance))
    return claims


def _from_files(manager: Manager, name: str, claims: list[Claim]) -> tuple[Dataset, int]:
    """A record of the downloaded partitions alone: each file read whole, checksums verified."""
    import pyarrow.parquet as pq

    from pygestor.pipelines.formats import schema_to_text

    first = claims[0].provenance
    dataset = Dataset(name=name, url=first.get("url"), pipeline=str(first.get("pipeline")),
                      options=dict(first.get("dataset_options") or {}),
                      revision=first.get("revision"))
    adopted = 0
    for claim in sorted(claims, key=lambda c: (c.subset, c.partition)):
        try:
            stats = integrity.read_whole(manager.storage, claim.path)
        except (IntegrityError, FileNotFoundError) as exc:
            log.warning("leaving out %s: %s", claim.path, short_text(exc))
            continue
        subset = dataset.subsets.setdefault(claim.subset, Subset(name=claim.subset))
        if subset.schema is None:
            with manager.storage.open(claim.path, "rb") as handle:
                subset.schema = schema_to_text(pq.ParquetFile(handle).schema_arrow)
        part = Partition(name=claim.partition, source=dict(claim.provenance.get("source") or {}))
        part.copy_stored(Partition(name=claim.partition, **stats))
        subset.partitions.append(part)
        adopted += 1
    return dataset, adopted
