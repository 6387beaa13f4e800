"""The dataset view (metadata, subsets, delete) and the subset view (partitions, downloads,
schema, sample rows, code snippets).

Built inside page functions, so every browser tab gets its own elements and download state.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from typing import Any
from urllib.parse import urlencode

from nicegui import background_tasks, run, ui

from pygestor.errors import CancelledError, NotDownloadedError
from pygestor.manager import ProgressEvent
from pygestor.ui import display, layout
from pygestor.ui.app import get_manager
from pygestor.ui.display import error_text
from pygestor.ui.jobs import jobs_panel, running_jobs

log = logging.getLogger("pygestor.ui")

MODALITIES = ["text", "image", "audio", "video", "tabular", "multimodal", "time series"]
SAMPLE_ROWS = 50
#: seconds between refreshes of the partitions table while a download runs
LIVE_TABLE_INTERVAL = 1.0


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


def _kv(key: str, value: str, *, mono: bool = False, marker: str = "") -> ui.label:
    ui.label(key).classes("k")
    shown = ui.label(value or "-").classes("v" + (" pg-mono text-xs" if mono else ""))
    if marker:
        shown.mark(marker)
    return shown


# ====================================================================== dataset
SUBSET_COLUMNS = [
    {"name": "name", "label": "Subset", "field": "name", "sortable": True, "align": "left"},
    {"name": "partitions", "label": "Partitions", "field": "partitions", "sortable": True,
     "align": "right"},
    {"name": "downloaded", "label": "Downloaded", "field": "fraction", "sortable": True,
     "align": "left"},
    {"name": "rows", "label": "Rows", "field": "rows", "sortable": True, "align": "right"},
    {"name": "stored", "label": "Stored", "field": "downloaded_bytes", "sortable": True,
     "align": "right"},
    {"name": "source", "label": "Source size", "field": "source_bytes", "sortable": True,
     "align": "right"},
]
_SUBSET_NAME_CELL = """
<q-td :props="props"><a :href="props.row.href" class="pg-link">{{ props.value }}</a></q-td>"""
_SUBSET_DOWNLOADED_CELL = """
<q-td :props="props">
  <div class="row items-center no-wrap q-gutter-x-sm">
    <q-linear-progress :value="props.row.fraction" rounded size="6px" track-color="grey-3"
      :color="props.row.fraction >= 1 ? 'positive' : 'primary'" style="width: 110px" />
    <span class="text-sm">{{ props.row.downloaded }}/{{ props.row.partitions }}</span>
  </div>
</q-td>"""


def _label_cell(field: str) -> str:
    return f'<q-td :props="props"><span class="text-sm">{{{{ props.row.{field} }}}}</span></q-td>'


async def dataset_view(info: dict[str, Any]) -> None:
    manager = get_manager()
    name = info["name"]
    content = layout.frame(name, [("Datasets", "/"), (name, None)])

    @layout.guarded
    async def save() -> None:
        try:
            record = await run.io_bound(manager.update_metadata, name,
                                        description=description.value or "",
                                        modality=(modality.value or "").strip())
        except Exception as exc:  # noqa: BLE001 - shown to the user
            layout.notify(f"Could not save: {error_text(exc)}", "negative")
            return
        if record is not None:
            updated.set_text(display.when(record.updated_at))
            saved["description"], saved["modality"] = record.description, record.modality
            save_button.disable()
            layout.notify("Saved the description and modality", "positive")

    def changed() -> None:
        dirty = (description.value or "") != saved["description"] or \
            (modality.value or "").strip() != saved["modality"]
        save_button.set_enabled(dirty)

    @layout.guarded
    async def delete() -> None:
        stored = display.size(info["downloaded_bytes"])
        running = await run.io_bound(running_jobs, name)
        cancels = (f" Its {_plural(len(running), 'running job')} "
                   f"({', '.join(j['kind'] for j in running)}) will be cancelled first."
                   if running else "")
        confirmed, with_data = await layout.confirm(
            f"Delete dataset “{name}”?",
            "It is removed from the catalog; its source is not touched. "
            f"You can add it again later.{cancels}", "Delete dataset",
            option=f"Also delete its downloaded data ({_plural(info['downloaded'], 'partition')}"
                   f", {stored})",
            marker="delete")
        if not confirmed:
            return
        try:
            await run.io_bound(manager.delete_dataset, name, data=with_data, force=True)
        except Exception as exc:  # noqa: BLE001 - shown to the user
            layout.notify(f"Could not delete {name}: {error_text(exc)}", "negative")
            return
        ui.navigate.to("/?" + urlencode({"deleted": name, "data": int(with_data)}))

    saved = {"description": info.get("description") or "", "modality": info.get("modality") or ""}
    with content:
        with ui.row().classes("w-full items-center gap-3"):
            ui.label(name).classes("text-2xl font-semibold text-slate-900").mark("dataset-title")
            ui.badge(info.get("pipeline") or "", color="grey-3", text_color="grey-9") \
                .classes("px-2 py-1").tooltip("pipeline")
            ui.space()
            ui.button("Delete dataset", icon="delete_outline", on_click=delete) \
                .props("outline no-caps color=negative").mark("delete-dataset")
        jobs_panel(name)
        with ui.element("div").classes("w-full grid grid-cols-1 lg:grid-cols-3 gap-5"):
            with ui.card().classes("pg-card p-5 gap-3").props("flat"):
                ui.label("Details").classes("text-base font-semibold")
                with ui.element("div").classes("pg-kv w-full"):
                    _kv("Source", display.safe(info.get("url")), mono=True, marker="meta-source")
                    _kv("Pipeline", info.get("pipeline") or "")
                    _kv("Revision", info.get("revision") or "", mono=True, marker="meta-revision")
                    _kv("License", info.get("license") or "", marker="meta-license")
                    _kv("Subsets", f"{len(info['subsets']):,}")
                    _kv("Downloaded", f"{info['downloaded']:,} of {info['partitions']:,} "
                                      "partitions", marker="meta-downloaded")
                    _kv("Stored", display.size(info["downloaded_bytes"]))
                    _kv("Source size", display.size(info["source_bytes"]))
                    _kv("Created", display.when(info.get("created_at")))
                    updated = _kv("Updated", display.when(info.get("updated_at")),
                                  marker="meta-updated")
            with ui.card().classes("pg-card p-5 gap-3 lg:col-span-2").props("flat"):
                ui.label("About this dataset").classes("text-base font-semibold")
                description = ui.textarea("Description", value=saved["description"],
                                          placeholder="What is in it, where it comes from, "
                                          "how to use it…") \
                    .props("outlined input-style='min-height: 170px'").classes("w-full") \
                    .mark("edit-description")
                with ui.row().classes("w-full items-center gap-3"):
                    modality = ui.input("Modality", value=saved["modality"],
                                        autocomplete=MODALITIES) \
                        .props("outlined dense").classes("w-60").mark("edit-modality")
                    ui.space()
                    save_button = ui.button("Save", icon="check", on_click=save) \
                        .props("unelevated no-caps").mark("save-metadata")
                save_button.disable()
                description.on_value_change(changed)
                modality.on_value_change(changed)
        with ui.card().classes("pg-card w-full p-0 gap-0 overflow-hidden").props("flat"):
            with ui.row().classes("w-full items-baseline gap-2 px-5 pt-4 pb-3"):
                ui.label("Subsets").classes("text-base font-semibold")
                ui.label("open one to download, remove, preview and get code") \
                    .classes("text-sm pg-muted")
            rows = [display.subset_row(name, s) for s in info["subsets"]]
            table = ui.table(columns=SUBSET_COLUMNS, rows=rows, row_key="name",
                             pagination={"rowsPerPage": 25, "sortBy": "name"}) \
                .props("flat").classes("pg-table w-full").mark("subsets-table")
            table.add_slot("body-cell-name", _SUBSET_NAME_CELL)
            table.add_slot("body-cell-downloaded", _SUBSET_DOWNLOADED_CELL)
            table.add_slot("body-cell-rows", _label_cell("rows_label"))
            table.add_slot("body-cell-stored", _label_cell("downloaded_label"))
            table.add_slot("body-cell-source", _label_cell("source_label"))
            layout.fit_bottom(table)


# ====================================================================== subset
PARTITION_COLUMNS = [
    {"name": "name", "label": "Partition", "field": "name", "sortable": True, "align": "left"},
    {"name": "status", "label": "Status", "field": "status", "sortable": True, "align": "left"},
    {"name": "rows", "label": "Rows", "field": "rows", "sortable": True, "align": "right"},
    {"name": "size", "label": "Stored", "field": "size", "sortable": True, "align": "right"},
    {"name": "source", "label": "Source size", "field": "source_bytes", "sortable": True,
     "align": "right"},
    {"name": "row_groups", "label": "Row groups", "field": "row_groups", "sortable": True,
     "align": "right"},
    {"name": "downloaded_at", "label": "Downloaded at", "field": "downloaded_at",
     "sortable": True, "align": "left"},
]
_STATUS_CELL = """
<q-td :props="props">
  <q-badge :color="props.row.downloaded ? 'positive' : 'grey-4'"
    :text-color="props.row.downloaded ? 'white' : 'grey-9'" :label="props.value" />
</q-td>"""
_ROW_GROUPS_CELL = """
<q-td :props="props"><span class="text-sm">{{ props.value || '-' }}</span></q-td>"""
SCHEMA_COLUMNS = [
    {"name": "column", "label": "Column", "field": "column", "align": "left"},
    {"name": "type", "label": "Type", "field": "type", "align": "left"},
    {"name": "nullable", "label": "Nullable", "field": "nullable", "align": "left"},
]
_SCHEMA_COLUMN_CELL = """
<q-td :props="props" :title="props.row.column">
  <span :style="{ paddingLeft: (props.row.depth * 20) + 'px' }">
    <q-icon v-if="props.row.depth" name="subdirectory_arrow_right" size="14px"
      class="text-grey-5 q-mr-xs" />
    <span :class="props.row.depth ? '' : 'text-weight-medium'">{{ props.row.name }}</span>
  </span>
</q-td>"""
_SCHEMA_TYPE_CELL = """
<q-td :props="props"><span class="pg-mono text-xs">{{ props.value }}</span></q-td>"""
_SAMPLE_CELL = """
<q-td :props="props">
  <img v-if="props.value && props.value.t === 'img'" :src="props.value.src"
    :alt="props.value.v" :title="props.value.v"
    class="pg-thumb" />
  <div v-else-if="props.value && props.value.t === 'long'" style="white-space: pre-wrap"
    >{{ props.expand ? props.value.v : props.value.short }} <a class="pg-fold"
    @click.stop="props.expand = !props.expand">{{ props.expand ? 'less' : 'more' }}</a></div>
  <span v-else-if="props.value && props.value.t === 'null'" class="pg-null">null</span>
  <span v-else style="white-space: pre-wrap">{{ props.value ? props.value.v : '' }}</span>
</q-td>"""
SNIPPETS = {
    "load": ("pandas DataFrame", "python", "table_view"),
    "iter_batches": ("Stream batches", "python", "stream"),
    "torch": ("PyTorch DataLoader", "python", "model_training"),
    "cli": ("Command line", "bash", "terminal"),
}


class DownloadProgress:
    """One download's progress: written by the worker thread, read by the page's timer."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._event = ProgressEvent(total=0)
        self.started = False

    def __call__(self, event: ProgressEvent) -> None:
        with self._lock:
            self._event = dataclasses.replace(event)
            self.started = True

    def snapshot(self) -> ProgressEvent:
        with self._lock:
            return dataclasses.replace(self._event)


def _progress_text(event: ProgressEvent) -> str:
    parts = [f"{event.done:,} / {event.total:,} partitions", f"{display.size(event.bytes_written)} "
             "written"]
    if event.skipped:
        parts.append(f"{event.skipped:,} already present")
    if event.failed:
        parts.append(f"{event.failed:,} failed")
    if event.current and not event.finished:
        parts.append(f"last: {event.current}")
    return " · ".join(parts)


def load_subset(ref: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    manager = get_manager()
    return manager.info(ref), manager.list_partitions(ref)


def load_preview(ref: str, downloaded: int) -> dict[str, Any]:
    """Schema rows and sample rows for the subset (what can be shown of it)."""
    from pygestor.loaders.arrow import sample, schema

    manager = get_manager()
    preview: dict[str, Any] = {"schema": None, "schema_error": "", "sample": None,
                               "sample_error": ""}
    try:
        preview["schema"] = display.schema_rows(schema(manager, ref))
    except NotDownloadedError:
        preview["schema_error"] = "Download at least one partition to see the schema."
    except Exception as exc:  # noqa: BLE001 - shown in the tab
        preview["schema_error"] = error_text(exc)
    if not downloaded:
        preview["sample_error"] = "Download at least one partition to see sample rows."
        return preview
    try:
        preview["sample"] = display.sample_table(sample(manager, ref, SAMPLE_ROWS))
    except Exception as exc:  # noqa: BLE001 - shown in the tab
        preview["sample_error"] = error_text(exc)
    return preview


async def subset_view(info: dict[str, Any], subset: str) -> None:
    manager = get_manager()
    name = info["name"]
    ref = f"{name}/{subset}"
    content = layout.frame(f"{ref}", [("Datasets", "/"), (name, display.dataset_href(name)),
                                      (subset, None)])
    state: dict[str, Any] = {"running": False, "progress": None, "cancel": None,
                             "partitions": [], "live": None, "shown_done": 0, "shown_at": 0.0}

    # ------------------------------------------------------------------ data
    async def refresh(preview: bool = True) -> None:
        loaded = await run.io_bound(load_subset, ref)
        if loaded is None:
            return
        summary, partitions = loaded
        state["partitions"] = partitions
        rows = [display.partition_row(p) for p in partitions]
        selected = {r["name"] for r in table.selected}
        table.rows = rows
        table.selected = [r for r in rows if r["name"] in selected]
        table.props(remove="loading")
        layout.fit_bottom(table)
        table.update()
        facts = [f"{summary['downloaded']:,} of {summary['partitions']:,} partitions downloaded",
                 f"{display.size(summary['downloaded_bytes'])} stored"]
        if summary["rows"] is not None:
            facts.append(f"{summary['rows']:,} rows")
        subtitle.set_text(" · ".join(facts))
        partitions_tab.props["label"] = f"Partitions ({summary['partitions']:,})"
        partitions_tab.update()
        remove_all.set_enabled(summary["downloaded"] > 0 and not state["running"])
        download_all.set_enabled(not state["running"])
        if preview:
            shown = await run.io_bound(load_preview, ref, summary["downloaded"])
            if shown is not None:
                show(schema_box, show_schema, shown)
                show(sample_box, show_sample, shown)

    # ------------------------------------------------------------------ download
    def poll() -> None:
        progress: DownloadProgress | None = state["progress"]
        if progress is None:
            return
        event = progress.snapshot()
        if not progress.started:
            return
        bar.value = round(event.done / event.total, 4) if event.total else 1.0
        detail.set_text(_progress_text(event))
        live: asyncio.Task[None] | None = state["live"]
        if event.done != state["shown_done"] and (live is None or live.done()) \
                and time.monotonic() - state["shown_at"] >= LIVE_TABLE_INTERVAL:
            # partitions turn "Downloaded" in the table while the download goes on
            state.update(shown_done=event.done, shown_at=time.monotonic())
            state["live"] = background_tasks.create(refresh(preview=False),
                                                    name="pygestor partitions table")

    @layout.guarded
    async def download(partitions: list[str] | None) -> None:
        if state["running"]:
            return
        progress, cancel = DownloadProgress(), threading.Event()
        state.update(running=True, progress=progress, cancel=cancel, shown_done=0)
        what = ref if partitions is None else \
            f"{_plural(len(partitions), 'selected partition')} of {ref}"
        set_running(True)
        progress_icon.props("name=downloading color=primary")
        progress_title.set_text(f"Downloading {what}")
        bar.value = 0.0
        bar.props("color=primary")
        detail.set_text("starting…")
        cancel_button.set_text("Cancel")
        cancel_button.enable()
        progress_card.visible = True
        timer.activate()
        outcome, kind = "", "positive"
        try:
            report = await run.io_bound(manager.download, ref, partitions, progress=progress,
                                        cancel=cancel)
            if report is None:  # the server is shutting down
                outcome, kind = f"Download of {what} interrupted", "warning"
            else:
                outcome = f"Downloaded {what}: {report}"
        except CancelledError:
            outcome, kind = f"Download of {what} cancelled; finished partitions are kept", \
                "warning"
        except Exception as exc:  # noqa: BLE001 - shown to the user
            outcome, kind = f"Download of {what} failed: {error_text(exc)}", "negative"
        finally:
            timer.deactivate()
            poll()
            if state["live"] is not None:  # an older view must not land after the final one
                await state["live"]
            state["running"] = False
            set_running(False)
        event = progress.snapshot()
        if kind == "positive":
            bar.value = 1.0
            bar.props("color=positive")
            progress_icon.props("name=check_circle color=positive")
            progress_title.set_text(f"Downloaded {what}")
        else:
            bar.props(f"color={'warning' if kind == 'warning' else 'negative'}")
            progress_icon.props(f"name={'cancel' if kind == 'warning' else 'error'} "
                                f"color={kind}")
            progress_title.set_text(outcome.split(":")[0] if kind == "negative" else outcome)
        detail.set_text(_progress_text(event))
        cancel_button.set_text("Dismiss")
        cancel_button.enable()
        if outcome:
            layout.notify(outcome, kind)
        await refresh()

    def cancel_or_dismiss() -> None:
        cancel: threading.Event | None = state["cancel"]
        if state["running"] and cancel is not None:
            cancel.set()
            cancel_button.set_text("Cancelling…")
            cancel_button.disable()
        else:
            progress_card.visible = False

    def set_running(running: bool) -> None:
        download_all.set_enabled(not running)
        for button in (download_selected, remove_selected):
            button.set_enabled(not running and bool(table.selected))
        remove_all.set_enabled(not running and
                               any(p["downloaded"] for p in state["partitions"]))

    # ------------------------------------------------------------------ remove
    @layout.guarded
    async def remove(partitions: list[str] | None) -> None:
        if state["running"]:
            return
        rows = {p["name"]: p for p in state["partitions"]}
        chosen = [rows[n] for n in (partitions if partitions is not None else rows)
                  if n in rows and rows[n]["downloaded"]]
        if not chosen:
            layout.notify("None of these partitions is downloaded; nothing to remove", "info")
            return
        stored = display.size(sum(p["size"] or 0 for p in chosen))
        what = f"the {_plural(len(chosen), 'downloaded partition')} of {ref}" \
            if partitions is None else f"{_plural(len(chosen), 'partition')} of {ref}"
        confirmed, _ = await layout.confirm(
            f"Remove {what}?",
            f"This deletes {stored} of data files. The dataset stays registered and the "
            "partitions can be downloaded again.", "Remove", marker="remove")
        if not confirmed:
            return
        try:
            removed = await run.io_bound(manager.remove, ref,
                                         partitions=None if partitions is None
                                         else [p["name"] for p in chosen])
        except Exception as exc:  # noqa: BLE001 - shown to the user
            layout.notify(f"Could not remove: {error_text(exc)}", "negative")
            return
        count = len(removed or [])
        progress_card.visible = False  # what it said is out of date now
        layout.notify(f"Removed {_plural(count, 'partition')} of {ref}", "positive")
        table.selected = []
        await refresh()

    def selected_names() -> list[str]:
        return [r["name"] for r in table.selected]

    # ------------------------------------------------------------------ layout
    with content:
        with ui.row().classes("w-full items-end gap-3"):
            with ui.column().classes("gap-0"):
                with ui.row().classes("items-baseline gap-2"):
                    ui.label(subset).classes("text-2xl font-semibold text-slate-900") \
                        .mark("subset-title")
                    ui.label(f"in {name}").classes("text-base pg-muted")
                subtitle = ui.label("").classes("text-sm pg-muted").mark("subset-subtitle")
            ui.space()
            download_all = ui.button("Download subset", icon="download",
                                     on_click=lambda: download(None)) \
                .props("unelevated no-caps").mark("download-subset")
            download_selected = ui.button(
                "Download selected", icon="playlist_add_check",
                on_click=lambda: download(selected_names())) \
                .props("outline no-caps").mark("download-selected")
            remove_selected = ui.button(
                "Remove selected", icon="remove_circle_outline",
                on_click=lambda: remove(selected_names())) \
                .props("outline no-caps color=negative").mark("remove-selected")
            remove_all = ui.button("Remove all", icon="delete_sweep",
                                   on_click=lambda: remove(None)) \
                .props("flat no-caps color=negative").mark("remove-subset") \
                .tooltip("Delete every downloaded partition of this subset")

        with ui.card().classes("pg-card w-full p-4 gap-2").props("flat") as progress_card:
            with ui.row().classes("w-full items-center gap-3 no-wrap"):
                progress_icon = ui.icon("downloading", size="22px", color="primary")
                progress_title = ui.label("").classes("font-medium text-slate-900") \
                    .mark("progress-title")
                ui.space()
                cancel_button = ui.button("Cancel", on_click=cancel_or_dismiss) \
                    .props("flat no-caps dense").mark("progress-cancel")
            bar = ui.linear_progress(value=0.0, show_value=False, size="10px") \
                .props("rounded track-color=grey-3 instant-feedback").mark("progress-bar")
            detail = ui.label("").classes("text-sm pg-muted").mark("progress-detail")
        progress_card.visible = False
        timer = ui.timer(0.2, poll, active=False)

        with ui.card().classes("pg-card w-full p-0 gap-0 overflow-hidden").props("flat"):
            with ui.tabs().props("align=left inline-label no-caps active-color=primary "
                                 "indicator-color=primary").classes("px-3 text-slate-600") as tabs:
                partitions_tab = ui.tab("partitions", "Partitions", icon="view_list") \
                    .props("no-caps")
                ui.tab("schema", "Schema", icon="schema").props("no-caps").mark("tab-schema")
                ui.tab("sample", "Sample rows", icon="table_rows").props("no-caps") \
                    .mark("tab-sample")
                ui.tab("code", "Code", icon="code").props("no-caps").mark("tab-code")
            ui.separator().classes("m-0")
            with ui.tab_panels(tabs, value="partitions").classes("w-full").props("animated=false"):
                with ui.tab_panel("partitions").style("padding: 0"):
                    table = ui.table(columns=PARTITION_COLUMNS, rows=[], row_key="name",
                                     selection="multiple",
                                     pagination={"rowsPerPage": 25, "sortBy": "name"}) \
                        .props("flat loading").classes("pg-table w-full").mark("partitions-table")
                    table.add_slot("body-cell-status", _STATUS_CELL)
                    table.add_slot("body-cell-rows", _label_cell("rows_label"))
                    table.add_slot("body-cell-size", _label_cell("size_label"))
                    table.add_slot("body-cell-source", _label_cell("source_label"))
                    table.add_slot("body-cell-row_groups", _ROW_GROUPS_CELL)
                    table.add_slot("body-cell-downloaded_at", _label_cell("downloaded_label"))
                    for button, verb in ((download_selected, "Download"),
                                         (remove_selected, "Remove")):
                        button.bind_enabled_from(
                            table, "selected",
                            backward=lambda s: bool(s) and not state["running"])
                        button.bind_text_from(
                            table, "selected",
                            backward=lambda s, v=verb: f"{v} selected ({len(s)})" if s
                            else f"{v} selected")
                with ui.tab_panel("schema").classes("px-5 py-4"), \
                        ui.column().classes("w-full gap-2") as schema_box:
                    ui.spinner(size="24px")
                with ui.tab_panel("sample").classes("px-5 py-4"), \
                        ui.column().classes("w-full gap-2") as sample_box:
                    ui.spinner(size="24px")
                with ui.tab_panel("code").classes("px-5 py-4"):
                    show_snippets(ref)
    await ui.context.client.connected(timeout=30)  # deliver the page first: storage may be slow
    await refresh()


def show(box: ui.element, render: Any, preview: dict[str, Any]) -> None:
    """Replace what ``box`` shows (each tab owns its boxes: nothing is shared between tabs)."""
    box.clear()
    with box:
        render(preview)


def show_schema(preview: dict[str, Any]) -> None:
    if preview["schema"] is None:
        _hint("schema", preview["schema_error"], "schema-empty")
        return
    rows = preview["schema"]
    top = sum(1 for r in rows if r["depth"] == 0)
    ui.label(f"{top} column{'s' if top != 1 else ''}").classes("text-sm pg-muted")
    table = ui.table(columns=SCHEMA_COLUMNS, rows=rows, row_key="id") \
        .props("flat bordered dense hide-pagination :pagination='{rowsPerPage: 0}'") \
        .classes("pg-table w-full").mark("schema-table")
    table.add_slot("body-cell-column", _SCHEMA_COLUMN_CELL)
    table.add_slot("body-cell-type", _SCHEMA_TYPE_CELL)


def show_sample(preview: dict[str, Any]) -> None:
    if preview["sample"] is None:
        _hint("table_rows", preview["sample_error"], "sample-empty")
        return
    columns, rows = preview["sample"]
    ui.label(f"The first {len(rows)} rows of the downloaded partitions").classes(
        "text-sm pg-muted")
    table = ui.table(columns=columns, rows=rows, row_key="_row", pagination=10) \
        .props("flat bordered dense").classes("pg-table pg-sample w-full").mark("sample-table")
    table.add_slot("body-cell", _SAMPLE_CELL)


def show_snippets(ref: str) -> None:
    from pygestor.snippets import snippets

    code = snippets(ref, get_manager().settings)
    ui.label("Copy, paste, run: each snippet loads this subset from this storage root.") \
        .classes("text-sm pg-muted")
    with ui.element("div").classes("w-full grid grid-cols-1 2xl:grid-cols-2 gap-4"):
        for kind, text in code.items():
            title, language, icon = SNIPPETS.get(kind, (kind, "python", "code"))
            text = display.safe(text)
            with ui.column().classes("pg-snippet gap-1 min-w-0").mark(f"snippet-{kind}"):
                with ui.row().classes("w-full items-center gap-2"):
                    ui.icon(icon, size="18px").classes("text-primary")
                    ui.label(title).classes("text-sm font-semibold")
                    ui.space()
                    layout.copy_button(text, title, f"copy-{kind}")
                ui.code(text, language=language).classes("w-full text-sm")


def _hint(icon: str, text: str, marker: str) -> None:
    with ui.row().classes("items-center gap-2 pg-muted text-sm").mark(marker):
        ui.icon("info", size="18px")
        ui.label(text)
