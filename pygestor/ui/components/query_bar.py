"""The viewer's query controls: a filter builder (column, operator, value, the conditions as
removable chips), a SQL ``WHERE`` box for those who want it, and a sort. Every change calls
``on_change`` with the query they make together."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from nicegui import ui

from pygestor.viewer import OPERATORS, UNARY, Condition, RowQuery

STORED_ORDER = "(stored order)"
Changed = Callable[[], Awaitable[None]]


class FilterBuilder:
    """Column, operator and value; the conditions added so far, each removable."""

    def __init__(self, changed: Changed) -> None:
        self.changed = changed
        self.conditions: list[Condition] = []
        self.column = ui.select([], label="Column").props("dense outlined options-dense") \
            .classes("w-40").mark("filter-column")
        self.op = ui.select(list(OPERATORS), value="=", label="Operator") \
            .props("dense outlined options-dense").classes("w-32").mark("filter-op")
        self.value = ui.input("Value").props("dense outlined").classes("w-40") \
            .mark("filter-value")
        self.value.on("keydown.enter", self.add)
        ui.button("Add filter", icon="filter_alt", on_click=self.add) \
            .props("outline no-caps").mark("filter-add")

    def chips_row(self) -> None:
        self.chips = ui.row().classes("w-full gap-1").mark("filter-chips")

    async def add(self) -> None:
        op = self.op.value or "="
        if not self.column.value:
            return
        value = None if op in UNARY else str(self.value.value or "")
        self.conditions.append(Condition(self.column.value, op, value))
        self.value.value = ""
        self.show()
        await self.changed()

    async def remove(self, condition: Condition) -> None:
        self.conditions.remove(condition)
        self.show()
        await self.changed()

    def show(self) -> None:
        self.chips.clear()
        with self.chips:
            for condition in self.conditions:
                text = f"{condition.column} {condition.op}" + (
                    f" {condition.value!r}" if condition.value is not None else "")
                ui.chip(text, removable=True, color="indigo-1", text_color="indigo-10") \
                    .props("dense").mark("filter-chip") \
                    .on("remove", lambda c=condition: self.remove(c))


class QueryBar:
    """Builds the controls where called; ``query`` is what they say now."""

    def __init__(self, on_change: Callable[[RowQuery], Awaitable[None]]) -> None:
        self.on_change = on_change
        with ui.column().classes("w-full gap-2 px-3 pt-3"):
            with ui.row().classes("w-full items-center gap-2"):
                self.filters = FilterBuilder(self.apply)
                ui.space()
                self._sort()
            self.filters.chips_row()
            self._where_box()

    def _sort(self) -> None:
        self.sort = ui.select([STORED_ORDER], value=STORED_ORDER, label="Sort by") \
            .props("dense outlined options-dense").classes("w-40").mark("sort-column")
        self.descending = ui.toggle({False: "asc", True: "desc"}, value=False) \
            .props("dense no-caps unelevated toggle-color=primary").mark("sort-direction")
        self.sort.on_value_change(self.apply)
        self.descending.on_value_change(self.apply)

    def _where_box(self) -> None:
        with ui.row().classes("w-full items-center gap-2 no-wrap"):
            self.where = ui.input(placeholder="SQL condition, e.g. label = 'cat' AND score > 0.5") \
                .props("dense outlined clearable").classes("flex-grow min-w-0 pg-mono") \
                .mark("sql-where")
            with self.where.add_slot("prepend"):
                ui.label("WHERE").classes("text-xs font-semibold text-slate-500")
            self.where.on("keydown.enter", self.apply)
            ui.button("Apply", on_click=self.apply).props("unelevated no-caps") \
                .mark("sql-apply")
            ui.button("Clear", on_click=self.clear).props("flat no-caps").mark("query-clear")

    def set_columns(self, names: list[str]) -> None:
        """The subset's columns (choices of the builder and the sort)."""
        self.filters.column.set_options(names, value=names[0] if names else None)
        self.sort.set_options([STORED_ORDER, *names], value=STORED_ORDER)

    @property
    def query(self) -> RowQuery:
        sort = self.sort.value if self.sort.value != STORED_ORDER else None
        return RowQuery(conditions=tuple(self.filters.conditions),
                        where=(self.where.value or "").strip(), sort=sort,
                        descending=bool(self.descending.value))

    async def clear(self) -> None:
        self.filters.conditions.clear()
        self.filters.show()
        self.where.value = ""
        self.sort.value = STORED_ORDER
        await self.apply()

    async def apply(self) -> None:
        await self.on_change(self.query)
