"""Quick start: register a folder of CSV/JSON Lines files, download it, read it back.

    python examples/quickstart.py [DATA_DIR]

Works in DATA_DIR (default: a temporary folder that is removed at the end), on the toy source
that examples/make_toy.py generates.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from make_toy import generate

import pygestor


def main(data_dir: str) -> None:
    source = generate(Path(data_dir) / "source", rows=5000)
    pygestor.configure(data_dir=str(Path(data_dir) / "store"))

    pygestor.add_dataset("toy", url=str(source), pipeline="files", partition_size="200KB")
    print([d["name"] for d in pygestor.list_datasets()])
    print(pygestor.list_partitions("toy/train")[:2])

    pygestor.download("toy/train", progress=False)
    frame = pygestor.load("toy/train", columns=["text", "label"])
    print(f"toy/train: {len(frame)} rows")
    print(pygestor.schema("toy/train"))

    batches = list(pygestor.iter_batches("toy/train", batch_size=1000, format="numpy",
                                         filters=[("label", "<", 5)]))
    print(f"{len(batches)} numpy batches of rows with label < 5")

    first = pygestor.list_partitions("toy/train")[0]["name"]
    pygestor.remove("toy/train", partitions=[first])
    print(f"after removing {first}: {pygestor.info('toy/train')['downloaded']} downloaded")
    report = pygestor.verify("toy")
    print(f"verify: {len(report.ok)} ok, {len(report.problems)} problems")
    pygestor.delete_dataset("toy")
    print("deleted; datasets left:", pygestor.list_datasets())


if __name__ == "__main__":
    if len(sys.argv) > 1:
        main(sys.argv[1])
    else:
        with tempfile.TemporaryDirectory(prefix="pygestor-quickstart-") as tmp:
            main(tmp)
