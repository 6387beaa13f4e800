"""Draw docs/images/shuffle-orders.png: how samples are drawn, from the pure planner alone.

    python benchmarks/shuffle_figure.py

400 000 rows stored sorted (4 files, row groups of 65 536 and 34 464 rows, ~172 bytes a row);
each panel plots the stored position (up) of the first 80 batches of 256 that one rank reads
(left to right, a dot per sample):

1. the shuffle before 0.4: row groups permuted, rows mixed inside windows of 8 192 rows;
2. Pygestor's default: windows as large as shuffle_memory (128 MB) allows, stratified, so every
   batch takes one row from each of 256 parts of its window;
3. a uniform permutation, for comparison;
4. a mix of three sources (0.7 / 0.2 / 0.1): the source of each of the first 512 positions.

No plotting library is needed (nor installed here): the PNG is written with zlib.
"""

from __future__ import annotations

import struct
import sys
import zlib
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from pygestor.loaders import plan as P  # noqa: E402

ROWS = 400_000
SIZES = [65_536, 34_464] * 4
BATCH, BATCHES = 256, 80
WIDTH, PANEL, GAP = 960, 150, 14
INK = {"frame": (190, 190, 190), "dots": (31, 78, 140), "batch": (235, 235, 235)}
SOURCES = [(31, 78, 140), (214, 110, 36), (72, 150, 72)]


def delivered(window: int | None) -> np.ndarray:
    """Stored positions of one rank's samples, in the order the planner delivers them."""
    layout = P.epoch_layout(SIZES, seed=0, epoch=0, shuffle="rowgroup")
    starts = np.concatenate([[0], np.cumsum(SIZES)[:-1]])
    piece = P.plan_piece(layout, rank=0, world_size=1, piece=0, num_pieces=1, block=BATCH)
    out = []
    for w in piece.windows(window or ROWS, BATCH):
        rows = np.concatenate([starts[s.row_group] + np.arange(s.start, s.stop)
                               for s in piece.slices_between(w.offset, w.offset + w.length)])
        out.append(rows[P.window_order(0, 0, w.position, w.length, strata=BATCH)])
    return np.concatenate(out)


def scatter(canvas: np.ndarray, top: int, positions: np.ndarray) -> None:
    count = BATCH * BATCHES
    for b in range(0, BATCHES, 2):  # every other batch shaded
        x0, x1 = b * WIDTH // BATCHES, (b + 1) * WIDTH // BATCHES
        canvas[top:top + PANEL, x0:x1] = INK["batch"]
    x = np.arange(count) * (WIDTH - 1) // (count - 1)
    y = top + PANEL - 1 - positions[:count] * (PANEL - 1) // (ROWS - 1)
    canvas[y, x] = INK["dots"]
    frame(canvas, top, PANEL)


def mix_strip(canvas: np.ndarray, top: int, height: int) -> None:
    sources = P.mix_sources(P.mix_weights([0.7, 0.2, 0.1]), 0, 512)
    for i, s in enumerate(sources):
        x0, x1 = i * WIDTH // 512, (i + 1) * WIDTH // 512
        canvas[top:top + height, x0:max(x1, x0 + 1)] = SOURCES[int(s)]
    frame(canvas, top, height)


def frame(canvas: np.ndarray, top: int, height: int) -> None:
    canvas[top, :] = canvas[top + height - 1, :] = INK["frame"]
    canvas[top:top + height, 0] = canvas[top:top + height, WIDTH - 1] = INK["frame"]


def write_png(path: Path, rgb: np.ndarray) -> None:
    height, width, _ = rgb.shape

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + \
            struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    raw = b"".join(b"\x00" + rgb[y].tobytes() for y in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) +
                     chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b""))


def main() -> None:
    strip = 40
    height = 3 * PANEL + strip + 4 * GAP
    canvas = np.full((height, WIDTH, 3), 255, dtype=np.uint8)
    window = P.window_rows(128 * 10**6, 172.0, BATCH)
    panels = [delivered(8192), delivered(window),
              np.random.default_rng(0).permutation(ROWS)]
    for k, positions in enumerate(panels):
        scatter(canvas, GAP + k * (PANEL + GAP), positions)
    mix_strip(canvas, GAP + 3 * (PANEL + GAP), strip)
    out = HERE.parent / "docs" / "images" / "shuffle-orders.png"
    write_png(out, canvas)
    print(f"wrote {out} ({out.stat().st_size} bytes; window {window} rows)")


if __name__ == "__main__":
    main()
