"""Export from Python: one format of a table into ``OUT/<format>/``, with keyword arguments.

    >>> from rat7m.export import export
    >>> export("coco", table="mini_rat7m_train_test_annotation.pkl", out="exports", root="/data/rat7m",
    ...        split="train", cameras=("Camera1", "Camera3"))

This is what ``rat7m export`` (:mod:`rat7m.cli.export`) runs for each format; the command adds
``all``, ``--dry-run`` and the messages. An export is written into a staging folder and renamed
into place whole, with a manifest of what it holds: a complete export is skipped (unless
``overwrite``), a folder that is not an export of ours is refused.
"""

from __future__ import annotations

import os
import shlex
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from rat7m import catalogue
from rat7m.errors import BadInputError
from rat7m.export.common import (
    Selection,
    Summary,
    is_complete,
    publish,
    read_manifest,
    read_sizes,
    select,
    staging_folder,
)
from rat7m.export.registry import REGISTRY
from rat7m.table import load_annotation

__all__ = ["Sizes", "export_format", "run_export"]


class Sizes:
    """Image sizes, read once for every format that needs them (the outcome, error included, is kept).

    Args:
        selection: the rows and cameras exported; its ``sizes`` are filled in.
        images_root: the folder holding the table's ``image_path``.
        root: the dataset root (its videos give anipose a size when the images are not extracted).
        annotation: the table's file, named in the hint to extract the images.
        image_size: ``(width, height)`` taken for every image instead of reading the files.
    """

    def __init__(self, selection: Selection, *, images_root: Path, root: Path, annotation: Path | None = None,
                 image_size: tuple[int, int] | None = None) -> None:  # fmt: skip
        self.selection, self.images_root, self.root = selection, images_root, root
        self.annotation, self.image_size = annotation, image_size
        self._error: BadInputError | None = None
        self._read = False

    def from_images(self) -> None:
        """Fill the selection's sizes from the images (or ``image_size``); raise if images are missing."""
        if not self._read:
            self._read = True
            from rat7m.cli import command  # only the wording of the hint: what the user can type here

            selection = self.selection
            hint = (
                f"{command('extract')} --root {shlex.quote(str(self.images_root))} "
                f"--annotation {shlex.quote(str(self.annotation))} "
                f"--recordings {' '.join(r.name for r in selection.recordings)} "
                f"--cameras {','.join(str(catalogue.camera_number(c)) for c in selection.cameras)}"
            )
            try:
                read_sizes(selection, self.images_root, fixed=self.image_size, extract_command=hint)
            except BadInputError as exc:
                self._error = exc
        if self._error is not None:
            raise self._error

    def for_format(self, fmt: str) -> None:
        """Sizes as ``fmt`` needs them: from the images; anipose alone falls back to the video headers."""
        if REGISTRY[fmt].needs_images:
            self.from_images()
        elif fmt == "anipose":
            try:
                self.from_images()
            except BadInputError:
                self._from_videos()

    def _from_videos(self) -> None:
        from rat7m.export.anipose import size_from_video

        for recording in self.selection.recordings:
            for camera in self.selection.cameras:
                if (recording.name, camera) in self.selection.sizes:
                    continue
                size = size_from_video(self.root / catalogue.VIDEO_DIR, recording, camera)
                if size is None:
                    msg = (f"no image or video of {recording.name} {camera} to read its size from; "
                           "pass --image-size WxH or --root DATASET_ROOT")  # fmt: skip
                    raise BadInputError(msg) from None
                self.selection.sizes[(recording.name, camera)] = size


def selection_options(selection: Selection) -> dict[str, Any]:
    """What a manifest records of the rows and cameras, to tell whether an export holds the same ones."""
    return {"split": selection.split, "recordings": [r.name for r in selection.recordings],
            "cameras": list(selection.cameras)}  # fmt: skip


def same_options(manifest: Mapping[str, Any], selection: Selection) -> bool:
    """Whether a complete export's manifest is of the same rows and cameras as ``selection``."""
    now = selection_options(selection)
    return all(manifest.get(key) == value for key, value in now.items())


def run_export(
    fmt: str,
    selection: Selection,
    *,
    out: Path,
    root: Path,
    images_root: Path,
    annotation: Path | None = None,
    allow_skew: bool = False,
    val_recordings: Iterable[catalogue.Recording] | None = None,
    overwrite: bool = False,
) -> Summary:
    """Write one format into ``out/<format>/`` through a staging folder (or skip a complete one).

    The selection's image sizes must be filled in already (:meth:`Sizes.for_format`).

    Raises:
        BadInputError: the format refuses the data, the folder is someone else's, or it cannot be
            written (read-only, disk full): one line, and nothing left under ``out/<format>/``.
    """
    final = out / fmt
    if final.is_symlink():
        raise BadInputError(f"{final} is a symbolic link; exports are never written through one: move it or "
                            "choose another --out")  # fmt: skip
    if is_complete(final) and not overwrite:
        old = read_manifest(final)
        if not same_options(old, selection):
            msg = (f"{final} holds an export of other rows or cameras ({old.get('split')}, "
                   f"{', '.join(map(str, old.get('recordings', [])))}); pass --overwrite to replace it")  # fmt: skip
            raise BadInputError(msg)
        return Summary(fmt, final, skipped=True)
    if final.exists() and not is_complete(final):
        # an export is renamed into place whole, manifest included: this folder is someone else's
        raise BadInputError(f"{final} exists and is not an export made by export.py; move it or choose another --out")
    export_format = REGISTRY[fmt]
    given = {"images_root": images_root, "root": root, "allow_skew": allow_skew, "val_recordings": val_recordings}
    stage = None
    try:
        stage = staging_folder(final)
        options = {name: value for name, value in given.items() if name in export_format.options}
        summary = export_format.export(selection, stage, final=final, **options)
        manifest = {"format": fmt, "annotation": str(annotation), **selection_options(selection),
                    "images": summary.images, "instances": summary.instances,
                    "missing_keypoints": summary.missing_keypoints}  # fmt: skip
        publish(stage, final, manifest)
    except BaseException as exc:
        if stage is not None:
            shutil.rmtree(stage, ignore_errors=True)
        if isinstance(exc, OSError) and not isinstance(exc, BadInputError):
            where = exc.filename or final
            raise BadInputError(f"cannot write the {fmt} export to {where}: {exc.strerror or exc}; "
                                "free some space or choose another --out") from None  # fmt: skip
        raise
    return summary


def export_format(
    fmt: str,
    *,
    table: str | os.PathLike | dict,
    out: str | os.PathLike,
    root: str | os.PathLike = ".",
    images_root: str | os.PathLike | None = None,
    split: str | None = None,
    recordings: Iterable[str | catalogue.Recording] | None = None,
    cameras: Iterable[str | int] | None = None,
    val_recordings: Iterable[str | catalogue.Recording] | None = None,
    allow_skew: bool = False,
    image_size: tuple[int, int] | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> Summary:
    """Export one format of ``table`` into ``out/<fmt>/`` (what :func:`rat7m.export.export` runs).

    Args:
        fmt: a format name (``coco``, ``dlc``, ``yolo``, ``slp``, ``anipose``, ``dannce``).
        table: the table's file (loaded safely), or a table already loaded.
        out: output folder; the format goes to ``out/<fmt>/``.
        root: the dataset root (videos; the images too unless ``images_root`` is given).
        images_root: the folder holding the table's ``image_path`` (default: ``root``).
        split: ``train``, ``test`` or ``all`` (default: ``all``; dlc: ``train``).
        recordings: names such as ``"s1-d1"`` (default: every recording of the table).
        cameras: names or numbers such as ``"Camera1"`` or ``1`` (default: all six).
        val_recordings: yolo: whole recordings for validation (default: the last training recording).
        allow_skew: anipose: write cameras with skew anyway (anipose ignores it).
        image_size: ``(width, height)`` of every image, instead of reading the files.
        overwrite: redo an export that is already complete.
        progress: draw progress bars.

    Returns:
        What was written (or that a complete export was skipped).

    Raises:
        BadInputError: a bad argument, table or output folder, missing images or library.
    """
    if allow_skew and "allow_skew" not in REGISTRY[fmt].options:
        raise BadInputError(f"allow_skew is an option of the anipose export, not of {fmt}")
    if val_recordings is not None and "val_recordings" not in REGISTRY[fmt].options:
        raise BadInputError(f"val_recordings is an option of the yolo export, not of {fmt}")
    REGISTRY[fmt].require()
    root, out = Path(root), Path(out)
    annotation = None if isinstance(table, dict) else Path(table)
    loaded = table if isinstance(table, dict) else load_annotation(Path(table))
    try:
        camera_names = None if cameras is None else catalogue.parse_cameras(",".join(str(c) for c in cameras))
        recording_names, val_names = _recordings(recordings), _recordings(val_recordings)
    except KeyError as exc:
        raise BadInputError(str(exc.args[0])) from None
    selection = select(loaded, split=split or REGISTRY[fmt].default_split, recordings=recording_names,
                       cameras=camera_names)  # fmt: skip
    selection.progress = progress
    images = Path(images_root) if images_root is not None else root
    Sizes(selection, images_root=images, root=root, annotation=annotation, image_size=image_size).for_format(fmt)
    return run_export(fmt, selection, out=out, root=root, images_root=images, annotation=annotation,
                      allow_skew=allow_skew, val_recordings=val_names, overwrite=overwrite)  # fmt: skip


def _recordings(items: Iterable[str | catalogue.Recording] | None) -> tuple[catalogue.Recording, ...] | None:
    """Recordings given by name or as catalogue entries (None stays None: the default)."""
    if items is None:
        return None
    return tuple(catalogue.parse_recordings(",".join(r if isinstance(r, str) else r.name for r in items)))
