"""Reading Pygestor data with bigger engines: DuckDB, Dask, Ray Data, PyArrow datasets, Spark.

``pygestor.urls(ref)`` returns the URLs of the downloaded partitions of a dataset, subset or
partition, plus the fsspec ``storage_options`` to open them with. The partitions are plain
parquet files, so any engine reads them directly, in parallel, with its own column and filter
pushdown; nothing is copied or converted.

    python examples/interop.py toy/train --data-dir ./data

Each engine runs only if it is installed (``pip install duckdb "dask[dataframe]" "ray[data]"``).
"""

from __future__ import annotations

import argparse
import importlib.util
from typing import Any

import pygestor


def with_duckdb(found: dict[str, Any]) -> None:
    import duckdb

    con = duckdb.connect()
    if any(u.startswith(("s3://", "gs://", "gcs://")) for u in found["urls"]):
        # let DuckDB read object stores through fsspec, with the same options
        import fsspec

        protocol = found["urls"][0].split("://", 1)[0]
        con.register_filesystem(fsspec.filesystem(protocol, **found["storage_options"]))
    relation = con.read_parquet(found["urls"])
    print("duckdb:", relation.aggregate("count(*) AS rows").fetchall())


def with_dask(found: dict[str, Any]) -> None:
    import dask.dataframe as dd

    frame = dd.read_parquet(found["urls"], storage_options=found["storage_options"] or None)
    print("dask:", frame.npartitions, "partitions,", len(frame), "rows")


def with_ray(found: dict[str, Any]) -> None:
    import fsspec
    import pyarrow.fs
    import ray

    urls = found["urls"]
    filesystem = None
    if "://" in urls[0]:
        protocol, _ = urls[0].split("://", 1)
        handler = pyarrow.fs.FSSpecHandler(fsspec.filesystem(protocol,
                                                             **found["storage_options"]))
        filesystem = pyarrow.fs.PyFileSystem(handler)
        urls = [u.split("://", 1)[1] for u in urls]
    ds = ray.data.read_parquet(urls, filesystem=filesystem)
    print("ray:", ds.count(), "rows")


def with_pyarrow(found: dict[str, Any]) -> None:
    import fsspec
    import pyarrow.dataset as pads

    urls = found["urls"]
    filesystem = None
    if "://" in urls[0]:
        protocol, _ = urls[0].split("://", 1)
        filesystem = fsspec.filesystem(protocol, **found["storage_options"])
        urls = [u.split("://", 1)[1] for u in urls]
    dataset = pads.dataset(urls, format="parquet", filesystem=filesystem)
    print("pyarrow:", dataset.count_rows(), "rows,", dataset.schema.names)


SPARK_SNIPPET = """
# Spark reads the same URLs (s3a:// for S3, with the hadoop-aws credentials configured):
spark.read.parquet(*[u.replace("s3://", "s3a://") for u in pygestor.urls(REF)["urls"]])
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("ref")
    p.add_argument("--data-dir")
    args = p.parse_args()
    if args.data_dir:
        pygestor.configure(data_dir=args.data_dir)
    found = pygestor.urls(args.ref)
    print(f"{len(found['urls'])} partitions, e.g. {found['urls'][0]}")
    engines = (("pyarrow", with_pyarrow), ("duckdb", with_duckdb), ("dask", with_dask),
               ("ray", with_ray))
    for module, run in engines:
        if importlib.util.find_spec(module) is None:
            print(f"{module}: not installed, skipped")
            continue
        run(found)
    print(SPARK_SNIPPET.replace("REF", repr(args.ref)))


if __name__ == "__main__":
    main()
