"""Generate the demo dataset ``toy`` deterministically: CSV and JSON Lines files.

    python examples/make_toy.py [OUT_DIR] [--rows N]

``train/`` holds two CSV files (about 6 MB with the default 60 000 rows: several partitions at
the demo's 1 MB partition size) and ``test/`` one gzipped JSON Lines file. Columns: ``id``,
``text``, ``label`` (0-9), ``score`` and four features ``f0``..``f3`` that predict the label, so
a tiny model has something to learn.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import json
import random
from pathlib import Path

WORDS = ("data", "model", "train", "token", "vector", "batch", "epoch", "loss", "layer", "graph",
         "shard", "rank", "seed", "learn", "infer", "weight")


def make_row(index: int, rng: random.Random) -> dict:
    label = index % 10
    features = [round(label / 9 + rng.gauss(0, 0.15) * (k + 1), 4) for k in range(4)]
    text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 16)))
    return {"id": index, "text": text, "label": label, "score": round(rng.random(), 4),
            **{f"f{k}": v for k, v in enumerate(features)}}


def generate(out: Path, rows: int = 60000) -> Path:
    """Write the toy source under ``out`` (replacing what is there) and return ``out``."""
    rng = random.Random(1234)
    train_rows, test_rows = rows, max(rows // 10, 10)
    (out / "train").mkdir(parents=True, exist_ok=True)
    (out / "test").mkdir(parents=True, exist_ok=True)
    columns = list(make_row(0, random.Random(0)))
    half = train_rows // 2
    for shard, (lo, hi) in enumerate(((0, half), (half, train_rows))):
        with (out / "train" / f"shard-{shard}.csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            for index in range(lo, hi):
                writer.writerow(make_row(index, rng))
    with gzip.open(out / "test" / "test.jsonl.gz", "wt") as handle:
        for index in range(train_rows, train_rows + test_rows):
            handle.write(json.dumps(make_row(index, rng)) + "\n")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", default=str(Path(__file__).parent / "data" / "toy"))
    parser.add_argument("--rows", type=int, default=60000)
    args = parser.parse_args()
    path = generate(Path(args.out), args.rows)
    print(f"wrote the toy source to {path}")


if __name__ == "__main__":
    main()
