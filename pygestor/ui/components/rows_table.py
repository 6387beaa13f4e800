"""A table of rows as :func:`pygestor.ui.display.rows_table` makes them: images inline, long
text folded (click to unfold), nested values as text, nulls marked."""

from __future__ import annotations

from typing import Any

from nicegui import ui

CELL = """
<q-td :props="props">
  <img v-if="props.value && props.value.t === 'img'" :src="props.value.src"
    :alt="props.value.v" :title="props.value.v"
    class="pg-thumb" />
  <div v-else-if="props.value && props.value.t === 'long'" style="white-space: pre-wrap"
    >{{ props.expand ? props.value.v : props.value.short }} <a class="pg-fold"
    @click.stop="props.expand = !props.expand">{{ props.expand ? 'less' : 'more' }}</a></div>
  <span v-else-if="props.value && props.value.t === 'null'" class="pg-null">null</span>
  <span v-else-if="props.value && props.value.t === 'n'" class="pg-muted text-xs"
    >{{ props.value.v }}</span>
  <span v-else style="white-space: pre-wrap">{{ props.value ? props.value.v : '' }}</span>
</q-td>"""


def rows_table(marker: str, columns: list[dict[str, Any]] | None = None,
               rows: list[dict[str, Any]] | None = None) -> ui.table:
    """A table that shows all the rows it is given (paging is done outside it)."""
    table = ui.table(columns=columns or [], rows=rows or [], row_key="_row",
                     pagination={"rowsPerPage": 0}) \
        .props("flat bordered dense hide-bottom").classes("pg-table pg-sample w-full") \
        .mark(marker)
    table.add_slot("body-cell", CELL)
    return table


def show_rows(table: ui.table, columns: list[dict[str, Any]], rows: list[dict[str, Any]]
              ) -> None:
    table.columns = columns
    table.rows = rows
    table.update()
