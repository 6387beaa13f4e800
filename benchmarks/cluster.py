"""Cluster benchmark: 1 000 small partitions into S3 behind a 30 ms-per-request delay proxy,
on this machine's thread pool and on a 2-worker local Dask cluster with the same total threads.
Run on demand, not in CI:

    python benchmarks/cluster.py                  # about 4 minutes on 2 cores
    python benchmarks/cluster.py --partitions 200 # a quick look

moto runs in its own process (as a bucket would) behind benchmarks/delayproxy.py; the Dask
scheduler and workers are the ``dask`` commands on 127.0.0.1 (workers get the S3 credentials
from their environment). Prints one table: seconds, partitions/s, requests through the proxy,
and the ratio of each case to the thread pool; then the per-task overhead of the cluster,
measured with partitions that need no network at all.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
BIN = Path(sys.executable).parent
KEY, SECRET = "bench-key", "bench-secret"
from scale import _free_port as free_port  # noqa: E402 - after the path set-up
from scale import _wait_for_port as wait_port  # noqa: E402


def small_source(root: Path, count: int) -> Path:
    root.mkdir(parents=True)
    for index in range(count):
        (root / f"f{index:04d}.csv").write_text(
            "id,value\n" + "".join(f"{index * 10 + k},{k}\n" for k in range(10)))
    return root


def start_cluster(env: dict[str, str], workers: int, threads: int) -> tuple[str, list[Any]]:
    port = free_port()
    scheduler = subprocess.Popen([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1",
                                  "--port", str(port), "--no-dashboard"], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    address = f"tcp://127.0.0.1:{port}"
    wait_port(port)
    worker = subprocess.Popen([str(BIN / "dask"), "worker", address, "--nworkers", str(workers),
                               "--nthreads", str(threads), "--no-dashboard", "--host",
                               "127.0.0.1"], env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    from distributed import Client

    with Client(address, timeout=30) as client:
        client.wait_for_workers(workers, timeout=60)
    return address, [worker, scheduler]


def run_case(label: str, source: Path, options: dict[str, Any], prefix: str, proxy: Any,
             threads: int, cluster: str | None) -> dict[str, Any]:
    from pygestor.config import Settings
    from pygestor.manager import Manager

    manager = Manager(Settings.load(env={}, data_dir=f"s3://cluster-bench/{prefix}",
                                    storage_options=options, max_workers=threads,
                                    allowed_hosts=["127.0.0.1"]))
    manager.add_dataset("many", str(source))
    before = proxy.requests
    started = time.perf_counter()
    report = manager.download("many", progress=False, cluster=cluster or "",
                              max_workers=threads)
    seconds = time.perf_counter() - started
    count = len(report.fetched)
    return {"label": label, "seconds": seconds, "rate": count / seconds,
            "requests": proxy.requests - before, "partitions": count,
            "workers": len(set(report.workers.values()))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--partitions", type=int, default=1000)
    parser.add_argument("--delay", type=float, default=0.030)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="pygestor-cluster-bench-"))
    env = {**os.environ, "AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET}
    os.environ.update(AWS_ACCESS_KEY_ID=KEY, AWS_SECRET_ACCESS_KEY=SECRET)
    procs: list[Any] = []
    proxy = None
    try:
        port = free_port()
        procs.append(subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p",
                                       str(port)], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.DEVNULL))
        wait_port(port)
        from delayproxy import DelayProxy

        proxy = DelayProxy(port, delay=args.delay).start()
        import s3fs

        s3fs.S3FileSystem(key=KEY, secret=SECRET, client_kwargs={
            "endpoint_url": f"http://127.0.0.1:{port}"}).mkdir("cluster-bench")
        options = {"client_kwargs": {"endpoint_url": proxy.endpoint}}
        source = small_source(work / "src", args.partitions)
        address, cluster_procs = start_cluster(env, workers=2, threads=8)
        procs += cluster_procs
        results = [run_case("thread pool, 16 threads", source, options, "local", proxy, 16,
                            None),
                   run_case("Dask, 2 workers x 8 threads", source, options, "dask", proxy, 16,
                            address)]
        overhead = task_overhead(address)
        report(results, overhead, args)
    finally:
        if proxy is not None:
            proxy.stop()
        for proc in reversed(procs):
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(20)
        shutil.rmtree(work, ignore_errors=True)


def task_overhead(address: str, tasks: int = 2000) -> float:
    """Seconds of cluster overhead per task: tasks that do nothing, through the same
    ``get_executor()`` the downloads use."""
    from pygestor.cluster import cluster_executor

    with cluster_executor(address) as executor:
        started = time.perf_counter()
        list(executor.map(int, range(tasks)))
        return (time.perf_counter() - started) / tasks


def report(results: list[dict[str, Any]], overhead: float, args: argparse.Namespace) -> None:
    base = results[0]["seconds"]
    print(f"\nCluster benchmark: {args.partitions} small partitions into S3 (moto) behind "
          f"{args.delay * 1000:.0f} ms/request, {os.cpu_count()} cores")
    header = (f"{'case':32} {'seconds':>8} {'parts/s':>8} {'requests':>9} {'workers':>8} "
              f"{'ratio':>6}")
    print(header)
    print("-" * len(header))
    for r in results:
        print(f"{r['label']:32} {r['seconds']:8.1f} {r['rate']:8.1f} {r['requests']:9d} "
              f"{r['workers'] or '-':>8} {base / r['seconds']:5.2f}x")
    print(f"cluster overhead per task (empty tasks): {overhead * 1000:.2f} ms")


if __name__ == "__main__":
    main()
