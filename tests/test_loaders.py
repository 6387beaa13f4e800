"""Loaders: iter_batches, PygestorDataset, PygestorDataLoader, the partition cache, streaming
from S3 and GCS. Data is built through the real API (add_dataset + download) from small parquet
sources with uneven file sizes and row groups of 100 rows.

Multi-process DDP runs live in test_ddp.py, resume in a new process in test_resume.py; both use
the helpers at the top of this file.
"""

from __future__ import annotations

import itertools
import json
import os
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

SOURCE_SIZES = (1234, 517, 2049)
TOTAL = sum(SOURCE_SIZES)


# ============================================================================================
# Helpers shared with test_ddp.py and test_resume.py


def write_source(root: Path, sizes: tuple[int, ...] = SOURCE_SIZES, scale: float = 0.5) -> Path:
    """Parquet source files of uneven sizes; row ``i`` has id ``i``, x ``i * scale``,
    label ``i % 10``."""
    (root / "train").mkdir(parents=True, exist_ok=True)
    start = 0
    for index, count in enumerate(sizes):
        ids = np.arange(start, start + count, dtype=np.int64)
        table = pa.table({"id": ids, "x": ids * scale, "label": ids % 10,
                          "text": [f"row {i}" + " lorem" * (i % 4) for i in ids]})
        pq.write_table(table, root / "train" / f"file-{index}.parquet", row_group_size=700)
        start += count
    return root


def make_manager(data_dir: str, storage_options: dict[str, Any] | None = None,
                 **settings: Any) -> Any:
    from pygestor.config import Settings
    from pygestor.manager import Manager

    values = {"partition_size": "20KB", "row_group_size": 100, "retries": 2,
              "retry_backoff": 0.01, **settings}
    return Manager(Settings.load(data_dir=data_dir, storage_options=storage_options or {},
                                 **values))


def build(manager: Any, source: Path, name: str = "toy") -> Any:
    manager.add_dataset(name, str(source), pipeline="files")
    manager.download(name, progress=False)
    return manager


def ids_of(items: list[Any]) -> list[int]:
    """Ids from rows (dicts) or batches (dicts of tensors / arrays), in order."""
    out: list[int] = []
    for item in items:
        value = item["id"]
        if hasattr(value, "tolist"):
            value = value.tolist()
        if isinstance(value, list):
            out.extend(int(v) for v in value)
        else:
            out.append(int(value))
    return out


# ============================================================================================
# Fixtures


@pytest.fixture
def toy(tmp_path: Path) -> Any:
    """A local storage root with dataset ``toy`` (subset ``train``: 7 partitions of 510-617
    rows, row groups of 100 rows with uneven tails)."""
    return build(make_manager(str(tmp_path / "data")), write_source(tmp_path / "src"))


def dataset(manager: Any, **kwargs: Any) -> Any:
    from pygestor import PygestorDataset

    return PygestorDataset("toy/train", manager=manager, **kwargs)


# ============================================================================================
# iter_batches


def test_iter_batches_formats_sizes_and_order(toy):
    import torch

    from pygestor.loaders.batches import iter_batches

    record = toy.dataset("toy").subsets["train"]
    assert len(record.partitions) >= 5 and len({p.num_rows for p in record.partitions}) > 1
    for fmt in ("arrow", "pandas", "numpy", "torch", "dict"):
        batches = list(iter_batches(toy, "toy/train", batch_size=333, columns=["id", "text"],
                                    format=fmt))
        sizes = [len(b["id"]) if fmt != "arrow" else b.num_rows for b in batches]
        assert sizes == [333] * (TOTAL // 333) + [TOTAL % 333], fmt
        if fmt == "arrow":
            assert all(isinstance(b, pa.RecordBatch) for b in batches)
            assert batches[0].schema.names == ["id", "text"]
            ids = [i for b in batches for i in b.column("id").to_pylist()]
        elif fmt == "pandas":
            assert list(batches[0].columns) == ["id", "text"]
            ids = [int(i) for b in batches for i in b["id"]]
        elif fmt == "torch":
            assert batches[0]["id"].dtype == torch.int64 and isinstance(batches[0]["text"], list)
            ids = ids_of(batches)
        else:
            ids = ids_of(batches)
        assert ids == list(range(TOTAL)), fmt
    texts = [t for b in iter_batches(toy, "toy/train", batch_size=4096, columns=["text"],
                                     format="dict") for t in b["text"]]
    assert texts[5] == "row 5 lorem" and len(texts) == TOTAL


def test_iter_batches_filters_prune_row_groups(toy):
    from pygestor.loaders.batches import iter_batches
    from pygestor.loaders.stream import RowGroupReader

    batches = list(iter_batches(toy, "toy/train", batch_size=50, columns=["id"],
                                filters=[("label", "<", 3), ("id", ">=", 1000)], format="numpy"))
    ids = np.concatenate([b["id"] for b in batches])
    expected = [i for i in range(TOTAL) if i % 10 < 3 and i >= 1000]
    assert ids.tolist() == expected and list(batches[0]) == ["id"]
    assert all(len(b["id"]) == 50 for b in batches[:-1])
    # OR of ANDs
    either = list(iter_batches(toy, "toy/train", batch_size=10_000, columns=["id"],
                               filters=[[("id", "<", 5)], [("id", "in", [3000, 3001])]]))
    assert either[0].column("id").to_pylist() == [0, 1, 2, 3, 4, 3000, 3001]
    # statistics prove most row groups hold no id < 150: they are not read (pyarrow's pruning,
    # list filters and expressions alike)
    import pyarrow.dataset as pads

    selection = toy.select("toy/train")
    first = selection.partitions[0].row_groups
    assert len(first) > 3
    for filters, expected in (([("id", "<", 150)], {0, 1}), (pads.field("id") < 150, {0, 1}),
                              ([[("id", "in", [310])], [("id", "=", 0)]], {0, 3})):
        reader = RowGroupReader(selection, ["id"], filters)
        assert reader.may_match(0) == expected, filters
        assert reader.read(0, 2).num_rows == 0
    assert RowGroupReader(selection, ["id"]).may_match(0) == set(range(len(first)))


def test_iter_batches_errors_are_eager_and_clear(toy):
    from pygestor.errors import ConfigError, NotDownloadedError, NotFoundError
    from pygestor.loaders.batches import iter_batches

    with pytest.raises(ConfigError, match="unknown column"):
        iter_batches(toy, "toy/train", columns=["nope"])
    with pytest.raises(ConfigError, match="filter on unknown column"):
        iter_batches(toy, "toy/train", filters=[("nope", "=", 1)])
    with pytest.raises(ConfigError, match="batch_size"):
        iter_batches(toy, "toy/train", batch_size=0)
    with pytest.raises(ConfigError, match="unknown format"):
        iter_batches(toy, "toy/train", format="jax")
    with pytest.raises(NotFoundError, match=r"no dataset 'tyo/train'.*'toy'"):
        iter_batches(toy, "tyo/train")
    toy.remove("toy/train")
    with pytest.raises(NotDownloadedError, match="pygestor download toy/train"):
        iter_batches(toy, "toy/train")


def test_public_api_streams_through_the_configured_manager(toy):
    import pygestor

    pygestor.configure(data_dir=toy.settings.data_dir, row_group_size=100)
    batches = list(pygestor.iter_batches("toy/train", batch_size=1000, columns=["label"],
                                         filters=[("label", "=", 7)], format="numpy"))
    assert sum(len(b["label"]) for b in batches) == TOTAL // 10
    found = pygestor.urls("toy/train")
    assert len(found["urls"]) == len(toy.dataset("toy").subsets["train"].partitions)
    assert pq.read_table(found["urls"][0]).num_rows > 0


def test_loaders_take_a_selection_and_never_import_the_api(toy):
    import subprocess
    import sys

    from pygestor import PygestorDataset
    from pygestor.selection import Selection

    # a dataset with no manager= takes the process's default manager, not the API module's
    code = ("import sys; from pygestor import PygestorDataset; "
            "ds = PygestorDataset('toy/train', columns=['id']); "
            "print(len(ds), 'pygestor.api' in sys.modules)")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1]),
           "PYGESTOR_DATA_DIR": toy.settings.data_dir}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=env)
    assert out.stdout.split() == [str(TOTAL), "False"]
    selection = toy.select("toy/train")
    assert isinstance(selection, Selection) and selection.num_rows == TOTAL
    assert sum(selection.row_group_sizes) == TOTAL and len(selection.urls()) == len(
        selection.partitions)
    import pickle

    again = pickle.loads(pickle.dumps(selection))  # to DataLoader workers: no client inside
    assert "_storage" not in again.__dict__ and again.digest() == selection.digest()
    ds = PygestorDataset(selection, columns=["id"])
    assert [r["id"] for r in ds][:3] == [0, 1, 2] and len(ds) == TOTAL
    import pygestor

    pygestor.configure(data_dir=toy.settings.data_dir)  # the default manager: configure's
    assert len(PygestorDataset("toy/train", columns=["id"], batch_size=1000)) == 4


def test_epoch_state_round_trips_and_refuses_what_is_not_ours():
    from pygestor.errors import IntegrityError
    from pygestor.loaders.state import EpochState, Progress

    state = EpochState(3, 7, "f" * 32, Progress(2, 64, (128, 64), 1, 2), {"world_size": 2})
    data = json.loads(json.dumps(state.to_dict()))
    assert data["samples_consumed"] == 192 and data["world_size"] == 2
    assert EpochState.from_dict(data) == state
    view = EpochState(3, 7, "f" * 32, Progress(3, 8, (8, 16, 0), 1, 3, worker=0))
    assert view.samples_consumed == 16, "worker 0 with rotation 1 reads piece 1"
    assert EpochState.from_dict(view.to_dict()) == view
    with pytest.raises(IntegrityError, match="another version of Pygestor"):
        EpochState.from_dict({**data, "format": "pygestor.dataset-state/1"})
    for bad in ({"epoch": 1}, {**data, "progress": {"pieces": 2}},
                {**data, "progress": {**data["progress"], "consumed": [1]}},
                {**data, "epoch": -1}, {**data, "progress": {**data["progress"], "block": 0}}):
        with pytest.raises(IntegrityError):
            EpochState.from_dict(bad)


# ============================================================================================
# PygestorDataset: rows, batches, shuffling, formats


def test_rows_exactly_once_in_catalog_order_and_len(toy):
    ds = dataset(toy, columns=["id", "label", "text"])
    assert len(ds) == TOTAL == ds.num_rows
    rows = list(ds)
    assert [r["id"] for r in rows] == list(range(TOTAL))
    assert rows[12] == {"id": 12, "label": 2, "text": "row 12"}


def test_shuffle_is_deterministic_for_seed_and_epoch(toy):
    ds = dataset(toy, columns=["id"], shuffle=True, seed=7, shuffle_buffer=256)
    first = [r["id"] for r in ds]
    assert sorted(first) == list(range(TOTAL)) and first != list(range(TOTAL))
    assert [r["id"] for r in ds] == first
    assert [r["id"] for r in dataset(toy, columns=["id"], shuffle=True, seed=7,
                                     shuffle_buffer=256)] == first
    ds.set_epoch(1)
    second = [r["id"] for r in ds]
    assert sorted(second) == list(range(TOTAL)) and second != first
    other_seed = [r["id"] for r in dataset(toy, columns=["id"], shuffle=True, seed=8,
                                           shuffle_buffer=256)]
    assert other_seed != first
    # rows are mixed inside a window, not only row groups reordered
    assert sum(abs(a - b) > 1 for a, b in itertools.pairwise(first)) > TOTAL // 2


def test_samples_do_not_depend_on_workers_and_each_order_repeats(toy):
    """What the docs say: a rank's samples never depend on num_workers; their order does (the
    epoch is cut into one piece per worker), and is the same on every run with the same
    number of workers."""
    from torch.utils.data import DataLoader

    ds = dataset(toy, columns=["id"], batch_size=64, shuffle=True, seed=3, shuffle_buffer=200)
    ds.set_epoch(2)
    orders = {}
    for workers in (0, 1, 2, 3):
        first = ids_of(list(DataLoader(ds, batch_size=None, num_workers=workers)))
        assert sorted(first) == list(range(TOTAL)), workers
        assert ids_of(list(DataLoader(ds, batch_size=None, num_workers=workers))) == first
        orders[workers] = first
    assert orders[0] == orders[1], "one worker reads what the main process reads"


@pytest.fixture
def sorted_rows(tmp_path: Path) -> Any:
    """200 000 rows stored sorted by id (4 files, row groups of 25 000): a shuffle that keeps
    neighbours together is easy to see."""
    (tmp_path / "sorted").mkdir()
    for index in range(4):
        ids = np.arange(index * 50_000, (index + 1) * 50_000, dtype=np.int64)
        pq.write_table(pa.table({"id": ids, "a": ids * 0.5, "b": ids % 7}),
                       tmp_path / "sorted" / f"f{index}.parquet")
    manager = make_manager(str(tmp_path / "data"), partition_size="1MB", row_group_size=25_000)
    return build(manager, tmp_path / "sorted", name="sorted")


def test_default_shuffle_mixes_within_a_memory_budget(sorted_rows):
    from pygestor import PygestorDataLoader, PygestorDataset
    from pygestor.loaders.shuffle import batch_diversity

    def epoch(**kwargs: Any) -> tuple[list[int], Any]:
        ds = PygestorDataset("sorted", batch_size=256, shuffle=True, seed=1, format="arrow",
                             manager=sorted_rows, **kwargs)
        return [i for b in ds for i in b.column("id").to_pylist()], ds

    ids, ds = epoch()
    assert ds._window() >= 200_000, "24-byte rows: the default budget holds every row"
    assert sorted(ids) == list(range(200_000))
    assert batch_diversity(ids) >= 1.1, "one row per stratum: better spread than uniform"
    # a budget that holds a quarter of the rows (4 windows of 50 176): every batch spans the
    # 49 blocks of its window (of 196)
    small, ds = epoch(shuffle_memory=50_176 * 24 * 3)
    assert ds._window() == 50_176 and sorted(small) == list(range(200_000))
    assert batch_diversity(small) >= 0.3
    # the 0.3 default (windows of 8192 rows) kept neighbours together
    assert batch_diversity(epoch(shuffle_buffer=8192)[0]) < 0.1
    # exact resume mid-window with the budget's windows, in a new dataset
    loader = PygestorDataLoader(epoch(shuffle_memory=50_176 * 24 * 3)[1], num_workers=0)
    iterator = iter(loader)
    first = [i for _ in range(300) for i in next(iterator).column("id").to_pylist()]
    state = loader.state_dict()
    again = PygestorDataLoader(epoch(shuffle_memory=50_176 * 24 * 3)[1], num_workers=0)
    again.load_state_dict(state)
    assert first + [i for b in again for i in b.column("id").to_pylist()] == small


def test_batches_formats_stack_and_transform(toy):
    import torch

    ds = dataset(toy, batch_size=100, columns=["id", "x", "label", "text"],
                 stack={"features": ["x", "label"]}, stack_dtype=torch.float32)
    batches = list(ds)
    assert len(batches) == len(ds) == 38
    first = batches[0]
    assert set(first) == {"features", "id", "text"}
    assert first["features"].shape == (100, 2) and first["features"].dtype == torch.float32
    assert first["features"][7].tolist() == [3.5, 7.0]
    assert first["text"][3] == "row 3" + " lorem" * 3
    listed = dataset(toy, batch_size=100, columns=["x", "label"], stack=["label", "x"])
    assert next(iter(listed))["features"][3].tolist() == [3.0, 1.5]

    for fmt, check in (("numpy", lambda b: b["id"].dtype == np.int64),
                       ("arrow", lambda b: isinstance(b, pa.RecordBatch)),
                       ("pandas", lambda b: list(b.columns) == ["id", "label"]),
                       ("dict", lambda b: isinstance(b["id"], list))):
        batch = next(iter(dataset(toy, batch_size=10, columns=["id", "label"], format=fmt)))
        assert check(batch), fmt

    doubled = dataset(toy, batch_size=500, columns=["id"],
                      transform=lambda b: {"id2": b["id"] * 2})
    assert next(iter(doubled))["id2"][:3].tolist() == [0, 2, 4]
    rows = dataset(toy, columns=["id", "text"], transform=lambda r: (r["id"], len(r["text"])))
    assert next(iter(rows)) == (0, 5)


def test_dataloader_collates_rows(toy):
    from torch.utils.data import DataLoader

    ds = dataset(toy, columns=["id", "x"], shuffle=True, seed=1, shuffle_buffer=300)
    batches = list(DataLoader(ds, batch_size=32, num_workers=2))
    assert batches[0]["x"].dtype.is_floating_point
    ids = ids_of(batches)
    assert sorted(ids) == list(range(TOTAL))


def test_bad_arguments_are_clear(toy):
    from pygestor.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown column"):
        dataset(toy, columns=["nope"])
    with pytest.raises(ConfigError, match="stack needs batches"):
        dataset(toy, columns=["x"], stack=["x"])
    with pytest.raises(ConfigError, match="not a number"):
        dataset(toy, batch_size=8, columns=["text"], stack=["text"])
    with pytest.raises(ConfigError, match="rank and world_size"):
        dataset(toy, rank=1)
    with pytest.raises(ConfigError, match="rank"):
        dataset(toy, rank=2, world_size=2)
    with pytest.raises(ConfigError, match="seed"):
        dataset(toy, seed=-1)
    with pytest.raises(ConfigError, match="epoch"):
        dataset(toy).set_epoch(-2)


# ============================================================================================
# Ranks without processes (explicit rank/world_size): drop/pad rule and filters


@pytest.mark.parametrize("drop_last", [False, True])
def test_ranks_equal_and_exactly_once(toy, drop_last):
    world = 3
    per_rank = [[r["id"] for r in dataset(toy, columns=["id"], shuffle=True, seed=5,
                                          shuffle_buffer=128, drop_last=drop_last, rank=rank,
                                          world_size=world)] for rank in range(world)]
    lengths = {len(ids) for ids in per_rank}
    assert len(lengths) == 1
    n = lengths.pop()
    assert n == len(dataset(toy, rank=0, world_size=world, drop_last=drop_last))
    counts = Counter(i for ids in per_rank for i in ids)
    if drop_last:
        assert n == TOTAL // world and all(c == 1 for c in counts.values())
        assert len(counts) == TOTAL - TOTAL % world
    else:
        assert n == -(-TOTAL // world) and set(counts) == set(range(TOTAL))
        assert sum(counts.values()) - TOTAL == world * n - TOTAL


def test_filters_count_matches_for_equal_ranks(toy):
    world = 2
    shares = [[r["id"] for r in dataset(toy, columns=["id"], filters=[("label", "in", [1, 4])],
                                        drop_last=True, rank=rank, world_size=world)]
              for rank in range(world)]
    matching = [i for i in range(TOTAL) if i % 10 in (1, 4)]
    assert len(shares[0]) == len(shares[1]) == len(matching) // 2
    assert sorted(shares[0] + shares[1]) == matching[: 2 * (len(matching) // 2)]
    ds = dataset(toy, columns=["id"], filters=[("label", "in", [1, 4])])
    assert ds.num_rows == len(matching) and len(ds) == len(matching)
    assert int((ds.row_group_sizes == 0).sum()) == 0
    narrow = dataset(toy, columns=["id"], filters=[("id", "<", 130)])
    assert narrow.num_rows == 130 and int((narrow.row_group_sizes > 0).sum()) == 2


def test_topology_comes_from_environment_at_iteration(toy, monkeypatch):
    ds = dataset(toy, columns=["id"])
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    ids = [r["id"] for r in ds]
    assert ids == list(range(TOTAL // 2, TOTAL)) and len(ds) == TOTAL // 2


# ============================================================================================
# Resume in one process (resume in a new process: test_resume.py)


def _take(iterator: Any, count: int) -> list[Any]:
    return [next(iterator) for _ in range(count)]


@pytest.mark.parametrize("workers_before,workers_after", [(0, 0), (2, 2), (2, 0), (0, 3), (3, 2)])
def test_loader_resume_exact_with_any_worker_count(toy, workers_before, workers_after):
    from pygestor import PygestorDataLoader

    kwargs = {"columns": ["id"], "shuffle": True, "seed": 11, "shuffle_buffer": 96}
    ds = dataset(toy, **kwargs)
    ds.set_epoch(3)
    loader = PygestorDataLoader(ds, batch_size=32, num_workers=workers_before)
    assert len(loader) == -(-TOTAL // 32)
    iterator = iter(loader)
    first = ids_of(_take(iterator, 37))
    state = json.loads(json.dumps(loader.state_dict()))
    del iterator
    assert state["epoch"] == 3 and state["samples_consumed"] == 37 * 32

    fresh = dataset(toy, **kwargs)
    resumed = PygestorDataLoader(fresh, batch_size=32, num_workers=workers_after)
    resumed.load_state_dict(state)
    rest = ids_of(list(resumed))
    assert sorted(first + rest) == list(range(TOTAL))
    if workers_before == workers_after:
        full = dataset(toy, **kwargs)
        full.set_epoch(3)
        whole = ids_of(list(PygestorDataLoader(full, batch_size=32,
                                               num_workers=workers_before)))
        assert first + rest == whole, "same workers: the exact original order"
    # the next epoch starts afresh
    fresh.set_epoch(4)
    assert sorted(ids_of(list(resumed))) == list(range(TOTAL))


def test_chained_resume_and_ready_batches(toy):
    from pygestor import PygestorDataLoader

    kwargs = {"columns": ["id"], "batch_size": 50, "shuffle": True, "seed": 2,
              "shuffle_buffer": 120}
    seen: list[int] = []
    state = None
    for workers, take in ((2, 9), (0, 11), (3, 5), (1, None)):
        ds = dataset(toy, **kwargs)
        loader = PygestorDataLoader(ds, num_workers=workers)
        if state is not None:
            loader.load_state_dict(state)
        iterator = iter(loader)
        batches = list(iterator) if take is None else _take(iterator, take)
        seen += ids_of(batches)
        state = loader.state_dict()
        del iterator
    assert sorted(seen) == list(range(TOTAL))
    assert state["samples_consumed"] == TOTAL


def test_dataset_state_without_loader_and_plain_dataloader(toy):
    from torch.utils.data import DataLoader

    kwargs = {"columns": ["id"], "shuffle": True, "seed": 4, "shuffle_buffer": 100}
    ds = dataset(toy, **kwargs)
    iterator = iter(ds)
    first = [next(iterator)["id"] for _ in range(1000)]
    state = ds.state_dict()
    assert state["samples_consumed"] == 1000
    again = dataset(toy, **kwargs)
    again.load_state_dict(state)
    assert sorted(first + [r["id"] for r in again]) == list(range(TOTAL))

    # a plain DataLoader with workers: the caller counts batches
    ds = dataset(toy, loader_batch_size=16, **kwargs)
    loader = DataLoader(ds, batch_size=16, num_workers=2)
    iterator = iter(loader)
    first = ids_of(_take(iterator, 20))
    state = ds.state_dict(loader=loader, batches=20)
    del iterator
    again = dataset(toy, loader_batch_size=16, **kwargs)
    again.load_state_dict(state)
    assert sorted(first + ids_of(list(DataLoader(again, batch_size=16, num_workers=2)))) == \
        list(range(TOTAL))


def test_resume_against_changed_data_or_settings_fails_loudly(toy, tmp_path):
    from pygestor.errors import IntegrityError, SourceError

    ds = dataset(toy, columns=["id"], shuffle=True, seed=1)
    iterator = iter(ds)
    _take(iterator, 10)
    state = ds.state_dict()
    with pytest.raises(IntegrityError, match="seed was 1, now 2"):
        dataset(toy, columns=["id"], shuffle=True, seed=2).load_state_dict(state)
    with pytest.raises(IntegrityError, match="world_size was 1, now 2"):
        dataset(toy, columns=["id"], shuffle=True, seed=1, rank=0,
                world_size=2).load_state_dict(state)
    with pytest.raises(IntegrityError, match="shuffle_buffer"):
        dataset(toy, columns=["id"], shuffle=True, seed=1,
                shuffle_buffer=100).load_state_dict(state)
    with pytest.raises(IntegrityError, match="not a PygestorDataset state"):
        ds.load_state_dict({"epoch": 1})
    # the source changed (other x values, same row counts): added again and downloaded
    write_source(tmp_path / "src", scale=2.0)
    with pytest.raises(SourceError, match="changed since the dataset was added"):
        toy.download("toy/train", force=True, progress=False)
    toy.delete_dataset("toy")
    build(toy, tmp_path / "src")
    changed = dataset(toy, columns=["id"], shuffle=True, seed=1)
    assert changed.num_rows == TOTAL and changed.fingerprint() != ds.fingerprint()
    with pytest.raises(IntegrityError, match="data changed"):
        changed.load_state_dict(state)
    # a partition fewer: row counts differ
    toy.remove("toy/train", partitions=["part-00002.parquet"])
    with pytest.raises(IntegrityError, match="the data had 3800 rows"):
        dataset(toy, columns=["id"], shuffle=True, seed=1).load_state_dict(state)


def test_stateful_dataloader_from_torchdata(toy):
    import torchdata.stateful_dataloader as stateful  # in the test extra: a failure, never a skip
    kwargs = {"columns": ["id"], "batch_size": 40, "shuffle": True, "seed": 9,
              "shuffle_buffer": 80}
    for workers in (0, 2):
        loader = stateful.StatefulDataLoader(dataset(toy, **kwargs), batch_size=None,
                                             num_workers=workers)
        iterator = iter(loader)
        first = ids_of(_take(iterator, 13))
        state = loader.state_dict()
        del iterator
        again = stateful.StatefulDataLoader(dataset(toy, **kwargs), batch_size=None,
                                            num_workers=workers)
        again.load_state_dict(state)
        rest = ids_of(list(again))
        assert sorted(first + rest) == list(range(TOTAL)), workers


# ============================================================================================
# Cache


def test_cache_lru_limit_atomic(tmp_path):
    from pygestor.errors import ConfigError, IntegrityError
    from pygestor.loaders.cache import PartitionCache

    cache = PartitionCache(tmp_path / "cache", max_bytes=250)

    def filler(content: bytes):
        def fill(path: str) -> None:
            Path(path).write_bytes(content)
        return fill

    import hashlib

    def key(content: bytes) -> str:
        return "sha256:" + hashlib.sha256(content).hexdigest()

    blobs = [bytes([i]) * 100 for i in range(4)]
    a = cache.get(key(blobs[0]), 100, filler(blobs[0]))
    b = cache.get(key(blobs[1]), 100, filler(blobs[1]))
    os.utime(b, (1, 1))  # b is the least recently used
    os.utime(a, (2, 2))
    cache.get(key(blobs[2]), 100, filler(blobs[2]))
    assert os.path.exists(a) and not os.path.exists(b) and cache.usage() == 200
    assert cache.get(key(blobs[0]), 100, filler(b"never called")) == a
    with pytest.raises(ConfigError, match="cache_max_bytes=250 is smaller than big"):
        cache.get(key(b"x" * 300), 300, filler(b"x" * 300), what="big")
    with pytest.raises(IntegrityError, match="checksum"):
        cache.get(key(blobs[3]), 100, filler(b"\0" * 100))
    with pytest.raises(IntegrityError, match="copied 5 bytes"):
        cache.get(key(blobs[3]), 100, filler(b"short"))
    left = [p.name for p in (tmp_path / "cache").iterdir() if p.is_file()]
    assert left and all(name.startswith("sha256-") for name in left), "no temporary file left"
    assert cache.usage() <= 250 and not cache.path_for(key(blobs[3])).exists()
    cache.clear()
    assert cache.usage() == 0


# ============================================================================================
# Object stores


def _remote(server: dict[str, Any], scheme: str, tmp_path: Path, **settings: Any) -> Any:
    url = f"{scheme}://{server['bucket']}/{uuid.uuid4().hex[:10]}"
    return build(make_manager(url, server["options"], **settings), write_source(tmp_path / "src"))


@pytest.mark.slow
def test_stream_from_s3_with_two_workers(s3_server, tmp_path):
    from torch.utils.data import DataLoader

    from pygestor.loaders.batches import iter_batches
    from pygestor.loaders.stream import RowGroupReader

    manager = _remote(s3_server, "s3", tmp_path)
    ds = dataset(manager, columns=["id", "x"], batch_size=128, shuffle=True, seed=1,
                 shuffle_buffer=256, stack=["x"])
    batches = list(DataLoader(ds, batch_size=None, num_workers=2))
    assert len(batches) == len(ds) and sorted(ids_of(batches)) == list(range(TOTAL))
    arrow = list(iter_batches(manager, "toy/train", batch_size=1000, columns=["id"],
                              filters=[("label", "=", 3)]))
    assert [i for b in arrow for i in b.column(0).to_pylist()] == list(range(3, TOTAL, 10))
    # only the footer and the needed column chunks are fetched
    source = manager.select("toy/train")
    reader = RowGroupReader(source, columns=["id"])
    reader.read(0, 0)
    assert reader.requests == 2  # footer + one ranged read of the 'id' chunk
    # all columns: the first row group comes in the footer's round trip, nothing more
    whole = RowGroupReader(source)
    assert whole.schema().names == ["id", "x", "label", "text"]
    assert whole.requests == 2
    first = whole.read(0, 0)
    assert whole.requests == 2 and first.column("id").to_pylist()[:3] == [0, 1, 2]
    assert whole.read(0, 1).num_rows == source.partitions[0].row_groups[1]
    everything = list(iter_batches(manager, "toy/train", batch_size=777))
    assert [i for b in everything for i in b.column("id").to_pylist()] == list(range(TOTAL))


@pytest.mark.slow
def test_stream_from_gcs_with_two_workers(gcs_server, tmp_path):
    from torch.utils.data import DataLoader

    manager = _remote(gcs_server, "gs", tmp_path)
    ds = dataset(manager, columns=["id", "label"], drop_last=True)
    batches = list(DataLoader(ds, batch_size=64, num_workers=2))
    assert sorted(ids_of(batches)) == list(range(TOTAL))


@pytest.mark.slow
def test_cache_serves_repeated_epochs_from_s3(s3_server, tmp_path):
    cache_dir = tmp_path / "cache"
    manager = _remote(s3_server, "s3", tmp_path, cache_dir=str(cache_dir),
                      cache_max_bytes="1MB")
    ds = dataset(manager, columns=["id"], batch_size=500)
    first = ids_of(list(ds))
    cached = sorted(p.name for p in cache_dir.iterdir() if p.suffix == ".parquet")
    record = manager.dataset("toy").subsets["train"]
    assert len(cached) == len(record.partitions)
    assert all(name.startswith("sha256-") for name in cached)
    assert ids_of(list(ds)) == first == list(range(TOTAL))
    # too small a limit: a clear error naming it
    small = _remote(s3_server, "s3", tmp_path / "again", cache_dir=str(tmp_path / "c2"),
                    cache_max_bytes="1KB")
    from pygestor.errors import ConfigError

    with pytest.raises(ConfigError, match="cache_max_bytes=1000 is smaller than"):
        list(dataset(small, columns=["id"], batch_size=500))


def test_local_roots_are_never_cached(tmp_path):
    manager = build(make_manager(str(tmp_path / "data"), cache_dir=str(tmp_path / "cache")),
                    write_source(tmp_path / "src"))
    assert ids_of(list(dataset(manager, columns=["id"], batch_size=1000))) == list(range(TOTAL))
    assert not (tmp_path / "cache").exists()


def test_persistent_workers_follow_set_epoch_and_resume(toy):
    from torch.utils.data import DataLoader

    from pygestor import PygestorDataLoader

    kwargs = {"columns": ["id"], "batch_size": 100, "shuffle": True, "seed": 6,
              "shuffle_buffer": 100}
    reference = []
    for epoch in range(3):
        ds = dataset(toy, **kwargs)
        ds.set_epoch(epoch)
        reference.append(ids_of(list(PygestorDataLoader(ds, num_workers=2))))
        plain = ids_of(list(DataLoader(ds, batch_size=None, num_workers=2)))
        assert sorted(plain) == sorted(reference[-1]) == list(range(TOTAL))
    assert len({tuple(r) for r in reference}) == 3
    ds = dataset(toy, **kwargs)
    loader = PygestorDataLoader(ds, num_workers=2, persistent_workers=True)
    for epoch in range(3):
        ds.set_epoch(epoch)
        assert ids_of(list(loader)) == reference[epoch], epoch
    # resume mid-epoch, then the same epoch again is read whole
    ds.set_epoch(1)
    iterator = iter(loader)
    first = ids_of(_take(iterator, 7))
    state = loader.state_dict()
    del iterator
    loader.load_state_dict(state)
    rest = ids_of(list(loader))
    assert first + rest == reference[1]
    assert ids_of(list(loader)) == reference[1], "the resume point is used once"


@pytest.mark.parametrize("workers", [2, 3])
def test_bundled_handoff_resumes_in_the_exact_order(toy, workers):
    from pygestor import PygestorDataLoader

    kwargs = {"columns": ["id", "x", "text"], "batch_size": 50, "shuffle": True, "seed": 8,
              "shuffle_buffer": 100}

    def loader(ds):
        return PygestorDataLoader(ds, num_workers=workers, handoff_rows=150)  # 3 per bundle

    ds = dataset(toy, **kwargs)
    ds.set_epoch(1)
    whole = list(loader(ds))
    assert len(whole) == len(ds) == 76 and all(len(b["id"]) == 50 for b in whole[:-1])
    assert whole[0]["x"].tolist() == [i * 0.5 for i in whole[0]["id"].tolist()]
    assert whole[0]["text"][0].startswith(f"row {int(whole[0]['id'][0])}")
    reference = ids_of(whole)
    assert sorted(reference) == list(range(TOTAL))
    seen: list[int] = []
    state = None
    for take in (7, 1, 11, 4, None):  # chained resumes, stopping inside bundles
        ds = dataset(toy, **kwargs)
        ds.set_epoch(1)
        current = loader(ds)
        if state is not None:
            current.load_state_dict(state)
        iterator = iter(current)
        seen += ids_of(list(iterator) if take is None else _take(iterator, take))
        state = current.state_dict()
        del iterator
    assert seen == reference


def test_bundle_packs_tensors_into_one_buffer():
    import io
    import pickle
    from multiprocessing.reduction import ForkingPickler

    import torch
    import torch.multiprocessing  # registers the tensor reductions

    from pygestor.loaders.torch.handoff import Bundle

    batches = [{"a": torch.arange(5), "b": torch.tensor([[1.5, 2.0]] * 3, dtype=torch.float16),
                "c": torch.tensor([True, False, True]), "s": ["x", "y"], "n": 7,
                "t": torch.arange(6).reshape(2, 3).t()},  # not contiguous
               ("not", "a", "dict"),
               {"empty": torch.zeros(0, 4)}]
    payload = io.BytesIO()
    ForkingPickler(payload, pickle.HIGHEST_PROTOCOL).dump(Bundle(batches))
    back = pickle.loads(payload.getvalue())
    assert isinstance(back, Bundle) and len(back.batches) == 3
    first = back.batches[0]
    assert torch.equal(first["a"], torch.arange(5)) and first["b"].dtype == torch.float16
    assert torch.equal(first["b"], batches[0]["b"]) and first["c"].tolist() == [True, False, True]
    assert torch.equal(first["t"], batches[0]["t"]) and first["s"] == ["x", "y"]
    assert first["n"] == 7 and back.batches[1] == ("not", "a", "dict")
    assert back.batches[2]["empty"].shape == (0, 4)
    assert first["a"].untyped_storage().data_ptr() == first["b"].untyped_storage().data_ptr(), \
        "one buffer for all tensors"


# ============================================================================================
# Weighted mixing of subsets

MIX = {"web/train": 0.7, "code/train": 0.2, "books/train": 0.1}
MIX_ROWS = {"web": (0, 3000), "code": (100_000, 1000), "books": (200_000, 200)}


def write_mix_sources(root: Path) -> dict[str, Path]:
    """Three sources of other sizes and id ranges; books has a 'title' but no 'x'."""
    out = {}
    for name, (first, count) in MIX_ROWS.items():
        folder = root / name / "train"
        folder.mkdir(parents=True)
        ids = np.arange(first, first + count, dtype=np.int64)
        columns: dict[str, Any] = {"id": ids, "label": ids % 10,
                                   "text": [f"{name} {i}" for i in ids]}
        if name == "books":
            columns["title"] = [f"book {i}" for i in ids]
        else:
            columns["x"] = ids * 0.5
        pq.write_table(pa.table(columns), folder / "part.parquet", row_group_size=250)
        out[name] = root / name
    return out


@pytest.fixture
def mixed(tmp_path: Path) -> Any:
    manager = make_manager(str(tmp_path / "data"), row_group_size=250)
    for name, source in write_mix_sources(tmp_path / "src").items():
        build(manager, source, name=name)
    return manager


def source_of(i: int) -> str:
    return "web" if i < 100_000 else "code" if i < 200_000 else "books"


def test_mix_is_exact_per_rank_and_batch(mixed):
    from pygestor import PygestorDataset

    world, per_epoch = 2, 4000
    ranks = [PygestorDataset(MIX, batch_size=100, shuffle=True, seed=3, manager=mixed,
                             samples_per_epoch=per_epoch, rank=r, world_size=world)
             for r in range(world)]
    assert ranks[0].weights == (7, 2, 1) and ranks[0].columns == ["id", "label", "text"]
    epochs = [list(ds) for ds in ranks]
    assert [len(b) for b in epochs] == [len(ranks[0])] * world == [20, 20]
    everything: Counter = Counter()
    for batches in epochs:
        ids = ids_of(batches)
        assert len(ids) == per_epoch // world
        assert Counter(map(source_of, ids)) == {"web": 1400, "code": 400, "books": 200}
        for batch in batches:  # every batch holds the proportions, to a sample
            shares = Counter(map(source_of, ids_of([batch])))
            assert abs(shares["web"] - 70) <= 1 and abs(shares["code"] - 20) <= 1
            assert abs(shares["books"] - 10) <= 1
        everything.update(ids)
    # over both ranks: web 2800 of 3000 rows once; code 800 of 1000 once; books 400 = 2 x 200
    assert all(everything[i] == 2 for i in range(200_000, 200_200))
    assert sum(1 for i in everything if source_of(i) == "web") == 2800
    assert max(c for i, c in everything.items() if source_of(i) != "books") == 1
    again = list(PygestorDataset(MIX, batch_size=100, shuffle=True, seed=3, manager=mixed,
                                 samples_per_epoch=per_epoch, rank=0, world_size=world))
    assert ids_of(again) == ids_of(epochs[0]), "deterministic for (seed, epoch)"


def test_mix_stopping_rules(mixed):
    from pygestor import PygestorDataset

    def epoch(**kwargs: Any) -> Counter:
        ds = PygestorDataset(MIX, columns=["id"], manager=mixed, **kwargs)
        ids = [row["id"] for row in ds]
        assert len(ids) == len(ds)
        return Counter(map(source_of, ids))

    first = epoch()  # first_exhausted: the epoch ends where the 200 books run out
    assert first["books"] == 200 and 1400 <= first["web"] <= 1405 and 400 <= first["code"] <= 402
    every = epoch(stopping="all_exhausted")
    assert every["web"] >= 3000 and every["code"] >= 1000 and every["books"] >= 200
    assert every["code"] == 1000, "code (0.2 of 1000 rows) is the last to be read whole"
    capped = epoch(stopping="all_exhausted", samples_per_epoch=1000)
    assert capped == {"web": 700, "code": 200, "books": 100}


def test_mix_resumes_mid_epoch_with_workers_and_says_what_each_source_gave(mixed):
    from pygestor import PygestorDataLoader, PygestorDataset

    def loader(workers: int) -> Any:
        ds = PygestorDataset(MIX, batch_size=64, shuffle=True, seed=5, manager=mixed,
                             samples_per_epoch=3000, columns=["id", "label"])
        ds.set_epoch(2)
        return PygestorDataLoader(ds, num_workers=workers)

    whole = ids_of(list(loader(2)))
    first_loader = loader(2)
    iterator = iter(first_loader)
    first = ids_of(_take(iterator, 19))
    state = json.loads(json.dumps(first_loader.state_dict()))
    del iterator
    assert state["samples_consumed"] == 19 * 64
    assert sum(state["sources"].values()) == 19 * 64
    assert state["sources"] == dict(Counter(map(lambda i: f"{source_of(i)}/train", first)))
    resumed = loader(2)
    resumed.load_state_dict(state)
    assert first + ids_of(list(resumed)) == whole, "same workers: the very same order"
    other = loader(0)
    other.load_state_dict(state)
    assert sorted(first + ids_of(list(other))) == sorted(whole)


def test_mix_columns_transforms_and_errors(mixed):
    from pygestor import PygestorDataset
    from pygestor.errors import ConfigError

    renamed = {"web/train": 0.5, "books/train": {
        "weight": 0.5, "transform": lambda t: t.append_column("x", pa.array(
            [float(i) for i in t.column("id").to_pylist()], pa.float64()))}}
    ds = PygestorDataset(renamed, batch_size=50, manager=mixed, samples_per_epoch=400,
                         format="arrow")
    assert ds.columns == ["id", "label", "text", "x"]
    rows = pa.Table.from_batches(list(ds)).to_pylist()
    books = [r for r in rows if r["id"] >= 200_000]
    assert len(books) == 200 and all(r["x"] == float(r["id"]) for r in books)
    narrow = PygestorDataset({"web/train": {"weight": 3, "columns": ["id", "text"]},
                              "books/train": 1}, manager=mixed, samples_per_epoch=40)
    assert narrow.columns == ["id", "text"] and set(next(iter(narrow))) == {"id", "text"}
    for bad, message in (({"web/train": 0}, "positive"),
                         ({"web/train": {"wieght": 1}}, "give 'weight'"),
                         ({"web/train": 1, "books/train": {"weight": 1, "columns": ["title"]}},
                          "share no column"),
                         ({}, "at least one source")):
        with pytest.raises(ConfigError, match=message):
            PygestorDataset(bad, manager=mixed, samples_per_epoch=10)
    with pytest.raises(ConfigError, match="samples_per_epoch"):
        PygestorDataset(MIX, manager=mixed, stopping="repeat")
    with pytest.raises(ConfigError, match="not in every source"):
        PygestorDataset(MIX, manager=mixed, columns=["x"], samples_per_epoch=10)
    with pytest.raises(ConfigError, match="stopping must be one of"):
        PygestorDataset(MIX, manager=mixed, stopping="never")


def test_plan_and_snippet_show_a_mix(mixed):
    import subprocess
    import sys

    from pygestor.snippets import snippets

    pygestor = str(Path(sys.executable).parent / "pygestor")
    command = [pygestor, "--data-dir", mixed.settings.data_dir, "plan", "web/train=0.7",
               "code/train=0.2", "books/train=0.1", "--world-size", "2", "--workers", "2"]
    out = subprocess.run([*command, "--samples-per-epoch", "4000", "--json"],
                         capture_output=True, text=True, check=True).stdout
    report = json.loads(out)
    assert report["stopping"] == "repeat" and report["samples_per_rank"] == 2000
    assert [s["samples_per_rank"] for s in report["sources"]] == [1400, 400, 200]
    assert [s["read"] for s in report["sources"]] == ["0.93x", "0.80x", "2.00x"]
    assert report["a batch of 256"] == "179 web/train, 51 code/train, 26 books/train"
    text = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    assert "stopping:                first_exhausted" in text and "books/train" in text
    bad = subprocess.run([*command[:5], "web/train=x"], capture_output=True, text=True)
    assert bad.returncode != 0 and "REF=WEIGHT" in bad.stderr
    code = snippets("web/train", mixed.settings)
    assert "PygestorDataset({'web/train': 1.0}" in code["mix"]
    assert " plan web/train=1.0 --samples-per-epoch" in code["cli"] and "--data-dir" in code["cli"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])}
    run = subprocess.run([sys.executable, "-c", code["mix"]], capture_output=True, text=True,
                         env=env, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]


# ============================================================================================
# Nulls, the plain DataLoader, bad arguments, ended epochs


@pytest.fixture
def with_nulls(tmp_path: Path) -> Any:
    """Nulls in every kind of column, the very first row included."""
    (tmp_path / "nulls").mkdir()
    n = 300
    table = pa.table({
        "id": pa.array(range(n), pa.int64()),
        "count": pa.array([None if i % 7 == 0 else i for i in range(n)], pa.int64()),
        "score": pa.array([None if i % 5 == 0 else i / 4 for i in range(n)], pa.float32()),
        "flag": pa.array([None if i % 11 == 0 else i % 2 == 0 for i in range(n)], pa.bool_()),
        "text": pa.array([None if i % 3 == 0 else f"t{i}" for i in range(n)], pa.string()),
    })
    pq.write_table(table, tmp_path / "nulls" / "part.parquet", row_group_size=100)
    return build(make_manager(str(tmp_path / "data")), tmp_path / "nulls", name="nulls")


def test_rows_with_nulls_collate_like_batches(with_nulls):
    import torch
    from torch.utils.data import DataLoader

    from pygestor import PygestorDataset

    rows = list(DataLoader(PygestorDataset("nulls", manager=with_nulls), batch_size=32))
    ready = list(PygestorDataset("nulls", batch_size=32, manager=with_nulls))
    assert len(rows) == len(ready) == 10
    for collated, batch in zip(rows, ready, strict=True):
        assert set(collated) == set(batch)
        for name in ("count", "score", "flag"):
            assert collated[name].dtype == batch[name].dtype, name
            assert torch.equal(torch.isnan(collated[name]), torch.isnan(batch[name]))
            assert torch.equal(torch.nan_to_num(collated[name]), torch.nan_to_num(batch[name]))
        assert collated["text"] == batch["text"]
    assert rows[0]["text"][:2] == ["", "t1"], "a null string is an empty one"
    assert rows[0]["score"].dtype == torch.float32, "float32 stays float32 in both modes"
    assert torch.isnan(rows[0]["count"][0]) and rows[0]["count"][1] == 1


def test_a_plain_dataloader_hands_ready_batches_through(toy):
    import torch
    from torch.utils.data import DataLoader
    from torch.utils.data._utils.collate import default_convert

    from pygestor.loaders.torch import Batch

    ds = dataset(toy, columns=["id", "x", "text"], batch_size=64)
    batch = next(iter(ds))
    assert isinstance(batch, Batch) and default_convert(batch) is batch, "not walked"
    first = next(iter(DataLoader(ds, batch_size=None)))
    assert isinstance(first, Batch) and first["text"][1] == "row 1 lorem"
    assert dict(first).keys() == {"id", "x", "text"} and list(first) == ["id", "x", "text"]
    assert (lambda **kw: sorted(kw))(**first) == ["id", "text", "x"]
    moved = first.to(torch.float64)
    assert moved["id"].dtype == torch.float64 and moved["text"] == first["text"]
    workers = next(iter(DataLoader(ds, batch_size=None, num_workers=2)))
    assert isinstance(workers, Batch) and torch.equal(workers["id"], first["id"])


def test_bad_columns_and_filters_fail_at_construction(toy):
    from pygestor.errors import ConfigError
    from pygestor.loaders.arrow import load
    from pygestor.loaders.batches import iter_batches

    for call in (lambda **kw: dataset(toy, **kw), lambda **kw: iter_batches(toy, "toy/train", **kw),
                 lambda **kw: load(toy, "toy/train", **kw)):
        with pytest.raises(ConfigError, match=r"columns=\[\] selects no column"):
            call(columns=[])
        with pytest.raises(ConfigError, match=r"cannot apply filters .* to these columns"):
            call(filters=[("id", "<", "x")])
        with pytest.raises(ConfigError, match=r"cannot apply filters .* to these columns"):
            import pyarrow.dataset as pads

            call(filters=pads.field("nope") > 1)


def test_a_partition_removed_under_a_live_dataset_is_a_clear_error(toy):
    from pygestor import PygestorDataLoader
    from pygestor.errors import IntegrityError

    for workers in (0, 2):
        ds = dataset(toy, columns=["id"], batch_size=100)
        iterator = iter(PygestorDataLoader(ds, num_workers=workers, handoff_rows=0,
                                           prefetch_factor=1 if workers else None))
        next(iterator)
        toy.remove("toy/train", partitions=["part-00005.parquet", "part-00006.parquet"])
        with pytest.raises(IntegrityError, match=r"part-0000[56]\.parquet .*file is gone"):
            list(iterator)
        toy.download("toy/train", progress=False)


def test_an_ended_epoch_resumes_the_same_way_with_any_worker_count(toy):
    import torchdata.stateful_dataloader as stateful

    kwargs = {"columns": ["id"], "batch_size": 100, "shuffle": True, "seed": 4}
    after = {}
    for workers in (0, 2):
        loader = stateful.StatefulDataLoader(dataset(toy, **kwargs), batch_size=None,
                                             num_workers=workers)
        whole = ids_of(list(loader))
        state = loader.state_dict()
        again = stateful.StatefulDataLoader(dataset(toy, **kwargs), batch_size=None,
                                            num_workers=workers)
        again.load_state_dict(state)
        after[workers] = ids_of(list(again))
        assert after[workers] == whole, "a new pass of the same epoch, as torchdata intends"
        moved = dataset(toy, **kwargs)
        moved.set_epoch(1)
        following = stateful.StatefulDataLoader(moved, batch_size=None, num_workers=workers)
        following.load_state_dict(state)
        assert sorted(ids_of(list(following))) == list(range(TOTAL))
    assert sorted(after[0]) == sorted(after[2]) == list(range(TOTAL)), "both a whole pass"
