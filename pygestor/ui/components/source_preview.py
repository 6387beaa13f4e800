"""Rows of a subset that is not downloaded yet: its first rows read straight from the source
(ranged reads, the web UI's source policy), so an admin can judge it before fetching it."""

from __future__ import annotations

from typing import Any

from nicegui import run, ui

from pygestor.ui import display
from pygestor.ui.app import get_manager
from pygestor.ui.components.rows_table import rows_table, show_rows
from pygestor.ui.components.schema_table import hint

PREVIEW_ROWS = 20


def load_source_rows(ref: str) -> dict[str, Any]:
    """The first rows of ``ref`` from its source, or why they cannot be shown."""
    try:
        table = get_manager().preview(ref, PREVIEW_ROWS, face="ui")
    except Exception as exc:  # noqa: BLE001 - shown in the tab
        return {"error": display.error_text(exc)}
    columns, rows = display.rows_table(table)
    return {"columns": columns, "rows": rows}


class SourcePreview:
    """A note, and the first rows from the source (built hidden; :meth:`show` fills it)."""

    def __init__(self) -> None:
        with ui.column().classes("w-full gap-2 px-3 py-3") as self.box:
            with ui.row().classes("items-center gap-2 text-sm no-wrap"):
                ui.icon("cloud_queue", size="18px").classes("text-primary")
                ui.label(f"Not downloaded yet: the first {PREVIEW_ROWS} rows, read straight from "
                         "the source.").classes("pg-muted")
            self.problem = ui.column().classes("w-full")
            self.table = rows_table("source-rows")
        self.box.visible = False

    async def show(self, ref: str) -> None:
        self.box.visible = True
        loaded = await run.io_bound(load_source_rows, ref)
        if loaded is None:
            return
        self.problem.clear()
        if "error" in loaded:
            self.table.visible = False
            with self.problem:
                hint("info", loaded["error"], "source-rows-error")
            return
        self.table.visible = True
        show_rows(self.table, loaded["columns"], loaded["rows"])
