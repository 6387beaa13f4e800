"""One dataset's page: its details, its description and modality (editable), its subsets, and
deleting it."""

from __future__ import annotations

from typing import Any

from nicegui import run, ui

from pygestor.ui import display, layout
from pygestor.ui.app import get_manager
from pygestor.ui.components.admin import admin_buttons
from pygestor.ui.components.downloads import plural
from pygestor.ui.components.partitions import label_cell
from pygestor.ui.display import error_text
from pygestor.ui.jobs import jobs_panel, running_jobs

MODALITIES = ["text", "image", "audio", "video", "tabular", "multimodal", "time series"]
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
_NAME_CELL = """
<q-td :props="props"><a :href="props.row.href" class="pg-link">{{ props.value }}</a></q-td>"""
_DOWNLOADED_CELL = """
<q-td :props="props">
  <div class="row items-center no-wrap q-gutter-x-sm">
    <q-linear-progress :value="props.row.fraction" rounded size="6px" track-color="grey-3"
      :color="props.row.fraction >= 1 ? 'positive' : 'primary'" style="width: 110px" />
    <span class="text-sm">{{ props.row.downloaded }}/{{ props.row.partitions }}</span>
  </div>
</q-td>"""


def kv(key: str, value: str, *, mono: bool = False, marker: str = "") -> ui.label:
    """A key and its value in a ``pg-kv`` grid."""
    ui.label(key).classes("k")
    shown = ui.label(value or "-").classes("v" + (" pg-mono text-xs" if mono else ""))
    if marker:
        shown.mark(marker)
    return shown


def details_card(info: dict[str, Any]) -> ui.label:
    """Source, pipeline, revision, sizes, dates; returns the "Updated" label."""
    with ui.card().classes("pg-card p-5 gap-3").props("flat"):
        ui.label("Details").classes("text-base font-semibold")
        with ui.element("div").classes("pg-kv w-full"):
            kv("Source", display.safe(info.get("url")), mono=True, marker="meta-source")
            kv("Pipeline", info.get("pipeline") or "")
            kv("Revision", info.get("revision") or "", mono=True, marker="meta-revision")
            kv("License", info.get("license") or "", marker="meta-license")
            kv("Subsets", f"{len(info['subsets']):,}")
            kv("Downloaded", f"{info['downloaded']:,} of {info['partitions']:,} partitions",
               marker="meta-downloaded")
            kv("Stored", display.size(info["downloaded_bytes"]))
            kv("Source size", display.size(info["source_bytes"]))
            kv("Created", display.when(info.get("created_at")))
            return kv("Updated", display.when(info.get("updated_at")), marker="meta-updated")


class AboutEditor:
    """The description and modality, saved on request."""

    def __init__(self, info: dict[str, Any], updated: ui.label) -> None:
        self.name, self.updated = info["name"], updated
        self.saved = {"description": info.get("description") or "",
                      "modality": info.get("modality") or ""}
        with ui.card().classes("pg-card p-5 gap-3 lg:col-span-2").props("flat"):
            ui.label("About this dataset").classes("text-base font-semibold")
            self.description = ui.textarea(
                "Description", value=self.saved["description"],
                placeholder="What is in it, where it comes from, how to use it…") \
                .props("outlined input-style='min-height: 170px'").classes("w-full") \
                .mark("edit-description")
            with ui.row().classes("w-full items-center gap-3"):
                self.modality = ui.input("Modality", value=self.saved["modality"],
                                         autocomplete=MODALITIES) \
                    .props("outlined dense").classes("w-60").mark("edit-modality")
                ui.space()
                self.save_button = ui.button("Save", icon="check", on_click=self.save) \
                    .props("unelevated no-caps").mark("save-metadata")
        self.save_button.disable()
        self.description.on_value_change(self.changed)
        self.modality.on_value_change(self.changed)

    def changed(self) -> None:
        dirty = (self.description.value or "") != self.saved["description"] or \
            (self.modality.value or "").strip() != self.saved["modality"]
        self.save_button.set_enabled(dirty)

    @layout.guarded
    async def save(self) -> None:
        try:
            record = await run.io_bound(get_manager().update_metadata, self.name,
                                        description=self.description.value or "",
                                        modality=(self.modality.value or "").strip())
        except Exception as exc:  # noqa: BLE001 - shown to the user
            layout.notify(f"Could not save: {error_text(exc)}", "negative")
            return
        if record is not None:
            self.updated.set_text(display.when(record.updated_at))
            self.saved.update(description=record.description, modality=record.modality)
            self.save_button.disable()
            layout.notify("Saved the description and modality", "positive")


@layout.guarded
async def delete_dataset(info: dict[str, Any]) -> None:
    """Ask, then unregister the dataset (and delete its data unless unchecked)."""
    name = info["name"]
    running = await run.io_bound(running_jobs, name)
    cancels = (f" Its {plural(len(running), 'running job')} "
               f"({', '.join(j['kind'] for j in running)}) will be cancelled first."
               if running else "")
    confirmed, with_data = await layout.confirm(
        f"Delete dataset “{name}”?",
        "It is removed from the catalog; its source is not touched. You can add it again later."
        + cancels, "Delete dataset",
        option=f"Also delete its downloaded data ({plural(info['downloaded'], 'partition')}, "
               f"{display.size(info['downloaded_bytes'])})", marker="delete")
    if not confirmed:
        return
    try:
        await run.io_bound(get_manager().delete_dataset, name, data=with_data, force=True)
    except Exception as exc:  # noqa: BLE001 - shown to the user
        layout.notify(f"Could not delete {name}: {error_text(exc)}", "negative")
        return
    layout.flash(f"Deleted {name}" + (" and its data" if with_data else " (data kept)"))
    ui.navigate.to("/")


def subsets_card(info: dict[str, Any]) -> None:
    with ui.card().classes("pg-card w-full p-0 gap-0 overflow-hidden").props("flat"):
        with ui.row().classes("w-full items-baseline gap-2 px-5 pt-4 pb-3"):
            ui.label("Subsets").classes("text-base font-semibold")
            ui.label("open one to download, explore its rows and statistics, and get code") \
                .classes("text-sm pg-muted")
        rows = [display.subset_row(info["name"], s) for s in info["subsets"]]
        table = ui.table(columns=SUBSET_COLUMNS, rows=rows, row_key="name",
                         pagination={"rowsPerPage": 25, "sortBy": "name"}) \
            .props("flat").classes("pg-table w-full").mark("subsets-table")
        table.add_slot("body-cell-name", _NAME_CELL)
        table.add_slot("body-cell-downloaded", _DOWNLOADED_CELL)
        table.add_slot("body-cell-rows", label_cell("rows_label"))
        table.add_slot("body-cell-stored", label_cell("downloaded_label"))
        table.add_slot("body-cell-source", label_cell("source_label"))
        layout.fit_bottom(table)


async def dataset_page(info: dict[str, Any]) -> None:
    name = info["name"]
    content = layout.frame(name, [("Datasets", "/"), (name, None)])
    with content:
        with ui.row().classes("w-full items-center gap-3"):
            ui.label(name).classes("text-2xl font-semibold text-slate-900 break-all") \
                .mark("dataset-title")
            ui.badge(info.get("pipeline") or "", color="grey-3", text_color="grey-9") \
                .classes("px-2 py-1").tooltip("pipeline")
            ui.space()
            admin_buttons(name)
            ui.button("Delete dataset", icon="delete_outline",
                      on_click=lambda: delete_dataset(info)) \
                .props("outline no-caps color=negative").mark("delete-dataset")
        jobs_panel(name)
        with ui.element("div").classes("w-full grid grid-cols-1 lg:grid-cols-3 gap-5"):
            updated = details_card(info)
            AboutEditor(info, updated)
        subsets_card(info)
