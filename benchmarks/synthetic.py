"""Synthetic catalogs: records only, no data files, for scale measurements."""

from __future__ import annotations

from pygestor.catalog import Catalog, Dataset, Partition, Subset


def synthetic_dataset(name: str, subsets: int, partitions: int, row_groups: int = 4,
                      rows_per_group: int = 10000, downloaded: bool = True) -> Dataset:
    """A dataset record with ``subsets`` x ``partitions`` partitions of ``row_groups`` each."""
    dataset = Dataset(name=name, url=f"s3://source/{name}", pipeline="files")
    for s in range(subsets):
        subset = Subset(name=f"s{s:04d}")
        for p in range(partitions):
            part = Partition(name=f"part-{p:05d}.parquet",
                             source={"url": f"s3://source/{name}/s{s:04d}/f{p:05d}.parquet",
                                     "format": "parquet", "start": 0,
                                     "stop": row_groups * rows_per_group},
                             source_bytes=row_groups * rows_per_group * 100,
                             source_rows=row_groups * rows_per_group)
            if downloaded:
                size = row_groups * rows_per_group * 80
                part.size, part.num_rows = size, row_groups * rows_per_group
                part.row_groups = [rows_per_group] * row_groups
                part.checksum = "sha256:" + f"{s:08x}{p:08x}" * 4
                part.footer = [size - 4096, 4096]
                part.downloaded_at = "2026-11-25T00:00:00+00:00"
            subset.partitions.append(part)
        dataset.subsets[subset.name] = subset
    return dataset


def write_synthetic_catalog(catalog: Catalog, big_subsets: int = 1000,
                            big_partitions: int = 100, small_datasets: int = 99) -> None:
    """One dataset ``big`` (subsets x partitions) plus ``small_datasets`` one-subset datasets."""
    catalog.write(synthetic_dataset("big", big_subsets, big_partitions))
    for index in range(small_datasets):
        catalog.write(synthetic_dataset(f"small-{index:03d}", 1, 10))
