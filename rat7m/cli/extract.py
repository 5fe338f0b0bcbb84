"""Extract the frames the mini-RAT7M annotation table wants from the RAT7M video chunks, as JPEGs.

    python extract_frames.py                       # everything, all cores, in the current directory
    python extract_frames.py --root /data/rat7m --recordings s5-d1 s5-d2 --cameras 1,3 --jobs 8
    python extract_frames.py --shard 3/16          # one of 16 independent jobs (SLURM arrays: automatic)
    python extract_frames.py --verify              # check every image exists and decodes
    python extract_frames.py --decoder opencv      # do not use PyAV even if it is installed
    python extract_frames.py --root /shared/rat7m --images-root /scratch/rat7m   # read-only dataset
    python extract_frames.py --format shards --shards-dir /scratch/rat7m-shards  # WebDataset tar shards

Images go to ``<images-root>/<image_path>`` exactly as the table says (``--images-root`` defaults
to the dataset root; ``--root`` defaults to ``$RAT7M_ROOT``, else the current folder). Reruns skip complete images, so a
killed run resumes; faults (missing or truncated chunks) are listed at the end. With PyAV installed
(``pip install av``) decoding skips unwanted non-reference frames of chunks with B-frames; chunks
without (the rig's capture encoding) go to OpenCV, which is faster there. Both are frame-exact.

``--format shards`` writes tar shards (one sample = its views' JPEGs, byte-identical to the files,
and a JSON of its annotations) for each split instead of JPEG files: see :mod:`rat7m.shards`.

Exit codes: 0 every image done (or verified), 1 some images failed (listed with the reason),
2 bad arguments or a missing table or video folder.
"""

from __future__ import annotations

# isort: split
import argparse
import logging
import os
from collections.abc import Sequence
from pathlib import Path

from rat7m import catalogue, extract, shards
from rat7m.cli import (
    EXIT_FAILED,
    ArgumentParser,
    add_root_argument,
    add_table_selection_arguments,
    add_verbosity_arguments,
    check_writable,
    command,
    positive_int,
    progress_enabled,
    resolve_root,
    setup_logging,
)
from rat7m.dataset import MiniRat7m
from rat7m.doctor import hint
from rat7m.errors import BadInputError
from rat7m.table import load_annotation
from rat7m.video import DECODERS, ChunkIndex, quiet_decoder_logs, resolve_decoder

__all__ = ["build_parser", "main"]

log = logging.getLogger("extract_frames")


def _default_jobs() -> int:
    """The CPUs this process may use (a SLURM task's allocation, not the whole node)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``extract_frames.py``."""
    parser = ArgumentParser(prog="extract_frames.py", description=__doc__)
    parser.add_argument(
        "--annotation", type=Path, help=f"annotation table (default: ROOT/{catalogue.MINI_ANNOTATION_NAME})"
    )
    add_root_argument(parser, what=f"dataset root: holds {catalogue.VIDEO_DIR}/ and the table; may be read-only")
    parser.add_argument(
        "--images-root",
        type=Path,
        help="where the images go: each at IMAGES_ROOT/<image_path> (default: the dataset root); use it when the "
        "dataset is on read-only storage, and pass the same folder to MiniRat7m(images_root=...)",
    )
    add_table_selection_arguments(parser)
    parser.add_argument(
        "--jobs",
        type=positive_int,
        default=_default_jobs(),
        help="worker processes, one chunk each at a time (default: the CPUs available, %(default)s)",
    )
    parser.add_argument(
        "--shard",
        metavar="K/N",
        help="do only shard K of N (0 <= K < N), split by chunk; default in a SLURM array: "
        "SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN of SLURM_ARRAY_TASK_COUNT; otherwise all chunks",
    )
    parser.add_argument(
        "--quality",
        type=int,
        default=extract.DEFAULT_QUALITY,
        help="JPEG quality 1-100 (default: %(default)s); images already there are kept: add --overwrite to re-encode",
    )
    parser.add_argument("--overwrite", action="store_true", help="rewrite images that already exist")
    parser.add_argument(
        "--decoder",
        choices=DECODERS,
        default="auto",
        help="video decoder: pyav (skips unwanted non-reference frames; pip install av), opencv, or auto: "
        "per chunk, pyav if installed and the chunk has B-frames, else opencv (default: auto)",
    )
    parser.add_argument(
        "--format",
        choices=("jpeg", "shards"),
        default="jpeg",
        help="jpeg: one file per image at its image_path (default); shards: WebDataset tar shards per split",
    )
    parser.add_argument("--shards-dir", type=Path, help="where shards go (default: IMAGES_ROOT/shards)")
    parser.add_argument(
        "--split",
        choices=("train", "test", "all"),
        nargs="+",
        default=["train", "test"],
        help="with --format shards: the splits to write, each its own shards (default: train test)",
    )
    parser.add_argument(
        "--samples-per-shard",
        type=positive_int,
        default=shards.DEFAULT_SAMPLES_PER_SHARD,
        help="with --format shards: at most this many samples per shard, which end where a chunk ends when they can "
        "(default: %(default)s, ~1 GB at full size and quality 95)",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--verify", action="store_true", help="only check that every image exists and decodes")
    mode.add_argument("--dry-run", action="store_true", help="only say what would be done")
    add_verbosity_arguments(parser, progress_bars=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Extract (or verify, or plan) the table's images; 0 when every image is done."""
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args)
    args.root = resolve_root(args.root, quiet=args.quiet)
    images_root = args.images_root if args.images_root is not None else args.root
    if not args.verbose:
        quiet_decoder_logs()  # the summary says which frames failed and why; -v shows FFmpeg's own words
    if not 1 <= args.quality <= 100:
        parser.error(f"--quality {args.quality}: expected 1..100")
    try:
        decoder = resolve_decoder(args.decoder)
    except BadInputError as exc:
        parser.error(f"--decoder {args.decoder}: {exc}")
    shard: tuple[int, int, str] | None
    if args.shard is not None:
        try:
            shard = (*extract.parse_shard(args.shard), "from --shard")
        except BadInputError as exc:
            parser.error(str(exc))
    else:
        shard = extract.shard_from_environment(os.environ)
    if not args.verify:
        log.info("decoding with %s", "OpenCV" if decoder == "opencv" else "PyAV or OpenCV, chosen per chunk")
    recordings = args.recordings or catalogue.RECORDINGS
    cameras = args.cameras or catalogue.CAMERA_NAMES
    if args.format == "shards":
        if args.verify or args.dry_run:
            parser.error("--verify and --dry-run are for --format jpeg")
        return _write_shards(args, shard, recordings, cameras, images_root)

    table = _load_table(args.annotation or catalogue.mini_annotation_path(args.root))
    video_dir = args.root / catalogue.VIDEO_DIR
    if not args.verify and not video_dir.is_dir():
        msg = f"no {catalogue.VIDEO_DIR}/ folder under {args.root}; pass --root DIR (the dataset root)"
        msg += f" {hint(args.root)}"
        raise BadInputError(msg)
    index = ChunkIndex.from_dir(video_dir)
    all_jobs = extract.plan_jobs(table, index, recordings, cameras)
    del table  # the plan is all that is needed; a full table holds hundreds of MB
    jobs = all_jobs if shard is None else extract.shard_jobs(all_jobs, shard[0], shard[1])
    if not all_jobs:
        log.warning("the table wants no frames of the chosen recordings and cameras")
    if shard is not None:
        owned = ", ".join(job.name for job in jobs)
        shard_line = f"shard {shard[0]}/{shard[1]} ({shard[2]}): {len(jobs)} of {len(all_jobs)} chunks: {owned}"

    partial = extract.partial_download_hint(all_jobs, index, cameras)
    if args.dry_run:
        if shard is not None:
            print(shard_line)
        code = _dry_run(jobs, images_root, args.overwrite)
        if partial:
            print(partial)
        return code
    if not args.verify:  # before any decoding: a read-only images root fails now, not once per image
        elsewhere = "pass --images-root DIR to write them elsewhere (the dataset may stay read-only)"
        check_writable(images_root, "images", elsewhere)
    progress = progress_enabled(args)
    if args.verify:
        summary = extract.verify(jobs, images_root, processes=args.jobs, progress=progress)
        totals = (
            f"verify: {summary.images} images checked: {summary.verified} good, {len(summary.failures)} missing "
            f"or broken ({summary.seconds:.1f} s)"
        )
    else:
        summary = extract.extract(
            jobs,
            images_root,
            processes=args.jobs,
            quality=args.quality,
            overwrite=args.overwrite,
            progress=progress,
            decoder=args.decoder,
        )
        seconds = max(summary.seconds, 1e-9)
        totals = (
            f"extract: {summary.images} images: {summary.written} written, {summary.skipped} skipped, "
            f"{len(summary.failures)} failed in {summary.seconds:.1f} s ({summary.written / seconds:.1f} images/s; "
            f"{summary.decoded} video frames read by {summary.decoded_by}, {summary.decoded / seconds:.1f} frames/s)"
        )
    if shard is not None:
        print(shard_line)
    print(totals)
    if summary.failures:
        print(f"failed: {len(summary.failures)} images (recording camera: count (why): frames)")
        print("\n".join(extract.format_failures(summary.failures)))
        if partial:
            print(partial)
        return EXIT_FAILED
    return 0


def _write_shards(
    args: argparse.Namespace, shard: tuple | None, recordings: Sequence, cameras: Sequence[str], images_root: Path
) -> int:
    """``--format shards``: plan each split's shards, write this task's, print one summary line per split."""
    table_path = args.annotation or catalogue.mini_annotation_path(args.root)
    _load_table(table_path)  # a missing or unsafe table is one clear line here, not one per worker
    if not (args.root / catalogue.VIDEO_DIR).is_dir():
        raise BadInputError(f"no {catalogue.VIDEO_DIR}/ folder under {args.root}; pass --root DIR (the dataset root)")
    out = args.shards_dir if args.shards_dir is not None else images_root / "shards"
    check_writable(out, "shards", "pass --shards-dir DIR to write them elsewhere")
    index = ChunkIndex.from_dir(args.root / catalogue.VIDEO_DIR)
    failures = []
    for split in dict.fromkeys(args.split):
        dataset = MiniRat7m(table_path, root=args.root, split=split, cameras=cameras, load_images=False)
        jobs = shards.plan_shards(dataset, split, recordings, args.samples_per_shard, index)
        del dataset  # each worker loads the table itself
        mine = jobs if shard is None else shards.select_shards(jobs, shard[0], shard[1])
        summary = shards.write_shards(
            mine, table_path, args.root, out, split, processes=args.jobs, quality=args.quality,
            overwrite=args.overwrite, progress=progress_enabled(args), decoder=args.decoder,
        )  # fmt: skip
        task = "" if shard is None else f" (shard {shard[0]}/{shard[1]}, {shard[2]})"
        print(
            f"shards {split}: {len(mine)} of {len(jobs)} shards{task} in {out}: {summary.written} images written, "
            f"{summary.skipped} in shards already there, {len(summary.failures)} failed ({summary.seconds:.1f} s)"
        )
        failures += summary.failures
    if failures:
        print(f"failed: {len(failures)} frames (recording camera: count (why): frames); their shards are not written")
        print("\n".join(extract.format_failures(failures)))
        return EXIT_FAILED
    return 0


def _load_table(path: Path) -> dict:
    """Load the annotation table through the safe loader, or say how to get one."""
    if not path.is_file():
        msg = (
            f"no annotation table at {path}; download the official one, build one with "
            f"{command('build-annotation')}, or pass --annotation PKL {hint(path.parent)}"
        )
        raise BadInputError(msg)
    return load_annotation(path)


def _dry_run(jobs: Sequence[extract.ChunkJob], root: Path, overwrite: bool) -> int:
    """Say what a run would do: images to write and to skip per chunk; nothing is decoded or written."""
    write = skip = unplaced = 0
    for job in jobs:
        done = 0 if overwrite else sum(extract.is_complete_jpeg(root / t.path) for t in job.targets)
        skip += done
        if job.chunk is None:
            unplaced += len(job.targets) - done
            log.warning("%s: %d images cannot be extracted: %s", job.name, len(job.targets) - done, job.missing)
        else:
            write += len(job.targets) - done
            log.debug("%s: %d to write, %d done", job.name, len(job.targets) - done, done)
    print(f"dry run: {len(jobs)} chunks, {write} images to write, {skip} already done, {unplaced} without a chunk")
    return 0

