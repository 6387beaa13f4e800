"""Pipelines: how a source URL becomes subsets and partitions, and how a partition is fetched.

A small registry, as in fsspec: built-in pipelines by name, plus any that third-party packages
declare in the ``pygestor.pipelines`` entry-point group (``name = "package.module:Class"``).
Pipeline modules are imported only when used, so ``import pygestor`` stays fast.
"""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from pygestor.errors import ConfigError

if TYPE_CHECKING:
    from pygestor.pipelines.base import Pipeline

#: Built-in pipelines: name -> "module:Class" (imported lazily).
BUILTIN: dict[str, str] = {
    "files": "pygestor.pipelines.files:FilesPipeline",
    "HuggingFaceParquet": "pygestor.pipelines.huggingface:HuggingFaceParquetPipeline",
    "wikipedia": "pygestor.pipelines.wikipedia:WikipediaPipeline",
}
ENTRY_POINT_GROUP = "pygestor.pipelines"
_registered: dict[str, type[Pipeline]] = {}


def register_pipeline(cls: type[Pipeline], name: str | None = None) -> type[Pipeline]:
    """Register a pipeline class in this process (also usable as a decorator)."""
    _registered[name or cls.name] = cls
    return cls


def _entry_points() -> dict[str, str]:
    return {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}


def available_pipelines() -> list[str]:
    """Names of every pipeline that can be chosen, built-in first."""
    names = [n for n in BUILTIN if _importable(BUILTIN[n])]
    names += [n for n in (*_registered, *_entry_points()) if n not in names]
    return names


def _importable(target: str) -> bool:
    module = target.split(":")[0]
    return importlib.util.find_spec(module) is not None


def get_pipeline(name: str) -> type[Pipeline]:
    """The pipeline class registered under ``name``."""
    if name in _registered:
        return _registered[name]
    target = BUILTIN.get(name) or _entry_points().get(name)
    if target is None or (name in BUILTIN and not _importable(target)):
        raise ConfigError(f"unknown pipeline {name!r}; choose one of "
                          f"{', '.join(available_pipelines())} or 'auto'")
    module_name, _, attr = target.partition(":")
    cls = getattr(importlib.import_module(module_name), attr)
    _registered[name] = cls
    return cls


def pipeline_for_url(url: str) -> str:
    """The pipeline ``auto`` picks for ``url``."""
    lowered = url.lower()
    if "huggingface.co/datasets/" in lowered or lowered.startswith("hf://datasets/"):
        return "HuggingFaceParquet"
    return "files"
