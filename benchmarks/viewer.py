"""Viewer benchmark: page N of a ten-million-row subset, locally and from S3 (moto) behind the
30 ms-per-request delay proxy, next to the anchors in one table. Run on demand, not in CI:

    python benchmarks/viewer.py                # about a minute on 2 cores
    python benchmarks/viewer.py --skip-s3 --rows 2000000

It writes a parquet source (an id, a number, a category and a time; ``--rows`` rows), registers
and downloads it with Pygestor (row groups of ``--row-group-size`` rows), then for ``--pages``
random pages deep in the subset times what the web UI does for one page: open a
:class:`pygestor.viewer.RowViewer` (the catalog read, the footer checked) and read the page
(the one row group holding it, every page checksum verified), cold each time. Anchors: the same
row group read by raw pyarrow from the local file (no verification), and the target of 1 s.
A filtered and sorted query over the whole subset is timed as well. Requests are counted by
the proxy for the S3 case.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

TARGET_SECONDS = 1.0
PER_PAGE = 25


def generate(folder: Path, rows: int, row_group_size: int) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True)
    ids = np.arange(rows, dtype=np.int64)
    pq.write_table(pa.table({
        "id": ids,
        "value": np.round(np.random.default_rng(0).normal(50, 15, rows), 2),
        "label": pa.DictionaryArray.from_arrays(pa.array(ids % 4, pa.int8()),
                                                ["cat", "dog", "bird", "fish"]),
        "seen": pa.array(1_600_000_000_000 + ids * 9_000, pa.timestamp("ms", tz="UTC")),
    }), folder / "big.parquet", row_group_size=row_group_size)


def register(data_dir: str, options: dict[str, Any], source: Path,
             row_group_size: int) -> Any:
    from pygestor.config import Settings
    from pygestor.manager import Manager

    manager = Manager(Settings.load(data_dir=data_dir, storage_options=options, env={},
                                    row_group_size=row_group_size, partition_size="2GB"))
    manager.add_dataset("big", str(source), pipeline="files")
    manager.download("big", progress=False)
    return manager


def time_pages(manager: Any, pages: list[int]) -> list[float]:
    """Seconds to open a viewer and read page p, cold, for each p."""
    from pygestor.viewer import RowViewer

    spent = []
    for page in pages:
        started = time.perf_counter()
        viewer = RowViewer(manager, "big/default")
        numbers, rows = viewer.page(page, PER_PAGE)
        spent.append(time.perf_counter() - started)
        assert rows.column("id").to_pylist() == [int(n) for n in numbers], "wrong rows"
        viewer.close()
    return spent


def time_raw(manager: Any, pages: list[int]) -> list[float]:
    """Seconds for raw pyarrow (no verification) to read the row group holding page p."""
    import pyarrow.parquet as pq

    part = manager.dataset("big").subsets["default"].partitions[0]
    path = manager.partition_path("big", "default", part.name)
    groups = list(part.row_groups or [])
    spent = []
    for page in pages:
        started = time.perf_counter()
        first, index = page * PER_PAGE, 0
        while first >= groups[index]:
            first -= groups[index]
            index += 1
        pq.ParquetFile(path).read_row_group(index).slice(first, PER_PAGE)
        spent.append(time.perf_counter() - started)
    return spent


def time_query(manager: Any) -> tuple[float, int]:
    from pygestor.viewer import Condition, RowQuery, RowViewer

    viewer = RowViewer(manager, "big/default")
    started = time.perf_counter()
    result = viewer.query(RowQuery(conditions=(Condition("label", "=", "dog"),), sort="value",
                                   descending=True))
    viewer.page(0, PER_PAGE, result)
    return time.perf_counter() - started, result.matches


def row(name: str, spent: list[float], anchor: float | None, requests: str = "") -> str:
    median, worst = statistics.median(spent), max(spent)
    ratio = f"{median / anchor:6.1f}x" if anchor else "      -"
    target = "yes" if worst < TARGET_SECONDS else "NO"
    return (f"{name:38} {median * 1000:9.1f} {worst * 1000:9.1f} {ratio}   {target:>6}"
            f"  {requests}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--row-group-size", type=int, default=1_000_000)
    parser.add_argument("--pages", type=int, default=8)
    parser.add_argument("--delay", type=float, default=0.030)
    parser.add_argument("--skip-s3", action="store_true")
    args = parser.parse_args()
    import random

    work = Path(tempfile.mkdtemp(prefix="pygestor-viewer-bench-"))
    started = time.perf_counter()
    generate(work / "src", args.rows, args.row_group_size)
    local = register(str(work / "data"), {}, work / "src", args.row_group_size)
    print(f"{args.rows:,} rows in row groups of {args.row_group_size:,}: written and "
          f"downloaded in {time.perf_counter() - started:.1f}s", flush=True)
    pages = random.Random(0).sample(range(args.rows // PER_PAGE), args.pages)
    raw = time_raw(local, pages)
    lines = [row("raw pyarrow, row group (anchor)", raw, None),
             row("viewer page N, local", time_pages(local, pages), statistics.median(raw))]
    query_seconds, matches = time_query(local)
    lines.append(row(f"query label='dog' sort value ({matches:,})", [query_seconds], None))
    if not args.skip_s3:
        lines += s3_rows(work, args, pages, statistics.median(raw))
    print(f"\n{'case':38} {'median ms':>9} {'max ms':>9} {'ratio':>7}  {'< 1 s':>6}  requests")
    print("\n".join(lines))


def s3_rows(work: Path, args: argparse.Namespace, pages: list[int], anchor: float) -> list[str]:
    import s3fs
    from delayproxy import DelayProxy
    from loader import BUCKET, s3_options, start_moto

    moto, port = start_moto()
    try:
        s3fs.S3FileSystem(**s3_options(port)).mkdir(BUCKET)
        register(f"s3://{BUCKET}/data", s3_options(port), work / "src", args.row_group_size)
        proxy = DelayProxy(port, delay=args.delay).start()
        from pygestor.config import Settings
        from pygestor.manager import Manager

        remote = Manager(Settings.load(data_dir=f"s3://{BUCKET}/data", env={},
                                       storage_options=s3_options(proxy.port)))
        time_pages(remote, pages[:1])  # clients and connections made once, as in a server
        before = proxy.requests
        spent = time_pages(remote, pages)
        per_page = (proxy.requests - before) / len(pages)
        proxy.stop()
        return [row(f"viewer page N, S3 + {args.delay * 1000:.0f} ms/request", spent, anchor,
                    f"{per_page:.1f} per page")]
    finally:
        moto.terminate()


if __name__ == "__main__":
    main()
