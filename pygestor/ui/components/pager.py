"""Page controls: first, previous, a page number to type (any page, at once), next, last, and
rows per page."""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable

from nicegui import ui

PAGE_SIZES = [10, 25, 50, 100]


class Pager:
    """Calls ``on_page(page, per_page)`` (page from 0) when the user moves."""

    def __init__(self, on_page: Callable[[int, int], Awaitable[None]]) -> None:
        self.on_page = on_page
        self.page, self.pages, self.rows = 0, 1, 0
        with ui.row().classes("w-full items-center gap-1 px-3 py-2").mark("pager") as self.row:
            self.first = self._button("first_page", "page-first", lambda: self.go(0))
            self.previous = self._button("chevron_left", "page-previous",
                                         lambda: self.go(self.page - 1))
            ui.label("Page").classes("text-sm pg-muted ml-1")
            self.number = ui.number(value=1, min=1, precision=0, format="%d") \
                .props("dense outlined input-class=text-right") \
                .classes("w-28 pg-page-number").mark("page-number")
            self.number.on("keydown.enter", self._typed)
            self.number.on("blur", self._typed)
            self.count = ui.label("of 1").classes("text-sm pg-muted").mark("page-count")
            self.next = self._button("chevron_right", "page-next", lambda: self.go(self.page + 1))
            self.last = self._button("last_page", "page-last", lambda: self.go(self.pages - 1))
            ui.space()
            self.size = ui.select(PAGE_SIZES, value=25, label="Rows per page") \
                .props("dense outlined options-dense").classes("w-32").mark("page-size")
            self.size.on_value_change(lambda: self.go(0))

    @staticmethod
    def _button(icon: str, marker: str, action: Callable[[], Awaitable[None]]) -> ui.button:
        return ui.button(icon=icon, on_click=action).props("flat round dense").mark(marker)

    @property
    def per_page(self) -> int:
        return int(self.size.value or 25)

    def set_rows(self, rows: int, page: int = 0) -> None:
        """How many rows there are to page through; shows page ``page``'s controls."""
        self.rows = rows
        self.pages = max(1, math.ceil(rows / self.per_page))
        self.page = min(max(page, 0), self.pages - 1)
        self.number.value = self.page + 1
        self.number.max = self.pages
        self.count.set_text(f"of {self.pages:,}")
        self.first.set_enabled(self.page > 0)
        self.previous.set_enabled(self.page > 0)
        self.next.set_enabled(self.page < self.pages - 1)
        self.last.set_enabled(self.page < self.pages - 1)

    async def _typed(self) -> None:
        try:
            wanted = int(self.number.value) - 1
        except (TypeError, ValueError):
            self.number.value = self.page + 1
            return
        if wanted != self.page:
            await self.go(wanted)

    async def go(self, page: int) -> None:
        self.set_rows(self.rows, page)
        await self.on_page(self.page, self.per_page)
