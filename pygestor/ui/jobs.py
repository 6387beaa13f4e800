"""The jobs panel: the long operations running on this data_dir, from any process or machine.

The panel reads the job records in ``data_dir`` (:mod:`pygestor.jobboard`) every second, so it
shows the same jobs in every tab, after a reload, and jobs started by the command line, another
admin or another machine. Each job is one element marked ``data-testid="job"``: its cancel button
first, then what it does, ``done / total`` partitions and where it runs.
"""

from __future__ import annotations

from typing import Any

from nicegui import run, ui

from pygestor.errors import PygestorError
from pygestor.ui import layout
from pygestor.ui.app import get_manager
from pygestor.ui.display import error_text

#: seconds between two readings of the job records
REFRESH = 1.0


def jobs_panel(dataset: str | None = None) -> None:
    """The running jobs (of ``dataset`` only, if given), refreshed live."""
    manager = get_manager()
    with ui.card().classes("pg-card w-full p-4 gap-2").props("flat").mark("jobs-panel"):
        ui.label("Running jobs").classes("text-base font-semibold")
        body = ui.column().classes("w-full gap-2")
    shown: dict[str, Any] = {"key": None}

    async def refresh() -> None:
        try:
            jobs = await run.io_bound(manager.list_jobs)
        except PygestorError:
            return  # shown again at the next tick; the page keeps working
        if dataset is not None:
            jobs = [j for j in jobs if j.get("dataset") == dataset]
        key = [(j["id"], j.get("done"), j.get("total"), j.get("state"),
                j.get("cancel_requested"), j.get("message")) for j in jobs]
        if key == shown["key"]:
            return
        shown["key"] = key
        body.clear()
        with body:
            if not jobs:
                ui.label("Nothing is running.").classes("text-sm pg-muted").mark("no-jobs")
            for job in jobs:
                job_card(job)

    ui.timer(REFRESH, refresh, immediate=True)


def job_card(job: dict[str, Any]) -> None:
    """One job: cancel first, then the reference, progress and where it runs."""
    total, done = int(job.get("total") or 0), int(job.get("done") or 0)
    stopping = bool(job.get("cancel_requested")) or job.get("state") != "running"
    with ui.row().classes("w-full items-center gap-3 no-wrap") \
            .props(f'data-testid="job" data-job="{job["id"]}"'):
        cancel = ui.button("Cancel", icon="close",
                           on_click=lambda _, job_id=job["id"]: _cancel(job_id)) \
            .props("outline dense no-caps color=negative").mark("job-cancel")
        if stopping:
            cancel.disable()
        ui.label(f"{job.get('kind')} {job.get('ref')}").classes("font-medium").mark("job-ref")
        ui.linear_progress(value=done / total if total else 0, show_value=False) \
            .props("rounded size=6px").classes("w-40")
        ui.label(f"{done} / {total}").classes("text-sm").mark("job-progress")
        ui.label(_where(job, stopping)).classes("text-xs pg-muted")


def _where(job: dict[str, Any], stopping: bool) -> str:
    state = "stopping" if stopping and job.get("state") == "running" else job.get("state")
    message = f" · {job['message']}" if job.get("message") else ""
    return f"{state} · {job.get('host')}:{job.get('pid')}{message}"


async def _cancel(job_id: str) -> None:
    try:
        await run.io_bound(get_manager().cancel, job_id)
    except Exception as exc:  # noqa: BLE001 - shown to the user
        layout.notify(f"Could not cancel {job_id}: {error_text(exc)}", "negative")
        return
    layout.notify(f"Asked {job_id} to stop", "info")


def running_jobs(dataset: str) -> list[dict[str, Any]]:
    """The live jobs of a dataset (for a confirmation that says what deleting cancels)."""
    return get_manager().jobs.running(dataset)
