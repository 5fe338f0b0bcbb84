"""The TensorFlow recipe: the tar shards as a ``tf.data`` pipeline with the PyTorch datasets' sample layout.

The only module that imports tensorflow (``pip install tensorflow-cpu``). TFRecord readers cannot
read tar, so each shard is read sequentially in Python (:func:`rat7m.shards.iter_samples`) and
every sample is built by the same :func:`rat7m.crops.make_sample` as :mod:`rat7m.torch_dataset`:
the same keys, shapes and values (images channels-last ``(V, H, W, 3)`` uint8, as there).
Shards are split between workers with ``Dataset.shard`` (every shard to exactly one worker), read
``cycle_length`` at a time in parallel, and shuffled through a buffer::

    ds = shard_dataset(sorted(glob("shards/rat7m-train-*.tar")), CropSpec(size=512, output=256),
                       num_shards=hvd.size(), index=hvd.rank())   # or tf.distribute's input context
    for batch in ds.batch(8).prefetch(tf.data.AUTOTUNE): ...
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from functools import partial
from typing import Any

import tensorflow as tf

from rat7m import catalogue, crops, shards
from rat7m.errors import BadInputError

__all__ = ["as_numpy", "shard_dataset"]


def _samples(path: bytes, spec: crops.CropSpec, views: int) -> Iterator[tuple]:
    for raw in shards.iter_samples(path.decode()):
        ann, jpegs, names = crops.parse_sample(raw)
        if len(jpegs) != views:
            raise BadInputError(f"{raw['__url__']}: {ann['key']} has {len(jpegs)} cameras, not views={views}")
        sample = crops.make_samples([ann], [jpegs], spec, names=[names])[0]
        yield tuple(sample[k] for k in _KEYS)


#: The sample's keys, in the order the generator yields them.
_KEYS = ("key", "recording", "row", "images", "keypoints_2d", "com_2d", "K", "R", "t", "dist", "keypoints_3d",
         "box", "scale", "frame")  # fmt: skip


def _signature(views: int, spec: crops.CropSpec) -> tuple[tf.TensorSpec, ...]:
    wh = spec.output_wh or spec.size_wh
    height, width = (None, None) if wh is None else wh[::-1]
    f64, joints = tf.float64, catalogue.N_JOINTS
    shapes: dict[str, Any] = {
        "key": ((), tf.string), "recording": ((), tf.string), "row": ((), tf.int64),
        "images": ((views, height, width, 3), tf.uint8), "keypoints_2d": ((views, joints, 2), f64),
        "com_2d": ((views, 2), f64), "K": ((views, 3, 3), f64), "R": ((views, 3, 3), f64), "t": ((views, 3), f64),
        "dist": ((views, 5), f64), "keypoints_3d": ((joints, 3), f64), "box": ((views, 4), f64),
        "scale": ((views, 2), f64), "frame": ((views,), tf.int64),
    }  # fmt: skip
    return tuple(tf.TensorSpec(*shapes[k]) for k in _KEYS)


def shard_dataset(
    paths: Sequence[str | os.PathLike],
    crop: crops.CropSpec | None = None,
    *,
    views: int = 6,
    shuffle: int = 1000,
    num_shards: int = 1,
    index: int = 0,
    cycle_length: int = 2,
    seed: int | None = None,
) -> tf.data.Dataset:
    """A ``tf.data.Dataset`` of dict samples over tar shards, in the layout of :mod:`rat7m.torch_dataset`.

    Args:
        paths: the shards (:func:`rat7m.shards.shard_paths`).
        crop: as the PyTorch datasets (default 512x512).
        views: cameras per sample in the shards.
        shuffle: sample shuffle buffer (0: shard order, shards read one at a time).
        num_shards, index: this worker's part (every shard goes to exactly one index).
        cycle_length: shards read in parallel.
        seed: shuffle seed.
    """
    spec = crop if crop is not None else crops.CropSpec()
    signature = _signature(views, spec)
    files = tf.data.Dataset.from_tensor_slices([str(p) for p in paths]).shard(num_shards, index)
    if shuffle:
        files = files.shuffle(len(paths), seed=seed)

    def read(path: tf.Tensor) -> tf.data.Dataset:
        generate = partial(_samples, spec=spec, views=views)
        return tf.data.Dataset.from_generator(generate, output_signature=signature, args=(path,))

    if shuffle:
        samples = files.interleave(read, cycle_length=cycle_length, num_parallel_calls=tf.data.AUTOTUNE)
        samples = samples.shuffle(shuffle, seed=seed)
    else:
        samples = files.flat_map(read)
    return samples.map(lambda *values: dict(zip(_KEYS, values, strict=True)))


def as_numpy(sample: dict[str, tf.Tensor]) -> dict[str, Any]:
    """A sample's tensors as numpy / Python values (strings decoded), e.g. to compare with the PyTorch datasets."""
    out = {k: v.numpy() for k, v in sample.items()}
    for key in ("key", "recording"):
        out[key] = out[key].decode()
    out["row"] = int(out["row"])
    return out
