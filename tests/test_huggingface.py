"""The HuggingFaceParquet pipeline against the local fake Hub (tests/hubserver.py).

Discovery for each repo layout, downloads into local and S3 storage, large files cut into
several partitions, resume (after a failure and after a killed process), revision pinning,
updates, tokens, clear errors, ``pipeline="auto"`` and the command line.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hubserver as hs
import pyarrow.parquet as pq
import pytest

from pygestor.catalog import Partition
from pygestor.config import Settings
from pygestor.errors import ConfigError, SourceError
from pygestor.loaders.arrow import load
from pygestor.manager import Manager
from pygestor.pipelines import formats
from pygestor.pipelines import huggingface as hf

ROOT = Path(__file__).resolve().parents[1]
WIKI = "wikimedia/wikipedia"
SPEECH = "facebook/multilingual_librispeech"


# ====================================================================== fixtures and helpers
@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[hs.HubServer]:
    """The fake Hub with the standard repos; huggingface_hub points at it, HF_HOME in tmp."""
    with hs.serving(hs.all_repos(), tmp_path_factory.mktemp("hf_home")) as server:
        yield server


@pytest.fixture(autouse=True)
def _clean_hub(hub: hs.HubServer) -> Iterator[None]:
    hub.clear_failures()
    hub.clear_log()
    yield
    hub.clear_failures()


def make_manager(data_dir: str | Path, storage_options: dict[str, Any] | None = None,
                 partition_size: str = "3KB", retries: int = 2) -> Manager:
    settings = Settings.load(data_dir=str(data_dir), storage_options=storage_options or {},
                             partition_size=partition_size, row_group_size=1000,
                             retries=retries, retry_backoff=0.01, max_workers=4)
    return Manager(settings)


@pytest.fixture
def manager(tmp_path: Path) -> Manager:
    return make_manager(tmp_path / "data")


def new_repo(hub: hs.HubServer, factory: Any, name: str = "repo") -> str:
    """A fresh copy of a standard repo under a unique id (tests that change repos use these)."""
    repo_id = f"t{uuid.uuid4().hex[:8]}/{name}"
    hub.add_repo(factory(repo_id))
    return repo_id


def content(hub: hs.HubServer, repo: str, path: str, revision: str = "main") -> bytes:
    return hub.repos[repo].files(revision)[path]


def ids_of(data: bytes) -> list[int]:
    import pyarrow as pa

    return pq.read_table(pa.BufferReader(data)).column("id").to_pylist()


def gets(hub: hs.HubServer) -> list[str]:
    """Paths of the files downloaded (GET on the resolve route) since the log was cleared."""
    return [path.split("/resolve/", 1)[1].split("/", 1)[1]
            for method, path, _ in hub.requests("GET", "/resolve/")]


def api_calls(hub: hs.HubServer) -> list[str]:
    return [path for _, path, _ in hub.requests(contains="/api/")]


def leftovers(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob(".*") if p.is_file()
                  and not p.name.endswith(".lock"))


def hub_subprocess_env(hub: hs.HubServer, home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in hs.HUB_ENV_UNSET
           and not k.startswith("PYGESTOR_")}
    env.update(hs.hub_env(hub.url, home))
    env.update(extra)
    return env


# ====================================================================== discovery
def test_discover_multi_config_one_api_call(hub: hs.HubServer, manager: Manager) -> None:
    dataset = manager.add_dataset("wiki", f"https://huggingface.co/datasets/{WIKI}",
                                  pipeline="HuggingFaceParquet")
    assert api_calls(hub) == [f"/api/datasets/{WIKI}/revision/main"], "one call, no footers"
    assert gets(hub) == []
    sha = hub.repos[WIKI].sha()
    assert dataset.revision == sha and dataset.options["revision"] == sha
    assert list(dataset.subsets) == ["20231101.en/train", "20231101.fr/train"]
    assert dataset.extra["hf"]["repo"] == WIKI and dataset.extra["hf"]["tracking"] == "main"
    en = dataset.subsets["20231101.en/train"]
    assert en.extra == {"config": "20231101.en", "split": "train"}
    first = "20231101.en/train-00000-of-00002.parquet"
    data = content(hub, WIKI, first)
    pieces = [p for p in en.partitions if p.source["path"] == first]
    assert len(pieces) == 3, "6.3 KB in 3 KB partitions"
    assert [p.source["piece"] for p in pieces] == [0, 1, 2]
    assert all(p.source["sha256"] == hashlib.sha256(data).hexdigest() for p in pieces)
    assert all(p.source["size"] == len(data) and p.source["blob_id"] for p in pieces)
    assert sum(p.source_bytes for p in pieces) == len(data)
    assert pieces[0].source["url"] == f"hf://datasets/{WIKI}@{sha}/{first}"
    assert [p.name for p in en.partitions] == [f"part-{i:05d}.parquet" for i in range(5)]
    # rows are filled in on download, not read from footers when adding
    assert all(p.source_rows is None for p in en.partitions)


def test_discover_split_per_file_and_yaml_configs(hub: hs.HubServer, manager: Manager) -> None:
    dataset = manager.add_dataset("mls", f"hf://datasets/{SPEECH}")
    assert dataset.pipeline == "HuggingFaceParquet"
    assert list(dataset.subsets) == ["dutch/train", "dutch/test", "german/train", "german/dev"]
    files = {s: sorted({p.source["path"] for p in sub.partitions})
             for s, sub in dataset.subsets.items()}
    assert files["dutch/train"] == ["dutch/train-00000-of-00002.parquet",
                                    "dutch/train-00001-of-00002.parquet"]
    assert files["dutch/test"] == ["dutch/test-00000-of-00001.parquet"]
    assert files["german/dev"] == ["german/dev-00000-of-00001.parquet"]


def test_discover_layout_without_card(hub: hs.HubServer, manager: Manager) -> None:
    """Without YAML configs: each folder is a config, split names come from file names."""
    repo = new_repo(hub, hs.librispeech_like, "nocard")
    hub.commit(repo, {"README.md": b"# no configs\n"})
    dataset = manager.add_dataset("mls2", repo, pipeline="HuggingFaceParquet")
    assert sorted(dataset.subsets) == ["dutch/test", "dutch/train", "german/dev",
                                       "german/train"]


def test_discover_convert_only_and_default_config(hub: hs.HubServer, manager: Manager) -> None:
    converted = manager.add_dataset("csv", "https://huggingface.co/datasets/someone/csv-only")
    assert api_calls(hub) == ["/api/datasets/someone/csv-only/revision/main",
                              "/api/datasets/someone/csv-only/revision/refs/convert/parquet"]
    assert list(converted.subsets) == ["default/train", "default/test"]
    assert converted.revision == hub.repos["someone/csv-only"].sha(hf.CONVERT_REF)
    assert converted.extra["hf"]["converted"] is True
    assert converted.extra["hf"]["tracking"] == hf.CONVERT_REF
    paths = {p.source["path"] for _, p in converted.partitions}
    assert paths == {"default/train/0000.parquet", "default/test/0000.parquet"}

    plain = manager.add_dataset("plain", "hf://datasets/someone/plain")
    assert list(plain.subsets) == ["default/train", "default/validation"]
    assert plain.extra["hf"]["converted"] is False


def test_yaml_config_with_non_parquet_files_uses_the_converted_branch(
        hub: hs.HubServer, manager: Manager) -> None:
    repo = f"t{uuid.uuid4().hex[:8]}/mixed"
    card = (b"---\nconfigs:\n- config_name: tables\n  data_files:\n  - split: train\n"
            b"    path: tables/*.csv\n- config_name: extra\n  data_files: extra/*.parquet\n"
            b"---\n# mixed\n")
    hub.add_repo(hs.HubRepo(repo, {
        "main": {"README.md": card, "tables/a.csv": b"id\n1\n",
                 "extra/x.parquet": hs.make_parquet(0, 10)},
        hf.CONVERT_REF: {"tables/train/0000.parquet": hs.make_parquet(0, 5),
                         "extra/train/0000.parquet": hs.make_parquet(5, 10)}}))
    dataset = manager.add_dataset("mixed", f"hf://datasets/{repo}")
    assert list(dataset.subsets) == ["extra/train", "tables/train"]
    assert dataset.extra["hf"]["converted"] is True


def test_yaml_configs_forms() -> None:
    card = {"configs": [
        {"config_name": "a", "data_files": "a/*.parquet"},
        {"config_name": "b", "data_files": [{"split": "test", "path": ["b/t1.parquet",
                                                                      "b/t2.parquet"]}]},
        {"config_name": "c", "data_dir": "c", "data_files": {"validation": "v-*.parquet"}},
        {"config_name": "d", "data_dir": "d"},
        {"no_name": True},
    ]}
    assert hf.yaml_configs(card) == [
        ("a", {"train": ["a/*.parquet"]}, ""),
        ("b", {"test": ["b/t1.parquet", "b/t2.parquet"]}, ""),
        ("c", {"validation": ["c/v-*.parquet"]}, "c"),
        ("d", None, "d"),
    ]
    assert hf.yaml_configs({"license": "mit"}) is None


@pytest.mark.parametrize(("paths", "expected"), [
    (["data/train-00000-of-00004.parquet", "data/train-00001-of-00004.parquet"],
     {("default", "train"): 2}),
    (["20231101.en/train-00000-of-00002.parquet", "20231101.fr/train-00000-of-00001.parquet"],
     {("20231101.en", "train"): 1, ("20231101.fr", "train"): 1}),
    (["dutch/test-00000-of-00001.parquet", "dutch/train-00000-of-00001.parquet"],
     {("dutch", "test"): 1, ("dutch", "train"): 1}),
    (["data/train.clean.100-00000-of-00002.parquet"], {("default", "train.clean.100"): 1}),
    (["train.parquet", "test.parquet", "dev.parquet"],
     {("default", "train"): 1, ("default", "test"): 1, ("default", "validation"): 1}),
    (["en/train/0000.parquet", "en/validation/0000.parquet", "fr/test/0000.parquet"],
     {("en", "train"): 1, ("en", "validation"): 1, ("fr", "test"): 1}),
    (["data/my_test_file.parquet", "data/training-set.parquet"],
     {("default", "test"): 1, ("default", "train"): 1}),
    (["data/part-0.parquet", "data/part-1.parquet"], {("default", "train"): 2}),
])
def test_layout_rules(paths: list[str], expected: dict[tuple[str, str], int]) -> None:
    mapping, ignored = hf.map_layout(paths)
    assert {k: len(v) for k, v in mapping.items()} == expected and ignored == []


def test_layout_leaves_out_unsplit_files_next_to_split_ones() -> None:
    mapping, ignored = hf.map_layout(["data/train.parquet", "data/notes.parquet"])
    assert mapping == {("default", "train"): ["data/train.parquet"]}
    assert ignored == ["data/notes.parquet"]


def test_converted_layout_and_yaml_globs() -> None:
    mapping, partial = hf.map_converted(["default/train/0000.parquet",
                                         "default/partial-test/0000.parquet",
                                         "en/train.clean/0000.parquet"])
    assert sorted(mapping) == [("default", "test"), ("default", "train"), ("en", "train.clean")]
    assert partial == {"default\0test"}
    paths = ["a/train-0.parquet", "a/sub/train-1.parquet", "b/x.csv"]
    assert hf.match_data_files(["a/*"], paths) == ["a/train-0.parquet"]
    assert hf.match_data_files(["a/**"], paths) == ["a/sub/train-1.parquet", "a/train-0.parquet"]
    assert hf.match_data_files(["**/train-*.parquet"], paths) == ["a/sub/train-1.parquet",
                                                                  "a/train-0.parquet"]
    assert hf.match_data_files(["b"], paths) == ["b/x.csv"]


@pytest.mark.parametrize(("url", "expected"), [
    ("https://huggingface.co/datasets/o/n", ("o/n", None, "")),
    ("https://huggingface.co/datasets/o/n/tree/dev/sub", ("o/n", "dev", "sub")),
    ("hf://datasets/o/n", ("o/n", None, "")),
    ("hf://datasets/o/n@abc/x", ("o/n", "abc", "x")),
    ("hf://datasets/o/n@refs/convert/parquet/default", ("o/n", hf.CONVERT_REF, "default")),
    ("hf://datasets/o/n@refs%2Fconvert%2Fparquet", ("o/n", hf.CONVERT_REF, "")),
    ("o/n", ("o/n", None, "")),
])
def test_parse_repo_url(url: str, expected: tuple[str, str | None, str]) -> None:
    assert hf.parse_repo_url(url) == expected


def test_piece_rows_cover_every_row_once() -> None:
    import io

    import pyarrow as pa

    for rows, group, pieces in [(1000, 100, 3), (1000, 1000, 4), (950, 70, 7), (10, 10, 3),
                                (5000, 50, 1)]:
        buffer = io.BytesIO()
        pq.write_table(pa.table({"x": list(range(rows))}), buffer, row_group_size=group)
        metadata = pq.read_metadata(pa.BufferReader(buffer.getvalue()))
        ranges = [hf.piece_rows(metadata, k, pieces) for k in range(pieces)]
        assert ranges[0][0] == 0 and ranges[-1][1] == rows
        assert all(a[1] == b[0] for a, b in itertools.pairwise(ranges))
        assert all(start <= stop for start, stop in ranges)


def test_filters_and_path_prefix(hub: hs.HubServer, manager: Manager) -> None:
    only = manager.add_dataset("mls-nl", SPEECH, pipeline="HuggingFaceParquet",
                               configs=["dutch"], splits="test")
    assert list(only.subsets) == ["dutch/test"]
    assert only.options["configs"] == ["dutch"]
    fr = manager.add_dataset("wiki-fr", f"hf://datasets/{WIKI}/20231101.fr")
    assert list(fr.subsets) == ["20231101.fr/train"]
    with pytest.raises(ConfigError, match=r"configs: klingon not found; available: dutch, german"):
        manager.add_dataset("bad", SPEECH, pipeline="HuggingFaceParquet", configs="klingon")
    with pytest.raises(ConfigError, match="unknown option"):
        manager.add_dataset("bad", SPEECH, pipeline="HuggingFaceParquet", colour="red")


# ====================================================================== downloads
def test_download_local_verified_and_repartitioned(hub: hs.HubServer, manager: Manager,
                                                   tmp_path: Path) -> None:
    manager.add_dataset("wiki", f"hf://datasets/{WIKI}")
    hub.clear_log()
    report = manager.download("wiki", progress=False)
    assert len(report.fetched) == 7 and not report.failed
    # 7 partitions from 3 upstream files: each file downloaded once, at the pinned sha
    sha = hub.repos[WIKI].sha()
    assert sorted(gets(hub)) == sorted(p for p in hub.repos[WIKI].files()
                                       if p.endswith(".parquet"))
    assert all(f"/resolve/{sha}/" in path for _, path, _ in hub.requests("GET", "/resolve/"))
    assert api_calls(hub) == []
    for config, files in [("20231101.en", ["train-00000-of-00002.parquet",
                                           "train-00001-of-00002.parquet"]),
                          ("20231101.fr", ["train-00000-of-00001.parquet"])]:
        expected = [i for f in files for i in ids_of(content(hub, WIKI, f"{config}/{f}"))]
        frame = load(manager, f"wiki/{config}/train")
        assert list(frame["id"]) == expected, "every row once, in upstream order"
        assert list(frame.columns) == ["id", "text", "label"]
    record = manager.dataset("wiki")
    assert all(p.downloaded and p.num_rows == sum(p.row_groups) for _, p in record.partitions)
    assert [p.num_rows for p in record.subsets["20231101.en/train"].partitions] == \
        [100, 100, 100, 100, 150]
    # partitions are re-written by Pygestor (zstd, page checksums), keeping the HF schema
    first = manager.partition_path("wiki", "20231101.en/train", "part-00000.parquet")
    meta = pq.read_metadata(first)
    assert meta.row_group(0).column(0).compression == "ZSTD"
    stamp = formats.read_provenance(meta)
    assert stamp is not None, "the file says where it comes from"
    assert (stamp["pipeline"], stamp["dataset"], stamp["subset"], stamp["partition"]) == \
        ("HuggingFaceParquet", "wiki", "20231101.en/train", "part-00000.parquet")
    assert stamp["source"] == record.subsets["20231101.en/train"].partitions[0].source
    assert manager.verify("wiki").clean
    assert leftovers(tmp_path / "data") == [], "no temporary or upstream copies left"


def test_large_file_single_download_shared_by_its_partitions(hub: hs.HubServer,
                                                             tmp_path: Path) -> None:
    repo = f"t{uuid.uuid4().hex[:8]}/big"
    big = hs.make_parquet(0, 3000, tag="big")
    hub.add_repo(hs.HubRepo(repo, {"main": {"data/train-00000-of-00001.parquet": big}}))
    manager = make_manager(tmp_path / "data", partition_size="10KB")
    dataset = manager.add_dataset("big", f"hf://datasets/{repo}")
    parts = dataset.subsets["default/train"].partitions
    assert len(parts) == -(-len(big) // 10_000) >= 4
    hub.clear_log()
    manager.download("big", progress=False)
    assert gets(hub) == ["data/train-00000-of-00001.parquet"], "one download for all pieces"
    frame = load(manager, "big")
    assert list(frame["id"]) == list(range(3000))
    rows = [p.num_rows for p in manager.dataset("big").subsets["default/train"].partitions]
    assert sum(rows) == 3000 and max(rows) - min(rows) <= 200, rows
    assert leftovers(tmp_path / "data") == []


def test_download_into_s3(hub: hs.HubServer, s3_server: dict[str, Any]) -> None:
    url = f"s3://{s3_server['bucket']}/hf-{uuid.uuid4().hex[:8]}"
    manager = make_manager(url, s3_server["options"])
    manager.add_dataset("mls", SPEECH, pipeline="HuggingFaceParquet")
    report = manager.download("mls/dutch/train", progress=False)
    assert len(report.fetched) == 4
    expected = [i for f in ("dutch/train-00000-of-00002.parquet",
                            "dutch/train-00001-of-00002.parquet")
                for i in ids_of(content(hub, SPEECH, f))]
    assert list(load(manager, "mls/dutch/train")["id"]) == expected
    listed = manager.storage.fs.find(manager.storage.path("mls"))
    assert sorted(p.rsplit("/", 1)[-1] for p in listed if p.endswith(".parquet")) == \
        [f"part-{i:05d}.parquet" for i in range(4)]
    assert not any("/." in p for p in listed), "nothing temporary lands in the bucket"
    assert manager.verify("mls").clean


# ====================================================================== resume
def test_failure_mid_download_then_rerun_fetches_only_the_rest(hub: hs.HubServer,
                                                               manager: Manager) -> None:
    repo = new_repo(hub, hs.default_config, "resume")
    manager.add_dataset("plain", f"hf://datasets/{repo}")
    broken = "data/validation-00000-of-00001.parquet"
    hub.fail(f"{repo}/{broken}", "500")
    with pytest.raises(SourceError) as failed:
        manager.download("plain", progress=False)
    message = str(failed.value)
    assert "1 of 4 partitions" in message and "the others are saved" in message
    assert f"/datasets/{repo}/resolve/" in message and broken in message and "500" in message
    assert len([g for g in gets(hub) if g.endswith(broken)]) == 2, "retried (retries=2)"
    record = manager.dataset("plain")
    assert all(p.downloaded for p in record.subsets["default/train"].partitions)
    assert not any(p.downloaded for p in record.subsets["default/validation"].partitions)

    hub.clear_failures()
    hub.clear_log()
    report = manager.download("plain", progress=False)
    assert report.fetched == ["default/validation/part-00000.parquet"]
    assert len(report.skipped) == 3
    assert gets(hub) == [broken], "finished ones not re-fetched"
    assert manager.verify("plain").clean


def test_killed_download_restarts_without_refetching(hub: hs.HubServer, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    repo = f"t{uuid.uuid4().hex[:8]}/killed"
    files = {f"data/train-{i:05d}-of-00004.parquet": hs.make_parquet(i * 300, 300)
             for i in range(4)}
    hub.add_repo(hs.HubRepo(repo, {"main": files}))
    data = tmp_path / "data"
    manager = make_manager(data, partition_size="1MB")
    manager.add_dataset("killed", f"hf://datasets/{repo}")
    slow = "data/train-00002-of-00004.parquet"
    release = threading.Event()
    original = hub._take_failure

    def stall(method: str, repo_id: str, path: str) -> Any:
        if method == "GET" and path == slow:
            release.wait(60)
        return original(method, repo_id, path)
    monkeypatch.setattr(hub, "_take_failure", stall)
    hub.clear_log()
    env = hub_subprocess_env(hub, tmp_path / "home")
    proc = subprocess.Popen([sys.executable, "-m", "pygestor", "--data-dir", str(data),
                             "download", "killed", "--max-workers", "1"], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not hub.requests("GET", slow) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.05)
        assert hub.requests("GET", slow), "the download never reached the third file"
        proc.kill()
        proc.wait(30)
    finally:
        release.set()
        if proc.poll() is None:
            proc.kill()
        if proc.stderr:
            proc.stderr.close()
    # the first two partitions were placed (recorded, or left to be adopted), the rest not
    folder = data / "killed" / "default" / "train"
    assert sorted(p.name for p in folder.glob("part-*")) == ["part-00000.parquet",
                                                             "part-00001.parquet"]
    record = manager.dataset("killed")
    assert not any(p.downloaded for p in record.subsets["default/train"].partitions[2:])

    hub.clear_log()
    report = manager.download("killed", progress=False)
    assert sorted(report.skipped + report.adopted) == ["default/train/part-00000.parquet",
                                                       "default/train/part-00001.parquet"]
    assert sorted(report.fetched) == ["default/train/part-00002.parquet",
                                      "default/train/part-00003.parquet"]
    assert sorted(gets(hub)) == [
        "data/train-00002-of-00004.parquet", "data/train-00003-of-00004.parquet"]
    assert list(load(manager, "killed")["id"]) == list(range(1200))
    assert manager.verify("killed").clean
    assert leftovers(data) == []


def test_network_failure_clear_error_and_ranged_resume(hub: hs.HubServer, manager: Manager,
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       tmp_path: Path) -> None:
    repo = new_repo(hub, hs.default_config, "drop")
    manager.add_dataset("plain", repo, pipeline="HuggingFaceParquet")
    path = "data/validation-00000-of-00001.parquet"
    hub.fail(f"{repo}/{path}", "drop")
    with pytest.raises(SourceError) as failed:
        manager.download("plain/default/validation", progress=False)
    message = str(failed.value)
    assert "network failure" in message and repo in message and path in message
    assert "RemoteProtocolError: peer closed connection" in message
    assert "Traceback" not in message and "\n" not in message

    # dropped once, after some bytes were handed over: the retry asks only for the rest
    monkeypatch.setattr(hf.transfer, "DOWNLOAD_CHUNK", 256)
    hub.fail(f"{repo}/{path}", "drop", times=1)
    hub.clear_log()
    report = manager.download("plain/default/validation", progress=False)
    assert report.fetched == ["default/validation/part-00000.parquet"]
    ranges = [r for _, _, r in hub.requests("GET", path)]
    assert ranges[0] is None and ranges[1] is not None and ranges[1].startswith("bytes=")
    assert int(ranges[1][6:].rstrip("-")) > 0
    assert list(load(manager, "plain/default/validation")["id"]) == \
        ids_of(content(hub, repo, path))
    assert leftovers(tmp_path / "data") == [], "the partial copy of the failed run is swept"


# ====================================================================== revisions and updates
def test_revision_pinning(hub: hs.HubServer, manager: Manager) -> None:
    repo = new_repo(hub, hs.default_config, "pinned")
    train = "data/train-00000-of-00001.parquet"
    old_sha = hub.repos[repo].sha()
    manager.add_dataset("pinned", f"https://huggingface.co/datasets/{repo}")
    new_sha = hub.commit(repo, {train: hs.make_parquet(10_000, 50)})
    manager.download("pinned/default/train", progress=False)
    assert list(load(manager, "pinned/default/train")["id"]) == list(range(300)), \
        "the download gets the revision pinned when the dataset was added"
    assert manager.dataset("pinned").revision == old_sha

    latest = manager.add_dataset("latest", repo, pipeline="HuggingFaceParquet")
    assert latest.revision == new_sha
    old = manager.add_dataset("old", repo, pipeline="HuggingFaceParquet", revision=old_sha)
    assert old.revision == old_sha and old.extra["hf"]["tracking"] == "main"
    by_url = manager.add_dataset("by-url", f"hf://datasets/{repo}@{old_sha}")
    assert by_url.revision == old_sha
    manager.download("latest/default/train", progress=False)
    assert list(load(manager, "latest/default/train")["id"]) == list(range(10_000, 10_050))


def test_check_updates_and_download_update(hub: hs.HubServer, manager: Manager) -> None:
    repo = new_repo(hub, hs.default_config, "updated")
    train = "data/train-00000-of-00001.parquet"
    manager.add_dataset("upd", f"hf://datasets/{repo}")
    manager.download("upd", progress=False)
    before = manager.dataset("upd")
    kept = [(p.name, *(getattr(p, key) for key in Partition.STORED))
            for p in before.subsets["default/validation"].partitions]
    hub.clear_log()
    assert manager.check_updates("upd")["up_to_date"] is True
    assert len(api_calls(hub)) == 1

    new_sha = hub.commit(repo, {train: hs.make_parquet(5000, 120),
                                "data/test-00000-of-00001.parquet": hs.make_parquet(9000, 40)})
    hub.clear_log()
    result = manager.check_updates("upd")
    assert api_calls(hub) == [f"/api/datasets/{repo}/revision/main"], "one call per dataset"
    assert result["supported"] is True and result["up_to_date"] is False
    assert result["revision"] == before.revision and result["latest"] == new_sha
    assert result["changed"] == [train]
    assert result["added"] == ["data/test-00000-of-00001.parquet"]
    assert result["removed"] == [] and result["affected_subsets"] == ["default/train"]

    hub.clear_log()
    report = manager.download_updates("upd", progress=False)
    assert sorted(gets(hub)) == [
        "data/test-00000-of-00001.parquet", train], "only what changed is fetched"
    assert all(f"/resolve/{new_sha}/" in p for _, p, _ in hub.requests("GET", "/resolve/"))
    assert sorted(report.skipped) == [f"default/validation/{n}" for n, *_ in kept]
    record = manager.dataset("upd")
    assert record.revision == new_sha and record.options["revision"] == new_sha
    assert list(record.subsets) == ["default/train", "default/validation", "default/test"]
    assert [(p.name, *(getattr(p, key) for key in Partition.STORED))
            for p in record.subsets["default/validation"].partitions] == kept, \
        "an unchanged partition keeps all its stored state"
    assert list(load(manager, "upd/default/train")["id"]) == list(range(5000, 5120))
    assert list(load(manager, "upd/default/test")["id"]) == list(range(9000, 9040))
    assert manager.check_updates("upd")["up_to_date"] is True
    assert manager.verify("upd").clean

    # a file removed upstream: its subset goes, and so do its files
    hub.commit(repo, {"data/test-00000-of-00001.parquet": None})
    assert manager.check_updates("upd")["removed"] == ["data/test-00000-of-00001.parquet"]
    test_file = manager.partition_path("upd", "default/test", "part-00000.parquet")
    assert manager.storage.exists(test_file)
    hub.clear_log()
    manager.download_updates("upd", progress=False)
    assert gets(hub) == []
    assert "default/test" not in manager.dataset("upd").subsets
    assert not manager.storage.exists(test_file)


def test_update_of_a_partly_downloaded_dataset(hub: hs.HubServer, manager: Manager) -> None:
    repo = new_repo(hub, hs.default_config, "partly")
    train = "data/train-00000-of-00001.parquet"
    manager.add_dataset("partly", repo, pipeline="HuggingFaceParquet")
    manager.download("partly/default/validation", progress=False)
    hub.commit(repo, {train: hs.make_parquet(100, 10),
                      "data/validation-00000-of-00001.parquet": hs.make_parquet(200, 10)})
    hub.clear_log()
    manager.download_updates("partly", progress=False)
    assert gets(hub) == ["data/validation-00000-of-00001.parquet"]
    assert not any(p.downloaded for p in manager.dataset("partly").subsets["default/train"]
                   .partitions), "subsets the user did not download stay so"


def test_converted_repo_updates_track_the_convert_branch(hub: hs.HubServer,
                                                         manager: Manager) -> None:
    repo = new_repo(hub, hs.converted_only, "conv")
    manager.add_dataset("conv", repo, pipeline="HuggingFaceParquet")
    manager.download("conv", progress=False)
    hub.commit(repo, {"data.csv": b"id\n1\n"})  # main changes, the converted branch does not
    assert manager.check_updates("conv")["up_to_date"] is True
    new = hub.commit(repo, {"default/test/0000.parquet": hs.make_parquet(700, 5)},
                     revision=hf.CONVERT_REF)
    result = manager.check_updates("conv")
    assert result["latest"] == new and result["changed"] == ["default/test/0000.parquet"]
    manager.download_updates("conv", progress=False)
    assert list(load(manager, "conv/default/test")["id"]) == list(range(700, 705))


# ====================================================================== tokens and errors
def test_gated_repo_tokens(hub: hs.HubServer, manager: Manager,
                           monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                           caplog: pytest.LogCaptureFixture) -> None:
    wrong = "hf_wrong_token_do_not_print_83f2"
    dataset = manager.add_dataset("gated", "https://huggingface.co/datasets/secret/gated")
    assert dataset.extra["hf"]["gated"] is True
    with pytest.raises(SourceError) as no_token:
        manager.download("gated", progress=False)
    text = str(no_token.value)
    assert "secret/gated is gated: accept its terms on the Hub" in text and "HF_TOKEN" in text

    monkeypatch.setenv("HF_TOKEN", wrong)
    with pytest.raises(SourceError) as bad_token:
        manager.download("gated", progress=False)
    assert "token in use has no access" in str(bad_token.value)
    assert wrong not in str(bad_token.value)

    monkeypatch.setenv("HF_TOKEN", hs.VALID_TOKEN)
    manager.download("gated", progress=False)
    assert len(load(manager, "gated")) == 150
    check = manager.check_updates("gated")
    raw = (tmp_path / "data" / "gated" / "metadata.json").read_text()
    for secret in (hs.VALID_TOKEN, wrong):
        assert secret not in raw and secret not in json.dumps(check)
        assert secret not in caplog.text and secret not in repr(manager.dataset("gated"))
    assert "token" not in json.loads(raw)["options"]

    with pytest.raises(ConfigError, match="HF_TOKEN") as as_option:
        manager.add_dataset("leak", "secret/gated", pipeline="HuggingFaceParquet",
                            token=hs.VALID_TOKEN)
    assert hs.VALID_TOKEN not in str(as_option.value)
    assert not manager.catalog.exists("leak")


def test_gated_metadata_needs_a_token_to_add(hub: hs.HubServer, manager: Manager,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    repo = f"t{uuid.uuid4().hex[:8]}/gated-meta"
    hub.add_repo(hs.gated(repo, gate_metadata=True))
    with pytest.raises(SourceError, match=f"{repo} is gated: accept its terms"):
        manager.add_dataset("gm", f"hf://datasets/{repo}")
    monkeypatch.setenv("HF_TOKEN", hs.VALID_TOKEN)
    assert list(manager.add_dataset("gm", f"hf://datasets/{repo}").subsets) == ["default/train"]


def test_missing_repo_and_revision(hub: hs.HubServer, manager: Manager) -> None:
    with pytest.raises(SourceError, match=r"no dataset repo 'nobody/nothing' on the Hub"):
        manager.add_dataset("x", "https://huggingface.co/datasets/nobody/nothing")
    with pytest.raises(SourceError, match=r"someone/plain has no revision 'nope'"):
        manager.add_dataset("x", "someone/plain", pipeline="HuggingFaceParquet", revision="nope")
    with pytest.raises(ConfigError, match="not a Hugging Face"):
        manager.add_dataset("x", "https://huggingface.co/models", pipeline="HuggingFaceParquet")
    assert manager.catalog.names() == []


def test_not_a_hub_url_is_refused_before_any_request(hub: hs.HubServer,
                                                      manager: Manager) -> None:
    url = "https://example.invalid/data/t.csv"
    started = time.monotonic()
    with pytest.raises(ConfigError) as checked:
        manager.pipeline("HuggingFaceParquet").check_url(url)
    with pytest.raises(ConfigError) as added:
        manager.add_dataset("x", url, pipeline="HuggingFaceParquet")
    assert time.monotonic() - started < 5
    for refused in (checked, added):
        assert url in str(refused.value)
        assert "https://huggingface.co/datasets/owner/name" in str(refused.value)
    assert hub.requests() == [] and manager.catalog.names() == []
    for good in (None, "owner/name", f"hf://datasets/{WIKI}@main/20231101.fr",
                 f"https://huggingface.co/datasets/{SPEECH}/tree/main/dutch"):
        manager.pipeline("HuggingFaceParquet").check_url(good)
    manager.pipeline("wikipedia").check_url(None)


def test_repo_without_any_parquet(hub: hs.HubServer, manager: Manager) -> None:
    repo = f"t{uuid.uuid4().hex[:8]}/csv"
    hub.add_repo(hs.HubRepo(repo, {"main": {"data.csv": b"a\n1\n"}}))
    with pytest.raises(SourceError, match=r"no parquet files .*\(refs/convert/parquet\)"):
        manager.add_dataset("nop", f"hf://datasets/{repo}")


def test_pinned_revision_gone_is_a_clear_error(hub: hs.HubServer,
                                                            manager: Manager) -> None:
    """A pinned sha that disappears (history rewritten) names the repo and the revision."""
    repo = new_repo(hub, hs.default_config, "rewritten")
    manager.add_dataset("rw", f"hf://datasets/{repo}")
    sha = manager.dataset("rw").revision
    hub.commit(repo, {"x.txt": b"x"})
    with hub._lock:
        del hub.repos[repo].commits[sha]
    with pytest.raises(SourceError, match=f"{repo} has no revision '{sha}'"):
        manager.download("rw", progress=False)


def test_pipeline_auto_from_urls(hub: hs.HubServer, manager: Manager) -> None:
    one = manager.add_dataset("a", "https://huggingface.co/datasets/someone/plain")
    two = manager.add_dataset("b", "hf://datasets/someone/plain")
    assert one.pipeline == two.pipeline == "HuggingFaceParquet"
    assert one.revision == two.revision == hub.repos["someone/plain"].sha()
    assert manager.info("a")["revision"] == one.revision


# ====================================================================== command line
def run_cli(hub: hs.HubServer, tmp_path: Path, *args: str, **env: str
            ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pygestor", "--data-dir",
                           str(tmp_path / "data"), *args],
                          env=hub_subprocess_env(hub, tmp_path / "home", **env), cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def test_cli(hub: hs.HubServer, tmp_path: Path) -> None:
    repo = new_repo(hub, hs.default_config, "cli")
    url = f"https://huggingface.co/datasets/{repo}"
    added = run_cli(hub, tmp_path, "add", "plain", url, "--pipeline", "HuggingFaceParquet")
    assert added.returncode == 0, added.stderr
    assert "registered plain (HuggingFaceParquet): 2 subsets" in added.stdout

    missing = run_cli(hub, tmp_path, "add", "nope", "https://huggingface.co/datasets/nobody/x",
                      "--pipeline", "HuggingFaceParquet")
    assert missing.returncode == 1
    assert missing.stderr.startswith("pygestor: error: no dataset repo 'nobody/x'")
    assert "Traceback" not in missing.stderr and missing.stderr.count("\n") == 1

    downloaded = run_cli(hub, tmp_path, "download", "plain")
    assert downloaded.returncode == 0, downloaded.stderr
    assert "plain: fetched 2" in downloaded.stdout

    hub.commit(repo, {"data/validation-00000-of-00001.parquet": hs.make_parquet(50, 5)})
    checked = run_cli(hub, tmp_path, "check-updates", "plain")
    assert checked.returncode == 0, checked.stderr
    stale = json.loads(checked.stdout)
    assert stale["up_to_date"] is False
    assert stale["changed"] == ["data/validation-00000-of-00001.parquet"]
    updated = run_cli(hub, tmp_path, "download", "plain", "--update")
    assert updated.returncode == 0, updated.stderr
    assert "plain: fetched 1, skipped 1" in updated.stdout

    gated = run_cli(hub, tmp_path, "add", "gated", "hf://datasets/secret/gated")
    assert gated.returncode == 0, gated.stderr
    denied = run_cli(hub, tmp_path, "download", "gated")
    assert denied.returncode == 1 and "is gated: accept its terms" in denied.stderr
    assert "Traceback" not in denied.stderr
    allowed = run_cli(hub, tmp_path, "download", "gated", HF_TOKEN=hs.VALID_TOKEN)
    assert allowed.returncode == 0, allowed.stderr
    assert hs.VALID_TOKEN not in allowed.stdout + allowed.stderr


def test_error_translation_marks_transient_failures() -> None:
    import httpx2
    from huggingface_hub.errors import HfHubHTTPError

    def http_error(status: int) -> HfHubHTTPError:
        request = httpx2.Request("GET", "http://hub/api/datasets/o/n")
        return HfHubHTTPError(f"{status} error", response=httpx2.Response(status,
                                                                         request=request))

    refused = hf.hub_error(http_error(401), "o/n", url="http://hub/api/datasets/o/n")
    assert "answered 401" in str(refused) and "HF_TOKEN" in str(refused)
    assert not getattr(refused, "transient", False)
    for status in (500, 503, 429):
        assert hf.hub_error(http_error(status), "o/n").transient  # type: ignore[attr-defined]
    timeout = hf.hub_error(httpx2.ReadTimeout("timed out"), "o/n", url="http://hub/f")
    assert str(timeout) == "network failure talking to the Hub for http://hub/f: ReadTimeout: " \
        "timed out" and timeout.transient  # type: ignore[attr-defined]
    disk = hf.hub_error(OSError(28, "No space left on device"), "o/n", url="http://hub/f")
    assert "No space left" in str(disk) and not getattr(disk, "transient", False)
