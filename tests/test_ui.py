"""The web UI through NiceGUI's simulated `user` (no browser): every page and action.

The app runs in-process from ``tests/ui_main.py``; each test gives it a Manager over a fresh
``tmp_path`` storage root with :func:`pygestor.api.set_manager` (the UI uses the process's one
manager, the Python API's).
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

from pygestor import api
from pygestor.config import Settings
from pygestor.errors import PygestorError
from pygestor.manager import Manager
from pygestor.ui import app as ui_app
from pygestor.ui.display import DASH


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
    api.set_manager(manager)
    yield manager
    api.set_manager(None)


@pytest.fixture
def toy(tmp_path: Path) -> Path:
    return write_toy_source(tmp_path / "toy-src")


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory):
    """The fake Hugging Face Hub (a Wikipedia-like repo); huggingface_hub points at it."""
    import hubserver as hs

    with hs.serving([hs.wikipedia_like()], tmp_path_factory.mktemp("hf_home")) as server:
        server.clear_log()
        yield server


def the(user: User, marker: str) -> ui.element:
    """The one element with ``marker`` on the user's page (shown or hidden)."""
    with user:
        elements = list(ElementFilter(marker=marker, local_scope=False, only_visible=False))
    assert len(elements) == 1, f"{len(elements)} elements marked {marker!r}: {elements}"
    return elements[0]


def text_of(user: User, marker: str) -> str:
    """The text of the element with ``marker``, or "" while there is none (for waiting)."""
    with user:
        elements = list(ElementFilter(marker=marker, local_scope=False, only_visible=False))
    return elements[0].text if len(elements) == 1 else ""


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


async def test_add_dialog_previews_what_it_would_register_then_adds(user: User, manager,
                                                                     toy):
    original = manager.plan_dataset

    def slow_plan(*args, **kwargs):
        time.sleep(0.4)  # a remote source takes a while: the page must stay responsive
        return original(*args, **kwargs)
    manager.plan_dataset = slow_plan
    calls: list[dict] = []
    original_add = manager.add_dataset
    manager.add_dataset = lambda *a, **k: calls.append(k) or original_add(*a, **k)
    await user.open("/")
    user.find(marker="add-dataset").click()
    await see(user, marker="add-name")
    select = the(user, "add-pipeline")
    assert next(iter(select.options)) == "auto" and "files" in select.options
    assert not the(user, "add-submit").enabled, "nothing is added before a preview"
    user.find(marker="add-name").type("toy")
    user.find(marker="add-url").type(str(toy))
    user.find(marker="add-modality").type("text")
    user.find(marker="add-preview").click()
    await see(user, marker="add-spinner")  # discovering in a worker thread
    assert not the(user, "add-submit").enabled
    await until(lambda: the(user, "plan").visible, what="the plan")
    assert "2 subsets" in the(user, "plan-summary").text
    plan = {r["name"]: r for r in the(user, "plan-subsets").rows}
    assert plan["train"]["partitions"] == 3 and plan["test"]["partitions"] == 1
    await see(user, marker="plan-rows")  # first rows of a subset, read from the source
    shown = the(user, "plan-rows")
    assert any(cell == {"t": "text", "v": "test 0"} for row in shown.rows for cell in row.values())
    assert [r["column"] for r in the(user, "plan-schema").rows] == ["id", "text", "label", "score"]
    assert manager.catalog.names() == [] and not (Path(manager.settings.data_dir) / "toy").exists()

    the(user, "add-url").value = str(toy) + "/"  # inputs changed: preview again before adding
    await until(lambda: not the(user, "add-submit").enabled, what="add disabled")
    user.find(marker="add-preview").click()
    await until(lambda: the(user, "add-submit").enabled, what="add enabled again")
    user.find(marker="add-submit").click()
    await until(lambda: notified(user, "Added dataset toy"), what="success message")
    await see(user, marker="dataset-title")
    assert calls and calls[0]["face"] == "ui", "the UI adds through the closed source policy"
    assert manager.catalog.names() == ["toy"]
    assert manager.dataset("toy").modality == "text"
    assert [r["name"] for r in the(user, "subsets-table").rows] == ["test", "train"]


def write_odd_csv(root: Path) -> Path:
    """A latin-1, semicolon-separated folder whose two files have different columns."""
    folder = root / "odd-src"
    folder.mkdir(parents=True)
    (folder / "a.csv").write_bytes("id;name;code\n1;Zoë;007\n2;Jörg;010\n".encode("latin-1"))
    (folder / "b.csv").write_bytes("id;name\n3;Ana\n".encode("latin-1"))
    return folder


async def test_add_dialog_takes_the_options(user: User, manager, tmp_path):
    source = write_odd_csv(tmp_path)
    await user.open("/")
    user.find(marker="add-dataset").click()
    await see(user, marker="add-name")
    user.find(marker="add-name").type("odd")
    user.find(marker="add-url").type(str(source))
    assert not the(user, "add-revision").visible, "files sources have no revision"
    assert the(user, "add-delimiter").visible and the(user, "add-union").visible
    user.find(marker="add-preview").click()  # without the options: refused, clearly
    await until(lambda: the(user, "add-error").text != "", what="an error")
    assert the(user, "add-error").text
    the(user, "add-delimiter").value = ";"
    the(user, "add-encoding").value = "latin-1"
    the(user, "add-column_types").value = "code: string, id: int32"
    the(user, "add-union").value = True
    user.find(marker="add-preview").click()
    await see(user, marker="plan-rows")
    types = {r["column"]: r["type"] for r in the(user, "plan-schema").rows}
    assert types == {"id": "int32", "name": "string", "code": "string"}
    rows = the(user, "plan-rows").rows
    assert [r["c1"]["v"] for r in rows] == ["Zoë", "Jörg"] and rows[0]["c2"]["v"] == "007"
    user.find(marker="add-submit").click()
    await see(user, marker="dataset-title")
    options = manager.dataset("odd").options
    assert options["delimiter"] == ";" and options["encoding"] == "latin-1"
    assert options["column_types"] == {"code": "string", "id": "int32"}
    assert options["schema"] == "union"
    manager.download("odd", progress=False)
    assert manager.preview("odd/default", 5).num_rows == 2  # preview reads the first partition
    assert sorted(pygestor_load(manager, "odd/default")["name"]) == ["Ana", "Jörg", "Zoë"]


def pygestor_load(manager, ref):
    from pygestor.loaders.arrow import load

    return load(manager, ref)


async def test_add_dialog_hub_options_and_preview(user: User, manager, hub):
    await user.open("/")
    user.find(marker="add-dataset").click()
    await see(user, marker="add-name")
    user.find(marker="add-name").type("wiki")
    user.find(marker="add-url").type("https://huggingface.co/datasets/wikimedia/wikipedia")
    assert the(user, "add-configs").visible and the(user, "add-revision").visible
    assert not the(user, "add-delimiter").visible
    the(user, "add-configs").value = "20231101.fr"
    the(user, "add-revision").value = "main"
    user.find(marker="add-preview").click()
    await see(user, marker="plan-rows")
    assert [r["name"] for r in the(user, "plan-subsets").rows] == ["20231101.fr/train"]
    assert the(user, "plan-rows").rows[0]["c1"]["v"].startswith("wiki")
    ranged = [entry for entry in hub.log if "/resolve/" in entry[1]]
    assert ranged and all(entry[2] for entry in ranged), "the preview reads ranges"
    assert manager.catalog.names() == []


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


async def test_no_message_can_be_injected_through_the_url(user: User, manager, toy):
    manager.add_dataset("production-db", str(toy), pipeline="files")
    await user.open("/?deleted=production-db&data=1")
    await see(user, marker="datasets-table")
    await until(lambda: len(the(user, "datasets-table").rows) == 1, what="the table")
    await asyncio.sleep(0.3)
    assert not any("Deleted" in m for m in user.notify.messages), user.notify.messages
    assert "production-db" in manager.catalog.names()


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


async def test_rows_before_and_after_downloading(user: User, manager, toy):
    manager.add_dataset("toy", str(toy), pipeline="files")
    await user.open("/dataset/toy?subset=train")
    await see(user, marker="source-rows")  # not downloaded: the first rows from the source
    source_rows = the(user, "source-rows")
    await until(lambda: len(source_rows.rows) == 20, what="source rows")
    assert source_rows.rows[7]["c1"] == {"t": "text", "v": "sample 7, with a comma"}
    assert [c["label"] for c in source_rows.columns] == ["row", "id", "text", "label", "score"]
    assert not the(user, "rows-viewer").visible
    schema = the(user, "schema-table")  # from the record, before any download
    assert [(r["column"], r["type"]) for r in schema.rows] == \
        [("id", "int64"), ("text", "string"), ("label", "int64"), ("score", "double")]
    assert not any(p.downloaded for _, p in manager.dataset("toy").partitions)

    manager.download("toy/train", progress=False)
    await user.open("/dataset/toy?subset=train")
    rows = the(user, "rows-table")
    await until(lambda: len(rows.rows) == 25, what="the first page")
    assert rows.rows[0]["c0"] == {"t": "text", "v": "0"}
    assert rows.rows[7]["c1"] == {"t": "text", "v": "sample 7, with a comma"}
    assert the(user, "rows-status").text.startswith(f"rows 1{DASH}25 of 3,000")
    assert the(user, "page-count").text == "of 120"
    number = the(user, "page-number")
    number.value = 87  # jump to any page
    user.find(marker="page-number").trigger("keydown.enter")
    await until(lambda: rows.rows and rows.rows[0]["_row"] == 86 * 25, what="page 87")
    assert [r["c0"]["v"] for r in rows.rows] == [str(i) for i in range(2150, 2175)]
    user.find(marker="page-last").click()
    await until(lambda: rows.rows and rows.rows[-1]["_row"] == 2999, what="the last page")
    the(user, "page-size").value = 100
    await until(lambda: len(rows.rows) == 100 and rows.rows[0]["_row"] == 0, what="100 rows")
    assert the(user, "page-count").text == "of 30"


async def test_rows_sorted_filtered_and_refused_queries(user: User, manager, toy):
    manager.add_dataset("toy", str(toy), pipeline="files")
    manager.download("toy/train", progress=False)
    await user.open("/dataset/toy?subset=train")
    rows = the(user, "rows-table")
    await until(lambda: len(rows.rows) == 25, what="the first page")
    columns = {c["label"]: c["field"] for c in rows.columns}
    the(user, "filter-column").value = "label"
    the(user, "filter-op").value = "="
    the(user, "filter-value").value = "3"
    user.find(marker="filter-add").click()
    await until(lambda: "300 matching rows" in the(user, "rows-status").text, what="filtered")
    assert all(r[columns["label"]]["v"] == "3" for r in rows.rows)
    assert [r["_row"] for r in rows.rows[:3]] == [3, 13, 23]
    the(user, "sql-where").value = "score > 700 AND text LIKE '%comma%'"
    user.find(marker="sql-apply").click()
    expected = [i for i in range(3000) if i % 10 == 3 and i * 0.25 > 700 and i % 7 == 0]
    await until(lambda: f"{len(expected)} matching rows" in the(user, "rows-status").text,
                what="SQL condition")
    assert [r["_row"] for r in rows.rows] == expected
    the(user, "sort-column").value = "score"
    the(user, "sort-direction").value = True
    await until(lambda: [r["_row"] for r in rows.rows] == expected[::-1], what="sorted desc")

    for where, message in (("1=1; DROP TABLE data", "';' is not allowed"),
                           ("id IN (SELECT 1)", "not a query"),
                           ("nosuch > 1", "nosuch"),
                           ("read_text('/etc/passwd') IS NOT NULL", "cannot run")):
        the(user, "sql-where").value = where
        user.find(marker="sql-apply").click()
        await until(lambda m=message: the(user, "query-error").visible and
                    m in the(user, "query-error").text, what=f"refused: {where}")
        assert "Traceback" not in the(user, "query-error").text
    the(user, "filter-value").value = "not a number"
    user.find(marker="filter-add").click()
    await until(lambda: "is not a value of column 'label'" in the(user, "query-error").text,
                what="a bad value")
    user.find(marker="query-clear").click()
    await until(lambda: the(user, "rows-status").text.startswith(
        f"rows 1{DASH}25 of 3,000 (stored"), what="cleared")
    assert not the(user, "query-error").visible


async def test_column_statistics_computed_stored_and_shown(user: User, manager, toy):
    manager.add_dataset("toy", str(toy), pipeline="files")
    await user.open("/dataset/toy?subset=train")
    await see(user, "Download the subset to compute its column statistics.")
    assert not the(user, "stats-compute").enabled, "nothing downloaded yet"
    manager.download("toy/train", partitions=["part-00000.parquet"], progress=False)
    await user.open("/dataset/toy?subset=train")
    compute = the(user, "stats-compute")
    await until(lambda: compute.enabled, what="compute enabled")
    user.find(marker="stats-compute").click()
    await until(lambda: notified(user, "Computed the column statistics"), what="computed")
    table = the(user, "stats-table")
    await until(lambda: len(table.rows) == 4, what="statistics shown")
    by_name = {r["name"]: r for r in table.rows}
    stored = manager.dataset("toy").subsets["train"].extra["stats"]
    rows = stored["rows"]
    assert 0 < rows < TRAIN_ROWS
    assert by_name["id"]["summary"].startswith(f"0 {DASH} {rows - 1:,}")
    assert by_name["label"]["type"] == "int64" and by_name["label"]["bars"]
    assert len(by_name["label"]["bars"]) == 10, "one bar per label value"
    assert "10 distinct" in by_name["label"]["summary"]
    assert by_name["text"]["bars"] and "characters" in by_name["text"]["summary"]
    assert "stale" not in the(user, "stats-facts").text
    manager.download("toy/train", progress=False)  # more partitions: the statistics are old
    await user.open("/dataset/toy?subset=train")
    await until(lambda: "compute again" in the(user, "stats-facts").text, what="stale")


async def test_images_long_text_and_nested_types(user: User, manager, tmp_path):
    manager.add_dataset("media", str(write_media_source(tmp_path)), pipeline="files")
    manager.download("media", progress=False)
    await user.open("/dataset/media?subset=default")
    await see(user, marker="schema-table")
    sample = the(user, "rows-table")
    await until(lambda: len(sample.rows) == 12, what="rows")
    schema = {r["column"]: r for r in the(user, "schema-table").rows}
    assert schema["image"]["type"] == "struct (2 fields)"
    assert schema["image.bytes"]["type"] == "binary" and schema["image.bytes"]["depth"] == 1
    assert schema["tags"]["type"] == "list<struct>"
    assert schema["tags[].v"]["type"] == "int32" and schema["tags[].v"]["depth"] == 1
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
    from pygestor.snippets import snippets

    codes = [e.content for e in user.find(ui.code).elements]
    offered = snippets("toy/train", manager.settings).values()
    assert sorted(c.strip() for c in codes) == sorted(c.strip() for c in offered), \
        "the page offers exactly the snippets the snippet tests run"
    assert any("pygestor.load('toy/train')" in c for c in codes)
    assert any(f"--data-dir {manager.settings.data_dir} download toy/train" in c for c in codes)
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
    api.set_manager(manager)
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
        api.set_manager(None)


async def test_failed_sign_ins_are_slowed_logged_and_locked_out(user: User, tmp_path, toy,
                                                                 monkeypatch, caplog):
    import logging

    from pygestor.ui import auth

    clock = [1000.0]
    waits: list[float] = []

    class Recording(auth.LoginThrottle):
        def failed(self, client: str) -> float:
            waits.append(super().failed(client))
            return waits[-1]
    monkeypatch.setattr(auth, "THROTTLE", Recording(clock=lambda: clock[0]))
    monkeypatch.setattr(auth, "FAILURE_DELAY", 0.01)
    api.set_manager(make_manager(tmp_path, ui_password="correct horse"))
    try:
        caplog.set_level(logging.WARNING, logger="pygestor.ui")
        await user.open("/login")
        for attempt in range(auth.MAX_FAILURES):
            the(user, "password").value = f"guess {attempt}"
            user.find(marker="sign-in").click()
            await until(lambda a=attempt: len(waits) == a + 1, what=f"failure {attempt + 1}")
            await until(lambda: the(user, "sign-in").enabled, what="the answer")
        assert waits == [0.01 * 2 ** i for i in range(auth.MAX_FAILURES)], "each wait doubles"
        await until(lambda: "Too many failed sign-ins" in the(user, "login-error").text,
                    what="locked out")
        failures = [r.getMessage() for r in caplog.records if "failed sign-in" in r.message]
        assert len(failures) == auth.MAX_FAILURES and "locked out" in failures[-1]
        assert "guess" not in " ".join(failures), "passwords are never logged"
        the(user, "password").value = "correct horse"  # even the right one, while locked
        user.find(marker="sign-in").click()
        await until(lambda: "try again in 5 min" in the(user, "login-error").text, what="refused")
        await user.should_not_see(marker="stat-datasets")
        clock[0] += auth.LOCKOUT_SECONDS + 1
        the(user, "password").value = "correct horse"
        user.find(marker="sign-in").click()
        await see(user, marker="stat-datasets")
    finally:
        api.set_manager(None)


def test_blank_password_is_refused_at_start(tmp_path):
    from pygestor.errors import ConfigError
    from pygestor.ui import auth

    for blank in (" ", "   ", "\t\n"):
        for host in ("127.0.0.1", "0.0.0.0"):
            with pytest.raises(ConfigError, match="blank"):
                auth.check_binding(host, blank)
    manager = make_manager(tmp_path, ui_password="  ")
    with pytest.raises(ConfigError, match="blank"):
        ui_app.serve(manager, host="127.0.0.1", port=9)


def test_the_ui_uses_the_api_manager(tmp_path):
    import pygestor

    configured = pygestor.configure(data_dir=str(tmp_path / "configured"))
    try:
        assert ui_app.get_manager() is configured is api.get_manager()
        assert not hasattr(ui_app, "set_manager") and not hasattr(ui_app, "_manager")
    finally:
        api.set_manager(None)


def test_session_store_is_created_and_its_secret_kept(tmp_path, monkeypatch):
    import stat

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "fresh-cache"))
    monkeypatch.delenv(ui_app.SESSIONS_ENV, raising=False)
    monkeypatch.delenv(ui_app.STORAGE_SECRET_ENV, raising=False)
    folder = ui_app.prepare_sessions()
    assert folder == tmp_path / "fresh-cache" / "pygestor" / "ui-sessions" and folder.is_dir()
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    first = ui_app.storage_secret()
    assert len(first) >= 32 and ui_app.storage_secret() == first, "kept across restarts"
    assert stat.S_IMODE((folder / ui_app.SECRET_FILE).stat().st_mode) == 0o600
    monkeypatch.setenv(ui_app.STORAGE_SECRET_ENV, "x" * 40)
    assert ui_app.storage_secret() == "x" * 40


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
    api.set_manager(manager)
    try:
        with pytest.raises(ConfigError, match="not a loopback address"):
            ui_app.start(host="0.0.0.0", port=9)
    finally:
        api.set_manager(None)
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
    api.set_manager(manager)
    try:
        for path, marker in (("/", "datasets-table"), ("/dataset/toy", "subsets-table"),
                             ("/dataset/toy?subset=test", "rows-table")):
            await user.open(path)
            await see(user, marker=marker)
            with user:
                shown = json.dumps([e._to_dict() for e in user.client.elements.values()],
                                   default=str)
            assert "TOPSECRET-42" not in shown and "AKIA-UI-TEST" not in shown, path
            assert "memory://pg-ui-" in shown  # the storage root itself is shown
    finally:
        api.set_manager(None)


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


# ---------------------------------------------------------------------- admin console
async def test_a_failed_download_shows_its_error_and_source_and_retries(user: User, manager,
                                                                        toy):
    """A partition whose source file is missing fails; its row says so, with the error and
    the source file and bytes it comes from; once the file is back, "Retry failed" fetches
    exactly the failed partitions."""
    manager.add_dataset("toy", str(toy), pipeline="files")
    shard = toy / "train" / "shard-1.csv"
    hidden = toy / "shard-1.csv.away"
    shard.rename(hidden)
    with pytest.raises(PygestorError, match="failed"):
        manager.download("toy/train", progress=False)
    failed = {p["name"] for p in manager.list_partitions("toy/train", failures=True)
              if p.get("failed")}
    assert failed and all(not p.downloaded for p in manager.dataset("toy").subsets["train"]
                          .partitions if p.name in failed)
    await user.open("/dataset/toy?subset=train")
    table = the(user, "partitions-table")
    await until(lambda: len(table.rows) == 3, what="partitions listed")
    rows = {r["name"]: r for r in table.rows}
    for name in failed:
        assert rows[name]["status"] == "Failed"
        assert "shard-1.csv is gone from the source" in rows[name]["failed"]
        assert "shard-1.csv (bytes" in rows[name]["origin"] or \
            "shard-1.csv (the whole file" in rows[name]["origin"]
    retry = the(user, "retry-failed")
    await until(lambda: retry.visible, what="the retry button")
    assert retry.text == f"Retry failed ({len(failed)})"
    hidden.rename(shard)  # the same file again (a rename keeps its modification time)
    user.find(marker="retry-failed").click()
    await until(lambda: notified(user, f"Downloaded {len(failed)} selected partition"),
                what="the retry")
    assert all(p.downloaded for p in manager.dataset("toy").subsets["train"].partitions)
    await until(lambda: not the(user, "retry-failed").visible, what="nothing left to retry")


async def test_verify_and_check_updates_from_the_dataset_page(user: User, manager, toy):
    manager.add_dataset("toy", str(toy), pipeline="files")
    manager.download("toy", progress=False)
    path = Path(manager.partition_path("toy", "test", "part-00000.parquet"))
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    await user.open("/dataset/toy")
    user.find(marker="verify-dataset").click()
    await see(user, marker="verify-title")
    assert "1 problem(s)" in the(user, "verify-title").text
    await see(user, "test/part-00000.parquet: checksum mismatch")
    user.find(marker="verify-repair").click()
    await until(lambda: "repaired" in text_of(user, "verify-title"), what="the repair")
    await see(user, "marked not downloaded")
    user.find(marker="verify-close").click()
    assert not manager.dataset("toy").subsets["test"].partitions[0].downloaded
    user.find(marker="check-updates").click()
    await see(user, marker="updates-title")
    assert "no update check for this pipeline" in the(user, "updates-title").text
    kinds = [j["kind"] for j in manager.list_jobs(all=True)]
    assert kinds.count("verify") == 2 and "check-updates" in kinds, "both ran as jobs"
