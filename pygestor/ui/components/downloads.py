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


class ProgressCard:
    """The card that follows one download: title, bar, details, and Cancel (then Dismiss)."""

    def __init__(self, on_cancel: Callable[[], None]) -> None:
        with ui.card().classes("pg-card w-full p-4 gap-2").props("flat") as self.card:
            with ui.row().classes("w-full items-center gap-3 no-wrap"):
                self.icon = ui.icon("downloading", size="22px", color="primary")
                self.title = ui.label("").classes("font-medium text-slate-900 min-w-0") \
                    .mark("progress-title")
                ui.space()
                self.button = ui.button("Cancel", on_click=self._clicked) \
                    .props("flat no-caps dense").mark("progress-cancel")
            self.bar = ui.linear_progress(value=0.0, show_value=False, size="10px") \
                .props("rounded track-color=grey-3 instant-feedback").mark("progress-bar")
            self.detail = ui.label("").classes("text-sm pg-muted").mark("progress-detail")
        self.card.visible = False
        self.on_cancel = on_cancel
        self.cancellable = False

    def start(self, what: str) -> None:
        self.icon.props("name=downloading color=primary")
        self.title.set_text(f"Downloading {what}")
        self.bar.value = 0.0
        self.bar.props("color=primary")
        self.detail.set_text("starting…")
        self.button.set_text("Cancel")
        self.button.enable()
        self.cancellable = True
        self.card.visible = True

    def show(self, event: ProgressEvent) -> None:
        self.bar.value = round(event.done / event.total, 4) if event.total else 1.0
        self.detail.set_text(progress_text(event))

    def finish(self, outcome: str, kind: str, event: ProgressEvent) -> None:
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
        self.button.set_text("Dismiss")
        self.button.enable()
        self.cancellable = False

    def _clicked(self) -> None:
        if self.cancellable:
            self.on_cancel()
            self.button.set_text("Cancelling…")
            self.button.disable()
        else:
            self.card.visible = False


class DownloadButtons:
    """Download the subset or the selected partitions; remove them (built where called)."""

    def __init__(self, controls: DownloadControls) -> None:
        self.download_all = ui.button("Download subset", icon="download",
                                      on_click=lambda: controls.download(None)) \
            .props("unelevated no-caps").mark("download-subset")
        self.download_selected = ui.button(
            "Download selected", icon="playlist_add_check",
            on_click=lambda: controls.download(controls.selected())) \
            .props("outline no-caps").mark("download-selected")
        self.retry_failed = ui.button(
            "Retry failed", icon="replay",
            on_click=lambda: controls.download(controls.failed())) \
            .props("outline no-caps color=warning").mark("retry-failed")
        self.retry_failed.visible = False
        self.remove_selected = ui.button(
            "Remove selected", icon="remove_circle_outline",
            on_click=lambda: controls.remove(controls.selected())) \
            .props("outline no-caps color=negative").mark("remove-selected")
        self.remove_all = ui.button("Remove all", icon="delete_sweep",
                                    on_click=lambda: controls.remove(None)) \
            .props("flat no-caps color=negative").mark("remove-subset") \
            .tooltip("Delete every downloaded partition of this subset")
        self.controls = controls

    def follow(self, table: PartitionTable) -> None:
        """The "selected" buttons follow the table's selection."""
        for button, verb in ((self.download_selected, "Download"),
                             (self.remove_selected, "Remove")):
            button.bind_enabled_from(table.table, "selected",
                                     backward=lambda s: bool(s) and not self.controls.running)
            button.bind_text_from(table.table, "selected",
                                  backward=lambda s, v=verb: f"{v} selected ({len(s)})" if s
                                  else f"{v} selected")

    def enable(self, running: bool, selected: bool, stored: bool, failed: int = 0) -> None:
        self.download_all.set_enabled(not running)
        self.retry_failed.visible = failed > 0
        self.retry_failed.set_enabled(not running)
        self.retry_failed.set_text(f"Retry failed ({failed})")
        for button in (self.download_selected, self.remove_selected):
            button.set_enabled(not running and selected)
        self.remove_all.set_enabled(not running and stored)


class DownloadControls:
    """The buttons (:meth:`buttons`, built where called), the progress card
    (:meth:`progress_card`), and the downloads and removals they start."""

    def __init__(self, ref: str, refresh: Refresh) -> None:
        self.ref, self.refresh = ref, refresh
        self.partitions: PartitionTable | None = None
        self.running = False
        self.progress: DownloadProgress | None = None
        self.cancel_event: threading.Event | None = None
        self.live: asyncio.Task[None] | None = None
        self.shown_done, self.shown_at = 0, 0.0

    def buttons(self) -> None:
        self.buttons_row = DownloadButtons(self)

    def bind_selection(self, table: PartitionTable) -> None:
        self.partitions = table
        self.buttons_row.follow(table)

    def progress_card(self) -> None:
        self.card = ProgressCard(lambda: self.cancel_event and self.cancel_event.set())
        self.timer = ui.timer(0.2, self.poll, active=False)

    def show_state(self, summary: dict[str, Any]) -> None:
        """Enable what makes sense for the subset as it is now."""
        self.buttons_row.enable(self.running, bool(self.selected()), summary["downloaded"] > 0,
                                len(self.failed()))

    def selected(self) -> list[str]:
        return self.partitions.selected_names() if self.partitions is not None else []

    def failed(self) -> list[str]:
        return self.partitions.failed_names() if self.partitions is not None else []

    def _set_running(self, running: bool) -> None:
        self.running = running
        stored = self.partitions.partitions if self.partitions is not None else []
        self.buttons_row.enable(running, bool(self.selected()),
                                any(p["downloaded"] for p in stored), len(self.failed()))

    # ------------------------------------------------------------------ download
    def poll(self) -> None:
        if self.progress is None or not self.progress.started:
            return
        event = self.progress.snapshot()
        self.card.show(event)
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
        self.progress, self.cancel_event = DownloadProgress(), threading.Event()
        self.shown_done = 0
        self._set_running(True)
        self.card.start(what)
        self.timer.activate()
        outcome, kind = await run_download(self.ref, partitions, what, self.progress,
                                           self.cancel_event)
        self.timer.deactivate()
        self.poll()
        if self.live is not None:  # an older view must not land after the final one
            await self.live
        self._set_running(False)
        self.card.finish(outcome, kind, self.progress.snapshot())
        layout.notify(outcome, kind)
        await self.refresh()

    # ------------------------------------------------------------------ remove
    @layout.guarded
    async def remove(self, partitions: list[str] | None) -> None:
        if self.running:
            return
        stored = self.partitions.partitions if self.partitions is not None else []
        if await remove_partitions(self.ref, stored, partitions):
            self.card.card.visible = False  # what it said is out of date now
            if self.partitions is not None:
                self.partitions.clear_selection()
            await self.refresh()


async def run_download(ref: str, partitions: list[str] | None, what: str,
                       progress: DownloadProgress, cancel: threading.Event) -> tuple[str, str]:
    """Download in a worker thread; the outcome as a message and a notification kind."""
    try:
        report = await run.io_bound(get_manager().download, ref, partitions, progress=progress,
                                    cancel=cancel)
    except CancelledError:
        return f"Download of {what} cancelled; finished partitions are kept", "warning"
    except Exception as exc:  # noqa: BLE001 - shown to the user
        return f"Download of {what} failed: {error_text(exc)}", "negative"
    if report is None:  # the server is shutting down
        return f"Download of {what} interrupted", "warning"
    return f"Downloaded {what}: {report}", "positive"


async def remove_partitions(ref: str, stored: list[dict[str, Any]],
                            partitions: list[str] | None) -> bool:
    """Ask, then delete the downloaded files of ``partitions`` (None: all) of ``ref``;
    whether anything was removed."""
    rows = {p["name"]: p for p in stored}
    chosen = [rows[n] for n in (partitions if partitions is not None else rows)
              if n in rows and rows[n]["downloaded"]]
    if not chosen:
        layout.notify("None of these partitions is downloaded; nothing to remove", "info")
        return False
    what = f"the {plural(len(chosen), 'downloaded partition')} of {ref}" \
        if partitions is None else f"{plural(len(chosen), 'partition')} of {ref}"
    confirmed, _ = await layout.confirm(
        f"Remove {what}?",
        f"This deletes {display.size(sum(p['size'] or 0 for p in chosen))} of data files. The "
        "dataset stays registered and the partitions can be downloaded again.", "Remove",
        marker="remove")
    if not confirmed:
        return False
    try:
        removed = await run.io_bound(get_manager().remove, ref, partitions=None
                                     if partitions is None else [p["name"] for p in chosen])
    except Exception as exc:  # noqa: BLE001 - shown to the user
        layout.notify(f"Could not remove: {error_text(exc)}", "negative")
        return False
    layout.notify(f"Removed {plural(len(removed or []), 'partition')} of {ref}", "positive")
    return True
