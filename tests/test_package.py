"""`import pygestor` is cheap and has no side effects; settings resolve in the documented order."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from pygestor.config import Settings, parse_size
from pygestor.errors import ConfigError


def test_import_pulls_in_nothing_heavy_and_writes_nothing(tmp_path):
    code = ("import sys, pygestor; heavy = ['torch', 'pyarrow', 'pandas', 'nicegui', "
            "'huggingface_hub', 'fsspec', 's3fs', 'gcsfs', 'numpy']; "
            "print([m for m in heavy if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=tmp_path, check=True)
    assert result.stdout.strip() == "[]"
    assert list(tmp_path.iterdir()) == [], "import wrote files"


def test_heavy_imports_stay_at_the_edge(tmp_path):
    """torch only under ``loaders/torch``, nicegui only under ``ui``; dask and huggingface_hub
    only when a call needs them: importing every other module pulls in none of them."""
    code = ("import importlib, pathlib, sys, pygestor\n"
            "edge = ('pygestor.ui', 'pygestor.loaders.torch', 'pygestor.__main__')\n"
            "top = pathlib.Path(pygestor.__file__).parent\n"
            "names = ['.'.join(('pygestor',) + p.relative_to(top).with_suffix('').parts)\n"
            "         .removesuffix('.__init__') for p in sorted(top.rglob('*.py'))]\n"
            "names = [n for n in names if not n.startswith(edge)]\n"
            "for name in names:\n"
            "    importlib.import_module(name)\n"
            "heavy = ['torch', 'nicegui', 'distributed', 'dask', 'huggingface_hub']\n"
            "print(len(names), [m for m in heavy if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            cwd=tmp_path, check=True)
    count, loaded = result.stdout.strip().split(" ", 1)
    assert int(count) > 40, "the walk found too few modules to mean anything"
    assert loaded == "[]", f"a module outside the edge imports {loaded}"


def test_lazy_attributes_resolve():
    import pygestor

    assert callable(pygestor.load) and callable(pygestor.add_dataset)
    with pytest.raises(AttributeError):
        pygestor.no_such_thing  # noqa: B018


def test_layering_defaults_file_env_arguments(tmp_path):
    conf = tmp_path / "c.toml"
    conf.write_text('[storage]\ndata_dir = "rel"\n[download]\nmax_workers = 3\nretries = 2\n'
                    '[partitions]\npartition_size = "2MiB"\n')
    env = {"PYGESTOR_RETRIES": "4", "PYGESTOR_STORAGE_OPTIONS": json.dumps({"anon": True})}
    settings = Settings.load(conf, env=env, max_workers=7)
    assert settings.data_dir == str(tmp_path / "rel")  # relative to the file
    assert settings.max_workers == 7  # argument beats file
    assert settings.retries == 4  # environment beats file
    assert settings.partition_size == 2 * 2**20
    assert settings.storage_options == {"anon": True}
    assert settings.sources == ("defaults", f"file:{conf}", "environment", "arguments")


@pytest.mark.parametrize(("text", "message"), [
    ("max_workers = 0\n", "max_workers must be at least 1"),
    ("nonsense = 1\n", "unknown setting(s) nonsense"),
    ("[partitions]\npartition_size = \"12 parsecs\"\n", "partition_size"),
    ("[download]\nretries = \"many\"\n", "retries: invalid value"),
])
def test_bad_config_values(tmp_path, text, message):
    conf = tmp_path / "c.toml"
    conf.write_text(text)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Settings.load(conf, env={})


def test_parse_size():
    assert parse_size("128MB") == 128 * 10**6
    assert parse_size("1 GiB") == 2**30
    assert parse_size(4096) == 4096
    with pytest.raises(ConfigError):
        parse_size("-1MB")


def test_redaction_hides_secrets():
    settings = Settings.from_mapping({"data_dir": "s3://user:pw@bucket/x",
                                      "storage_options": {"key": "AKIA1", "secret": "s3cr3t",
                                                          "client_kwargs": {"region": "x"}},
                                      "ui_password": "pw1"})
    text = json.dumps(settings.redacted())
    assert "AKIA1" not in text and "s3cr3t" not in text and "pw1" not in text
    assert '"region": "x"' in text


def test_cli_reference_is_current():
    from pathlib import Path

    from pygestor.clidoc import render

    doc = Path(__file__).parent.parent / "docs" / "cli.md"
    assert doc.read_text() == render(), "run: python -m pygestor.clidoc > docs/cli.md"


def test_no_module_shadows_an_api_name() -> None:
    """Importing every module of the package must not replace an API function by a submodule
    of the same name (``pygestor.download`` must stay the function)."""
    import importlib
    import pkgutil
    import types

    import pygestor

    for module in pkgutil.walk_packages(pygestor.__path__, "pygestor."):
        skipped = ("pygestor.ui", "pygestor.loaders.torch", "pygestor.__main__")
        if not module.name.startswith(skipped):
            importlib.import_module(module.name)
    for name in pygestor.__all__:
        assert not isinstance(getattr(pygestor, name), types.ModuleType), name
