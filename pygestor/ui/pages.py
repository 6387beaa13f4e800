"""The pages (routes): login, datasets, one dataset, one subset.

Every page is a function NiceGUI runs per browser tab (``ui.page``), so each tab has its own
elements, dialogs and state. Pages only compose the components of
:mod:`pygestor.ui.components`, which present what the Manager returns and call its operations
in worker threads (``run.io_bound``) so slow storage never blocks the UI.
"""

from __future__ import annotations

from nicegui import run, ui
from starlette.responses import RedirectResponse

from pygestor.ui import auth, display, layout
from pygestor.ui.app import get_manager
from pygestor.ui.display import error_text


def register() -> None:
    """Register every page on NiceGUI's app (called once per app start)."""
    ui.page("/")(datasets_page)
    ui.page("/dataset/{name:path}")(dataset_page)
    ui.page("/login")(login_page)


async def login_page(redirect_to: str = "/") -> RedirectResponse | None:
    from pygestor.ui.components.login import login_page_content

    password = get_manager().settings.ui_password
    target = auth.safe_redirect(redirect_to)
    if not password or auth.logged_in(password):
        return RedirectResponse(target, status_code=303)
    login_page_content(password, target)
    return None


async def datasets_page() -> None:
    from pygestor.ui.components.overview import datasets_page as page

    await page()


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
    if subset is None:
        from pygestor.ui.components.dataset_view import dataset_page as page

        await page(info)
    else:
        from pygestor.ui.components.subset_view import subset_page

        await subset_page(info, subset)
    return None


def not_found(name: str, exc: BaseException) -> None:
    content = layout.frame("Not found", [("Datasets", "/"), (name, None)])
    with content, ui.card().classes("pg-card w-full p-0").props("flat"):
        column = layout.empty_state("search_off", "Nothing to show here", error_text(exc))
        with column:
            ui.link("Back to all datasets", "/").classes("pg-link text-sm mt-2")
