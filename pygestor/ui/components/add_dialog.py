"""The add dialog: name, source URL, pipeline and its options; a preview of what would be
registered (a dry run of the same checks and discovery, nothing written); then the add.

Everything goes through the web UI's source policy (``face="ui"``: local paths only below
``source_roots``)."""

from __future__ import annotations

import json
import logging
from typing import Any

from nicegui import run, ui

from pygestor.errors import ConfigError, PygestorError
from pygestor.ui import layout
from pygestor.ui.app import get_manager
from pygestor.ui.components.plan_view import PlanView
from pygestor.ui.display import dataset_href, error_text

log = logging.getLogger("pygestor.ui")
#: option -> (label, hint); shown when the chosen pipeline understands it
OPTION_FIELDS = {
    "column_types": ("Column types", "label: int64, when: timestamp[s] (or JSON)"),
    "delimiter": ("CSV delimiter", ", or \\t for tab"),
    "encoding": ("Encoding", "utf-8, latin-1, cp1252…"),
    "revision": ("Revision", "branch, tag or commit (default main)"),
    "configs": ("Configs", "comma-separated (default: all)"),
    "splits": ("Splits", "comma-separated (default: all)"),
}
UNION = "schema"


def pipeline_choices() -> dict[str, str]:
    from pygestor.pipelines import available_pipelines, get_pipeline

    choices = {"auto": "auto: choose from the URL"}
    for name in available_pipelines():
        try:
            description = get_pipeline(name).description
        except Exception:  # noqa: BLE001 - a broken plugin is listed without its description
            description = ""
        choices[name] = f"{name}: {description}" if description else name
    return choices


def parse_column_types(text: str) -> dict[str, str]:
    """``a: int64, b: string`` or a JSON object -> ``{"a": "int64", "b": "string"}``."""
    text = text.strip()
    if text.startswith("{"):
        try:
            found = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"column types: not valid JSON ({exc.msg})") from None
        if not isinstance(found, dict):
            raise ConfigError("column types: give an object {\"column\": \"type\"}")
        return {str(k): str(v) for k, v in found.items()}
    pairs = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        column, sep, kind = item.rpartition(":")
        if not sep or not column.strip() or not kind.strip():
            raise ConfigError(f"column types: {item!r} is not column: type (e.g. label: int64)")
        pairs[column.strip()] = kind.strip()
    return pairs


class AddDialog:
    """The dialog; :meth:`run` returns the registered name, or None if cancelled."""

    def __init__(self) -> None:
        self.planned: tuple[Any, ...] | None = None
        with ui.dialog().props("persistent") as self.dialog, \
                ui.card().classes("pg-card p-6 gap-4 w-[860px] max-w-full"):
            with ui.column().classes("gap-1"):
                ui.label("Add a dataset").classes("text-lg font-semibold text-slate-900")
                ui.label("Preview what would be registered, then add it; nothing is downloaded "
                         "yet.").classes("text-sm pg-muted")
            self._form()
            self._options()
            self._problem()
            self.plan = PlanView()
            self._buttons()
        self.url.on("keydown.enter", self.preview)

    def _form(self) -> None:
        self.name = ui.input("Name", placeholder="mnist or owner/name") \
            .props("outlined dense autofocus").classes("w-full").mark("add-name")
        self.url = ui.input("Source URL", placeholder="/path/to/folder, s3://bucket/prefix/"
                            "*.parquet, https://…, hf://datasets/owner/name") \
            .props("outlined dense").classes("w-full").mark("add-url")
        self.pipeline = ui.select(pipeline_choices(), value="auto", label="Pipeline") \
            .props("outlined dense options-dense").classes("w-full").mark("add-pipeline")
        with ui.row().classes("w-full gap-3"):
            self.description = ui.input("Description (optional)").props("outlined dense") \
                .classes("flex-grow").mark("add-description")
            self.modality = ui.input("Modality (optional)", autocomplete=[
                "text", "image", "audio", "video", "tabular", "multimodal"]) \
                .props("outlined dense").classes("w-44").mark("add-modality")
        for element in (self.name, self.url, self.pipeline):
            element.on_value_change(self._changed)

    def _options(self) -> None:
        with ui.expansion("Options", icon="tune").classes("w-full").props("dense") \
                .mark("add-options"):
            with ui.element("div").classes("w-full grid grid-cols-1 sm:grid-cols-2 gap-2"):
                self.fields = {key: ui.input(label, placeholder=placeholder)
                               .props("outlined dense").classes("w-full").mark(f"add-{key}")
                               for key, (label, placeholder) in OPTION_FIELDS.items()}
            self.union = ui.checkbox("Files of a subset may have different columns "
                                     "(schema = union: missing columns become nulls)") \
                .mark("add-union")
        for element in [*self.fields.values(), self.union]:
            element.on_value_change(self._changed)
        self._show_fields()

    def _problem(self) -> None:
        with ui.row().classes("w-full items-start gap-2 no-wrap rounded-lg p-3 bg-red-50 "
                              "text-negative") as self.problem:
            ui.icon("error_outline", size="20px")
            self.problem_text = ui.label("").classes("text-sm whitespace-pre-wrap break-all") \
                .mark("add-error")
        self.problem.visible = False

    def _buttons(self) -> None:
        with ui.row().classes("w-full items-center gap-2"):
            with ui.row().classes("items-center gap-2 text-sm pg-muted").mark("add-busy") \
                    as self.busy:
                ui.spinner(size="20px").mark("add-spinner")
                self.busy_text = ui.label("Discovering subsets and partitions…")
            self.busy.visible = False
            ui.space()
            self.cancel = ui.button("Cancel", on_click=lambda: self.dialog.submit(None)) \
                .props("flat no-caps").mark("add-cancel")
            self.preview_button = ui.button("Preview", icon="visibility", on_click=self.preview) \
                .props("outline no-caps").mark("add-preview")
            self.submit_button = ui.button("Add dataset", on_click=self.submit) \
                .props("unelevated no-caps").mark("add-submit")
        self.submit_button.disable()

    # ------------------------------------------------------------------ inputs
    def _chosen_pipeline(self) -> Any:
        from pygestor.pipelines import get_pipeline, pipeline_for_url

        name, url = self.pipeline.value or "auto", (self.url.value or "").strip()
        try:
            return get_pipeline(pipeline_for_url(url) if name == "auto" and url else name)
        except Exception:  # noqa: BLE001 - no pipeline yet: every option stays available
            return None

    def _show_fields(self) -> None:
        chosen = self._chosen_pipeline()
        known = set(chosen.OPTIONS) if chosen is not None and name_given(self) else None
        for key, field in self.fields.items():
            field.visible = known is None or key in known
        self.union.visible = known is None or UNION in known

    def _changed(self) -> None:
        self._show_fields()
        self.submit_button.set_enabled(self.planned is not None and
                                       self.planned == self._signature())

    def options(self) -> dict[str, Any]:
        """The options given (only those of the chosen pipeline), parsed."""
        found: dict[str, Any] = {}
        for key, field in self.fields.items():
            text = (field.value or "").strip()
            if field.visible and text:
                found[key] = parse_column_types(text) if key == "column_types" else text
        if found.get("delimiter") in ("\\t", "tab"):
            found["delimiter"] = "\t"
        if self.union.visible and self.union.value:
            found[UNION] = "union"
        for key in ("description", "modality"):
            value = (getattr(self, key).value or "").strip()
            if value:
                found[key] = value
        return found

    def _signature(self) -> tuple[Any, ...]:
        try:
            options = json.dumps(self.options(), sort_keys=True)
        except ConfigError as exc:
            options = str(exc)
        return ((self.name.value or "").strip(), (self.url.value or "").strip(),
                self.pipeline.value, options)

    # ------------------------------------------------------------------ actions
    async def _call(self, what: str, function: Any, *args: Any, **kwargs: Any) -> Any:
        """Run an operation in a worker thread with the dialog busy; errors are shown."""
        self.problem.visible = False
        if not (self.name.value or "").strip():
            return self._show("Give the dataset a name, e.g. mnist or owner/name.")
        self.busy_text.set_text(what)
        self.busy.visible = True
        for button in (self.preview_button, self.submit_button, self.cancel):
            button.disable()
        try:
            return await run.io_bound(function, *args, **kwargs)
        except Exception as exc:  # every failure is shown in the dialog
            if not isinstance(exc, PygestorError):
                log.warning("adding a dataset failed", exc_info=True)
            self._show(error_text(exc))
            layout.notify(f"Could not add the dataset: {error_text(exc)}", "negative")
            return None
        finally:
            self.busy.visible = False
            self.preview_button.enable()
            self.cancel.enable()
            self._changed()

    def _arguments(self) -> tuple[tuple[Any, ...], dict[str, Any]]:
        options = self.options()
        return ((self.name.value or "").strip(), (self.url.value or "").strip() or None), \
            {"pipeline": self.pipeline.value, "face": "ui", **options}

    @layout.guarded
    async def preview(self) -> None:
        signature = self._signature()
        try:
            args, kwargs = self._arguments()
        except ConfigError as exc:
            self._show(error_text(exc))
            return
        self.plan.hide()
        self.planned = None
        dataset = await self._call("Discovering subsets and partitions…",
                                   get_manager().plan_dataset, *args, **kwargs)
        if dataset is None:
            return
        self.planned = signature
        self._changed()
        await self.plan.show(dataset)

    @layout.guarded
    async def submit(self) -> None:
        if self.planned != self._signature():
            await self.preview()
            return
        args, kwargs = self._arguments()
        dataset = await self._call("Adding the dataset…", get_manager().add_dataset,
                                   *args, **kwargs)
        if dataset is not None:
            self.dialog.submit(dataset.name)

    def _show(self, text: str) -> None:
        self.problem_text.set_text(text)
        self.problem.visible = True

    async def run(self) -> str | None:
        result = await self.dialog
        self.dialog.delete()
        return result


def name_given(dialog: AddDialog) -> bool:
    """Whether a URL or an explicit pipeline tells which options apply."""
    return bool((dialog.url.value or "").strip()) or dialog.pipeline.value != "auto"


@layout.guarded
async def add_dataset() -> None:
    """Open the dialog; after an add, go to the new dataset's page."""
    name = await AddDialog().run()
    if name:
        layout.notify(f"Added dataset {name}", "positive")
        ui.navigate.to(dataset_href(name))
