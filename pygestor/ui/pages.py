"""The pages: login, datasets, one dataset, one subset.

Every page is a function NiceGUI runs per browser tab (``ui.page``), so each tab has its own
elements, dialogs and download state. The pages only present what :class:`Manager` returns and
call its operations in worker threads (``run.io_bound``) so a slow storage never blocks the UI.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from nicegui import run, ui
from starlette.responses import RedirectResponse

from pygestor.errors import PygestorError
from pygestor.ui import auth, display, layout
from pygestor.ui.app import get_manager
from pygestor.ui.display import error_text
from pygestor.ui.jobs import jobs_panel

log = logging.getLogger("pygestor.ui")


def register() -> None:
    """Register every page on NiceGUI's app (called once per app start)."""
    ui.page("/")(datasets_page)
    ui.page("/dataset/{name:path}")(dataset_page)
    ui.page("/login")(login_page)


# ====================================================================== login
async def login_page(redirect_to: str = "/") -> RedirectResponse | None:
    password = get_manager().settings.ui_password
    target = auth.safe_redirect(redirect_to)
    if not password or auth.logged_in(password):
        return RedirectResponse(target, status_code=303)
    ui.page_title("Sign in · Pygestor")
    ui.colors(primary=layout.PRIMARY)
    ui.add_css(layout.CSS)

    async def attempt() -> None:
        if auth.password_matches(secret.value or "", password):
            auth.log_in(password)
            ui.navigate.to(target)
            return
        secret.value = ""
        await asyncio.sleep(auth.FAILURE_DELAY)
        problem.set_text("Wrong password. Try again.")
        problem.visible = True

    with ui.column().classes("absolute-center items-center gap-6 w-[380px] max-w-full px-4"):
        with ui.row().classes("items-center gap-2"):
            ui.html(layout.LOGO_SVG, sanitize=False).classes("w-8 h-8")
            ui.label("Pygestor").classes("text-2xl font-semibold tracking-tight")
        with ui.card().classes("pg-card w-full p-6 gap-4").props("flat"):
            ui.label("Sign in").classes("text-lg font-semibold")
            ui.label("This Pygestor server needs its password.").classes("text-sm pg-muted")
            secret = ui.input("Password", password=True, password_toggle_button=True) \
                .props("outlined dense autofocus").classes("w-full").mark("password")
            secret.on("keydown.enter", attempt)
            problem = ui.label("").classes("text-sm text-negative").mark("login-error")
            problem.visible = False
            ui.button("Sign in", on_click=attempt).props("unelevated no-caps") \
                .classes("w-full").mark("sign-in")
    return None


# ====================================================================== datasets
DATASET_COLUMNS = [
    {"name": "name", "label": "Name", "field": "name", "sortable": True, "align": "left"},
    {"name": "pipeline", "label": "Pipeline", "field": "pipeline", "sortable": True,
     "align": "left"},
    {"name": "source", "label": "Source", "field": "source", "sortable": True, "align": "left"},
    {"name": "modality", "label": "Modality", "field": "modality", "sortable": True,
     "align": "left"},
    {"name": "subsets", "label": "Subsets", "field": "subsets", "sortable": True,
     "align": "right"},
    {"name": "downloaded", "label": "Stored / source size", "field": "downloaded_bytes",
     "sortable": True, "align": "left"},
    {"name": "updated", "label": "Last updated", "field": "updated_at", "sortable": True,
     "align": "left"},
]

_NAME_CELL = """
<q-td :props="props">
  <a :href="props.row.href" class="pg-link">{{ props.value }}</a>
</q-td>"""
_SOURCE_CELL = """
<q-td :props="props">
  <div class="pg-mono text-xs" :title="props.value">{{ props.row.source_short }}</div>
</q-td>"""
_MODALITY_CELL = """
<q-td :props="props">
  <q-badge v-if="props.row.damaged" color="negative" label="damaged record"
    :title="props.row.damaged" data-testid="damaged" />
  <q-badge v-else-if="props.value" outline color="primary" :label="props.value" />
  <span v-else class="pg-muted">-</span>
</q-td>"""
_DOWNLOADED_CELL = """
<q-td :props="props">
  <div class="text-sm">{{ props.row.downloaded_label }}
    <span class="pg-muted">/ {{ props.row.total_label }}</span></div>
  <q-linear-progress :value="props.row.fraction" rounded size="4px" color="primary"
    track-color="grey-3" class="q-mt-xs" style="max-width: 160px" />
  <div class="text-xs pg-muted">{{ props.row.parts_label }}</div>
</q-td>"""
_UPDATED_CELL = """
<q-td :props="props"><span class="text-sm">{{ props.row.updated_label }}</span></q-td>"""


def load_overview() -> tuple[list[dict[str, Any]], dict[str, int]]:
    """Dataset rows, and per dataset the source bytes of partitions not downloaded yet."""
    manager = get_manager()
    summaries = manager.list_datasets()
    pending: dict[str, int] = {}
    for summary in summaries:
        if "damaged" in summary:
            pending[summary["name"]] = 0
        elif summary["downloaded"] == 0:
            pending[summary["name"]] = summary["source_bytes"] or 0
        elif summary["downloaded"] >= summary["partitions"]:
            pending[summary["name"]] = 0
        else:
            pending[summary["name"]] = sum(p["source_bytes"] or 0 for p in
                                           manager.list_partitions(summary["name"])
                                           if not p["downloaded"])
    return [display.dataset_row(s) for s in summaries], pending


async def datasets_page(deleted: str | None = None, data: int = 1) -> None:
    content = layout.frame("Datasets")
    rows: list[dict[str, Any]] = []

    def apply_search() -> None:
        query = search.value or ""
        table.rows = [r for r in rows if display.matches(r, query)]
        table.props["no-data-label"] = f"No dataset matches “{query}”" if query \
            else "No datasets"
        layout.fit_bottom(table)
        table.update()

    async def refresh() -> None:
        nonlocal rows
        try:
            rows, pending = await run.io_bound(load_overview) or ([], {})
        except Exception as exc:  # noqa: BLE001 - shown, not raised
            problem.set_text(f"Cannot read the catalog: {error_text(exc)}")
            problem.visible = True
            return
        problem.visible = False
        table.props(remove="loading")
        apply_search()
        parts = sum(r["partitions"] for r in rows)
        done = sum(r["downloaded_parts"] for r in rows)
        stored = sum(r["downloaded_bytes"] for r in rows)
        subtitle.set_text(f"{len(rows)} dataset{'s' if len(rows) != 1 else ''} · "
                          f"{done:,} of {parts:,} partitions downloaded")
        stat_datasets.set_text(f"{len(rows):,}")
        stat_parts.set_text(f"{done:,} / {parts:,}")
        stat_stored.set_text(display.size(stored))
        stat_pending.set_text(display.size(sum(pending.values())))
        chart.options.clear()
        chart.options.update(display.usage_chart(rows, pending))
        chart.style(f"height: {max(140, 56 + 34 * len(rows))}px")
        chart.update()
        if deleted and deleted not in {r["name"] for r in rows}:  # the delete of the last page
            layout.notify(f"Deleted {deleted}" + (" and its data" if data else " (data kept)"),
                          "positive")
        has_data = bool(rows)
        empty.visible = not has_data
        table_card.visible = chart_card.visible = has_data

    @layout.guarded
    async def add() -> None:
        name = await add_dataset_dialog()
        if name:
            layout.notify(f"Added dataset {name}", "positive")
            ui.navigate.to(display.dataset_href(name))

    with content:
        with ui.row().classes("w-full items-end gap-4"):
            with ui.column().classes("gap-0"):
                ui.label("Datasets").classes("text-2xl font-semibold text-slate-900")
                subtitle = ui.label("").classes("text-sm pg-muted").mark("subtitle")
            ui.space()
            search = ui.input(placeholder="Search name, source, pipeline, modality…") \
                .props("outlined dense clearable").classes("w-80 bg-white").mark("search")
            with search.add_slot("prepend"):
                ui.icon("search", size="20px")
            search.on_value_change(apply_search)
            ui.button("Add dataset", icon="add", on_click=add) \
                .props("unelevated no-caps").mark("add-dataset")
        problem = ui.label("").classes("text-negative").mark("page-error")
        problem.visible = False
        with ui.row().classes("w-full gap-4"):
            stat_datasets = layout.stat("Datasets", "-", "dataset", "stat-datasets")
            stat_parts = layout.stat("Partitions downloaded", "-", "download_done", "stat-parts")
            stat_stored = layout.stat("Stored", "-", "storage", "stat-stored")
            stat_pending = layout.stat("Not downloaded (source)", "-", "cloud_queue",
                                       "stat-pending")
        jobs_panel()
        with ui.card().classes("pg-card w-full p-0").props("flat") as empty, layout.empty_state(
                "inventory_2", "No datasets yet",
                "Add one from a local folder, a glob of parquet / CSV / JSON Lines files, an "
                "s3:// or gs:// prefix, or a Hugging Face dataset. Nothing is downloaded "
                "until you ask for it."):
            ui.button("Add your first dataset", icon="add", on_click=add) \
                    .props("outline no-caps").classes("mt-2").mark("add-first-dataset")
        with ui.card().classes("pg-card w-full p-0 gap-0 overflow-hidden").props("flat") \
                as table_card:
            table = ui.table(columns=DATASET_COLUMNS, rows=[], row_key="name",
                             pagination={"rowsPerPage": 25, "sortBy": "name"}) \
                .props("flat loading no-data-label='No datasets'") \
                .classes("pg-table w-full").mark("datasets-table")
            table.add_slot("body-cell-name", _NAME_CELL)
            table.add_slot("body-cell-source", _SOURCE_CELL)
            table.add_slot("body-cell-modality", _MODALITY_CELL)
            table.add_slot("body-cell-downloaded", _DOWNLOADED_CELL)
            table.add_slot("body-cell-updated", _UPDATED_CELL)
        with ui.card().classes("pg-card w-full p-5 gap-2").props("flat") as chart_card:
            with ui.row().classes("w-full items-baseline gap-2"):
                ui.label("Storage usage").classes("text-base font-semibold")
                ui.label("per dataset: bytes stored, and the source size of what is not "
                         "downloaded yet").classes("text-sm pg-muted")
            chart = ui.echart({}).classes("w-full").mark("usage-chart")
        empty.visible = table_card.visible = chart_card.visible = False
    await ui.context.client.connected(timeout=30)  # deliver the page first: storage may be slow
    await refresh()


async def add_dataset_dialog() -> str | None:
    """The add dialog; returns the registered name, or None if cancelled."""
    from pygestor.pipelines import available_pipelines, get_pipeline

    manager = get_manager()
    options: dict[str, str] = {"auto": "auto: choose from the URL"}
    for name in available_pipelines():
        try:
            description = get_pipeline(name).description
        except Exception:  # noqa: BLE001 - a broken plugin is listed without its description
            description = ""
        options[name] = f"{name}: {description}" if description else name

    @layout.guarded
    async def submit() -> None:
        problem.visible = False
        if not (name_input.value or "").strip():
            show_problem("Give the dataset a name, e.g. mnist or owner/name.")
            return
        busy.visible = True
        submit_button.disable()
        cancel_button.disable()
        try:
            dataset = await run.io_bound(
                manager.add_dataset, name_input.value.strip(),
                (url_input.value or "").strip() or None, pipeline=pipeline.value, face="ui",
                description=(description_input.value or "").strip() or None,
                modality=(modality_input.value or "").strip() or None)
        except Exception as exc:  # every failure is shown in the dialog
            if not isinstance(exc, PygestorError):
                log.warning("adding a dataset failed", exc_info=True)
            show_problem(error_text(exc))
            layout.notify(f"Could not add the dataset: {error_text(exc)}", "negative")
            return
        finally:
            busy.visible = False
            submit_button.enable()
            cancel_button.enable()
        if dataset is not None:
            dialog.submit(dataset.name)

    def show_problem(text: str) -> None:
        problem_text.set_text(text)
        problem.visible = True

    with ui.dialog().props("persistent") as dialog, \
            ui.card().classes("pg-card p-6 gap-4 w-[600px] max-w-full"):
        with ui.column().classes("gap-1"):
            ui.label("Add a dataset").classes("text-lg font-semibold text-slate-900")
            ui.label("Pygestor lists its subsets and partitions; nothing is downloaded yet.") \
                .classes("text-sm pg-muted")
        name_input = ui.input("Name", placeholder="mnist or owner/name") \
            .props("outlined dense autofocus").classes("w-full").mark("add-name")
        url_input = ui.input("Source URL", placeholder="/path/to/folder, s3://bucket/prefix/"
                             "*.parquet, https://…, hf://datasets/owner/name") \
            .props("outlined dense").classes("w-full").mark("add-url")
        pipeline = ui.select(options, value="auto", label="Pipeline") \
            .props("outlined dense options-dense").classes("w-full").mark("add-pipeline")
        with ui.row().classes("w-full gap-3 no-wrap"):
            description_input = ui.input("Description (optional)") \
                .props("outlined dense").classes("flex-grow").mark("add-description")
            modality_input = ui.input("Modality (optional)",
                                      autocomplete=["text", "image", "audio", "video", "tabular",
                                                    "multimodal"]) \
                .props("outlined dense").classes("w-44").mark("add-modality")
        with ui.row().classes("w-full items-start gap-2 no-wrap rounded-lg p-3 bg-red-50 "
                              "text-negative") as problem:
            ui.icon("error_outline", size="20px")
            problem_text = ui.label("").classes("text-sm whitespace-pre-wrap break-all") \
                .mark("add-error")
        problem.visible = False
        with ui.row().classes("w-full items-center gap-2"):
            with ui.row().classes("items-center gap-2 text-sm pg-muted").mark("add-busy") as busy:
                ui.spinner(size="20px").mark("add-spinner")
                ui.label("Discovering subsets and partitions…")
            busy.visible = False
            ui.space()
            cancel_button = ui.button("Cancel", on_click=lambda: dialog.submit(None)) \
                .props("flat no-caps").mark("add-cancel")
            submit_button = ui.button("Add dataset", on_click=submit) \
                .props("unelevated no-caps").mark("add-submit")
        url_input.on("keydown.enter", submit)
    result = await dialog
    dialog.delete()
    return result


# ====================================================================== one dataset
async def dataset_page(name: str, subset: str | None = None) -> RedirectResponse | None:
    manager = get_manager()
    try:
        target = await run.io_bound(manager.resolve, name)
        if target is None:
            return None
        if target.subset and subset is None:  # /dataset/toy/train -> the subset's page
            return RedirectResponse(display.dataset_href(target.dataset, target.subset), 303)
        info = await run.io_bound(manager.info, target.dataset)
        if subset is not None and subset not in {s["name"] for s in info["subsets"]}:
            record = await run.io_bound(manager.dataset, target.dataset)
            record.subset(subset)  # raises "no subset ...; did you mean ..."
    except Exception as exc:  # noqa: BLE001 - shown as a not-found page
        not_found(name, exc)
        return None
    from pygestor.ui import views

    if subset is None:
        await views.dataset_view(info)
    else:
        await views.subset_view(info, subset)
    return None


def not_found(name: str, exc: BaseException) -> None:
    content = layout.frame("Not found", [("Datasets", "/"), (name, None)])
    with content, ui.card().classes("pg-card w-full p-0").props("flat"):
        column = layout.empty_state("search_off", "Nothing to show here", error_text(exc))
        with column:
            ui.link("Back to all datasets", "/").classes("pg-link text-sm mt-2")
