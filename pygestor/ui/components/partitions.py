"""The partitions table of a subset: status, rows, sizes, row groups; rows can be selected
for the download and remove controls."""

from __future__ import annotations

from typing import Any

from nicegui import ui

from pygestor.ui import display, layout

COLUMNS = [
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
  <q-badge :color="props.row.downloaded ? 'positive' : (props.row.failed ? 'negative' : 'grey-4')"
    :text-color="props.row.downloaded || props.row.failed ? 'white' : 'grey-9'"
    :label="props.value" />
  <div v-if="props.row.failed" class="text-xs text-negative" style="max-width: 420px;
    white-space: normal" data-testid="partition-error">{{ props.row.failed }}</div>
  <div v-if="props.row.failed" class="text-xs pg-muted" style="max-width: 420px;
    white-space: normal">from {{ props.row.origin }}</div>
</q-td>"""
_ROW_GROUPS_CELL = """
<q-td :props="props"><span class="text-sm">{{ props.value || '-' }}</span></q-td>"""


def label_cell(field: str) -> str:
    return f'<q-td :props="props"><span class="text-sm">{{{{ props.row.{field} }}}}</span></q-td>'


class PartitionTable:
    """The table, and what it holds (``partitions``: the manager's summaries)."""

    def __init__(self) -> None:
        self.partitions: list[dict[str, Any]] = []
        self.table = ui.table(columns=COLUMNS, rows=[], row_key="name", selection="multiple",
                              pagination={"rowsPerPage": 25, "sortBy": "name"}) \
            .props("flat loading").classes("pg-table w-full").mark("partitions-table")
        self.table.add_slot("body-cell-status", _STATUS_CELL)
        self.table.add_slot("body-cell-rows", label_cell("rows_label"))
        self.table.add_slot("body-cell-size", label_cell("size_label"))
        self.table.add_slot("body-cell-source", label_cell("source_label"))
        self.table.add_slot("body-cell-row_groups", _ROW_GROUPS_CELL)
        self.table.add_slot("body-cell-downloaded_at", label_cell("downloaded_label"))

    def show(self, partitions: list[dict[str, Any]]) -> None:
        """Show ``partitions``, keeping the selection of those still listed."""
        self.partitions = partitions
        rows = [display.partition_row(p) for p in partitions]
        selected = {r["name"] for r in self.table.selected}
        self.table.rows = rows
        self.table.selected = [r for r in rows if r["name"] in selected]
        self.table.props(remove="loading")
        layout.fit_bottom(self.table)
        self.table.update()

    def failed_names(self) -> list[str]:
        return [p["name"] for p in self.partitions if p.get("failed") and not p["downloaded"]]

    def selected_names(self) -> list[str]:
        return [r["name"] for r in self.table.selected]

    def clear_selection(self) -> None:
        self.table.selected = []
