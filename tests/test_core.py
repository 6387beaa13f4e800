"""Storage, catalog, download, load and remove: the same tests on local, memory, S3 and GCS."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from sources import TEST_ROWS, TRAIN_ROWS

from pygestor.errors import (
    AlreadyExistsError,
    ConfigError,
    InvalidNameError,
    NotDownloadedError,
    NotFoundError,
)


def test_add_download_load_remove_verify(manager, toy_source):
    dataset = manager.add_dataset("toy", str(toy_source), pipeline="files")
    assert sorted(dataset.subsets) == ["test", "train"]
    train = dataset.subsets["train"]
    assert len(train.partitions) >= 3, "170 KB of CSV in 60 KB partitions"
    assert not any(p.downloaded for _, p in dataset.partitions)
    with pytest.raises(NotDownloadedError, match="pygestor download toy/train"):
        manager.select("toy/train")

    report = manager.download("toy/train", progress=False)
    assert len(report.fetched) == len(train.partitions) and not report.failed
    record = manager.dataset("toy")
    parts = record.subsets["train"].partitions
    assert all(p.downloaded and p.checksum.startswith("sha256:") for p in parts)
    assert sum(p.num_rows for p in parts) == TRAIN_ROWS
    assert all(sum(p.row_groups) == p.num_rows for p in parts)
    assert not any(p.downloaded for p in record.subsets["test"].partitions)

    from pygestor.loaders.arrow import load

    frame = load(manager, "toy/train", columns=["id", "label"])
    assert list(frame.columns) == ["id", "label"]
    assert sorted(frame["id"]) == list(range(TRAIN_ROWS)), "every row exactly once, in order"
    assert list(frame["label"][:12]) == [i % 10 for i in range(12)]

    # skip what is present; force re-fetches
    again = manager.download("toy/train", progress=False)
    assert again.fetched == [] and len(again.skipped) == len(parts)
    forced = manager.download("toy/train", partitions=["part-00000.parquet"], force=True,
                              progress=False)
    assert forced.fetched == ["train/part-00000.parquet"]

    removed = manager.remove("toy/train", partitions=["part-00001.parquet"])
    assert removed == ["train/part-00001.parquet"]
    assert not manager.storage.exists(manager.partition_path("toy", "train", "part-00001.parquet"))
    assert not manager.dataset("toy").subsets["train"].partition("part-00001.parquet").downloaded
    assert len(load(manager, "toy/train")) == TRAIN_ROWS - parts[1].num_rows
    assert manager.verify("toy").clean

    manager.download("toy", progress=False)
    assert len(load(manager, "toy/test")) == TEST_ROWS
    assert len(load(manager, "toy")) == TRAIN_ROWS + TEST_ROWS

    manager.delete_dataset("toy")
    assert manager.catalog.names() == []
    assert not manager.storage.exists(manager.partition_path("toy", "train", "part-00000.parquet"))


def test_verify_detects_and_repairs_corruption(manager, toy_source):
    manager.add_dataset("toy", str(toy_source), pipeline="files")
    manager.download("toy/train", progress=False)
    path = manager.partition_path("toy", "train", "part-00000.parquet")
    data = manager.storage.read_bytes(path)
    manager.storage.write_bytes(path, data[:100] + bytes([data[100] ^ 0xFF]) + data[101:])
    manager.storage.remove(manager.partition_path("toy", "train", "part-00001.parquet"))
    report = manager.verify("toy")
    assert not report.clean
    assert any("part-00000" in p and "checksum" in p for p in report.problems)
    assert any("part-00001" in p and "missing" in p for p in report.problems)
    repaired = manager.verify("toy", repair=True)
    assert len(repaired.repaired) == 2
    assert manager.verify("toy").clean
    record = manager.dataset("toy").subsets["train"]
    assert not record.partition("part-00000.parquet").downloaded
    manager.download("toy/train", progress=False)
    assert manager.verify("toy").clean


def test_adopts_complete_file_left_by_a_crash(manager, toy_source):
    """A partition placed but not recorded (process died in between) is kept, not re-fetched."""
    manager.add_dataset("toy", str(toy_source), pipeline="files")
    manager.download("toy/test", progress=False)

    def forget(record):
        for part in record.subsets["test"].partitions:
            part.mark_removed()
    manager.catalog.update("toy", forget)
    report = manager.download("toy/test", progress=False)
    assert report.adopted == ["test/part-00000.parquet"] and report.fetched == []
    assert manager.dataset("toy").subsets["test"].partitions[0].downloaded
    assert manager.verify("toy/test").clean


def test_record_is_one_json_per_dataset_with_schema_version(manager, toy_source):
    manager.add_dataset("toy", str(toy_source), pipeline="files")
    manager.add_dataset("owner/other", str(toy_source / "test"), pipeline="files")
    raw = json.loads(manager.storage.read_bytes(manager.catalog.record_path("toy")))
    assert raw["schema_version"] == 1 and raw["name"] == "toy"
    assert sorted(manager.catalog.names()) == ["owner/other", "toy"]
    assert [d["name"] for d in manager.list_datasets()] == ["owner/other", "toy"]
    assert str(manager.resolve("owner/other/default")) == "owner/other/default"
    assert manager.resolve("toy/train/part-00000.parquet").partition == "part-00000.parquet"
    with pytest.raises(AlreadyExistsError):
        manager.add_dataset("toy", str(toy_source), pipeline="files")


def test_unknown_references_list_close_matches(manager, toy_source):
    manager.add_dataset("toy", str(toy_source), pipeline="files")
    with pytest.raises(NotFoundError, match=r"did you mean .toy."):
        manager.info("tyo")
    with pytest.raises(NotFoundError, match="did you mean 'train'"):
        manager.info("toy/trian")
    with pytest.raises(NotFoundError, match=r"part-00000\.parquet"):
        manager.download("toy/train", partitions=["part-99999.parquet"], progress=False)
    with pytest.raises(InvalidNameError):
        manager.info("../etc")


@pytest.mark.parametrize("storage_kind", ["local", "s3", "gcs"])  # memory:// is per process
def test_concurrent_downloads_of_different_partitions_lose_no_update(manager, toy_source):
    """Two processes download disjoint partitions of one dataset; both updates survive."""
    import multiprocessing as mp

    manager.add_dataset("toy", str(toy_source), pipeline="files")
    names = [p.name for p in manager.dataset("toy").subsets["train"].partitions]
    halves = [names[0::2], names[1::2]]
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_download_some, args=(manager.settings, half)) for half in halves]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
        assert proc.exitcode == 0
    record = manager.dataset("toy")
    assert all(p.downloaded for p in record.subsets["train"].partitions)
    assert manager.verify("toy/train").clean


def _download_some(settings, names):
    from pygestor.manager import Manager

    manager = Manager(settings)
    for name in names:  # one partition per call: many read-modify-write cycles interleave
        manager.download("toy/train", partitions=[name], progress=False, max_workers=1)


def test_bad_filters_and_columns_are_clear_errors(manager, toy_source):
    from pygestor.loaders.arrow import load

    manager.add_dataset("toy", str(toy_source), pipeline="files")
    manager.download("toy/test", progress=False)
    with pytest.raises(ConfigError, match=r"unknown column.*.nope."):
        load(manager, "toy/test", columns=["nope"])
    with pytest.raises(ConfigError, match="unknown column 'nope'"):
        load(manager, "toy/test", filters=[("nope", "=", 1)])
    with pytest.raises(ConfigError, match="operator"):
        load(manager, "toy/test", filters=[("label", "~", 1)])
    frame = load(manager, "toy/test", filters=[("label", "=", 1)])
    assert len(frame) == len([i for i in range(TEST_ROWS) if i % 3 == 1])


def test_partition_files_are_valid_parquet_with_bounded_row_groups(manager, toy_source):
    manager.add_dataset("toy", str(toy_source), pipeline="files")
    manager.download("toy/train", progress=False)
    part = manager.dataset("toy").subsets["train"].partitions[0]
    with manager.storage.open(manager.partition_path("toy", "train", part.name)) as handle:
        metadata = pq.ParquetFile(handle).metadata
    assert metadata.num_rows == part.num_rows
    assert max(part.row_groups) <= manager.settings.row_group_size
    offset, length = part.footer
    assert offset + length == part.size
