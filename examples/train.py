"""Train a tiny PyTorch model for one epoch on a Pygestor dataset.

    python examples/train.py toy/train --data-dir ./data
    python examples/train.py toy/train --data-dir s3://bucket/datasets --num-workers 2

Data goes through ``DataLoader(PygestorDataset(...))``: the dataset yields ready batches
(``batch_size=...``) so the DataLoader is built with ``batch_size=None``; numeric feature columns
are stacked into one tensor, and the text column is turned into hashed character trigrams in
the DataLoader workers (``transform``). Defaults fit the demo dataset (columns id, text, label,
score): it predicts ``label`` from ``text`` and ``score``.
"""

from __future__ import annotations

import argparse
import time
import zlib
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

import pygestor
from pygestor import PygestorDataset

BUCKETS = 1 << 14


class Featurize:
    """Batch transform, run in the DataLoader workers (a class, so ``spawn`` can pickle it)."""

    def __init__(self, label: str, text: str | None) -> None:
        self.label = label
        self.text = text

    def __call__(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        out = {"label": batch[self.label].long()}
        if "features" in batch:
            out["features"] = batch["features"]
        if self.text:
            tokens: list[int] = []
            offsets: list[int] = []
            for value in batch[self.text]:
                offsets.append(len(tokens))
                padded = f"^{value or ''}$"
                tokens.extend(zlib.crc32(padded[i:i + 3].encode()) % BUCKETS
                              for i in range(max(len(padded) - 2, 1)))
            out["tokens"] = torch.tensor(tokens, dtype=torch.int64)
            out["offsets"] = torch.tensor(offsets, dtype=torch.int64)
        return out


class TinyModel(nn.Module):
    """Mean of hashed trigram embeddings + normalized numeric features -> MLP -> classes."""

    def __init__(self, num_classes: int, mean: np.ndarray, std: np.ndarray,
                 text: bool, dim: int = 32) -> None:
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))
        self.embed = nn.EmbeddingBag(BUCKETS, dim, mode="mean") if text else None
        width = (dim if text else 0) + len(mean)
        self.head = nn.Sequential(nn.Linear(width, 64), nn.ReLU(), nn.Linear(64, num_classes))

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        parts = []
        if self.embed is not None:
            parts.append(self.embed(batch["tokens"], batch["offsets"]))
        if "features" in batch:
            parts.append((batch["features"] - self.mean) / self.std)
        return self.head(torch.cat(parts, dim=1))


def dataset_stats(ref: str, label: str, features: list[str]) -> tuple[int, np.ndarray, np.ndarray]:
    """Number of classes and per-feature mean/std, in one streaming pass over those columns."""
    classes, count = 0, 0
    total = np.zeros(len(features))
    squares = np.zeros(len(features))
    for batch in pygestor.iter_batches(ref, batch_size=65536, columns=[label, *features],
                                       format="numpy"):
        classes = max(classes, int(batch[label].max()) + 1)
        if features:
            values = np.stack([batch[f].astype(np.float64) for f in features], axis=1)
            total += values.sum(axis=0)
            squares += (values ** 2).sum(axis=0)
        count += len(batch[label])
    mean = total / max(count, 1)
    std = np.sqrt(np.maximum(squares / max(count, 1) - mean ** 2, 1e-12))
    return classes, mean, std


def make_dataset(args: argparse.Namespace, **extra: Any) -> PygestorDataset:
    features = [f for f in args.features.split(",") if f]
    columns = [args.label, *features, *([args.text] if args.text else [])]
    return PygestorDataset(args.ref, batch_size=args.batch_size, columns=columns, shuffle=True,
                           seed=args.seed, shuffle_memory=args.shuffle_memory,
                           transform=Featurize(args.label, args.text or None),
                           stack=features or None, stack_dtype=torch.float32, **extra)


def make_model(args: argparse.Namespace) -> TinyModel:
    features = [f for f in args.features.split(",") if f]
    classes, mean, std = dataset_stats(args.ref, args.label, features)
    return TinyModel(classes, mean, std, text=bool(args.text))


def train_epoch(model: nn.Module, loader: Any, optimizer: torch.optim.Optimizer,
                log_every: int = 20, prefix: str = "") -> tuple[float, int, float]:
    """One pass over ``loader``: (mean loss, samples, seconds)."""
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    started = time.perf_counter()
    losses, samples = [], 0
    for step, batch in enumerate(loader, 1):
        optimizer.zero_grad()
        loss = loss_fn(model(batch), batch["label"])
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        samples += len(batch["label"])
        if log_every and step % log_every == 0:
            print(f"{prefix}step {step}: loss {np.mean(losses[-log_every:]):.3f}", flush=True)
    return float(np.mean(losses)) if losses else float("nan"), samples, \
        time.perf_counter() - started


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("ref", help="dataset reference, e.g. toy/train")
    p.add_argument("--data-dir", help="storage root (default: the configuration's)")
    p.add_argument("--label", default="label", help="integer class column")
    p.add_argument("--text", default="text", help="text column ('' for none)")
    p.add_argument("--features", default="score", help="numeric columns, comma-separated")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--num-workers", type=int, default=0)
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--shuffle-memory", default=None,
                   help="bytes each worker may hold to shuffle, e.g. 256MB (default: the setting)")
    return p


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.data_dir:
        pygestor.configure(data_dir=args.data_dir)
    torch.manual_seed(args.seed)
    model = make_model(args)
    dataset = make_dataset(args)
    loader = DataLoader(dataset, batch_size=None, num_workers=args.num_workers)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    print(f"{args.ref}: {dataset.num_rows} samples, {len(loader)} batches of "
          f"{args.batch_size}, {args.num_workers} workers")
    for epoch in range(args.epochs):
        dataset.set_epoch(epoch)
        loss, samples, seconds = train_epoch(model, loader, optimizer)
        print(f"epoch {epoch}: loss {loss:.3f}, {samples} samples in {seconds:.2f}s "
              f"({samples / max(seconds, 1e-9):,.0f} samples/s)")


if __name__ == "__main__":
    main()
