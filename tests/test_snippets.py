"""Every snippet the web UI offers runs as copied, in a fresh process, for each kind of dataset:
tabular rows, images (binary and struct-with-bytes columns), variable-length lists, and a
``data_dir`` in a bucket (moto's S3 server; credentials only in the environment, as a user's
would be, never in the snippet).

The UI shows exactly :func:`pygestor.snippets.snippets` (checked in ``test_ui.py``); here each
one is written to a file and run with a clean environment: no ``PYGESTOR_*`` variable, another
working folder, ``python`` for Python and ``bash`` for the command line.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import S3_KEY, S3_SECRET
from sources import write_toy_source

from pygestor.config import Settings
from pygestor.manager import Manager
from pygestor.snippets import snippets

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def write_lists_source(root: Path) -> Path:
    """Rows with variable-length lists of numbers and of strings (and a label)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = root / "lists-src"
    folder.mkdir(parents=True)
    rows = 600
    pq.write_table(pa.table({
        "tokens": pa.array([list(range(i % 7)) for i in range(rows)], pa.list_(pa.int32())),
        "words": pa.array([["w"] * (i % 4) for i in range(rows)], pa.list_(pa.string())),
        "label": pa.array([i % 3 for i in range(rows)], pa.int64()),
    }), folder / "lists.parquet")
    return folder


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("PYGESTOR_", "AWS_"))}
    env["PYTHONPATH"] = str(ROOT)
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra or {})
    return env


def run_snippet(kind: str, code: str, folder: Path, env: dict[str, str]) -> str:
    """Run one snippet as a user would (a file, a fresh interpreter or shell); its output."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / ("snippet.sh" if kind == "cli" else "snippet.py")
    script.write_text(code)
    command = ["bash", "-e", str(script)] if kind == "cli" else [sys.executable, str(script)]
    done = subprocess.run(command, cwd=folder, env=env, capture_output=True, text=True,
                          timeout=240)
    assert done.returncode == 0, f"{kind} snippet failed:\n{code}\n--- stderr:\n{done.stderr}"
    return done.stdout


def run_all(ref: str, settings: Settings, folder: Path, env: dict[str, str]) -> dict[str, str]:
    """Every snippet of ``ref`` (two at a time), output by kind."""
    code = snippets(ref, settings)
    with ThreadPoolExecutor(max_workers=2) as pool:
        futures = {kind: pool.submit(run_snippet, kind, text, folder / kind, env)
                   for kind, text in code.items()}
        return {kind: future.result() for kind, future in futures.items()}


@pytest.mark.slow
def test_every_snippet_runs_for_every_kind_of_local_dataset(tmp_path: Path):
    from test_ui import write_media_source

    settings = Settings.load(data_dir=str(tmp_path / "data"), partition_size="60KB",
                             row_group_size=1000, env={})
    manager = Manager(settings)
    sources = {"toy/train": write_toy_source(tmp_path / "toy-src"),
               "media/default": write_media_source(tmp_path),
               "lists/default": write_lists_source(tmp_path)}
    for ref, source in sources.items():
        manager.add_dataset(ref.split("/")[0], str(source), pipeline="files")
        manager.download(ref, progress=False)
    outputs = {ref: run_all(ref, settings, tmp_path / "run" / ref.replace("/", "-"), clean_env())
               for ref in sources}
    assert "sample 0, with a comma" in outputs["toy/train"]["load"]
    assert "3000" in outputs["toy/train"]["iter_batches"]
    assert "[5 rows x 6 columns]" in outputs["media/default"]["load"]
    assert outputs["lists/default"]["iter_batches"].split() == ["600"]
    assert "sample 0" in outputs["toy/train"]["cli"] and "skipped 3" in outputs["toy/train"]["cli"]


@pytest.mark.slow
def test_every_snippet_runs_for_a_bucket_without_carrying_secrets(tmp_path: Path, s3_server):
    data_dir = f"s3://{s3_server['bucket']}/snippets-{uuid.uuid4().hex[:8]}"
    settings = Settings.load(data_dir=data_dir, storage_options=s3_server["options"],
                             partition_size="60KB", row_group_size=1000, env={})
    manager = Manager(settings)
    manager.add_dataset("lists", str(write_lists_source(tmp_path)), pipeline="files")
    manager.download("lists/default", progress=False)
    code = snippets("lists/default", settings)
    for text in code.values():
        assert S3_KEY not in text and S3_SECRET not in text
        assert s3_server["endpoint"] in text and data_dir in text
    env = clean_env({"AWS_ACCESS_KEY_ID": S3_KEY, "AWS_SECRET_ACCESS_KEY": S3_SECRET})
    outputs = run_all("lists/default", settings, tmp_path / "run", env)
    assert outputs["iter_batches"].split() == ["600"]
    assert "tokens" in outputs["load"] and "tokens" in outputs["cli"]
