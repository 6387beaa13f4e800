"""Code blocks marked ``runnable`` in README.md and docs/ run (each file on fresh storage).

A block is runnable when its fence reads ```` ```python runnable ```` or ```` ```bash runnable ````.
Blocks run in order, in a folder holding ``examples/data/toy`` (the demo's source, smaller), with
``PYGESTOR_DATA_DIR`` pointing at an empty data_dir; files other than the README find ``toy``
registered and downloaded.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FENCE = re.compile(r"^```(python|bash) runnable\n(.*?)^```", re.S | re.M)
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def runnable_blocks(path: Path) -> list[tuple[str, str]]:
    return FENCE.findall(path.read_text())


def test_some_blocks_are_marked_runnable():
    marked = {p.name: len(runnable_blocks(p)) for p in DOCS}
    assert marked["README.md"] >= 2 and sum(marked.values()) >= 3


@pytest.mark.parametrize("path", [p for p in DOCS if runnable_blocks(p)], ids=lambda p: p.name)
def test_runnable_blocks(path, tmp_path):
    sys.path.insert(0, str(ROOT / "examples"))
    from make_toy import generate

    generate(tmp_path / "examples" / "data" / "toy", rows=3000)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYGESTOR_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYGESTOR_DATA_DIR"] = str(tmp_path / "data")
    if path.name != "README.md":
        from pygestor.config import Settings
        from pygestor.manager import Manager

        manager = Manager(Settings.load(data_dir=env["PYGESTOR_DATA_DIR"], env={}))
        manager.add_dataset("toy", str(tmp_path / "examples" / "data" / "toy"))
        manager.download("toy", progress=False)
    for index, (language, code) in enumerate(runnable_blocks(path)):
        if language == "bash":
            env["PYGESTOR_DATA_DIR"] = str(tmp_path / f"data-{index}")  # a fresh start
            command = ["bash", "-euo", "pipefail", "-c", code]
        else:
            command = [sys.executable, "-c", code]
        result = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=env,
                                timeout=300)
        assert result.returncode == 0, f"{path.name} block {index}:\n{code}\n{result.stderr}"
