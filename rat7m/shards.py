"""Tar shards (WebDataset layout) written straight from the videos: a few files instead of 676k JPEGs.

Cluster file systems (Lustre, GPFS) count inodes and serve small files slowly, and object stores
serve only whole objects: the field's answer is tar shards read sequentially. A shard is a plain tar;
a sample is the consecutive members sharing a key (:func:`rat7m.crops.sample_key`,
``s1-d1_f000014_r000003``): ``<key>.cam1.jpg`` .. ``<key>.cam6.jpg`` (the chosen cameras) and
``<key>.json``, the annotations in 0-based pixels and OpenCV-layout cameras
(:class:`rat7m.crops.Annotator`).

Planning (:func:`plan_shards`): the split's samples, in table order, are cut into shards of at most
``samples_per_shard`` (``rat7m-<split>-000000.tar`` ...), ending at chunk boundaries where they can so
that no chunk is decoded for two shards; the plan depends on the table and the chunk names only, so
SLURM array tasks agree: task K of N writes shards K, K + N, K + 2N, ... Writing one shard decodes
each camera's chunks once from its start to its last wanted frame, one decoder per camera at a time,
and streams: the six views of a sample are taken as their frames come out of the decoders
(:mod:`rat7m.video`), encoded with :func:`rat7m.extract.encode_jpeg`, so every JPEG is byte-identical
to the file extraction writes.

Each shard is written under a temporary name and renamed when whole (its index ``<name>.index.json``,
written just before: sample key -> member offsets); a rerun skips shards whose tar exists and removes
what a killed writer left, so a killed run resumes and no truncated tar ever carries a final name.
A shard that cannot be completed (a missing or truncated chunk) is not written; its frames are reported.
"""

from __future__ import annotations

import bisect
import io
import json
import os
import tarfile
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import groupby
from pathlib import Path
from typing import IO, Any

import numpy as np

from rat7m import catalogue, crops, extract, images
from rat7m.dataset import MiniRat7m
from rat7m.errors import BadInputError
from rat7m.fileio import atomic_write, open_input, read_input, remove_stale_temporaries
from rat7m.model import Table
from rat7m.video import ChunkIndex, ChunkReadError, choose_decoder, read_frames, resolve_decoder

__all__ = [
    "DEFAULT_SAMPLES_PER_SHARD",
    "INDEX_SUFFIX",
    "MAX_MEMBER_BYTES",
    "ShardJob",
    "iter_samples",
    "load_index",
    "plan_shards",
    "read_index",
    "select_shards",
    "shard_name",
    "shard_paths",
    "write_shards",
]

#: Samples per shard by default: ~1 GB of six 1328x1048 JPEGs at quality 95 (~170 KB each).
DEFAULT_SAMPLES_PER_SHARD = 1000
#: Suffix of a shard's index next to it.
INDEX_SUFFIX = ".index.json"
#: The largest tar member read: a view's JPEG (:data:`rat7m.images.MAX_IMAGE_BYTES`); an annotation is smaller.
MAX_MEMBER_BYTES = images.MAX_IMAGE_BYTES
#: The largest shard index read (one of 1000 samples is ~0.2 MB).
MAX_INDEX_BYTES = 8 * 1024 * 1024
#: The most members a sample may have (ours: six views and the annotation).
MAX_SAMPLE_MEMBERS = 16


@dataclass(frozen=True)
class ShardJob:
    """One shard to write: its file name and the positions (in the split) of its samples, in order."""

    name: str
    positions: tuple[int, ...]
    cameras: tuple[str, ...]

    @property
    def targets(self) -> range:
        """One entry per image (samples x views): what the progress bar and the summary count."""
        return range(len(self.positions) * len(self.cameras))

    @property
    def cost(self) -> int:
        """Relative work, to start the biggest shards first."""
        return len(self.positions)


def shard_name(split: str, number: int) -> str:
    """``rat7m-train-000003.tar``."""
    return f"rat7m-{split}-{number:06d}.tar"


def plan_shards(
    dataset: MiniRat7m,
    split: str,
    recordings: Sequence[catalogue.Recording] = catalogue.RECORDINGS,
    samples_per_shard: int = DEFAULT_SAMPLES_PER_SHARD,
    index: ChunkIndex | None = None,
) -> list[ShardJob]:
    """Cut the samples of ``dataset`` (of ``split``) in ``recordings`` into shards of at most ``samples_per_shard``.

    Samples stay in table order. Shards end where the first camera's chunk changes when they can:
    whole chunks are packed into a shard, so no chunk is decoded twice for two shards (the cameras'
    frames are nearly in step, so the other cameras' chunks change at about the same samples). A
    chunk with more samples than a shard holds is cut. Chunks come from ``index`` (the files' names,
    as extraction's sharding) or, without one, are taken as ``catalogue.CHUNK_LENGTH`` frames; the
    plan depends only on these and the table, so SLURM array tasks agree.
    """
    if samples_per_shard < 1:
        raise BadInputError(f"samples per shard must be at least 1, got {samples_per_shard}")
    table = Table.of(dataset.annotation)
    rows = dataset.indices
    recording_of = np.empty(len(rows), dtype=object)  # each position's recording, in table order
    for recording, mask in table.recording_masks(rows):
        recording_of[mask] = recording
    frames = np.asarray(table.columns["frame_idx"][dataset.cameras[0]]).astype(np.int64)[rows]
    groups: list[list[int]] = []
    last = None
    for position in range(len(rows)):
        recording = recording_of[position]
        if recording not in recordings:
            continue
        chunk = (recording.name, _chunk_number(index, recording, dataset.cameras[0], int(frames[position])))
        if chunk != last:
            groups.append([])
            last = chunk
        groups[-1].append(position)
    planned: list[list[int]] = [[]]
    for group in groups:
        if len(planned[-1]) + len(group) > samples_per_shard:
            planned.append([])
        while len(group) > samples_per_shard:
            planned[-1] = group[:samples_per_shard]
            planned.append([])
            group = group[samples_per_shard:]
        planned[-1] += group
    return [
        ShardJob(shard_name(split, n), tuple(positions), tuple(dataset.cameras))
        for n, positions in enumerate(p for p in planned if p)
    ]


def _chunk_number(index: ChunkIndex | None, recording: catalogue.Recording, camera: str, frame: int) -> int:
    """Which chunk of the camera holds ``frame`` (-1 before the first), from ``index`` or the nominal length."""
    if index is None:
        return frame // catalogue.CHUNK_LENGTH
    starts = [chunk.start for chunk in index.chunks(recording, camera)]
    return bisect.bisect_right(starts, frame) - 1


def select_shards(jobs: Sequence[ShardJob], k: int, n: int) -> list[ShardJob]:
    """Shards of array task ``k`` of ``n``: ``k, k + n, ...`` (every shard in exactly one task)."""
    return list(jobs[k::n])


def write_shards(
    jobs: Sequence[ShardJob],
    table_path: str | os.PathLike,
    root: str | os.PathLike,
    out: str | os.PathLike,
    split: str,
    *,
    processes: int = 1,
    quality: int = extract.DEFAULT_QUALITY,
    overwrite: bool = False,
    progress: bool = True,
    decoder: str = "auto",
) -> extract.Summary:
    """Write the shards into ``out`` (in parallel, resumably); faults are the summary's failures.

    Args:
        jobs: from :func:`plan_shards` (maybe through :func:`select_shards`).
        table_path: the annotation table the jobs were planned from (each worker loads it once).
        root: the dataset root (holds the video chunks).
        out: the shards' folder.
        split: the split the jobs were planned for.
        processes, quality, progress, decoder: as :func:`rat7m.extract.extract`.
        overwrite: rewrite shards that exist.
    """
    resolve_decoder(decoder)
    Path(out).mkdir(parents=True, exist_ok=True)
    threads = 1 if processes > 1 and len(jobs) > 1 else None
    args = (str(table_path), str(root), str(out), split, quality, overwrite, threads, decoder)
    return extract._run(_write_job, jobs, args, processes, progress, "shards", partial(_unfinished, out=str(out)))


def shard_paths(out: str | os.PathLike, split: str) -> list[Path]:
    """The complete shards of a split in ``out``, in order (what :func:`rat7m.torch_dataset.shard_dataset` reads)."""
    return sorted(Path(out).glob(f"rat7m-{split}-[0-9]*.tar"))


def load_index(out: str | os.PathLike, split: str) -> dict[str, tuple[str, dict[str, list[int]]]]:
    """``{sample key: (shard name, {member suffix: [data offset, size]})}`` over the split's complete shards."""
    index = {}
    for shard in shard_paths(out, split):
        for key, members in read_index(shard.with_name(shard.name + INDEX_SUFFIX)).items():
            index[key] = (shard.name, {suffix: list(span) for suffix, span in members.items()})
    return index


def read_index(path: str | os.PathLike) -> dict[str, dict[str, tuple[int, int]]]:
    """A shard's index, checked: ``{sample key: {member suffix: (data offset, size)}}``.

    Raises:
        BadInputError: naming the file: missing, over :data:`MAX_INDEX_BYTES`, not JSON, or not an index
            (each member an offset and a size, both integers >= 0, the size at most :data:`MAX_MEMBER_BYTES`).
    """
    fix = "rewrite the shard with --overwrite"
    try:
        data = read_input(path, "shard index", max_bytes=MAX_INDEX_BYTES)
    except BadInputError as exc:
        raise BadInputError(f"{exc}; {fix}") from None
    try:
        samples = json.loads(data)["samples"]
        index = {key: {suffix: _span(span) for suffix, span in members.items()} for key, members in samples.items()}
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):  # UnicodeDecodeError: a ValueError
        raise BadInputError(f"{path}: not a shard index; {fix}") from None
    return index


def _span(span: Any) -> tuple[int, int]:
    """An index entry's ``[offset, size]``: two integers (no bools, no floats) >= 0, the size within the bound."""
    offset, size = span
    if not all(type(x) is int for x in (offset, size)) or offset < 0 or not 0 <= size <= MAX_MEMBER_BYTES:
        raise ValueError(f"not a member's offset and size: {span!r}")
    return offset, size


def iter_samples(path: str | os.PathLike) -> Iterator[dict[str, Any]]:
    """The samples of one shard, in order: ``{"__key__": key, "__url__": path, "cam1.jpg": bytes, ..., "json": bytes}``.

    With the shard's index beside it, each member is read at its offset, straight into its own bytes
    (one copy), each checked against its tar header: tarfile's walk reads every 512-byte header in
    Python and cost ~7% of a loader's time next to the JPEG decode. Without an index (a shard written
    elsewhere), its headers are walked (:func:`_tar_members`). Either way one sample is in memory at a
    time, no member over :data:`MAX_MEMBER_BYTES` is read, and a tar or index that is not what we write is
    a :class:`~rat7m.errors.BadInputError` naming the file (the members' contents are checked by
    :func:`rat7m.crops.parse_sample`).
    """
    index = Path(path).with_name(Path(path).name + INDEX_SUFFIX)
    with open_input(path, "shard", max_bytes=None) as f:  # a regular file (a FIFO would block the reader)
        if index.is_file():
            yield from _indexed_samples(f, str(path), index)
            return
        sample: dict[str, Any] = {}
        for name, size in _tar_members(f, str(path)):
            key, suffix = _split_member(name, str(path))
            if sample and sample["__key__"] != key:
                yield sample
                sample = {}
            sample.setdefault("__key__", key)
            sample.setdefault("__url__", str(path))
            if suffix in sample or len(sample) >= MAX_SAMPLE_MEMBERS + 2:  # + its __key__ and __url__
                raise BadInputError(f"{path}: member {name} repeats one, or its sample has too many; rewrite the shard")
            sample[suffix] = f.read(size)
            if len(sample[suffix]) != size:
                raise BadInputError(f"{path}: ends inside member {name}; rewrite the shard")
            f.seek(-size % tarfile.BLOCKSIZE, os.SEEK_CUR)
        if sample:
            yield sample


def _tar_members(f: IO[bytes], path: str) -> Iterator[tuple[str, int]]:
    """``(name, size)`` of each member of a tar as the writer makes it (USTAR regular files), positioned at its data.

    Our own walk, not tarfile's: the writer makes nothing else, and tarfile honours what a shard from
    elsewhere may carry to hurt its reader: pax headers (parsed in quadratic time before Python 3.11.10),
    sparse members (gigabytes from a small file), and a list of every member it has seen.
    """
    while True:
        header = f.read(tarfile.BLOCKSIZE)
        if not header or header == bytes(tarfile.BLOCKSIZE):
            return  # the end: no more bytes, or the end-of-archive blocks
        if len(header) < tarfile.BLOCKSIZE:
            raise BadInputError(f"{path}: ends inside a tar header; rewrite the shard")
        stored, size = _octal(header[148:156]), _octal(header[124:136])
        computed = sum(header[:148]) + 8 * 32 + sum(header[156:])
        if header[257:262] != b"ustar" or stored != computed:
            raise BadInputError(f"{path}: not a readable tar (a bad header at byte {f.tell() - 512}); rewrite it")
        kind = header[156:157]
        if (kind in (b"x", b"g") and size is not None and size <= MAX_PAX_BYTES) or (kind == b"5" and size == 0):
            # a folder (tar of a folder), or pax records (webdataset's writer: each member's mtime): read and passed
            records = f.read(size)
            f.seek(-size % tarfile.BLOCKSIZE, os.SEEK_CUR)
            refused = set(_pax_keys(records, path)) - _PAX_IGNORED if kind != b"5" else set()
            if refused:
                raise BadInputError(f"{path}: pax records {sorted(refused)} (paths, sizes, links or sparse files): "
                                    "not a shard of ours; rewrite the shard")  # fmt: skip
            continue
        if kind not in (b"0", b"\0") or size is None:
            raise BadInputError(f"{path}: a tar member of type {kind!r} (links, pax or long-name headers, sparse "
                                "files): not a shard of ours; rewrite the shard")  # fmt: skip
        name, prefix = (field.split(b"\0")[0] for field in (header[:100], header[345:500]))
        full = (prefix + b"/" + name if prefix else name).decode("ascii", errors="replace")
        if not full.isascii() or "\ufffd" in full:
            raise BadInputError(f"{path}: member {full!r} is not named in ASCII; not a shard of ours")
        if size > MAX_MEMBER_BYTES:
            too_big = f"{size:,} bytes, over {MAX_MEMBER_BYTES:,}"
            raise BadInputError(f"{path}: member {full} has {too_big}; not a shard of ours")
        yield full, size


#: The most bytes of pax records read for a member (webdataset's writer puts ~30 there).
MAX_PAX_BYTES = 4096
#: Pax records that say nothing about where a member's bytes are or what they are named: read and passed.
_PAX_IGNORED = frozenset({"mtime", "atime", "ctime", "uid", "gid", "uname", "gname", "comment", "hdrcharset"})


def _pax_keys(records: bytes, path: str) -> Iterator[str]:
    """The keys of pax records (``"<length> <key>=<value>\\n"`` each), in one pass: tarfile's parse was quadratic."""
    at = 0
    while at < len(records):
        space = records.find(b" ", at, at + 12)
        length = int(records[at:space]) if space > at and records[at:space].isdigit() else 0
        record = records[at : at + length]
        if length < 5 or len(record) != length or not record.endswith(b"\n") or b"=" not in record:
            raise BadInputError(f"{path}: malformed pax records; not a shard of ours")
        yield record[space - at + 1 : record.index(b"=")].decode("ascii", "replace")
        at += length


def _octal(field: bytes) -> int | None:
    """A tar header's octal number (NUL- or space-terminated), or None if it is not one (base-256, text ...)."""
    digits = field.split(b"\0")[0].strip()
    return int(digits, 8) if digits and not set(digits) - set(b"01234567") else None


def _split_member(name: str, path: str) -> tuple[str, str]:
    """A member's sample key and suffix (``s1-d1_f000014_r000003`` and ``cam1.jpg``), checked."""
    key, _, suffix = name.rpartition("/")[2].partition(".")
    if not key or not suffix or suffix.startswith("__") or not name.isascii():
        raise BadInputError(f"{path}: member {name!r} is not named <key>.<suffix>; not a shard of ours")
    return key, suffix


def _indexed_samples(f: IO[bytes], path: str, index: Path) -> Iterator[dict[str, Any]]:
    """The samples of a shard read at the offsets of its index; each member checked against its tar header.

    Every member must lie in the file after the previous one's end and its own header (across samples: no two
    entries may share bytes), and that header must name it, give its size and say it is a regular file.
    """
    size, fd = os.fstat(f.fileno()).st_size, f.fileno()
    entries = read_index(index)
    end = 0
    for offset, length, name in sorted((o, n, f"{key}.{suffix}") for key, members in entries.items()
                                       for suffix, (o, n) in members.items()):  # fmt: skip
        _split_member(name, path)
        if offset - tarfile.BLOCKSIZE < end or offset + length > size:
            raise BadInputError(f"{path}: its index puts {name} outside the tar or over another member; "
                                "rewrite the shard")  # fmt: skip
        end = offset + length
    for key, members in entries.items():
        if not members or len(members) > MAX_SAMPLE_MEMBERS:
            raise BadInputError(f"{index}: sample {key} has {len(members)} members; rewrite the shard")
        sample: dict[str, Any] = {"__key__": key, "__url__": path}
        for suffix, (offset, length) in sorted(members.items(), key=lambda item: item[1]):
            name = f"{key}.{suffix}"
            header = os.pread(fd, tarfile.BLOCKSIZE, offset - tarfile.BLOCKSIZE)
            if (header[:100].split(b"\0")[0] != name.encode() or _octal(header[124:136]) != length
                    or header[156:157] not in (b"0", b"\0")):  # fmt: skip
                raise BadInputError(f"{path}: member {name} is not where its index says; rewrite the shard")
            sample[suffix] = os.pread(fd, length, offset)  # each member on its own: one copy, into its own bytes
            if len(sample[suffix]) != length:
                raise BadInputError(f"{path}: ends inside member {name}; rewrite the shard")
        yield sample


# --------------------------------------------------------------------------------------------- worker side

_DATASETS: dict[tuple, tuple[MiniRat7m, ChunkIndex, crops.Annotator]] = {}


def _context(
    table_path: str, root: str, split: str, cameras: tuple[str, ...]
) -> tuple[MiniRat7m, ChunkIndex, crops.Annotator]:
    """The table (loaded once per process), the chunk index and the table's annotator."""
    key = (table_path, root, split, cameras)
    if key not in _DATASETS:
        dataset = MiniRat7m(table_path, root=root, split=split, cameras=cameras, load_images=False)
        index = ChunkIndex.from_dir(Path(root, catalogue.VIDEO_DIR))
        _DATASETS[key] = (dataset, index, crops.Annotator(dataset.annotation, cameras))
    return _DATASETS[key]


class _FrameFault(Exception):
    """A frame of a shard could not be had: the shard is not written."""

    def __init__(self, recording: str, camera: str, frames: Sequence[int], reason: str) -> None:
        super().__init__(reason)
        self.recording, self.camera, self.frames, self.reason = recording, camera, list(frames), reason


def _camera_frames(
    index: ChunkIndex,
    camera: str,
    wanted: Sequence[tuple[str, int]],
    quality: int,
    threads: int | None,
    decoder: str,
    counts: Counter,
) -> Iterator[tuple[tuple[str, int], bytes]]:
    """``((recording, frame), JPEG bytes)`` for the wanted frames of one camera, in (recording, frame) order."""
    order = {r.name: n for n, r in enumerate(catalogue.RECORDINGS)}
    for name, group in groupby(sorted(set(wanted), key=lambda w: (order[w[0]], w[1])), key=lambda w: w[0]):
        recording = catalogue.recording_by_name(name)
        frames = [frame for _, frame in group]
        chunks = index.chunks(recording, camera)
        starts = [c.start for c in chunks]
        for i, grouped in groupby(frames, key=lambda f: bisect.bisect_right(starts, f) - 1):
            in_chunk = list(grouped)
            if i < 0:
                raise _FrameFault(name, camera, in_chunk, f"no video chunk of {name} {camera} holds these frames")
            chunk = chunks[i]
            chosen = choose_decoder(chunk.path, decoder)
            counts[chosen] += 1
            decoded = 0
            try:
                for offset, image in read_frames(chunk.path, [f - chunk.start for f in in_chunk], threads, chosen):
                    decoded = offset + 1
                    data = extract.encode_jpeg(image, quality)
                    if data is None:
                        raise _FrameFault(name, camera, [chunk.start + offset], "JPEG encoding failed")
                    yield (name, chunk.start + offset), data
            except ChunkReadError as exc:
                decoded = max(decoded, exc.decoded)
                missing = [f for f in in_chunk if f - chunk.start >= exc.decoded]
                raise _FrameFault(name, camera, missing, exc.reason) from None
            finally:
                counts["decoded"] += decoded


def _write_job(
    job: ShardJob,
    report: Callable[[int], None],
    table_path: str,
    root: str,
    out: str,
    split: str,
    quality: int,
    overwrite: bool,
    threads: int | None,
    decoder: str,
) -> extract.JobResult:
    """Write one shard (run in a worker process): index, then the tar, each under a temporary name."""
    result = extract.JobResult()
    path = Path(out, job.name)
    remove_stale_temporaries(path.parent, {job.name, job.name + INDEX_SUFFIX})
    if path.exists() and not overwrite:
        result.skipped = len(job.targets)
        report(result.skipped)
        return result
    dataset, index, annotator = _context(table_path, root, split, job.cameras)
    annotations = [annotator(int(dataset.indices[p])) for p in job.positions]
    counts: Counter = Counter()
    try:
        with atomic_write(path) as f:  # streamed into the temporary file; renamed only when whole
            entries = _write_tar(f, annotations, index, job.cameras, quality, threads, decoder, counts, report)
            with atomic_write(path.with_name(job.name + INDEX_SUFFIX)) as g:  # the index lands first
                g.write(json.dumps({"shard": job.name, "samples": entries}, separators=(",", ":")).encode())
        result.written = len(job.targets)
    except _FrameFault as fault:
        for frame in fault.frames:
            result.failures.append(extract.Failure(fault.recording, fault.camera, frame, job.name, fault.reason))
    result.decoded = counts["decoded"]
    result.decoder = "pyav" if counts["pyav"] > counts["opencv"] else "opencv" if counts["opencv"] else ""
    return result


def _write_tar(
    stream: IO[bytes],
    annotations: Sequence[dict],
    index: ChunkIndex,
    cameras: Sequence[str],
    quality: int,
    threads: int | None,
    decoder: str,
    counts: Counter,
    report: Callable[[int], None],
) -> dict[str, dict[str, list[int]]]:
    """Write a deterministic tar to ``stream``, the views streamed out of one decoder per camera; return its index."""
    wanted = {c: [(a["recording"], int(a["frame"][v])) for a in annotations] for v, c in enumerate(cameras)}
    remaining = {c: Counter(wanted[c]) for c in cameras}
    sources = {c: _camera_frames(index, c, wanted[c], quality, threads, decoder, counts) for c in cameras}
    held: dict[str, dict[tuple[str, int], bytes]] = {c: {} for c in cameras}
    entries: dict[str, dict[str, list[int]]] = {}
    with tarfile.open(fileobj=stream, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for n, ann in enumerate(annotations):
            members = []
            for camera in cameras:
                want = wanted[camera][n]
                while want not in held[camera]:
                    got, data = next(sources[camera])
                    held[camera][got] = data
                members.append((crops.member_name(camera), held[camera][want]))
                remaining[camera][want] -= 1
                if not remaining[camera][want]:
                    del held[camera][want]
            members.append(("json", crops.to_json(ann)))
            entries[ann["key"]] = {suffix: _add(tar, f"{ann['key']}.{suffix}", data) for suffix, data in members}
            report(len(cameras))
    return entries


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> list[int]:
    """Add one member with fixed metadata (same bytes in, same tar out); ``[data offset, size]``."""
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), 0, 0o444
    tar.addfile(info, io.BytesIO(data))
    return [tar.offset - tarfile.BLOCKSIZE * -(-len(data) // tarfile.BLOCKSIZE), len(data)]


def _unfinished(job: ShardJob, out: str) -> extract.JobResult:
    """A shard whose worker died: done if its tar is there, else failed."""
    result = extract.JobResult()
    if Path(out, job.name).exists():
        result.skipped = len(job.targets)
    else:
        result.failures.append(extract.Failure("-", "-", 0, job.name, extract.WORKER_DIED))
    return result
