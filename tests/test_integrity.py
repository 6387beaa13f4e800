"""Integrity: Pygestor never hands back wrong data, and never acts outside its root.

Each test here reproduces a way data went wrong on an earlier version (columns matched by
position, files of another source adopted, flipped bytes read as data, names from a tampered
record trusted...) with real files where it can: CSV and JSON that pip packages ship
(``tests/data/README.md``) and parquet files written by other engines.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from sources import write_labelled_source

from pygestor import errors
from pygestor.config import Settings
from pygestor.manager import Manager

DATA = Path(__file__).parent / "data"


def make_manager(root: Path, **settings: Any) -> Manager:
    options = {"partition_size": "60KB", "row_group_size": 1000, "retries": 2,
               "retry_backoff": 0.01, **settings}
    return Manager(Settings.load(env={}, data_dir=str(root), **options))


def same_rows(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    """Equal frames, whatever the column order of either."""
    return a.shape == b.shape and a[sorted(a.columns)].reset_index(drop=True).equals(
        b[sorted(b.columns)].reset_index(drop=True))


# ====================================================================== 1. columns by name
def test_csv_files_with_columns_in_another_order_are_matched_by_name(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "1.csv").write_text("a,b\n1,10\n2,20\n")
    (src / "2.csv").write_text("b,a\n30,3\n40,4\n")
    manager = make_manager(tmp_path / "data")
    manager.add_dataset("ab", str(src))
    manager.download("ab", progress=False)
    from pygestor.loaders.arrow import load

    frame = load(manager, "ab")
    assert frame.to_dict("list") == {"a": [1, 2, 3, 4], "b": [10, 20, 30, 40]}


def test_real_csv_split_in_two_files_with_reordered_columns(tmp_path: Path) -> None:
    """airports.csv (vega_datasets), its second half written with the columns reversed.
    (Pygestor reads null markers such as NA in text columns as nulls, like pandas.)"""
    original = pacsv.read_csv(DATA / "airports.csv", convert_options=pacsv.ConvertOptions(
        strings_can_be_null=True))
    half = original.num_rows // 2
    src = tmp_path / "src"
    src.mkdir()
    pacsv.write_csv(original.slice(0, half), src / "a.csv")
    rest = original.slice(half)
    pacsv.write_csv(rest.select(list(reversed(rest.column_names))), src / "b.csv")
    manager = make_manager(tmp_path / "data", partition_size="40KB")
    manager.add_dataset("airports", str(src))
    manager.download("airports", progress=False)
    from pygestor.loaders.arrow import load_table

    table = load_table(manager, "airports")
    assert table.column_names == original.column_names
    assert table.equals(original)


def test_parquet_files_with_columns_in_another_order_are_matched_by_name(tmp_path: Path
                                                                          ) -> None:
    """alltypes_plain.parquet (Impala), and the same rows rewritten with reversed columns."""
    original = pq.read_table(DATA / "alltypes_plain.parquet")
    src = tmp_path / "src"
    src.mkdir()
    pq.write_table(original, src / "1.parquet")
    pq.write_table(original.select(list(reversed(original.column_names))), src / "2.parquet")
    manager = make_manager(tmp_path / "data")
    manager.add_dataset("types", str(src))
    manager.download("types", progress=False)
    from pygestor.loaders.arrow import load_table

    table = load_table(manager, "types")
    assert table.equals(pa.concat_tables([original, original]))


def test_json_arrays_of_records_are_read(tmp_path: Path) -> None:
    """cars.json and iris.json (vega_datasets): a JSON array of records each, the commonest
    .json; read whole, every record kept, columns by name."""
    src = tmp_path / "src"
    for name in ("cars", "iris"):
        (src / name).mkdir(parents=True)
        shutil.copy(DATA / f"{name}.json", src / name)
    manager = make_manager(tmp_path / "data")
    manager.add_dataset("vega", str(src))
    manager.download("vega", progress=False)
    from pygestor.loaders.arrow import load

    for name in ("cars", "iris"):
        expected = pd.DataFrame(json.loads((DATA / f"{name}.json").read_text()))
        frame = load(manager, f"vega/{name}")
        assert list(frame.columns) == list(expected.columns)
        assert len(frame) == len(expected)
        for column in expected.columns:
            assert frame[column].tolist() == pytest.approx(expected[column].tolist(), nan_ok=True) \
                if expected[column].dtype.kind == "f" else \
                frame[column].where(frame[column].notna(), None).tolist() == \
                expected[column].where(expected[column].notna(), None).tolist()


def test_union_takes_files_with_different_columns_as_one_subset(tmp_path: Path) -> None:
    """Eight CSV files from gapminder (plotly), each with other columns: refused by default
    (it used to be accepted, and then 7 downloads of 8 failed); with schema="union" every file
    downloads and missing columns are nulls."""
    frame = pd.read_csv(DATA / "gapminder.csv.gz")
    extra = ["lifeExp", "pop", "gdpPercap", "iso_alpha", "iso_num", "centroid_lon",
             "centroid_lat", "continent"]
    src = tmp_path / "src"
    src.mkdir()
    for index, column in enumerate(extra):
        frame.iloc[index::8][["country", "year", column]].to_csv(src / f"{index}.csv",
                                                                  index=False)
    manager = make_manager(tmp_path / "data", partition_size="1MB")
    with pytest.raises(errors.SourceError, match=r"does not have the columns of .*union"):
        manager.add_dataset("gap", str(src))
    assert manager.catalog.names() == []
    manager.add_dataset("gap", str(src), schema="union")
    report = manager.download("gap", progress=False)
    assert len(report.fetched) == 8 and not report.failed
    from pygestor.loaders.arrow import load

    loaded = load(manager, "gap")
    assert len(loaded) == len(frame)
    assert set(loaded.columns) == {"country", "year", *extra}
    for column in extra:  # each value column is present for exactly its file's rows
        assert loaded[column].notna().sum() == frame.iloc[extra.index(column)::8][column] \
            .notna().sum()


def test_union_widens_types_only_where_lossless(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    pq.write_table(pa.table({"x": pa.array([1, 2], pa.int32()), "y": ["a", "b"]}),
                   src / "1.parquet")
    pq.write_table(pa.table({"x": pa.array([3], pa.int64()), "z": [1.5]}), src / "2.parquet")
    pq.write_table(pa.table({"x": pa.array([4.5], pa.float64())}), src / "3.parquet")
    manager = make_manager(tmp_path / "data")
    with pytest.raises(errors.SourceError, match=r"column 'x' is int64 .* but double"):
        manager.add_dataset("w", str(src), schema="union")
    (src / "3.parquet").unlink()
    manager.add_dataset("w", str(src), schema="union")
    manager.download("w", progress=False)
    from pygestor.loaders.arrow import load_table

    table = load_table(manager, "w")
    assert table.schema.field("x").type == pa.int64()
    assert table.to_pydict() == {"x": [1, 2, 3], "y": ["a", "b", None], "z": [None, None, 1.5]}


def test_csv_encoding_option(tmp_path: Path) -> None:
    """election.csv.gz (plotly) holds accented district names; the same rows in Latin-1 are
    read right with encoding="latin-1" (and cut in byte ranges)."""
    import gzip

    text = gzip.decompress((DATA / "election.csv.gz").read_bytes()).decode("utf-8")
    src = tmp_path / "src"
    src.mkdir()
    (src / "election.csv").write_bytes(text.encode("latin-1"))
    manager = make_manager(tmp_path / "data", partition_size="2KB")
    manager.add_dataset("montreal", str(src), encoding="latin-1")
    assert len(manager.dataset("montreal").subsets["default"].partitions) > 1
    manager.download("montreal", progress=False)
    from pygestor.loaders.arrow import load

    frame = load(manager, "montreal")
    expected = pd.read_csv(DATA / "election.csv.gz")
    assert frame["district"].tolist() == expected["district"].tolist()
    assert any("é" in name for name in frame["district"])


# ====================================================================== 2. nothing adopted
def test_files_of_an_earlier_dataset_of_the_same_name_are_set_aside(
        manager: Manager, tmp_path: Path) -> None:
    """delete --keep-data, add the name again from another source, download: the old rows
    used to come back under the new name and verify said OK."""
    from pygestor.loaders.arrow import load

    manager.add_dataset("x", str(write_labelled_source(tmp_path / "old", "old")))
    manager.download("x", progress=False)
    old = manager.dataset("x").subsets["default"]
    manager.delete_dataset("x", data=False)
    manager.add_dataset("x", str(write_labelled_source(tmp_path / "new", "new")))
    report = manager.download("x", progress=False)
    assert not report.adopted and len(report.set_aside) == len(old.partitions)
    assert all("another source" in why for why in report.set_aside.values())
    assert set(load(manager, "x")["label"]) == {"new"}
    assert manager.verify("x").clean
    aside = [p for p in manager.storage.find(manager.storage.path("x", "_pygestor"))
             if p.endswith(".parquet")]
    assert len(aside) == len(old.partitions), "set aside, never deleted"


def test_same_source_added_again_adopts_its_files(local_manager: Manager, tmp_path: Path
                                                   ) -> None:
    manager = local_manager
    source = write_labelled_source(tmp_path / "src", "kept")
    manager.add_dataset("x", str(source))
    first = manager.download("x", progress=False)
    manager.delete_dataset("x", data=False)
    manager.add_dataset("x", str(source))
    again = manager.download("x", progress=False)
    assert sorted(again.adopted) == sorted(first.fetched) and not again.fetched
    assert not again.set_aside and manager.verify("x").clean


def test_a_foreign_file_in_a_partition_place_is_set_aside(local_manager: Manager,
                                                          tmp_path: Path) -> None:
    manager = local_manager
    manager.add_dataset("x", str(write_labelled_source(tmp_path / "src", "mine")))
    path = Path(manager.partition_path("x", "default", "part-00000.parquet"))
    path.parent.mkdir(parents=True)
    shutil.copy(DATA / "alltypes_plain.parquet", path)
    report = manager.download("x", progress=False)
    assert "default/part-00000.parquet" in report.set_aside
    assert "no Pygestor provenance" in report.set_aside["default/part-00000.parquet"]
    assert pq.read_table(path).column_names == ["id", "label"]


# ====================================================================== 5. nested names
@pytest.mark.parametrize("order", ["dataset first", "subset first"])
def test_nested_names_never_share_a_folder(local_manager: Manager, tmp_path: Path,
                                           order: str) -> None:
    manager = local_manager
    nested = write_labelled_source(tmp_path / "nested" / "c", "nested").parent
    outer = tmp_path / "outer"
    write_labelled_source(outer / "y" / "c", "outer")
    if order == "dataset first":
        manager.add_dataset("q/y", str(nested))
        with pytest.raises(errors.InvalidNameError, match=r"subset 'y/c' of 'q' would share"):
            manager.add_dataset("q", str(outer))
        assert manager.catalog.names() == ["q/y"]
    else:
        manager.add_dataset("q", str(outer))
        with pytest.raises(errors.InvalidNameError, match=r"'q/y' would share folders"):
            manager.add_dataset("q/y", str(nested))
        assert manager.catalog.names() == ["q"]


def test_operations_refuse_a_dataset_whose_subsets_overlap_another_dataset(
        local_manager: Manager, tmp_path: Path) -> None:
    """Records made before the overlap was refused (or tampered with): download, remove and
    delete of the outer dataset never touch the nested one's files."""
    manager = local_manager
    nested = write_labelled_source(tmp_path / "nested" / "c", "nested").parent
    manager.add_dataset("q/y", str(nested))
    manager.download("q/y", progress=False)
    outer = write_labelled_source(tmp_path / "outer" / "z", "outer").parent
    manager.add_dataset("q", str(outer))
    record = Path(manager.catalog.record_path("q"))
    data = json.loads(record.read_text())
    data["subsets"][0]["name"] = "y/c"  # now q/y/c: q/y's folder
    record.write_text(json.dumps(data))
    before = sorted(p.name for p in (tmp_path / "data" / "q" / "y" / "c").iterdir())
    for action in (lambda: manager.download("q", progress=False), lambda: manager.remove("q"),
                   lambda: manager.delete_dataset("q")):
        with pytest.raises(errors.IntegrityError, match=r"shares the folder of dataset 'q/y'"):
            action()
    assert sorted(p.name for p in (tmp_path / "data" / "q" / "y" / "c").iterdir()) == before
    assert manager.verify("q/y").clean


# ====================================================================== 3. bit rot
def _read_paths(manager: Manager, ref: str) -> dict[str, Any]:
    """Every way to read data back, each returning something comparable to pandas."""
    from pygestor.loaders.arrow import load, sample
    from pygestor.loaders.batches import iter_batches

    def batches() -> pd.DataFrame:
        return pa.Table.from_batches(list(iter_batches(manager, ref, batch_size=700))) \
            .to_pandas()

    def dataset() -> pd.DataFrame:
        from pygestor import PygestorDataset

        ds = PygestorDataset(ref, batch_size=500, format="arrow", manager=manager)
        return pa.Table.from_batches(list(ds)).to_pandas()

    return {"load": lambda: load(manager, ref), "iter_batches": batches,
            "PygestorDataset": dataset, "sample": lambda: sample(manager, ref, 50)}


def _flip_and_read(manager: Manager, ref: str, path: str, original: bytes,
                   positions: list[int], expected: dict[str, pd.DataFrame],
                   put: Any) -> dict[str, int]:
    """Flip 4 bytes at each position in turn; count what every read path did."""
    outcome = {"ok": 0, "refused": 0, "silent": 0, "raw": 0}
    for position in positions:
        damaged = bytearray(original)
        damaged[position:position + 4] = bytes(b ^ 0xFF for b in damaged[position:position + 4])
        put(path, bytes(damaged))
        for name, read in _read_paths(manager, ref).items():
            try:
                frame = read()
            except errors.IntegrityError as exc:
                assert "is damaged" in str(exc) and "pygestor verify" in str(exc), str(exc)
                outcome["refused"] += 1
                continue
            except Exception as exc:  # counted: must never happen
                outcome["raw"] += 1
                print(f"raw {type(exc).__name__} at {position} via {name}: {exc}")
                continue
            if frame.equals(expected[name]):
                outcome["ok"] += 1
            else:
                outcome["silent"] += 1
                print(f"silent wrong data at {position} via {name}")
    put(path, original)
    return outcome


def _bit_rot_world(manager: Manager, tmp_path: Path) -> tuple[str, str, bytes]:
    """seattle-weather.csv (vega_datasets) downloaded as one partition of several row groups;
    returns (reference, partition path, its bytes)."""
    src = tmp_path / "weather"
    src.mkdir()
    shutil.copy(DATA / "seattle-weather.csv", src)
    manager.add_dataset("weather", str(src), partition_size="1MB")
    manager.download("weather", progress=False)
    path = manager.partition_path("weather", "default", "part-00000.parquet")
    with manager.storage.open(path, "rb") as handle:
        original = handle.read()
    return "weather", path, original


def _positions(size: int, count: int) -> list[int]:
    """``count`` positions spread over the whole file, footer and magic bytes included."""
    step = max(1, (size - 8) // count)
    return sorted({min(size - 4, k * step) for k in range(count)} | {0, size - 12, size - 4})


def test_bit_rot_is_never_returned_as_data_locally(tmp_path: Path) -> None:
    manager = make_manager(tmp_path / "data", row_group_size=300)
    ref, path, original = _bit_rot_world(manager, tmp_path)
    expected = {name: read() for name, read in _read_paths(manager, ref).items()}
    positions = _positions(len(original), 120)
    assert len(positions) >= 100

    def put(target: str, data: bytes) -> None:
        Path(target).write_bytes(data)
    outcome = _flip_and_read(manager, ref, path, original, positions, expected, put)
    print(f"bit rot, local: {len(positions)} positions x 4 read paths: {outcome}")
    assert outcome["silent"] == 0 and outcome["raw"] == 0, outcome
    assert outcome["refused"] > 0


@pytest.mark.parametrize("storage_kind", ["memory", "s3", "gcs"])
def test_bit_rot_is_never_returned_as_data_from_a_bucket(manager: Manager,
                                                         tmp_path: Path) -> None:
    ref, path, original = _bit_rot_world(manager, tmp_path)
    expected = {name: read() for name, read in _read_paths(manager, ref).items()}
    positions = _positions(len(original), 24)

    def put(target: str, data: bytes) -> None:
        manager.storage.fs.pipe_file(target, data)
        manager.storage.fs.invalidate_cache()
    outcome = _flip_and_read(manager, ref, path, original, positions, expected, put)
    assert outcome["silent"] == 0 and outcome["raw"] == 0, outcome


def test_download_never_skips_a_damaged_file(manager: Manager, tmp_path: Path) -> None:
    ref, path, original = _bit_rot_world(manager, tmp_path)
    for position in (100, len(original) // 2, len(original) - 30):
        damaged = bytearray(original)
        damaged[position] ^= 0xFF
        manager.storage.fs.pipe_file(path, bytes(damaged))
        manager.storage.fs.invalidate_cache()
        report = manager.download(ref, progress=False)
        assert report.fetched == ["default/part-00000.parquet"] and not report.skipped
        assert "not the recorded one" in report.set_aside["default/part-00000.parquet"]
        with manager.storage.open(path, "rb") as handle:
            assert handle.read() == original
    again = manager.download(ref, progress=False)
    assert again.skipped == ["default/part-00000.parquet"] and not again.set_aside


def test_bytes_damaged_in_transit_are_fetched_again(s3_server: dict[str, Any],
                                                    tmp_path: Path) -> None:
    """A proxy flips 4 bytes of one GET answer: the read checks fail, the bytes are fetched
    again, and the data come back right."""
    from faultproxy import FaultProxy, Rule

    from pygestor.loaders.arrow import load

    with FaultProxy(s3_server["endpoint"]) as proxy:
        options = {**s3_server["options"], "client_kwargs": {"endpoint_url": proxy.url}}
        root = f"s3://{s3_server['bucket']}/transit-{os.getpid()}"
        manager = Manager(Settings.load(env={}, data_dir=root, storage_options=options,
                                        row_group_size=300, retries=3, retry_backoff=0.01))
        ref, _, _ = _bit_rot_world(manager, tmp_path)
        expected = load(manager, ref)
        for fraction in (0.3, 0.999):  # a data page; the footer
            rule = proxy.add(Rule("corrupt", method="GET", path=r"part-00000\.parquet",
                                  fraction=fraction))[0]
            assert load(manager, ref).equals(expected)
            assert rule.applied == 1
            proxy.clear()


# ====================================================================== 4. what a read covers
def test_reading_subsets_with_different_columns_is_refused_or_a_union(tmp_path: Path) -> None:
    from pygestor.loaders.arrow import load

    src = tmp_path / "multi"
    for name, column in (("a", "x"), ("b", "y")):
        (src / name).mkdir(parents=True)
        (src / name / "d.csv").write_text(f"id,{column}\n1,2\n")
    manager = make_manager(tmp_path / "data")
    manager.add_dataset("multi", str(src))
    manager.download("multi", progress=False)
    with pytest.raises(errors.ConfigError, match=r"'multi' covers subsets with different "
                                                 "columns: subset b does not have the columns "
                                                 "of a: it lacks 'x' and has 'y'.*union"):
        load(manager, "multi")
    from pygestor.loaders.arrow import load_table

    table = load_table(manager, "multi", schema="union")
    assert table.to_pydict() == {"id": [1, 1], "x": [2, None], "y": [None, 2]}


def test_a_partial_read_says_so_once_or_refuses(tmp_path: Path) -> None:
    from pygestor.errors import PartialDataWarning
    from pygestor.loaders.arrow import load

    manager = make_manager(tmp_path / "data", partition_size="20KB")
    manager.add_dataset("x", str(write_labelled_source(tmp_path / "src", "a", rows=6000)))
    names = [p.name for p in manager.dataset("x").subsets["default"].partitions]
    assert len(names) >= 3
    manager.download("x/default", partitions=names[:2], progress=False)
    with pytest.warns(PartialDataWarning, match=f"reading 2 of {len(names)} partitions"):
        load(manager, "x")
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load(manager, "x")  # once per process and reference
    strict = make_manager(tmp_path / "data", partition_size="20KB", partial_reads="error")
    with pytest.raises(errors.NotDownloadedError, match=r"reading 2 of .*partial_reads"):
        load(strict, "x")


# ====================================================================== 6. records untrusted
def _tamper(manager: Manager, name: str, change: Any) -> None:
    record = Path(manager.catalog.record_path(name))
    data = json.loads(record.read_text())
    change(data)
    record.write_text(json.dumps(data))


def _downloaded_toy(manager: Manager, tmp_path: Path) -> None:
    manager.add_dataset("toy", str(write_labelled_source(tmp_path / "src", "toy")))
    manager.download("toy", progress=False)


def test_a_partition_name_that_leaves_the_folder_deletes_nothing(local_manager: Manager,
                                                                  tmp_path: Path) -> None:
    manager = local_manager
    _downloaded_toy(manager, tmp_path)
    victim = tmp_path / "victim" / "x"
    victim.parent.mkdir()
    victim.write_text("someone's file")
    escape = os.path.relpath(victim, manager.storage.path("toy", "default"))

    def change(data: dict[str, Any]) -> None:
        data["subsets"][0]["partitions"][0]["name"] = escape
    _tamper(manager, "toy", change)
    for action in (lambda: manager.remove("toy"), lambda: manager.download("toy", force=True,
                                                                           progress=False),
                   lambda: manager.verify("toy"), lambda: manager.delete_dataset("toy")):
        with pytest.raises(errors.IntegrityError, match=r"invalid name"):
            action()
    assert victim.read_text() == "someone's file"


def test_a_subset_name_that_leaves_the_folder_is_refused(local_manager: Manager,
                                                         tmp_path: Path) -> None:
    manager = local_manager
    _downloaded_toy(manager, tmp_path)
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")

    def change(data: dict[str, Any]) -> None:
        data["subsets"][0]["name"] = "../../outside"
    _tamper(manager, "toy", change)
    for action in (lambda: manager.remove("toy"), lambda: manager.info("toy"),
                   lambda: manager.download("toy", progress=False)):
        with pytest.raises(errors.IntegrityError, match=r"invalid name"):
            action()
    rows = manager.list_datasets()
    assert rows == [{"name": "toy", "damaged": rows[0]["damaged"]}]
    assert "cannot leave their folder" in rows[0]["damaged"]
    manager.delete_dataset("toy")  # a damaged record can still be deleted
    assert (outside / "keep.txt").read_text() == "keep"
    assert manager.catalog.names() == []


def test_deleting_does_not_follow_a_symlink_out_of_data_dir(local_manager: Manager,
                                                            tmp_path: Path) -> None:
    manager = local_manager
    manager.add_dataset("toy", str(write_labelled_source(tmp_path / "src", "toy")))
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "part-00000.parquet").write_text("not yours")
    folder = Path(manager.storage.path("toy", "default"))
    folder.parent.mkdir(parents=True, exist_ok=True)
    folder.symlink_to(outside, target_is_directory=True)
    with pytest.raises(errors.PygestorError, match=r"leads out of data_dir"):
        manager.remove("toy")
    assert (outside / "part-00000.parquet").read_text() == "not yours"


def test_a_damaged_record_hides_nothing_and_can_be_deleted(local_manager: Manager,
                                                           tmp_path: Path) -> None:
    manager = local_manager
    _downloaded_toy(manager, tmp_path)
    manager.add_dataset("other", str(write_labelled_source(tmp_path / "src2", "other")))
    record = Path(manager.catalog.record_path("toy"))
    record.write_bytes(record.read_bytes()[:50])  # truncated
    rows = {row["name"]: row for row in manager.list_datasets()}
    assert set(rows) == {"other", "toy"} and "not valid JSON" in rows["toy"]["damaged"]
    assert "damaged" not in rows["other"]
    manager.delete_dataset("toy")
    assert manager.catalog.names() == ["other"]
    assert not Path(manager.storage.path("toy")).exists()


def test_verify_repair_rebuilds_a_damaged_record_from_its_files(local_manager: Manager,
                                                                tmp_path: Path) -> None:
    from pygestor.loaders.arrow import load

    manager = local_manager
    manager.add_dataset("toy", str(write_labelled_source(tmp_path / "src", "toy", rows=8000)))
    names = [p.name for p in manager.dataset("toy").subsets["default"].partitions]
    manager.download("toy/default", partitions=names[:2], progress=False)
    expected = load(manager, "toy")
    record = Path(manager.catalog.record_path("toy"))
    record.write_text("{ damaged")
    report = manager.verify("toy", repair=True)
    assert any("record rebuilt from 2 partition file(s)" in r for r in report.repaired)
    rebuilt = manager.dataset("toy")
    assert [p.name for p in rebuilt.subsets["default"].partitions] == names
    assert [p.name for p in rebuilt.subsets["default"].downloaded] == names[:2]
    assert load(manager, "toy").equals(expected)
    assert manager.verify("toy").clean
    assert list(record.parent.glob("metadata.json.damaged-*")), "the damaged one is kept"


def test_a_record_above_the_size_cap_is_refused_unread(local_manager: Manager,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
    from pygestor import catalog

    manager = local_manager
    _downloaded_toy(manager, tmp_path)
    monkeypatch.setattr(catalog, "MAX_RECORD_BYTES", 100)
    with pytest.raises(errors.IntegrityError, match=r"above the 100-byte limit"):
        manager.info("toy")
    assert "above the 100-byte limit" in manager.list_datasets()[0]["damaged"]


def test_a_record_moved_to_another_folder_is_not_trusted(local_manager: Manager,
                                                         tmp_path: Path) -> None:
    manager = local_manager
    _downloaded_toy(manager, tmp_path)
    target = Path(manager.storage.path("other"))
    target.mkdir()
    shutil.copy(manager.catalog.record_path("toy"), target / "metadata.json")
    with pytest.raises(errors.IntegrityError, match=r"says it is dataset 'toy'"):
        manager.info("other")


# ====================================================================== 7. credentials
def test_no_credential_is_stored_or_printed(local_manager: Manager, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    manager = local_manager
    src = write_labelled_source(tmp_path / "src", "a")
    options = {"source_options": {"client_kwargs": {"headers": {"Authorization": "Bearer S3CR"},
                                                    "api_token": "S3CR", "region": "x"},
                                  "password": "S3CR"}}
    manager.add_dataset("x", str(src), **options)
    raw = Path(manager.catalog.record_path("x")).read_text()
    assert "S3CR" not in raw
    stored = manager.dataset("x").options["source_options"]
    assert stored == {"client_kwargs": {"headers": {}, "region": "x"}}
    assert "S3CR" not in json.dumps(manager.info("x")) + json.dumps(manager.list_datasets())
    assert "S3CR" not in capsys.readouterr().err


def test_no_error_quotes_a_source_file(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "d.csv").write_text("a,b\n1,2\n" + "3,4\n" * 20 + "5,TOPSECRET-VALUE\n")
    manager = make_manager(tmp_path / "data")
    manager.add_dataset("x", str(src), infer_bytes=16)
    with pytest.raises(errors.SourceError) as info:
        manager.download("x", progress=False)
    assert "TOPSECRET" not in str(info.value) and "d.csv" in str(info.value)


# ====================================================================== 8. source policy
def test_the_web_ui_policy_refuses_local_paths_outside_its_roots(local_manager: Manager,
                                                                 tmp_path: Path) -> None:
    manager = local_manager
    home = tmp_path / "home"
    home.mkdir()
    (home / ".aws").mkdir()
    (home / ".aws" / "credentials.csv").write_text("key,secret\nAKIA,xyz\n")
    with pytest.raises(errors.PolicyError, match=r"local paths are not allowed"):
        manager.add_dataset("creds", str(home / ".aws"), face="ui")
    allowed = make_manager(tmp_path / "data", source_roots=[str(tmp_path / "shared")])
    (tmp_path / "shared").mkdir()
    with pytest.raises(errors.PolicyError, match=r"outside the folders"):
        allowed.add_dataset("creds", str(home / ".aws"), face="ui")
    src = write_labelled_source(tmp_path / "shared" / "ok", "fine")
    allowed.add_dataset("ok", str(src), face="ui")
    assert manager.catalog.names() == ["ok"]


def test_symlinks_out_of_a_source_folder_are_not_followed(local_manager: Manager,
                                                          tmp_path: Path) -> None:
    manager = local_manager
    src = write_labelled_source(tmp_path / "src", "a")
    secret = tmp_path / "secret.csv"
    secret.write_text("user,password\nroot,hunter2\n")
    (src / "passwd.csv").symlink_to(secret)
    (src / "etc").symlink_to("/etc", target_is_directory=True)
    dataset = manager.add_dataset("x", str(src))
    urls = [p.source["url"] for _, p in dataset.partitions]
    assert urls and all("passwd" not in u and "/etc/" not in u for u in urls)


def test_a_tampered_source_url_is_checked_again_at_download(local_manager: Manager,
                                                            tmp_path: Path) -> None:
    manager = local_manager
    manager.add_dataset("x", str(write_labelled_source(tmp_path / "src", "a")))
    secret = tmp_path / "secret.csv"
    secret.write_text("id,label\n1,stolen\n")

    def change(data: dict[str, Any]) -> None:
        data["subsets"][0]["partitions"][0]["source"]["url"] = f"file://{secret}"
    _tamper(manager, "x", change)
    with pytest.raises(errors.SourceError, match=r"outside the dataset's source"):
        manager.download("x", progress=False)
    assert not manager.dataset("x").subsets["default"].partitions[0].downloaded


def test_private_addresses_are_refused_unless_allowed(tmp_path: Path) -> None:
    manager = make_manager(tmp_path / "data")
    for url in ("http://127.0.0.1:9/x.csv", "http://localhost:9/x.csv", "http://[::1]:9/x.csv",
                "http://10.1.2.3/x.csv", "http://169.254.169.254/latest/"):
        with pytest.raises(errors.PolicyError, match=r"allowed_hosts"):
            manager.add_dataset("x", url)
    endpoint = {"source_options": {"client_kwargs": {"endpoint_url": "http://169.254.169.254"}}}
    with pytest.raises(errors.PolicyError, match=r"link-local"):
        manager.add_dataset("x", "s3://bucket/data", **endpoint)
    allowed = make_manager(tmp_path / "data", allowed_hosts=["127.0.0.1"])
    with pytest.raises(errors.SourceError, match=r"127.0.0.1:9"):  # allowed: tried, unreachable
        allowed.add_dataset("x", "http://127.0.0.1:9/x.csv")


# ====================================================================== 9. verify, concurrently
def test_verify_repair_does_not_undo_a_concurrent_redownload(local_manager: Manager,
                                                            tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    """The file is damaged when verify checks it; before repair acts, another process
    removes it and downloads it again. The repair must leave the new file and record alone."""
    manager = local_manager
    _downloaded_toy(manager, tmp_path)
    path = Path(manager.partition_path("toy", "default", "part-00000.parquet"))
    good = path.read_bytes()
    path.write_bytes(good[:-20] + bytes(20))
    real = Manager._check_partitions

    def check_then_race(self: Manager, *args: Any) -> Any:
        findings = real(self, *args)
        other = make_manager(tmp_path / "data")  # "another process"
        other.remove("toy/default", partitions=["part-00000.parquet"])
        other.download("toy", progress=False)
        return findings
    monkeypatch.setattr(Manager, "_check_partitions", check_then_race)
    report = manager.verify("toy", repair=True)
    assert any("changed while being checked" in r for r in report.repaired)
    monkeypatch.undo()
    assert path.read_bytes() == good
    assert manager.verify("toy").clean


def test_verify_reports_a_file_removed_while_it_is_checked(local_manager: Manager,
                                                           tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    from pygestor import integrity

    manager = local_manager
    _downloaded_toy(manager, tmp_path)
    real = integrity.file_checksum

    def vanish(storage: Any, path: str) -> str:
        os.unlink(path)
        return real(storage, path)
    monkeypatch.setattr(integrity, "file_checksum", vanish)
    report = manager.verify("toy")
    assert report.problems and all("removed while it was being checked" in p
                                   for p in report.problems)


# ====================================================================== 10. smaller holes
def test_an_http_server_without_range_requests_is_streamed(tmp_path: Path) -> None:
    """Python's http.server answers every GET whole (no Range): text and parquet sources are
    read from the start instead of being refused."""
    import functools
    import http.server
    import threading

    served = tmp_path / "served"
    write_labelled_source(served / "csv", "web", rows=4000)
    (served / "pq").mkdir()
    shutil.copy(DATA / "alltypes_plain.parquet", served / "pq")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        manager = make_manager(tmp_path / "data", partition_size="20KB",
                               allowed_hosts=["127.0.0.1"])
        from pygestor.loaders.arrow import load, load_table

        manager.add_dataset("web", f"{base}/csv/d.csv")
        parts = manager.dataset("web").subsets["default"].partitions
        assert len(parts) == 1 and parts[0].source["stream"] is True
        manager.download("web", progress=False)
        assert len(load(manager, "web")) == 4000
        manager.add_dataset("webpq", f"{base}/pq/alltypes_plain.parquet")
        manager.download("webpq", progress=False)
        assert load_table(manager, "webpq").equals(pq.read_table(DATA / "alltypes_plain.parquet"))
    finally:
        server.shutdown()


def test_a_source_file_that_changed_since_add_is_refused(local_manager: Manager,
                                                         tmp_path: Path) -> None:
    manager = local_manager
    src = write_labelled_source(tmp_path / "src", "a")
    manager.add_dataset("x", str(src))
    with open(src / "d.csv", "a") as handle:
        handle.write("99999,late\n")
    with pytest.raises(errors.SourceError, match=r"changed since the dataset was added"):
        manager.download("x", progress=False)


@pytest.mark.parametrize("kind", ["file", "missing bucket"])
def test_a_bad_data_dir_is_one_clear_error_on_every_command(tmp_path: Path, kind: str,
                                                            s3_server: dict[str, Any]) -> None:
    import subprocess
    import sys

    pygestor = str(Path(sys.executable).parent / "pygestor")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYGESTOR_")}
    if kind == "file":
        data_dir = tmp_path / "a-file"
        data_dir.write_text("x")
        expected = "is a file"
    else:
        data_dir = "s3://no-such-bucket-pygestor/root"
        env["PYGESTOR_STORAGE_OPTIONS"] = json.dumps(s3_server["options"])
        expected = "bucket .* does not exist"
    src = write_labelled_source(tmp_path / "src", "a")
    for command in (["list"], ["info", "x"], ["add", "x", str(src)], ["download", "x"],
                    ["remove", "x"], ["delete", "x"], ["verify", "x"], ["head", "x"],
                    ["schema", "x"], ["check-updates", "x"], ["plan", "x"]):
        result = subprocess.run([pygestor, "--data-dir", str(data_dir), *command],
                                capture_output=True, text=True, env=env, timeout=120)
        assert result.returncode != 0, command
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
        import re

        assert re.search(expected, lines[0]), (command, lines[0])
