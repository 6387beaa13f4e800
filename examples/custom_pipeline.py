"""A tiny custom pipeline, registered at run time, that generates its data (no network).

Run it: ``python examples/custom_pipeline.py`` (it works in a temporary data_dir and removes it).

A pipeline has two jobs (see docs/pipelines.md):

- ``discover(name, url, options)``: describe the dataset (subsets and their partitions) without
  fetching any data; the catalog lists every partition before anything is downloaded.
- ``fetch(dataset, subset, partition, dest, progress)``: write one partition as a parquet file at
  the local path ``dest``. Pygestor does the rest: concurrency, retries, checksums, atomic
  placement in data_dir (local, S3, GCS), the record update, resuming an interrupted download.
"""

from __future__ import annotations

import tempfile
from typing import Any, ClassVar

import pyarrow as pa

from pygestor.catalog import Dataset, Partition, Subset
from pygestor.config import Settings
from pygestor.errors import ConfigError
from pygestor.manager import Manager
from pygestor.pipelines import register_pipeline
from pygestor.pipelines.base import Pipeline, Progress


@register_pipeline
class MultiplicationTables(Pipeline):
    """Rows ``(a, b, product)``: one subset per table size, ``rows_per_partition`` rows each.

    Options:
        sizes: table sizes, e.g. ``[10, 12]`` (subsets ``table-10`` and ``table-12``).
        rows_per_partition: rows per partition (default 50).
    """

    name: ClassVar[str] = "multiplication"
    description: ClassVar[str] = "multiplication tables, generated locally"
    OPTIONS: ClassVar[dict[str, str]] = {  # anything else given to `add` is refused
        "sizes": "table sizes, e.g. [10, 12]",
        "rows_per_partition": "rows per partition (default 50)",
    }

    def discover(self, name: str, url: str | None, options: dict[str, Any]) -> Dataset:
        sizes = [int(s) for s in options.get("sizes", [10])]
        per_partition = int(options.get("rows_per_partition", 50))
        if per_partition < 1 or any(s < 1 for s in sizes):
            raise ConfigError("sizes and rows_per_partition must be positive")
        dataset = Dataset(name=name, url=url, pipeline=self.name, options=dict(options),
                          description="multiplication tables", modality="tabular")
        for size in sizes:
            subset = Subset(name=f"table-{size}", description=f"{size} x {size}")
            total = size * size
            for start in range(0, total, per_partition):
                stop = min(start + per_partition, total)
                subset.partitions.append(Partition(
                    name=f"part-{len(subset.partitions):05d}.parquet",
                    source={"size": size, "start": start, "stop": stop},  # what fetch needs
                    source_rows=stop - start))
            dataset.subsets[subset.name] = subset
        return dataset

    def fetch(self, dataset: Dataset, subset: Subset, partition: Partition, dest: str,
              progress: Progress) -> None:
        size, start, stop = (partition.source[k] for k in ("size", "start", "stop"))
        cells = range(start, stop)
        batch = pa.record_batch({
            "a": pa.array([i // size + 1 for i in cells], pa.int32()),
            "b": pa.array([i % size + 1 for i in cells], pa.int32()),
            "product": pa.array([(i // size + 1) * (i % size + 1) for i in cells], pa.int32()),
        })
        # bounded row groups, page checksums, the configured compression, and the file's
        # provenance in its footer (so a file found in data_dir is adopted only if it is ours)
        writer = self.open_writer(dest, batch.schema, dataset, subset, partition)
        try:
            writer.write(batch)
            writer.close()
        except BaseException:
            writer.abort()
            raise
        progress(batch.nbytes)


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="pygestor-example-") as data_dir:
        manager = Manager(Settings.load(data_dir=data_dir))
        dataset = manager.add_dataset("tables", pipeline="multiplication", sizes=[10, 12])
        print(f"registered {dataset.name}: subsets {', '.join(dataset.subsets)}")
        report = manager.download("tables", progress=False)
        print(f"downloaded: {report}")

        from pygestor.loaders.arrow import load

        frame = load(manager, "tables/table-12")
        print(f"table-12: {len(frame)} rows, 7 x 8 = "
              f"{int(frame[(frame.a == 7) & (frame.b == 8)]['product'].iloc[0])}")
        assert len(frame) == 144 and manager.verify("tables").clean


if __name__ == "__main__":
    main()
