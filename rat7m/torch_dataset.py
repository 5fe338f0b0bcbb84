"""PyTorch datasets of mini-RAT7M crops: map-style over extracted JPEGs, iterable over tar shards.

The only module that imports torch (``pip install rat7m-toolkit[torch]``). Both datasets give the
same sample, built by :func:`rat7m.crops.make_sample` (conventions in :mod:`rat7m.crops`: 0-based
pixels, OpenCV-layout cameras whose intrinsics are adjusted for the crop and resize)::

    {"key": str, "recording": str, "row": int64,
     "images": (V, H, W, 3) uint8 RGB,        "keypoints_2d": (V, 20, 2) float64 crop px (NaN: lost),
     "com_2d": (V, 2) crop px,                "keypoints_3d": (20, 3) mm,
     "K": (V, 3, 3) adjusted intrinsics,      "R": (V, 3, 3), "t": (V, 3), "dist": (V, 5) [k1 k2 p1 p2 k3],
     "box": (V, 4) x0 y0 w h source px,       "scale": (V, 2) sx sy, "frame": (V,) video frame}

:func:`collate` stacks samples into ``(B, V, ...)`` batches (strings as lists).

Speed (bench/bench_dataset.py: samples/s against decoding the same JPEG bytes): a DataLoader's batch
of :class:`Rat7mCrops` goes through :meth:`Rat7mCrops.__getitems__`, which decodes and crops each view
straight into one batch tensor, and :func:`collate` hands that tensor
on instead of stacking copies; ``shard_dataset(..., batch_size=B)`` does the same inside the
pipeline, and reads local shards at their index's offsets instead of walking the tar in Python.
From a worker, a batch's annotations cross to the main process inside its pickle and its images in
memory the worker reuses (a few batches' worth, :data:`WORKER_SLOTS`), lent to the loop as they are:
the worker writes that memory again only once the main process holds nothing of the batch (no tensor,
view or array), so a loop never sees a batch change under it.
With ``threads=N`` both datasets read, decode and crop a batch's views on N threads of the process
that builds the batch (the decoders release the GIL): with ``num_workers=0``, N cores without worker
processes, shared memory or pickling.

Images stay channels-last, as decoded (the TensorFlow recipe's layout too): channels-first would
cost one more copy of every image on the loader's CPU; permute on the GPU instead (``images.permute(0, 1, 4, 2, 3)``).

Memory: :class:`Rat7mCrops` holds the table as numpy arrays, loaded once in the main process;
DataLoader workers are forked (Linux's default), so they share those pages copy-on-write and nothing
writes to them: no per-worker copy (measured in bench/bench_dataset.py). :func:`shard_dataset` holds
no table at all: each sample's annotations travel in its shard; a worker holds its shuffle buffer of
raw samples (``shuffle`` x six JPEGs, ~2 MB each at 1328x1048) and one sample's read at a time.
A worker's batch slots hold up to :data:`WORKER_SLOTS` batches of images for the worker's life (16 samples
x 6 views of 512x512 crops: 75 MB each), as many as it had batches on their way or held by the loop at
once (3 or 4 with the default ``prefetch_factor=2``), mapped by the main process too, until its first
batch from a worker of any loader after that worker has ended. A loop that keeps batches keeps their
slots: with every slot held, a worker sends its batches as torch does (a new shared-memory segment each).
"""

from __future__ import annotations

import atexit
import contextlib
import math
import mmap
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from multiprocessing.reduction import DupFd, ForkingPickler
from queue import Empty, SimpleQueue
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate, get_worker_info

from rat7m import crops, shards
from rat7m.dataset import MiniRat7m
from rat7m.errors import BadInputError
from rat7m.fileio import process_alive
from rat7m.images import read_image_bytes

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
    """A multi-view batch: every tensor stacked to ``(B, V, ...)`` (``(B, ...)`` for per-sample ones).

    Samples from :meth:`Rat7mCrops.__getitems__` already hold their images in one batch tensor, in
    order: that tensor is the batch's images, not copied again (a copy of every pixel, ~4% of a
    loader's time). The small per-sample arrays are stacked by numpy, in ordinary memory. A plain
    dict; inside a loader worker one that crosses to the main process cheaply (:class:`_WorkerBatch`).
    """
    samples = list(samples)
    images = _images_batch(samples)
    batch = {key: images if key == "images" and images is not None else _stack([s[key] for s in samples])
             for key in samples[0]}  # fmt: skip
    return batch if get_worker_info() is None else _WorkerBatch(batch)


#: Tensors up to this size travel inside a batch's pickle (a batch's annotations are a few KB).
INLINE_BYTES = 1 << 20


class _WorkerBatch(dict):
    """A batch on its way from a loader worker to the main process, where it arrives as a plain dict.

    torch sends each tensor between processes as a shared-memory segment of its own (created, its
    descriptor passed over a socket, mapped on the other side): about a millisecond of the worker's
    time each, a dozen per batch for the annotations alone (bench/bench_dataset.py). Pickled for
    that transfer (multiprocessing's ForkingPickler only: a plain pickle, ``copy`` and
    ``torch.save`` are untouched), its small tensors not already in shared memory travel as numpy
    arrays inside the pickle, and its images as the worker's slot they were decoded onto
    (:class:`_Slot`), which the main process reads out as it unpickles them.
    """


def _reduce_worker_batch(batch: _WorkerBatch) -> tuple[Any, ...]:
    inline: dict[str, Any] = {}
    on_slots: dict[int, _SlotImages] = {}  # one per slot: a tensor under two keys arrives as one tensor
    for key, value in batch.items():
        images = _slot_images(value, on_slots)
        if images is not None:
            inline[key] = images
        elif (isinstance(value, torch.Tensor) and value.layout == torch.strided and value.device.type == "cpu"
                and not value.is_shared() and value.nbytes <= INLINE_BYTES):  # fmt: skip
            with contextlib.suppress(RuntimeError, TypeError):  # refused with autograd, for bfloat16
                inline[key] = value.numpy()  # no copy
    rest = {key: value for key, value in batch.items() if key not in inline}
    return _rebuild_batch, (list(batch), rest, inline)


def _rebuild_batch(order: list[str], rest: dict[str, Any], inline: dict[str, Any]) -> dict[str, Any]:
    return {key: _as_tensor(inline[key]) if key in inline else rest[key] for key in order}


def _as_tensor(value: Any) -> torch.Tensor:
    return value if isinstance(value, torch.Tensor) else torch.from_numpy(value)


ForkingPickler.register(_WorkerBatch, _reduce_worker_batch)


def _stack(values: list[Any]) -> Any:
    """One key's values stacked as default_collate does; small CPU tensors by numpy (ordinary memory)."""
    first = values[0]
    if (
        all(isinstance(v, torch.Tensor) and v.layout == torch.strided and v.shape == first.shape
            and v.dtype == first.dtype for v in values)
        and first.nbytes * len(values) <= INLINE_BYTES
    ):  # fmt: skip
        try:
            return torch.from_numpy(np.stack([v.numpy() for v in values]))
        except (RuntimeError, TypeError):  # on the GPU, with autograd, bfloat16: torch stacks those
            pass
    return default_collate(values)  # strings as lists; large tensors into shared memory in a worker


def _images_batch(samples: Sequence[dict[str, Any]]) -> torch.Tensor | None:
    """The batch tensor whose rows 0, 1, ... are the samples' images, if there is one."""
    images = [s["images"] for s in samples if isinstance(s.get("images"), torch.Tensor)]
    if len(images) != len(samples):
        return None
    base = images[0]._base
    if base is None or base.shape[0] != len(images) or base.dtype != images[0].dtype:
        return None
    for b, image in enumerate(images):
        if image._base is not base or image.shape != base.shape[1:]:
            return None
        if image.data_ptr() != base[b].data_ptr() or not image.is_contiguous():
            return None
    return base


def _batch_images(shape: tuple[int, ...]) -> torch.Tensor:
    """An empty uint8 batch of images: in this process's recycled memory (:func:`_recycled_array`); in a loader
    worker on one of its slots (:class:`_Slot`), or if none is free in a new shared-memory segment, as
    default_collate allocates its batches there."""
    if get_worker_info() is None:
        return torch.from_numpy(_recycled_array(shape))
    images = _worker_batch_images(shape)
    if images is not None:
        return images
    storage = torch.UntypedStorage._new_shared(math.prod(shape))  # what default_collate does in a worker
    # set to the full shape at once: a .view() of it would be a view, not the base that collate recognises
    strides = [math.prod(shape[i + 1 :]) for i in range(len(shape))]
    return torch.empty(0, dtype=torch.uint8).set_(storage, 0, shape, strides)


# A loader worker's batches: written into memory the worker reuses, lent to the main process.
# torch's default is a new shared-memory segment per batch, whose fresh pages both processes then fault in
# (in a worker ~0.5 ms per 512x512 view). Reusing the worker's memory for the batches it hands on is only
# safe if no one can still reach them: so the worker writes a slot again only once nothing of its own
# (tensor, storage, numpy array) is left on it, and its batch has been given back: the main process maps
# the slot (its descriptor comes with each batch), hands the loop a tensor on it, and marks the slot given
# back once nothing of that tensor is left (no view, storage or numpy array). Copying each batch out of the
# slot as it arrived, as this did before, cost the main process ~6 ms per 23 MB batch: 4-6% of a 2-worker
# epoch on 2 cores (an A/B in docs/benchmarks.md).

#: Bytes before a slot's pixels: two int64, the batch last written into the slot and the last one given back.
SLOT_HEADER = 64
#: Slots per worker, at most: a worker has up to ``prefetch_factor`` (default 2) batches on their way and
#: builds the next, and the loop holds one or two; with more (batches the loop keeps, or sent and never received),
#: it falls back to a new segment per batch.
#: 0 where the system has no ``memfd_create`` (Linux has).
WORKER_SLOTS = 4 if hasattr(os, "memfd_create") else 0


class _Slot:
    """Memory a loader worker writes its batches into, one after another: a memfd, mapped."""

    def __init__(self, nbytes: int) -> None:
        self.fd = os.memfd_create("rat7m-batch")  # close-on-exec; freed with the last descriptor and mapping
        weakref.finalize(self, os.close, self.fd)
        os.ftruncate(self.fd, SLOT_HEADER + nbytes)  # zeros: nothing written, nothing given back
        memory = np.frombuffer(mmap.mmap(self.fd, SLOT_HEADER + nbytes), dtype=np.uint8)
        self.header = memory[:SLOT_HEADER].view(np.int64)
        self.pixels = memory[SLOT_HEADER:]
        self.sent = 0  # the last batch pickled for the main process
        self.tensor: weakref.ref[torch.Tensor] | None = None  # the last batch tensor made on the slot
        # the array under that tensor: every view, storage or numpy array made from the batch keeps it alive
        self.array: weakref.ref[np.ndarray] | None = None

    @property
    def nbytes(self) -> int:
        return self.pixels.size

    def free(self) -> bool:
        """Nothing of this process left on the slot, and its batch given back or never sent."""
        if self.array is not None and self.array() is not None:
            return False
        written = int(self.header[0])
        return self.sent != written or int(self.header[1]) == written

    @property
    def retired(self) -> bool:
        """Never to be written again: its batch was held by a process that forked (:func:`_give_back`)."""
        return int(self.header[1]) < 0

    def take(self, shape: tuple[int, ...]) -> torch.Tensor:
        """An empty batch tensor of ``shape`` on the slot (a base tensor, which collate recognises)."""
        self.header[0] += 1
        array = self.pixels[: math.prod(shape)].reshape(shape)
        tensor = torch.from_numpy(array)
        self.tensor, self.array = weakref.ref(tensor), weakref.ref(array)
        return tensor

    def send(self) -> int:
        """The number of the batch on the slot, noted as pickled for the main process."""
        self.sent = int(self.header[0])
        return self.sent


#: This process's slots, under its pid (a forked worker starts with its parent's dict, not its slots).
_SLOTS: dict[int, list[_Slot]] = {}
_TAKING = threading.Lock()  # a worker's own threads (a transform's, say) may build batches at once


def _worker_batch_images(shape: tuple[int, ...]) -> torch.Tensor | None:
    """An empty batch tensor on a free slot of this worker (made if there are fewer than the most), else None."""
    nbytes = math.prod(shape)
    with _TAKING:
        slots = _SLOTS.setdefault(os.getpid(), [])
        slots[:] = [slot for slot in slots if not slot.retired]  # a new one in its place, if need be
        free = sorted((slot.nbytes, i) for i, slot in enumerate(slots) if slot.free())
        for size, i in free:
            if size >= nbytes:
                return slots[i].take(shape)
        if len(slots) < WORKER_SLOTS:
            slots.append(_Slot(nbytes))
            return slots[-1].take(shape)
        if free:  # all too small for this batch: the smallest is replaced
            slots[free[0][1]] = _Slot(nbytes)
            return slots[free[0][1]].take(shape)
        return None


def _slot_images(value: Any, sent: dict[int, _SlotImages]) -> _SlotImages | None:
    """``value`` as the images on their slot, to be sent, if it is a batch tensor on a slot of this worker as it was
    made (:func:`_worker_batch_images`); ``sent`` holds the slots already sent in this batch, by id.

    Only once: pickled again (the same batch in two queue items, say), it goes as torch sends it, for two
    receivers would each give the slot back. Only as it was made: contiguous at the slot's start. A collate
    may have moved it (``share_memory_()``, which torch's pickling of another view of it does) or laid it
    out anew in place (``transpose_``, ``set_``): torch then sends the tensor as it is. Checked, and the
    slot noted as sent, under the lock the worker takes slots under, so no other thread takes the slot in
    between.
    """
    if not isinstance(value, torch.Tensor):
        return None
    with _TAKING:
        for slot in _SLOTS.get(os.getpid(), ()):
            if slot.tensor is None or slot.tensor() is not value:
                continue
            if id(slot) in sent:  # the same tensor under a second key: one tensor on arrival
                return sent[id(slot)]
            if slot.sent == int(slot.header[0]):  # pickled once already: a second receiver must not share the slot
                return None
            if value.dtype != torch.uint8 or not value.is_contiguous() or value.data_ptr() != slot.pixels.ctypes.data:
                return None
            sent[id(slot)] = _SlotImages(slot, tuple(value.shape))
            return sent[id(slot)]
    return None


class _SlotImages:
    """A batch's images on a worker's slot, on their way: unpickled, they are lent to the receiving process."""

    def __init__(self, slot: _Slot, shape: tuple[int, ...]) -> None:
        self.fd, self.batch, self.shape = slot.fd, slot.send(), shape

    def __reduce__(self) -> tuple[Any, ...]:
        # the descriptor travels as multiprocessing sends them (torch's shared memory too): a duplicate
        return _receive_images, (DupFd(self.fd), self.batch, self.shape, os.getpid())


def _receive_images(descriptor: Any, batch: int, shape: tuple[int, ...], worker: int) -> torch.Tensor:
    """A worker's batch images, lent from its slot to this process until no tensor, view or array of them is left.

    Only then is the slot given back (:func:`_give_back`), and only then may the worker write it again.
    """
    whole = _mapped_slot(descriptor, worker)
    header = whole[:SLOT_HEADER].view(np.int64)
    if header[0] != batch:
        raise RuntimeError("a loader worker's batch was overwritten before it was received (received twice?)")
    images = whole[SLOT_HEADER : SLOT_HEADER + math.prod(shape)].reshape(shape)  # its own array: the batch's life
    weakref.finalize(images, _give_back, header, batch, os.getpid(), _FORKS[0]).atexit = False
    return torch.from_numpy(images)


#: Twice the forks of this process so far, plus one while a fork is under way (a one-item list, counted before each
#: fork and after it, in parent and child): a batch received during a fork's hooks (by another thread) counts as
#: held across it.
_FORKS = [0]


def _give_back(header: np.ndarray, batch: int, pid: int, forks: int) -> None:
    """A received batch's slot marked given back, once nothing of the batch is left in this process.

    Unless this process forked while it held the batch: a forked child may still hold the batch (its
    memory is shared with the worker, not copied on write), so the slot is retired instead: the worker
    never writes it again and makes a new one in its place (it is freed with its last mapping, the
    child's). A child never gives back or retires its parent's batches.
    """
    if os.getpid() == pid:
        header[1] = batch if _FORKS[0] == forks and forks % 2 == 0 else -batch


#: Slots mapped in this process, by (worker pid, device, inode), the most recently used last: mapping a slot
#: for each batch costs ~5 ms per 23 MB batch here (~8% of a 2-worker epoch). At most :data:`WORKER_SLOTS`
#: per worker (a slot the worker replaced goes first); a dead worker's are dropped at the next batch this
#: process receives from a worker of any loader (nothing else runs here to notice sooner); a forked child
#: drops its copies at once (:func:`_forget_after_fork`).
_MAPPED: dict[tuple[int, int, int], np.ndarray] = {}
_MAPPING = threading.Lock()  # the pin-memory thread of one loader and the main thread of another may both receive
_POPULATE = getattr(mmap, "MAP_POPULATE", 0)


def _mapped_slot(descriptor: Any, worker: int) -> np.ndarray:
    """The slot whose descriptor came with a batch, as bytes of this process (mapped once while its worker lives)."""
    fd = descriptor.detach()
    try:
        stat = os.fstat(fd)
        key = (worker, stat.st_dev, stat.st_ino)
        with _MAPPING:
            for old in [k for k in _MAPPED if k[0] != worker and not process_alive(k[0])]:
                del _MAPPED[old]
            if key in _MAPPED:
                _MAPPED[key] = _MAPPED.pop(key)
            else:
                mine = [k for k in _MAPPED if k[0] == worker]
                for old in mine[: max(0, len(mine) + 1 - WORKER_SLOTS)]:
                    del _MAPPED[old]
                memory = mmap.mmap(fd, stat.st_size, flags=mmap.MAP_SHARED | _POPULATE)  # its pages mapped at once
                _MAPPED[key] = np.frombuffer(memory, dtype=np.uint8)
            return _MAPPED[key]
    finally:
        os.close(fd)


def _forget_after_fork() -> None:
    """In a forked child (a loader worker): drop the parent's slot mappings, free batches, decoding threads and locks.

    Kept, they would hold the parent's memory for the child's life: slots of workers that have ended, and
    pages of the batch pool the parent goes on to write (copied on write for the child).
    """
    global _TAKING, _MAPPING
    _TAKING, _MAPPING = threading.Lock(), threading.Lock()  # a thread of the parent may have held one
    _MAPPED.clear()
    _FREE_BATCHES.clear()
    for key in [key for key in _POOLS if key[0] != os.getpid()]:  # the parent's: no thread of it runs here
        del _POOLS[key]


def _count_fork() -> None:
    _FORKS[0] += 1


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_count_fork, after_in_parent=_count_fork, after_in_child=_count_fork)
    os.register_at_fork(after_in_child=_forget_after_fork)


#: Batch arrays of this process that no tensor uses any more, by shape, ready for the next batch: at most
#: :data:`KEEP_FREE_BATCHES` of a shape, of up to as many shapes (a loop holds one batch while the next is
#: built; the last batch of an epoch may be smaller). So a loader whose loop has ended keeps at most 4
#: batches' memory (2 of each of 2 shapes) for its next epoch, and a loop that once held many batches does
#: not keep theirs. No lock: a buffer comes back whenever the last tensor of its batch dies, in any thread
#: and even inside a garbage collection run while this module takes one; dict and list calls are atomic
#: under the GIL, and a lock taken there could deadlock.
_FREE_BATCHES: dict[tuple[int, ...], list[np.ndarray]] = {}
KEEP_FREE_BATCHES = 2


def _recycled_array(shape: tuple[int, ...]) -> np.ndarray:
    """An uninitialised uint8 array of ``shape`` for a batch, from the arrays earlier batches no longer use.

    A new batch's memory is fresh pages for the kernel to clear and map as the crops are written: about 3%
    of an in-process loader's epoch (an A/B of fresh against reused arrays on bench/bench_dataset.py's
    data, 2.24 against 2.16 s; more with decoding threads). The array returned is a view
    of a pooled buffer; ``torch.from_numpy`` keeps that view alive for as long as any tensor, view or
    numpy array made from the batch exists, and only when the view is gone does the buffer go back to
    the pool: memory a caller can still reach is never handed out again. (As with any tensor,
    ``share_memory_()`` or a ``torch.multiprocessing`` queue moves the batch to new memory: raw pointers
    taken before, such as a ``.numpy()`` array, are then stale; torch would have freed the old memory.)
    """
    try:
        buffer = _FREE_BATCHES[shape].pop()
    except (KeyError, IndexError):
        buffer = np.empty(shape, dtype=np.uint8)
    array = buffer.view()
    weakref.finalize(array, _release_batch, buffer).atexit = False
    return array


def _release_batch(buffer: np.ndarray) -> None:
    """A batch's buffer back in the pool, once nothing uses its view."""
    if buffer.shape not in _FREE_BATCHES and len(_FREE_BATCHES) >= KEEP_FREE_BATCHES:
        _FREE_BATCHES.clear()  # a new shape: the old ones are likely done with
    free = _FREE_BATCHES.setdefault(buffer.shape, [])
    if len(free) < KEEP_FREE_BATCHES:
        free.append(buffer)


def _rng(spec: crops.CropSpec) -> np.random.Generator | None:
    """A generator seeded from torch's (so ``torch.manual_seed`` and per-worker seeding apply), if crops are random."""
    return np.random.default_rng(int(torch.randint(0, 2**62, ()))) if spec.random else None


def _build(
    anns: Sequence[dict[str, Any]],
    jpegs: Sequence[Sequence[crops.ViewSource]],
    spec: crops.CropSpec,
    transform: Transform | None,
    images: torch.Tensor | None,
    threads: int,
    names: Sequence[Sequence[str]] | None = None,
) -> list[dict[str, Any]]:
    """Samples as tensors (both datasets' last step), their images written into ``images[b]`` (a batch) if given;
    ``names``: where each view comes from, for errors (:func:`rat7m.crops.make_samples`)."""
    rows = None if images is None else [images[b] for b in range(len(anns))]
    targets = None if rows is None else [row.numpy() for row in rows]
    rngs = [_rng(spec) for _ in anns]  # in sample order, on this thread: the same crops whatever the threads
    samples = crops.make_samples(anns, jpegs, spec, rngs, targets, map_views=_map_views(threads), names=names)
    out = []
    for b, sample in enumerate(samples):
        if transform is not None:
            sample = transform(sample)
        tensors = to_tensors(sample)
        if rows is not None and targets is not None:
            if sample["images"] is not targets[b]:  # the hook returned new pixels: into the batch they go
                np.copyto(targets[b], sample["images"])
            tensors["images"] = rows[b]  # the batch's view, which collate recognises
        out.append(tensors)
    return out


class _DecodingThreads:
    """``threads`` daemon threads of this process that run :meth:`map`'s calls in parallel.

    Not a ``concurrent.futures`` pool: its caller takes each future's lock in turn (and its semaphore's),
    and a Ctrl-C raised while it held one left the lock taken; the pool thread finishing that future then
    waited for it for ever, and so did the interpreter as it ended (it joins a pool's threads). Deferring
    the signals instead delayed Ctrl-C by a batch and took over handlers that torch sets in its loader
    workers. Here the caller only puts to and gets from ``queue.SimpleQueue`` s (C, reentrant): a Ctrl-C
    raises at once, holding nothing. The calls of a ``map`` left that way are dropped (the views being
    decoded finish, into memory their calls keep alive), and as Python exits the threads are stopped and
    waited for, at most :data:`STOP_WAIT` seconds for all pools (:func:`_stop_pools`): a daemon thread
    still in OpenCV when the interpreter ends would abort the process (a C++ destructor taking back the GIL).
    """

    def __init__(self, threads: int) -> None:
        self._calls: SimpleQueue[tuple[Callable[..., Any], tuple, SimpleQueue, int, list[bool]] | None] = SimpleQueue()
        self._ended: list[None] = []  # one entry from each thread, its last act (an append no signal can lose)
        self._woken: SimpleQueue[None] = SimpleQueue()  # and a wake-up for the wait in stop()
        self._threads = [
            threading.Thread(target=self._run, name=f"rat7m-decode_{k}", daemon=True) for k in range(threads)
        ]
        for thread in self._threads:
            thread.start()
        self._stopped = False

    def _run(self) -> None:
        while (call := self._calls.get()) is not None:
            fn, args, results, index, dropped = call
            if not dropped:  # else its map was left (Ctrl-C): nobody waits for it
                try:
                    results.put((index, True, fn(*args)))
                except BaseException as exc:  # raised again in the caller's thread
                    results.put((index, False, exc))
            del call, fn, args, results  # nothing of a call kept while waiting for the next
        self._ended.append(None)
        self._woken.put(None)

    def map(self, fn: Callable[..., Any], *iterables: Iterable[Any]) -> list[Any]:
        """``list(map(fn, *iterables))`` on the threads; the first error in order is raised once all the
        calls have ended. Left by an exception of its own (Ctrl-C), its calls not started are dropped."""
        if self._stopped:  # Python is exiting (an atexit hook of its own): in this thread
            return list(map(fn, *iterables))
        results: SimpleQueue[tuple[int, bool, Any]] = SimpleQueue()
        dropped: list[bool] = []
        count = 0
        try:
            for index, args in enumerate(zip(*iterables, strict=False)):  # as map: up to the shortest
                self._calls.put((fn, args, results, index, dropped))
                count += 1
            values: list[Any] = [None] * count
            errors: dict[int, BaseException] = {}
            for _ in range(count):
                index, ok, value = results.get()
                if ok:
                    values[index] = value
                else:
                    errors[index] = value
        except BaseException:
            dropped.append(True)
            raise
        if errors:
            raise errors[min(errors)]
        return values

    def stop(self, deadline: float) -> None:
        """Drop the calls not started, end the threads, and wait for them until ``deadline`` (``time.monotonic``).

        A Ctrl-C meanwhile (a second one, as Python exits) does not cut the wait short: ending the process
        with a thread inside OpenCV is what the wait avoids. (Not ``Thread.join``: interrupted, it marks the
        thread ended while it still runs, before Python 3.13. Each thread's last act is counted instead.)
        """
        self._stopped = True
        with contextlib.suppress(Empty):
            while True:
                self._calls.get_nowait()
        for _ in self._threads:
            self._calls.put(None)
        while len(self._ended) < len(self._threads) and time.monotonic() < deadline:
            with contextlib.suppress(KeyboardInterrupt, Empty):
                self._woken.get(timeout=max(0.0, deadline - time.monotonic()))


#: Decoding threads of this process, by count (a forked loader worker starts its own: threads do not fork).
_POOLS: dict[tuple[int, int], _DecodingThreads] = {}
#: Seconds Python's exit waits, all pools together, for their threads to finish their current views.
STOP_WAIT = 2.0


#: Whether Python is exiting (:func:`_stop_pools` has run): views are then decoded in the caller's thread.
_EXITING = [False]


@atexit.register
def _stop_pools() -> None:
    """As Python exits: every pool of this process stopped, all waited for within one :data:`STOP_WAIT`."""
    _EXITING[0] = True
    deadline = time.monotonic() + STOP_WAIT
    for pool in list(_POOLS.values()):  # this process's only: a forked child drops its parent's
        pool.stop(deadline)


def _checked_threads(threads: int) -> int:
    if not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a whole number of at least 1, got {threads!r}")
    return threads


def _map_views(threads: int) -> Callable[..., Any]:
    """``map`` over views: the built-in one, or :class:`_DecodingThreads`' of ``threads`` threads of this process."""
    if threads <= 1 or _EXITING[0]:  # no thread started once Python exits
        return map
    key = (os.getpid(), threads)
    if key not in _POOLS:
        _POOLS[key] = _DecodingThreads(threads)
    return _POOLS[key].map


def _crop_shape(spec: crops.CropSpec, views: int) -> tuple[int, int, int, int] | None:
    """``(V, H, W, 3)`` of a sample's images, if known before decoding (not for whole images)."""
    size = spec.output_wh or spec.size_wh
    return None if size is None else (views, size[1], size[0], 3)


class Rat7mCrops(Dataset):
    """Map-style dataset: crops of each view around its 2D COM, from the JPEGs ``extract_frames.py`` writes.

    Args:
        table_path, root, split, cameras, images_root: as :class:`rat7m.dataset.MiniRat7m`.
        crop: how views are cropped and resized (:class:`rat7m.crops.CropSpec`; default 512x512, no resize).
        transform: a pixel-only hook on the numpy sample (see :data:`Transform`).
        threads: threads that read, decode and crop a batch's views (default 1: the calling thread; at least 1). The
            decoders release the GIL, so ``threads=2`` with ``num_workers=0`` uses two cores with no worker
            processes, shared memory or pickling (bench/bench_dataset.py); with workers, keep workers x
            threads at about the cores.
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
        threads: int = 1,
    ) -> None:
        self.base = MiniRat7m(table_path, root, split, cameras, load_images=False, images_root=images_root)
        self.cameras = self.base.cameras
        self.crop = crop if crop is not None else crops.CropSpec()
        self.transform = transform
        self.threads = _checked_threads(threads)
        self.annotator = crops.Annotator(self.base.annotation, self.cameras)
        self.convention = self.annotator.convention
        self._paths = self.base.annotation.columns["image_path"]
        self._images_root = str(self.base.images_root)

    def __len__(self) -> int:
        return len(self.base)

    def annotation(self, i: int) -> dict[str, Any]:
        """Sample ``i``'s annotations in full-image 0-based pixels (what its shard's JSON holds)."""
        return self.annotator(int(self.base.indices[i]))

    def jpegs(self, i: int) -> list[bytes]:
        """The JPEG bytes of sample ``i``'s views, in camera order."""
        return [self._read(path) for path in self._image_paths(i)]

    def _image_paths(self, i: int) -> list[str]:
        """Sample ``i``'s JPEG files, in camera order (read by :meth:`_read` on the decoding threads)."""
        row = int(self.base.indices[i])
        return [os.path.join(self._images_root, str(self._paths[c][row])) for c in self.cameras]

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self._samples([i], None)[0]

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, Any]]:
        """Samples ``indices`` (a DataLoader's batch), each view decoded and cropped once into one batch tensor.

        :func:`collate` then takes that tensor as the batch's images instead of stacking copies.
        """
        shape = _crop_shape(self.crop, len(self.cameras))
        # whole images: their size is known only once decoded
        return self._samples(indices, None if shape is None else _batch_images((len(indices), *shape)))

    def _samples(self, indices: Sequence[int], images: torch.Tensor | None) -> list[dict[str, Any]]:
        """Samples ``indices``, their images written into ``images`` (a batch) if given; files read by the decoders."""
        anns = [self.annotation(i) for i in indices]
        reads: list[list[crops.ViewSource]]
        names = None
        if type(self).jpegs is Rat7mCrops.jpegs:  # read on the decoding threads
            names = [self._image_paths(i) for i in indices]
            reads = [[partial(self._read, path) for path in paths] for paths in names]
        else:  # a subclass's own source of the views
            reads = [list(self.jpegs(i)) for i in indices]
        return _build(anns, reads, self.crop, self.transform, images, self.threads, names)

    def _read(self, path: str) -> bytes:
        try:
            return read_image_bytes(path)
        except BadInputError as exc:
            msg = (
                f"{exc}; extract the frames with extract_frames.py --root {self.base.root} --images-root "
                f"{self.base.images_root}, or read tar shards with shard_dataset()"
            )
            raise BadInputError(msg) from None


def shard_dataset(
    urls: str | os.PathLike | Sequence[str | os.PathLike],
    crop: crops.CropSpec | None = None,
    *,
    shuffle: int = 1000,
    transform: Transform | None = None,
    seed: int | None = None,
    batch_size: int | None = None,
    threads: int = 1,
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
        batch_size: batch in the pipeline (use ``DataLoader(..., batch_size=None)``): each view is decoded
            and cropped once into the batch tensor, where a DataLoader's batching copies every sample
            again; the last batch of each worker may be smaller. None: single samples.
        threads: threads that decode and crop a batch's views, as :class:`Rat7mCrops`.
    """
    import webdataset as wds

    _checked_threads(threads)
    urls = [str(urls)] if isinstance(urls, (str, os.PathLike)) else [str(u) for u in urls]
    if not urls:
        raise BadInputError("no shards to read; write them with extract_frames.py --format shards")
    spec = crop if crop is not None else crops.CropSpec()
    if seed is None and "WDS_SEED" in os.environ:
        seed = int(os.environ["WDS_SEED"])
    # wds.WebDataset's stages, with local shards read at their index's offsets (rat7m.shards.iter_samples)
    dataset = wds.FluidWrapper(wds.SimpleShardList(urls))  # FluidWrapper: .map(), .batched() ... as WebDataset
    dataset.append(wds.split_by_node)
    dataset.append(wds.split_by_worker)
    if shuffle:
        dataset.append(wds.shuffle(len(urls), seed=seed))
    dataset.append(_shard_samples)
    dataset = dataset.shuffle(shuffle)
    if batch_size is None:
        return dataset.map(partial(_from_shard, spec=spec, transform=transform, threads=threads))
    batch = partial(_batch_from_shard, spec=spec, transform=transform, threads=threads)
    return dataset.batched(batch_size, batch, partial=True)


def _shard_samples(source: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Raw samples of each shard URL: local files through their index, anything else through webdataset's tar reader."""
    import webdataset as wds

    for item in source:
        if os.path.exists(item["url"]):  # a local path (a FIFO too: refused there, where webdataset would block)
            yield from shards.iter_samples(item["url"])
        else:
            yield from wds.tarfile_samples([item])


def _from_shard(raw: dict[str, Any], spec: crops.CropSpec, transform: Transform | None, threads: int) -> dict[str, Any]:
    """A webdataset sample (member suffix -> bytes) as the same sample :class:`Rat7mCrops` gives."""
    ann, jpegs, names = crops.parse_sample(raw)
    return _build([ann], [jpegs], spec, transform, None, threads, [names])[0]


def _batch_from_shard(
    raws: list[dict[str, Any]], spec: crops.CropSpec, transform: Transform | None, threads: int
) -> dict[str, Any]:
    """Raw samples decoded straight into one batch tensor, then collated (as :meth:`Rat7mCrops.__getitems__`)."""
    anns, jpegs, names = zip(*(crops.parse_sample(raw) for raw in raws), strict=True)
    for raw, ann, views in zip(raws, anns, jpegs, strict=True):
        if len(views) != len(jpegs[0]):
            raise BadInputError(f"{raw.get('__url__', 'a shard')}: {ann['key']} has {len(views)} cameras where "
                                f"{anns[0]['key']} of the same batch has {len(jpegs[0])}; rewrite the shards")
    shape = _crop_shape(spec, len(jpegs[0]))
    images = None if shape is None else _batch_images((len(raws), *shape))
    samples = _build(anns, jpegs, spec, transform, images, threads, names)
    for sample, raw in zip(samples, raws, strict=True):
        sample["__key__"] = raw["__key__"]
    return collate(samples)
