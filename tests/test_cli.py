"""The real ``pygestor`` console script, in subprocesses: exit codes, output, errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import S3_KEY, S3_SECRET
from sources import TRAIN_ROWS

PYGESTOR = str(Path(sys.executable).parent / "pygestor")


def run(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None
        ) -> subprocess.CompletedProcess[str]:
    full_env = {**os.environ, **(env or {})}
    full_env.pop("PYGESTOR_DEBUG", None)
    return subprocess.run([PYGESTOR, *args], capture_output=True, text=True, env=full_env,
                          cwd=cwd, timeout=120)


def ok(*args: str, **kwargs) -> str:
    result = run(*args, **kwargs)
    assert result.returncode == 0, result.stderr
    return result.stdout


def fails(*args: str, code: int | None = None, **kwargs) -> str:
    result = run(*args, **kwargs)
    assert result.returncode != 0, result.stdout
    if code is not None:
        assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("pygestor: error: ")
    return lines[0]


def test_full_tour_on_local_storage(tmp_path, toy_source):
    d = ["--data-dir", str(tmp_path / "data")]
    out = ok(*d, "add", "toy", str(toy_source), "--pipeline", "files")
    assert "registered toy (files): 2 subsets" in out
    assert "toy" in ok(*d, "list") and "files" in ok(*d, "list")
    listed = json.loads(ok(*d, "list", "--json"))
    assert listed[0]["name"] == "toy" and listed[0]["downloaded"] == 0
    assert "train" in ok(*d, "info", "toy")
    assert "fetched" in ok(*d, "download", "toy/train")
    head = ok(*d, "head", "toy/train", "-n", "5")
    assert len(head.strip().splitlines()) == 6 and "sample 0" in head
    assert ok(*d, "head", "toy/train", "-n", "2", "--columns", "id").split() == ["id", "0", "1"]
    schema = ok(*d, "schema", "toy/train")
    assert "id" in schema and "int64" in schema and "text" in schema and "string" in schema
    info = json.loads(ok(*d, "info", "toy/train", "--json"))
    assert info["rows"] == TRAIN_ROWS and info["downloaded"] == info["partitions"]
    assert "removed 1" in ok(*d, "remove", "toy/train", "-p", "part-00001.parquet")
    info = json.loads(ok(*d, "info", "toy/train", "--json"))
    assert info["downloaded"] == info["partitions"] - 1
    assert "0 problem(s)" in ok(*d, "verify", "toy")
    snippet = ok(*d, "snippet", "toy/train", "--kind", "load")
    compile(snippet, "snippet", "exec")
    assert "pygestor.load('toy/train')" in snippet
    assert "deleted toy" in ok(*d, "delete", "toy")
    assert "no datasets" in ok(*d, "list")


def test_verify_exits_nonzero_on_problems(tmp_path, toy_source):
    d = ["--data-dir", str(tmp_path / "data")]
    ok(*d, "add", "toy", str(toy_source))
    ok(*d, "download", "toy/test")
    (tmp_path / "data" / "toy" / "test" / "part-00000.parquet").unlink()
    result = run(*d, "verify", "toy")
    assert result.returncode == 1 and "file missing" in result.stdout
    assert run(*d, "verify", "toy", "--repair").returncode == 0
    assert run(*d, "verify", "toy").returncode == 0


@pytest.mark.parametrize(("args", "message", "code"), [
    (["info", "nope"], "no dataset 'nope'", 1),
    (["add", "../x", "/tmp"], "cannot leave their folder", 2),
    (["add", "x", "/definitely/not/here"], "does not exist", 1),
    (["add", "x", "ftp2://host/path"], "unsupported URL scheme", 1),
    (["add", "x", "/tmp", "--pipeline", "nope"], "unknown pipeline 'nope'", 2),
    (["head", "toy/train", "-n", "-1"], "-n must be >= 0", 2),
    (["download", "toy/trian"], "did you mean 'train'", 1),
    (["--config", "/no/such.toml", "list"], "does not exist", 2),
])
def test_user_errors_are_one_line(tmp_path, toy_source, args, message, code):
    d = ["--data-dir", str(tmp_path / "data")]
    ok(*d, "add", "toy", str(toy_source))
    line = fails(*d, *args, code=code)
    assert message in line


def test_malformed_config_and_storage_options(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("data_dir = [unclosed\n")
    assert "not valid TOML" in fails("--config", str(bad), "list", code=2)
    line = fails("list", env={"PYGESTOR_STORAGE_OPTIONS": "{not json"}, code=2)
    assert "PYGESTOR_STORAGE_OPTIONS is not valid JSON" in line


def test_config_file_relative_data_dir_and_redaction(tmp_path):
    conf = tmp_path / "conf" / "system.toml"
    conf.parent.mkdir()
    conf.write_text('[storage]\ndata_dir = "../store"\n'
                    f'options = {{ key = "{S3_KEY}", secret = "{S3_SECRET}" }}\n'
                    '[ui]\npassword = "hunter2-ui"\n')
    out = ok("--config", str(conf), "config", cwd=tmp_path / "conf")
    assert f"data_dir = {tmp_path / 'store'}" in out
    assert S3_SECRET not in out and S3_KEY not in out and "hunter2-ui" not in out
    assert '"secret": "***"' in out
    env_out = ok("config", "--json", env={"PYGESTOR_DATA_DIR": str(tmp_path / "env"),
                                          "PYGESTOR_MAX_WORKERS": "3"}, cwd=tmp_path)
    data = json.loads(env_out)
    assert data["data_dir"] == str(tmp_path / "env") and data["max_workers"] == 3
    assert ok("--data-dir", "s3://b/p", "config", cwd=tmp_path).startswith("data_dir = s3://b/p")


def test_same_commands_on_s3(s3_server, toy_source):
    env = {"PYGESTOR_STORAGE_OPTIONS": json.dumps(s3_server["options"])}
    d = ["--data-dir", f"s3://{s3_server['bucket']}/cli-test"]
    ok(*d, "add", "toy", str(toy_source), env=env)
    ok(*d, "download", "toy/test", env=env)
    assert "test 0" in ok(*d, "head", "toy/test", "-n", "1", env=env)
    assert "0 problem(s)" in ok(*d, "verify", "toy", env=env)
    ok(*d, "delete", "toy", env=env)
    result = run(*d, "list", env=env)
    assert S3_SECRET not in result.stdout + result.stderr


def test_version_and_help():
    from pygestor import __version__

    assert ok("--version").strip() == f"pygestor {__version__}"
    help_text = ok("--help")
    for command in ("add", "list", "info", "download", "remove", "delete", "verify", "head",
                    "schema", "snippet", "config", "ui"):
        assert command in help_text
