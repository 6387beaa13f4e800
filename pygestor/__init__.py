"""Pygestor: acquire, organize and serve datasets for machine learning.

``import pygestor`` is cheap and has no side effects: the storage, pipelines, pyarrow, torch and
the web UI are imported when first used.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.4.0"

_API = ("configure", "get_manager", "add_dataset", "list_datasets", "info", "list_subsets",
        "list_partitions", "download", "remove", "delete_dataset", "verify", "load",
        "load_table", "iter_batches", "schema", "sample", "urls", "check_updates", "jobs",
        "cancel")
_LAZY = {
    **{name: "pygestor.api" for name in _API},
    "PygestorDataset": "pygestor.loaders.torch.dataset",
    "PygestorDataLoader": "pygestor.loaders.torch.loader",
    "Settings": "pygestor.config",
    "Manager": "pygestor.manager",
    "PygestorError": "pygestor.errors",
}

__all__ = ["__version__", *_LAZY]

if TYPE_CHECKING:
    from pygestor.api import (  # noqa: F401
        add_dataset,
        cancel,
        configure,
        delete_dataset,
        download,
        get_manager,
        info,
        iter_batches,
        jobs,
        list_datasets,
        list_partitions,
        list_subsets,
        load,
        load_table,
        remove,
        sample,
        schema,
        urls,
        verify,
    )
    from pygestor.config import Settings  # noqa: F401
    from pygestor.errors import PygestorError  # noqa: F401
    from pygestor.loaders.torch.dataset import PygestorDataset  # noqa: F401
    from pygestor.loaders.torch.loader import PygestorDataLoader  # noqa: F401
    from pygestor.manager import Manager  # noqa: F401


def __getattr__(name: str) -> Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'pygestor' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module_name), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
