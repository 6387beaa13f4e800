"""One subset's page: title and facts, the download controls, and the tabs (partitions, rows,
statistics, schema, code), all brought up to date after a download or a removal."""

from __future__ import annotations

from typing import Any

from nicegui import run, ui

from pygestor.errors import NotDownloadedError
from pygestor.ui import display, layout
from pygestor.ui.app import get_manager
from pygestor.ui.components.downloads import DownloadControls
from pygestor.ui.components.partitions import PartitionTable
from pygestor.ui.components.rows_panel import RowsPanel
from pygestor.ui.components.schema_table import hint, schema_table
from pygestor.ui.components.snippets import snippets_panel
from pygestor.ui.components.stats_panel import StatsPanel

TABS = [("partitions", "Partitions", "view_list"), ("rows", "Rows", "table_rows"),
        ("stats", "Statistics", "query_stats"), ("schema", "Schema", "schema"),
        ("code", "Code", "code")]


def load_subset(ref: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    manager = get_manager()
    return manager.info(ref), manager.list_partitions(ref, failures=True)


def load_schema(ref: str) -> dict[str, Any]:
    """Schema rows (from the downloaded data, else the record), or why there are none."""
    from pygestor.loaders.arrow import schema

    try:
        return {"rows": display.schema_rows(schema(get_manager(), ref))}
    except NotDownloadedError:
        return {"error": "The schema is known once a partition is downloaded."}
    except Exception as exc:  # noqa: BLE001 - shown in the tab
        return {"error": display.error_text(exc)}


class SubsetView:
    """Built where called (inside the page's content column)."""

    def __init__(self, name: str, subset: str) -> None:
        self.name, self.subset, self.ref = name, subset, f"{name}/{subset}"
        self.downloaded = -1
        self.controls = DownloadControls(self.ref, self.refresh)
        self._title()
        self.controls.progress_card()
        with ui.card().classes("pg-card w-full p-0 gap-0 overflow-hidden").props("flat"):
            self._tabs()
        self.controls.bind_selection(self.table)

    def _title(self) -> None:
        with ui.row().classes("w-full items-end gap-3"):
            with ui.column().classes("gap-0 min-w-0"):
                with ui.row().classes("items-baseline gap-2"):
                    ui.label(self.subset).classes("text-2xl font-semibold text-slate-900 "
                                                  "break-all").mark("subset-title")
                    ui.label(f"in {self.name}").classes("text-base pg-muted")
                self.subtitle = ui.label("").classes("text-sm pg-muted").mark("subset-subtitle")
            ui.space()
            with ui.row().classes("items-center gap-2"):
                self.controls.buttons()

    def _tabs(self) -> None:
        with ui.tabs().props("align=left inline-label no-caps outside-arrows mobile-arrows "
                             "active-color=primary indicator-color=primary") \
                .classes("px-3 text-slate-600 w-full") as tabs:
            self.tab = {key: ui.tab(key, label, icon=icon).props("no-caps").mark(f"tab-{key}")
                        for key, label, icon in TABS}
        ui.separator().classes("m-0")
        with ui.tab_panels(tabs, value="partitions").classes("w-full").props("animated=false"):
            with ui.tab_panel("partitions").style("padding: 0"):
                self.table = PartitionTable()
            with ui.tab_panel("rows").style("padding: 0"):
                self.rows = RowsPanel(self.ref)
            with ui.tab_panel("stats").style("padding: 0"):
                self.stats = StatsPanel(self.ref)
            with ui.tab_panel("schema").classes("px-5 py-4"):
                self.schema_box = ui.column().classes("w-full gap-2")
                with self.schema_box:
                    ui.spinner(size="24px")
            with ui.tab_panel("code").classes("px-5 py-4"):
                snippets_panel(self.ref)

    async def refresh(self, full: bool = True) -> None:
        """Read the subset again; ``full``: also the rows, statistics and schema when what is
        downloaded changed."""
        loaded = await run.io_bound(load_subset, self.ref)
        if loaded is None:
            return
        summary, partitions = loaded
        self.table.show(partitions)
        self.controls.show_state(summary)
        self._facts(summary)
        if full and summary["downloaded"] != self.downloaded:
            self.downloaded = summary["downloaded"]
            await self._show_schema()
            await self.rows.reload(self.downloaded)
            await self.stats.reload(self.downloaded)

    def _facts(self, summary: dict[str, Any]) -> None:
        facts = [f"{summary['downloaded']:,} of {summary['partitions']:,} partitions downloaded",
                 f"{display.size(summary['downloaded_bytes'])} stored"]
        if summary["rows"] is not None:
            facts.append(f"{summary['rows']:,} rows")
        self.subtitle.set_text(" · ".join(facts))
        self.tab["partitions"].props["label"] = f"Partitions ({summary['partitions']:,})"
        self.tab["partitions"].update()

    async def _show_schema(self) -> None:
        loaded = await run.io_bound(load_schema, self.ref)
        if loaded is None:
            return
        self.schema_box.clear()
        with self.schema_box:
            if "rows" in loaded:
                schema_table(loaded["rows"])
            else:
                hint("schema", loaded["error"], "schema-empty")


async def subset_page(info: dict[str, Any], subset: str) -> None:
    name = info["name"]
    content = layout.frame(f"{name}/{subset}", [("Datasets", "/"),
                                                 (name, display.dataset_href(name)),
                                                 (subset, None)])
    with content:
        view = SubsetView(name, subset)
    await ui.context.client.connected(timeout=30)  # deliver the page first: storage may be slow
    await view.refresh()
