"""A schema as a table: nested fields follow their parent, indented."""

from __future__ import annotations

from typing import Any

from nicegui import ui

COLUMNS = [
    {"name": "column", "label": "Column", "field": "column", "align": "left"},
    {"name": "type", "label": "Type", "field": "type", "align": "left"},
    {"name": "nullable", "label": "Nullable", "field": "nullable", "align": "left"},
]
_COLUMN_CELL = """
<q-td :props="props" :title="props.row.column">
  <span :style="{ paddingLeft: (props.row.depth * 20) + 'px' }">
    <q-icon v-if="props.row.depth" name="subdirectory_arrow_right" size="14px"
      class="text-grey-5 q-mr-xs" />
    <span :class="props.row.depth ? '' : 'text-weight-medium'">{{ props.row.name }}</span>
  </span>
</q-td>"""
_TYPE_CELL = """
<q-td :props="props"><span class="pg-mono text-xs">{{ props.value }}</span></q-td>"""


def schema_table(rows: list[dict[str, Any]], marker: str = "schema-table") -> ui.table:
    """``rows`` from :func:`pygestor.ui.display.schema_rows`, with a column count above."""
    top = sum(1 for r in rows if r["depth"] == 0)
    ui.label(f"{top} column{'s' if top != 1 else ''}").classes("text-sm pg-muted")
    table = ui.table(columns=COLUMNS, rows=rows, row_key="id", pagination={"rowsPerPage": 0}) \
        .props("flat bordered dense hide-bottom").classes("pg-table w-full").mark(marker)
    table.add_slot("body-cell-column", _COLUMN_CELL)
    table.add_slot("body-cell-type", _TYPE_CELL)
    return table


def hint(icon: str, text: str, marker: str) -> None:
    """A muted line saying why something cannot be shown (yet)."""
    with ui.row().classes("items-center gap-2 pg-muted text-sm no-wrap").mark(marker):
        ui.icon(icon, size="18px")
        ui.label(text)
