"""The built wheel works in a fresh virtual environment, in an empty folder, with no repo around."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_wheel_installs_and_runs_outside_the_repo(tmp_path):
    from sources import write_toy_source

    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--sdist", "--wheel",
                    "--outdir", str(dist), str(ROOT)], check=True, capture_output=True)
    wheels = list(dist.glob("pygestor-*.whl"))
    assert len(wheels) == 1 and list(dist.glob("pygestor-*.tar.gz"))

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    bin_dir = env_dir / "bin"
    environ = {k: v for k, v in os.environ.items()
               if not k.startswith(("PYGESTOR_", "VIRTUAL_ENV", "PYTHONPATH"))}
    subprocess.run([str(bin_dir / "python"), "-m", "pip", "install", "--quiet",
                    "-c", str(ROOT / "constraints.txt"), f"{wheels[0]}[all]"],
                   check=True, env=environ, cwd=tmp_path)

    work = tmp_path / "empty"
    work.mkdir()
    source = write_toy_source(tmp_path / "src")

    def run(*args: str) -> str:
        result = subprocess.run(list(args), capture_output=True, text=True, env=environ,
                                cwd=work, timeout=300)
        assert result.returncode == 0, result.stderr
        return result.stdout

    assert "download" in run(str(bin_dir / "pygestor"), "--help")
    assert run(str(bin_dir / "pygestor"), "--version").startswith("pygestor ")
    run(str(bin_dir / "pygestor"), "add", "toy", str(source))
    run(str(bin_dir / "pygestor"), "download", "toy")
    out = run(str(bin_dir / "python"), "-c",
              "import pygestor; print(len(pygestor.load('toy/train')))")
    assert out.strip() == "3000"
    assert (work / "data" / "toy" / "metadata.json").is_file(), "default data_dir is ./data"
    installed = run(str(bin_dir / "python"), "-c", "import pygestor; print(pygestor.__file__)")
    assert str(ROOT) not in installed, "the installed package, not the repo, was used"
