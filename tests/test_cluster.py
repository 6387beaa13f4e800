"""Downloads on a Dask cluster: a real scheduler and worker processes on 127.0.0.1 (started as
the ``dask`` commands), a moto S3 data_dir. The workers get the S3 credentials from their
environment: the tasks carry none."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import S3_KEY, S3_SECRET, free_port

DASK = str(Path(sys.executable).parent / "dask")
PYGESTOR = str(Path(sys.executable).parent / "pygestor")
pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A scheduler and two worker processes (two threads each) on loopback."""
    port = free_port()
    env = {**os.environ, "AWS_ACCESS_KEY_ID": S3_KEY, "AWS_SECRET_ACCESS_KEY": S3_SECRET,
           "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}
    scheduler = subprocess.Popen([DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port),
                                  "--no-dashboard"], env=env, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
    address = f"tcp://127.0.0.1:{port}"
    workers = subprocess.Popen([DASK, "worker", address, "--nworkers", "2", "--nthreads", "2",
                                "--no-dashboard", "--host", "127.0.0.1"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        from distributed import Client

        with Client(address, timeout=30) as client:
            client.wait_for_workers(2, timeout=60)
        yield address
    finally:
        for proc in (workers, scheduler):
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def worker_pids(address: str) -> dict[str, int]:
    from distributed import Client

    with Client(address, timeout=30) as client:
        return client.run(os.getpid)


def s3_manager(s3_server: dict[str, Any], **settings: Any) -> Any:
    from pygestor.config import Settings
    from pygestor.manager import Manager

    data_dir = f"s3://{s3_server['bucket']}/cluster-{uuid.uuid4().hex[:8]}"
    return Manager(Settings.load(env={}, data_dir=data_dir, storage_options=s3_server["options"],
                                 partition_size="12KB", allowed_hosts=["127.0.0.1"], **settings))


def test_every_partition_is_written_by_a_worker(cluster: str, s3_server: dict[str, Any],
                                                toy_source: Path) -> None:
    manager = s3_manager(s3_server)
    manager.add_dataset("toy", str(toy_source), cluster=cluster)  # sources read on workers
    parts = [f"{s.name}/{p.name}" for s, p in manager.dataset("toy").partitions]
    report = manager.download("toy", progress=False, cluster=cluster)
    pids = set(worker_pids(cluster).values())
    assert sorted(report.fetched) == sorted(parts)
    assert set(report.workers) == set(parts), "every partition built on a worker"
    written_by = {int(w.rsplit(":", 1)[1]) for w in report.workers.values()}
    assert written_by <= pids and os.getpid() not in written_by
    stored = {p.rsplit("/", 2)[-2] + "/" + p.rsplit("/", 1)[-1]
              for p in manager.storage.find(manager.storage.path("toy")) if p.endswith(".parquet")}
    assert stored == set(parts) and manager.verify("toy").clean
    job = next(j for j in manager.list_jobs(all=True) if j["id"] == report.job)
    assert job["state"] == "done" and sum(job["workers"].values()) == len(parts)


def test_the_command_line_takes_a_cluster(cluster: str, s3_server: dict[str, Any],
                                          toy_source: Path) -> None:
    import json

    manager = s3_manager(s3_server)
    manager.add_dataset("toy", str(toy_source))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYGESTOR_")}
    env.update(PYGESTOR_DATA_DIR=manager.settings.data_dir,
               PYGESTOR_STORAGE_OPTIONS=json.dumps(s3_server["options"]))
    result = subprocess.run([PYGESTOR, "download", "toy/test", "--cluster", cluster], env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert manager.verify("toy/test").clean
    assert all(p.downloaded for p in manager.dataset("toy").subsets["test"].partitions)
    unreachable = subprocess.run([PYGESTOR, "download", "toy/train", "--cluster",
                                  f"tcp://127.0.0.1:{free_port()}"], env=env,
                                 capture_output=True, text=True, timeout=120)
    assert unreachable.returncode != 0 and "cannot reach the Dask scheduler" in unreachable.stderr
    assert "Traceback" not in unreachable.stderr


def test_a_worker_killed_mid_download_does_not_stop_it(cluster: str, s3_server: dict[str, Any],
                                                      slow_source: dict[str, Any],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", S3_KEY)  # the source's credentials, as workers have
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_SECRET)
    manager = s3_manager(s3_server)
    manager.add_dataset("toy", slow_source["url"], source_options=slow_source["options"])
    parts = [f"{s.name}/{p.name}" for s, p in manager.dataset("toy").partitions]
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["report"] = manager.download("toy", progress=False, cluster=cluster)
        except Exception as exc:  # reported below
            outcome["error"] = exc
    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.time() + 60
    while time.time() < deadline and not any(
            j["kind"] == "download" and j["done"] >= 2 for j in manager.list_jobs()):
        time.sleep(0.2)
    victim = sorted(worker_pids(cluster).values())[0]
    os.kill(victim, signal.SIGKILL)
    thread.join(timeout=240)
    assert "error" not in outcome, outcome.get("error")
    report = outcome["report"]
    assert sorted(report.fetched) == sorted(parts)
    assert manager.verify("toy").clean
    assert all(p.downloaded for _, p in manager.dataset("toy").partitions)
    deadline = time.time() + 60
    while time.time() < deadline and len(worker_pids(cluster)) < 2:
        time.sleep(0.5)  # the nanny starts a new worker process for the next test


def test_a_worker_that_cannot_read_the_source_is_named(cluster: str, s3_server: dict[str, Any],
                                                       tmp_path: Path) -> None:
    """A source only the client can see (an in-memory filesystem of this process): each
    partition fails on a worker, and the error says which worker and why."""
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.pipe_file("/only-here/d.csv", b"id,v\n1,2\n3,4\n")
    manager = s3_manager(s3_server)
    manager.add_dataset("mem", "memory://only-here")
    from pygestor.errors import SourceError

    with pytest.raises(SourceError) as info:
        manager.download("mem", progress=False, cluster=cluster)
    message = str(info.value)
    assert "on worker " in message and "only-here/d.csv is gone from the source" in message
    pids = {str(p) for p in worker_pids(cluster).values()}
    assert any(f":{pid}" in message for pid in pids)
    assert not any(p.downloaded for _, p in manager.dataset("mem").partitions)
