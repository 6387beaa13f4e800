"""The main job, end to end on the local default data_dir (``./data``): ``make demo`` runs it.

1. generate the ``toy`` source files (CSV + JSON Lines) in ``examples/data/toy``;
2. register them as the dataset ``toy`` (metadata only) and download both subsets;
3. load them back (a DataFrame, a stream of batches), verify the stored files;
4. train a tiny model for one epoch through ``DataLoader(PygestorDataset(...))``.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from make_toy import generate  # noqa: E402

import pygestor  # noqa: E402


def main() -> None:
    source = generate(HERE / "data" / "toy")
    manager = pygestor.get_manager()
    print(f"data_dir: {manager.storage.url}")
    if manager.catalog.exists("toy"):
        pygestor.delete_dataset("toy")
        print("removed the toy dataset of an earlier demo run")

    record = pygestor.add_dataset("toy", str(source), pipeline="files", partition_size="1MB",
                                  description="Demo dataset made by examples/make_toy.py",
                                  modality="tabular")
    for subset in record.subsets.values():
        print(f"registered toy/{subset.name}: {len(subset.partitions)} partitions")

    started = time.perf_counter()
    report = pygestor.download("toy")
    print(f"downloaded toy: {report}")

    frame = pygestor.load("toy/train", columns=["id", "text", "label"])
    print(f"loaded toy/train: {len(frame)} rows, ids {frame['id'].min()}..{frame['id'].max()}, "
          f"{frame['id'].is_unique and 'all unique'}")
    print(frame.head(3).to_string(index=False))
    rows = sum(b.num_rows for b in pygestor.iter_batches("toy/test", batch_size=1000,
                                                         filters=[("label", "<", 5)]))
    print(f"streamed toy/test with label < 5: {rows} rows")
    result = pygestor.verify("toy")
    print(f"verified toy: {len(result.ok)} partitions ok, {len(result.problems)} problems")
    print(f"add + download + load + verify took {time.perf_counter() - started:.1f}s")

    try:
        import torch  # noqa: F401
    except ImportError:
        print("torch is not installed: skipping the training loop (pip install 'pygestor[torch]')")
        return
    from train import main as train

    print("training a tiny model for one epoch on toy/train through "
          "DataLoader(PygestorDataset(...)):")
    train(["toy/train", "--features", "f0,f1,f2,f3", "--epochs", "1", "--batch-size", "256"])


if __name__ == "__main__":
    main()
