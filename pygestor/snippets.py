"""Runnable code snippets for a reference, shared by ``pygestor snippet`` and the web UI.

Each snippet runs as copied, in a fresh shell or interpreter: it names the storage root (and
its storage options, without credentials: those come from the environment, e.g. ``AWS_*``
variables, as for every client), and the PyTorch one hands over ready batches, so text, bytes
and variable-length lists need no custom ``collate_fn``.
"""

from __future__ import annotations

import json
import os
import shlex
from typing import Any

from pygestor.config import Settings

_TRAINING_LOOP = (
    "loader = PygestorDataLoader(dataset, num_workers=2)\n\n"
    "if __name__ == \"__main__\":\n"
    "    for epoch in range(2):\n"
    "        dataset.set_epoch(epoch)\n"
    "        for batch in loader:\n"
    "            pass  # train on batch\n")


def snippets(ref: str, settings: Settings | None = None) -> dict[str, str]:
    """Python and shell code that loads ``ref``, keyed by kind (each one runs as it is)."""
    configure = _configure(settings)
    quoted = repr(ref)
    return {
        "load": f"import pygestor\n{configure}df = pygestor.load({quoted})\nprint(df.head())\n",
        "iter_batches": (
            f"import pygestor\n{configure}"
            f"for batch in pygestor.iter_batches({quoted}, batch_size=4096, format=\"arrow\"):\n"
            "    print(batch.num_rows)\n"),
        "torch": (
            f"import pygestor\nfrom pygestor import PygestorDataLoader, PygestorDataset\n"
            f"{configure}\n"
            "# batches of 256 rows, as dicts of columns: numbers become tensors; text, bytes\n"
            "# and variable-length lists stay Python lists (no collate_fn needed)\n"
            f"dataset = PygestorDataset({quoted}, batch_size=256, shuffle=True, seed=0)\n"
            f"{_TRAINING_LOOP}"),
        "mix": (
            f"import pygestor\nfrom pygestor import PygestorDataLoader, PygestorDataset\n"
            f"{configure}\n"
            "# a weighted mix: add subsets and their weights, e.g. {'web/train': 0.7, ...};\n"
            "# every batch holds each subset in its share, exactly per rank and resumable\n"
            f"dataset = PygestorDataset({{{quoted}: 1.0}}, batch_size=256, shuffle=True,\n"
            "                          seed=0, samples_per_epoch=100_000, stopping=\"repeat\")\n"
            f"{_TRAINING_LOOP}"),
        "cli": _cli(ref, settings),
    }


def _where(settings: Settings) -> tuple[str, dict[str, Any]]:
    """The storage root (an absolute path when local) and its storage options without
    credentials."""
    from pygestor.policy import drop_secrets

    data_dir = settings.data_dir
    if "://" not in data_dir and "::" not in data_dir:
        data_dir = os.path.abspath(os.path.expanduser(data_dir))
    options, _ = drop_secrets(settings.storage_options)
    return data_dir, options


def _configure(settings: Settings | None) -> str:
    if settings is None:
        return ""
    data_dir, options = _where(settings)
    extra = f", storage_options={options!r}" if options else ""
    return f"pygestor.configure(data_dir={data_dir!r}{extra})\n"


def _cli(ref: str, settings: Settings | None) -> str:
    quoted, mixed = shlex.quote(ref), shlex.quote(f"{ref}=1.0")
    plan = (f"plan {mixed} --samples-per-epoch 100000 --world-size 2 --workers 2")
    commands = [f"download {quoted}", f"head {quoted} -n 5", plan]
    comment = "# the plan of a weighted mix (add REF=WEIGHT for other subsets)"
    if settings is None:
        lines = [f"pygestor {c}" for c in commands]
        return "\n".join([*lines[:2], comment, lines[2]]) + "\n"
    data_dir, options = _where(settings)
    lines = []
    if options:
        lines.append("export PYGESTOR_STORAGE_OPTIONS="
                     f"{shlex.quote(json.dumps(options, sort_keys=True))}")
    root = shlex.quote(data_dir)
    run = [f"pygestor --data-dir {root} {c}" for c in commands]
    lines += [*run[:2], comment, run[2]]
    return "\n".join(lines) + "\n"
