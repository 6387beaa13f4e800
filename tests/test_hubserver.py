"""The real `huggingface_hub` client against the local fake Hub of `tests/hubserver.py`."""

from __future__ import annotations

import http.client
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pyarrow.parquet as pq
import pytest
from huggingface_hub import HfApi, HfFileSystem, hf_hub_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from huggingface_hub.file_download import http_get

try:  # `tests` is not a package today: pytest puts tests/ itself on sys.path
    import hubserver as hs
except ImportError:  # pragma: no cover - if tests/ becomes a package
    from tests import hubserver as hs

WIKI = "wikimedia/wikipedia"
EN0 = "20231101.en/train-00000-of-00002.parquet"
CONVERT = "refs/convert/parquet"
SHA_RE = re.compile(r"^[0-9a-f]{40}$")


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[hs.HubServer]:
    """The fake Hub with the standard repos; huggingface_hub (already imported) points at it."""
    with hs.serving(hs.all_repos(), tmp_path_factory.mktemp("hf_home")) as server:
        yield server


@pytest.fixture()
def api(hub: hs.HubServer) -> HfApi:
    """A fresh client (its endpoint comes from the patched constants)."""
    return HfApi()


def _content(hub: hs.HubServer, repo_id: str, path: str, revision: str = "main") -> bytes:
    return hub.repos[repo_id].files(revision)[path]


# ------------------------------------------------------------------------------ metadata


def test_dataset_info_siblings_and_sha(hub: hs.HubServer, api: HfApi) -> None:
    info = api.dataset_info(WIKI)
    assert info.id == WIKI
    assert info.sha == hub.repos[WIKI].sha() and SHA_RE.match(info.sha)
    assert {s.rfilename for s in info.siblings} == {
        EN0,
        "20231101.en/train-00001-of-00002.parquet",
        "20231101.fr/train-00000-of-00001.parquet",
        "README.md",
        ".gitattributes",
    }
    assert info.gated is False and info.private is False
    assert (
        info.card_data is not None and info.card_data["configs"][0]["config_name"] == "20231101.en"
    )

    detailed = {s.rfilename: s for s in api.dataset_info(WIKI, files_metadata=True).siblings}
    parquet, readme = detailed[EN0], detailed["README.md"]
    assert parquet.size == len(_content(hub, WIKI, EN0))
    assert parquet.lfs is not None and re.fullmatch(r"[0-9a-f]{64}", parquet.lfs.sha256)
    assert readme.lfs is None and SHA_RE.match(readme.blob_id)

    converted = api.dataset_info("someone/csv-only", revision=CONVERT)
    assert converted.sha == hub.repos["someone/csv-only"].sha(CONVERT)
    assert [s.rfilename for s in converted.siblings] == [
        "default/test/0000.parquet",
        "default/train/0000.parquet",
    ]


def test_list_repo_files(api: HfApi) -> None:
    files = api.list_repo_files("facebook/multilingual_librispeech", repo_type="dataset")
    assert sorted(f for f in files if f.endswith(".parquet")) == [
        "dutch/test-00000-of-00001.parquet",
        "dutch/train-00000-of-00002.parquet",
        "dutch/train-00001-of-00002.parquet",
        "german/dev-00000-of-00001.parquet",
        "german/train-00000-of-00001.parquet",
    ]
    assert api.list_repo_files("someone/csv-only", repo_type="dataset") == [
        ".gitattributes",
        "README.md",
        "data.csv",
    ]
    assert "default/train/0000.parquet" in api.list_repo_files(
        "someone/csv-only", repo_type="dataset", revision=CONVERT
    )


def test_list_repo_tree(hub: hs.HubServer, api: HfApi) -> None:
    from huggingface_hub.hf_api import RepoFile, RepoFolder

    tree = {e.path: e for e in api.list_repo_tree(WIKI, repo_type="dataset", recursive=True)}
    assert isinstance(tree["20231101.en"], RepoFolder) and SHA_RE.match(tree["20231101.en"].tree_id)
    entry = tree[EN0]
    content = _content(hub, WIKI, EN0)
    assert isinstance(entry, RepoFile) and entry.size == len(content)
    assert entry.lfs is not None and entry.lfs.size == len(content)
    assert entry.lfs.pointer_size > 100 and entry.xet_hash is None
    assert tree["README.md"].lfs is None

    top = [e.path for e in api.list_repo_tree(WIKI, repo_type="dataset")]
    assert top == ["20231101.en", "20231101.fr", ".gitattributes", "README.md"]
    sub = [e.path for e in api.list_repo_tree(WIKI, "20231101.en", repo_type="dataset")]
    assert sub == [EN0, "20231101.en/train-00001-of-00002.parquet"]
    expanded = list(api.list_repo_tree(WIKI, "20231101.fr", repo_type="dataset", expand=True))
    assert (
        expanded[0].last_commit is not None and expanded[0].last_commit.oid == hub.repos[WIKI].sha()
    )

    converted = list(
        api.list_repo_tree(
            "someone/csv-only", repo_type="dataset", revision=CONVERT, recursive=True
        )
    )
    assert {e.path for e in converted} >= {"default", "default/train", "default/train/0000.parquet"}


def test_get_paths_info(api: HfApi) -> None:
    infos = api.get_paths_info(WIKI, [EN0, "20231101.fr", "missing.txt"], repo_type="dataset")
    assert [i.path for i in infos] == [EN0, "20231101.fr"]
    assert infos[0].lfs is not None and infos[1].tree_id is not None
    converted = api.get_paths_info(
        "someone/csv-only", ["default/test/0000.parquet"], repo_type="dataset", revision=CONVERT
    )
    assert converted[0].size > 0


def test_exists_helpers(api: HfApi) -> None:
    assert api.repo_exists(WIKI, repo_type="dataset")
    assert not api.repo_exists("nobody/nothing", repo_type="dataset")
    assert not api.repo_exists(WIKI)  # models are not served
    assert api.file_exists(WIKI, EN0, repo_type="dataset")
    assert not api.file_exists(WIKI, "nope.parquet", repo_type="dataset")
    assert api.file_exists(
        "someone/csv-only", "default/train/0000.parquet", repo_type="dataset", revision=CONVERT
    )
    assert api.revision_exists("someone/csv-only", CONVERT, repo_type="dataset")
    assert not api.revision_exists(WIKI, "nope", repo_type="dataset")
    refs = api.list_repo_refs("someone/csv-only", repo_type="dataset")
    assert [r.name for r in refs.branches] == ["main"]
    assert [(r.name, r.ref) for r in refs.converts] == [("parquet", CONVERT)]


# ------------------------------------------------------------------------------ downloads


def test_hf_hub_download(hub: hs.HubServer, tmp_path: Path) -> None:
    hub.clear_log()
    path = hf_hub_download(WIKI, EN0, repo_type="dataset", cache_dir=tmp_path)
    assert Path(path).read_bytes() == _content(hub, WIKI, EN0)
    assert hub.repos[WIKI].sha() in path
    assert [m for m, _, _ in hub.requests(contains="/resolve/")] == ["HEAD", "GET"]
    # cached: only the HEAD again
    hf_hub_download(WIKI, EN0, repo_type="dataset", cache_dir=tmp_path)
    assert [m for m, _, _ in hub.requests(contains="/resolve/")] == ["HEAD", "GET", "HEAD"]

    converted = hf_hub_download(
        "someone/csv-only",
        "default/train/0000.parquet",
        repo_type="dataset",
        revision=CONVERT,
        cache_dir=tmp_path,
    )
    table = pq.read_table(converted)
    assert table.num_rows == 240 and table.column_names == ["id", "text", "label"]


def test_raw_resolve_headers_and_ranges(hub: hs.HubServer) -> None:
    content = _content(hub, WIKI, EN0)
    conn = http.client.HTTPConnection("127.0.0.1", hub.port, timeout=5)
    url = f"/datasets/{WIKI}/resolve/main/{EN0}"
    try:
        conn.request("HEAD", url)
        head = conn.getresponse()
        assert head.status == 200 and head.read() == b""
        headers = {k.lower(): v for k, v in head.getheaders()}
        assert headers["x-repo-commit"] == hub.repos[WIKI].sha()
        assert re.fullmatch(r'"[0-9a-f]{64}"', headers["etag"])
        assert headers["x-linked-etag"] == headers["etag"]
        assert int(headers["content-length"]) == int(headers["x-linked-size"]) == len(content)
        assert headers["accept-ranges"] == "bytes"
        assert not any(k.startswith("x-xet") for k in headers)
        # the same keep-alive connection still works after a HEAD
        for rng, expected in [("bytes=10-19", content[10:20]), ("bytes=-8", content[-8:])]:
            conn.request("GET", url, headers={"Range": rng})
            resp = conn.getresponse()
            assert resp.status == 206 and resp.read() == expected
            start = len(content) - 8 if rng == "bytes=-8" else 10
            assert resp.getheader("Content-Range") == (
                f"bytes {start}-{start + len(expected) - 1}/{len(content)}"
            )
        conn.request("GET", url, headers={"Range": f"bytes={len(content)}-"})
        resp = conn.getresponse()
        assert resp.status == 416 and resp.getheader("Content-Range") == f"bytes */{len(content)}"
        resp.read()
        conn.request("GET", f"/datasets/{WIKI}/resolve/main/README.md")
        readme = conn.getresponse()
        assert readme.read() == _content(hub, WIKI, "README.md")
        assert readme.getheader("X-Linked-Etag") is None and len(readme.getheader("ETag")) == 42
        conn.request("GET", f"/api/datasets/{WIKI}/tree/main?recursive=true")
        assert b"xetHash" not in conn.getresponse().read()
        conn.request("GET", "/api/datasets/nobody/nothing")
        missing = conn.getresponse()
        assert missing.status == 404 and missing.getheader("X-Error-Code") == "RepoNotFound"
        assert "error" in json.loads(missing.read())
    finally:
        conn.close()


# ------------------------------------------------------------------------------ HfFileSystem


def test_hf_file_system(hub: hs.HubServer) -> None:
    fs = HfFileSystem()
    root = f"hf://datasets/{WIKI}"
    assert fs.ls(root, detail=False) == [
        f"datasets/{WIKI}/20231101.en",
        f"datasets/{WIKI}/20231101.fr",
        f"datasets/{WIKI}/.gitattributes",
        f"datasets/{WIKI}/README.md",
    ]
    assert fs.glob(f"{root}/*/train-*.parquet") == [
        f"datasets/{WIKI}/{EN0}",
        f"datasets/{WIKI}/20231101.en/train-00001-of-00002.parquet",
        f"datasets/{WIKI}/20231101.fr/train-00000-of-00001.parquet",
    ]
    content = _content(hub, WIKI, EN0)
    info = fs.info(f"{root}/{EN0}")
    assert info["type"] == "file" and info["size"] == len(content)
    assert fs.info(f"{root}/{EN0}", expand_info=True)["last_commit"] is not None

    hub.clear_log()
    with fs.open(f"{root}/{EN0}", block_size=1024) as f:
        f.seek(-8, 2)
        assert f.read(8) == content[-8:] and content.endswith(b"PAR1")
    ranges = [r for _, _, r in hub.requests("GET", EN0)]
    assert ranges and all(r and not r.startswith("bytes=0-") for r in ranges)

    with fs.open(f"{root}/{EN0}", block_size=2048) as f:
        parquet = pq.ParquetFile(f)
        assert parquet.metadata.num_rows == 300 and parquet.metadata.num_row_groups == 3
        assert parquet.schema_arrow.names == ["id", "text", "label"]
        assert parquet.read_row_group(0).column("id").to_pylist()[:3] == [0, 1, 2]
    assert fs.cat_file(f"{root}/{EN0}") == content

    converted = f"hf://datasets/someone/csv-only@{CONVERT}"
    assert fs.glob(f"{converted}/**/*.parquet") == [
        f"datasets/someone/csv-only@{CONVERT}/default/test/0000.parquet",
        f"datasets/someone/csv-only@{CONVERT}/default/train/0000.parquet",
    ]
    with fs.open(f"{converted}/default/test/0000.parquet") as f:
        assert pq.ParquetFile(f).metadata.num_rows == 60


# ------------------------------------------------------------------------------ access and errors


def test_gated_repo(hub: hs.HubServer, api: HfApi, tmp_path: Path) -> None:
    repo = "secret/gated"
    file = "data/train-00000-of-00001.parquet"
    info = api.dataset_info(repo)  # metadata of a gated repo is public, as on the Hub
    assert info.gated == "manual"
    with pytest.raises(GatedRepoError):
        hf_hub_download(repo, file, repo_type="dataset", cache_dir=tmp_path)
    with pytest.raises(GatedRepoError):
        hf_hub_download(repo, file, repo_type="dataset", cache_dir=tmp_path, token="hf_wrong")
    with pytest.raises(GatedRepoError):
        api.file_exists(repo, file, repo_type="dataset")
    path = hf_hub_download(
        repo, file, repo_type="dataset", cache_dir=tmp_path, token=hs.VALID_TOKEN
    )
    assert Path(path).read_bytes() == _content(hub, repo, file)

    hub.add_repo(hs.gated("secret/gated-meta", gate_metadata=True))
    with pytest.raises(GatedRepoError):
        api.dataset_info("secret/gated-meta")
    assert api.repo_exists("secret/gated-meta", repo_type="dataset")
    assert api.dataset_info("secret/gated-meta", token=hs.VALID_TOKEN).gated == "manual"

    hub.add_repo(hs.HubRepo("secret/private", {"main": {"a.txt": b"a"}}, private=True))
    assert not api.repo_exists("secret/private", repo_type="dataset")
    assert api.repo_exists("secret/private", repo_type="dataset", token=hs.VALID_TOKEN)


def test_not_found_errors(api: HfApi, tmp_path: Path) -> None:
    with pytest.raises(RepositoryNotFoundError) as repo_err:
        api.dataset_info("nobody/nothing")
    assert not isinstance(repo_err.value, GatedRepoError)
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("nobody/nothing", "x.parquet", repo_type="dataset", cache_dir=tmp_path)
    with pytest.raises(RevisionNotFoundError):
        api.dataset_info(WIKI, revision="nope")
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(WIKI, EN0, repo_type="dataset", revision="nope", cache_dir=tmp_path)
    with pytest.raises(RevisionNotFoundError):
        list(api.list_repo_tree(WIKI, repo_type="dataset", revision="refs/convert/nope"))
    with pytest.raises(EntryNotFoundError) as entry_err:
        hf_hub_download(WIKI, "nope.parquet", repo_type="dataset", cache_dir=tmp_path)
    assert isinstance(entry_err.value, HfHubHTTPError)
    with pytest.raises(EntryNotFoundError):
        list(api.list_repo_tree(WIKI, "no/such/dir", repo_type="dataset"))


# ------------------------------------------------------------------------------ hooks


def test_runtime_update_makes_a_new_commit(hub: hs.HubServer, api: HfApi, tmp_path: Path) -> None:
    repo_id = "someone/plain-updated"
    hub.add_repo(hs.default_config(repo_id))
    train = "data/train-00000-of-00001.parquet"
    old_sha = api.dataset_info(repo_id).sha
    old_train = _content(hub, repo_id, train)

    new_sha = hub.commit(repo_id, {train: b"new bytes", "data/test-00000-of-00001.parquet": b"t"})
    assert new_sha != old_sha and SHA_RE.match(new_sha)
    assert api.dataset_info(repo_id).sha == new_sha
    assert "data/test-00000-of-00001.parquet" in api.list_repo_files(repo_id, repo_type="dataset")
    latest = hf_hub_download(repo_id, train, repo_type="dataset", cache_dir=tmp_path)
    assert Path(latest).read_bytes() == b"new bytes"
    pinned = hf_hub_download(
        repo_id, train, repo_type="dataset", revision=old_sha, cache_dir=tmp_path
    )
    assert Path(pinned).read_bytes() == old_train
    assert [c.commit_id for c in api.list_repo_commits(repo_id, repo_type="dataset")] == [
        new_sha,
        old_sha,
    ]
    hub.commit(repo_id, {"data/test-00000-of-00001.parquet": None})
    assert not api.file_exists(repo_id, "data/test-00000-of-00001.parquet", repo_type="dataset")


def test_fail_500(hub: hs.HubServer, api: HfApi, tmp_path: Path) -> None:
    file = "20231101.fr/train-00000-of-00001.parquet"
    hub.fail(file, "500")
    try:
        with pytest.raises(HfHubHTTPError) as err:
            api.file_exists(WIKI, file, repo_type="dataset")
        assert err.value.response.status_code == 500
        hub.clear_log()
        with pytest.MonkeyPatch.context() as mp:
            hs.skip_client_sleeps(mp)  # hf_hub_download retries a 5xx HEAD with 1+2+4+8+8 s pauses
            with pytest.raises(LocalEntryNotFoundError) as local_err:
                hf_hub_download(WIKI, file, repo_type="dataset", cache_dir=tmp_path)
        assert isinstance(local_err.value.__cause__, HfHubHTTPError)
        assert [m for m, _, _ in hub.requests(contains=file)] == ["HEAD"] * 7
    finally:
        hub.clear_failures()

    hub.fail(f"{WIKI}/{file}", "500", times=1)  # "owner/name/path" keys work too
    with pytest.raises(HfHubHTTPError):
        api.file_exists(WIKI, file, repo_type="dataset")
    assert api.file_exists(WIKI, file, repo_type="dataset")  # the failure was used up

    hub.fail(file, "500-get")  # the HEAD succeeds, the download itself fails (no retry)
    try:
        with pytest.raises(HfHubHTTPError) as get_err:
            hf_hub_download(WIKI, file, repo_type="dataset", cache_dir=tmp_path)
        assert get_err.value.response.status_code == 500
    finally:
        hub.clear_failures()
    assert not list((tmp_path / f"datasets--{WIKI.replace('/', '--')}" / "snapshots").glob("*/*/*"))


def test_fail_drop(hub: hs.HubServer, tmp_path: Path) -> None:
    file = "20231101.en/train-00001-of-00002.parquet"
    content = _content(hub, WIKI, file)
    url = f"{hub.url}/datasets/{WIKI}/resolve/main/{file}"
    hub.fail(file, "drop")
    try:
        conn = http.client.HTTPConnection("127.0.0.1", hub.port, timeout=5)
        conn.request("HEAD", url)
        head = conn.getresponse()
        assert head.status == 200 and head.read() == b""  # HEAD is left alone
        conn.request("GET", url)
        with pytest.raises(http.client.IncompleteRead) as short:
            conn.getresponse().read()
        assert short.value.partial == content[: len(content) // 2]
        conn.close()

        with pytest.raises(httpx2.RemoteProtocolError):
            http_get(url, io.BytesIO(), _nb_retries=0)

        hub.clear_log()
        with pytest.MonkeyPatch.context() as mp:
            hs.skip_client_sleeps(mp)  # 5 resume attempts with a 1 s pause each otherwise
            with pytest.raises(httpx2.RemoteProtocolError):
                hf_hub_download(WIKI, file, repo_type="dataset", cache_dir=tmp_path)
        assert len(hub.requests("GET", file)) == 6
    finally:
        hub.clear_failures()

    # dropped once: the client starts over (nothing of the cut body was handed to it) and succeeds
    hub.fail(file, "drop", times=1)
    hub.clear_log()
    with pytest.MonkeyPatch.context() as mp:
        hs.skip_client_sleeps(mp)
        path = hf_hub_download(WIKI, file, repo_type="dataset", cache_dir=tmp_path)
    assert Path(path).read_bytes() == content
    assert [(m, r) for m, _, r in hub.requests(contains=file)] == [
        ("HEAD", None),
        ("GET", None),
        ("GET", None),
    ]


def test_env_only_in_a_fresh_process(hub: hs.HubServer, tmp_path: Path) -> None:
    """HF_ENDPOINT & co. alone are enough when set before huggingface_hub is imported."""
    env = {k: v for k, v in os.environ.items() if k not in hs.HUB_ENV_UNSET}
    env.update(hs.hub_env(hub.url, tmp_path / "home"))
    code = (
        "import huggingface_hub as h, sys\n"
        "from huggingface_hub.utils._runtime import is_xet_available\n"
        f"info = h.dataset_info({WIKI!r})\n"
        f"p = h.hf_hub_download({WIKI!r}, {EN0!r}, repo_type='dataset')\n"
        "print(info.sha, p.startswith(sys.argv[1]), is_xet_available())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "home")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split()
    assert out == [hub.repos[WIKI].sha(), "True", "False"]
