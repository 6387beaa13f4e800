"""Crash safety: ``kill -9`` of download, remove, delete and metadata edits at random moments.

Each case runs the operation in a real subprocess (this file, run as a script) on a local folder
and on S3 (moto's server), and kills it with SIGKILL at a seeded random moment: after a random
number of finished steps (partitions, removals, edits) plus a random fraction of a step. Then,
before anything repairs it, the storage must hold:

- ``metadata.json`` that parses (never torn);
- no partition file under its final name unless it is complete and right (byte-identical to a
  reference download of the same source);
- no record saying "downloaded" for a missing, short or different file (size and checksum);

and the next run must finish the job: a download re-fetches only the partitions that were not
complete (proved against the files and records found after the crash, and on local storage by
the files' inode numbers), ``verify`` is clean, and the temporary files the killed process left
(next to the final names on local storage, in the local staging folder for object stores) are
gone, by the next run or by ``verify(repair=True)``.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sources import TEST_ROWS, TRAIN_ROWS

TESTS = Path(__file__).resolve().parent
SETTINGS = {"partition_size": "6KB", "row_group_size": 200, "retries": 2,
            "retry_backoff": 0.01, "timeout": 10.0}
WORKERS = 3
NAME = "toy"

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


# ====================================================================== the child process
def child_main(spec: dict[str, Any]) -> None:
    """Run one operation, announcing each finished step on stdout (the parent kills us)."""
    from pygestor.config import Settings
    from pygestor.manager import Manager

    manager = Manager(Settings.load(env={}, data_dir=spec["data_dir"],
                                    storage_options=spec["storage_options"], **SETTINGS))
    manager.dataset(NAME)  # connections and imports warmed up before "ready"

    def say(*words: object) -> None:
        print(*words, flush=True)

    say("ready")
    op = spec["op"]
    if op == "download":
        manager.download(NAME, progress=lambda e: say("step", e.done), max_workers=WORKERS)
    elif op == "remove":
        for batch in spec["batches"]:
            manager.remove(f"{NAME}/{batch[0]}", partitions=batch[1])
            say("step")
    elif op == "delete":
        manager.delete_dataset(NAME)
    elif op == "edit":
        for i in range(spec["edits"]):
            manager.update_metadata(NAME, description=edit_text(i), license=f"license-{i}")
            say("step")
    say("done")


def edit_text(i: int) -> str:
    return f"edit {i:04d} " + "lorem ipsum " * 400


def _safely(check: Any) -> bool:
    try:
        return bool(check())
    except OSError:  # a file renamed while we looked
        return False


@dataclass
class Kill:
    """How a child run ended."""

    steps: int
    finished: bool
    delay: float
    stderr: str = ""


def run_and_kill(spec: dict[str, Any], seed: int, env: dict[str, str], total_steps: int,
                 step_time: float, when: Any = None) -> Kill:
    """Start the child, wait for "ready", let a random number of steps pass plus a random
    fraction of one step (or, with ``when``, until ``when()`` is true: e.g. while a temporary
    file exists), then SIGKILL it."""
    rng = random.Random(seed)
    target = rng.randrange(0, max(total_steps, 1))
    delay = rng.uniform(0.0, step_time)
    errors = tempfile.TemporaryFile()
    proc = subprocess.Popen([sys.executable, str(Path(__file__)), json.dumps(spec)],
                            stdout=subprocess.PIPE, stderr=errors, env=env, text=True)
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line.strip())
        lines.put("eof")

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    steps, finished, ready = 0, False, False
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            try:
                line = lines.get(timeout=deadline - time.monotonic())
            except queue.Empty:
                break
            if line == "ready":
                ready = True
            elif line.startswith("step"):
                steps += 1
            elif line in ("done", "eof"):
                finished = line == "done"
                break
            if ready and steps >= target:
                break
        assert ready, "the child never got ready"
        if when is None:
            time.sleep(delay)
        else:
            limit = time.monotonic() + 20
            while proc.poll() is None and time.monotonic() < limit and not _safely(when):
                time.sleep(0.0005)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        reader.join(10)
    while not lines.empty():
        if lines.get() == "done":
            finished = True
    errors.seek(0)
    stderr = errors.read().decode(errors="replace")
    assert "Traceback" not in stderr, stderr
    if not finished:
        assert proc.returncode == -signal.SIGKILL
    return Kill(steps, finished, delay, stderr)


# ====================================================================== storage roots
@dataclass
class Root:
    """A fresh data_dir (local or S3) and how to look at it without Pygestor's caches."""

    kind: str
    url: str
    options: dict[str, Any]
    tmp: Path
    fs: Any = None
    env: dict[str, str] = field(default_factory=dict)

    def manager(self) -> Any:
        from pygestor.config import Settings
        from pygestor.manager import Manager

        manager = Manager(Settings.load(env={}, data_dir=self.url, storage_options=self.options,
                                        **SETTINGS))
        manager.storage.fs.invalidate_cache()
        return manager

    def files(self) -> dict[str, tuple[int, str]]:
        """Every file below the dataset's folder: relative path -> (size, md5), from a fresh
        listing (on S3 the ETag of an object uploaded in one PUT is the MD5 of its bytes)."""
        found: dict[str, tuple[int, str]] = {}
        if self.kind == "local":
            base = Path(self.url) / NAME
            for path in base.rglob("*") if base.exists() else []:
                if path.is_file():
                    data = path.read_bytes()
                    found[path.relative_to(base).as_posix()] = (len(data), md5(data))
            return found
        base = self.url.split("://", 1)[1] + "/" + NAME
        self.fs.invalidate_cache()
        for path, info in self.fs.find(base, detail=True).items():
            found[path[len(base) + 1:]] = (int(info["size"]), info["ETag"].strip('"'))
        return found

    def read(self, rel: str) -> bytes:
        if self.kind == "local":
            return (Path(self.url) / NAME / rel).read_bytes()
        return self.fs.cat_file(self.url.split("://", 1)[1] + "/" + NAME + "/" + rel)

    def inodes(self) -> dict[str, int]:
        if self.kind != "local":
            return {}
        base = Path(self.url) / NAME
        return {p.relative_to(base).as_posix(): p.stat().st_ino
                for p in base.rglob("*.parquet") if p.is_file()}

    def writing(self) -> bool:
        """True while a partition is being written (a temporary file exists)."""
        if self.kind == "local":
            base = Path(self.url) / NAME
            return any(".tmp-" in p.name for p in base.glob("*/.*"))
        return bool(self.staging_temps())

    def staging_temps(self) -> list[str]:
        folder = self.tmp / "pygestor-staging"
        return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def make_root(kind: str, base: Path, request: pytest.FixtureRequest, tmp: Path) -> Root:
    """A fresh data_dir; ``tmp`` is the temp dir of this process and of the children."""
    env = {**os.environ, "TMPDIR": str(tmp), "PYTHONPATH": str(TESTS),
           "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false"}
    if kind == "local":
        return Root(kind, str(base / "data"), {}, tmp, env=env)
    import s3fs

    server = request.getfixturevalue("s3_server")
    fs = s3fs.S3FileSystem(**server["options"], skip_instance_cache=True,
                           use_listings_cache=False)
    return Root(kind, f"s3://{server['bucket']}/crash-{uuid.uuid4().hex[:10]}",
                server["options"], tmp, fs=fs, env=env)


@pytest.fixture
def private_tmpdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """This process's temp dir (staging folder, object-store locks) = the children's."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


# ====================================================================== the reference
@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from sources import write_toy_source

    return write_toy_source(tmp_path_factory.mktemp("crash-src") / "toy")


@pytest.fixture(scope="module")
def reference(source: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A clean download of the same source: every partition's checksum, size and rows."""
    from pygestor.config import Settings
    from pygestor.manager import Manager

    data = tmp_path_factory.mktemp("crash-ref") / "data"
    manager = Manager(Settings.load(env={}, data_dir=str(data), **SETTINGS))
    manager.add_dataset(NAME, str(source), pipeline="files")
    report = manager.download(NAME, progress=False)
    parts = {f"{s.name}/{p.name}": {
        "checksum": p.checksum, "size": p.size, "rows": p.num_rows,
        "md5": md5((data / NAME / s.name / p.name).read_bytes())}
        for s, p in manager.dataset(NAME).partitions}
    assert len(report.fetched) == len(parts) and manager.verify(NAME).clean
    assert sum(p["rows"] for p in parts.values()) == TRAIN_ROWS + TEST_ROWS
    assert 20 <= len(parts) <= 40, f"{len(parts)} partitions: adjust partition_size"
    return {"parts": parts, "seconds": report.seconds}


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()  # what S3 reports as the ETag


# ====================================================================== the invariants
@dataclass
class State:
    """What the storage holds after a crash, checked against the invariants."""

    complete: set[str]      # partitions whose final file is there (all verified complete)
    recorded: set[str]      # partitions the record says are downloaded
    temps: list[str]        # temporary files in the dataset's folders
    record: Any             # the parsed record, or None if there is none


def check_invariants(root: Root, reference: dict[str, Any]) -> State:
    """The promises that must hold right after a crash, before anything repairs it."""
    from pygestor.catalog import Dataset

    files = root.files()
    record = None
    if "metadata.json" in files:
        raw = root.read("metadata.json")
        json.loads(raw)  # parses: never torn
        record = Dataset.from_json(raw)
    complete: set[str] = set()
    temps: list[str] = []
    for rel, (size, digest) in files.items():
        base = rel.rsplit("/", 1)[-1]
        if base.startswith(".") and ".tmp-" in base:
            temps.append(rel)
            continue
        if rel in ("metadata.json", "metadata.json.lock"):
            continue
        assert rel in reference["parts"], f"unexpected file {rel}"
        expected = reference["parts"][rel]
        assert size == expected["size"] and digest == expected["md5"], \
            f"{rel} is visible under its final name but is not the complete partition"
        complete.add(rel)
    recorded: set[str] = set()
    if record is not None:
        for subset, part in record.partitions:
            key = f"{subset.name}/{part.name}"
            if not part.downloaded:
                continue
            recorded.add(key)
            assert key in complete, f"the catalog says {key} is downloaded; its file is missing"
            # the file is byte-identical to the reference (above), so its sha256 is the
            # reference's: the record must hold exactly that
            assert part.size == files[key][0], f"the catalog's size of {key} is wrong"
            assert part.checksum == reference["parts"][key]["checksum"], \
                f"the catalog's checksum of {key} does not match the file"
            assert part.num_rows == reference["parts"][key]["rows"]
    return State(complete, recorded, temps, record)


def assert_finished(root: Root, manager: Any, reference: dict[str, Any]) -> None:
    """Everything downloaded, verified, byte-identical to the reference, no temp file left."""
    manager.storage.fs.invalidate_cache()
    report = manager.verify(NAME)
    assert report.clean, report.problems
    state = check_invariants(root, reference)
    assert state.complete == state.recorded == set(reference["parts"])
    assert state.temps == [], f"temporary files left: {state.temps}"
    assert root.staging_temps() == []


def register(root: Root, source: Path) -> Any:
    manager = root.manager()
    manager.add_dataset(NAME, str(source), pipeline="files")
    return manager


# ====================================================================== download
LOCAL_SEEDS = [11, 12, 13, 14, 15, 16]
S3_SEEDS = [21, 22, 23]


@pytest.mark.parametrize("kind,seeds", [("local", LOCAL_SEEDS), ("s3", S3_SEEDS)])
def test_kill_download_at_random_moments(kind, seeds, source, reference, tmp_path,
                                         private_tmpdir, request):
    """kill -9 mid-download; the re-run fetches exactly what was not complete, nothing more."""
    outcomes = []
    total = len(reference["parts"])
    for seed in seeds:
        root = make_root(kind, tmp_path / f"seed-{seed}", request, private_tmpdir)
        register(root, source)
        spec = {"op": "download", "data_dir": root.url, "storage_options": root.options}
        kill = run_and_kill(spec, seed, root.env, total,
                            step_time=3 * max(reference["seconds"], 0.05) / total * WORKERS,
                            when=root.writing if seed % 3 == 0 else None)
        state = check_invariants(root, reference)
        stale_staging = root.staging_temps()
        inodes = root.inodes()

        manager = root.manager()
        if seed % 2:  # half the seeds: verify --repair first, then the download
            repaired = manager.verify(NAME, repair=True)
            assert len(repaired.repaired) == len(repaired.problems), repaired
            assert root.staging_temps() == [] and check_invariants(root, reference).temps == []
            adopted_by_verify = check_invariants(root, reference).recorded - state.recorded
            assert adopted_by_verify == state.complete - state.recorded
            report = manager.download(NAME, progress=False, max_workers=WORKERS)
            assert set(report.skipped) == state.complete
            assert report.adopted == []
        else:
            report = manager.download(NAME, progress=False, max_workers=WORKERS)
            assert set(report.skipped) == state.recorded, "recorded partitions are skipped"
            assert set(report.adopted) == state.complete - state.recorded, \
                "complete files the crash left unrecorded are adopted, not fetched again"
        assert not report.failed
        assert not set(report.fetched) & state.complete, \
            f"re-fetched partitions that were complete: {set(report.fetched) & state.complete}"
        assert set(report.fetched) == set(reference["parts"]) - state.complete
        after = root.inodes()
        assert all(after[key] == inodes[key] for key in state.complete if key in inodes), \
            "a complete partition file was rewritten"
        assert_finished(root, manager, reference)
        outcomes.append((seed, kill.steps, kill.finished, len(state.complete),
                         len(state.recorded), len(state.temps) + len(stale_staging)))
    mid = [o for o in outcomes if not o[2] and 0 < o[3] < total]
    assert len(mid) >= len(seeds) // 3, f"too few kills landed mid-download: {outcomes}"
    assert any(o[5] for o in outcomes), f"no kill left a temporary file to clean: {outcomes}"
    assert any(o[3] > o[4] for o in outcomes), \
        f"no kill left a complete but unrecorded file to adopt: {outcomes}"


# ====================================================================== remove
@pytest.mark.parametrize("kind,seeds", [("local", [31, 32, 33]), ("s3", [41, 42])])
def test_kill_remove_at_random_moments(kind, seeds, source, reference, tmp_path,
                                       private_tmpdir, request):
    """kill -9 mid-remove: record first, then file; the re-run finishes the removal."""
    outcomes = []
    for seed in seeds:
        root = make_root(kind, tmp_path / f"seed-{seed}", request, private_tmpdir)
        manager = register(root, source)
        manager.download(NAME, progress=False, max_workers=WORKERS)
        train = sorted(k.split("/", 1)[1] for k in reference["parts"] if k.startswith("train/"))
        doomed = train[: len(train) * 2 // 3]
        batches = [["train", doomed[i:i + 2]] for i in range(0, len(doomed), 2)]
        spec = {"op": "remove", "data_dir": root.url, "storage_options": root.options,
                "batches": batches}
        kill = run_and_kill(spec, seed, root.env, len(batches),
                            step_time=0.02 if kind == "local" else 0.1)
        state = check_invariants(root, reference)
        kept = set(reference["parts"]) - {f"train/{n}" for n in doomed}
        assert kept <= state.recorded, "remove touched partitions it was not asked to"

        manager = root.manager()
        for subset, names in batches:  # the re-run
            manager.remove(f"{NAME}/{subset}", partitions=names)
        state_after = check_invariants(root, reference)
        assert state_after.complete == state_after.recorded == kept
        report = manager.verify(NAME)
        assert report.clean, report.problems
        if kind == "local":  # and the dataset can be completed again (slow on moto)
            manager.download(NAME, progress=False)
            assert_finished(root, manager, reference)
        outcomes.append((seed, kill.steps, kill.finished, len(state.recorded)))
    assert any(not o[2] for o in outcomes), f"every remove finished before the kill: {outcomes}"


# ====================================================================== delete
@pytest.mark.parametrize("kind,seeds", [("local", [51, 52, 53]), ("s3", [61, 62])])
def test_kill_delete_at_random_moments(kind, seeds, source, reference, tmp_path,
                                       private_tmpdir, request):
    """kill -9 mid-delete: the record goes last; the re-run finishes; the name is reusable."""
    outcomes = []
    for seed in seeds:
        root = make_root(kind, tmp_path / f"seed-{seed}", request, private_tmpdir)
        manager = register(root, source)
        manager.download(NAME, progress=False, max_workers=WORKERS)
        started = time.monotonic()
        spec = {"op": "delete", "data_dir": root.url, "storage_options": root.options}
        estimate = 0.03 if kind == "local" else 0.15
        kill = run_and_kill(spec, seed, root.env, 1, step_time=estimate)
        state = check_invariants(root, reference)
        if state.record is None:
            assert state.complete == set(), "the record is gone but partition files remain"
        manager = root.manager()
        if manager.catalog.exists(NAME):  # the re-run
            manager.delete_dataset(NAME)
        assert NAME not in manager.catalog.names()
        assert [f for f in root.files() if not f.endswith(".lock")] == []
        register(root, source)  # the name can be used again, from scratch
        subset = "test" if kind == "s3" else None  # (a smaller download on moto)
        report = manager.download(f"{NAME}/{subset}" if subset else NAME, progress=False,
                                  max_workers=WORKERS)
        wanted = {k for k in reference["parts"] if subset is None or k.startswith(subset)}
        assert set(report.fetched) == wanted and not report.adopted
        if subset is None:
            assert_finished(root, manager, reference)
        else:
            assert manager.verify(NAME).clean
        outcomes.append((seed, kill.finished, state.record is not None, len(state.complete),
                         round(time.monotonic() - started, 2)))
    assert any(not o[1] for o in outcomes), f"every delete finished before the kill: {outcomes}"


# ====================================================================== metadata edits
@pytest.mark.parametrize("kind,seeds", [("local", [71, 72, 73]), ("s3", [81, 82])])
def test_kill_metadata_edits_at_random_moments(kind, seeds, source, reference, tmp_path,
                                               private_tmpdir, request):
    """kill -9 mid-edit: the record is the old or the new one, never torn, nothing else lost."""
    edits = 40
    for seed in seeds:
        root = make_root(kind, tmp_path / f"seed-{seed}", request, private_tmpdir)
        manager = register(root, source)
        manager.download(f"{NAME}/test", progress=False)
        before = check_invariants(root, reference)
        spec = {"op": "edit", "data_dir": root.url, "storage_options": root.options,
                "edits": edits}
        kill = run_and_kill(spec, seed, root.env, edits,
                            step_time=0.01 if kind == "local" else 0.05)
        state = check_invariants(root, reference)
        assert state.recorded == before.recorded, "an edit lost partition records"
        description = state.record.description
        assert description or kill.steps == 0, "a finished edit was lost"
        written = {edit_text(i) for i in range(edits)} | {""}
        assert description in written, "a torn description"
        if description:
            index = int(description.split()[1])
            assert state.record.license == f"license-{index}", "fields of one edit split"
            assert index >= kill.steps - 1, "a finished edit was lost"
        manager = root.manager()
        manager.update_metadata(NAME, description="after the crash")  # the re-run
        assert manager.dataset(NAME).description == "after the crash"
        if kind == "local":  # the next write of the record removed its dead temp files
            assert check_invariants(root, reference).temps == []
        report = manager.verify(NAME, repair=True)
        assert report.problems == [], report.problems
        assert check_invariants(root, reference).recorded == before.recorded
        if kind == "local":
            manager.download(NAME, progress=False)
            assert_finished(root, manager, reference)


def test_verify_repair_removes_temp_files_of_dead_writers(source, reference, tmp_path,
                                                          private_tmpdir, request):
    """Temp files whose writer died (local folders and the object-store staging folder) are
    reported by verify and removed by verify(repair=True); a live writer's are left alone."""
    from pygestor.backends.storage import temp_name

    root = make_root("local", tmp_path / "local", request, private_tmpdir)
    manager = register(root, source)
    manager.download(NAME, progress=False)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    folder = Path(root.url) / NAME
    mine = folder / "train" / temp_name("part-00000.parquet")
    theirs = [folder / "train" / temp_name("part-00001.parquet").replace(
        f"-{os.getpid()}-", f"-{dead}-"), folder / temp_name("metadata.json").replace(
        f"-{os.getpid()}-", f"-{dead}-")]
    for path in [mine, *theirs]:
        path.write_bytes(b"PAR1 half a file")
    report = manager.verify(NAME)
    assert sorted(p.split("/")[-1] for p in report.problems if "temporary" in p) == \
        sorted(p.name for p in theirs)
    repaired = manager.verify(NAME, repair=True)
    assert len(repaired.repaired) == 2
    assert mine.exists() and not any(p.exists() for p in theirs)
    mine.unlink()
    assert manager.verify(NAME).clean


if __name__ == "__main__":
    child_main(json.loads(sys.argv[1]))
