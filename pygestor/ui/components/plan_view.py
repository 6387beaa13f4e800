"""What adding a dataset would register, before anything is written: its subsets and
partitions, and for a chosen subset its schema and first rows read from the source."""

from __future__ import annotations

from typing import Any

from nicegui import run, ui

from pygestor.ui import display
from pygestor.ui.app import get_manager
from pygestor.ui.components.rows_table import rows_table, show_rows
from pygestor.ui.components.schema_table import hint, schema_table

PREVIEW_ROWS = 10
COLUMNS = [
    {"name": "name", "label": "Subset", "field": "name", "align": "left"},
    {"name": "partitions", "label": "Partitions", "field": "partitions", "align": "right"},
    {"name": "rows", "label": "Rows", "field": "rows_label", "align": "right"},
    {"name": "source", "label": "Source size", "field": "source_label", "align": "right"},
]


def load_subset_preview(dataset: Any, subset: str) -> dict[str, Any]:
    """Schema rows and first rows of ``subset`` of a planned dataset (or why not)."""
    from pygestor.pipelines.formats import schema_from_text
    from pygestor.preview import source_rows

    found: dict[str, Any] = {}
    text = dataset.subsets[subset].schema
    found["schema"] = display.schema_rows(schema_from_text(text)) if text else None
    try:
        table = source_rows(get_manager(), dataset, subset, PREVIEW_ROWS, face="ui")
        found["columns"], found["rows"] = display.rows_table(table)
    except Exception as exc:  # noqa: BLE001 - shown in the dialog
        found["error"] = display.error_text(exc)
    return found


class PlanView:
    """Built (hidden) where called; :meth:`show` fills it with a planned dataset."""

    def __init__(self) -> None:
        self.dataset: Any = None
        with ui.column().classes("w-full gap-2").mark("plan") as self.box:
            self.summary = ui.label("").classes("text-sm font-medium text-slate-800") \
                .mark("plan-summary")
            self.subsets = ui.table(columns=COLUMNS, rows=[], row_key="name",
                                    pagination={"rowsPerPage": 0}) \
                .props("flat bordered dense hide-bottom").classes("pg-table w-full") \
                .mark("plan-subsets")
            self.choice = ui.select([], label="Subset to look into") \
                .props("dense outlined options-dense").classes("w-64 max-w-full") \
                .mark("plan-subset")
            self.choice.on_value_change(self._chosen)
            self.details = ui.column().classes("w-full gap-2")
        self.box.visible = False

    async def show(self, dataset: Any) -> None:
        self.dataset = dataset
        rows = display.plan_rows(dataset)
        parts = sum(r["partitions"] for r in rows)
        source = sum(s.stats()["source_bytes"] for s in dataset.subsets.values())
        self.summary.set_text(f"Would register {dataset.name}: {len(rows)} subset"
                              f"{'s' if len(rows) != 1 else ''}, {parts:,} partitions, "
                              f"{display.size(source)} at the source ({dataset.pipeline})")
        self.subsets.rows = rows
        self.subsets.update()
        self.box.visible = True
        names = list(dataset.subsets)
        self.choice.set_options(names, value=None)
        self.choice.value = names[0] if names else None

    def hide(self) -> None:
        self.box.visible = False
        self.dataset = None

    async def _chosen(self) -> None:
        dataset, subset = self.dataset, self.choice.value
        if dataset is None or subset not in dataset.subsets:
            return
        self.details.clear()
        with self.details:
            ui.spinner(size="20px")
        found = await run.io_bound(load_subset_preview, dataset, subset)
        if found is None or self.dataset is not dataset or self.choice.value != subset:
            return
        self.details.clear()
        with self.details:
            if found["schema"]:
                schema_table(found["schema"], marker="plan-schema")
            if "error" in found:
                hint("info", f"First rows: {found['error']}", "plan-rows-error")
            else:
                ui.label(f"The first {len(found['rows'])} rows, read from the source") \
                    .classes("text-sm pg-muted")
                with ui.element("div").classes("w-full overflow-x-auto"):
                    show_rows(rows_table("plan-rows"), found["columns"], found["rows"])
