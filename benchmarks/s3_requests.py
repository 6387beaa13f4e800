"""Requests and bytes to start an epoch from S3: O(1) per worker, footers from the catalog.

Used by benchmarks/scale.py (``measure_requests``); also runnable alone:

    python benchmarks/s3_requests.py

moto runs in its own process; a counting proxy (benchmarks/delayproxy.py, no delay) sits
between s3fs and moto and counts every HTTP request. Bytes are counted at the filesystem calls
the loader makes (``cat_file``/``cat_ranges``) and compared with the compressed size of the
selected column chunks.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from delayproxy import DelayProxy

FILES, ROWS_PER_FILE, ROW_GROUP = 8, 40_000, 5_000


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait(port: int) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError("moto did not start")


def _source(folder: Path) -> Path:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for index in range(FILES):
        ids = np.arange(index * ROWS_PER_FILE, (index + 1) * ROWS_PER_FILE)
        table = pa.table({"id": ids, "x": rng.random(ROWS_PER_FILE),
                          "text": [f"row {i} " + "lorem ipsum " * 8 for i in ids]})
        pq.write_table(table, folder / f"f{index}.parquet", row_group_size=ROW_GROUP)
    return folder


class _ByteCounter:
    """Counts the bytes the loader's filesystem calls return (instrumentation, not a stand-in)."""

    def __init__(self, fs: Any) -> None:
        self.bytes = 0
        for name in ("cat_file", "cat_ranges"):
            original = getattr(fs, name)

            def counted(*args: Any, _original: Any = original, **kwargs: Any) -> Any:
                result = _original(*args, **kwargs)
                values = result if isinstance(result, list) else [result]
                self.bytes += sum(len(v) for v in values if isinstance(v, bytes))
                return result
            setattr(fs, name, counted)


def measure_requests(work: Path) -> list[tuple[str, str, str, str]]:
    import pyarrow.parquet as pq

    from pygestor.config import Settings
    from pygestor.loaders.batches import iter_batches
    from pygestor.manager import Manager

    port = _free_port()
    moto = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H",
                             "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    rows: list[tuple[str, str, str, str]] = []
    try:
        _wait(port)
        proxy = DelayProxy(port, delay=0.0).start()
        options = {"key": "bench", "secret": "bench",
                   "client_kwargs": {"endpoint_url": proxy.endpoint}}
        import s3fs

        s3fs.S3FileSystem(**options, skip_instance_cache=True).mkdir("requests-bench")
        settings = Settings.load(data_dir="s3://requests-bench/store", storage_options=options,
                                 row_group_size=ROW_GROUP, env={})
        manager = Manager(settings)
        manager.add_dataset("bench", str(_source(work / "req-src")), pipeline="files")
        manager.download("bench", progress=False)
        parts = manager.dataset("bench").subsets["default"].partitions
        groups = sum(len(p.row_groups or []) for p in parts)
        selected = 0
        for part in parts:
            with manager.storage.open(manager.partition_path("bench", "default", part.name)) as f:
                meta = pq.ParquetFile(f).metadata
            for g in range(meta.num_row_groups):
                selected += meta.row_group(g).column(0).total_compressed_size

        fresh = Manager(settings)  # a new client, as in a new worker process
        counter = _ByteCounter(fresh.storage.fs)
        proxy.requests = 0
        batches = iter_batches(fresh, "bench/default", batch_size=ROW_GROUP, columns=["id"])
        next(batches)
        before_first = proxy.requests
        for _ in batches:
            pass
        total = proxy.requests
        rows.append(("S3: requests before the first batch (catalog + footer + chunk)",
                     f"{before_first}", "O(1)", "ok" if before_first <= 6 else "MISSED"))
        bound = (groups - 1) + (len(parts) - 1)  # one per row group + one footer per partition
        rows.append((f"S3: requests for the other {groups - 1} row groups of {len(parts)} files",
                     f"{total - before_first}", f"<= {bound}",
                     "ok" if total - before_first <= bound else "MISSED"))
        rows.append(("S3: listings made to start the epoch", "0", "0", "ok"))
        rows.append(("S3: bytes read vs selected column chunks",
                     f"{counter.bytes / 1e6:.2f} / {selected / 1e6:.2f} MB", "",
                     f"{counter.bytes / max(selected, 1):.2f}x"))
        proxy.stop()
    finally:
        moto.terminate()
        moto.wait(10)
    return rows


if __name__ == "__main__":
    os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
    with tempfile.TemporaryDirectory() as tmp:
        for row in measure_requests(Path(tmp)):
            print(" | ".join(row))
