"""The datasets page: search, counts, the table of datasets and the storage chart."""

from __future__ import annotations

from typing import Any

from nicegui import run, ui

from pygestor.ui import display, layout
from pygestor.ui.app import get_manager
from pygestor.ui.display import error_text
from pygestor.ui.jobs import jobs_panel

COLUMNS = [
    {"name": "name", "label": "Name", "field": "name", "sortable": True, "align": "left"},
    {"name": "pipeline", "label": "Pipeline", "field": "pipeline", "sortable": True,
     "align": "left"},
    {"name": "source", "label": "Source", "field": "source", "sortable": True, "align": "left"},
    {"name": "modality", "label": "Modality", "field": "modality", "sortable": True,
     "align": "left"},
    {"name": "subsets", "label": "Subsets", "field": "subsets", "sortable": True,
     "align": "right"},
    {"name": "downloaded", "label": "Stored / source size", "field": "downloaded_bytes",
     "sortable": True, "align": "left"},
    {"name": "updated", "label": "Last updated", "field": "updated_at", "sortable": True,
     "align": "left"},
]
SLOTS = {
    "name": '<q-td :props="props"><a :href="props.row.href" class="pg-link">{{ props.value }}'
            '</a></q-td>',
    "source": '<q-td :props="props"><div class="pg-mono text-xs" :title="props.value">'
              '{{ props.row.source_short }}</div></q-td>',
    "modality": """
<q-td :props="props">
  <q-badge v-if="props.row.damaged" color="negative" label="damaged record"
    :title="props.row.damaged" data-testid="damaged" />
  <q-badge v-else-if="props.value" outline color="primary" :label="props.value" />
  <span v-else class="pg-muted">-</span>
</q-td>""",
    "downloaded": """
<q-td :props="props">
  <div class="text-sm">{{ props.row.downloaded_label }}
    <span class="pg-muted">/ {{ props.row.total_label }}</span></div>
  <q-linear-progress :value="props.row.fraction" rounded size="4px" color="primary"
    track-color="grey-3" class="q-mt-xs" style="max-width: 160px" />
  <div class="text-xs pg-muted">{{ props.row.parts_label }}</div>
</q-td>""",
    "updated": '<q-td :props="props"><span class="text-sm">{{ props.row.updated_label }}'
               '</span></q-td>',
}


def load_overview() -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Dataset rows, and per dataset the source bytes of partitions not downloaded yet."""
    manager = get_manager()
    summaries = manager.list_datasets()
    pending: dict[str, int] = {}
    for summary in summaries:
        if "damaged" in summary:
            pending[summary["name"]] = 0
        elif summary["downloaded"] == 0:
            pending[summary["name"]] = summary["source_bytes"] or 0
        elif summary["downloaded"] >= summary["partitions"]:
            pending[summary["name"]] = 0
        else:
            pending[summary["name"]] = sum(p["source_bytes"] or 0 for p in
                                           manager.list_partitions(summary["name"])
                                           if not p["downloaded"])
    return [display.dataset_row(s) for s in summaries], pending


class Overview:
    """Built where called; :meth:`refresh` reads the catalog."""

    def __init__(self, add: Any) -> None:
        self.rows: list[dict[str, Any]] = []
        self._header(add)
        self.problem = ui.label("").classes("text-negative").mark("page-error")
        self.problem.visible = False
        self.counts = Counts()
        jobs_panel()
        self._empty(add)
        self._table()
        self.chart = UsageChart()
        self.empty.visible = self.table_card.visible = self.chart.card.visible = False

    def _header(self, add: Any) -> None:
        with ui.row().classes("w-full items-end gap-4"):
            with ui.column().classes("gap-0"):
                ui.label("Datasets").classes("text-2xl font-semibold text-slate-900")
                self.subtitle = ui.label("").classes("text-sm pg-muted").mark("subtitle")
            ui.space()
            self.search = ui.input(placeholder="Search name, source, pipeline, modality…") \
                .props("outlined dense clearable").classes("w-80 max-w-full bg-white") \
                .mark("search")
            with self.search.add_slot("prepend"):
                ui.icon("search", size="20px")
            self.search.on_value_change(self.apply_search)
            ui.button("Add dataset", icon="add", on_click=add) \
                .props("unelevated no-caps").mark("add-dataset")

    def _empty(self, add: Any) -> None:
        with ui.card().classes("pg-card w-full p-0").props("flat") as self.empty, \
                layout.empty_state(
                    "inventory_2", "No datasets yet",
                    "Add one from a local folder, a glob of parquet / CSV / JSON Lines files, "
                    "an s3:// or gs:// prefix, or a Hugging Face dataset. Nothing is downloaded "
                    "until you ask for it."):
            ui.button("Add your first dataset", icon="add", on_click=add) \
                .props("outline no-caps").classes("mt-2").mark("add-first-dataset")

    def _table(self) -> None:
        with ui.card().classes("pg-card w-full p-0 gap-0 overflow-hidden").props("flat") \
                as self.table_card:
            self.table = ui.table(columns=COLUMNS, rows=[], row_key="name",
                                  pagination={"rowsPerPage": 25, "sortBy": "name"}) \
                .props("flat loading no-data-label='No datasets'") \
                .classes("pg-table w-full").mark("datasets-table")
            for column, template in SLOTS.items():
                self.table.add_slot(f"body-cell-{column}", template)


    def apply_search(self) -> None:
        query = self.search.value or ""
        self.table.rows = [r for r in self.rows if display.matches(r, query)]
        self.table.props["no-data-label"] = f"No dataset matches “{query}”" if query \
            else "No datasets"
        layout.fit_bottom(self.table)
        self.table.update()

    async def refresh(self) -> None:
        try:
            rows, pending = await run.io_bound(load_overview) or ([], {})
        except Exception as exc:  # noqa: BLE001 - shown, not raised
            self.problem.set_text(f"Cannot read the catalog: {error_text(exc)}")
            self.problem.visible = True
            return
        self.rows = rows
        self.problem.visible = False
        self.table.props(remove="loading")
        self.apply_search()
        self.counts.show(rows, pending)
        self.subtitle.set_text(f"{len(rows)} dataset{'s' if len(rows) != 1 else ''} · "
                               f"{sum(r['downloaded_parts'] for r in rows):,} of "
                               f"{sum(r['partitions'] for r in rows):,} partitions downloaded")
        self.chart.show(rows, pending)
        self.empty.visible = not rows
        self.table_card.visible = self.chart.card.visible = bool(rows)


class UsageChart:
    """Per dataset: bytes stored, and the source bytes not downloaded yet."""

    def __init__(self) -> None:
        with ui.card().classes("pg-card w-full p-5 gap-2").props("flat") as self.card:
            with ui.row().classes("w-full items-baseline gap-2"):
                ui.label("Storage usage").classes("text-base font-semibold")
                ui.label("per dataset: bytes stored, and the source size of what is not "
                         "downloaded yet").classes("text-sm pg-muted")
            self.chart = ui.echart({}).classes("w-full").mark("usage-chart")

    def show(self, rows: list[dict[str, Any]], pending: dict[str, int]) -> None:
        self.chart.options.clear()
        self.chart.options.update(display.usage_chart(rows, pending))
        self.chart.style(f"height: {max(140, 56 + 34 * len(rows))}px")
        self.chart.update()


class Counts:
    """The four numbers above the table: datasets, partitions, bytes stored and pending."""

    def __init__(self) -> None:
        with ui.row().classes("w-full gap-4"):
            self.datasets = layout.stat("Datasets", "-", "dataset", "stat-datasets")
            self.parts = layout.stat("Partitions downloaded", "-", "download_done", "stat-parts")
            self.stored = layout.stat("Stored", "-", "storage", "stat-stored")
            self.pending = layout.stat("Not downloaded (source)", "-", "cloud_queue",
                                       "stat-pending")

    def show(self, rows: list[dict[str, Any]], pending: dict[str, int]) -> None:
        parts = sum(r["partitions"] for r in rows)
        done = sum(r["downloaded_parts"] for r in rows)
        self.datasets.set_text(f"{len(rows):,}")
        self.parts.set_text(f"{done:,} / {parts:,}")
        self.stored.set_text(display.size(sum(r["downloaded_bytes"] for r in rows)))
        self.pending.set_text(display.size(sum(pending.values())))


async def datasets_page() -> None:
    from pygestor.ui.components.add_dialog import add_dataset

    content = layout.frame("Datasets")
    with content:
        overview = Overview(add_dataset)
    await ui.context.client.connected(timeout=30)  # deliver the page first: storage may be slow
    layout.show_flash()
    await overview.refresh()
