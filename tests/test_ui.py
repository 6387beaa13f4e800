"""The web UI through NiceGUI's simulated `user` (no browser): every page and action.

The app runs in-process from ``tests/ui_main.py``; each test gives it a Manager over a fresh
``tmp_path`` storage root with :func:`pygestor.ui.app.set_manager`.
"""

from __future__ import annotations

import asyncio
import struct
import sys
import time
import zlib
from pathlib import Path

import pytest
from nicegui import ElementFilter, ui
from nicegui.testing import User
from sources import TRAIN_ROWS, write_toy_source

from pygestor.config import Settings
from pygestor.manager import Manager
from pygestor.ui import app as ui_app


# ---------------------------------------------------------------------- fixtures and helpers
@pytest.fixture(autouse=True)
def keep_pygestor_modules():
    """NiceGUI's reset drops the modules of page functions, and their parents ("pygestor"), from
    sys.modules after each test; put ours back so later tests keep using the same modules."""
    saved = {k: v for k, v in sys.modules.items() if k == "pygestor" or k.startswith("pygestor.")}
    yield
    sys.modules.update(saved)


def make_manager(root: Path, **overrides) -> Manager:
    settings = Settings.load(data_dir=str(root / "data"), partition_size="60KB",
                             row_group_size=1000, retries=2, retry_backoff=0.01, env={},
                             **overrides)
    return Manager(settings)


@pytest.fixture
def manager(tmp_path: Path):
    manager = make_manager(tmp_path, source_roots=[str(tmp_path)])
    ui_app.set_manager(manager)
    yield manager
    ui_app.set_manager(None)


@pytest.fixture
def toy(tmp_path: Path) -> Path:
    return write_toy_source(tmp_path / "toy-src")


def the(user: User, marker: str) -> ui.element:
    """The one element with ``marker`` on the user's page (shown or hidden)."""
    with user:
        elements = list(ElementFilter(marker=marker, local_scope=False, only_visible=False))
    assert len(elements) == 1, f"{len(elements)} elements marked {marker!r}: {elements}"
    return elements[0]


async def until(condition, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def see(user: User, target: str | None = None, *, marker: str | None = None) -> None:
    """Like ``user.should_see``, patient with what pages load in the background."""
    if target is None:
        await user.should_see(marker=marker, retries=100)
    else:
        await user.should_see(target, retries=100)


def notified(user: User, text: str) -> bool:
    return any(text in message for message in user.notify.messages)


def png(width: int = 2, height: int = 2, rgb: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    """A small valid PNG image: a gradient from ``rgb``."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + \
            struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    r, g, b = rgb
    raw = b"".join(b"\x00" + b"".join(bytes(((r + 4 * x) % 256, (g + 4 * y) % 256, b))
                                       for x in range(width)) for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + \
        chunk(b"IEND", b"")


def write_media_source(root: Path) -> Path:
    """One parquet file with images (binary and struct-with-bytes), long text and nesting."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = root / "media-src"
    folder.mkdir(parents=True)
    rows = 12
    table = pa.table({
        "id": pa.array(range(rows), pa.int64()),
        "thumbnail": pa.array([png(48, 48, (i * 20, 40, 160)) for i in range(rows)],
                              pa.binary()),
        "image": pa.array([{"bytes": png(32, 32, (200, i * 20, 60)), "path": f"img-{i}.png"}
                           for i in range(rows)],
                          pa.struct([("bytes", pa.binary()), ("path", pa.string())])),
        "caption": pa.array([f"caption {i} " + "very long words " * 30 for i in range(rows)]),
        "tags": pa.array([[{"k": "a", "v": i}] for i in range(rows)],
                         pa.list_(pa.struct([("k", pa.string()), ("v", pa.int32())]))),
        "score": pa.array([None if i % 4 == 0 else i / 3 for i in range(rows)], pa.float64()),
    })
    pq.write_table(table, folder / "data.parquet")
    return folder


# ---------------------------------------------------------------------- datasets page
async def test_datasets_page_lists_sorts_and_searches(user: User, manager, toy):
    manager.add_dataset("toy", str(toy), pipeline="files", modality="text",
                        description="toy rows")
    manager.add_dataset("owner/other", str(toy / "test"), pipeline="files")
    manager.download("toy/train", partitions=["part-00000.parquet"], progress=False)

    await user.open("/")
    await see(user, "Datasets")
    table = the(user, "datasets-table")
    assert isinstance(table, ui.table)
    await until(lambda: len(table.rows) == 2, what="two rows")
    assert [r["name"] for r in table.rows] == ["owner/other", "toy"]
    names = {c["name"] for c in table.columns}
    assert {"name", "pipeline", "source", "modality", "subsets", "downloaded",
            "updated"} <= names
    assert all(c.get("sortable") for c in table.columns), "every column sorts"
    toy_row = next(r for r in table.rows if r["name"] == "toy")
    assert toy_row["pipeline"] == "files" and toy_row["modality"] == "text"
    assert toy_row["source"] == str(toy) and toy_row["subsets"] == 2
    assert toy_row["downloaded_parts"] == 1 and toy_row["downloaded_bytes"] > 0
    assert toy_row["href"] == "/dataset/toy"
    assert the(user, "stat-datasets").text == "2"
    assert the(user, "stat-parts").text == "1 / 5"

    chart = the(user, "usage-chart")
    series = {s["name"]: s["data"] for s in chart.options["series"]}
    labels = chart.options["yAxis"]["data"]
    stored = dict(zip(labels, series["Downloaded (stored)"], strict=True))
    waiting = dict(zip(labels, series["Not downloaded (source size)"], strict=True))
    assert stored["toy"] == toy_row["downloaded_bytes"] and stored["owner/other"] == 0
    assert 0 < waiting["toy"] < toy_row["source_bytes"] and waiting["owner/other"] > 0

    user.find(marker="search").type("OWNER")
    await until(lambda: [r["name"] for r in table.rows] == ["owner/other"], what="search")
    search = the(user, "search")
    search.value = "text"  # the modality column is searched too
    await until(lambda: [r["name"] for r in table.rows] == ["toy"], what="modality search")
    search.value = "no such thing"
    await until(lambda: table.rows == [], what="no match")
    assert "No dataset matches" in table.props["no-data-label"]
    search.value = ""
    await until(lambda: len(table.rows) == 2, what="search cleared")


async def test_empty_catalog_invites_to_add(user: User, manager):
    await user.open("/")
    await see(user, "No datasets yet")
    await see(user, marker="add-dataset")
    assert the(user, "stat-datasets").text == "0"


async def test_add_dataset_in_the_background_then_open_it(user: User, manager, toy):
    original = manager.add_dataset

    def slow_add(*args, **kwargs):
        time.sleep(0.4)  # a remote source takes a while: the page must stay responsive
        return original(*args, **kwargs)
    manager.add_dataset = slow_add
    await user.open("/")
    user.find(marker="add-dataset").click()
    await see(user, marker="add-name")
    select = the(user, "add-pipeline")
    assert next(iter(select.options)) == "auto" and "files" in select.options
    assert select.value == "auto"
    user.find(marker="add-name").type("toy")
    user.find(marker="add-url").type(str(toy))
    user.find(marker="add-modality").type("text")
    user.find(marker="add-submit").click()
    await see(user, marker="add-busy")  # spinner while discovering in a worker thread
    await see(user, marker="add-spinner")
    assert not the(user, "add-submit").enabled
    await until(lambda: notified(user, "Added dataset toy"), what="success message")
    await see(user, marker="dataset-title")
    assert manager.catalog.names() == ["toy"]
    assert manager.dataset("toy").modality == "text"
    assert sorted(manager.dataset("toy").subsets) == ["test", "train"]
    subsets = the(user, "subsets-table")
    assert [r["name"] for r in subsets.rows] == ["test", "train"]


async def test_add_dataset_errors_are_clear_messages(user: User, manager, toy, tmp_path):
    manager.add_dataset("toy", str(toy), pipeline="files")
    await user.open("/")
    user.find(marker="add-dataset").click()
    await see(user, marker="add-name")
    error = the(user, "add-error")

    cases = [
        ("new", str(tmp_path / "does-not-exist"), "does-not-exist"),  # bad source
        ("../escape", str(toy), "name"),                               # invalid name
        ("toy", str(toy), "already registered"),                       # taken
        ("", str(toy), "Give the dataset a name"),                     # empty
        ("etc", "/etc", "outside the folders sources may come from"),   # outside the roots
        ("link", "http://169.254.169.254/latest/", "link-local"),      # metadata service
        ("creds", "http://bob:PASSWORD@example.com/t.csv", "user name or password"),
    ]
    for name, url, expected in cases:
        the(user, "add-name").value = name
        the(user, "add-url").value = url
        user.find(marker="add-submit").click()
        await until(lambda expected=expected: error.visible and expected in error.text,
                    what=f"error mentioning {expected!r}")
        await user.should_not_see(marker="add-busy")
    assert notified(user, "Could not add the dataset")
    assert manager.catalog.names() == ["toy"]
    assert "PASSWORD" not in error.text
    user.find(marker="add-cancel").click()
    await user.should_not_see(marker="add-name")


# ---------------------------------------------------------------------- dataset page
async def test_dataset_page_metadata_subsets_and_editing(user: User, manager, toy):
    manager.add_dataset("toy", str(toy), pipeline="files", description="first words")
    manager.download("toy/test", progress=False)
    await user.open("/dataset/toy")
    await see(user, marker="dataset-title")
    assert the(user, "meta-source").text == str(toy)
    assert the(user, "meta-downloaded").text.startswith("1 of ")
    rows = {r["name"]: r for r in the(user, "subsets-table").rows}
    assert rows["test"]["partitions"] == 1 and rows["test"]["downloaded"] == 1
    assert rows["test"]["rows"] == 500 and rows["test"]["status"] == "Downloaded"
    assert rows["train"]["partitions"] >= 3 and rows["train"]["downloaded"] == 0
    assert rows["train"]["href"] == "/dataset/toy?subset=train"

    assert the(user, "edit-description").value == "first words"
    save = the(user, "save-metadata")
    assert not save.enabled, "nothing to save yet"
    user.find(marker="edit-description").clear().type("Toy rows for tests")
    user.find(marker="edit-modality").type("tabular")
    assert save.enabled
    user.find(marker="save-metadata").click()
    await until(lambda: notified(user, "Saved"), what="saved")
    record = manager.dataset("toy")
    assert record.description == "Toy rows for tests" and record.modality == "tabular"
    assert not save.enabled


async def test_names_with_a_slash_subset_urls_and_unknown_names(user: User, manager, toy):
    manager.add_dataset("owner/other", str(toy), pipeline="files")
    await user.open("/dataset/owner/other")
    assert the(user, "dataset-title").text == "owner/other"
    await user.open("/dataset/owner/other/train")  # a subset reference: its page
    assert the(user, "subset-title").text == "train"
    await user.open("/dataset/owner/other?subset=train")
    assert the(user, "subset-title").text == "train"
    await user.open("/dataset/owner/othr")
    await see(user, "Nothing to show here")
    await see(user, "did you mean 'owner/other'")
    await user.open("/dataset/owner/other?subset=trian")
    await see(user, "did you mean 'train'")

    from pygestor.ui.display import dataset_href

    manager.add_dataset("team/a b+c=1", str(toy), pipeline="files")  # every allowed character
    href = dataset_href("team/a b+c=1", "train")
    assert href == "/dataset/team/a%20b%2Bc%3D1?subset=train"
    await user.open(href)
    await see(user, marker="subset-subtitle")
    assert the(user, "subset-title").text == "train"
    await until(lambda: "partitions downloaded" in the(user, "subset-subtitle").text,
                what="subset loaded")


async def test_delete_dataset_asks_first_and_can_keep_data(user: User, manager, toy):
    manager.add_dataset("toy", str(toy), pipeline="files")
    manager.add_dataset("keep", str(toy), pipeline="files")
    manager.download("toy/test", progress=False)
    manager.download("keep/test", progress=False)
    toy_file = Path(manager.partition_path("toy", "test", "part-00000.parquet"))
    keep_file = Path(manager.partition_path("keep", "test", "part-00000.parquet"))
    assert toy_file.exists() and keep_file.exists()

    await user.open("/dataset/toy")
    user.find(marker="delete-dataset").click()
    await see(user, "Delete dataset “toy”?")
    user.find(marker="delete-cancel").click()
    await user.should_not_see("Delete dataset “toy”?")
    assert "toy" in manager.catalog.names()

    user.find(marker="delete-dataset").click()
    await see(user, marker="delete-option")
    assert the(user, "delete-option").value is True, "data is deleted too by default"
    user.find(marker="delete-ok").click()
    await until(lambda: notified(user, "Deleted toy and its data"), what="deleted")
    assert manager.catalog.names() == ["keep"] and not toy_file.exists()
    await see(user, "Datasets")  # back on the list

    await user.open("/dataset/keep")
    user.find(marker="delete-dataset").click()
    await see(user, marker="delete-option")
    user.find(marker="delete-option").click()  # keep the data
    user.find(marker="delete-ok").click()
    await until(lambda: notified(user, "data kept"), what="deleted, data kept")
    assert manager.catalog.names() == [] and keep_file.exists()


# ---------------------------------------------------------------------- subset view
async def test_download_shows_live_progress_to_the_end(user: User, manager, toy):
    manager.add_dataset("toy", str(toy), pipeline="files")
    parts = [p.name for p in manager.dataset("toy").subsets["train"].partitions]
    original = manager.download

    def slow_download(ref, partitions=None, force=False, *, progress=True, cancel=None, **kw):
        def slowly(event):
            progress(event)
            time.sleep(0.3)  # long enough for the page's timer to show each step
        return original(ref, partitions, force, progress=slowly, cancel=cancel, max_workers=1)
    manager.download = slow_download

    await user.open("/dataset/toy?subset=train")
    await see(user, marker="subset-title")
    bar = the(user, "progress-bar")
    seen: list[float] = []
    bar.on_value_change(lambda e: seen.append(e.value))
    await user.should_not_see(marker="progress-title")  # no progress card before a download
    user.find(marker="download-subset").click()
    await until(lambda: notified(user, "Downloaded toy/train"), what="download finished")
    await see(user, marker="progress-title")
    assert the(user, "progress-title").text == "Downloaded toy/train"
    assert bar.value == 1.0
    assert any(0 < v < 1 for v in seen), f"no intermediate progress shown: {seen}"
    assert seen == sorted(seen), "progress only moves forward"
    assert the(user, "progress-detail").text.startswith(f"{len(parts)} / {len(parts)} partitions")
    assert all(p.downloaded for p in manager.dataset("toy").subsets["train"].partitions)
    table = the(user, "partitions-table")
    await until(lambda: all(r["downloaded"] for r in table.rows), what="table refreshed")

    # downloading again fetches nothing: the manager skips what is present
    user.find(marker="progress-cancel").click()  # "Dismiss"
    user.find(marker="download-subset").click()
    await until(lambda: notified(user, "fetched 0, skipped 3"), what="second download")


async def test_download_selected_and_cancel(user: User, manager, toy):
    manager.add_dataset("toy", str(toy), pipeline="files")
    original = manager.download

    def slow_download(ref, partitions=None, force=False, *, progress=True, cancel=None, **kw):
        def slowly(event):
            progress(event)
            time.sleep(0.5)
        return original(ref, partitions, force, progress=slowly, cancel=cancel, max_workers=1)
    manager.download = slow_download

    await user.open("/dataset/toy?subset=train")
    table = the(user, "partitions-table")
    await until(lambda: len(table.rows) == 3, what="partitions listed")
    table.selected = [table.rows[1]]
    await until(lambda: the(user, "download-selected").enabled, what="selection noticed")
    assert the(user, "download-selected").text == "Download selected (1)"
    user.find(marker="download-selected").click()
    await until(lambda: notified(user, "Downloaded 1 selected partition of toy/train"),
                what="selected download")
    downloaded = [p.name for p in manager.dataset("toy").subsets["train"].partitions
                  if p.downloaded]
    assert downloaded == [table.rows[1]["name"]]

    user.find(marker="download-subset").click()
    cancel = the(user, "progress-cancel")
    await until(lambda: "1 / 3" in the(user, "progress-detail").text or
                "2 / 3" in the(user, "progress-detail").text, what="download running")
    user.find(marker="progress-cancel").click()
    assert cancel.text == "Cancelling…"
    await until(lambda: notified(user, "cancelled"), what="cancelled")
    assert cancel.text == "Dismiss"
    assert the(user, "download-subset").enabled


async def test_remove_selected_partitions_after_confirmation(user: User, manager, toy):
    manager.add_dataset("toy", str(toy), pipeline="files")
    manager.download("toy/train", progress=False)
    await user.open("/dataset/toy?subset=train")
    table = the(user, "partitions-table")
    await until(lambda: len(table.rows) == 3 and all(r["downloaded"] for r in table.rows),
                what="partitions listed")
    chosen = [table.rows[0]["name"], table.rows[2]["name"]]
    table.selected = [table.rows[0], table.rows[2]]
    await until(lambda: the(user, "remove-selected").enabled, what="selection noticed")

    user.find(marker="remove-selected").click()
    await see(user, "Remove 2 partitions of toy/train?")
    user.find(marker="remove-cancel").click()
    await user.should_not_see("Remove 2 partitions of toy/train?")
    assert all(p.downloaded for p in manager.dataset("toy").subsets["train"].partitions)

    user.find(marker="remove-selected").click()
    await see(user, "Remove 2 partitions of toy/train?")
    user.find(marker="remove-ok").click()
    await until(lambda: notified(user, "Removed 2 partitions of toy/train"), what="removed")
    state = {p.name: p.downloaded for p in manager.dataset("toy").subsets["train"].partitions}
    assert [n for n, d in state.items() if not d] == chosen
    for name in chosen:
        assert not Path(manager.partition_path("toy", "train", name)).exists()
    await until(lambda: [r["name"] for r in table.rows if not r["downloaded"]] == chosen,
                what="table refreshed")
    assert table.selected == []

    user.find(marker="remove-subset").click()  # the whole subset
    await see(user, "Remove the 1 downloaded partition of toy/train?")
    user.find(marker="remove-ok").click()
    await until(lambda: notified(user, "Removed 1 partition of toy/train"), what="all removed")
    assert not any(p.downloaded for p in manager.dataset("toy").subsets["train"].partitions)


async def test_schema_and_sample_rows_of_downloaded_data(user: User, manager, toy):
    manager.add_dataset("toy", str(toy), pipeline="files")
    await user.open("/dataset/toy?subset=train")
    await see(user, marker="sample-empty")
    await see(user, "Download at least one partition to see sample rows.")

    manager.download("toy/train", progress=False)
    await user.open("/dataset/toy?subset=train")
    await see(user, marker="sample-table")
    schema = the(user, "schema-table")
    assert [(r["column"], r["type"]) for r in schema.rows] == \
        [("id", "int64"), ("text", "string"), ("label", "int64"), ("score", "double")]
    sample = the(user, "sample-table")
    assert [c["label"] for c in sample.columns] == ["id", "text", "label", "score"]
    assert len(sample.rows) == 50 < TRAIN_ROWS and sample.props["pagination"]["rowsPerPage"] == 10
    assert sample.rows[0]["c0"] == {"t": "text", "v": "0"}
    assert sample.rows[7]["c1"] == {"t": "text", "v": "sample 7, with a comma"}


async def test_images_long_text_and_nested_types(user: User, manager, tmp_path):
    manager.add_dataset("media", str(write_media_source(tmp_path)), pipeline="files")
    manager.download("media", progress=False)
    await user.open("/dataset/media?subset=default")
    await see(user, marker="sample-table")
    schema = {r["column"]: r for r in the(user, "schema-table").rows}
    assert schema["image"]["type"] == "struct (2 fields)"
    assert schema["image.bytes"]["type"] == "binary" and schema["image.bytes"]["depth"] == 1
    assert schema["tags"]["type"] == "list<struct>"
    assert schema["tags[].v"]["type"] == "int32" and schema["tags[].v"]["depth"] == 1
    sample = the(user, "sample-table")
    columns = {c["label"]: c["field"] for c in sample.columns}
    first = sample.rows[1]
    thumbnail, image = first[columns["thumbnail"]], first[columns["image"]]
    assert thumbnail["t"] == "img" and thumbnail["src"].startswith("data:image/png;base64,")
    assert image["t"] == "img" and image["v"] == "img-1.png"
    caption = first[columns["caption"]]
    assert caption["t"] == "long" and caption["short"].endswith("…")
    assert caption["v"].startswith("caption 1 very long words")
    assert sample.rows[0][columns["score"]] == {"t": "null", "v": "null"}
    assert "'k': 'a'" in first[columns["tags"]]["v"]


async def test_snippets_copy_in_the_browser(user: User, manager, toy):
    manager.add_dataset("toy", str(toy), pipeline="files")
    await user.open("/dataset/toy?subset=train")
    for kind in ("load", "iter_batches", "torch", "cli"):
        await see(user, marker=f"snippet-{kind}")
    codes = [e.content for e in user.find(ui.code).elements]
    assert any("pygestor.load('toy/train')" in c for c in codes)
    assert any("DataLoader(dataset" in c and "PygestorDataset('toy/train'" in c for c in codes)
    assert any("pygestor download toy/train" in c for c in codes)
    assert any(manager.settings.data_dir in c for c in codes)
    button = the(user, "copy-load")
    [listener] = [x for x in button._event_listeners.values() if x.type == "click"]
    assert "window.pgCopy(" in listener.js_handler, "copied by the browser, not the server"
    assert "pygestor.load('toy/train')" in listener.js_handler
    user.find(marker="copy-load").click()
    await until(lambda: notified(user, "Copied the pandas DataFrame snippet"), what="copied")


# ---------------------------------------------------------------------- security
async def test_password_protects_every_page(user: User, tmp_path, toy):
    manager = make_manager(tmp_path, ui_password="correct horse")
    manager.add_dataset("toy", str(toy), pipeline="files")
    ui_app.set_manager(manager)
    try:
        response = await user.http_client.get("/dataset/toy?subset=train")
        assert response.status_code == 303
        assert response.headers["location"] == \
            "/login?redirect_to=%2Fdataset%2Ftoy%3Fsubset%3Dtrain"
        await user.open("/")
        await see(user, marker="password")
        await user.should_not_see("Datasets")
        user.find(marker="password").type("wrong")
        user.find(marker="sign-in").click()
        await until(lambda: the(user, "login-error").visible, what="wrong password")
        assert the(user, "login-error").text == "Wrong password. Try again."

        await user.open("/login?redirect_to=/dataset/toy")
        user.find(marker="password").type("correct horse")
        user.find(marker="sign-in").click()
        await see(user, marker="dataset-title")
        await user.open("/")
        await see(user, marker="datasets-table")
        assert "correct horse" not in str(user.current_layout)
        await user.open("/login?redirect_to=//evil.example")  # already in: sent home, locally
        await see(user, marker="datasets-table")

        # a tab left open after the session ended (signed out elsewhere) cannot act any more
        await user.open("/dataset/toy?subset=train")
        await see(user, marker="partitions-table")
        from pygestor.ui import auth

        with user:
            auth.log_out()
        user.find(marker="download-subset").click()
        await see(user, marker="password")
        assert not any(p.downloaded for _, p in manager.dataset("toy").partitions)
        assert notified(user, "Your session has ended")

        user.find(marker="password").type("correct horse")
        user.find(marker="sign-in").click()
        await see(user, marker="datasets-table")
        user.find(marker="sign-out").click()
        await see(user, marker="password")
        response = await user.http_client.get("/")
        assert response.status_code == 303
    finally:
        ui_app.set_manager(None)


def test_refuses_non_loopback_without_password(tmp_path):
    from pygestor.errors import ConfigError
    from pygestor.ui import auth

    with pytest.raises(ConfigError, match=r"ui_password.*PYGESTOR_UI_PASSWORD"):
        auth.check_binding("0.0.0.0", "")
    auth.check_binding("0.0.0.0", "set")
    for host in ("127.0.0.1", "::1", "localhost", "127.0.0.2"):
        auth.check_binding(host, "")
    for host in ("::", "192.168.1.10", "example.com"):
        with pytest.raises(ConfigError):
            auth.check_binding(host, "")
    manager = make_manager(tmp_path)
    ui_app.set_manager(manager)
    try:
        with pytest.raises(ConfigError, match="not a loopback address"):
            ui_app.start(host="0.0.0.0", port=9)
    finally:
        ui_app.set_manager(None)
    assert auth.safe_redirect("//evil.example") == "/"
    assert auth.safe_redirect("https://evil.example") == "/"
    assert auth.safe_redirect("/dataset/x?subset=y") == "/dataset/x?subset=y"


def test_credentials_never_reach_the_page():
    from pygestor.ui import display

    assert display.safe("s3://AKIA:secret@bucket/x") == "s3://***@bucket/x"
    row = display.dataset_row({"name": "x", "url": "https://user:tok@host/data.csv",
                               "partitions": 1, "downloaded": 0})
    assert "tok" not in str(row)


def test_importing_pygestor_does_not_import_nicegui():
    import subprocess

    code = "import pygestor, pygestor.ui, sys; print('nicegui' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


async def test_storage_options_and_credentials_never_shown(user: User, tmp_path, toy):
    import json
    import uuid

    settings = Settings.load(data_dir=f"memory://pg-ui-{uuid.uuid4().hex[:8]}", env={},
                             storage_options={"key": "AKIA-UI-TEST", "secret": "TOPSECRET-42"},
                             partition_size="60KB", row_group_size=1000)
    manager = Manager(settings)
    manager.add_dataset("toy", str(toy), pipeline="files")
    manager.download("toy/test", progress=False)
    ui_app.set_manager(manager)
    try:
        for path, marker in (("/", "datasets-table"), ("/dataset/toy", "subsets-table"),
                             ("/dataset/toy?subset=test", "sample-table")):
            await user.open(path)
            await see(user, marker=marker)
            with user:
                shown = json.dumps([e._to_dict() for e in user.client.elements.values()],
                                   default=str)
            assert "TOPSECRET-42" not in shown and "AKIA-UI-TEST" not in shown, path
            assert "memory://pg-ui-" in shown  # the storage root itself is shown
    finally:
        ui_app.set_manager(None)


async def test_each_browser_tab_has_its_own_state(create_user, manager, toy):
    manager.add_dataset("toy", str(toy), pipeline="files")
    alice, bob = create_user(), create_user()
    await alice.open("/")
    await bob.open("/")
    alice.find(marker="add-dataset").click()
    await see(alice, marker="add-name")
    await bob.should_not_see(marker="add-name")  # Alice's dialog is hers

    await alice.open("/dataset/toy?subset=train")
    await bob.open("/dataset/toy?subset=train")
    await see(alice, marker="partitions-table")
    await see(bob, marker="partitions-table")
    alice.find(marker="download-subset").click()
    await see(alice, marker="progress-title")
    await until(lambda: all(p.downloaded for p in manager.dataset("toy").subsets["train"]
                            .partitions), what="Alice's download")
    await bob.should_not_see(marker="progress-title")  # no progress card in Bob's tab


def test_presentation_of_real_nested_parquet_and_odd_values():
    """Schemas written by other engines read well; odd cell values never break a table."""
    import datetime as dt
    import decimal

    import numpy as np
    import pandas as pd
    import pyarrow.parquet as pq

    from pygestor.ui import display

    data = Path(__file__).parent / "data"
    rows = {r["column"]: r for r in display.schema_rows(
        pq.read_schema(data / "nullable.impala.parquet"))}
    assert rows["int_map"]["type"] == "map<string, int32>"
    assert rows["nested_struct"]["type"] == "struct (4 fields)"
    assert rows["nested_struct.C"]["type"] == "struct (1 field)"
    assert rows["nested_struct.C.d"]["depth"] == 2
    rows = {r["column"]: r for r in display.schema_rows(
        pq.read_schema(data / "nested_maps.snappy.parquet"))}
    assert rows["a"]["type"] == "map<string, map<int32, bool>>"

    assert display.cell(np.int64(7)) == {"t": "text", "v": "7"}
    assert display.cell(np.float32(0.5)) == {"t": "text", "v": "0.5"}
    assert display.cell(float("nan"))["t"] == "null"
    assert display.cell(pd.NaT)["t"] == "null" and display.cell(pd.NA)["t"] == "null"
    assert display.cell(decimal.Decimal("1.50"))["v"] == "1.50"
    assert display.cell(dt.date(2024, 1, 2))["v"] == "2024-01-02"
    assert display.cell(np.array([1, 2]))["v"] == "[1, 2]"
    assert display.cell(b"\x00\x01binary")["v"].startswith("<8 B binary> 0001")
    huge = display.cell("x" * 100_000)
    assert huge["t"] == "long" and len(huge["v"]) < 20_100 and "more characters" in huge["v"]
    budget = [1000]
    picture = png(4, 4)
    assert display.cell(picture, budget)["t"] == "img" and budget[0] == 1000 - len(picture)
    assert display.cell(picture, [10])["v"].endswith("not previewed>")
    short = display.middle("/a/very/long/path/to/the/source/folder/data", 20)
    assert len(short) == 20 and short.startswith("/a/") and short.endswith("/folder/data")
    assert display.middle("/short", 20) == "/short"
