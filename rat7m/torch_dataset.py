"""PyTorch datasets of mini-RAT7M crops: map-style over extracted JPEGs, iterable over tar shards.

The only module that imports torch (``pip install rat7m-toolkit[torch]``). Both datasets give the
same sample, built by :func:`rat7m.crops.make_sample` (conventions in :mod:`rat7m.crops`: 0-based
pixels, OpenCV-layout cameras whose intrinsics are adjusted for the crop and resize)::

    {"key": str, "recording": str, "row": int64,
     "images": (V, H, W, 3) uint8 RGB,        "keypoints_2d": (V, 20, 2) float64 crop px (NaN: lost),
     "com_2d": (V, 2) crop px,                "keypoints_3d": (20, 3) mm,
     "K": (V, 3, 3) adjusted intrinsics,      "R": (V, 3, 3), "t": (V, 3), "dist": (V, 5) [k1 k2 p1 p2 k3],
     "box": (V, 4) x0 y0 w h source px,       "scale": (V, 2) sx sy, "frame": (V,) video frame}

:func:`collate` stacks samples into ``(B, V, ...)`` batches (strings as lists). Images stay channels-last,
as decoded (the TensorFlow recipe's layout too): channels-first would cost one more copy of every
image on the loader's CPU; permute on the GPU instead (``images.permute(0, 1, 4, 2, 3)``).

Memory: :class:`Rat7mCrops` holds the table as numpy arrays, loaded once in the main process;
DataLoader workers are forked (Linux's default), so they share those pages copy-on-write and nothing
writes to them: no per-worker copy (measured in bench/bench_dataset.py). :func:`shard_dataset` holds
no table at all: each sample's annotations travel in its shard.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from rat7m import crops
from rat7m.dataset import MiniRat7m
from rat7m.errors import BadInputError

__all__ = ["Rat7mCrops", "Transform", "collate", "shard_dataset", "to_tensors"]

#: A hook applied to each numpy sample before it becomes tensors: change pixel values only (the
#: geometry is the crop's: use CropSpec's jitter for geometric augmentation).
Transform = Callable[[dict[str, Any]], dict[str, Any]]


def to_tensors(sample: dict[str, Any]) -> dict[str, Any]:
    """A numpy sample as tensors (no copy); strings stay strings."""
    out: dict[str, Any] = {}
    for key, value in sample.items():
        if isinstance(value, np.ndarray):
            out[key] = torch.from_numpy(np.ascontiguousarray(value))
        elif isinstance(value, int):
            out[key] = torch.tensor(value, dtype=torch.int64)
        else:
            out[key] = value
    return out


def collate(samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """A multi-view batch: every tensor stacked to ``(B, V, ...)`` (``(B, ...)`` for per-sample ones)."""
    return default_collate(list(samples))


def _rng(spec: crops.CropSpec) -> np.random.Generator | None:
    """A generator seeded from torch's (so ``torch.manual_seed`` and per-worker seeding apply), if crops are random."""
    return np.random.default_rng(int(torch.randint(0, 2**62, ()))) if spec.random else None


class Rat7mCrops(Dataset):
    """Map-style dataset: crops of each view around its 2D COM, from the JPEGs ``extract_frames.py`` writes.

    Args:
        table_path, root, split, cameras, images_root: as :class:`rat7m.dataset.MiniRat7m`.
        crop: how views are cropped and resized (:class:`rat7m.crops.CropSpec`; default 512x512, no resize).
        transform: a pixel-only hook on the numpy sample (see :data:`Transform`).
    """

    def __init__(
        self,
        table_path: str | os.PathLike | None = None,
        root: str | os.PathLike | None = None,
        split: str = "train",
        cameras: Sequence[str] | None = None,
        images_root: str | os.PathLike | None = None,
        crop: crops.CropSpec | None = None,
        transform: Transform | None = None,
    ) -> None:
        self.base = MiniRat7m(table_path, root, split, cameras, load_images=False, images_root=images_root)
        self.cameras = self.base.cameras
        self.crop = crop if crop is not None else crops.CropSpec()
        self.transform = transform
        self.annotator = crops.Annotator(self.base.annotation, self.cameras)
        self.convention = self.annotator.convention
        self._paths = self.base.annotation["table"]["image_path"]

    def __len__(self) -> int:
        return len(self.base)

    def annotation(self, i: int) -> dict[str, Any]:
        """Sample ``i``'s annotations in full-image 0-based pixels (what its shard's JSON holds)."""
        return self.annotator(int(self.base.indices[i]))

    def jpegs(self, i: int) -> list[bytes]:
        """The JPEG bytes of sample ``i``'s views, in camera order."""
        row = int(self.base.indices[i])
        return [self._read(str(self._paths[c][row])) for c in self.cameras]

    def __getitem__(self, i: int) -> dict[str, Any]:
        sample = crops.make_sample(self.annotation(i), self.jpegs(i), self.crop, _rng(self.crop))
        if self.transform is not None:
            sample = self.transform(sample)
        return to_tensors(sample)

    def _read(self, relative: str) -> bytes:
        path = self.base.images_root / relative
        try:
            return path.read_bytes()
        except OSError:
            msg = (
                f"{path}: missing or unreadable image; extract the frames with extract_frames.py --root "
                f"{self.base.root} --images-root {self.base.images_root}, or read tar shards with shard_dataset()"
            )
            raise BadInputError(msg) from None


def shard_dataset(
    urls: str | os.PathLike | Sequence[str | os.PathLike],
    crop: crops.CropSpec | None = None,
    *,
    shuffle: int = 1000,
    transform: Transform | None = None,
    seed: int | None = None,
):
    """Iterable dataset over tar shards (webdataset), split by node then by worker, same samples as :class:`Rat7mCrops`.

    Each shard goes to exactly one (node, DataLoader worker) pair (``split_by_node`` uses the
    torch.distributed rank and world size, or ``RANK``/``WORLD_SIZE``), so an epoch sees every sample
    once when there are at least nodes x workers shards; shards are then shuffled within each pair
    and samples through a buffer of ``shuffle`` (0: in order). Samples also carry webdataset's
    ``__key__`` (the same as ``key``).

    Args:
        urls: one shard or a list of shards (paths or URLs; a split's: :func:`rat7m.shards.shard_paths`).
        crop: as :class:`Rat7mCrops`.
        shuffle: sample shuffle buffer size; 0 reads in shard order.
        transform: a pixel-only hook on the numpy sample.
        seed: the shard-shuffle seed (default: webdataset's, ``$WDS_SEED`` or random).
    """
    import webdataset as wds

    urls = [str(urls)] if isinstance(urls, (str, os.PathLike)) else [str(u) for u in urls]
    if not urls:
        raise BadInputError("no shards to read; write them with extract_frames.py --format shards")
    spec = crop if crop is not None else crops.CropSpec()
    dataset = wds.WebDataset(
        urls,
        shardshuffle=len(urls) if shuffle else False,
        nodesplitter=wds.split_by_node,
        workersplitter=wds.split_by_worker,
        empty_check=False,  # a (node, worker) pair may get no shard when there are few
        seed=seed,
    )
    if shuffle:
        dataset = dataset.shuffle(shuffle)
    return dataset.map(partial(_from_shard, spec=spec, transform=transform))


def _from_shard(raw: dict[str, Any], spec: crops.CropSpec, transform: Transform | None) -> dict[str, Any]:
    """A webdataset sample (member suffix -> bytes) as the same sample :class:`Rat7mCrops` gives."""
    ann = crops.from_json(raw["json"])
    jpegs = [raw[crops.member_name(c)] for c in ann["cameras"]]
    sample = crops.make_sample(ann, jpegs, spec, _rng(spec))
    if transform is not None:
        sample = transform(sample)
    return to_tensors(sample)
