"""The viewer: every row of a downloaded subset, a page at a time, sorted and filtered.

Pages are read by row-group seeks and queries run in DuckDB over verified reads
(:class:`pygestor.viewer.RowViewer`), in worker threads; an answer that arrives after a newer
request is dropped. A subset with nothing downloaded shows its first rows from the source.
"""

from __future__ import annotations

from typing import Any

from nicegui import run, ui

from pygestor.ui import display, layout
from pygestor.ui.app import get_manager
from pygestor.ui.components.pager import Pager
from pygestor.ui.components.query_bar import QueryBar
from pygestor.ui.components.rows_table import rows_table, show_rows
from pygestor.ui.components.source_preview import SourcePreview
from pygestor.viewer import QueryResult, RowQuery, RowViewer


class RowsPanel:
    """Built where called; :meth:`reload` after the subset changed (downloads, removals)."""

    def __init__(self, ref: str) -> None:
        self.ref = ref
        self.viewer: RowViewer | None = None
        self.result: QueryResult | None = None
        self.latest = 0
        with ui.column().classes("w-full gap-0").mark("rows-viewer") as self.box:
            self.bar = QueryBar(self.run_query)
            with ui.column().classes("w-full gap-1 px-3 py-2"):
                self.status = ui.label("").classes("text-sm pg-muted").mark("rows-status")
                self.problem = ui.label("").classes("text-sm text-negative whitespace-pre-wrap") \
                    .mark("query-error")
                self.problem.visible = False
            with ui.element("div").classes("w-full overflow-x-auto px-3"):
                self.table = rows_table("rows-table")
            self.pager = Pager(self.show_page)
        self.box.visible = False
        self.preview = SourcePreview()
        ui.context.client.on_disconnect(self.close)

    def close(self) -> None:
        if self.viewer is not None:
            self.viewer.close()
            self.viewer = None

    async def reload(self, downloaded: int) -> None:
        """Page through the downloaded rows, or preview the source when there are none."""
        self.close()
        self.box.visible = downloaded > 0
        if not downloaded:
            await self.preview.show(self.ref)
            return
        self.preview.box.visible = False
        opened = await run.io_bound(_attempt, RowViewer, get_manager(), self.ref)
        if isinstance(opened, str):
            self._fail(opened)
            return
        self.viewer = opened
        self.bar.set_columns(opened.schema.names)
        await self.run_query(self.bar.query)

    @layout.guarded
    async def run_query(self, query: RowQuery) -> None:
        viewer, ticket = self.viewer, self._ticket()
        if viewer is None:
            return
        result: Any = None
        if not query.empty:
            self.status.set_text("Running the query…")
            result = await run.io_bound(_attempt, viewer.query, query)
            if ticket != self.latest:
                return
            if isinstance(result, str):
                self._fail(result)
                return
        self.result = result
        self.problem.visible = False
        self.pager.set_rows(viewer.num_rows if result is None else len(result.rows))
        await self._load(0, self.pager.per_page, ticket)

    @layout.guarded
    async def show_page(self, page: int, per_page: int) -> None:
        await self._load(page, per_page, self._ticket())

    async def _load(self, page: int, per_page: int, ticket: int) -> None:
        viewer = self.viewer
        if viewer is None:
            return
        loaded = await run.io_bound(_attempt, _page_rows, viewer, page, per_page, self.result)
        if ticket != self.latest or loaded is None:
            return
        if isinstance(loaded, str):
            self._fail(loaded)
            return
        show_rows(self.table, *loaded)
        self.status.set_text(status_text(page, per_page, viewer, self.result))

    def _ticket(self) -> int:
        self.latest += 1
        return self.latest

    def _fail(self, message: str) -> None:
        self.problem.set_text(message)
        self.problem.visible = True
        self.status.set_text("")


def status_text(page: int, per_page: int, viewer: RowViewer, result: QueryResult | None
                ) -> str:
    """Which rows are shown, of how many, in which order."""
    shown = viewer.num_rows if result is None else len(result.rows)
    first, last = page * per_page + 1, min((page + 1) * per_page, shown)
    where = f"rows {first:,}{display.DASH}{last:,} of " if shown else "no rows of "
    if result is None:
        return f"{where}{viewer.num_rows:,} (stored order)"
    text = f"{where}{result.matches:,} matching rows ({result.seconds:.2f} s)"
    if result.capped:
        text += f"; the first {len(result.rows):,} can be paged"
    return text


def _page_rows(viewer: RowViewer, page: int, per_page: int, result: QueryResult | None
               ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    numbers, table = viewer.page(page, per_page, result)
    return display.rows_table(table, numbers)


def _attempt(function: Any, *args: Any) -> Any:
    """``function(*args)``, or the error as one line for the page."""
    try:
        return function(*args)
    except Exception as exc:  # noqa: BLE001 - shown in the tab
        return display.error_text(exc)
