"""The add dialog: a preview of what would be registered (a dry run of the same checks and
discovery, nothing written), then the add. Everything goes through the web UI's source policy
(``face="ui"``: local paths only below ``source_roots``)."""

from __future__ import annotations

import json
import logging
from typing import Any

from nicegui import run, ui

from pygestor.errors import ConfigError, PygestorError
from pygestor.ui import layout
from pygestor.ui.app import get_manager
from pygestor.ui.components.add_form import OptionsForm, SourceForm
from pygestor.ui.components.plan_view import PlanView
from pygestor.ui.display import dataset_href, error_text

log = logging.getLogger("pygestor.ui")


class Actions:
    """Busy indicator, Cancel, Preview and Add; :meth:`busy` while an operation runs."""

    def __init__(self, dialog: AddDialog) -> None:
        with ui.row().classes("w-full items-center gap-2"):
            with ui.row().classes("items-center gap-2 text-sm pg-muted").mark("add-busy") \
                    as self.indicator:
                ui.spinner(size="20px").mark("add-spinner")
                self.text = ui.label("")
            self.indicator.visible = False
            ui.space()
            self.cancel = ui.button("Cancel", on_click=lambda: dialog.dialog.submit(None)) \
                .props("flat no-caps").mark("add-cancel")
            self.preview = ui.button("Preview", icon="visibility", on_click=dialog.preview) \
                .props("outline no-caps").mark("add-preview")
            self.submit = ui.button("Add dataset", on_click=dialog.submit) \
                .props("unelevated no-caps").mark("add-submit")
        self.dialog = dialog

    async def run(self, what: str, function: Any, *args: Any, **kwargs: Any) -> Any:
        """Run an operation in a worker thread with the dialog busy; None when it failed (the
        error is shown in the dialog)."""
        self.dialog.problem.visible = False
        if not args[0]:
            return self.dialog.show_problem("Give the dataset a name, e.g. mnist or owner/name.")
        self.busy(what)
        try:
            return await run.io_bound(function, *args, **kwargs)
        except Exception as exc:  # every failure is shown in the dialog
            if not isinstance(exc, PygestorError):
                log.warning("adding a dataset failed", exc_info=True)
            self.dialog.show_problem(error_text(exc))
            layout.notify(f"Could not add the dataset: {error_text(exc)}", "negative")
            return None
        finally:
            self.busy(None)
            self.dialog.changed()

    def busy(self, what: str | None) -> None:
        """Show ``what`` is running (buttons off), or nothing (None: buttons back on)."""
        self.indicator.visible = what is not None
        self.text.set_text(what or "")
        for button in (self.preview, self.cancel):
            button.set_enabled(what is None)
        if what is not None:
            self.submit.disable()


class AddDialog:
    """The dialog; :meth:`run` returns the registered name, or None if cancelled. "Add" is
    offered once a preview of exactly the current inputs succeeded."""

    def __init__(self) -> None:
        self.planned: tuple[Any, ...] | None = None
        with ui.dialog().props("persistent") as self.dialog, \
                ui.card().classes("pg-card p-6 gap-4 w-[860px] max-w-full"):
            with ui.column().classes("gap-1"):
                ui.label("Add a dataset").classes("text-lg font-semibold text-slate-900")
                ui.label("Preview what would be registered, then add it; nothing is downloaded "
                         "yet.").classes("text-sm pg-muted")
            self.source = SourceForm(self.changed)
            self.options = OptionsForm(self.changed)
            with ui.row().classes("w-full items-start gap-2 no-wrap rounded-lg p-3 bg-red-50 "
                                  "text-negative") as self.problem:
                ui.icon("error_outline", size="20px")
                self.problem_text = ui.label("").classes("text-sm whitespace-pre-wrap "
                                                         "break-all").mark("add-error")
            self.problem.visible = False
            self.plan = PlanView()
            self.actions = Actions(self)
        self.source.url.on("keydown.enter", self.preview)
        self.changed()

    def changed(self) -> None:
        self.options.show_for(self.source.chosen_pipeline())
        self.actions.submit.set_enabled(self.planned is not None and
                                        self.planned == self._signature())

    def _arguments(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """``add_dataset``'s arguments from the inputs (ConfigError when an option is bad)."""
        name, url = (self.source.name.value or "").strip(), (self.source.url.value or "").strip()
        return (name, url or None), {"pipeline": self.source.pipeline.value, "face": "ui",
                                     **self.options.options(), **self.source.common()}

    def _signature(self) -> tuple[Any, ...]:
        try:
            return json.dumps(self._arguments(), sort_keys=True, default=str),
        except ConfigError as exc:
            return str(exc),

    @layout.guarded
    async def preview(self) -> None:
        signature = self._signature()
        try:
            args, kwargs = self._arguments()
        except ConfigError as exc:
            self.show_problem(error_text(exc))
            return
        self.plan.hide()
        self.planned = None
        dataset = await self.actions.run("Discovering subsets and partitions…",
                                         get_manager().plan_dataset, *args, **kwargs)
        if dataset is not None:
            self.planned = signature
            self.changed()
            await self.plan.show(dataset)

    @layout.guarded
    async def submit(self) -> None:
        if self.planned != self._signature():
            await self.preview()
            return
        args, kwargs = self._arguments()
        dataset = await self.actions.run("Adding the dataset…", get_manager().add_dataset,
                                         *args, **kwargs)
        if dataset is not None:
            self.dialog.submit(dataset.name)

    def show_problem(self, text: str) -> None:
        self.problem_text.set_text(text)
        self.problem.visible = True

    async def run(self) -> str | None:
        result = await self.dialog
        self.dialog.delete()
        return result


@layout.guarded
async def add_dataset() -> None:
    """Open the dialog; after an add, go to the new dataset's page."""
    name = await AddDialog().run()
    if name:
        layout.notify(f"Added dataset {name}", "positive")
        ui.navigate.to(dataset_href(name))
