"""Scale: costs that grow with what a call needs, not with the catalog or the bucket.

    python benchmarks/scale.py [--quick]

Prints one table (and the machine): catalog operations on a synthetic catalog of 100 000
partitions in 1 000 subsets (records only), the pure planner for 1 024 ranks x 8 workers over
1 000 000 row groups, requests made before the first batch from S3 (moto behind a counting proxy),
and a download of 1 000 small partitions to S3 with max_workers=1 vs 16.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
ROWS: list[tuple[str, str, str, str]] = []  # (measure, value, target, verdict)


def record(measure: str, value: float, unit: str, target: float | None = None,
           lower_is_better: bool = True, fmt: str = "{:.3f}") -> None:
    shown = fmt.format(value) + f" {unit}"
    if target is None:
        ROWS.append((measure, shown, "", ""))
        return
    good = value < target if lower_is_better else value >= target
    ROWS.append((measure, shown, ("< " if lower_is_better else ">= ") + f"{target:g} {unit}",
                 "ok" if good else "MISSED"))


def timed(fn, repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def cli_seconds(data_dir: str, *args: str) -> float:
    exe = str(Path(sys.executable).parent / "pygestor")
    best = float("inf")
    for _ in range(3):
        started = time.perf_counter()
        subprocess.run([exe, "--data-dir", data_dir, *args], check=True,
                       stdout=subprocess.DEVNULL)
        best = min(best, time.perf_counter() - started)
    return best


# ---------------------------------------------------------------------- catalog
def bench_catalog(work: Path, subsets: int, partitions: int) -> None:
    from synthetic import write_synthetic_catalog

    from pygestor.config import Settings
    from pygestor.manager import Manager

    data_dir = str(work / "catalog")
    manager = Manager(Settings.load(data_dir=data_dir))
    write_synthetic_catalog(manager.catalog, big_subsets=subsets, big_partitions=partitions)
    total = subsets * partitions
    size = os.path.getsize(Path(data_dir) / "big" / "metadata.json")
    record(f"record of 'big' ({total:,} partitions)", size / 1e6, "MB", fmt="{:.1f}")
    record("list_datasets() (100 datasets)", timed(manager.list_datasets), "s", 1.0)
    record("info('big')", timed(lambda: manager.info("big")), "s", 1.0)
    ref = f"big/s{subsets // 2:04d}"
    record(f"resolve('{ref}')", timed(lambda: manager.resolve(ref)), "s", 1.0)
    reads: list[str] = []
    original = manager.storage.read_bytes

    def counting(path: str) -> bytes:
        reads.append(path)
        return original(path)
    manager.storage.read_bytes = counting  # type: ignore[method-assign]
    manager.info("small-000")
    record("records read by info('small-000')", len(reads), "files", 1.5, fmt="{:.0f}")
    manager.storage.read_bytes = original  # type: ignore[method-assign]
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq

        from pygestor import PygestorDataset

        # records only, but the dataset reads one footer for the schema: give it one file
        first = Path(manager.partition_path("big", ref.split("/")[1], "part-00000.parquet"))
        first.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.table({"id": pa.array([0], pa.int64())}), first)

        record(f"len(PygestorDataset('{ref}')) (reads one footer)",
               timed(lambda: len(PygestorDataset(ref, manager=manager))), "s", 1.0)
    except ImportError as exc:
        ROWS.append(("len(PygestorDataset)", f"not measured: {exc}", "", ""))
    record("CLI: pygestor list", cli_seconds(data_dir, "list"), "s", 1.0 + 0.5,
           )
    record("CLI: pygestor info big", cli_seconds(data_dir, "info", "big"), "s", 1.5)
    plan_s = cli_seconds(data_dir, "plan", ref, "--world-size", "1024", "--workers", "8")
    record(f"CLI: pygestor plan {ref} --world-size 1024", plan_s, "s", 2.0)


# ---------------------------------------------------------------------- planner
def bench_planner(groups: int, world: int, workers: int) -> None:
    import numpy as np

    from pygestor.loaders import plan

    sizes = np.random.default_rng(0).integers(500, 1500, size=groups)
    tracemalloc.start()
    started = time.perf_counter()
    summary = plan.summarize_plan(sizes, world, workers, seed=1, epoch=2, shuffle="rowgroup",
                                  drop_last=True)
    elapsed = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    record(f"plan epoch summary: {world} ranks x {workers} workers, {groups:,} row groups",
           elapsed, "s", 2.0)
    record("  peak memory of that", peak / 1e6, "MB", 1000, fmt="{:.0f}")
    tracemalloc.start()
    started = time.perf_counter()
    layout = plan.epoch_layout(sizes, seed=1, epoch=2, shuffle="rowgroup")
    slices = plan.plan_piece(layout, rank=world // 2, world_size=world, piece=workers - 1,
                             num_pieces=workers, drop_last=True).rest()
    elapsed = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    record("one rank's own part (one worker)", elapsed, "s", 0.2)
    record("  peak memory of that", peak / 1e6, "MB", fmt="{:.0f}")
    delivered = sum(s.stop - s.start for s in slices)
    record("  samples in that worker's part", delivered, "rows", fmt="{:.0f}")
    ROWS.append(("  samples per rank (equal on all ranks)", f"{summary['samples_per_rank']:,}",
                 "", f"dropped {summary['dropped']}"))


# ---------------------------------------------------------------------- downloads
def bench_download(work: Path, partitions: int) -> None:
    from pygestor.config import Settings
    from pygestor.manager import Manager

    source = work / "many-small"
    source.mkdir()
    for index in range(partitions):
        (source / f"f{index:04d}.csv").write_text(
            "id,value\n" + "".join(f"{index * 10 + k},{k}\n" for k in range(10)))
    port = _free_port()
    # moto in its own process, as a real bucket would be: not competing for this one's GIL
    server = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H",
                               "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    _wait_for_port(port)
    options = {"key": "bench", "secret": "bench",
               "client_kwargs": {"endpoint_url": f"http://127.0.0.1:{port}"}}
    from delayproxy import DelayProxy

    proxy = DelayProxy(port, delay=0.030).start()
    try:
        import s3fs

        s3fs.S3FileSystem(**options).mkdir("scale-bench")
        for label, endpoint in (("moto on loopback", f"http://127.0.0.1:{port}"),
                                ("moto behind 30 ms/request", proxy.endpoint)):
            opts = {**options, "client_kwargs": {"endpoint_url": endpoint}}
            seconds = {}
            for workers in (1, 16):
                prefix = f"{'d' if 'ms' in label else 'l'}{workers}"
                manager = Manager(Settings.load(data_dir=f"s3://scale-bench/{prefix}",
                                                storage_options=opts, max_workers=workers,
                                                env={}))
                manager.add_dataset("many", str(source), pipeline="files")
                started = time.perf_counter()
                report = manager.download("many", progress=False)
                seconds[workers] = time.perf_counter() - started
                assert len(report.fetched) == partitions, report
            record(f"download {partitions} small partitions, {label}, max_workers=1",
                   seconds[1], "s")
            record("  same with max_workers=16", seconds[16], "s")
            record("  speed-up", seconds[1] / seconds[16], "x", 3.0, lower_is_better=False,
                   fmt="{:.2f}")
    finally:
        proxy.stop()
        server.terminate()
        server.wait(10)


def _wait_for_port(port: int, timeout: float = 20.0) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bench_requests(work: Path) -> None:
    """Requests before the first batch when streaming from S3 (needs the loaders' proxy)."""
    try:
        from s3_requests import measure_requests
    except ImportError as exc:
        ROWS.append(("S3 requests before first batch", f"not measured: {exc}", "", ""))
        return
    for measure, value, target, verdict in measure_requests(work):
        ROWS.append((measure, value, target, verdict))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10x smaller, for a smoke run")
    args = parser.parse_args()
    scale = 10 if args.quick else 1
    with tempfile.TemporaryDirectory(prefix="pygestor-scale-") as tmp:
        work = Path(tmp)
        bench_catalog(work, 1000 // scale, 100)
        bench_planner(1_000_000 // scale, 1024, 8)
        bench_requests(work)
        bench_download(work, 1000 // scale)
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, {platform.platform()}")
    width = max(len(r[0]) for r in ROWS)
    print(f"{'measure'.ljust(width)}  {'value':>16}  {'target':>12}  verdict")
    for measure, value, target, verdict in ROWS:
        print(f"{measure.ljust(width)}  {value:>16}  {target:>12}  {verdict}")


if __name__ == "__main__":
    main()
