"""Every script in examples/ runs (so none can rot), on small data in temporary folders."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
BIN = Path(sys.executable).parent


def run(*args: str, cwd: Path, timeout: float = 300) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYGESTOR_")}
    result = subprocess.run(list(args), capture_output=True, text=True, cwd=cwd, env=env,
                            timeout=timeout)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    return result.stdout


@pytest.fixture(scope="module")
def toy_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data_dir holding the toy dataset (a small one), registered and downloaded."""
    base = tmp_path_factory.mktemp("examples")
    sys.path.insert(0, str(EXAMPLES))
    from make_toy import generate

    from pygestor.config import Settings
    from pygestor.manager import Manager

    source = generate(base / "toy-src", rows=4000)
    manager = Manager(Settings.load(data_dir=str(base / "data"), env={}))
    manager.add_dataset("toy", str(source), pipeline="files", partition_size="100KB")
    manager.download("toy", progress=False)
    return base / "data"


def test_quickstart(tmp_path):
    out = run(sys.executable, str(EXAMPLES / "quickstart.py"), str(tmp_path), cwd=tmp_path)
    assert "toy/train: 5000 rows" in out and "verify: " in out and "0 problems" in out


def test_s3_data_dir_with_a_local_moto_server(tmp_path):
    out = run(sys.executable, str(EXAMPLES / "s3_data_dir.py"), cwd=tmp_path)
    assert "toy/train from S3: 3000 rows" in out and "verify: clean" in out


def test_custom_pipeline(tmp_path):
    out = run(sys.executable, str(EXAMPLES / "custom_pipeline.py"), cwd=tmp_path)
    assert "registered tables: subsets table-10, table-12" in out
    assert "fetched 5" in out and "table-12: 144 rows, 7 x 8 = 56" in out


def test_train(toy_store, tmp_path):
    out = run(sys.executable, str(EXAMPLES / "train.py"), "toy/train", "--data-dir",
              str(toy_store), "--features", "f0,f1,f2,f3", "--epochs", "2", cwd=tmp_path)
    assert "epoch 0: loss" in out and "epoch 1: loss" in out and "samples/s" in out


@pytest.mark.slow
def test_train_ddp_under_torchrun(toy_store, tmp_path):
    out = run(str(BIN / "torchrun"), "--standalone", "--nproc_per_node=2",
              str(EXAMPLES / "train_ddp.py"), "toy/train", "--data-dir", str(toy_store),
              "--features", "f0,f1,f2,f3", cwd=tmp_path, timeout=600)
    assert "loss" in out


def test_interop_is_valid_python():
    """It needs engines CI does not install (DuckDB, Dask, Ray); it must at least compile."""
    compile((EXAMPLES / "interop.py").read_text(), "interop.py", "exec")


def test_demo_and_toy_generator_are_deterministic(tmp_path):
    sys.path.insert(0, str(EXAMPLES))
    from make_toy import generate

    first = generate(tmp_path / "a", rows=500)
    second = generate(tmp_path / "b", rows=500)
    for path in sorted(first.rglob("*.csv")):
        assert path.read_bytes() == (second / path.relative_to(first)).read_bytes()
