"""Deterministic source files for tests (no randomness from the clock)."""

from __future__ import annotations

import csv
import gzip
import json
from pathlib import Path

TRAIN_ROWS = 3000
TEST_ROWS = 500


def write_toy_source(root: Path, gzip_test: bool = False) -> Path:
    """``train/*.csv`` (two files, ~170 KB: several 60 KB partitions) and ``test/*.jsonl``."""
    (root / "train").mkdir(parents=True, exist_ok=True)
    (root / "test").mkdir(parents=True, exist_ok=True)
    row = 0
    for index, count in enumerate((2000, TRAIN_ROWS - 2000)):
        with (root / "train" / f"shard-{index}.csv").open("w", newline="") as handle:
            writer = csv.writer(handle, lineterminator="\n")
            writer.writerow(["id", "text", "label", "score"])
            for _ in range(count):
                text = f"sample {row}, with a comma" if row % 7 == 0 else f"sample {row} " + \
                    "lorem ipsum " * (row % 5)
                writer.writerow([row, text, row % 10, round(row * 0.25, 2)])
                row += 1
    lines = [json.dumps({"id": 100000 + i, "text": f"test {i}", "label": i % 3,
                         "score": i / 2}) + "\n" for i in range(TEST_ROWS)]
    if gzip_test:
        with gzip.open(root / "test" / "part.jsonl.gz", "wt") as handle:
            handle.writelines(lines)
    else:
        (root / "test" / "part.jsonl").write_text("".join(lines))
    return root


def write_labelled_source(folder: Path, label: str, rows: int = 3000) -> Path:
    """A folder with one CSV, ``d.csv``: columns ``id`` (0..rows-1) and ``label`` (``label`` on
    every row), so which source a load came from shows in its labels."""
    folder.mkdir(parents=True)
    with open(folder / "d.csv", "w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["id", "label"])
        writer.writerows((i, label) for i in range(rows))
    return folder
