"""Verify and check-updates from the web UI: each runs as a job (it shows in the jobs panel of
every tab) and its findings are shown when it ends."""

from __future__ import annotations

import json
from typing import Any

from nicegui import run, ui

from pygestor.ui import layout
from pygestor.ui.app import get_manager
from pygestor.ui.display import error_text, safe

#: findings listed in the dialog, at most
SHOWN = 50


def admin_buttons(name: str) -> None:
    """The "Verify" and "Check for updates" buttons of a dataset's page."""
    ui.button("Verify", icon="fact_check", on_click=lambda: verify(name)) \
        .props("outline no-caps").mark("verify-dataset")
    ui.button("Check for updates", icon="update", on_click=lambda: check_updates(name)) \
        .props("outline no-caps").mark("check-updates")


@layout.guarded
async def verify(name: str, repair: bool = False) -> None:
    layout.notify(f"{'Repairing' if repair else 'Verifying'} {name}…", "info")
    try:
        report = await run.io_bound(get_manager().verify, name, repair=repair)
    except Exception as exc:  # noqa: BLE001 - shown to the user
        layout.notify(f"Could not verify {name}: {error_text(exc)}", "negative")
        return
    lines = [*(f"problem: {p}" for p in report.problems),
             *(f"repaired: {r}" for r in report.repaired)]
    title = (f"{name}: {len(report.ok)} partition(s) ok, {len(report.problems)} problem(s)"
             + (", repaired" if repair and report.repaired else ""))
    offer = bool(report.problems) and not repair
    if await findings(title, lines, "verify", offer_repair=offer):
        await verify(name, repair=True)


@layout.guarded
async def check_updates(name: str) -> None:
    try:
        result = await run.io_bound(get_manager().check_updates, name)
    except Exception as exc:  # noqa: BLE001 - shown to the user
        layout.notify(f"Could not check {name} for updates: {error_text(exc)}", "negative")
        return
    if not result.get("supported"):
        lines = ["this dataset's pipeline cannot tell what changed upstream; "
                 "'pygestor download --force' fetches everything again"]
        title = f"{name}: no update check for this pipeline"
    else:
        title = f"{name}: " + ("up to date" if result.get("up_to_date") else "changed upstream")
        lines = [f"{key}: {safe(json.dumps(result[key]))}" for key in
                 ("revision", "latest", "changed", "added", "removed", "affected_subsets")
                 if key in result]
    await findings(title, lines, "updates")


async def findings(title: str, lines: list[str], marker: str, *,
                   offer_repair: bool = False) -> bool:
    """A dialog with a title and findings; True if the user asked to repair."""
    with ui.dialog() as dialog, ui.card().classes("pg-card p-6 gap-3 w-[640px] max-w-full"):
        ui.label(title).classes("text-lg font-semibold").mark(f"{marker}-title")
        with ui.column().classes("gap-1 w-full").mark(f"{marker}-findings"):
            for line in lines[:SHOWN]:
                ui.label(line).classes("text-sm pg-mono break-all")
            if len(lines) > SHOWN:
                ui.label(f"… and {len(lines) - SHOWN} more").classes("text-sm pg-muted")
            if not lines:
                ui.label("Nothing to report.").classes("text-sm pg-muted")
        with ui.row().classes("w-full justify-end gap-2"):
            if offer_repair:
                ui.button("Repair", on_click=lambda: dialog.submit(True)) \
                    .props("unelevated no-caps").mark(f"{marker}-repair")
            ui.button("Close", on_click=lambda: dialog.submit(False)).props("flat no-caps") \
                .mark(f"{marker}-close")
    result: Any = await dialog
    dialog.delete()
    return bool(result)
