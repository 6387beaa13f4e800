"""Exploring data, the operations behind the web UI's viewer, statistics and previews:

- :class:`pygestor.viewer.RowViewer`: any page of a subset by row-group seeks, verified reads,
  sorting and filtering in DuckDB fed only by the verified reader, and the queries it refuses;
- :mod:`pygestor.stats`: column statistics, compared with numpy/pandas on the same rows;
- :meth:`Manager.preview` / :meth:`Pipeline.preview`: rows read from the source before
  downloading, typed like the partitions, through the source policy, writing nothing;
- :meth:`Manager.plan_dataset`: what ``add_dataset`` would register, with the same checks.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sources import TRAIN_ROWS, write_toy_source

from pygestor.config import Settings
from pygestor.errors import (
    AlreadyExistsError,
    CancelledError,
    ConfigError,
    IntegrityError,
    NotSupportedError,
    PolicyError,
    QueryError,
    SourceError,
)
from pygestor.loaders.arrow import load
from pygestor.manager import Manager
from pygestor.viewer import Condition, RowQuery, RowViewer


def make_manager(root: Path, **overrides) -> Manager:
    settings = Settings.load(data_dir=str(root / "data"), partition_size="60KB",
                             row_group_size=1000, retries=2, retry_backoff=0.01, env={},
                             **overrides)
    return Manager(settings)


@pytest.fixture
def toy(tmp_path: Path) -> tuple[Manager, pd.DataFrame]:
    """toy/train downloaded: 3000 rows in 3 partitions of 1000-row groups; and its rows."""
    manager = make_manager(tmp_path)
    manager.add_dataset("toy", str(write_toy_source(tmp_path / "src")), pipeline="files")
    manager.download("toy/train", progress=False)
    return manager, load(manager, "toy/train")


def write_table(folder: Path, table: pa.Table, name: str = "data.parquet", **kwargs) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, folder / name, **kwargs)
    return folder


# ============================================================================================
# Viewer: pages


def test_any_page_reads_only_the_row_groups_holding_it(toy, tmp_path):
    manager, frame = toy
    viewer = RowViewer(manager, "toy/train", cache_bytes=0)
    reads: list[tuple[int, int]] = []
    original = viewer._reader.read
    viewer._reader.read = lambda p, i: reads.append((p, i)) or original(p, i)
    assert viewer.num_rows == TRAIN_ROWS == len(frame)
    for page, per_page in ((0, 25), (39, 25), (119, 25), (11, 90), (29, 100)):
        reads.clear()
        viewer._cache.clear()
        numbers, rows = viewer.page(page, per_page)
        start = page * per_page
        expected = frame.iloc[start:start + per_page].reset_index(drop=True)
        assert list(numbers) == list(range(start, min(start + per_page, TRAIN_ROWS)))
        pd.testing.assert_frame_equal(rows.to_pandas(), expected)
        groups = set(np.searchsorted(viewer.offsets, numbers, side="right") - 1)
        assert len(reads) == len(groups) <= 2, (page, reads)
    numbers, rows = viewer.page(500, 25)  # past the end: nothing
    assert len(numbers) == 0 and rows.num_rows == 0 and rows.schema.names == list(frame.columns)
    taken = viewer.take(np.array([2999, 0, 1500, 1]))
    assert taken.column("id").to_pylist() == [2999, 0, 1500, 1]
    with pytest.raises(ConfigError):
        viewer.take(np.array([3000]))
    viewer.close()


def test_pages_are_verified_reads(toy):
    manager, _ = toy
    record = manager.dataset("toy").subsets["train"]
    path = Path(manager.partition_path("toy", "train", record.partitions[1].name))
    raw = bytearray(path.read_bytes())
    text = pq.read_metadata(path).row_group(0).column(1)  # the "text" column's first page
    at = (text.dictionary_page_offset or text.data_page_offset) + 60
    raw[at:at + 4] = bytes(b ^ 0xFF for b in raw[at:at + 4])
    path.write_bytes(bytes(raw))
    viewer = RowViewer(manager, "toy/train")
    assert viewer.page(0, 25)[1].num_rows == 25  # the first partition is intact
    start = int(viewer.offsets[len(record.partitions[0].row_groups)])
    with pytest.raises(IntegrityError, match="is damaged"):
        viewer.page(start // 25, 25)
    with pytest.raises(IntegrityError, match="is damaged"):
        viewer.query(RowQuery(where="text LIKE '%x%'"))  # the reader's error, not DuckDB's
    assert viewer.query(RowQuery(where="label = 3")).matches == 300, "other columns are intact"


# ============================================================================================
# Viewer: queries


def test_filters_sorts_and_sql_agree_with_pandas(toy):
    manager, frame = toy
    viewer = RowViewer(manager, "toy/train")
    cases = [
        (RowQuery(conditions=(Condition("label", "=", "3"),)), frame.label == 3),
        (RowQuery(conditions=(Condition("label", "!=", "3"), Condition("score", "<", "10"))),
         (frame.label != 3) & (frame.score < 10)),
        (RowQuery(conditions=(Condition("text", "contains", "COMMA"),)),
         frame.text.str.contains("comma")),
        (RowQuery(conditions=(Condition("text", "starts with", "sample 1"),)),
         frame.text.str.startswith("sample 1")),
        (RowQuery(conditions=(Condition("text", "is null"),)), frame.text.isna()),
        (RowQuery(where="score > 700 AND (label = 1 OR label = 2)"),
         (frame.score > 700) & frame.label.isin([1, 2])),
        (RowQuery(conditions=(Condition("label", ">=", "8"),), where="id % 2 = 0"),
         (frame.label >= 8) & (frame.id % 2 == 0)),
    ]
    for query, mask in cases:
        result = viewer.query(query)
        assert list(result.rows) == list(np.flatnonzero(mask.to_numpy())), query
        assert result.matches == int(mask.sum()) and not result.capped
    result = viewer.query(RowQuery(sort="label", descending=True))
    expected = frame.sort_values(["label"], ascending=False, kind="stable").index
    assert list(result.rows) == list(expected), "sorted, ties in stored order"
    numbers, rows = viewer.page(1, 10, result)
    assert list(numbers) == list(expected[10:20])
    assert rows.column("id").to_pylist() == frame.id[expected[10:20]].tolist()


def test_query_results_keep_the_first_rows_and_count_them_all(toy, monkeypatch):
    from pygestor import viewer as viewer_module

    manager, _ = toy
    monkeypatch.setattr(viewer_module, "MAX_MATCHES", 100)
    result = RowViewer(manager, "toy/train").query(RowQuery(where="label < 5"))
    assert result.matches == 1500 and len(result.rows) == 100 and result.capped
    assert list(result.rows[:6]) == [0, 1, 2, 3, 4, 10]


def test_queries_read_only_the_columns_they_name(toy):
    from pygestor.viewer import columns_used

    manager, _ = toy
    schema = RowViewer(manager, "toy/train").schema
    assert columns_used(RowQuery(where="Score > 1 AND \"label\" = 2"), schema) == \
        ["label", "score"]
    assert columns_used(RowQuery(conditions=(Condition("text", "is null"),), sort="id"),
                        schema) == ["id", "text"]
    assert columns_used(RowQuery(where="1 = 1"), schema) == []


@pytest.mark.parametrize(("where", "message"), [
    ("label = 1; DROP TABLE data", "';' is not allowed"),
    ("label = 1 -- and more", "comments"),
    ("label = 1 /* x */", "comments"),
    ("id IN (SELECT 1)", "not a query"),
    ("1 = 1) UNION SELECT 1 FROM data WHERE (1 = 1", "closes a parenthesis"),
    ("(label = 1", "parenthesis open"),
    ("COPY data TO '/tmp/out.csv'", "not a query"),
    ("nosuch > 1", "nosuch"),
    ("read_text('/etc/passwd') IS NOT NULL", "cannot run"),
    ("len(read_blob('/etc/hostname')) > 0", "cannot run"),
    ("x" * 5000, "at most"),
])
def test_bad_or_escaping_queries_are_refused_clearly(toy, tmp_path, monkeypatch, where,
                                                     message):
    manager, _ = toy
    monkeypatch.chdir(tmp_path / "src")
    before = sorted(os.listdir("."))
    with pytest.raises(QueryError, match=message) as caught:
        RowViewer(manager, "toy/train").query(RowQuery(where=where))
    assert "Traceback" not in str(caught.value) and "\n" not in str(caught.value)
    assert sorted(os.listdir(".")) == before, "a query writes nothing (no spill, no .tmp)"


def test_filter_values_are_parameters_checked_against_the_column_type(toy):
    manager, _ = toy
    viewer = RowViewer(manager, "toy/train")
    with pytest.raises(QueryError, match=r"'ten' is not a value of column 'label'"):
        viewer.query(RowQuery(conditions=(Condition("label", "=", "ten"),)))
    injected = viewer.query(RowQuery(conditions=(Condition("text", "=", "x' OR '1'='1"),)))
    assert injected.matches == 0, "a value is never SQL"
    with pytest.raises(QueryError, match="unknown operator"):
        viewer.query(RowQuery(conditions=(Condition("label", "LIKE", "1"),)))
    with pytest.raises(QueryError, match="no column 'nope'"):
        viewer.query(RowQuery(sort="nope"))


def test_queries_are_bounded_in_time_and_memory(toy, monkeypatch):
    from pygestor import viewer as viewer_module

    manager, _ = toy
    viewer = RowViewer(manager, "toy/train")
    slow = viewer._scan

    def crawling(columns, failure):
        for batch in slow(columns, failure):
            time.sleep(0.3)
            yield batch
    monkeypatch.setattr(viewer, "_scan", crawling)
    started = time.monotonic()
    with pytest.raises(QueryError, match=r"ran longer than 0\.2 s"):
        viewer.query(RowQuery(where="label = 1"), seconds=0.2)
    assert time.monotonic() - started < 3
    monkeypatch.setattr(viewer, "_scan", slow)
    monkeypatch.setattr(viewer_module, "QUERY_MEMORY", "1MB")
    big = np.random.default_rng(0).random(2_000_000)
    root = manager.settings.data_dir.rsplit("/", 1)[0]
    write_table(Path(root) / "many", pa.table({"x": big}), row_group_size=500_000)
    manager.add_dataset("many", str(Path(root) / "many"), pipeline="files",
                        partition_size="1GB")
    manager.download("many", progress=False)
    with pytest.raises(QueryError, match="needs more than 1MB"):
        RowViewer(manager, "many/default").query(RowQuery(sort="x"))


# ============================================================================================
# Column statistics


def stats_table(rows: int = 2500) -> pa.Table:
    ids = np.arange(rows)
    return pa.table({
        "id": pa.array(ids, pa.int64()),
        "label": pa.array(ids % 5, pa.int32()),
        "score": pa.array([None if i % 10 == 0 else (float("nan") if i % 97 == 0 else i / 4)
                           for i in ids], pa.float64()),
        "kind": pa.array(np.array(["a", "bb", "ccc"])[ids % 3]).dictionary_encode(),
        "text": pa.array([None if i % 50 == 0 else "x" * (i % 40) for i in ids]),
        "day": pa.array((ids % 300).astype("datetime64[D]")),
        "tags": pa.array([list(range(i % 4)) for i in ids], pa.list_(pa.int16())),
        "blob": pa.array([bytes(i % 9) for i in ids], pa.binary()),
        "meta": pa.array([{"k": int(i)} for i in ids]),
    })


@pytest.fixture
def stats_source(tmp_path: Path) -> tuple[Manager, pa.Table]:
    manager = make_manager(tmp_path)
    table = stats_table()
    manager.add_dataset("s", str(write_table(tmp_path / "s-src", table)), pipeline="files")
    manager.download("s", progress=False)
    return manager, table


def test_column_statistics_match_the_data(stats_source):
    from pygestor.stats import stored_stats

    manager, table = stats_source
    seen: list[tuple[int, int]] = []
    stats = manager.column_stats("s/default", progress=lambda d, n: seen.append((d, n)))
    groups = len(manager.select("s/default").row_group_sizes)
    assert groups > 2 and [d for d, _ in seen] == list(range(1, groups + 1))
    assert all(total == groups for _, total in seen)
    columns = {c["name"]: c for c in stats["columns"]}
    frame = table.to_pandas()
    finite = frame.score.dropna()  # pandas drops nulls and NaNs alike
    nans = sum(1 for i in range(2500) if i % 97 == 0 and i % 10)
    assert columns["score"]["nulls"] == 250 and columns["score"]["nans"] == nans == 23
    assert columns["score"]["min"] == finite.min() and columns["score"]["max"] == finite.max()
    assert columns["score"]["mean"] == pytest.approx(finite.mean())
    assert columns["score"]["std"] == pytest.approx(finite.std(ddof=0))
    assert sum(columns["score"]["histogram"]["counts"]) == len(finite)
    label = columns["label"]
    assert label["histogram"]["edges"] == [0, 1, 2, 3, 4, 5]
    assert label["histogram"]["counts"] == [500] * 5 and label["distinct"] == 5
    assert columns["id"]["histogram"]["counts"] == [125] * 20
    assert columns["kind"]["top"] == [["a", 834], ["bb", 833], ["ccc", 833]]
    text = columns["text"]
    assert text["nulls"] == 50 and text["min_length"] == 0 and text["max_length"] == 39
    assert sum(text["histogram"]["counts"]) == 2450 and text["distinct"] == 40
    assert columns["day"]["min"] == "1970-01-01" and columns["day"]["max"] == "1970-10-27"
    assert columns["tags"]["histogram"]["counts"] == [625] * 4
    assert columns["blob"]["max_length"] == 8 and columns["meta"]["kind"] == "other"
    stored = manager.dataset("s").subsets["default"].extra["stats"]
    assert stored["columns"] == stats["columns"], "stored with the record"
    assert stored_stats(manager, "s/default")["stale"] is False
    manager.remove("s/default", partitions=["part-00000.parquet"])
    assert stored_stats(manager, "s/default")["stale"] is True


def test_statistics_without_footer_statistics_are_the_same(stats_source, monkeypatch):
    from pygestor import stats as stats_module

    manager, _ = stats_source
    with_footers = stats_module.column_stats(manager, "s/default")
    monkeypatch.setattr(stats_module, "_footer_facts", lambda *args: {})
    from_data = stats_module.column_stats(manager, "s/default")
    assert [c for c in from_data["columns"]] == [c for c in with_footers["columns"]]


def test_statistics_bound_distinct_values_and_can_be_cancelled(stats_source, monkeypatch):
    from pygestor import stats as stats_module

    manager, _ = stats_source
    monkeypatch.setattr(stats_module, "MAX_DISTINCT", 100)
    columns = {c["name"]: c for c in stats_module.column_stats(manager, "s/default")["columns"]}
    assert columns["id"]["distinct"] is None and columns["id"]["distinct_more_than"] == 100
    assert columns["label"]["distinct"] == 5
    cancel = threading.Event()
    with pytest.raises(CancelledError):
        manager.column_stats("s/default", progress=lambda d, n: cancel.set(), cancel=cancel)
    assert "stats" not in manager.dataset("s").subsets["default"].extra, "nothing stored"
    with pytest.raises(ConfigError, match="not a subset"):
        manager.column_stats("s")


# ============================================================================================
# Rows before downloading


def test_preview_reads_what_the_partitions_would_hold(tmp_path):
    manager = make_manager(tmp_path)
    csv = tmp_path / "csv-src"
    csv.mkdir()
    (csv / "a.csv").write_text("id,name,score\n1,x,0.5\n2,y,1.5\n")
    (csv / "b.csv").write_text("score,id,name\n2.5,3,z\n")  # other column order: by name
    frames = {}
    sources = {"csv": csv, "toy": write_toy_source(tmp_path / "toy-src", gzip_test=True),
               "pq": write_table(tmp_path / "pq-src", stats_table(), row_group_size=700)}
    for name, source in sources.items():
        manager.add_dataset(name, str(source), pipeline="files")
    before = sorted(p for p in Path(manager.settings.data_dir).rglob("*") if p.is_file())
    for ref in ("csv/default", "toy/train", "toy/test", "pq/default"):
        frames[ref] = manager.preview(ref, 30).to_pandas()
    assert sorted(p for p in Path(manager.settings.data_dir).rglob("*") if p.is_file()) == \
        before, "a preview writes nothing"
    for ref, shown in frames.items():
        manager.download(ref, progress=False)
        dataset, subset = ref.split("/")
        first = manager.dataset(dataset).subsets[subset].partitions[0].name
        stored = load(manager, f"{ref}/{first}").head(30)
        pd.testing.assert_frame_equal(shown, stored, check_dtype=True)
    assert list(frames["csv/default"].columns) == ["id", "name", "score"]
    assert len(frames["pq/default"]) == 30


def test_preview_reads_only_the_row_group_it_shows(tmp_path, monkeypatch):
    from pygestor.pipelines import formats

    table = stats_table(3000)
    source = write_table(tmp_path / "src", table, row_group_size=1000)
    raw = bytearray((source / "data.parquet").read_bytes())
    metadata = pq.read_metadata(source / "data.parquet")
    offset = metadata.row_group(2).column(0).data_page_offset
    raw[offset + 20:offset + 40] = b"\xff" * 20  # a damaged third row group
    manager = make_manager(tmp_path)
    manager.add_dataset("d", str(source), pipeline="files", partition_size="1GB")
    (source / "data.parquet").write_bytes(bytes(raw))
    manager.dataset("d")  # the record still describes the file by its size
    monkeypatch.setattr("pygestor.pipelines.files.check_identity", lambda *a: None)
    shown = manager.preview("d/default", 10)
    assert shown.column("id").to_pylist() == list(range(10))
    monkeypatch.setattr(formats, "PREVIEW_MAX_BYTES", 100)
    with pytest.raises(NotSupportedError, match="download one partition"):
        manager.preview("d/default", 10)


def test_preview_passes_the_source_policy_like_a_download(tmp_path):
    manager = make_manager(tmp_path)
    manager.add_dataset("toy", str(write_toy_source(tmp_path / "src")), pipeline="files")
    with pytest.raises(PolicyError, match="local paths are not allowed"):
        manager.preview("toy/train", 5, face="ui")  # the UI's policy: no roots, no local paths
    roots = make_manager(tmp_path, source_roots=[str(tmp_path / "src")])
    assert roots.preview("toy/train", 5, face="ui").num_rows == 5

    def tamper(record):
        record.subsets["train"].partitions[0].source["url"] = "file:///etc/passwd"
    manager.catalog.update("toy", tamper)
    with pytest.raises(SourceError, match="outside the dataset's source"):
        manager.preview("toy/train", 5)
    for rows in (0, 5000, "5"):
        with pytest.raises(ConfigError, match="rows must be"):
            manager.preview("toy/test", rows)
    with pytest.raises(ConfigError, match="not a subset"):
        manager.preview("toy", 5)


def test_a_pipeline_without_preview_says_so(tmp_path):
    from pygestor.catalog import Dataset, Subset
    from pygestor.pipelines.base import Pipeline

    manager = make_manager(tmp_path)
    with pytest.raises(NotSupportedError, match="download one partition"):
        Pipeline(manager.settings).preview(Dataset("x"), Subset("s"), 5)


# ============================================================================================
# Dry run of add


def test_plan_dataset_is_add_without_writing(tmp_path):
    manager = make_manager(tmp_path, source_roots=[str(tmp_path)])
    source = write_toy_source(tmp_path / "src")
    planned = manager.plan_dataset("toy", str(source), face="ui", description="rows")
    assert not Path(manager.settings.data_dir, "toy").exists() and manager.catalog.names() == []
    added = manager.add_dataset("toy", str(source), face="ui", description="rows")
    assert [(s.name, [(p.name, p.source) for p in s.partitions], s.schema)
            for s in planned.subsets.values()] == \
        [(s.name, [(p.name, p.source) for p in s.partitions], s.schema)
         for s in added.subsets.values()]
    assert planned.description == added.description == "rows"
    with pytest.raises(AlreadyExistsError):
        manager.plan_dataset("toy", str(source))
    with pytest.raises(PolicyError):
        manager.plan_dataset("etc", "/etc", face="ui")
    with pytest.raises(ConfigError, match="unknown option"):
        manager.plan_dataset("x", str(source), pipeline="files", revision="main")
