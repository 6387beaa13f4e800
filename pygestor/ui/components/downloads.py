"""Download, progress, cancel and remove controls of one subset page.

The buttons (download the subset or the selected partitions, remove them) and the progress card
below them. A download runs in a worker thread of this process; the card follows it through a
:class:`DownloadProgress` the page's timer reads, and the partitions table turns "Downloaded"
as partitions land.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from nicegui import background_tasks, run, ui

from pygestor.errors import CancelledError
from pygestor.manager import ProgressEvent
from pygestor.ui import display, layout
from pygestor.ui.app import get_manager
from pygestor.ui.components.partitions import PartitionTable
from pygestor.ui.display import error_text

#: seconds between refreshes of the partitions table while a download runs
LIVE_TABLE_INTERVAL = 1.0
#: called after a download or removal: refresh the page (``full=False``: the table only)
Refresh = Callable[..., Awaitable[None]]


def plural(n: int, word: str) -> str:
    return f"{n:,} {word}{'' if n == 1 else 's'}"


class DownloadProgress:
    """One download's progress: written by the worker thread, read by the page's timer."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._event = ProgressEvent(total=0)
        self.started = False

    def __call__(self, event: ProgressEvent) -> None:
        with self._lock:
            self._event = dataclasses.replace(event)
            self.started = True

    def snapshot(self) -> ProgressEvent:
        with self._lock:
            return dataclasses.replace(self._event)


def progress_text(event: ProgressEvent) -> str:
    parts = [f"{event.done:,} / {event.total:,} partitions",
             f"{display.size(event.bytes_written)} written"]
    if event.skipped:
        parts.append(f"{event.skipped:,} already present")
    if event.failed:
        parts.append(f"{event.failed:,} failed")
    if event.current and not event.finished:
        parts.append(f"last: {event.current}")
    return " · ".join(parts)


class DownloadControls:
    """The buttons (:meth:`buttons`, built where called) and the progress card
    (:meth:`progress_card`) of a subset page."""

    def __init__(self, ref: str, table: PartitionTable | None, refresh: Refresh) -> None:
        self.ref, self.partitions, self.refresh = ref, table, refresh
        self.running = False
        self.progress: DownloadProgress | None = None
        self.cancel_event: threading.Event | None = None
        self.live: asyncio.Task[None] | None = None
        self.shown_done, self.shown_at = 0, 0.0

    # ------------------------------------------------------------------ building
    def buttons(self) -> None:
        self.download_all = ui.button("Download subset", icon="download",
                                      on_click=lambda: self.download(None)) \
            .props("unelevated no-caps").mark("download-subset")
        self.download_selected = ui.button(
            "Download selected", icon="playlist_add_check",
            on_click=lambda: self.download(self._selected())) \
            .props("outline no-caps").mark("download-selected")
        self.remove_selected = ui.button(
            "Remove selected", icon="remove_circle_outline",
            on_click=lambda: self.remove(self._selected())) \
            .props("outline no-caps color=negative").mark("remove-selected")
        self.remove_all = ui.button("Remove all", icon="delete_sweep",
                                    on_click=lambda: self.remove(None)) \
            .props("flat no-caps color=negative").mark("remove-subset") \
            .tooltip("Delete every downloaded partition of this subset")

    def bind_selection(self, table: PartitionTable) -> None:
        """The "selected" buttons follow the table's selection."""
        self.partitions = table
        for button, verb in ((self.download_selected, "Download"),
                             (self.remove_selected, "Remove")):
            button.bind_enabled_from(table.table, "selected",
                                     backward=lambda s: bool(s) and not self.running)
            button.bind_text_from(table.table, "selected",
                                  backward=lambda s, v=verb: f"{v} selected ({len(s)})" if s
                                  else f"{v} selected")

    def progress_card(self) -> None:
        with ui.card().classes("pg-card w-full p-4 gap-2").props("flat") as self.card:
            with ui.row().classes("w-full items-center gap-3 no-wrap"):
                self.icon = ui.icon("downloading", size="22px", color="primary")
                self.title = ui.label("").classes("font-medium text-slate-900 min-w-0") \
                    .mark("progress-title")
                ui.space()
                self.cancel_button = ui.button("Cancel", on_click=self.cancel_or_dismiss) \
                    .props("flat no-caps dense").mark("progress-cancel")
            self.bar = ui.linear_progress(value=0.0, show_value=False, size="10px") \
                .props("rounded track-color=grey-3 instant-feedback").mark("progress-bar")
            self.detail = ui.label("").classes("text-sm pg-muted").mark("progress-detail")
        self.card.visible = False
        self.timer = ui.timer(0.2, self.poll, active=False)

    def show_state(self, summary: dict[str, Any]) -> None:
        """Enable what makes sense for the subset as it is now."""
        self.remove_all.set_enabled(summary["downloaded"] > 0 and not self.running)
        self.download_all.set_enabled(not self.running)

    def _selected(self) -> list[str]:
        return self.partitions.selected_names() if self.partitions is not None else []

    def _set_running(self, running: bool) -> None:
        self.running = running
        self.download_all.set_enabled(not running)
        selected = bool(self._selected())
        for button in (self.download_selected, self.remove_selected):
            button.set_enabled(not running and selected)
        stored = self.partitions.partitions if self.partitions is not None else []
        self.remove_all.set_enabled(not running and any(p["downloaded"] for p in stored))

    # ------------------------------------------------------------------ download
    def poll(self) -> None:
        progress = self.progress
        if progress is None or not progress.started:
            return
        event = progress.snapshot()
        self.bar.value = round(event.done / event.total, 4) if event.total else 1.0
        self.detail.set_text(progress_text(event))
        if event.done != self.shown_done and (self.live is None or self.live.done()) \
                and time.monotonic() - self.shown_at >= LIVE_TABLE_INTERVAL:
            # partitions turn "Downloaded" in the table while the download goes on
            self.shown_done, self.shown_at = event.done, time.monotonic()
            self.live = background_tasks.create(self.refresh(full=False),
                                                name="pygestor partitions table")

    @layout.guarded
    async def download(self, partitions: list[str] | None) -> None:
        if self.running:
            return
        what = self.ref if partitions is None else \
            f"{plural(len(partitions), 'selected partition')} of {self.ref}"
        self._start(what)
        outcome, kind = await self._run_download(partitions, what)
        self.timer.deactivate()
        self.poll()
        if self.live is not None:  # an older view must not land after the final one
            await self.live
        self._set_running(False)
        self._finish(outcome, kind)
        await self.refresh()

    def _start(self, what: str) -> None:
        self.progress, self.cancel_event = DownloadProgress(), threading.Event()
        self.shown_done = 0
        self._set_running(True)
        self.icon.props("name=downloading color=primary")
        self.title.set_text(f"Downloading {what}")
        self.bar.value = 0.0
        self.bar.props("color=primary")
        self.detail.set_text("starting…")
        self.cancel_button.set_text("Cancel")
        self.cancel_button.enable()
        self.card.visible = True
        self.timer.activate()

    async def _run_download(self, partitions: list[str] | None, what: str) -> tuple[str, str]:
        try:
            report = await run.io_bound(get_manager().download, self.ref, partitions,
                                        progress=self.progress, cancel=self.cancel_event)
        except CancelledError:
            return f"Download of {what} cancelled; finished partitions are kept", "warning"
        except Exception as exc:  # noqa: BLE001 - shown to the user
            return f"Download of {what} failed: {error_text(exc)}", "negative"
        if report is None:  # the server is shutting down
            return f"Download of {what} interrupted", "warning"
        return f"Downloaded {what}: {report}", "positive"

    def _finish(self, outcome: str, kind: str) -> None:
        event = self.progress.snapshot() if self.progress else ProgressEvent(total=0)
        if kind == "positive":
            self.bar.value = 1.0
            self.bar.props("color=positive")
            self.icon.props("name=check_circle color=positive")
            self.title.set_text(outcome.split(":")[0])
        else:
            self.bar.props(f"color={'warning' if kind == 'warning' else 'negative'}")
            self.icon.props(f"name={'cancel' if kind == 'warning' else 'error'} color={kind}")
            self.title.set_text(outcome.split(":")[0] if kind == "negative" else outcome)
        self.detail.set_text(progress_text(event))
        self.cancel_button.set_text("Dismiss")
        self.cancel_button.enable()
        layout.notify(outcome, kind)

    def cancel_or_dismiss(self) -> None:
        if self.running and self.cancel_event is not None:
            self.cancel_event.set()
            self.cancel_button.set_text("Cancelling…")
            self.cancel_button.disable()
        else:
            self.card.visible = False

    # ------------------------------------------------------------------ remove
    @layout.guarded
    async def remove(self, partitions: list[str] | None) -> None:
        if self.running:
            return
        rows = {p["name"]: p for p in (self.partitions.partitions if self.partitions else [])}
        chosen = [rows[n] for n in (partitions if partitions is not None else rows)
                  if n in rows and rows[n]["downloaded"]]
        if not chosen:
            layout.notify("None of these partitions is downloaded; nothing to remove", "info")
            return
        if not await self._confirm_remove(chosen, whole=partitions is None):
            return
        try:
            removed = await run.io_bound(get_manager().remove, self.ref,
                                         partitions=None if partitions is None
                                         else [p["name"] for p in chosen])
        except Exception as exc:  # noqa: BLE001 - shown to the user
            layout.notify(f"Could not remove: {error_text(exc)}", "negative")
            return
        self.card.visible = False  # what it said is out of date now
        layout.notify(f"Removed {plural(len(removed or []), 'partition')} of {self.ref}",
                      "positive")
        if self.partitions is not None:
            self.partitions.clear_selection()
        await self.refresh()

    async def _confirm_remove(self, chosen: list[dict[str, Any]], whole: bool) -> bool:
        stored = display.size(sum(p["size"] or 0 for p in chosen))
        what = f"the {plural(len(chosen), 'downloaded partition')} of {self.ref}" if whole \
            else f"{plural(len(chosen), 'partition')} of {self.ref}"
        confirmed, _ = await layout.confirm(
            f"Remove {what}?",
            f"This deletes {stored} of data files. The dataset stays registered and the "
            "partitions can be downloaded again.", "Remove", marker="remove")
        return confirmed
