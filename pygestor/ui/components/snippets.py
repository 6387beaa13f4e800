"""Code that loads a subset (pandas, batches, PyTorch, the command line), each with a button
that copies it in the browser. The texts are :func:`pygestor.snippets.snippets`'s."""

from __future__ import annotations

from nicegui import ui

from pygestor.ui import display, layout
from pygestor.ui.app import get_manager

#: kind -> (title, language, icon)
KINDS = {
    "load": ("pandas DataFrame", "python", "table_view"),
    "iter_batches": ("Stream batches", "python", "stream"),
    "torch": ("PyTorch DataLoader", "python", "model_training"),
    "cli": ("Command line", "bash", "terminal"),
}


def snippets_panel(ref: str) -> None:
    from pygestor.snippets import snippets

    code = snippets(ref, get_manager().settings)
    ui.label("Copy, paste, run: each snippet loads this subset from this storage root "
             "(credentials come from your environment).").classes("text-sm pg-muted")
    with ui.element("div").classes("w-full grid grid-cols-1 2xl:grid-cols-2 gap-4"):
        for kind, text in code.items():
            title, language, icon = KINDS.get(kind, (kind, "python", "code"))
            text = display.safe(text)
            with ui.column().classes("pg-snippet gap-1 min-w-0 w-full").mark(f"snippet-{kind}"):
                with ui.row().classes("w-full items-center gap-2 no-wrap"):
                    ui.icon(icon, size="18px").classes("text-primary")
                    ui.label(title).classes("text-sm font-semibold")
                    ui.space()
                    layout.copy_button(text, title, f"copy-{kind}")
                ui.code(text, language=language).classes("w-full text-sm")
