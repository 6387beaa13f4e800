"""Runnable code snippets for a reference, shared by ``pygestor snippet`` and the web UI."""

from __future__ import annotations

from pygestor.config import Settings


def snippets(ref: str, settings: Settings | None = None) -> dict[str, str]:
    """Python and shell code that loads ``ref``, keyed by kind (each one is valid code)."""
    configure = ""
    if settings is not None:
        data_dir = settings.data_dir
        if "://" not in data_dir:
            import os

            data_dir = os.path.abspath(os.path.expanduser(data_dir))
        configure = f"pygestor.configure(data_dir={data_dir!r})\n"
    quoted = repr(ref)
    return {
        "load": f"import pygestor\n{configure}df = pygestor.load({quoted})\nprint(df.head())\n",
        "iter_batches": (
            f"import pygestor\n{configure}"
            f"for batch in pygestor.iter_batches({quoted}, batch_size=4096, format=\"arrow\"):\n"
            "    print(batch.num_rows)\n"),
        "torch": (
            "from torch.utils.data import DataLoader\n\nimport pygestor\n"
            f"from pygestor import PygestorDataset\n{configure}\n"
            f"dataset = PygestorDataset({quoted}, shuffle=True, seed=0)\n"
            "loader = DataLoader(dataset, batch_size=256, num_workers=2)\n"
            "for epoch in range(2):\n"
            "    dataset.set_epoch(epoch)\n"
            "    for batch in loader:\n"
            "        pass  # train on batch\n"),
        "mix": (
            "import pygestor\n"
            f"from pygestor import PygestorDataLoader, PygestorDataset\n{configure}\n"
            "# a weighted mix: add subsets and their weights, e.g. {'web/train': 0.7, ...};\n"
            "# every batch holds each subset in its share, exactly per rank and resumable\n"
            f"dataset = PygestorDataset({{{quoted}: 1.0}}, batch_size=256, shuffle=True,\n"
            "                          seed=0, samples_per_epoch=100_000, stopping=\"repeat\")\n"
            "loader = PygestorDataLoader(dataset, num_workers=2)\n"
            "for epoch in range(2):\n"
            "    dataset.set_epoch(epoch)\n"
            "    for batch in loader:\n"
            "        pass  # train on batch\n"),
        "cli": (f"pygestor download {_shell_quote(ref)}\npygestor head {_shell_quote(ref)} -n 5\n"
                "# the plan of a weighted mix (add REF=WEIGHT for other subsets)\n"
                f"pygestor plan {_shell_quote(ref + '=1.0')} --samples-per-epoch 100000 "
                "--world-size 2 --workers 2\n"),
    }


def _shell_quote(text: str) -> str:
    import shlex

    return shlex.quote(text)
