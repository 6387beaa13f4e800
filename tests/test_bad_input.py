"""Bad input, table-driven: one clear error, a non-zero CLI exit, no traceback, nothing changed.

Each row is tried through the Python API (the exception type and message) and, where the
command line can express it, through the real ``pygestor`` script (exit code, one line on
stderr). Before and after each case the whole data_dir is hashed: it must not change.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pygestor import errors
from pygestor.config import Settings
from pygestor.manager import Manager

DATA = Path(__file__).parent / "data"
PYGESTOR = str(Path(sys.executable).parent / "pygestor")


@dataclass
class Case:
    id: str
    api: Callable[[Manager, Path], Any] | None
    cli: list[str] | None
    error: type[Exception]
    message: str


def _loader(fn: str, *args: Any, **kwargs: Any) -> Callable[[Manager, Path], Any]:
    def run(manager: Manager, _: Path) -> Any:
        from pygestor.loaders import arrow, batches

        module = batches if fn == "iter_batches" else arrow
        result = getattr(module, fn)(manager, *args, **kwargs)
        return list(result) if fn == "iter_batches" else result
    return run


def _add(name: str, url: str, **options: Any) -> Callable[[Manager, Path], Any]:
    return lambda m, src: m.add_dataset(name, url.format(src=src), **options)


LONG = "x" * 10_000
CASES = [
    Case("unknown dataset", lambda m, _: m.info("nope"), ["info", "nope"],
         errors.NotFoundError, "no dataset 'nope'"),
    Case("unknown subset", lambda m, _: m.info("toy/tran"), ["info", "toy/tran"],
         errors.NotFoundError, "did you mean 'train'"),
    Case("unknown partition", lambda m, _: m.download("toy/train", ["part-9.parquet"],
                                                      progress=False),
         ["download", "toy/train", "-p", "part-9.parquet"], errors.NotFoundError,
         "no partition 'part-9.parquet'"),
    Case("ambiguous reference", lambda m, _: m.info("amb/x"), ["info", "amb/x"],
         errors.AmbiguousReferenceError, "matches 2 subsets"),
    Case("dot-dot name", _add("../evil", "{src}/ok"), ["add", "../evil", "/tmp"],
         errors.InvalidNameError, "cannot leave their folder"),
    Case("absolute name", _add("/etc/evil", "{src}/ok"), ["add", "/etc/evil", "/tmp"],
         errors.InvalidNameError, "absolute path"),
    Case("backslash name", _add("a\\b", "{src}/ok"), ["add", "a\\b", "/tmp"],
         errors.InvalidNameError, "backslash"),
    Case("NUL in name", _add("a\x00b", "{src}/ok"), None, errors.InvalidNameError,
         "control characters"),
    Case("10 000-character name", _add(LONG, "{src}/ok"), ["add", LONG, "/tmp"],
         errors.InvalidNameError, "limit is 200"),
    Case("dot-dot reference", lambda m, _: m.info("toy/../../etc"), ["info", "toy/../../etc"],
         errors.InvalidNameError, "cannot leave their folder"),
    Case("unknown pipeline", _add("x", "{src}/ok", pipeline="nope"),
         ["add", "x", "/tmp", "--pipeline", "nope"], errors.ConfigError,
         "unknown pipeline 'nope'"),
    Case("unsupported URL scheme", _add("x", "gopher2://host/data"),
         ["add", "x", "gopher2://host/data"], errors.SourceError, "unsupported URL scheme"),
    Case("unreachable host", _add("x", "http://127.0.0.1:9/data.csv"),
         ["add", "x", "http://127.0.0.1:9/data.csv"], errors.SourceError, "127.0.0.1:9"),
    Case("loopback host not allowed", _add("x", "http://127.0.0.2:9/data.csv"),
         ["add", "x", "http://127.0.0.2:9/data.csv"], errors.PolicyError,
         "loopback address .* allowed_hosts"),
    Case("cloud metadata address", _add("x", "http://169.254.169.254/latest/meta-data"),
         ["add", "x", "http://169.254.169.254/latest/meta-data"], errors.PolicyError,
         "link-local address"),
    Case("password in the source URL", _add("x", "http://bob:PASSWORD@127.0.0.1:9/t.csv"),
         ["add", "x", "http://bob:PASSWORD@127.0.0.1:9/t.csv"], errors.PolicyError,
         "user name or password; remove it .*netrc"),
    Case("token in the source URL", _add("x", "https://example.com/t.csv?token=SECRET1"),
         ["add", "x", "https://example.com/t.csv?token=SECRET1"], errors.PolicyError,
         "credential in its query"),
    Case("presigned URL", _add("x", "https://b.s3.amazonaws.com/k.csv?X-Amz-Signature=ab12"),
         None, errors.PolicyError, "credential in its query \\(X-Amz-Signature"),
    Case("misspelt option", _add("x", "{src}/ok", delimeter=";"),
         ["add", "x", "ok", "-o", "delimeter=;"], errors.ConfigError,
         "unknown option\\(s\\) delimeter .* it understands .*delimiter"),
    Case("option meant for another pipeline", _add("x", "{src}/ok", revision="main"),
         ["add", "x", "ok", "--revision", "main"], errors.ConfigError,
         "unknown option\\(s\\) revision for the files pipeline"),
    Case("unknown schema mode", _add("x", "{src}/ok", schema="unoin"), None, errors.ConfigError,
         "schema must be 'strict' or 'union'"),
    Case("unknown encoding", _add("x", "{src}/ok", encoding="klingon"), None, errors.SourceError,
         "unknown encoding 'klingon'"),
    Case("CSV files with other columns", _add("x", "{src}/columns"), ["add", "x", "columns"],
         errors.SourceError, "2.csv does not have the columns of .*1.csv: it lacks 'b' and has "
         "'c'.*schema='union'"),
    Case("CSV columns of types that do not reconcile", _add("x", "{src}/types"), None,
         errors.SourceError, "column 'a' is int64 in file .*1.csv but string in .*2.csv"),
    Case("missing local path", _add("x", "{src}/does-not-exist"),
         ["add", "x", "/nonexistent/folder"], errors.SourceError, "does not exist"),
    Case("empty folder", _add("x", "{src}/empty"), ["add", "x", "empty"], errors.SourceError,
         "no parquet, CSV or JSON files"),
    Case("unsupported files only", _add("x", "{src}/text"), None, errors.SourceError,
         "no parquet, CSV or JSON files"),
    Case("corrupt parquet (bad page checksums)",
         lambda m, src: m.download("corrupt", progress=False), ["download", "corrupt"],
         errors.SourceError, "CRC checksum verification failed"),
    Case("truncated parquet", _add("x", "{src}/truncated"), None, errors.SourceError,
         "not a readable parquet file"),
    Case("ragged CSV", _add("x", "{src}/ragged"), ["add", "x", "ragged"], errors.SourceError,
         "Expected 3 columns, got 4"),
    Case("ragged CSV past the schema sample", lambda m, _: m.download("ragged-late",
                                                                      progress=False),
         ["download", "ragged-late"], errors.SourceError, "Expected 3 columns, got 4"),
    Case("dataset registered twice", _add("toy", "{src}/ok"), None, errors.AlreadyExistsError,
         "already registered"),
    Case("partitions for a multi-subset reference",
         lambda m, _: m.download("toy", ["part-00000.parquet"], progress=False),
         ["download", "toy", "-p", "part-00000.parquet"], errors.ConfigError,
         "name one subset"),
    Case("column that does not exist", _loader("load", "toy/train", columns=["nope"]),
         ["head", "toy/train", "--columns", "nope"], errors.ConfigError, "unknown column"),
    Case("filter on a missing column", _loader("load", "toy/train", filters=[("nope", "=", 1)]),
         None, errors.ConfigError, "unknown column 'nope'"),
    Case("filter with a bad operator", _loader("load", "toy/train", filters=[("id", "~", 1)]),
         None, errors.ConfigError, "bad filter operator"),
    Case("filter of the wrong shape", _loader("load", "toy/train", filters=[("id", 1)]),
         None, errors.ConfigError, "expected \\(column, op, value\\)"),
    Case("filter value of the wrong type",
         _loader("load", "toy/train", filters=[("id", "<", "abc")]), None, errors.ConfigError,
         "cannot apply filters"),
    Case("batch_size 0", _loader("iter_batches", "toy/train", batch_size=0), None,
         errors.ConfigError, "batch_size must be a positive integer"),
    Case("negative batch_size", _loader("iter_batches", "toy/train", batch_size=-5), None,
         errors.ConfigError, "batch_size must be a positive integer"),
    Case("unknown batch format", _loader("iter_batches", "toy/train", format="xml"), None,
         errors.ConfigError, "unknown format 'xml'"),
    Case("not downloaded yet", _loader("load", "toy/test"), ["head", "toy/test"],
         errors.NotDownloadedError, "pygestor download toy/test"),
    Case("negative row count", _loader("sample", "toy/train", -1),
         ["head", "toy/train", "-n", "-3"], errors.ConfigError, "must be >= 0"),
    Case("edit a field that is not editable",
         lambda m, _: m.update_metadata("toy", pipeline="evil"), None, errors.ConfigError,
         "cannot edit pipeline"),
    Case("bad partition_size option", _add("x", "{src}/ok", partition_size="huge"), None,
         errors.ConfigError, "partition_size"),
    Case("plan with a bad world size", None,
         ["plan", "toy/train", "--world-size", "0"], errors.ConfigError, "--world-size"),
]


def _tree_digest(root: Path) -> dict[str, str]:
    """Every file of the data_dir (but lock files, and the jobs' own records: a failed job is
    recorded as failed, which is not a change of data or catalog)."""
    digest = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.name.endswith(".lock") and \
                "_pygestor/jobs" not in path.as_posix():
            digest[str(path.relative_to(root))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return digest


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Manager, Path, Path]:
    from sources import write_toy_source

    base = tmp_path_factory.mktemp("bad-input")
    src = base / "src"
    write_toy_source(src / "ok")
    (src / "empty").mkdir()
    (src / "text").mkdir()
    (src / "text" / "notes.txt").write_text("not data\n")
    (src / "truncated").mkdir()
    raw = (DATA / "alltypes_plain.parquet").read_bytes()
    (src / "truncated" / "t.parquet").write_bytes(raw[: len(raw) // 2])
    (src / "corrupt").mkdir()
    shutil.copy(DATA / "datapage_v1-corrupt-checksum.parquet", src / "corrupt")
    (src / "ragged").mkdir()
    (src / "ragged" / "r.csv").write_text("a,b,c\n1,2,3\n4,5,6,7\n")
    (src / "columns").mkdir()
    (src / "columns" / "1.csv").write_text("a,b\n1,2\n")
    (src / "columns" / "2.csv").write_text("a,c\n3,4\n")
    (src / "types").mkdir()
    (src / "types" / "1.csv").write_text("a,b\n1,2\n")
    (src / "types" / "2.csv").write_text("b,a\n3,four\n")
    (src / "ragged-late").mkdir()
    (src / "ragged-late" / "r.csv").write_text("a,b,c\n" + "1,2,3\n" * 5 + "4,5,6,7\n")
    for sub in ("x/a", "x/b"):
        (src / "amb" / sub).mkdir(parents=True)
        (src / "amb" / sub / "d.csv").write_text("id\n1\n")
    data_dir = base / "data"
    manager = Manager(Settings.load(data_dir=str(data_dir), partition_size="60KB",
                                    retries=1, allowed_hosts=["127.0.0.1"], env={}))
    manager.add_dataset("toy", str(src / "ok"), pipeline="files")
    manager.download("toy/train", progress=False)
    manager.add_dataset("amb", str(src / "amb"), pipeline="files")
    manager.add_dataset("corrupt", str(src / "corrupt"), pipeline="files")
    manager.add_dataset("ragged-late", str(src / "ragged-late"), pipeline="files",
                        infer_bytes=12)
    return manager, src, data_dir


def test_there_are_at_least_30_cases():
    assert len(CASES) >= 30


@pytest.mark.parametrize("case", [c for c in CASES if c.api], ids=lambda c: c.id)
def test_api(world, case):
    manager, src, data_dir = world
    before = _tree_digest(data_dir)
    with pytest.raises(errors.PygestorError) as info:
        case.api(manager, src)
    assert isinstance(info.value, case.error), f"{type(info.value).__name__}: {info.value}"
    import re

    assert re.search(case.message, str(info.value)), str(info.value)
    assert "\n" not in str(info.value).strip(), "one line"
    for secret in ("PASSWORD", "SECRET1", "ab12"):
        assert secret not in str(info.value), "a credential is never quoted"
    assert _tree_digest(data_dir) == before, "storage or catalog changed"


@pytest.mark.parametrize("case", [c for c in CASES if c.cli], ids=lambda c: c.id)
def test_cli(world, case):
    import re

    _, src, data_dir = world
    before = _tree_digest(data_dir)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYGESTOR_")}
    env["PYGESTOR_ALLOWED_HOSTS"] = "127.0.0.1"
    result = subprocess.run([PYGESTOR, "--data-dir", str(data_dir), *case.cli],
                            capture_output=True, text=True, env=env, timeout=120,
                            cwd=src)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert re.search(case.message, lines[0]), lines[0]
    for secret in ("PASSWORD", "SECRET1"):
        assert secret not in result.stderr + result.stdout, "a credential is never printed"
    assert _tree_digest(data_dir) == before, "storage or catalog changed"
