"""Several processes downloading, removing and listing one dataset at once lose nothing.

Each worker process owns a disjoint set of partitions and runs a sequence of downloads and
removes on them, one partition per call (so read-modify-write cycles of the record interleave as
much as possible), and reports the state it left each partition in. A lister process reads the
record and the listings meanwhile and checks every read is whole. At the end the record must
match every report exactly, the files must match the record, and verify must be clean.
"""

from __future__ import annotations

import multiprocessing as mp
from typing import Any

import pytest

WORKERS = 4


def _worker(settings: Any, owned: list[str], seed: int, out: Any) -> None:
    import random

    from pygestor.manager import Manager

    manager = Manager(settings)
    rng = random.Random(seed)
    state: dict[str, bool] = {}
    for _ in range(3):
        for name in owned:
            if rng.random() < 0.6:
                manager.download("toy/train", partitions=[name], progress=False, max_workers=1)
                state[name] = True
            else:
                manager.remove("toy/train", partitions=[name])
                state[name] = False
    out.put(state)


def _lister(settings: Any, stop: Any, out: Any) -> None:
    from pygestor.manager import Manager

    manager = Manager(settings)
    reads = 0
    errors = []
    while not stop.is_set():
        try:
            summary = manager.list_datasets()
            info = manager.info("toy/train")
            assert summary[0]["name"] == "toy"
            assert 0 <= info["downloaded"] <= info["partitions"]
            reads += 1
        except Exception as exc:  # a torn read would land here
            errors.append(f"{type(exc).__name__}: {exc}")
    out.put((reads, errors))


@pytest.mark.slow
@pytest.mark.parametrize("storage_kind", ["local", "s3"])
def test_processes_downloading_removing_and_listing(manager, toy_source):
    record = manager.add_dataset("toy", str(toy_source), pipeline="files",
                                 partition_size="12KB")
    names = [p.name for p in record.subsets["train"].partitions]
    assert len(names) >= 8
    ctx = mp.get_context("spawn")
    results, listed, stop = ctx.Queue(), ctx.Queue(), ctx.Event()
    lister = ctx.Process(target=_lister, args=(manager.settings, stop, listed))
    lister.start()
    workers = [ctx.Process(target=_worker, args=(manager.settings, names[k::WORKERS], k, results))
               for k in range(WORKERS)]
    for proc in workers:
        proc.start()
    reported: dict[str, bool] = {}
    for _ in workers:
        reported.update(results.get(timeout=300))
    for proc in workers:
        proc.join(60)
        assert proc.exitcode == 0
    stop.set()
    reads, errors = listed.get(timeout=60)
    lister.join(60)
    assert errors == [] and reads > 0

    final = manager.dataset("toy").subsets["train"]
    assert {p.name: p.downloaded for p in final.partitions} == \
        {name: reported.get(name, False) for name in names}
    for part in final.partitions:
        path = manager.partition_path("toy", "train", part.name)
        assert manager.storage.exists(path) == part.downloaded
    assert manager.verify("toy/train").clean


def _hammer(settings: Any, name: str, action: str, rounds: int) -> None:
    from pygestor.manager import Manager

    manager = Manager(settings)
    for _ in range(rounds):
        if action == "download":
            manager.download("toy/train", partitions=[name], force=True, progress=False)
        else:
            manager.remove("toy/train", partitions=[name])


@pytest.mark.slow
@pytest.mark.parametrize("storage_kind", ["local", "s3"])
def test_download_and_remove_of_one_partition_race_safely(manager, toy_source):
    """Whoever wins, the record says "downloaded" exactly when the file is there."""
    manager.add_dataset("toy", str(toy_source), pipeline="files", partition_size="12KB")
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_hammer, args=(manager.settings, "part-00001.parquet", action,
                                               12))
             for action in ("download", "remove", "download")]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(300)
        assert proc.exitcode == 0
    part = manager.dataset("toy").subsets["train"].partition("part-00001.parquet")
    path = manager.partition_path("toy", "train", "part-00001.parquet")
    exists = manager.storage.exists(path)
    assert exists or not part.downloaded, "the record claims a file that is gone"
    # a file left unrecorded is complete and adoptable: verify --repair takes it in
    manager.verify("toy/train", repair=True)
    assert manager.verify("toy/train").clean
