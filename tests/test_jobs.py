"""Jobs: one truth about running work, across processes and machines.

Every test drives the real ``pygestor`` command in subprocesses. The source is the toy dataset
in moto's S3 behind the fault proxy's "slow" rule, so a download takes a few seconds: long enough
to watch it, cancel it, kill it, or start another one beside it. "Another machine" is a process
in its own UTS namespace (``unshare --uts``) with another host name: its jobs are judged by their
lease, as a remote machine's would be.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import S3_KEY, S3_SECRET

PYGESTOR = str(Path(sys.executable).parent / "pygestor")
pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


class World:
    """A local data_dir shared by every process of a test, and how to run the command there."""

    def __init__(self, tmp_path: Path, source: dict[str, Any]) -> None:
        self.data_dir = tmp_path / "data"
        self.source = source
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PYGESTOR_")}
        self.env.update(PYGESTOR_DATA_DIR=str(self.data_dir), PYGESTOR_ALLOWED_HOSTS="127.0.0.1",
                        PYGESTOR_PARTITION_SIZE="12KB", PYGESTOR_MAX_WORKERS="1",
                        PYGESTOR_JOB_LEASE="3", PYGESTOR_RETRY_BACKOFF="0.05",
                        AWS_ACCESS_KEY_ID=S3_KEY, AWS_SECRET_ACCESS_KEY=S3_SECRET)

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([PYGESTOR, *args], env=self.env, capture_output=True,
                                text=True, timeout=180)
        assert not check or result.returncode == 0, result.stderr
        return result

    def start(self, *args: str, hostname: str | None = None) -> subprocess.Popen[str]:
        command = [PYGESTOR, *args]
        if hostname is not None:  # another machine, as far as host names go
            command = ["unshare", "--uts", "sh", "-c",
                       f"hostname {hostname} && exec \"$0\" \"$@\"", *command]
        return subprocess.Popen(command, env=self.env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)

    def add(self) -> int:
        options = json.dumps(self.source["options"])
        self.run("add", "toy", self.source["url"], "-o", f"source_options={options}")
        return sum(1 for _ in self.partitions())

    def jobs(self, *flags: str) -> list[dict[str, Any]]:
        return json.loads(self.run("jobs", "--json", *flags).stdout)

    def partitions(self) -> Iterator[dict[str, Any]]:
        from pygestor.config import Settings
        from pygestor.manager import Manager

        manager = Manager(Settings.load(env={}, data_dir=str(self.data_dir)))
        for _, part in manager.dataset("toy").partitions:
            yield {"name": part.name, "downloaded": part.downloaded}

    def wait_for_job(self, kind: str, progressed: int = 1) -> dict[str, Any]:
        deadline = time.time() + 60
        while time.time() < deadline:
            for job in self.jobs():
                if job["kind"] == kind and job["done"] >= progressed:
                    return job
            time.sleep(0.2)
        raise AssertionError(f"no {kind} job got to {progressed} partitions")


def count(report: str, word: str) -> int:
    """A number of a download report line (``fetched 3, skipped 2 ...``); 0 if absent."""
    found = re.search(rf"{word} (\d+)", report)
    return int(found.group(1)) if found else 0


@pytest.fixture
def world(tmp_path: Path, slow_source: dict[str, Any]) -> World:
    return World(tmp_path, slow_source)


def test_a_cli_download_is_seen_and_cancelled_from_another_process(world: World) -> None:
    total = world.add()
    download = world.start("download", "toy")
    job = world.wait_for_job("download")
    assert job["ref"] == "toy" and job["total"] == total and job["state"] == "running"
    assert job["host"] == socket.gethostname() and job["pid"] == download.pid
    later = world.wait_for_job("download", progressed=job["done"] + 1)
    assert later["id"] == job["id"], "progress moves"
    cancelled = world.run("cancel", job["id"])
    assert f"asked {job['id']}" in cancelled.stdout
    _, err = download.communicate(timeout=30)
    assert download.returncode != 0 and "cancelled" in err and "Traceback" not in err
    assert world.jobs() == []
    history = [j for j in world.jobs("--all") if j["id"] == job["id"]]
    assert history[0]["state"] == "cancelled"
    done = [p for p in world.partitions() if p["downloaded"]]
    assert 0 < len(done) < total, "what finished is kept, the rest was not fetched"
    assert world.run("verify", "toy", check=False).returncode == 0


def test_a_killed_job_is_abandoned_and_the_next_run_finishes(world: World) -> None:
    lease = 6.0  # seconds: room for a CLI call or two on a loaded machine
    world.env["PYGESTOR_JOB_LEASE"] = str(lease)
    total = world.add()
    other = world.start("download", "toy", hostname="elsewhere")
    job = world.wait_for_job("download", progressed=2)
    assert job["host"] == "elsewhere"
    os.kill(other.pid, signal.SIGKILL)
    killed = time.monotonic()
    other.wait()
    assert world.jobs()[0]["state"] == "running", "another machine's job lives by its lease"
    deadline = killed + 4 * lease
    while world.jobs()[0]["state"] != "abandoned":
        assert time.monotonic() < deadline, "the job outlived its lease"
        time.sleep(0.2)
    # the last beat came at most lease/3 + one beat (1 s) before the kill
    assert time.monotonic() - killed > lease / 3, "abandoned before its lease ran out"
    finished = world.run("download", "toy").stdout
    fetched, skipped, adopted = (count(finished, w) for w in ("fetched", "skipped", "adopted"))
    assert fetched + skipped + adopted == total, finished
    assert skipped + adopted >= 2, "the killed job's complete partitions are kept"
    assert all(p["downloaded"] for p in world.partitions())
    assert world.run("verify", "toy").returncode == 0
    states = {j["id"]: j["state"] for j in world.jobs("--all")}
    assert states[job["id"]] == "abandoned" and world.jobs() == []
    leftovers = [p for p in world.data_dir.rglob("*") if ".tmp-" in p.name]
    assert leftovers == []


def test_two_downloads_of_the_same_data_fetch_each_partition_once(world: World) -> None:
    total = world.add()
    first = world.start("download", "toy")
    world.wait_for_job("download", progressed=1)
    second = world.start("download", "toy/train")
    outs = [p.communicate(timeout=120) for p in (first, second)]
    assert first.returncode == 0 and second.returncode == 0, outs
    fetched = [count(out, "fetched") for out, _ in outs]
    assert sum(fetched) == total, f"each partition fetched once: {fetched} of {total}"
    assert fetched[1] == 0, "the second waited for the first, then found everything present"


def test_delete_during_a_download_leaves_nothing(world: World) -> None:
    world.add()
    download = world.start("download", "toy")
    job = world.wait_for_job("download")
    refused = world.run("delete", "toy", check=False)
    assert refused.returncode != 0 and job["id"] in refused.stderr and "--force" in refused.stderr
    assert "Traceback" not in refused.stderr
    world.run("delete", "toy", "--force")
    _, err = download.communicate(timeout=30)
    assert download.returncode != 0 and "cancelled" in err
    left = [p.relative_to(world.data_dir).as_posix() for p in world.data_dir.rglob("*")
            if p.is_file() and not p.relative_to(world.data_dir).as_posix().startswith(
                "_pygestor/")]
    assert left == [], "nothing of the dataset is left"
    assert world.run("list").stdout.startswith("no datasets")


# ====================================================================== bounded calls
class SilentServer:
    """Accepts connections, reads the request head, and never answers (nor asks for the body
    of an ``Expect: 100-continue`` request)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.heads = 0
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self._conns.append(conn)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                data += chunk
            self.heads += 1

    def close(self) -> None:
        self.sock.close()
        for conn in self._conns:
            conn.close()


@pytest.mark.parametrize("call", ["record write", "partition upload", "read"])
def test_a_server_that_never_answers_is_given_up_within_the_bound(call: str,
                                                                  tmp_path: Path) -> None:
    from pygestor.backends.storage import Storage
    from pygestor.errors import StorageError

    server = SilentServer()
    try:
        options = {"key": S3_KEY, "secret": S3_SECRET,
                   "client_kwargs": {"endpoint_url": f"http://127.0.0.1:{server.port}"}}
        storage = Storage.for_settings(type("S", (), {
            "data_dir": "s3://silent/root", "storage_options": options, "timeout": 0.5,
            "retries": 2, "retry_backoff": 0.01})())
        local = tmp_path / "part.parquet"
        local.write_bytes(b"x" * 100_000)
        action = {"record write": lambda: storage.write_bytes(storage.path("r.json"), b"{}"),
                  "partition upload": lambda: storage.put_file(str(local),
                                                               storage.path("p.parquet")),
                  "read": lambda: storage.read_bytes(storage.path("r.json"))}[call]
        bound = storage.retries * (storage.call_bound(100_000) + 1)
        started = time.monotonic()
        with pytest.raises(StorageError, match=r"silent"):
            action()
        elapsed = time.monotonic() - started
        assert elapsed < bound, f"{call} took {elapsed:.1f}s, bound {bound:.1f}s"
        assert server.heads >= 1, "the request reached the server"
    finally:
        server.close()


# ====================================================================== fresh views
def test_a_long_lived_process_sees_what_other_processes_changed(s3_server: dict[str, Any],
                                                                toy_source: Path) -> None:
    from pygestor.config import Settings
    from pygestor.manager import Manager

    data_dir = f"s3://{s3_server['bucket']}/fresh-{uuid.uuid4().hex[:8]}"
    manager = Manager(Settings.load(env={}, data_dir=data_dir,
                                    storage_options=s3_server["options"]))
    assert manager.list_datasets() == []
    assert not manager.catalog.exists("toy")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYGESTOR_")}
    env.update(PYGESTOR_DATA_DIR=data_dir,
               PYGESTOR_STORAGE_OPTIONS=json.dumps(s3_server["options"]))
    for args in (["add", "toy", str(toy_source)], ["download", "toy/test"]):
        result = subprocess.run([PYGESTOR, *args], env=env, capture_output=True, text=True,
                                timeout=120)
        assert result.returncode == 0, result.stderr
    assert [d["name"] for d in manager.list_datasets()] == ["toy"]
    assert manager.catalog.exists("toy")
    assert manager.info("toy/test")["downloaded"] == 1
    subprocess.run([PYGESTOR, "remove", "toy/test"], env=env, check=True, capture_output=True)
    assert manager.info("toy/test")["downloaded"] == 0
    assert manager.verify("toy").clean
