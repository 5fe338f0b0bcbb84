"""Benchmark the training data path: reading samples against the JPEG-decode floor, writing shards against extraction.

    python bench/bench_dataset.py --cache ~/.cache/rat7m-bench                 # shares bench_extract's dataset
    python bench/bench_dataset.py --cache ~/.cache/rat7m-bench --repeat 5 --memory-rows 112730
    python bench/bench_dataset.py --skip-writing --memory-rows 0           # reading only (shards written untimed)

On the ``bench`` profile (1328x1048, one camera-frame in ``--stride`` wanted; generated once, minutes):

- decoders: every JPEG of the samples decoded once with each decoder installed (``cv2.imdecode``,
  PIL, simplejpeg, ``torchvision.io.decode_jpeg``); the fastest is the floor;
- reading, with 0 and 2 DataLoader workers, and with 0 workers and 2 decoding threads (``threads=2``):
  samples/s of :class:`rat7m.torch_dataset.Rat7mCrops` (per-file JPEGs) and
  :func:`rat7m.torch_dataset.shard_dataset` (tar shards), 512x512 crops, against the floor: decoding
  the same six views per sample from memory, in 1 process for 0 workers and in 2 started processes
  for 2 workers or 2 threads; each loader's second epoch is timed (workers persistent), its loop reading
  a byte of every page of each batch's images (a training step's copy to the GPU reads them all, and a
  worker's fresh shared memory costs the loop its page faults); a control row,
  2 DataLoader workers that only decode the floor's bytes, shows what the DataLoader costs by itself;
  batches of :data:`BATCH` (shard_dataset batches in its pipeline, DataLoader ``batch_size=None``);
- writing: :func:`rat7m.shards.write_shards` against per-file extraction and against the
  extraction floor of bench_extract.py (decode to the last wanted frame, encode the wanted), 1 and
  ``--jobs`` processes;
- memory: loader workers over a table of ``--memory-rows`` rows (the bench table tiled): each
  worker's RSS, PSS and private memory next to the table's size.

Methods run interleaved ``--repeat`` times; ratios are taken within a repeat and the median and range
printed. This is a benchmark, not a test: it prints, it does not assert.
"""

from __future__ import annotations

import argparse
import bisect
import io
import math
import mmap
import os
import shutil
import statistics
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_extract
import torch
from torch.utils.data import DataLoader

from bench.timing import spread, timed
from rat7m import catalogue, crops, extract, images, shards
from rat7m.table import load_annotation, save_annotation
from rat7m.table_build import build_table
from rat7m.torch_dataset import Rat7mCrops, collate, shard_dataset
from rat7m.video import ChunkIndex

CROP = crops.CropSpec(size=512)
#: 60 samples make 12 batches: 6 for each of 2 workers, as the floor splits its views evenly (batches of 4,
#: 15 of them, left one worker an extra batch to finish alone: ~7% of an epoch this small, none of a real one)
BATCH = 5


def decoders() -> dict[str, Callable[[bytes], object]]:
    """Every JPEG decoder installed, bytes -> RGB (or BGR) pixels."""
    found: dict[str, Callable[[bytes], object]] = {
        "cv2.imdecode": lambda b: cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR)
    }
    try:
        from PIL import Image

        found["PIL"] = lambda b: np.asarray(Image.open(io.BytesIO(b)).convert("RGB"))
    except ImportError:
        pass
    try:
        import simplejpeg

        found["simplejpeg"] = lambda b: simplejpeg.decode_jpeg(b, colorspace="RGB")
    except ImportError:
        pass
    try:
        from torchvision.io import decode_jpeg

        found["torchvision.io"] = lambda b: decode_jpeg(torch.frombuffer(bytearray(b), dtype=torch.uint8))
    except Exception as exc:  # not installed, or built for another torch (PyPI's does not fit the CPU wheel)
        _UNAVAILABLE["torchvision.io"] = f"{type(exc).__name__}: {str(exc)[:80]}"
    return found


#: Decoders that could not be imported, and why.
_UNAVAILABLE: dict[str, str] = {}


_JPEGS: list[bytes] = []


def _load(paths: list[str]) -> None:
    _JPEGS[:] = [Path(p).read_bytes() for p in paths]
    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def _decode_part(k: int, n: int, name: str) -> int:
    decode = decoders()[name] if name != "crops.decode_jpeg" else crops.decode_jpeg
    for data in _JPEGS[k::n]:
        decode(data)
    return len(_JPEGS[k::n])


def _epoch(loader: DataLoader) -> int:
    """Samples of one epoch; each batch's images read as a training step reads them, at least one byte a page (a
    copy to the GPU touches every page too): the memory a loader hands out is part of its cost."""
    samples = 0
    for batch in loader:
        samples += len(batch["key"])
        if isinstance(batch.get("images"), torch.Tensor):
            int(batch["images"].view(-1)[:: mmap.PAGESIZE].sum())
    return samples


def prepare(args: argparse.Namespace, work: Path) -> tuple[Path, Path, list[extract.ChunkJob]]:
    """The bench dataset's videos linked under a root with its table; the per-file extraction done once."""
    source = args.cache / args.profile
    bench_extract.dataset(args.cache, args.profile, args.stride)  # generates once per --cache
    root = work / "data"
    root.mkdir()
    (root / catalogue.VIDEO_DIR).symlink_to(source / catalogue.VIDEO_DIR, target_is_directory=True)
    mats = sorted((source / catalogue.ANNOTATION_DIR).glob("mocap-*.mat"))
    table = build_table(mats, stride=args.stride, split=dict.fromkeys((p.stem[6:] for p in mats), "train"))
    table_path = catalogue.mini_annotation_path(root)
    save_annotation(table, table_path)
    recordings = [catalogue.parse_mocap_file_name(p.name) for p in mats]
    jobs = extract.plan_jobs(table, ChunkIndex.from_dir(root / catalogue.VIDEO_DIR), recordings, catalogue.CAMERA_NAMES)
    return root, table_path, jobs


def bench_decoders(paths: list[str]) -> str:
    """Milliseconds per 1328x1048 JPEG for each decoder (one thread); returns the fastest's name."""
    _load(paths)
    found = decoders()
    rounds: dict[str, list[float]] = {name: [] for name in found}
    for _ in range(3):  # interleaved, so load from other work falls on all alike; the best round counts
        for name, decode in found.items():
            rounds[name].append(timed(lambda d=decode: [d(b) for b in _JPEGS]) / len(_JPEGS) * 1e3)
    timings = {name: min(values) for name, values in rounds.items()}
    print(f"\n[decoders] one thread, {len(_JPEGS)} JPEGs of {crops.decode_jpeg(_JPEGS[0]).shape[1::-1]} px:")
    for name, ms in sorted(timings.items(), key=lambda kv: kv[1]):
        print(f"  {name:<16} {ms:6.2f} ms/image")
    for name, why in _UNAVAILABLE.items():
        print(f"  {name:<16} not available ({why})")
    return min(timings, key=timings.get)


def bench_reading(args: argparse.Namespace, root: Path, table_path: Path, out: Path, fastest: str) -> None:
    dataset = Rat7mCrops(table_path, root=root, split="train", crop=CROP)
    paths = [str(root / p) for i in range(len(dataset)) for p in _image_paths(dataset, i)]
    n = len(dataset)
    pool = ProcessPoolExecutor(2, initializer=_load, initargs=(paths,))
    list(pool.map(_decode_part, [0, 1], [2, 2], [fastest] * 2))  # started, bytes loaded
    _load(paths)
    #: (workers, threads) of each loader row; its floor decodes on workers x threads (at least 1) processes
    setups = [(0, 1), (2, 1), (0, 2)]
    loaders = {}
    for workers, threads in setups:
        extra = {"persistent_workers": True} if workers else {}
        mapped = Rat7mCrops(table_path, root=root, split="train", crop=CROP, threads=threads)
        loaders[_row("Rat7mCrops", workers, threads)] = DataLoader(
            mapped, batch_size=BATCH, num_workers=workers, collate_fn=collate, **extra
        )
        # batched in the pipeline, as its docstring recommends: each view decoded into the batch once
        streamed = shard_dataset(shards.shard_paths(out, "train"), CROP, shuffle=16, seed=0, batch_size=BATCH,
                                 threads=threads)  # fmt: skip
        loaders[_row("shard_dataset", workers, threads)] = DataLoader(
            streamed, batch_size=None, num_workers=workers, **extra
        )
    # control: what torch's DataLoader costs by itself, 2 workers that only decode the floor's bytes
    control = _DecodeOnly(n, decoders()[fastest])
    loaders[CONTROL] = DataLoader(control, batch_size=BATCH, num_workers=2, collate_fn=_DecodeOnly.count,
                                  persistent_workers=True)  # fmt: skip
    for loader in loaders.values():
        assert _epoch(loader) == n  # warm up: workers started, files in the page cache
    # the floor decodes with the fastest measured decoder and with the datasets' own (crops.decode_jpeg), the
    # faster of the two per repeat: on a loaded machine the ranking can flip, and the floor must not be the slower.
    # Where they are one decoder, it is timed once: the better of two timings of one thing is a floor that no
    # single run (a loader's epoch is timed once) is measured against
    names = [fastest] if _is_the_datasets_decoder(fastest) else sorted({fastest, "crops.decode_jpeg"})

    def decode_all(processes: int, name: str) -> object:
        return _decode_part(0, 1, name) if processes == 1 else list(pool.map(_decode_part, [0, 1], [2, 2], [name] * 2))

    times: dict[str, list[float]] = {f"floor, {p} process(es)": [] for p in (1, 2)}
    times.update({name: [] for name in loaders})
    for _ in range(args.repeat):
        for processes in (1, 2):
            best = min(timed(lambda name=name, p=processes: decode_all(p, name)) for name in names)
            times[f"floor, {processes} process(es)"].append(best)
            if processes == 2:
                times[CONTROL].append(timed(lambda: _epoch(loaders[CONTROL])))
            for workers, threads in setups:
                if max(workers, 1) * threads != processes:
                    continue
                for kind in ("Rat7mCrops", "shard_dataset"):
                    loader = loaders[_row(kind, workers, threads)]
                    times[_row(kind, workers, threads)].append(timed(lambda loader=loader: _epoch(loader)))
    pool.shutdown()
    print(f"\n[reading] {n} samples x 6 views, crops {CROP.size}, batches of {BATCH};"
          " seconds per epoch (median, range)")
    print(f"(floor: decoding the same JPEG bytes from memory, {' or '.join(names)}"
          f"{', the faster per repeat' if len(names) > 1 else ''})")
    print(f"{'method':<38} {'seconds':>20} {'samples/s':>10}")
    for name, values in times.items():
        print(f"{name:<38} {spread(values):>20} {n / statistics.median(values):>10.1f}")
    control = [f / t for f, t in zip(times["floor, 2 process(es)"], times[CONTROL], strict=True)]
    print(f"[reading] {CONTROL}: {spread(control)}x the decode floor's samples/s (the DataLoader's own cost)")
    for workers, threads in setups:
        floor = times[f"floor, {max(workers, 1) * threads} process(es)"]
        for kind in ("Rat7mCrops", "shard_dataset"):
            ratios = [f / t for f, t in zip(floor, times[_row(kind, workers, threads)], strict=True)]
            print(f"[reading] {_row(kind, workers, threads)}: {spread(ratios)}x the decode floor's samples/s")


def _is_the_datasets_decoder(name: str) -> bool:
    """Whether decoder ``name`` of :func:`decoders` is what ``crops.decode_jpeg`` decodes with (simplejpeg, RGB; its
    header check first, a dataset's own cost, is left out of the floor)."""
    return name == "simplejpeg" and images._DECODE is images._decode_simplejpeg


#: The control row: DataLoader workers whose dataset only decodes (no files, no crops, nothing sent back).
CONTROL = "control: 2 workers, decode only"


class _DecodeOnly(torch.utils.data.Dataset):
    """Sample ``i`` is decoding its six views' bytes (loaded before the workers fork); a batch is its count."""

    def __init__(self, n: int, decode: Callable[[bytes], object]) -> None:
        self.n, self.decode = n, decode  # workers are forked: the decoder and _JPEGS need no pickling

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> int:
        for data in _JPEGS[6 * i : 6 * i + 6]:
            self.decode(data)
        return i

    @staticmethod
    def count(items: list[int]) -> dict[str, list[int]]:
        return {"key": items}


def _row(kind: str, workers: int, threads: int) -> str:
    return f"{kind}, {workers} workers" + (f", {threads} threads" if threads > 1 else "")


def _image_paths(dataset: Rat7mCrops, i: int) -> list[str]:
    row = int(dataset.base.indices[i])
    return [str(dataset.base.annotation["table"]["image_path"][c][row]) for c in dataset.cameras]


def bench_writing(args: argparse.Namespace, root: Path, table_path: Path, jobs: list, work: Path) -> Path:
    """Shards against per-file extraction and the extraction floor; returns the shards' folder."""
    base = Rat7mCrops(table_path, root=root, split="train").base
    counts = sorted({1, args.jobs})
    # a shard per chunk of the first camera: as on the real data, where a 1000-sample shard holds whole chunks
    # (no chunk decoded for two shards); cutting this small set finer would decode chunk starts twice
    index = ChunkIndex.from_dir(root / catalogue.VIDEO_DIR)
    frames = base.annotation["table"]["frame_idx"][base.cameras[0]][base.indices]
    starts = [c.start for c in index.chunks(catalogue.RECORDINGS[0], base.cameras[0])]
    per_shard = max(Counter(bisect.bisect_right(starts, int(f)) for f in frames).values())
    plan = shards.plan_shards(base, "train", samples_per_shard=per_shard, index=index)
    pool = ProcessPoolExecutor(max(counts))
    list(pool.map(abs, range(max(counts))))  # started
    methods: dict[str, Callable[[], object]] = {}
    for n in counts:
        methods[f"floor, {n} process(es)"] = (
            (lambda: bench_extract.floor_serial(jobs, extract.DEFAULT_QUALITY)) if n == 1
            else (lambda n=n: bench_extract.floor_pool(jobs, extract.DEFAULT_QUALITY, pool, n))
        )  # fmt: skip
        methods[f"extract --jobs {n}"] = lambda n=n: _fresh(
            work / f"files{n}", lambda d: extract.extract(jobs, d, processes=n, progress=False)
        )
        methods[f"shards --jobs {n}"] = lambda n=n: _fresh(
            work / f"shards{n}",
            lambda d: shards.write_shards(plan, table_path, root, d, "train", processes=n, progress=False),
        )
    times: dict[str, list[float]] = {name: [] for name in methods}
    for _ in range(args.repeat):
        for name, run in methods.items():
            times[name].append(timed(run))
    pool.shutdown()
    images = sum(len(j.targets) for j in jobs)
    print(f"\n[writing] {images} JPEGs ({len(base)} samples in {len(plan)} shards); seconds (median, range)")
    for name, values in times.items():
        print(f"{name:<28} {spread(values):>20} {images / statistics.median(values):>8.1f} JPEG/s")
    for n in counts:
        for what in ("shards", "extract"):
            ratios = [f / t for f, t in zip(times[f"floor, {n} process(es)"], times[f"{what} --jobs {n}"], strict=True)]
            print(f"[writing] {what} --jobs {n}: {spread(ratios)}x the extraction floor's speed")
    return work / f"shards{max(counts)}"


def _fresh(folder: Path, run: Callable[[Path], extract.Summary]) -> None:
    shutil.rmtree(folder, ignore_errors=True)
    summary = run(folder)
    if summary.failures or summary.written != summary.images:
        raise SystemExit(f"{folder.name}: failed: {extract.format_failures(summary.failures)[:3]}")


class _Memory(Rat7mCrops):
    """Reads a sample, then reports the worker's memory (kB) from /proc/self/smaps_rollup."""

    def __getitem__(self, i: int) -> dict:
        super().__getitem__(i)
        fields = {}
        for line in Path("/proc/self/smaps_rollup").read_text().splitlines()[1:]:
            name, value = line.split(":")
            fields[name] = int(value.split()[0])
        return {"pid": os.getpid(), **fields}


def bench_memory(args: argparse.Namespace, root: Path, table_path: Path, work: Path) -> None:
    """Loader workers over a table tiled to ``--memory-rows`` rows: their memory next to the table's size."""
    annotation = load_annotation(table_path)
    table = annotation["table"]
    n = len(table["train_test"])
    reps = math.ceil(args.memory_rows / n)

    def tile(value):
        if isinstance(value, dict):
            return {k: tile(v) for k, v in value.items()}
        return np.concatenate([np.asarray(value)] * reps)[: args.memory_rows]

    annotation["table"] = {k: tile(v) for k, v in table.items()}
    big = work / "big.pkl"
    save_annotation(annotation, big)
    dataset = _Memory(big, root=root, split="train", crop=CROP)
    arrays = [dataset.base.annotation["table"]["3D_keypoints"]] + [
        dataset.base.annotation["table"][col][c]
        for col in ("2D_keypoints", "2D_com", "frame_idx", "image_path") for c in dataset.cameras
    ]  # fmt: skip
    table_mb = sum(a.nbytes for a in arrays) / 2**20
    main_rss = int(Path("/proc/self/status").read_text().split("VmRSS:")[1].split()[0]) / 1024
    loader = DataLoader(dataset, batch_size=None, num_workers=2, sampler=range(0, len(dataset), len(dataset) // 64))
    last = {r["pid"]: r for r in loader}
    print(f"\n[memory] table of {args.memory_rows} rows: {table_mb:.0f} MB of arrays; main RSS {main_rss:.0f} MB")
    for pid, r in last.items():
        private = (r["Private_Clean"] + r["Private_Dirty"]) / 1024
        print(f"  worker {pid}: RSS {r['Rss'] / 1024:.0f} MB, PSS {r['Pss'] / 1024:.0f} MB, private {private:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "rat7m-bench")
    parser.add_argument("--profile", default="bench", help="synthetic profile (default bench; test: a quick check)")
    parser.add_argument("--stride", type=int, default=10, help="one camera-frame in STRIDE wanted (default 10)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--skip-reading", action="store_true", help="only decoders and writing (and memory)")
    parser.add_argument("--skip-writing", action="store_true", help="write the shards once, untimed")
    parser.add_argument("--memory-rows", type=int, default=112_730, help="rows of the memory test's table (0: skip)")
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()[0]:.2f}; torch {torch.__version__}")
    with tempfile.TemporaryDirectory(prefix="rat7m-bench-dataset-") as tmp:
        work = Path(tmp)
        root, table_path, jobs = prepare(args, work)
        assert not extract.extract(jobs, root, processes=args.jobs, progress=False).failures
        dataset = Rat7mCrops(table_path, root=root, split="train", crop=CROP)
        fastest = bench_decoders([str(root / p) for i in range(len(dataset)) for p in _image_paths(dataset, i)])
        if args.skip_writing:  # shards written once, untimed, for the reading bench (4: even over 2 workers)
            out = work / "shards"
            plan = shards.plan_shards(dataset.base, "train", samples_per_shard=-(-len(dataset) // 4))  # 2 per worker
            assert not shards.write_shards(
                plan, table_path, root, out, "train", processes=args.jobs, progress=False
            ).failures
        else:
            out = bench_writing(args, root, table_path, jobs, work)
        if not args.skip_reading:
            bench_reading(args, root, table_path, out, fastest)
        if args.memory_rows:
            bench_memory(args, root, table_path, work)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
