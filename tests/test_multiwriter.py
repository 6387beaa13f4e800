"""Many machines, one bucket: no lost record update.

Two "machines" are two families of processes that share nothing on local disk (each its own
``TMPDIR`` and ``HOME``, so no lock of one is seen by the other), each running the real
``pygestor`` command against one bucket, downloading and removing disjoint partitions of one
subset at the same time. Afterwards the record says exactly what the bucket holds. On S3 (moto's
server, which enforces ``IfMatch``/``IfNoneMatch``) and on GCS (fake-gcs-server, which enforces
``ifGenerationMatch``; the gcp-storage-emulator enforces no precondition).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

PYGESTOR = str(Path(sys.executable).parent / "pygestor")
ROUNDS = 2


#: one machine: lanes of the real command in parallel, each on its own partitions, in rounds of
#: download, remove, download (so its record updates keep racing the other machine's)
FAMILY = textwrap.dedent("""
    import subprocess, sys, threading
    pygestor, parts, rounds = sys.argv[1], sys.argv[2].split(","), int(sys.argv[3])
    failures = []
    def run(*args):
        result = subprocess.run([pygestor, *args], capture_output=True, text=True)
        if result.returncode:
            failures.append(f"{args}: {result.stderr}")
    def lane(part):
        for _ in range(rounds):
            run("download", "toy/train", "-p", part)
            run("remove", "toy/train", "-p", part)
        run("download", "toy/train", "-p", part)
    threads = [threading.Thread(target=lane, args=(p,)) for p in parts]
    for t in threads: t.start()
    for t in threads: t.join()
    sys.exit("; ".join(failures) or None)
""")


def _run_families(data_dir: str, options: dict[str, Any], tmp_path: Path,
                  parts: list[str]) -> None:
    halves = [parts[0::2], parts[1::2]]
    procs = []
    for index, mine in enumerate(halves):
        home = tmp_path / f"machine-{index}"
        (home / "tmp").mkdir(parents=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PYGESTOR_")}
        env.update(HOME=str(home), TMPDIR=str(home / "tmp"), PYGESTOR_DATA_DIR=data_dir,
                   PYGESTOR_STORAGE_OPTIONS=json.dumps(options), PYGESTOR_RETRY_BACKOFF="0.05")
        procs.append(subprocess.Popen([sys.executable, "-c", FAMILY, PYGESTOR, ",".join(mine),
                                       str(ROUNDS)], env=env, stderr=subprocess.PIPE, text=True))
    for proc in procs:
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err


def _check_record_matches_bucket(manager: Any, parts: list[str]) -> None:
    record = manager.dataset("toy").subsets["train"]
    stored = {p.rsplit("/", 1)[-1] for p in manager.storage.find(
        manager.storage.path("toy", "train")) if p.endswith(".parquet")}
    claimed = {p.name for p in record.partitions if p.downloaded}
    assert claimed == stored == set(parts), (sorted(claimed), sorted(stored))
    assert manager.verify("toy/train").clean


@pytest.mark.slow
@pytest.mark.parametrize("store", ["s3", "gcs"])
def test_two_machines_on_one_bucket_lose_no_update(store: str, request: pytest.FixtureRequest,
                                                   toy_source: Path, tmp_path: Path) -> None:
    import uuid

    from pygestor.config import Settings
    from pygestor.manager import Manager

    server = request.getfixturevalue("s3_server" if store == "s3" else "fake_gcs")
    scheme = "s3" if store == "s3" else "gs"
    data_dir = f"{scheme}://{server['bucket']}/multi-{uuid.uuid4().hex[:8]}"
    manager = Manager(Settings.load(env={}, data_dir=data_dir,
                                    storage_options=server["options"]))
    manager.add_dataset("toy", str(toy_source), partition_size="12KB")
    parts = [p.name for p in manager.dataset("toy").subsets["train"].partitions]
    assert len(parts) >= 8
    assert manager.storage.compare_and_swap(), "the server enforces write conditions"
    _run_families(data_dir, server["options"], tmp_path, parts)
    _check_record_matches_bucket(manager, parts)
