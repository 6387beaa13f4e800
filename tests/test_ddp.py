"""DDP: real processes (gloo on CPU), 2 and 3 ranks x 0, 1 and 2 DataLoader workers, uneven
partitions. Every rank is a new Python process started by the test (this file run as a script);
the process group is made with ``init_method="tcp://..."`` and NO ``RANK``/``WORLD_SIZE`` in the
environment (what ``mp.spawn`` jobs look like), and every dataset is built BEFORE
``init_process_group``: the rank must reach the workers from the main process (forked workers
inherit it; ``forkserver``/``spawn`` workers, where ``torch.distributed`` is not initialized,
get it with the pickled dataset).
Each batch is followed by an ``all_reduce``, as DDP's gradient sync would be, so unequal batch
counts fail (gloo time-out) instead of passing unnoticed.

A second test runs ``examples/train_ddp.py`` under ``torchrun --nproc_per_node=2``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from test_loaders import (  # noqa: E402
    MIX,
    TOTAL,
    build,
    ids_of,
    make_manager,
    source_of,
    write_mix_sources,
    write_source,
)

WORKERS = (0, 1, 2)
CONFIGS = {
    # rows batched by the loader, shuffled, padded ranks (drop_last=False)
    "rows": {"kind": "rows", "shuffle": True, "drop_last": False, "batch": 32},
    # ready batches from the dataset, catalog order, dropped remainder, plain DataLoader
    "batches": {"kind": "batches", "shuffle": False, "drop_last": True, "batch": 50},
    # filters (counted per row group), shuffled, plain DataLoader over rows + set_epoch
    "filtered": {"kind": "filtered", "shuffle": True, "drop_last": True, "batch": 16},
}
MATCHING = [i for i in range(TOTAL) if i % 10 in (1, 2, 3)]
MIX_PER_EPOCH = 2400


def _clean_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
    return env


def _run_ranks(world: int, data_dir: str, out: Path) -> list[dict[str, Any]]:
    from conftest import free_port

    port = free_port()
    procs = [subprocess.Popen([sys.executable, __file__, "rank", str(rank), str(world),
                               str(port), data_dir, str(out / f"rank{rank}.json")],
                              env=_clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
             for rank in range(world)]
    logs = []
    try:
        for proc in procs:
            stdout, _ = proc.communicate(timeout=150)
            logs.append(stdout.decode(errors="replace"))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
    for proc, log in zip(procs, logs, strict=True):
        assert proc.returncode == 0, log[-4000:]
    return [json.loads((out / f"rank{rank}.json").read_text()) for rank in range(world)]


@pytest.mark.slow
@pytest.mark.parametrize("world", [2, 3])
def test_ddp_exactly_once_and_equal_per_rank(tmp_path, world):
    manager = build(make_manager(str(tmp_path / "data")), write_source(tmp_path / "src"))
    for name, source in write_mix_sources(tmp_path / "mix-src").items():
        build(make_manager(str(tmp_path / "data"), row_group_size=250), source, name=name)
    sizes = [p.num_rows for p in manager.dataset("toy").subsets["train"].partitions]
    assert len(set(sizes)) > 1, "uneven partitions"
    results = _run_ranks(world, str(tmp_path / "data"), tmp_path)

    for name, config in CONFIGS.items():
        universe = MATCHING if config["kind"] == "filtered" else list(range(TOTAL))
        total = len(universe)
        per_rank_n = total // world if config["drop_last"] else -(-total // world)
        for workers in WORKERS:
            key = f"{name}/{workers}"
            ranks = [r[key] for r in results]
            lengths = [len(r["ids"]) for r in ranks]
            assert lengths == [per_rank_n] * world, (key, lengths)
            assert len({r["batches"] for r in ranks}) == 1, key
            assert all(r["batches"] == r["len"] for r in ranks), (key, ranks[0]["len"])
            counts = Counter(i for r in ranks for i in r["ids"])
            if config["drop_last"]:
                assert all(c == 1 for c in counts.values()), key
                assert set(counts) <= set(universe) and len(counts) == world * per_rank_n
            else:
                assert set(counts) == set(universe), key
                assert sum(counts.values()) - total == world * per_rank_n - total
            # the worker count never changes which samples a rank gets
            for rank in range(world):
                assert sorted(ranks[rank]["ids"]) == \
                    sorted(results[rank][f"{name}/0"]["ids"]), (key, rank)
        # the three worker counts agree, and the dropped remainder is the same
        assert all(r[f"{name}/0"]["ids"] for r in results)

    # a weighted mix: every rank the same samples, in the mix's proportions, exactly
    for workers in WORKERS:
        ranks = [r[f"mix/{workers}"] for r in results]
        assert [len(r["ids"]) for r in ranks] == [MIX_PER_EPOCH // world] * world
        assert len({r["batches"] for r in ranks}) == 1 and ranks[0]["batches"] == ranks[0]["len"]
        for r in ranks:
            counts = Counter(map(source_of, r["ids"]))
            per_rank = MIX_PER_EPOCH // world
            assert abs(counts["web"] - 0.7 * per_rank) <= 1, counts
            assert abs(counts["books"] - 0.1 * per_rank) <= 1, counts
        books = Counter(i for r in ranks for i in r["ids"] if source_of(i) == "books")
        assert max(books.values()) - min(books.values()) <= 1 and len(books) == 200

    # resume: rank 0's state, saved after k batches, continues every rank
    for workers in WORKERS:
        key = f"resume/{workers}"
        for rank, result in enumerate(results):
            done = result[key]["first"] + result[key]["rest"]
            assert sorted(done) == sorted(result[f"rows/{workers}"]["ids"]), (key, rank)
            assert result[key]["first"] + result[key]["rest"] == \
                result[f"rows/{workers}"]["ids"], "same workers: the exact order"


@pytest.mark.slow
def test_torchrun_example_trains_on_two_ranks(tmp_path):
    from sources import write_toy_source

    manager = make_manager(str(tmp_path / "data"), partition_size="60KB", row_group_size=250)
    manager.add_dataset("toy", str(write_toy_source(tmp_path / "toy-src")), pipeline="files")
    manager.download("toy/train", progress=False)
    state = tmp_path / "state.json"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
               "--master_addr=127.0.0.1", "--master_port", str(_port()),
               str(ROOT / "examples" / "train_ddp.py"), "toy/train",
               "--data-dir", str(tmp_path / "data"), "--num-workers", "1",
               "--batch-size", "64", "--save-state", str(state)]
    proc = subprocess.run(command, env=_clean_env(), capture_output=True, text=True,
                          timeout=170)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "rank 0/2" in proc.stdout and "rank 1/2" in proc.stdout
    assert "samples/s" in proc.stdout and "loss" in proc.stdout
    saved = json.loads(state.read_text())
    assert saved["world_size"] == 2 and saved["samples_consumed"] == 1500


def _port() -> int:
    from conftest import free_port

    return free_port()


# ============================================================================================
# One rank (run as: python tests/test_ddp.py rank RANK WORLD PORT DATA_DIR OUT)


def _rank_main(rank: int, world: int, port: int, data_dir: str, out: str) -> None:
    from datetime import timedelta

    import torch
    import torch.distributed as dist
    from torch.utils.data import DataLoader

    from pygestor import PygestorDataLoader, PygestorDataset

    assert "RANK" not in os.environ and "WORLD_SIZE" not in os.environ
    manager = make_manager(data_dir)
    common = {"manager": manager, "seed": 5, "shuffle_buffer": 64}

    def make() -> dict[str, PygestorDataset]:
        return {
            "rows": PygestorDataset("toy/train", columns=["id", "x"], shuffle=True,
                                    drop_last=False, **common),
            "batches": PygestorDataset("toy/train", columns=["id", "label"], batch_size=50,
                                       drop_last=True, **common),
            "filtered": PygestorDataset("toy/train", columns=["id"], shuffle=True,
                                        drop_last=True, filters=[("label", "in", [1, 2, 3])],
                                        loader_batch_size=16, **common),
        }

    # fresh datasets for every worker count, all made before the process group exists
    per_workers = {workers: make() for workers in WORKERS}
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                            world_size=world, timeout=timedelta(seconds=60))
    results: dict[str, Any] = {}

    def drain(loader: Any, limit: int | None = None) -> tuple[list[int], int]:
        ids, batches = [], 0
        iterator = iter(loader)
        for batch in iterator:
            ids += ids_of([batch])
            batches += 1
            flag = torch.ones(1)
            dist.all_reduce(flag)  # DDP's sync: unequal batch counts would stall here
            assert int(flag.item()) == world
            if limit is not None and batches == limit:
                break
        return ids, batches

    mixes = {workers: PygestorDataset(MIX, columns=["id"], batch_size=40, shuffle=True,
                                      samples_per_epoch=MIX_PER_EPOCH, **common)
             for workers in WORKERS}
    for workers in WORKERS:
        loader = PygestorDataLoader(mixes[workers], num_workers=workers)
        ids, count = drain(loader)
        results[f"mix/{workers}"] = {"ids": ids, "batches": count, "len": len(loader)}

    for workers in WORKERS:
        datasets = per_workers[workers]
        ds = datasets["rows"]
        ds.set_epoch(1)
        loader = PygestorDataLoader(ds, batch_size=32, num_workers=workers)
        ids, count = drain(loader)
        results[f"rows/{workers}"] = {"ids": ids, "batches": count, "len": len(loader)}

        ds = datasets["batches"]
        # forkserver (Python 3.14's default): workers are not forked, torch.distributed is not
        # initialized in them, and nothing else was called on this dataset: the rank travels
        # with the pickled dataset
        context = "forkserver" if workers == 2 else None
        loader = DataLoader(ds, batch_size=None, num_workers=workers,
                            multiprocessing_context=context)
        ids, count = drain(loader)
        results[f"batches/{workers}"] = {"ids": ids, "batches": count, "len": len(loader)}

        ds = datasets["filtered"]
        ds.set_epoch(2)  # captures the rank for the workers of a plain DataLoader
        loader = DataLoader(ds, batch_size=16, num_workers=workers)
        ids, count = drain(loader)
        results[f"filtered/{workers}"] = {"ids": ids, "batches": count, "len": len(loader)}

        # resume from rank 0's state on every rank
        ds = PygestorDataset("toy/train", columns=["id", "x"], shuffle=True, **common)
        ds.set_epoch(1)
        loader = PygestorDataLoader(ds, batch_size=32, num_workers=workers)
        first, _ = drain(loader, limit=9)
        state = [loader.state_dict() if rank == 0 else None]
        dist.broadcast_object_list(state, src=0)
        again = PygestorDataset("toy/train", columns=["id", "x"], shuffle=True, **common)
        resumed = PygestorDataLoader(again, batch_size=32, num_workers=workers)
        resumed.load_state_dict(state[0])
        rest, _ = drain(resumed)
        results[f"resume/{workers}"] = {"first": first, "rest": rest}

    Path(out).write_text(json.dumps(results))
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "rank":
    _rank_main(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6])
