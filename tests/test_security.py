"""No credential leaks anywhere Pygestor writes or prints; nothing outside data_dir is touched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import S3_KEY, S3_SECRET

from pygestor.catalog import Dataset, Partition, Subset
from pygestor.errors import InvalidNameError
from pygestor.pipelines import register_pipeline
from pygestor.pipelines.base import Pipeline

PYGESTOR = str(Path(sys.executable).parent / "pygestor")
HF_TOKEN = "hf_SECRETtokenNEVERshown1234567890"
UI_PASSWORD = "ui-password-never-shown-0x5f"
SECRETS = (S3_KEY, S3_SECRET, HF_TOKEN, UI_PASSWORD)


def test_secrets_never_appear_in_output_logs_errors_or_records(s3_server, toy_source, tmp_path):
    options = s3_server["options"]
    data_dir = f"s3://{s3_server['bucket']}/security"
    env = {**os.environ, "PYGESTOR_STORAGE_OPTIONS": json.dumps(options),
           "HF_TOKEN": HF_TOKEN, "PYGESTOR_UI_PASSWORD": UI_PASSWORD,
           "AWS_ACCESS_KEY_ID": S3_KEY, "AWS_SECRET_ACCESS_KEY": S3_SECRET}
    produced: list[str] = []

    def run(*args: str, check: bool = True) -> None:
        result = subprocess.run([PYGESTOR, "-v", "--data-dir", data_dir, *args],
                                capture_output=True, text=True, env=env, timeout=120,
                                cwd=tmp_path)
        produced.extend([result.stdout, result.stderr])
        if check:
            assert result.returncode == 0, result.stderr

    run("add", "toy", str(toy_source), "-o", f'source_options={{"secret": "{S3_SECRET}"}}')
    run("download", "toy")
    for args in (["list"], ["list", "--json"], ["info", "toy", "--json"], ["config"],
                 ["config", "--json"], ["verify", "toy"], ["head", "toy/train"],
                 ["schema", "toy/test"], ["snippet", "toy/train"]):
        run(*args)
    for args in (["info", "nope"], ["add", "bad", "s3://no-such-bucket-x/data"],
                 ["--data-dir", "s3://no-such-bucket-x/p", "list"]):
        run(*args, check=False)
    # a data_dir URL that carries credentials itself
    result = subprocess.run([PYGESTOR, "--data-dir", f"s3://{S3_KEY}:{S3_SECRET}@bucket/x",
                             "config"], capture_output=True, text=True, env=env, cwd=tmp_path)
    produced.extend([result.stdout, result.stderr])

    import s3fs

    fs = s3fs.S3FileSystem(**options, skip_instance_cache=True)
    records = [fs.cat_file(p).decode() for p in fs.find(f"{s3_server['bucket']}/security")
               if p.endswith("metadata.json")]
    assert records, "the workload wrote records"
    produced.extend(records)
    everything = "\n".join(produced)
    assert "toy" in everything and "fetched" in everything
    for secret in SECRETS:
        assert secret not in everything, f"a secret leaked: {secret[:6]}..."
    assert "***" in everything, "secrets are shown as ***"


class _EvilPipeline(Pipeline):
    """A pipeline whose discovered names try to escape the dataset folder."""

    name = "evil-test"
    escape = "../../outside"

    def discover(self, name, url, options):
        subset = Subset(name=self.escape, partitions=[Partition(name="part-00000.parquet")])
        return Dataset(name=name, url=url, pipeline=self.name, subsets={subset.name: subset})


@pytest.mark.parametrize("escape", ["../../outside", "/abs", "ok\\..\\..", "a/../../b"])
def test_no_pipeline_can_write_outside_data_dir(local_manager, tmp_path, escape):
    _EvilPipeline.escape = escape
    register_pipeline(_EvilPipeline)
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(InvalidNameError):
        local_manager.add_dataset("evil", "memory://x", pipeline="evil-test")
    # nothing new beside data_dir, and in data_dir only the record of the failed job
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != "data") == \
        sorted(n for n in before if n != "data")
    data = tmp_path / "data"
    written = [p.relative_to(data).as_posix() for p in data.rglob("*") if p.is_file()]
    assert all(p.startswith("_pygestor/jobs/") for p in written), written
    assert not local_manager.catalog.exists("evil")


def test_references_cannot_reach_outside(local_manager, toy_source, tmp_path):
    local_manager.add_dataset("toy", str(toy_source), pipeline="files")
    outside = tmp_path / "precious.txt"
    outside.write_text("keep me")
    for ref in ("toy/../precious.txt", "../precious.txt", "/etc/passwd", "toy/train/../../x"):
        with pytest.raises(InvalidNameError):
            local_manager.remove(ref)
        with pytest.raises(InvalidNameError):
            local_manager.delete_dataset(ref)
    with pytest.raises(InvalidNameError):
        local_manager.remove("toy/train", partitions=["../../../precious.txt"])
    assert outside.read_text() == "keep me"
