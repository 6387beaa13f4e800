"""Loader benchmark: Pygestor against raw pyarrow and Hugging Face ``datasets`` streaming, on local
disk and from S3 (moto) behind a 30 ms-per-request delay proxy. Run on demand, not in CI:

    python benchmarks/loader.py              # about 3-4 minutes on 2 cores
    python benchmarks/loader.py --rows 200000 --skip-s3   # a quick look

It generates a parquet source (``--rows`` rows, default 1 M: an id, a label, 14 float columns and
a text column, in 8 files), registers and downloads it with Pygestor into a temporary
``data_dir`` (and a 4x copy for the memory check, and once more into a bucket), then runs every
case in its own subprocess (so peak RSS is per case) and prints ONE table:

- rows/s, and the ratio to the raw pyarrow ceiling (``ParquetFile.iter_batches``) for local
  cases, or to a naive sequential s3fs + pyarrow read for the S3 cases;
- time to the first batch, requests made (S3, counted by the proxy);
- peak RSS of the main process (and of the largest DataLoader worker).

Then the issue's targets, measured. ``datasets`` cases are skipped (and said so) when it is
not installed.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

ARROW_BATCH = 65536
TORCH_BATCH = 256
HF_ROWS = 100_000
FEATURES = [f"f{i}" for i in range(14)]
S3_KEY, S3_SECRET = "bench-key", "bench-secret"
BUCKET = "pygestor-bench"


# ============================================================================================
# Data


def generate(root: Path, rows: int, files: int = 8) -> list[Path]:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    words = np.array(["lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing",
                      "elit", "sed", "do", "eiusmod", "tempor", "incididunt", "labore"])
    paths = []
    per_file = -(-rows // files)
    for index in range(files):
        start = index * per_file
        count = min(per_file, rows - start)
        if count <= 0:
            break
        picks = words[rng.integers(0, len(words), size=(count, 6))]
        text = [" ".join(row) for row in picks.tolist()]
        columns = {"id": np.arange(start, start + count, dtype=np.int64),
                   "label": rng.integers(0, 10, count)}
        for name in FEATURES:
            columns[name] = rng.random(count)
        columns["text"] = pa.array(text)
        path = root / f"part-{index:02d}.parquet"
        pq.write_table(pa.table(columns), path, row_group_size=65536, compression="zstd")
        paths.append(path)
    return paths


def register(data_dir: str, name: str, source: Path, options: dict[str, Any] | None = None,
             partition_size: str = "20MB") -> float:
    from pygestor.config import Settings
    from pygestor.manager import Manager

    manager = Manager(Settings.load(data_dir=data_dir, storage_options=options or {},
                                    partition_size=partition_size, row_group_size=65536))
    started = time.perf_counter()
    manager.add_dataset(name, str(source), pipeline="files")
    manager.download(name, progress=False)
    return time.perf_counter() - started


# ============================================================================================
# Cases (run in a subprocess each)


class Run:
    """Counts rows and notes the time of the first batch."""

    def __init__(self) -> None:
        self.started = time.perf_counter()
        self.first: float | None = None
        self.rows = 0

    def add(self, rows: int) -> None:
        if self.first is None:
            self.first = time.perf_counter() - self.started
        self.rows += rows

    def result(self) -> dict[str, Any]:
        seconds = time.perf_counter() - self.started
        steady = seconds - (self.first or 0.0)
        return {"rows": self.rows, "seconds": seconds, "rows_per_s": self.rows / seconds,
                "first_batch": self.first,
                "steady_rows_per_s": self.rows / steady if steady > 0 else None}


def _rows_of(batch: Any) -> int:
    if hasattr(batch, "num_rows"):
        return batch.num_rows
    value = batch["id"] if "id" in batch else next(iter(batch.values()))
    return len(value)


def _pygestor(ctx: dict[str, Any], **settings: Any) -> Any:
    import pygestor

    pygestor.configure(data_dir=ctx["data_dir"], storage_options=ctx["options"], **settings)
    return pygestor


def case_raw_arrow(ctx: dict[str, Any]) -> Run:
    import pyarrow.parquet as pq

    run = Run()
    for path in ctx["paths"]:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=ARROW_BATCH):
            run.add(batch.num_rows)
    return run


def case_raw_torch(ctx: dict[str, Any]) -> Run:
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch

    warnings.simplefilter("ignore")  # from_numpy on read-only arrow buffers
    run = Run()
    for path in ctx["paths"]:
        for batch in pq.ParquetFile(path).iter_batches(batch_size=TORCH_BATCH):
            out = {}
            for name, column in zip(batch.schema.names, batch.columns, strict=True):
                if pa.types.is_string(column.type):
                    out[name] = column.to_pylist()
                else:
                    out[name] = torch.from_numpy(column.to_numpy())
            run.add(len(out["id"]))
    return run


def unverified() -> None:
    """Switch off footer and page checksum verification in this (benchmark) process, to
    measure what verification costs; Pygestor itself always verifies."""
    from pygestor.loaders.stream import RowGroupReader

    RowGroupReader.verify = False


def case_load(ctx: dict[str, Any]) -> Run:
    pygestor = _pygestor(ctx)
    run = Run()
    run.add(pygestor.load_table(ctx["ref"]).num_rows)
    return run


def case_pygestor(ctx: dict[str, Any], fmt: str = "arrow", batch: int = ARROW_BATCH,
                  **settings: Any) -> Run:
    pygestor = _pygestor(ctx, **settings)
    run = Run()
    for item in pygestor.iter_batches(ctx["ref"], batch_size=batch, format=fmt):
        run.add(_rows_of(item))
    return run


MIX = {"mix-web": 0.7, "mix-code": 0.2, "mix-books": 0.1}
MIX_FILES = {"mix-web": range(0, 5), "mix-code": range(5, 7), "mix-books": range(7, 8)}
"""Three datasets made of the benchmark's files (5, 2 and 1 of 8), mixed 0.7 / 0.2 / 0.1."""


def case_loader(ctx: dict[str, Any], workers: int = 0, stack: bool = False,
                shuffle: bool = False, plain: bool = False, mix: bool = False) -> Run:
    """Ready batches of 256 from PygestorDataset, through a plain DataLoader(batch_size=None)
    (PyTorch's default_convert walks every string of the text column) or PygestorDataLoader
    (batches pass through; with workers, ~4096 rows per hand-off in one shared buffer)."""
    import torch
    from torch.utils.data import DataLoader

    _pygestor(ctx)
    from pygestor import PygestorDataLoader, PygestorDataset

    run = Run()
    mixed: dict[str, Any] = {"samples_per_epoch": ctx["rows"]} if mix else {}
    ds = PygestorDataset(MIX if mix else ctx["ref"], batch_size=TORCH_BATCH, shuffle=shuffle,
                         seed=1, stack=FEATURES if stack else None,
                         stack_dtype=torch.float32 if stack else None, **mixed)
    if plain:
        loader: Any = DataLoader(ds, batch_size=None, num_workers=workers)
    else:
        loader = PygestorDataLoader(ds, num_workers=workers)
    for batch in loader:
        run.add(len(batch["id"]))
    return run


def _hf(ctx: dict[str, Any]) -> Any:
    import datasets

    datasets.disable_progress_bars()
    return datasets.load_dataset("parquet", data_files=ctx["paths"], split="train",
                                 streaming=True,
                                 storage_options=ctx["options"] or None)


def case_hf_arrow(ctx: dict[str, Any], limit: int | None = None) -> Run:
    run = Run()
    for batch in _hf(ctx).with_format("arrow").iter(batch_size=ARROW_BATCH):
        run.add(batch.num_rows)
        if limit and run.rows >= limit:
            break
    return run


def case_warm(ctx: dict[str, Any]) -> Run:
    """iter_batches with the filesystem client already made (a second read in one process):
    the loader's own latency, without the one-off cost of creating an s3fs client."""
    case_pygestor(ctx)
    return case_pygestor(ctx)


def case_hf_torch(ctx: dict[str, Any], workers: int = 0, form: str = "batch") -> Run:
    """``.batch(256).with_format("torch")`` (the issue's form) or
    ``.with_format("torch").iter(batch_size=256)`` (HF's fastest torch path); both stop after
    HF_ROWS rows (they are slow: per-row Python on wide rows)."""
    from torch.utils.data import DataLoader

    run = Run()
    hf = _hf(ctx)
    if form == "iter":
        items: Any = hf.with_format("torch").iter(batch_size=TORCH_BATCH)
    else:
        ds = hf.batch(TORCH_BATCH).with_format("torch")
        items = ds if workers == 0 else DataLoader(ds, batch_size=None, num_workers=workers)
    for batch in items:
        run.add(len(batch["id"]))
        if run.rows >= HF_ROWS:
            break
    return run


def case_s3_naive(ctx: dict[str, Any]) -> Run:
    import pyarrow.parquet as pq
    import s3fs

    run = Run()
    fs = s3fs.S3FileSystem(**ctx["options"])
    for url in ctx["paths"]:
        with fs.open(url, "rb") as handle:
            for batch in pq.ParquetFile(handle).iter_batches(batch_size=ARROW_BATCH):
                run.add(batch.num_rows)
    return run


def case_s3_fsspec_parquet(ctx: dict[str, Any]) -> Run:
    import fsspec.parquet
    import pyarrow.parquet as pq

    run = Run()
    for url in ctx["paths"]:
        with fsspec.parquet.open_parquet_file(url, storage_options=ctx["options"],
                                              engine="pyarrow") as handle:
            for batch in pq.ParquetFile(handle).iter_batches(batch_size=ARROW_BATCH):
                run.add(batch.num_rows)
    return run


def case_s3_open_parquet_file(ctx: dict[str, Any]) -> Run:
    """iter_batches with every row group fetched by ``fsspec.parquet.open_parquet_file``
    (the library's footer sampling and column-chunk ranges) instead of the reader's own
    ranged reads at the catalog's footer range; still verified (the footer against its
    recorded checksum, page CRCs, row counts)."""
    import fsspec.parquet
    import pyarrow.parquet as pq

    from pygestor.loaders.stream import RowGroupReader

    def read_remote(self: Any, p: int, i: int, columns: Any, leaves: Any, metadata: Any) -> Any:
        part = self.selection.partitions[p]
        fs = self.selection.storage.fs
        self.requests += 3  # size, footer sample, column chunks
        handle = self._fetch(lambda: fsspec.parquet.open_parquet_file(
            part.path, fs=fs, columns=columns, row_groups=[i], engine="pyarrow",
            footer_sample_size=(part.footer[1] + 8) if part.footer else 1 << 20),
            p, f"row group {i}")
        return pq.ParquetFile(handle, metadata=metadata, page_checksum_verification=True
                              ).read_row_group(i, columns=columns, use_threads=True)

    RowGroupReader._read_remote = read_remote  # type: ignore[method-assign]
    return case_pygestor(ctx)


def case_filter(ctx: dict[str, Any], expression: bool = False) -> Run:
    """iter_batches keeping ids below 5% of the rows (statistics prune the other row groups)."""
    import pyarrow.dataset as pads

    pygestor = _pygestor(ctx)
    limit = ctx.get("rows", 1_000_000) // 20
    filters: Any = (pads.field("id") < limit) if expression else [("id", "<", limit)]
    run = Run()
    for item in pygestor.iter_batches(ctx["ref"], batch_size=ARROW_BATCH, filters=filters):
        run.add(item.num_rows)
    return run


def case_cached_second_epoch(ctx: dict[str, Any]) -> Run:
    cache = tempfile.mkdtemp(prefix="pygestor-bench-cache-")
    try:
        case_pygestor(ctx, cache_dir=cache)  # first epoch fills the cache
        return case_pygestor(ctx, cache_dir=cache)
    finally:
        shutil.rmtree(cache, ignore_errors=True)


CASES: dict[str, tuple[str, Any]] = {
    # name: (label, function)
    "raw_arrow": ("raw pq.ParquetFile.iter_batches (ceiling)", case_raw_arrow),
    "pyg_arrow": ("pygestor.iter_batches arrow", case_pygestor),
    "pyg_arrow_unverified": ("  ... same, checksums not verified [3]",
                             lambda ctx: (unverified(), case_pygestor(ctx))[1]),
    "pyg_load": ("pygestor.load_table", case_load),
    "pyg_load_unverified": ("  ... same, checksums not verified [3]",
                            lambda ctx: (unverified(), case_load(ctx))[1]),
    "pyg_numpy": ("pygestor.iter_batches numpy",
                  lambda ctx: case_pygestor(ctx, fmt="numpy")),
    "raw_torch": ("raw pyarrow -> torch, batches of 256", case_raw_torch),
    "loader0": ("DataLoader(PygestorDataset) 0 workers",
                lambda ctx: case_loader(ctx, plain=True)),
    "pdl0": ("PygestorDataLoader 0 workers", case_loader),
    "pdl0_unverified": ("  ... same, checksums not verified [3]",
                        lambda ctx: (unverified(), case_loader(ctx))[1]),
    "pdl0_stack": ("  ... stacked features", lambda ctx: case_loader(ctx, stack=True)),
    "loader2_stack": ("DataLoader(..) 2 workers, stacked",
                      lambda ctx: case_loader(ctx, 2, True, plain=True)),
    "pdl2": ("PygestorDataLoader 2 workers", lambda ctx: case_loader(ctx, 2)),
    "pdl2_stack": ("  ... stacked features", lambda ctx: case_loader(ctx, 2, True)),
    "hf_arrow": ("HF datasets streaming, arrow", case_hf_arrow),
    "hf_torch": ("HF .batch(256).with_format(torch) [1]", case_hf_torch),
    "hf_torch_iter": ("HF .with_format(torch).iter(256) [1]",
                      lambda ctx: case_hf_torch(ctx, form="iter")),
    "hf_torch2": ("HF .batch(256)..torch, 2 workers [1]", lambda ctx: case_hf_torch(ctx, 2)),
    "loader0_shuffle": ("PygestorDataLoader shuffled, 0 workers",
                        lambda ctx: case_loader(ctx, shuffle=True)),
    "loader0_shuffle_4x": ("  ... 4x data", lambda ctx: case_loader(ctx, shuffle=True)),
    "mix0": ("  ... 3 subsets mixed 0.7/0.2/0.1, 1 M samples",
             lambda ctx: case_loader(ctx, shuffle=True, mix=True)),
    "mix2": ("  ... mixed, 2 workers", lambda ctx: case_loader(ctx, 2, shuffle=True, mix=True)),
    "pdl2_shuffle": ("PygestorDataLoader shuffled, 2 workers",
                     lambda ctx: case_loader(ctx, 2, shuffle=True)),
    "pyg_arrow_4x": ("pygestor.iter_batches arrow, 4x data", case_pygestor),
    "pdl0_4x": ("PygestorDataLoader 0 workers, 4x data", case_loader),
    "s3_naive": ("S3: naive sequential s3fs + pyarrow", case_s3_naive),
    "s3_fsspec": ("S3: fsspec.parquet pre-caching", case_s3_fsspec_parquet),
    "s3_pyg_arrow": ("S3: pygestor.iter_batches arrow", case_pygestor),
    "s3_pyg_unverified": ("S3: ... same, checksums not verified [3]",
                          lambda ctx: (unverified(), case_pygestor(ctx))[1]),
    "s3_warm": ("S3: ... same, warm client [2]", case_warm),
    "s3_loader2": ("S3: PygestorDataLoader 2 workers", lambda ctx: case_loader(ctx, 2, True)),
    "s3_cached": ("S3: iter_batches, 2nd epoch from cache [2]", case_cached_second_epoch),
    "s3_openpq": ("S3: ... via fsspec.parquet.open_parquet_file",
                  case_s3_open_parquet_file),
    "pyg_filter": ("iter_batches, filter id < 5% (pruned row groups)", case_filter),
    "pyg_filter_expr": ("  ... as a pyarrow expression",
                        lambda ctx: case_filter(ctx, expression=True)),

    "s3_hf_arrow": ("S3: HF streaming, arrow [1]",
                    lambda ctx: case_hf_arrow(ctx, limit=HF_ROWS)),
}
LOCAL_ORDER = ["raw_arrow", "pyg_arrow", "pyg_arrow_unverified", "pyg_load",
               "pyg_load_unverified", "pyg_numpy", "pyg_filter", "pyg_filter_expr", "raw_torch",
               "loader0", "pdl0",
               "pdl0_unverified", "pdl0_stack", "loader2_stack", "pdl2", "pdl2_stack",
               "hf_arrow", "hf_torch", "hf_torch_iter", "hf_torch2", "loader0_shuffle",
               "loader0_shuffle_4x", "mix0", "pdl2_shuffle", "mix2", "pdl0_4x", "pyg_arrow_4x"]
S3_ORDER = ["s3_naive", "s3_fsspec", "s3_pyg_arrow", "s3_openpq",
            "s3_pyg_unverified", "s3_warm", "s3_loader2", "s3_cached", "s3_hf_arrow"]
CALLS = {"s3_warm": 2, "s3_cached": 2}  # runs per measurement (requests are divided)
SLOW = {"hf_torch", "hf_torch_iter", "hf_torch2", "loader0"}  # measured once


def selected(name: str, only: str) -> bool:
    """Whether case ``name`` runs with ``--only`` (the ceilings always run: ratios need them)."""
    prefixes = [p.strip() for p in only.split(",") if p.strip()]
    return not prefixes or name in ("raw_arrow", "s3_naive") or \
        any(name.startswith(p) for p in prefixes)


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM: unlike ru_maxrss, not inherited across exec)."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def preload(name: str) -> None:
    """Import what a case needs before its clock starts (imports are not what we measure)."""
    import pyarrow.dataset
    import pyarrow.parquet  # noqa: F401

    import pygestor.loaders.batches
    import pygestor.manager

    if "loader" in name or "pdl" in name or "torch" in name or name.startswith("hf"):
        import pygestor.loaders.torch.loader  # noqa: F401
    if name.startswith("s3"):
        import s3fs  # noqa: F401
    if "hf" in name:
        import datasets  # noqa: F401


def child(name: str, ctx: dict[str, Any]) -> None:
    """Run one case and print its result as JSON: the best of ``ctx['repeat']`` runs, or of
    up to 6 runs within about 3 s for fast cases (one short run says little on shared cores)."""
    preload(name)
    best: dict[str, Any] | None = None
    runs, started = 0, time.perf_counter()
    while runs < ctx.get("repeat", 1) or (
            ctx.get("repeat", 1) > 1 and runs < 6 and time.perf_counter() - started < 3):
        result = CASES[name][1](ctx).result()
        runs += 1
        if best is None or result["rows_per_s"] > best["rows_per_s"]:
            best = result
    assert best is not None
    best["rss_mb"] = peak_rss_mb()
    # largest DataLoader worker (forked: counts pages shared with the parent it touched)
    best["worker_rss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    best["runs"] = runs
    print("RESULT " + json.dumps(best), flush=True)
    os._exit(0)  # some libraries' threads crash at interpreter exit; the result is out


# ============================================================================================
# Shuffle quality


QUALITY_ROWS = 400_000
QUALITY_SEEDS = (0, 1)

HF_SHUFFLE = """
import json, sys
import datasets
datasets.disable_progress_bars()
paths, buffer, seed = json.loads(sys.argv[1])
ds = datasets.load_dataset("parquet", data_files=paths, split="train", streaming=True)
ds = ds.select_columns(["id"]).shuffle(seed=seed, buffer_size=buffer)
print(json.dumps([row["id"] for row in ds]))
"""

MOSAIC_SHUFFLE = """
import importlib.util, json, os, sys, types
import numpy as np
# Mosaic's shuffle algorithms need numpy only; load them without the package's __init__, which
# imports torch and cloud clients.
root = os.path.dirname(importlib.util.find_spec("streaming").origin)
for name, path in (("streaming", root), ("streaming.base", os.path.join(root, "base"))):
    module = types.ModuleType(name)
    module.__path__ = [path]
    sys.modules[name] = module
from streaming.base.shuffle import get_shuffle
sizes, algo, block, seed = json.loads(sys.argv[1])
order = get_shuffle(algo, np.asarray(sizes, dtype=np.int64), 1, seed, 0, block)
print(json.dumps(order.tolist()))
"""


def _other_python(python: str | None, script: str, argument: Any) -> list[int] | str:
    """Run ``script`` with another interpreter (its own venv): the ids it prints, or why not."""
    if not python or not Path(python).exists():
        return "not installed"
    proc = subprocess.run([python, "-c", script, json.dumps(argument)], capture_output=True,
                          text=True, timeout=600)
    if proc.returncode != 0:
        tail = (proc.stderr or "").strip().splitlines()[-1:] or ["failed"]
        return f"failed: {tail[0][:60]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _ours(data_dir: str, ref: str, workers: int = 0, **kwargs: Any) -> list[int]:
    """Ids of one shuffled epoch of PygestorDataset (every column read, batches of 256)."""
    from pygestor import PygestorDataLoader, PygestorDataset
    from pygestor.config import Settings
    from pygestor.manager import Manager

    manager = Manager(Settings.load(data_dir=data_dir))
    ids: list[int] = []
    for seed in QUALITY_SEEDS:
        ds = PygestorDataset(ref, batch_size=TORCH_BATCH, shuffle=True, seed=seed,
                             format="arrow", manager=manager, **kwargs)
        for batch in PygestorDataLoader(ds, num_workers=workers):
            ids += batch.column("id").to_pylist()
    return ids


def quality(work: Path, data_dir: str, args: argparse.Namespace) -> list[tuple[str, str]]:
    """Batch diversity of every shuffle on 400 000 rows stored sorted by id, in 4 files: the
    distinct 1 024-row blocks of the stored order a batch of 256 touches, as a share of what a
    uniform permutation touches (:func:`pygestor.loaders.shuffle.batch_diversity`)."""
    from pygestor.config import Settings
    from pygestor.loaders.shuffle import batch_diversity
    from pygestor.manager import Manager

    paths = generate(work / "q-src", QUALITY_ROWS, files=4)
    qdir = str(work / "q-data")
    register(qdir, "sorted", work / "q-src", partition_size="16MB")
    selection = Manager(Settings.load(data_dir=qdir)).select("sorted")
    shards = [sum(p.row_groups) for p in selection.partitions]

    def score(ids: list[int] | str, total: int = QUALITY_ROWS) -> str:
        if isinstance(ids, str):
            return ids
        runs = len(ids) // total
        values = [batch_diversity(ids[k * total:(k + 1) * total]) for k in range(runs)]
        return f"{sum(values) / len(values):.2f}"

    rows = [("Pygestor, defaults (shuffle_memory 128 MB), 0 workers", score(_ours(qdir, "sorted"))),
            ("  ... 2 workers", score(_ours(qdir, "sorted", workers=2))),
            ("  ... the 1 M-row benchmark data (8 files)",
             score(_ours(data_dir, "bench"), total=args.rows)),
            ("  ... shuffle_buffer=8192 (the window before 0.4)",
             score(_ours(qdir, "sorted", shuffle_buffer=8192)))]
    for buffer in (1000, 10_000):
        ids: list[int] | str = []
        for seed in QUALITY_SEEDS:
            got = _other_python(args.hf_python, HF_SHUFFLE, [[str(p) for p in paths], buffer,
                                                            seed])
            ids = got if isinstance(got, str) else ids + got  # type: ignore[operator]
            if isinstance(ids, str):
                break
        rows.append((f"Hugging Face streaming .shuffle(buffer_size={buffer})", score(ids)))
    for algo in ("py1e", "py1br", "py1s", "py2s"):
        ids = []
        for seed in QUALITY_SEEDS:
            got = _other_python(args.mosaic_python, MOSAIC_SHUFFLE, [shards, algo, 1 << 18,
                                                                    seed])
            ids = got if isinstance(got, str) else ids + got  # type: ignore[operator]
            if isinstance(ids, str):
                break
        rows.append((f"MosaicML streaming {algo} (block 262 144, same shards)", score(ids)))
    import numpy as np

    uniform = np.random.default_rng(0).permutation(QUALITY_ROWS).tolist()
    rows.append(("a uniform permutation", score(uniform)))
    return rows


# ============================================================================================
# Driver


def run_case(name: str, ctx: dict[str, Any], proxy: Any = None,
             timeout: float = 300) -> dict[str, Any]:
    before = proxy.requests if proxy is not None else 0
    proc = subprocess.run([sys.executable, __file__, "--case", name, "--ctx", json.dumps(ctx)],
                          capture_output=True, text=True, timeout=timeout)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if not lines:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"error": tail[0][:90]}
    result = json.loads(lines[-1][len("RESULT "):])
    if proxy is not None:
        runs = max(result.get("runs", 1), 1) * CALLS.get(name, 1)
        result["requests"] = (proxy.requests - before) // runs
    return result


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_moto() -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    local = Path(sys.executable).parent / "moto_server"  # the venv's, if there is one
    moto = str(local) if local.exists() else shutil.which("moto_server") or "moto_server"
    proc = subprocess.Popen([moto, "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 20
    while time.time() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return proc, port
        time.sleep(0.1)
    proc.kill()
    raise RuntimeError("moto_server did not start")


def s3_options(port: int) -> dict[str, Any]:
    return {"key": S3_KEY, "secret": S3_SECRET,
            "client_kwargs": {"endpoint_url": f"http://127.0.0.1:{port}"}}


def fmt_rate(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value / 1e6:.2f} M" if value >= 1e5 else f"{value / 1e3:.0f} k"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--skip-s3", action="store_true")
    parser.add_argument("--skip-hf", action="store_true")
    parser.add_argument("--repeat", type=int, default=2, help="runs per local case (best)")
    parser.add_argument("--delay", type=float, default=0.030)
    parser.add_argument("--hf-python", default=os.environ.get("PYGESTOR_BENCH_HF_PYTHON"),
                        help="a Python with `datasets` installed (its own venv), for the "
                             "shuffle-quality table")
    parser.add_argument("--mosaic-python",
                        default=os.environ.get("PYGESTOR_BENCH_MOSAIC_PYTHON"),
                        help="a Python with `mosaicml-streaming` installed (its own venv)")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--only", default="",
                        help="comma-separated case name prefixes to run (default: all)")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--ctx", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        child(args.case, json.loads(args.ctx))
        return

    import importlib.util

    has_hf = importlib.util.find_spec("datasets") is not None and not args.skip_hf
    work = Path(tempfile.mkdtemp(prefix="pygestor-bench-"))
    moto_proc = None
    proxy = None
    notes: list[str] = []
    try:
        started = time.perf_counter()
        source = generate(work / "src", args.rows)
        four = work / "src4"
        four.mkdir()
        for copy in range(4):
            for path in source:
                os.link(path, four / f"c{copy}-{path.name}")  # a symlink out is not followed
        data_dir = str(work / "data")
        seconds = register(data_dir, "bench", work / "src")
        seconds4 = register(data_dir, "bench4x", four) \
            if any(selected(n, args.only) for n in LOCAL_ORDER if n.endswith("_4x")) else 0.0
        if any(selected(n, args.only) for n in LOCAL_ORDER if n.startswith("mix")):
            for name, files in MIX_FILES.items():
                folder = work / name
                folder.mkdir()
                for index in files:
                    os.link(source[index], folder / source[index].name)
                register(data_dir, name, folder)
        size = sum(p.stat().st_size for p in (work / "data" / "bench").rglob("*.parquet"))
        print(f"data: {args.rows:,} rows, {size / 1e6:.0f} MB of parquet in "
              f"{len(list((work / 'data' / 'bench').rglob('*.parquet')))} partitions "
              f"(generated + registered + downloaded in {time.perf_counter() - started:.0f}s; "
              f"download {seconds:.0f}s, 4x {seconds4:.0f}s)", flush=True)

        def local_ctx(ref: str) -> dict[str, Any]:
            sys.path.insert(0, str(HERE.parent))
            import pygestor

            pygestor.configure(data_dir=data_dir)
            return {"data_dir": data_dir, "options": {}, "ref": ref, "rows": args.rows,
                    "paths": pygestor.urls(ref)["urls"], "repeat": args.repeat}

        ctx1 = local_ctx("bench")
        ctx4 = local_ctx("bench4x") if seconds4 else ctx1
        results: dict[str, dict[str, Any]] = {}
        order = [name for name in LOCAL_ORDER if selected(name, args.only)]
        for name in order:
            if name.startswith("hf") and not has_hf:
                results[name] = {"error": "datasets not installed"}
                continue
            ctx = ctx4 if name.endswith("_4x") else ctx1
            if name.endswith("_4x") or name in SLOW:
                ctx = {**ctx, "repeat": 1}
            results[name] = run_case(name, ctx)
            print(f"  {name}: {fmt_rate(results[name].get('rows_per_s'))} rows/s", flush=True)

        s3_order: list[str] = []
        if not args.skip_s3 and any(selected(name, args.only) for name in S3_ORDER):
            from delayproxy import DelayProxy

            moto_proc, moto_port = start_moto()
            import s3fs

            s3fs.S3FileSystem(**s3_options(moto_port)).mkdir(BUCKET)
            s3_dir = f"s3://{BUCKET}/data"
            seconds = register(s3_dir, "bench", work / "src", s3_options(moto_port))
            print(f"S3: registered + downloaded into moto in {seconds:.0f}s", flush=True)
            proxy = DelayProxy(moto_port, delay=args.delay).start()
            import pygestor

            pygestor.configure(data_dir=s3_dir, storage_options=s3_options(moto_port))
            urls = pygestor.urls("bench")["urls"]
            s3ctx = {"data_dir": s3_dir, "options": s3_options(proxy.port), "ref": "bench",
                     "paths": urls, "repeat": 1, "rows": args.rows}
            s3_order = [name for name in S3_ORDER if selected(name, args.only)]
            for name in s3_order:
                if name.startswith("s3_hf") and not has_hf:
                    results[name] = {"error": "datasets not installed"}
                    continue
                results[name] = run_case(name, s3ctx, proxy)
                print(f"  {name}: {fmt_rate(results[name].get('rows_per_s'))} rows/s", flush=True)
        shuffles = [] if args.skip_quality else quality(work, data_dir, args)
        report(results, order, s3_order, args, notes)
        if shuffles:
            print()
            print(f"Shuffle quality: {QUALITY_ROWS:,} rows stored sorted by id (4 files), "
                  f"batches of {TORCH_BATCH}, seeds {QUALITY_SEEDS}: batch diversity = "
                  "distinct 1 024-row blocks a batch touches / what a uniform permutation "
                  "touches")
            for label, value in shuffles:
                print(f"  {label:60} {value}")
    finally:
        if proxy is not None:
            proxy.stop()
        if moto_proc is not None:
            moto_proc.kill()
        shutil.rmtree(work, ignore_errors=True)


def report(results: dict[str, dict[str, Any]], order: list[str], s3_order: list[str],
           args: argparse.Namespace, notes: list[str]) -> None:
    ceiling = results["raw_arrow"].get("rows_per_s")
    naive = results.get("s3_naive", {}).get("rows_per_s")
    header = (f"{'case':44} {'rows/s':>8} {'ratio':>6} {'vs':>7} {'1st batch':>9} "
              f"{'requests':>8} {'RSS MB':>7} {'worker':>7}")
    print()
    print(f"Loader benchmark: {args.rows:,} rows, {os.cpu_count()} cores, "
          f"{args.delay * 1000:.0f} ms/request on S3")
    print(header)
    print("-" * len(header))
    for name in order + s3_order:
        label = CASES[name][0]
        result = results.get(name, {})
        if "error" in result:
            print(f"{label:44} {'(' + result['error'] + ')'}")
            continue
        base, base_name = (naive, "naive") if name.startswith("s3") else (ceiling, "ceiling")
        rate = result["rows_per_s"]
        ratio = f"{rate / base:.2f}x" if base else "-"
        first = f"{result['first_batch']:.3f}s" if result.get("first_batch") is not None else "-"
        requests = str(result.get("requests", "-"))
        worker = f"{result['worker_rss_mb']:.0f}" if result.get("worker_rss_mb") else "-"
        print(f"{label:44} {fmt_rate(rate):>8} {ratio:>6} {base_name:>7} {first:>9} "
              f"{requests:>8} {result['rss_mb']:>7.0f} {worker:>7}")
    print(f"[1] stops after {HF_ROWS:,} rows (per-row Python; a full pass would take minutes)")
    print("[2] second pass in the same process: [warm] the s3fs client exists already "
          "(time to first batch without its ~0.2 s creation); [cache] partitions copied to "
          "a local cache by the first pass")
    print("[3] RowGroupReader.verify switched off in that case's process: what verifying "
          "footers and page checksums costs (Pygestor always verifies)")
    print()
    targets(results)
    for note in notes:
        print(note)


def _fmt(value: float | None) -> str:
    return "not measured" if value is None else f"{value:.2f}x"


def targets(results: dict[str, dict[str, Any]]) -> None:
    def rate(name: str) -> float | None:
        return results.get(name, {}).get("rows_per_s")

    def check(label: str, value: float | None, goal: float, unit: str = "x",
              lower: bool = False) -> None:
        if value is None:
            print(f"  {label}: not measured")
            return
        ok = value <= goal if lower else value >= goal
        sign = "<" if lower else ">="
        print(f"  [{'met ' if ok else 'MISS'}] {label}: {value:.2f}{unit} (target {sign} "
              f"{goal}{unit})")

    def ratio(a: str, b: str) -> float | None:
        x, y = rate(a), rate(b)
        return x / y if x and y else None

    print("Targets:")
    check("iter_batches arrow / pyarrow ceiling", ratio("pyg_arrow", "raw_arrow"), 0.9)
    check("verified / unverified: iter_batches", ratio("pyg_arrow", "pyg_arrow_unverified"),
          0.95)
    check("verified / unverified: load_table", ratio("pyg_load", "pyg_load_unverified"), 0.95)
    check("verified / unverified: PygestorDataLoader 0 workers",
          ratio("pdl0", "pdl0_unverified"), 0.95)
    check("verified / unverified: S3 iter_batches", ratio("s3_pyg_arrow", "s3_pyg_unverified"),
          0.95)
    plain0, best0 = rate("loader0"), rate("pdl0")
    raw_torch = rate("raw_torch")
    hf_torch = max(filter(None, [rate("hf_torch"), rate("hf_torch_iter")]), default=None)
    hf2 = rate("hf_torch2")
    check("PygestorDataLoader 0 workers / raw pyarrow->torch",
          best0 / raw_torch if best0 and raw_torch else None, 0.8)
    check("  plain DataLoader(PygestorDataset) 0 workers / raw pyarrow->torch",
          plain0 / raw_torch if plain0 and raw_torch else None, 0.8)
    check("PygestorDataLoader 0 workers / best HF torch form",
          best0 / hf_torch if best0 and hf_torch else None, 3.0)
    best2 = max(filter(None, [rate("pdl2"), rate("pdl2_stack")]), default=None)
    check("PygestorDataLoader 2 workers / HF torch 2 workers",
          best2 / hf2 if best2 and hf2 else None, 2.0)
    check("  plain DataLoader 2 workers stacked / HF torch 2 workers",
          rate("loader2_stack") / hf2 if rate("loader2_stack") and hf2 else None, 2.0)
    check("PygestorDataLoader shuffled / unshuffled, 0 workers",
          ratio("loader0_shuffle", "pdl0"), 0.9)
    check("  ... 4x data", ratio("loader0_shuffle_4x", "pdl0_4x"), 0.9)

    def steady(name: str) -> float | None:
        return results.get(name, {}).get("steady_rows_per_s")

    shuffled, plain = steady("loader0_shuffle"), steady("pdl0")
    check("  ... after the first batch (the first window is read whole before it)",
          shuffled / plain if shuffled and plain else None, 0.9)
    print(f"  3-subset mix / one source, shuffled, 0 workers: "
          f"{_fmt(ratio('mix0', 'loader0_shuffle'))}; 2 workers: "
          f"{_fmt(ratio('mix2', 'pdl2_shuffle'))}")
    for name, base in (("pyg_arrow_4x", None), ("loader0_shuffle_4x", "loader0_shuffle")):
        one = results.get(base or "pyg_arrow", {}).get("rss_mb")
        four = results.get(name, {}).get("rss_mb")
        check(f"RSS growth 1x -> 4x data, {CASES[base or 'pyg_arrow'][0].strip()}",
              four - one if one and four else None, 100, " MB", lower=True)
    first = results.get("s3_pyg_arrow", {}).get("first_batch")
    check("S3 time to first batch, iter_batches, new process", first, 0.3, " s", lower=True)
    check("S3 time to first batch, iter_batches, warm client",
          results.get("s3_warm", {}).get("first_batch"), 0.3, " s", lower=True)
    check("  naive s3fs + pyarrow, new process (for comparison)",
          results.get("s3_naive", {}).get("first_batch"), 0.3, " s", lower=True)
    check("S3 iter_batches / naive sequential s3fs + pyarrow",
          ratio("s3_pyg_arrow", "s3_naive"), 2.0)


if __name__ == "__main__":
    main()
