"""One node of a 2-node run: joins a real gloo process group, reads an epoch of shards with 2 loader workers.

    python tests/helpers/ddp_reader.py SHARDS_DIR SPLIT OUT_JSON    # RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT set

Writes the keys it saw, and which (rank, worker) saw each, to OUT_JSON (test_training_data's exactly-once test).
"""

from __future__ import annotations

import json
import sys

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, get_worker_info

from rat7m.crops import CropSpec
from rat7m.shards import shard_paths
from rat7m.torch_dataset import collate, shard_dataset


def _tag(sample: dict) -> dict:
    info = get_worker_info()
    sample["worker"] = info.id if info is not None else -1
    return sample


def main(folder: str, split: str, out: str) -> None:
    dist.init_process_group("gloo")  # env:// rendezvous (MASTER_ADDR/PORT, RANK, WORLD_SIZE)
    dataset = shard_dataset(shard_paths(folder, split), CropSpec(size=32), shuffle=8, seed=dist.get_rank()).map(_tag)
    loader = DataLoader(dataset, batch_size=3, num_workers=2, collate_fn=collate)
    rank = dist.get_rank()
    seen = [(key, rank, int(w)) for batch in loader for key, w in zip(batch["key"], batch["worker"], strict=True)]
    dist.barrier()
    with open(out, "w") as f:
        json.dump(seen, f)
    dist.destroy_process_group()


if __name__ == "__main__":
    torch.set_num_threads(1)
    main(sys.argv[1], sys.argv[2], sys.argv[3])
