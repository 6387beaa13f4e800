"""Resume in a new process: a process reads k batches, saves the state (JSON) and dies; a NEW
process loads it and reads the rest. The ids of both halves must be exactly one epoch (and, with
the same number of workers, the very order of an uninterrupted epoch); the next epoch is whole.

Both halves run as separate processes (this file run as a script, one process per half for all
cases); the uninterrupted reference runs in the test process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from test_loaders import (  # noqa: E402
    MIX,
    TOTAL,
    build,
    ids_of,
    make_manager,
    write_mix_sources,
    write_source,
)

CASES: dict[str, dict[str, Any]] = {
    # rows batched by the loader, shuffled, main process only
    "rows-0": {"workers": 0, "resume_workers": 0, "batch_size": None, "loader_batch": 32,
               "stop": 41, "epoch": 2},
    # the same with two workers
    "rows-2": {"workers": 2, "resume_workers": 2, "batch_size": None, "loader_batch": 32,
               "stop": 41, "epoch": 2},
    # ready batches with two workers, resumed with none
    "batches-2-0": {"workers": 2, "resume_workers": 0, "batch_size": 48, "loader_batch": None,
                    "stop": 17, "epoch": 0},
    # ready batches, no workers, resumed with two
    "batches-0-2": {"workers": 0, "resume_workers": 2, "batch_size": 48, "loader_batch": None,
                    "stop": 30, "epoch": 5},
    # a weighted mix of three subsets (one repeats), ready batches, two workers
    "mix-2": {"workers": 2, "resume_workers": 2, "batch_size": 40, "loader_batch": None,
              "stop": 23, "epoch": 1, "mix": True},
}


def _loader(data_dir: str, case: dict[str, Any], workers: int) -> tuple[Any, Any]:
    from pygestor import PygestorDataLoader, PygestorDataset

    ref, more = ("toy/train", {}) if not case.get("mix") else (MIX, {"samples_per_epoch": 3000})
    ds = PygestorDataset(ref, manager=make_manager(data_dir, row_group_size=250),
                         columns=["id", "label"], batch_size=case["batch_size"], shuffle=True,
                         seed=21, shuffle_buffer=150, **more)
    kwargs = {} if case["loader_batch"] is None else {"batch_size": case["loader_batch"]}
    return ds, PygestorDataLoader(ds, num_workers=workers, **kwargs)


def _run(phase: str, data_dir: str, out: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT),
                                                        os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, __file__, phase, data_dir, str(out)], env=env,
                          capture_output=True, text=True, timeout=150)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


@pytest.mark.slow
def test_resume_in_a_new_process(tmp_path):
    data_dir = str(tmp_path / "data")
    build(make_manager(data_dir), write_source(tmp_path / "src"))
    for name, source in write_mix_sources(tmp_path / "mix-src").items():
        build(make_manager(data_dir, row_group_size=250), source, name=name)
    _run("first", data_dir, tmp_path)
    _run("second", data_dir, tmp_path)
    for name, case in CASES.items():
        first = json.loads((tmp_path / f"{name}.first.json").read_text())
        second = json.loads((tmp_path / f"{name}.second.json").read_text())
        state = json.loads((tmp_path / f"{name}.state.json").read_text())
        batch = case["batch_size"] or case["loader_batch"]
        assert state["epoch"] == case["epoch"] and state["samples_consumed"] == case["stop"] * batch
        assert len(first) == case["stop"] * batch
        done = first + second["rest"]
        ds, loader = _loader(data_dir, case, case["workers"])
        ds.set_epoch(case["epoch"])
        reference = ids_of(list(loader))
        assert sorted(done) == sorted(reference), name
        if not case.get("mix"):
            assert sorted(done) == list(range(TOTAL)), name
        if case["workers"] == case["resume_workers"]:
            assert done == reference, f"{name}: not the uninterrupted order"
        assert len(second["next_epoch"]) == len(reference), name
        assert second["next_epoch"] != reference


def _phase(phase: str, data_dir: str, out: Path) -> None:
    for name, case in CASES.items():
        if phase == "first":
            ds, loader = _loader(data_dir, case, case["workers"])
            ds.set_epoch(case["epoch"])
            iterator = iter(loader)
            ids = ids_of([next(iterator) for _ in range(case["stop"])])
            (out / f"{name}.state.json").write_text(json.dumps(loader.state_dict()))
            (out / f"{name}.first.json").write_text(json.dumps(ids))
        else:
            ds, loader = _loader(data_dir, case, case["resume_workers"])
            state = json.loads((out / f"{name}.state.json").read_text())
            loader.load_state_dict(state)
            ds.set_epoch(state["epoch"])  # the training loop's usual call keeps the resume point
            rest = ids_of(list(loader))
            ds.set_epoch(state["epoch"] + 1)
            following = ids_of(list(loader))
            (out / f"{name}.second.json").write_text(json.dumps({"rest": rest,
                                                                "next_epoch": following}))
    sys.stdout.flush()
    os._exit(0)  # like a killed job: no clean-up of loaders or workers


if __name__ == "__main__" and len(sys.argv) == 4:
    _phase(sys.argv[1], sys.argv[2], Path(sys.argv[3]))
