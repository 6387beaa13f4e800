"""The fields of the add dialog: where the dataset comes from, and the options of its pipeline
(shown only when the chosen pipeline understands them)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from nicegui import ui

from pygestor.errors import ConfigError

#: option -> (label, hint)
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


class SourceForm:
    """Name, source URL, pipeline, description, modality."""

    def __init__(self, changed: Callable[[], None]) -> None:
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
            element.on_value_change(changed)

    def chosen_pipeline(self) -> Any:
        """The pipeline class that would read the URL, or None when it is not known yet."""
        from pygestor.pipelines import get_pipeline, pipeline_for_url

        name, url = self.pipeline.value or "auto", (self.url.value or "").strip()
        if name == "auto" and not url:
            return None
        try:
            return get_pipeline(pipeline_for_url(url) if name == "auto" else name)
        except Exception:  # noqa: BLE001 - unknown yet: every option stays available
            return None

    def common(self) -> dict[str, str]:
        found = {}
        for key in ("description", "modality"):
            value = (getattr(self, key).value or "").strip()
            if value:
                found[key] = value
        return found


class OptionsForm:
    """The pipeline options, in an expansion; :meth:`show_for` hides what does not apply."""

    def __init__(self, changed: Callable[[], None]) -> None:
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
            element.on_value_change(changed)

    def show_for(self, pipeline: Any) -> None:
        known = set(pipeline.OPTIONS) if pipeline is not None else None
        for key, field in self.fields.items():
            field.visible = known is None or key in known
        self.union.visible = known is None or UNION in known

    def options(self) -> dict[str, Any]:
        """The options given (only those shown), parsed; ConfigError when one is malformed."""
        found: dict[str, Any] = {}
        for key, field in self.fields.items():
            text = (field.value or "").strip()
            if field.visible and text:
                found[key] = parse_column_types(text) if key == "column_types" else text
        if found.get("delimiter") in ("\\t", "tab"):
            found["delimiter"] = "\t"
        if self.union.visible and self.union.value:
            found[UNION] = "union"
        return found
