"""Column statistics of a subset: type, nulls, range or distinct values, and a histogram or
the most frequent values per column (:mod:`pygestor.stats`), stored with the record; computed
on request in a worker thread, with progress and cancel."""

from __future__ import annotations

import threading
from typing import Any

from nicegui import run, ui

from pygestor.errors import CancelledError
from pygestor.ui import display, layout
from pygestor.ui.app import get_manager

COLUMNS = [
    {"name": "name", "label": "Column", "field": "name", "align": "left", "sortable": True},
    {"name": "type", "label": "Type", "field": "type", "align": "left"},
    {"name": "nulls", "label": "Nulls", "field": "nulls", "align": "right", "sortable": True},
    {"name": "summary", "label": "Summary", "field": "summary", "align": "left"},
    {"name": "distribution", "label": "Distribution", "field": "id", "align": "left"},
]
_NULLS_CELL = """
<q-td :props="props"><span class="text-sm">{{ props.row.nulls_label }}</span></q-td>"""
_TYPE_CELL = """
<q-td :props="props"><span class="pg-mono text-xs">{{ props.value }}</span></q-td>"""
_DISTRIBUTION_CELL = """
<q-td :props="props">
  <div v-if="props.row.top.length" class="pg-top">
    <template v-for="item in props.row.top" :key="item.label">
      <span class="ellipsis" :title="item.label">{{ item.label }}</span>
      <div class="bar" :style="{ width: item.w + '%' }"></div>
      <span class="pg-muted">{{ item.count }}</span>
    </template>
  </div>
  <div v-else-if="props.row.bars.length" class="pg-bars">
    <div v-for="(bar, i) in props.row.bars" :key="i" :style="{ height: bar.h + '%' }"
      :title="bar.tip"></div>
  </div>
  <span v-else class="pg-muted">-</span>
</q-td>"""


def load_stats(ref: str) -> dict[str, Any]:
    """The stored statistics of ``ref`` (or None) and the readable type of each column."""
    from pygestor.loaders.arrow import schema
    from pygestor.stats import stored_stats

    manager = get_manager()
    stats = stored_stats(manager, ref)
    types: dict[str, str] = {}
    if stats is not None:
        try:
            types = {f.name: display.type_name(f.type) for f in schema(manager, ref)}
        except Exception:  # noqa: BLE001 - the stored type names do
            types = {}
    return {"stats": stats, "types": types}


class StatsTable:
    """The statistics as a table, or a line saying why there are none."""

    def __init__(self) -> None:
        self.empty = ui.row().classes("items-center gap-2 pg-muted text-sm no-wrap") \
            .mark("stats-empty")
        with ui.element("div").classes("w-full overflow-x-auto"):
            self.table = ui.table(columns=COLUMNS, rows=[], row_key="id",
                                  pagination={"rowsPerPage": 0}) \
                .props("flat bordered dense hide-bottom").classes("pg-table w-full") \
                .mark("stats-table")
        self.table.add_slot("body-cell-nulls", _NULLS_CELL)
        self.table.add_slot("body-cell-type", _TYPE_CELL)
        self.table.add_slot("body-cell-distribution", _DISTRIBUTION_CELL)

    def show(self, stats: dict[str, Any] | None, types: dict[str, str], empty: str) -> None:
        self.table.rows = display.stats_rows(stats, types) if stats else []
        self.table.visible = bool(stats)
        self.table.update()
        self.empty.clear()
        self.empty.visible = not stats
        with self.empty:
            ui.icon("info", size="18px")
            ui.label(empty)


class StatsPanel:
    """Built where called; :meth:`reload` shows what is stored; "Compute" runs the
    operation in a worker thread, with a progress bar and Cancel."""

    def __init__(self, ref: str) -> None:
        self.ref = ref
        self.cancel: threading.Event | None = None
        self.done: tuple[int, int] = (0, 0)
        with ui.column().classes("w-full gap-3 px-5 py-4"):
            self._header()
            self.problem = ui.label("").classes("text-sm text-negative").mark("stats-error")
            self.problem.visible = False
            self.table = StatsTable()
        self.timer = ui.timer(0.3, self._poll, active=False)

    def _header(self) -> None:
        with ui.row().classes("w-full items-center gap-3"):
            with ui.column().classes("gap-0 min-w-0"):
                ui.label("Column statistics").classes("text-base font-semibold")
                self.facts = ui.label("").classes("text-sm pg-muted").mark("stats-facts")
            ui.space()
            self.bar = ui.linear_progress(value=0, show_value=False, size="8px") \
                .props("rounded track-color=grey-3").classes("w-40").mark("stats-progress")
            self.compute_button = ui.button("Compute statistics", icon="query_stats",
                                            on_click=self.compute) \
                .props("unelevated no-caps").mark("stats-compute")
            self.cancel_button = ui.button("Cancel", on_click=self._cancel) \
                .props("flat no-caps").mark("stats-cancel")
        self.bar.visible = self.cancel_button.visible = False

    async def reload(self, downloaded: int) -> None:
        self.compute_button.set_enabled(downloaded > 0)
        if not downloaded:
            self.table.show(None, {}, "Download the subset to compute its column statistics.")
            self.facts.set_text("")
            return
        loaded = await run.io_bound(load_stats, self.ref)
        if loaded is None:
            return
        stats = loaded["stats"]
        self.table.show(stats, loaded["types"],
                        "No statistics yet: compute them (one pass over the downloaded rows).")
        self.facts.set_text(stats_facts(stats) if stats else "")
        if stats:
            self.compute_button.set_text("Compute again")

    @layout.guarded
    async def compute(self) -> None:
        self.cancel, self.done = threading.Event(), (0, 0)
        self._busy(True)
        try:
            await run.io_bound(get_manager().column_stats, self.ref,
                               progress=self._progress, cancel=self.cancel)
        except CancelledError:
            layout.notify("Computing statistics cancelled; nothing stored", "warning")
        except Exception as exc:  # noqa: BLE001 - shown to the user
            self.problem.set_text(f"Could not compute statistics: {display.error_text(exc)}")
            self.problem.visible = True
        else:
            self.problem.visible = False
            layout.notify(f"Computed the column statistics of {self.ref}", "positive")
        finally:
            self._busy(False)
        await self.reload(1)

    def _progress(self, done: int, total: int) -> None:  # a worker thread
        self.done = (done, total)

    def _poll(self) -> None:
        done, total = self.done
        self.bar.value = round(done / total, 3) if total else 0

    def _busy(self, busy: bool) -> None:
        self.bar.visible = self.cancel_button.visible = busy
        self.compute_button.set_enabled(not busy)
        self.timer.active = busy

    def _cancel(self) -> None:
        if self.cancel is not None:
            self.cancel.set()


def stats_facts(stats: dict[str, Any]) -> str:
    facts = f"{stats['rows']:,} rows · computed {display.when(stats.get('computed_at'))}"
    if stats.get("stale"):
        facts += " · partitions changed since: compute again"
    return facts
