"""The page frame (header, breadcrumbs), shared styles and small reusable widgets."""

from __future__ import annotations

import functools
import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from nicegui import ui

from pygestor.ui import auth, display
from pygestor.ui.app import FAVICON, get_manager

PRIMARY = "#4f46e5"
R = TypeVar("R")

CSS = """
body { background: #f6f7fb; }
.pg-card { border: 1px solid #e5e7eb; border-radius: 12px;
           box-shadow: 0 1px 2px rgba(16,24,40,.04); }
.pg-table { border-radius: 0; }
.pg-table thead tr th { font-weight: 600; color: #475467; background: #f9fafb; }
.pg-table tbody td { color: #1d2939; }
.pg-muted { color: #667085; }
.pg-mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; }
.pg-kv { display: grid; grid-template-columns: 120px 1fr; row-gap: 10px; column-gap: 12px; }
.pg-kv .k { color: #667085; font-size: 13px; }
.pg-kv .v { font-size: 14px; color: #1d2939; word-break: break-all; }
.pg-kv .v.pg-mono { font-size: 12.5px; }
.pg-stat .value { font-size: 22px; font-weight: 600; color: #101828; line-height: 1.2; }
.pg-stat .label { font-size: 12px; color: #667085; text-transform: uppercase;
                  letter-spacing: .04em; }
.pg-sample td { max-width: 420px; white-space: normal !important; vertical-align: top; }
.pg-fold { color: #4f46e5; font-size: 12px; cursor: pointer; white-space: nowrap; }
.pg-fold:hover { text-decoration: underline; }
.pg-thumb { height: 56px; width: auto; max-width: 160px; object-fit: contain;
            border-radius: 4px; display: block; background: #f2f4f7; }
.pg-null { color: #98a2b3; font-style: italic; }
.pg-rownum { width: 1%; white-space: nowrap; }
.pg-snippet .nicegui-code-copy { display: none; }
.pg-snippet .nicegui-code { border-radius: 8px; }
.pg-link { color: #4f46e5; text-decoration: none; font-weight: 500; }
.pg-link:hover { text-decoration: underline; }
.q-tab { text-transform: none; }
/* small screens: content never wider than the window; wide tables and code scroll inside */
.pg-page > * { max-width: 100%; min-width: 0; }
.pg-card { max-width: 100%; }
.q-tab-panels, .q-tab-panel { max-width: 100%; min-width: 0; }
.q-tab-panel { overflow-x: auto; }
.pg-snippet, .pg-snippet .nicegui-code { max-width: 100%; min-width: 0; }
.pg-snippet pre { overflow-x: auto; }
.pg-bars { display: flex; align-items: flex-end; gap: 1px; height: 36px; min-width: 120px; }
.pg-bars > div { flex: 1; background: #818cf8; border-radius: 2px 2px 0 0; min-height: 1px; }
.pg-bars > div:hover { background: #4f46e5; }
.pg-top { display: grid; grid-template-columns: minmax(60px, 160px) 1fr auto; gap: 2px 8px;
          font-size: 12px; align-items: center; min-width: 220px; }
.pg-top .bar { height: 8px; background: #818cf8; border-radius: 2px; }
"""

#: copies text in the browser: the Clipboard API where the page is a secure context, else the
#: selection fallback (plain http on a LAN address has no navigator.clipboard)
COPY_JS = """
window.pgCopy = function (text) {
  const fallback = () => {
    const area = document.createElement('textarea');
    area.value = text; area.setAttribute('readonly', '');
    area.style.position = 'fixed'; area.style.opacity = '0';
    document.body.appendChild(area); area.select();
    try { document.execCommand('copy'); } finally { document.body.removeChild(area); }
  };
  if (navigator.clipboard && window.isSecureContext) {
    return navigator.clipboard.writeText(text).catch(fallback);
  }
  fallback();
};
"""


def frame(title: str, crumbs: Sequence[tuple[str, str | None]] = ()) -> ui.column:
    """Header, breadcrumbs and the page's content column."""
    ui.page_title(f"{title} · Pygestor" if title != "Pygestor" else title)
    ui.colors(primary=PRIMARY, secondary="#0ea5e9", accent="#7c3aed", positive="#16a34a",
              negative="#dc2626", warning="#d97706")
    ui.add_css(CSS)
    ui.add_body_html(f"<script>{COPY_JS}</script>")
    settings = get_manager().settings
    with ui.header(elevated=False).classes(
            "bg-white text-slate-800 border-b border-slate-200 px-3 sm:px-6 py-0 h-14 "
            "items-center gap-3 no-wrap overflow-hidden").mark("page-header"):
        with ui.link(target="/").classes("flex items-center gap-2 no-underline text-inherit"):
            ui.html(LOGO_SVG, sanitize=False).classes("w-7 h-7")
            ui.label("Pygestor").classes("text-lg font-semibold tracking-tight text-slate-900")
        ui.separator().props("vertical").classes("my-4 mx-1")
        ui.link("Datasets", "/").classes("pg-link text-sm")
        ui.space()
        with ui.row().classes("items-center gap-1 text-slate-500 text-sm no-wrap min-w-0 "
                              "max-sm:hidden"):
            ui.icon("storage", size="18px")
            ui.label(display.safe(settings.redacted()["data_dir"])).classes(
                "pg-mono text-xs ellipsis max-w-[360px]").tooltip("Storage root (data_dir)")
        if settings.ui_password:
            ui.button(icon="logout", on_click=_sign_out).props("flat round dense") \
                .classes("text-slate-500").tooltip("Sign out").mark("sign-out")
    content = ui.column().classes("pg-page w-full max-w-7xl mx-auto px-3 sm:px-6 py-6 gap-5") \
        .mark("page-content")
    if crumbs:
        with content, ui.row().classes("items-center gap-1 text-sm text-slate-500"):
            for index, (label, href) in enumerate(crumbs):
                if index:
                    ui.icon("chevron_right", size="16px").classes("text-slate-400")
                if href:
                    ui.link(label, href).classes("pg-link")
                else:
                    ui.label(label).classes("text-slate-700 font-medium")
    return content


def guarded(action: Callable[..., Awaitable[R]]) -> Callable[..., Awaitable[R | None]]:
    """Run ``action`` only for a logged-in session (when a password is set): a tab left open
    after signing out elsewhere cannot act any more."""
    @functools.wraps(action)
    async def run_if_allowed(*args: Any, **kwargs: Any) -> R | None:
        password = get_manager().settings.ui_password
        if password and not auth.logged_in(password):
            notify("Your session has ended; sign in again", "warning")
            ui.navigate.to("/login")
            return None
        return await action(*args, **kwargs)
    return run_if_allowed


def _sign_out() -> None:
    auth.log_out()
    ui.navigate.to("/login")


#: the favicon, sized for the header
LOGO_SVG = FAVICON.replace("<svg ", '<svg width="28" height="28" ', 1)


#: the per-browser storage key of a message for the next page (set by an action, shown once)
FLASH_KEY = "pygestor_flash"


def flash(message: str, kind: str = "positive") -> None:
    """Show ``message`` on the next page this browser opens (never taken from the URL)."""
    from nicegui import app

    app.storage.user[FLASH_KEY] = {"message": message, "kind": kind}


def show_flash() -> None:
    """Show (once) the message an action left for this page."""
    from nicegui import app

    try:
        found = app.storage.user.pop(FLASH_KEY, None)
    except (RuntimeError, AssertionError):
        return
    if isinstance(found, dict) and isinstance(found.get("message"), str):
        notify(found["message"], str(found.get("kind") or "info"))


def notify(message: str, kind: str = "info") -> None:
    """A toast in the bottom-right corner, out of the tables' way."""
    ui.notify(message, type=kind, position="bottom-right", multi_line=len(message) > 80)


def stat(label: str, value: str, icon: str, marker: str = "") -> ui.label:
    """A small statistic card; returns the value label so it can be updated."""
    with ui.card().classes("pg-card pg-stat p-4 gap-1 min-w-[150px] flex-1").props("flat"):
        with ui.row().classes("items-center gap-2"):
            ui.icon(icon, size="18px").classes("text-primary")
            ui.label(label).classes("label")
        shown = ui.label(value).classes("value")
        if marker:
            shown.mark(marker)
    return shown


def copy_button(text: str, what: str, marker: str) -> ui.button:
    """A button that copies ``text`` in the browser (not on the server)."""
    button = ui.button("Copy", icon="content_copy").props("flat dense no-caps size=sm") \
        .classes("text-slate-600").mark(marker)
    button.on("click", lambda: notify(f"Copied the {what} snippet", "positive"),
              js_handler=f"() => {{ window.pgCopy({json.dumps(text)}); emit(); }}")
    return button


async def confirm(title: str, message: str, ok_label: str, *, danger: bool = True,
                  option: str | None = None, option_value: bool = True,
                  marker: str = "confirm") -> tuple[bool, bool]:
    """A modal confirmation; returns (confirmed, option checked)."""
    with ui.dialog() as dialog, ui.card().classes("pg-card p-6 gap-4 w-[480px] max-w-full"):
        with ui.row().classes("items-start gap-3 no-wrap"):
            ui.icon("warning" if danger else "help", size="28px").classes(
                "text-negative" if danger else "text-primary")
            with ui.column().classes("gap-1"):
                ui.label(title).classes("text-lg font-semibold text-slate-900")
                ui.label(message).classes("text-sm text-slate-600")
        checkbox = ui.checkbox(option, value=option_value).mark(f"{marker}-option") \
            if option else None
        with ui.row().classes("w-full justify-end gap-2"):
            ui.button("Cancel", on_click=lambda: dialog.submit(False)).props("flat no-caps") \
                .mark(f"{marker}-cancel")
            ui.button(ok_label, on_click=lambda: dialog.submit(True)) \
                .props(f"unelevated no-caps color={'negative' if danger else 'primary'}") \
                .mark(f"{marker}-ok")
    result = await dialog
    option_checked = bool(checkbox.value) if checkbox is not None else False
    dialog.delete()
    return bool(result), option_checked


def fit_bottom(table: ui.table, per_page: int = 25) -> None:
    """Hide a table's bottom bar when one page shows every row (keep it for "no data")."""
    if 0 < len(table.rows) <= per_page:
        table.props("hide-bottom")
    else:
        table.props(remove="hide-bottom")


def empty_state(icon: str, title: str, text: str) -> ui.column:
    column = ui.column().classes("w-full items-center text-center gap-2 py-10")
    with column:
        ui.icon(icon, size="40px").classes("text-slate-300")
        ui.label(title).classes("text-base font-medium text-slate-700")
        ui.label(text).classes("text-sm text-slate-500 max-w-md")
    return column
