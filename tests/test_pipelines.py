"""The pipeline registry, the wikipedia example pipeline, the custom-pipeline example and the
``pygestor.pipelines`` entry-point group."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import hubserver as hs
import pytest
import tomllib

from pygestor.config import Settings
from pygestor.errors import ConfigError, SourceError
from pygestor.loaders.arrow import load
from pygestor.manager import Manager
from pygestor.pipelines import available_pipelines, get_pipeline, pipeline_for_url

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[hs.HubServer]:
    with hs.serving([hs.wikipedia_like()], tmp_path_factory.mktemp("hf_home")) as server:
        yield server


@pytest.fixture
def manager(tmp_path: Path) -> Manager:
    return Manager(Settings.load(data_dir=str(tmp_path / "data"), partition_size="3KB",
                                 row_group_size=1000, retries=2, retry_backoff=0.01))


def run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("PYGESTOR_")}
    full_env.update(env)
    return subprocess.run([sys.executable, "-c", code], env=full_env, cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


# ====================================================================== registry
def test_registry_knows_the_builtin_pipelines() -> None:
    from pygestor.pipelines.huggingface import HuggingFaceParquetPipeline
    from pygestor.pipelines.wikipedia import WikipediaPipeline

    assert {"files", "HuggingFaceParquet", "wikipedia"} <= set(available_pipelines())
    assert get_pipeline("HuggingFaceParquet") is HuggingFaceParquetPipeline
    assert get_pipeline("wikipedia") is WikipediaPipeline
    assert issubclass(WikipediaPipeline, HuggingFaceParquetPipeline)
    assert HuggingFaceParquetPipeline.tracks_revisions and WikipediaPipeline.tracks_revisions
    for url in ("https://huggingface.co/datasets/o/n", "hf://datasets/o/n",
                "https://huggingface.co/datasets/wikimedia/wikipedia"):
        assert pipeline_for_url(url) == "HuggingFaceParquet"
        assert HuggingFaceParquetPipeline.accepts(url)
    assert WikipediaPipeline.accepts("hf://datasets/wikimedia/wikipedia")
    assert not WikipediaPipeline.accepts("hf://datasets/o/n")
    with pytest.raises(ConfigError, match="unknown pipeline 'nope'"):
        get_pipeline("nope")


def test_import_pygestor_does_not_import_huggingface_hub() -> None:
    result = run_python(
        "import sys, pygestor, pygestor.manager, pygestor.cli\n"
        "from pygestor.pipelines import available_pipelines, pipeline_for_url\n"
        "available_pipelines(); pipeline_for_url('hf://datasets/o/n')\n"
        "print('huggingface_hub' in sys.modules)\n"
        "import pygestor.pipelines.huggingface\n"
        "print('huggingface_hub' in sys.modules)\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "False"], "imported only when a call needs it"


# ====================================================================== wikipedia
def test_wikipedia_pipeline(hub: hs.HubServer, manager: Manager) -> None:
    dataset = manager.add_dataset("wiki", pipeline="wikipedia")
    assert dataset.pipeline == "wikipedia"
    assert list(dataset.subsets) == ["20231101.en", "20231101.fr"]
    assert dataset.modality == "text" and "Wikipedia" in dataset.description
    assert dataset.subsets["20231101.fr"].description == "Wikipedia in 'fr', dump of 20231101"
    assert dataset.revision == hub.repos["wikimedia/wikipedia"].sha()
    assert dataset.url == "https://huggingface.co/datasets/wikimedia/wikipedia"

    french = manager.add_dataset("wiki-fr", pipeline="wikipedia", languages="fr")
    assert list(french.subsets) == ["20231101.fr"]
    manager.download("wiki-fr", progress=False)
    frame = load(manager, "wiki-fr/20231101.fr")
    assert len(frame) == 200 and frame["text"].str.startswith("wiki ").all()
    assert manager.check_updates("wiki-fr")["up_to_date"] is True
    assert manager.download_updates("wiki-fr", progress=False).fetched == []

    with pytest.raises(SourceError, match="match dates="):
        manager.add_dataset("none", pipeline="wikipedia", dates=["20990101"])
    with pytest.raises(ConfigError,
                       match="understands dates, description, languages, modality, revision"):
        manager.add_dataset("none", pipeline="wikipedia", configs=["x"])


# ====================================================================== custom pipelines
def test_custom_pipeline_example_runs() -> None:
    result = subprocess.run([sys.executable, str(ROOT / "examples" / "custom_pipeline.py")],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "registered tables: subsets table-10, table-12" in result.stdout
    assert "table-12: 144 rows, 7 x 8 = 56" in result.stdout


def test_entry_point_group_registers_a_third_party_pipeline(tmp_path: Path) -> None:
    """A package that declares ``[project.entry-points."pygestor.pipelines"]`` is found."""
    site = tmp_path / "site"
    (site / "acme_pipes").mkdir(parents=True)
    (site / "acme_pipes" / "__init__.py").write_text(textwrap.dedent('''
        import pyarrow as pa
        from pygestor.catalog import Dataset, Partition, Subset
        from pygestor.pipelines.base import Pipeline

        class Ones(Pipeline):
            name = "acme-ones"

            def discover(self, name, url, options):
                subset = Subset("all", [Partition("part-00000.parquet", {"n": 7}, None, 7)])
                return Dataset(name=name, pipeline=self.name, subsets={"all": subset})

            def fetch(self, dataset, subset, partition, dest, progress):
                writer = self.open_writer(dest, None, dataset, subset, partition)
                writer.write(pa.record_batch({"one": [1] * partition.source["n"]}))
                writer.close()
    '''))
    dist = site / "acme_pipes-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-pipes\nVersion: 1.0\n")
    # what pip writes for [project.entry-points."pygestor.pipelines"] acme-ones = "..."
    (dist / "entry_points.txt").write_text("[pygestor.pipelines]\nacme-ones = acme_pipes:Ones\n")
    result = run_python(
        "from pygestor.pipelines import available_pipelines\n"
        "from pygestor.config import Settings\n"
        "from pygestor.manager import Manager\n"
        "from pygestor.loaders.arrow import load\n"
        "print('acme-ones' in available_pipelines())\n"
        f"m = Manager(Settings.load(data_dir={str(tmp_path / 'data')!r}))\n"
        "m.add_dataset('ones', pipeline='acme-ones')\n"
        "m.download('ones', progress=False)\n"
        "print(int(load(m, 'ones')['one'].sum()))\n",
        PYTHONPATH=str(site))
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "7"]


def test_docs_entry_point_snippet_is_valid_toml() -> None:
    text = (ROOT / "docs" / "pipelines.md").read_text()
    blocks = re.findall(r"```toml\n(.*?)```", text, re.S)
    parsed = [tomllib.loads(b) for b in blocks]
    groups = [p["project"]["entry-points"]["pygestor.pipelines"] for p in parsed
              if "entry-points" in p.get("project", {})]
    assert groups and all(":" in target for g in groups for target in g.values())
