"""``pygestor plan``: a dry run of one epoch's data-loading plan from the real catalog.

Like MosaicML's simulator, but from the recorded row-group sizes of the reference's
:class:`~pygestor.selection.Selection`: samples, row groups and bytes per rank
(min/median/max), what is dropped or padded, and the skew; for a weighted mix, what every
source gives per rank and per epoch, how often it is read, and what a batch holds. Nothing is
read but the datasets' records.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from pygestor.loaders import plan

if TYPE_CHECKING:
    from pygestor.manager import Manager


def bytes_per_rank(rows: np.ndarray, sizes: np.ndarray, world_size: int, *, seed: int,
                   epoch: int, shuffle: str, drop_last: bool = False,
                   per_rank: int | None = None) -> np.ndarray:
    """Bytes each rank reads, counting whole row groups (the unit of a parquet read), when
    every rank reads ``per_rank`` samples (default: the drop/pad rule) of the sequence, around
    its end as often as that takes."""
    layout = plan.epoch_layout(rows, seed=seed, epoch=epoch, shuffle=shuffle)
    total = layout.total
    n = plan.samples_per_rank(total, world_size, drop_last) if per_rank is None else per_rank
    if total == 0 or n == 0:
        return np.zeros(world_size)
    ordered = sizes[layout.order]
    cum_bytes = np.concatenate([[0.0], np.cumsum(ordered)])
    starts, ends = layout.offsets[:-1], layout.offsets[1:]

    def read_bytes(lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        first = np.searchsorted(ends, lo, side="right")  # first row group ending after lo
        last = np.searchsorted(starts, hi, side="left")  # one past the last starting before hi
        return np.where(hi > lo, cum_bytes[last] - cum_bytes[first], 0.0)

    lo = (np.arange(world_size, dtype=np.int64) * n) % total
    hi = lo + n
    result = read_bytes(lo, np.minimum(hi, total))
    wrapped = np.maximum(hi - total, 0)
    full_laps = wrapped // total
    result += full_laps * cum_bytes[-1] + read_bytes(np.zeros_like(lo), wrapped % total)
    return result


def plan_report(manager: Manager, ref: str, *, world_size: int, num_workers: int, seed: int = 0,
                epoch: int = 0, shuffle: bool = True, drop_last: bool = False) -> dict[str, Any]:
    """The dry-run table for ``pygestor plan``."""
    from pygestor.errors import ConfigError
    from pygestor.manager import human_size

    if world_size < 1 or num_workers < 0:
        raise ConfigError("--world-size must be >= 1 and --workers >= 0")
    selection = manager.select(ref)
    rows, sizes = selection.row_group_sizes, selection.row_group_bytes()
    name = "rowgroup" if shuffle else "none"
    summary = plan.summarize_plan(rows, world_size, num_workers, seed=seed, epoch=epoch,
                                  shuffle=name, drop_last=drop_last)
    per_rank = bytes_per_rank(rows, sizes, world_size, seed=seed, epoch=epoch, shuffle=name,
                              drop_last=drop_last)
    groups = summary["row_groups_per_rank"]
    return {
        "reference": ref,
        "world_size": world_size,
        "workers_per_rank": num_workers,
        "seed/epoch": f"{seed}/{epoch}",
        "shuffle": name,
        "samples": summary["samples"],
        "row_groups": summary["row_groups"],
        "samples_per_rank": summary["samples_per_rank"],
        "samples_per_worker": f"{summary['samples_per_worker']['min']}.."
                              f"{summary['samples_per_worker']['max']}",
        "dropped" if drop_last else "padded":
            summary["dropped"] if drop_last else summary["padded"],
        "row_groups_per_rank": f"min {groups['min']} / median {groups['median']:.0f} / "
                               f"max {groups['max']}",
        "bytes_per_rank": f"min {human_size(per_rank.min())} / median "
                          f"{human_size(float(np.median(per_rank)))} / max "
                          f"{human_size(per_rank.max())}",
        "skew (max/mean row groups)": round(summary["skew"], 3),
        "fingerprint": summary["fingerprint"],
    }


def mix_report(manager: Manager, weights: dict[str, float], *, world_size: int,
               num_workers: int, seed: int = 0, epoch: int = 0, shuffle: bool = True,
               samples_per_epoch: int | None = None, stopping: str | None = None,
               drop_last: bool = False, batch: int = 256) -> dict[str, Any]:
    """The dry-run table of a weighted mix (``pygestor plan a/train=0.7 b/train=0.3``)."""
    from pygestor.errors import ConfigError
    from pygestor.manager import human_size

    if world_size < 1 or num_workers < 0:
        raise ConfigError("--world-size must be >= 1 and --workers >= 0")
    selections = [manager.select(ref) for ref in weights]
    ints = plan.mix_weights(list(weights.values()))
    rows = [selection.num_rows for selection in selections]
    stopping = stopping or ("repeat" if samples_per_epoch is not None else "first_exhausted")
    n = plan.mix_per_rank(rows, ints, world_size, samples_per_epoch=samples_per_epoch,
                          stopping=stopping, drop_last=drop_last)
    counts = plan.mix_counts(ints, n)
    name = "rowgroup" if shuffle else "none"
    pieces = [b - a for a, b in plan.worker_pieces(n, num_workers, 1)]
    sources = []
    for ref, selection, weight, count, total in zip(weights, selections, ints, counts, rows,
                                                    strict=True):
        per_rank = bytes_per_rank(selection.row_group_sizes, selection.row_group_bytes(),
                                  world_size, seed=seed, epoch=epoch, shuffle=name,
                                  per_rank=count)
        sources.append({
            "source": ref, "weight": round(weight / sum(ints), 4), "rows": total,
            "samples_per_rank": count, "samples_per_epoch": world_size * count,
            "read": f"{world_size * count / total:.2f}x" if total else "-",
            "bytes_per_rank": human_size(float(np.median(per_rank)))})
    return {
        "reference": " + ".join(f"{ref}={weight:g}" for ref, weight in weights.items()),
        "world_size": world_size,
        "workers_per_rank": num_workers,
        "seed/epoch": f"{seed}/{epoch}",
        "shuffle": name,
        "stopping": stopping,
        "samples": world_size * n,
        "samples_per_rank": n,
        "samples_per_worker": f"{min(pieces)}..{max(pieces)}",
        f"a batch of {batch}": ", ".join(f"{c} {ref}" for ref, c in
                                         zip(weights, plan.mix_counts(ints, batch),
                                             strict=True)),
        "sources": sources,
    }
