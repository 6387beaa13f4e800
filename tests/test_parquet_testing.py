"""Every file of apache/parquet-testing (tests/data) through the files pipeline and back."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pygestor.errors import SourceError

DATA = Path(__file__).parent / "data"
BROKEN = {
    "datapage_v1-corrupt-checksum.parquet": "CRC checksum verification failed",
    "large_string_map.brotli.parquet": "Nested data conversions not implemented",
}
FILES = sorted(p.name for p in DATA.glob("*.parquet"))


def test_all_files_are_here():
    assert len(FILES) >= 20 and set(BROKEN) <= set(FILES)


@pytest.mark.parametrize("name", [f for f in FILES if f not in BROKEN])
def test_round_trip_equals_pyarrow(local_manager, tmp_path, name):
    from pygestor.loaders.arrow import load_table

    source = tmp_path / "src"
    source.mkdir()
    shutil.copy(DATA / name, source / name)
    dataset = local_manager.add_dataset("pt", str(source), pipeline="files")
    assert list(dataset.subsets) == ["default"]
    local_manager.download("pt", progress=False)
    expected = pq.read_table(DATA / name)
    loaded = load_table(local_manager, "pt/default")
    assert loaded.num_rows == expected.num_rows
    assert loaded.schema.names == expected.schema.names
    assert loaded.cast(expected.schema).equals(expected) if loaded.schema != expected.schema \
        else loaded.equals(expected)
    assert local_manager.verify("pt").clean


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_unreadable_files_are_refused_cleanly(local_manager, tmp_path, name):
    source = tmp_path / "src"
    source.mkdir()
    shutil.copy(DATA / name, source / name)
    local_manager.add_dataset("bad", str(source), pipeline="files")
    before = local_manager.storage.read_bytes(local_manager.catalog.record_path("bad"))
    with pytest.raises(SourceError, match=BROKEN[name]) as info:
        local_manager.download("bad", progress=False)
    assert name in str(info.value)
    after = local_manager.storage.read_bytes(local_manager.catalog.record_path("bad"))
    assert before == after, "a refused file leaves the record untouched"
    folder = Path(local_manager.storage.path("bad", "default"))
    assert not folder.exists() or list(folder.iterdir()) == [], "no partition, no temp file"
