"""The tiny model of train.py, trained with DistributedDataParallel on CPU (gloo).

    torchrun --nproc_per_node=2 examples/train_ddp.py toy/train --data-dir ./data

Every rank builds the same ``PygestorDataset``; the rank and world size come from
``torch.distributed`` when iteration starts, so each rank reads its own equal share (no
``DistributedSampler``). ``PygestorDataLoader`` counts batches, so ``--save-state`` writes an
exact resume point (the same on every rank) and ``--resume`` continues from one.
"""

from __future__ import annotations

import gc
import json
import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

sys.path.insert(0, str(Path(__file__).resolve().parent))

from train import make_dataset, make_model, parser, train_epoch

import pygestor
from pygestor import PygestorDataLoader


def main() -> None:
    p = parser()
    p.add_argument("--save-state", help="write the loader state (JSON) here after each epoch "
                   "or after --save-after steps (rank 0)")
    p.add_argument("--save-after", type=int, default=0,
                   help="stop after this many steps and save the state (0: run the epochs)")
    p.add_argument("--resume", help="a state written by --save-state to continue from")
    args = p.parse_args()
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    if args.data_dir:
        pygestor.configure(data_dir=args.data_dir)
    torch.manual_seed(args.seed)  # same initial weights on every rank
    model = DistributedDataParallel(make_model(args))
    dataset = make_dataset(args)
    loader = PygestorDataLoader(dataset, num_workers=args.num_workers)
    optimizer = torch.optim.Adam(model.parameters(), lr=args.lr)
    first_epoch = 0
    if args.resume:
        state = json.loads(Path(args.resume).read_text())
        loader.load_state_dict(state)
        first_epoch = state["epoch"]
    print(f"rank {rank}/{world}: {dataset.samples_per_rank()} samples, {len(loader)} batches "
          "per epoch", flush=True)
    for epoch in range(first_epoch, args.epochs):
        dataset.set_epoch(epoch)  # keeps a loaded resume point for its own epoch
        if args.save_after:
            steps = iter(loader)
            batches = [next(steps) for _ in range(min(args.save_after, len(loader)))]
            loss, samples, seconds = train_epoch(model, batches, optimizer, log_every=0)
        else:
            loss, samples, seconds = train_epoch(model, loader, optimizer,
                                                 prefix=f"[rank {rank}] " if rank else "")
        totals = torch.tensor([samples, seconds])
        dist.all_reduce(totals)
        if rank == 0:
            print(f"epoch {epoch}: loss {loss:.3f} (rank 0), {int(totals[0])} samples on {world} "
                  f"ranks, {totals[0] / (totals[1] / world):,.0f} samples/s", flush=True)
        if args.save_state and rank == 0:
            Path(args.save_state).write_text(json.dumps(loader.state_dict()))
        if args.save_after:
            break
    dist.barrier()
    # release what holds the process group (the DDP model, the loader) before destroying it,
    # so gloo's threads are stopped while the interpreter is fully alive, not at its exit
    del model, optimizer, loader
    gc.collect()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
