"""Reads shards through the TensorFlow recipe and saves what it read (test_training_data runs it in a subprocess).

    python tests/helpers/tf_reader.py SHARDS_DIR OUT.npz

Saves every test-split sample read in order, and the train-split keys read whole and as two workers'
parts (shuffled). One process for all, since importing TensorFlow is the slow part; a subprocess
keeps TensorFlow's thread pools out of the pytest process, whose other tests fork DataLoader workers.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

from rat7m.crops import CropSpec
from rat7m.shards import shard_paths
from rat7m.tf_dataset import as_numpy, shard_dataset

#: The crop the test compares with the PyTorch map-style dataset.
CROP = CropSpec(size=(120, 100), output=(90, 60))


def main(folder: str, out: str) -> None:
    test = shard_dataset(shard_paths(folder, "test"), CROP, shuffle=0)
    samples = [as_numpy(s) for s in test]
    arrays = {f"{n}/{k}": v for n, s in enumerate(samples) for k, v in s.items() if isinstance(v, np.ndarray)}
    train = shard_paths(folder, "train")
    parts = {
        f"train_part{k}": [s["key"].numpy().decode() for s in shard_dataset(train, CROP, num_shards=2, index=k, seed=0)]
        for k in range(2)
    }
    np.savez(
        out,
        keys=np.array([s["key"] for s in samples]),
        rows=np.array([s["row"] for s in samples]),
        batch_images_shape=np.array(next(iter(test.batch(2)))["images"].shape),
        train_all=np.array([s["key"].numpy().decode() for s in shard_dataset(train, CROP, shuffle=0)]),
        **{k: np.array(v) for k, v in parts.items()},
        **arrays,
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
