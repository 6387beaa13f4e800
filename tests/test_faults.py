"""Network faults between s3fs and S3 (moto's server), injected by a real proxy on 127.0.0.1.

Sources and the storage root both live on S3 and are reached through ``tests/faultproxy.py``:
dropped connections (before and after the server applied the request), TCP resets, stalls longer
than the client time-out (before the answer and mid-body), slow bandwidth, 500/503 answers and
truncated bodies (full ``Content-Length`` announced, half sent). A download, a ``load`` and a
streaming ``PygestorDataset`` either complete with exactly the right bytes (every partition
with the rows of a clean reference download, ``verify`` clean, every row once) or fail with one
:class:`~pygestor.errors.PygestorError` that names the URL and the cause, within a time bounded by
the settings (``retries``, ``retry_backoff``, ``timeout``, kept small here), and leave nothing
partial behind. pytest-timeout bounds every test, so a hang fails instead of blocking.
"""

from __future__ import annotations

import dataclasses
import logging
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from conftest import S3_KEY, S3_SECRET
from faultproxy import FaultProxy, Rule
from sources import TEST_ROWS, TRAIN_ROWS, write_labelled_source, write_toy_source

from pygestor.errors import PygestorError

pytestmark = [pytest.mark.slow, pytest.mark.timeout(90)]
logging.getLogger("werkzeug").setLevel(logging.ERROR)

TIMEOUT = 0.5  # the client's connect/read time-out in these tests (settings.timeout)
RETRIES = 3
BACKOFF = 0.02
STALL = 4 * TIMEOUT + 1  # a stall outlasts the time-out
NAME = "toy"
PARQUET = r"/part-\d+\.parquet$"
SOURCE = r"/src-[0-9a-f]+/(train|test)/"
RECORD = r"/metadata\.json$"
LISTING = r"list-type=2"


# ====================================================================== fixtures
@pytest.fixture
def proxy(s3_server: dict[str, Any]) -> Any:
    with FaultProxy(s3_server["endpoint"]) as running:
        yield running


@pytest.fixture(scope="module")
def toy_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_toy_source(tmp_path_factory.mktemp("faults-src") / "toy")


@pytest.fixture(scope="module")
def reference(toy_files: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Content digests of a clean local download of the same files (the rows of a partition
    are deterministic; its footer says where it comes from, so the bytes differ by source)."""
    from pygestor.config import Settings
    from pygestor.manager import Manager

    manager = Manager(Settings.load(env={}, data_dir=str(tmp_path_factory.mktemp("ref")),
                                    **SIZES))
    manager.add_dataset(NAME, str(toy_files), pipeline="files")
    manager.download(NAME, progress=False)
    return {f"{s.name}/{p.name}": content_digest(manager, s.name, p.name)
            for s, p in manager.dataset(NAME).partitions}


def content_digest(manager: Any, subset: str, part: str) -> str:
    """The rows of a stored partition file (all of its row groups, checksums verified)."""
    import hashlib

    import pyarrow as pa
    import pyarrow.parquet as pq

    path = manager.partition_path(NAME, subset, part)
    with manager.storage.open(path, "rb") as handle:
        table = pq.ParquetFile(handle, page_checksum_verification=True).read()
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema.remove_metadata()) as writer:
        writer.write_table(table.replace_schema_metadata())
    return hashlib.sha256(sink.getvalue()).hexdigest()


SIZES = {"partition_size": "60KB", "row_group_size": 500}


@pytest.fixture
def source_url(s3_server: dict[str, Any], toy_files: Path,
               monkeypatch: pytest.MonkeyPatch) -> str:
    """The toy files uploaded to S3 (directly, not through the proxy)."""
    import s3fs

    fs = s3fs.S3FileSystem(**s3_server["options"], skip_instance_cache=True)
    prefix = f"{s3_server['bucket']}/src-{uuid.uuid4().hex[:10]}"
    for path in toy_files.rglob("*"):
        if path.is_file():
            fs.put_file(str(path), f"{prefix}/{path.relative_to(toy_files).as_posix()}")
    # credentials are never stored with a dataset: downloads take them from the environment
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", S3_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_SECRET)
    return f"s3://{prefix}"


def proxied_manager(proxy: FaultProxy, s3_server: dict[str, Any], **overrides: Any) -> Any:
    from pygestor.config import Settings
    from pygestor.manager import Manager

    options = {"key": S3_KEY, "secret": S3_SECRET,
               "client_kwargs": {"endpoint_url": proxy.url}}
    values = {"retries": RETRIES, "retry_backoff": BACKOFF, "timeout": TIMEOUT,
              "max_workers": 2, "allowed_hosts": ["127.0.0.1"], **SIZES, **overrides}
    settings = Settings.load(env={}, data_dir=f"s3://{s3_server['bucket']}/faults-"
                             f"{uuid.uuid4().hex[:10]}", storage_options=options, **values)
    return Manager(settings)


def register(manager: Any, proxy: FaultProxy, source_url: str) -> None:
    source_options = {"client_kwargs": {"endpoint_url": proxy.url}}
    manager.add_dataset(NAME, source_url, pipeline="files", source_options=source_options)


def assert_exact(manager: Any, reference: dict[str, str], subsets: tuple[str, ...] =
                 ("train", "test")) -> None:
    """Every partition of ``subsets`` downloaded, with the reference's rows, and nothing
    else claimed; verify clean (checksums read back through the proxy)."""
    record = manager.dataset(NAME)
    for subset, part in record.partitions:
        key = f"{subset.name}/{part.name}"
        if subset.name in subsets:
            assert part.downloaded, key
            assert content_digest(manager, subset.name, part.name) == reference[key], \
                f"{key} differs from the reference"
        else:
            assert not part.downloaded
    report = manager.verify(NAME)
    assert report.clean, report.problems


def assert_nothing_partial(manager: Any, reference: dict[str, str]) -> None:
    """After a failed download: every file under a final name is a complete partition, and
    the record claims only those."""
    storage = manager.storage
    storage.fs.invalidate_cache()
    record = manager.dataset(NAME)
    for subset, part in record.partitions:
        path = manager.partition_path(NAME, subset.name, part.name)
        key = f"{subset.name}/{part.name}"
        if storage.exists(path):
            assert content_digest(manager, subset.name, part.name) == reference[key], \
                f"{key} is visible but not complete"
        if part.downloaded:
            assert storage.exists(path), f"{key} is recorded but missing"
    problems = manager.verify(NAME).problems  # at most complete files to adopt
    assert all(p.endswith("complete file not in the catalog") for p in problems), problems


def load_all(manager: Any) -> Any:
    from pygestor.loaders.arrow import load

    frame = load(manager, NAME, columns=["id"])
    assert sorted(frame["id"]) == sorted(list(range(TRAIN_ROWS)) +
                                         [100000 + i for i in range(TEST_ROWS)])
    return frame


# ====================================================================== transient faults
TRANSIENT = {
    "drop": {"fault": "drop"},
    "drop-after-the-server-applied-it": {"fault": "drop", "forward": True},
    "reset": {"fault": "reset"},
    "503": {"fault": "status", "status": 503},  # (500: see the persistent upload-500 case)
    "stall": {"fault": "stall", "seconds": STALL},
    "stall-mid-body": {"fault": "stall", "seconds": STALL, "fraction": 0.5},
    "truncate": {"fault": "truncate", "fraction": 0.5},
}


@pytest.mark.parametrize("kind", list(TRANSIENT))
def test_transient_faults_on_every_kind_of_request_are_survived(kind, proxy, s3_server,
                                                                 source_url, reference):
    """The first one or two requests of each kind fail: source reads, partition uploads,
    record reads and writes, listings; then partition reads by ``load``. All complete."""
    manager = proxied_manager(proxy, s3_server)
    register(manager, proxy, source_url)
    fault = TRANSIENT[kind]
    rules = proxy.add(
        Rule(method="GET", path=SOURCE, times=1, **fault),
        Rule(method="PUT", path=PARQUET, times=1, **fault),
        Rule(method="GET", path=RECORD, times=1, **fault),
        Rule(method="PUT", path=RECORD, times=1, **fault),
        Rule(method="GET", path=LISTING, times=1, **fault),
    )
    report = manager.download(NAME, progress=False)
    assert not report.failed and len(report.fetched) == len(reference)
    for rule in rules:  # every fault really happened
        assert rule.applied == rule.times, (rule, [r.target for r in proxy.faults()])
    proxy.clear()
    assert_exact(manager, reference)

    # two failures in a row on one read: within the 3 attempts
    reads = proxy.add(Rule(method="GET", path=PARQUET, times=RETRIES - 1, **fault))[0]
    load_all(manager)
    assert reads.applied == RETRIES - 1


def test_slow_bandwidth_completes(proxy, s3_server, source_url, reference):
    """Answers trickling in at 200 KB/s (each read well inside the time-out) are not a fault."""
    manager = proxied_manager(proxy, s3_server)
    register(manager, proxy, source_url)
    slow = proxy.add(Rule("slow", path=SOURCE, times=None, rate=200_000),
                     Rule("slow", path=PARQUET, times=None, rate=200_000))
    started = time.monotonic()
    manager.download(NAME, progress=False)
    load_all(manager)
    assert all(rule.applied > 0 for rule in slow)
    assert time.monotonic() - started > 0.5, "the proxy did not slow anything down"
    proxy.clear()
    assert_exact(manager, reference)


def test_faults_mid_transfer_never_leave_a_short_partition(proxy, s3_server, source_url,
                                                           reference):
    """Mixed faults on a third of all requests, at random (seeded): whatever gets through is
    exact, whatever fails is reported, and a second run completes the job."""
    import random

    manager = proxied_manager(proxy, s3_server, retries=2)
    register(manager, proxy, source_url)
    rng = random.Random(7)
    kinds = ["drop", "truncate", "status", "reset"]
    rules = [Rule(rng.choice(kinds), path=rf"{SOURCE}|{PARQUET}|{RECORD}", times=1,
                  skip=rng.randrange(0, 40), status=rng.choice([500, 503])) for _ in range(12)]
    proxy.add(*rules)
    try:
        manager.download(NAME, progress=False)
    except PygestorError as exc:
        assert "s3://" in str(exc)
    assert any(rule.applied for rule in rules)
    assert_nothing_partial(manager, reference)
    proxy.clear()
    report = manager.download(NAME, progress=False)
    assert not report.failed
    assert_exact(manager, reference)
    load_all(manager)


# ====================================================================== persistent faults
PERSISTENT = [
    # (what fails, the rule's arguments, words expected in the error besides the URL)
    ("source-503", {"fault": "status", "method": "GET", "path": SOURCE, "status": 503},
     ("503", "ServiceUnavailable")),
    ("source-stall", {"fault": "stall", "method": "GET", "path": SOURCE, "seconds": STALL},
     ("timeout",)),
    ("source-truncated", {"fault": "truncate", "method": "GET", "path": SOURCE},
     ("payload", "content length")),
    ("upload-drop", {"fault": "drop", "method": "PUT", "path": PARQUET}, ("connection",)),
    ("upload-500", {"fault": "status", "method": "PUT", "path": PARQUET, "status": 500},
     ("500", "InternalError")),
]


@pytest.mark.parametrize("case", PERSISTENT, ids=[c[0] for c in PERSISTENT])
def test_persistent_faults_fail_clearly_in_bounded_time(case, proxy, s3_server, source_url,
                                                        reference):
    """A fault that does not go away: one PygestorError naming the URL and the cause, after a
    bounded number of attempts; nothing partial stays; the next run (fault gone) completes."""
    _, arguments, words = case
    rule = Rule(times=None, **arguments)
    retries = 2
    manager = proxied_manager(proxy, s3_server, retries=retries, max_workers=2)
    register(manager, proxy, source_url)
    proxy.add(rule)
    started = time.monotonic()
    with pytest.raises(PygestorError) as caught:
        manager.download(f"{NAME}/test", progress=False)  # one partition
    elapsed = time.monotonic() - started
    message = str(caught.value)
    url = "s3://" + s3_server["bucket"] + "/"
    assert url in message, message
    assert any(word.lower() in message.lower() for word in words), message
    assert "failed after" in message, message
    # attempts: Pygestor's `retries` per operation x botocore's `retries` per request
    assert rule.applied <= retries * retries * 2, rule
    per_attempt = STALL if rule.fault == "stall" else 0.5
    bound = retries * retries * (min(per_attempt, 2 * TIMEOUT) + 2.0) + 5
    assert elapsed < bound, f"{elapsed:.1f}s > {bound:.1f}s"
    proxy.clear()
    assert_nothing_partial(manager, reference)
    report = manager.download(f"{NAME}/test", progress=False)
    assert report.fetched == ["test/part-00000.parquet"]
    assert_exact(manager, reference, subsets=("test",))


def test_record_writes_failing_leave_placed_files_to_adopt(proxy, s3_server, source_url,
                                                          reference):
    """metadata.json cannot be written (503 on every PUT): the download fails naming the
    record's URL; the partitions already placed are complete, claimed by no record, and the
    next run adopts them instead of fetching them again."""
    manager = proxied_manager(proxy, s3_server, retries=2)
    register(manager, proxy, source_url)
    rule = proxy.add(Rule("status", method="PUT", path=RECORD, times=None, status=503))[0]
    with pytest.raises(PygestorError) as caught:
        manager.download(NAME, progress=False)
    assert manager.storage.url_of(manager.catalog.record_path(NAME)) in str(caught.value)
    assert rule.applied >= 2
    proxy.clear()
    assert_nothing_partial(manager, reference)
    assert not any(p.downloaded for _, p in manager.dataset(NAME).partitions)
    report = manager.download(NAME, progress=False)
    assert report.fetched == [] and sorted(report.adopted) == sorted(reference)
    assert_exact(manager, reference)


def test_load_with_a_persistent_fault_is_a_clear_error(proxy, s3_server, source_url,
                                                       reference):
    manager = proxied_manager(proxy, s3_server, retries=2)
    register(manager, proxy, source_url)
    manager.download(f"{NAME}/test", progress=False)
    for rule in (Rule("truncate", method="GET", path=PARQUET, times=None),
                 Rule("stall", method="GET", path=PARQUET, times=None, seconds=STALL)):
        proxy.clear()
        proxy.add(rule)
        started = time.monotonic()
        with pytest.raises(PygestorError) as caught:
            from pygestor.loaders.arrow import load

            load(manager, f"{NAME}/test")
        message = str(caught.value)
        assert manager.storage.url_of(manager.partition_path(NAME, "test",
                                                             "part-00000.parquet")) in message
        assert "failed after 2 attempts" in message
        assert time.monotonic() - started < 20
    proxy.clear()
    assert_exact(manager, reference, subsets=("test",))


@pytest.mark.parametrize("retries", [1, 3])
def test_attempts_and_backoff_follow_the_settings(retries, proxy, s3_server):
    """A 503 that never heals: exactly `retries` operation attempts of (at most) 2 requests
    each, with the configured back-off between them; then one StorageError."""
    manager = proxied_manager(proxy, s3_server, retries=retries, retry_backoff=0.2)
    storage = manager.storage
    storage.write_bytes(storage.path("probe.txt"), b"hello")
    rule = proxy.add(Rule("status", method="GET", path=r"/probe\.txt$", times=None))[0]
    started = time.monotonic()
    with pytest.raises(PygestorError, match=rf"failed after {retries} attempt.*503") as caught:
        storage.read_bytes(storage.path("probe.txt"))
    elapsed = time.monotonic() - started
    assert "s3://" in str(caught.value) and "probe.txt" in str(caught.value)
    assert rule.applied == retries * min(2, retries)
    backoff = sum(0.2 * 2 ** n for n in range(retries - 1))  # 0.2, 0.4, ... plus jitter
    assert backoff <= elapsed < backoff + 0.2 * (retries - 1) + 2 * retries + 1


def test_timeouts_come_from_the_settings(proxy, s3_server):
    """A stall is cut after settings.timeout, not after the client library's default."""
    manager = proxied_manager(proxy, s3_server, retries=1, timeout=0.3)
    storage = manager.storage
    storage.write_bytes(storage.path("probe.txt"), b"hello")
    proxy.add(Rule("stall", method="GET", path=r"/probe\.txt$", times=None, seconds=10))
    started = time.monotonic()
    with pytest.raises(PygestorError, match=r"probe\.txt.*(?i:timeout)"):
        storage.read_bytes(storage.path("probe.txt"))
    assert time.monotonic() - started < 3
    config = storage.fs.config_kwargs
    assert config["read_timeout"] == config["connect_timeout"] == 0.3
    # what the user sets explicitly wins
    from pygestor.backends.storage import network_options

    mine = network_options("s3", {"config_kwargs": {"read_timeout": 7}}, 0.3, 2)
    assert mine["config_kwargs"]["read_timeout"] == 7
    assert mine["config_kwargs"]["connect_timeout"] == 0.3


# ====================================================================== GCS
def test_gcs_transient_faults_are_survived(gcs_server, toy_files, reference):
    """The same machinery between gcsfs and the GCS emulator: uploads dropped, record reads
    answered 503, partition reads truncated and stalled; the timeout comes from the settings."""
    from pygestor.config import Settings
    from pygestor.loaders.arrow import load
    from pygestor.manager import Manager

    with FaultProxy(gcs_server["endpoint"]) as proxy:
        options = {**gcs_server["options"], "endpoint_url": proxy.url}
        manager = Manager(Settings.load(
            env={}, data_dir=f"gs://{gcs_server['bucket']}/faults-{uuid.uuid4().hex[:10]}",
            storage_options=options, retries=RETRIES, retry_backoff=BACKOFF, timeout=TIMEOUT,
            max_workers=2, **SIZES))
        assert manager.storage.fs.requests_timeout.sock_read == TIMEOUT
        manager.add_dataset(NAME, str(toy_files), pipeline="files")
        rules = proxy.add(
            Rule("drop", method="POST", path=r"^/upload/", times=2),
            Rule("status", method="GET", path=r"metadata\.json", times=1, status=503),
            Rule("truncate", method="GET", path=r"part-\d+\.parquet\?alt=media", times=1),
            Rule("stall", method="GET", path=r"part-\d+\.parquet\?alt=media", times=1,
                 seconds=STALL),
        )
        report = manager.download(NAME, progress=False)
        frame = load(manager, NAME, columns=["id"])
        assert not report.failed and len(frame) == TRAIN_ROWS + TEST_ROWS
        assert all(rule.applied == rule.times for rule in rules), rules
        proxy.clear()
        record = manager.dataset(NAME)
        assert {f"{s.name}/{p.name}": content_digest(manager, s.name, p.name)
                for s, p in record.partitions} == reference
        assert manager.verify(NAME).clean


# ====================================================================== streaming
@pytest.mark.parametrize("workers", [0, 2])
def test_streaming_dataset_survives_faults_mid_epoch(workers, proxy, s3_server, source_url,
                                                     reference):
    """Faults start after the epoch began (the first reads go through): every sample once,
    in the main process and in DataLoader workers (which make their own clients)."""
    from torch.utils.data import DataLoader

    from pygestor import PygestorDataset

    manager = proxied_manager(proxy, s3_server)
    register(manager, proxy, source_url)
    manager.download(NAME, progress=False)
    dataset = PygestorDataset(NAME, columns=["id"], batch_size=100, manager=manager,
                              shuffle=True, seed=3)
    rules = proxy.add(
        Rule("drop", method="GET", path=PARQUET, skip=2, times=1),
        Rule("truncate", method="GET", path=PARQUET, skip=4, times=2),
        Rule("status", method="GET", path=PARQUET, skip=6, times=1, status=503),
        Rule("stall", method="GET", path=PARQUET, skip=8, times=1, seconds=STALL),
    )
    seen: list[int] = []
    for epoch in range(2):
        dataset.set_epoch(epoch)
        loader = DataLoader(dataset, batch_size=None, num_workers=workers)
        ids = [int(i) for batch in loader for i in batch["id"]]
        assert sorted(ids) == sorted(list(range(TRAIN_ROWS)) +
                                     [100000 + i for i in range(TEST_ROWS)]), \
            "every sample exactly once per epoch"
        seen.append(len(ids))
    assert all(rule.applied == rule.times for rule in rules), rules


# ====================================================================== lost answers
def store_behind(proxy: FaultProxy, store: str, server: dict[str, Any], name: str) -> Any:
    """A manager whose ``data_dir`` is on ``store`` (``s3`` or ``gcs``), reached through
    ``proxy``, with this module's retries and time-out."""
    from pygestor.config import Settings
    from pygestor.manager import Manager

    if store == "s3":
        options = {**server["options"], "client_kwargs": {"endpoint_url": proxy.url}}
    else:
        options = {**server["options"], "endpoint_url": proxy.url}
    scheme = "s3" if store == "s3" else "gs"
    return Manager(Settings.load(
        env={}, data_dir=f"{scheme}://{server['bucket']}/{name}-{uuid.uuid4().hex[:10]}",
        storage_options=options, retries=RETRIES, retry_backoff=BACKOFF, timeout=TIMEOUT,
        **SIZES))


@pytest.mark.parametrize("store", ["s3", "gcs"])
def test_a_conditional_write_whose_answer_was_lost_is_not_a_lost_race(
        store, request, toy_files, reference):
    """The store applies a compare-and-swap write of the record and the answer never comes
    back (the connection drops after the server applied it). The retry then finds the record
    already there, or at another version: it is this writer's own write, not another writer's,
    so ``add`` and ``download`` complete. A real second create of the name is still refused."""
    from pygestor.errors import AlreadyExistsError

    server = request.getfixturevalue("s3_server" if store == "s3" else "fake_gcs")
    upstream = server.get("endpoint") or server["options"]["endpoint_url"]
    writes = {"method": "PUT", "path": RECORD} if store == "s3" else \
        {"method": "POST", "path": r"^/upload/.*ifGenerationMatch="}
    with FaultProxy(upstream) as proxy:
        manager = store_behind(proxy, store, server, "lost")
        assert manager.storage.compare_and_swap(), "the store must honour write conditions"
        created = proxy.add(Rule("drop", forward=True, times=1, **writes))[0]
        manager.add_dataset(NAME, str(toy_files), pipeline="files")
        assert created.applied == 1
        updated = proxy.add(Rule("drop", forward=True, times=2, **writes))[0]
        report = manager.download(NAME, progress=False)
        assert updated.applied == 2 and not report.failed
        proxy.clear()
        record = manager.dataset(NAME)
        assert {f"{s.name}/{p.name}": content_digest(manager, s.name, p.name)
                for s, p in record.partitions} == reference
        assert manager.verify(NAME).clean
        another = dataclasses.replace(record, uid=uuid.uuid4().hex)  # another add, same name
        with pytest.raises(AlreadyExistsError):
            manager.catalog.create(another)


@pytest.mark.parametrize("store", ["s3", "gcs"])
def test_a_move_whose_delete_answer_was_lost_completes(store, request, tmp_path):
    """Setting a foreign file aside is copy then delete; the store applies the delete and the
    answer is lost, so the retry finds nothing to delete (S3 answers that with success, GCS
    with 404). The move is done, not an error."""
    from pygestor.loaders.arrow import load

    server = request.getfixturevalue("s3_server" if store == "s3" else "gcs_server")
    with FaultProxy(server["endpoint"]) as proxy:
        manager = store_behind(proxy, store, server, "moved")
        manager.add_dataset("x", str(write_labelled_source(tmp_path / "old", "old")))
        manager.download("x", progress=False)
        manager.delete_dataset("x", data=False)
        manager.add_dataset("x", str(write_labelled_source(tmp_path / "new", "new")))
        lost = proxy.add(Rule("drop", method="DELETE", path=r"part-\d+\.parquet",
                              forward=True, times=1))[0]
        report = manager.download("x", progress=False)
        assert lost.applied == 1
        assert not report.failed and report.set_aside, report
        proxy.clear()
        assert set(load(manager, "x")["label"]) == {"new"}
        aside = [p for p in manager.storage.find(manager.storage.path("x", "_pygestor"))
                 if p.endswith(".parquet")]
        assert len(aside) == len(report.set_aside), "set aside, never deleted"
