"""Pipelines: how a source URL becomes subsets and partitions, and how a partition is fetched.

A small registry, as in fsspec: built-in pipelines by name, plus any that third-party packages
declare in the ``pygestor.pipelines`` entry-point group (``name = "package.module:Class"``).
Pipeline modules are imported only when used, so ``import pygestor`` stays fast.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from pygestor.errors import ConfigError

if TYPE_CHECKING:
    from pygestor.pipelines.base import Pipeline


@dataclass(frozen=True)
class Entry:
    """A built-in pipeline: where its class lives (imported lazily), what its name needs."""

    target: str  # "module:Class"
    requires: tuple[str, ...] = ()  # modules it needs beyond Pygestor's own dependencies
    install: str = ""  # the command that installs them


#: Built-in pipelines, in the order ``pipeline="auto"`` asks them (``files`` is the fallback).
BUILTIN: dict[str, Entry] = {
    "HuggingFaceParquet": Entry("pygestor.pipelines.huggingface:HuggingFaceParquetPipeline",
                                ("huggingface_hub",), "pip install 'pygestor[hf]'"),
    "wikipedia": Entry("pygestor.pipelines.wikipedia:WikipediaPipeline",
                       ("huggingface_hub",), "pip install 'pygestor[hf]'"),
    "files": Entry("pygestor.pipelines.files:FilesPipeline"),
}
FALLBACK = "files"
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
    names = [n for n, entry in BUILTIN.items() if _importable(entry.target)]
    names += [n for n in (*_registered, *_entry_points()) if n not in names]
    return names


def _importable(target: str) -> bool:
    module = target.split(":")[0]
    return importlib.util.find_spec(module) is not None


def _extra_installed(entry: Entry) -> bool:
    """Whether what the pipeline needs beyond Pygestor itself is installed."""
    return all(importlib.util.find_spec(module) is not None for module in entry.requires)


def get_pipeline(name: str) -> type[Pipeline]:
    """The pipeline class registered under ``name``."""
    if name in _registered:
        return _registered[name]
    entry = BUILTIN.get(name)
    target = entry.target if entry is not None else _entry_points().get(name)
    if target is None:
        raise ConfigError(f"unknown pipeline {name!r}; choose one of "
                          f"{', '.join(available_pipelines())} or 'auto'")
    if entry is not None and not _extra_installed(entry):
        raise ConfigError(f"the {name} pipeline needs packages that are not installed: "
                          f"{entry.install}")
    module_name, _, attr = target.partition(":")
    cls = getattr(importlib.import_module(module_name), attr)
    _registered[name] = cls
    return cls


def pipeline_for_url(url: str) -> str:
    """The pipeline ``auto`` picks for ``url``: the first whose ``accepts(url)`` is true (built-in
    ones in registry order, then registered and entry-point ones), else ``files``."""
    candidates = [n for n in BUILTIN if n != FALLBACK]
    candidates += [n for n in (*_registered, *_entry_points()) if n not in BUILTIN]
    for name in candidates:
        try:
            cls = get_pipeline(name)
        except ConfigError:
            continue  # not installed: it cannot be the one
        if cls.accepts(url):
            return name
    return FALLBACK
