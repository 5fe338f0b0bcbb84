"""What every tool reader shares: the map from the names our exports wrote back to table rows and
cameras, the collector that places predictions and counts unmatched and duplicate ones, and the
bounds every number and file must respect.

Names an export writes, and how they map back (rows of the scored split, cameras of the table):

* COCO ``image_id``: ``row * 10 + camera number`` (:func:`rat7m.export.coco.image_id`).
* Image file names: the table's ``image_path`` (COCO ``file_name``, SLEAP image sequences,
  ``analyze_images``' index), DLC's ``labeled-data/<recording>_<camera>/<file name>`` and the YOLO
  export's unique stems ``<recording>_<camera>_<frame>`` (:func:`rat7m.export.yolo.image_stem`);
  an image two rows share is a prediction for both rows.
* A chunk video ``s5-d1-camera3-3500.mp4``: frame ``k`` of it is the camera's video frame
  ``3500 + k``, found through the table's ``frame_idx``.
* 3D: DANNCE's ``sampleID`` is the table row; anipose's ``fnum`` is the ``fnum``-th sample of the
  recording named by the file (table order: the frame index of our SLEAP export).

Tools write 0-based pixels (the centre of the top-left pixel is (0, 0)); the collector converts them
to the table's convention (:attr:`rat7m.model.Table.pixel_convention`) once, at the end.

A prediction of a table row outside the scored split (a training image a tool also predicted) is
counted and ignored; one that names nothing of the table is *unmatched*; a second prediction for the
same (sample, camera) is a *duplicate* and the one with the higher score is kept. Both are counted
and the first example is named, never silently dropped. A joint a tool did not predict (its own encoding: NaN,
likelihood 0 with NaN, visibility 0) is *missing*: left out of the pixel errors and of the
triangulation, counted in the report, and a view with no prediction at all is no detection for OKS AP.
"""

from __future__ import annotations

import contextlib
import gc
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from rat7m import catalogue, pixels
from rat7m.errors import BadInputError, Rat7mError
from rat7m.model import Table

__all__ = [
    "MAX_CONFIDENCE",
    "MAX_COORDINATE",
    "MAX_FILE_BYTES",
    "MAX_PER_IMAGE",
    "OUTSIDE",
    "Collector2D",
    "Collector3D",
    "Report",
    "TableIndex",
    "ToolPredictions2D",
    "ToolPredictions3D",
    "check_confidence",
    "check_size",
    "check_values",
    "is_float",
    "joint_order",
    "library_read",
    "no_gc",
    "one_line",
    "path_parts",
    "read_text",
]

#: Largest prediction file read (bytes): text formats are parsed whole, so this bounds memory.
MAX_FILE_BYTES = 1 << 30
#: Largest absolute pixel or mm value accepted (far beyond any image or arena, far below overflow).
MAX_COORDINATE = 1e7
#: Largest confidence accepted (tools write [0, 1]; SLEAP's peak values may be a little above 1).
MAX_CONFIDENCE = 1e6
#: Predictions allowed per image of the split before a file is refused as not about this table.
MAX_PER_IMAGE = 100

_RECORDING = re.compile(r"s\d+-d\d+")
#: What a lookup returns for a name of the table that is outside the scored split.
OUTSIDE: list[tuple[int, int]] = [(-1, -1)]


def check_size(path: Path, limit: int | None = None) -> int:
    """The size of ``path`` in bytes; BadInputError if missing or above ``limit`` (default :data:`MAX_FILE_BYTES`)."""
    limit = MAX_FILE_BYTES if limit is None else limit
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise BadInputError(f"prediction file {path} cannot be read: {exc.strerror or exc}") from None
    if not path.is_file():
        raise BadInputError(f"prediction file {path} is not a file")
    if size > limit:
        raise BadInputError(f"{path} is {size} bytes, above the {limit}-byte limit of a prediction file")
    return size


@contextlib.contextmanager
def library_read(path: Path, what: str) -> Iterator[None]:
    """Around a library reading the binary file ``path`` (a ``what``): its size checked first, then any
    exception the library raises on a damaged file made one :class:`BadInputError` line.

    Our own errors and an ImportError (a missing library is not a damaged file) pass through.
    """
    check_size(path)
    try:
        yield
    except (Rat7mError, ImportError):
        raise
    except Exception as exc:  # h5py, PyTables, pandas, scipy and sleap-io raise many kinds on a damaged file
        raise BadInputError(f"{path} is not a readable {what} ({type(exc).__name__}: {one_line(exc)})") from None


def read_text(path: Path, limit: int | None = None) -> str:
    """The file as UTF-8 text (a BOM is dropped), at most ``limit`` bytes read (default :data:`MAX_FILE_BYTES`)."""
    limit = MAX_FILE_BYTES if limit is None else limit
    check_size(path, limit)
    with path.open("rb") as handle:
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise BadInputError(f"{path} grew above the {limit}-byte limit while it was read")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BadInputError(f"{path} is not UTF-8 text (byte {exc.start})") from None


def check_values(values: np.ndarray, what: str, *, bound: float = MAX_COORDINATE, allow_nan: bool = True) -> None:
    """Raise BadInputError if ``values`` holds inf, NaN (unless allowed) or magnitudes above ``bound``."""
    values = np.asarray(values, dtype=np.float64)
    bad = np.isinf(values) | (np.abs(np.nan_to_num(values)) > bound)
    if not allow_nan:
        bad |= np.isnan(values)
    if bad.any():
        where = tuple(int(i) for i in np.argwhere(bad)[0])
        msg = (f"{what}: value {float(values[where])!r} at index {list(where)} is not allowed "
               f"(finite, magnitude at most {bound:g}{'' if allow_nan else ', not NaN'})")  # fmt: skip
        raise BadInputError(msg)


def check_confidence(values: np.ndarray, what: str) -> None:
    """Confidences must be finite (or NaN for a missing joint) and in ``[0, MAX_CONFIDENCE]``."""
    values = np.asarray(values, dtype=np.float64)
    check_values(values, what, bound=MAX_CONFIDENCE)
    negative = values < 0
    if negative.any():
        where = tuple(int(i) for i in np.argwhere(negative)[0])
        raise BadInputError(f"{what}: confidence {float(values[where])!r} at index {list(where)} is below 0")


def path_parts(text: str) -> tuple[str, ...]:
    """The components of a path written on any system (``/`` or ``\\``)."""
    return tuple(p for p in str(text).replace("\\", "/").split("/") if p)


def joint_order(names: Sequence[str], what: str) -> np.ndarray:
    """Index into ``names`` of each of our joints, by name (a tool may order or subset its body parts)."""
    where = {str(n): i for i, n in enumerate(names)}
    missing = [j for j in catalogue.JOINT_NAMES if j not in where]
    if missing:
        msg = (f"{what} has no body part {missing[0]!r} ({len(missing)} of our {catalogue.N_JOINTS} joints missing; "
               f"it has {', '.join(list(where)[:25])}); was it trained on a rat7m export?")  # fmt: skip
        raise BadInputError(msg)
    return np.array([where[j] for j in catalogue.JOINT_NAMES])


@contextlib.contextmanager
def no_gc() -> Iterator[None]:
    """The cyclic garbage collector off while millions of acyclic objects are made (it would walk them repeatedly)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# --------------------------------------------------------------------------------------------------
# the map back to rows and cameras


class TableIndex:
    """The rows of one split of a table and every name an export gave them.

    Positions (``pos``) are indices into ``rows`` (the split, in table order); views (``v``) are
    indices into the table's ``camera_names``.
    """

    def __init__(self, table: dict[str, Any], rows: np.ndarray) -> None:
        self.table = table
        self.rows = np.asarray(rows, dtype=np.int64)
        self.cameras = [str(c) for c in table["camera_names"]]
        typed = Table.of(table)
        self.convention = typed.pixel_convention
        columns = table["table"]
        recording = np.full(len(self.rows), "", dtype=object)
        for rec, mask in typed.recording_masks(self.rows):
            recording[mask] = rec.name
        if (recording == "").any():  # a row of no catalogue recording: the catalogue says which pair it is
            row = int(self.rows[np.flatnonzero(recording == "")[0]])
            try:
                catalogue.recording_for(int(columns["subject_idx"][row]), int(columns["day_idx"][row]))
            except KeyError as exc:
                raise BadInputError(f"annotation table: {exc.args[0]}") from None
        self.recording = recording.tolist()
        self.position = {int(r): i for i, r in enumerate(self.rows.tolist())}
        self.n_table_rows = len(columns["subject_idx"])
        self.split_recordings = set(self.recording)
        self._view_of_number = {catalogue.camera_number(c): v for v, c in enumerate(self.cameras)}

    def outside(self, text: str) -> bool:
        """True when ``text`` names a RAT7M recording that has no sample in the split."""
        match = _RECORDING.search(str(text))
        known = {r.name for r in catalogue.RECORDINGS}
        return match is not None and match.group(0) in known and match.group(0) not in self.split_recordings

    @property
    def n(self) -> int:
        return len(self.rows)

    def _paths(self, v: int) -> list[str]:
        return [str(p) for p in np.asarray(self.table["table"]["image_path"][self.cameras[v]])[self.rows]]

    @cached_property
    def by_name(self) -> dict[tuple[str, ...], list[tuple[int, int]]]:
        """Every name of every image (see :meth:`lookup_path`) -> its (pos, v) pairs."""
        from rat7m.export.yolo import image_stem

        index: dict[tuple[str, ...], list[tuple[int, int]]] = {}
        with no_gc():  # ~1.5 million small objects and no cycles: the collector would only walk them again
            for v, camera in enumerate(self.cameras):
                self._add_names(index, v, camera, image_stem)
        return index

    def _add_names(self, index: dict, v: int, camera: str, image_stem: Callable[[str, str, str], str]) -> None:
        """The three names of every image of view ``v`` (see :meth:`lookup_path`)."""
        for pos, (path, recording) in enumerate(zip(self._paths(v), self.recording, strict=True)):
            parts = path.replace("\\", "/").rsplit("/", 3)[-3:]
            for key in (("path", *parts), ("dlc", f"{recording}_{camera}", parts[-1]),
                        ("stem", image_stem(recording, camera, path))):  # fmt: skip
                index.setdefault(key, []).append((pos, v))

    def lookup_path(self, text: str) -> list[tuple[int, int]]:
        """(pos, v) pairs of an image named by a path or a stem, in any of the ways our exports name it.

        Tried in turn: the last three components as the table's ``image_path`` ends
        (``s5-d1/camera3/frame_000123.jpg``), the last two as DLC's ``<recording>_<camera>/<file>``,
        and the file stem as the YOLO export's unique stem. :data:`OUTSIDE` for an image of a recording
        outside the split; empty when nothing matches.
        """
        parts = path_parts(text)
        if not parts:
            return []
        name = parts[-1]
        stem = name.rsplit(".", 1)[0] if "." in name[1:] else name
        for key in (("path", *parts[-3:]), ("dlc", *parts[-2:]), ("stem", stem)):
            found = self.by_name.get(key)
            if found:
                return found
        return OUTSIDE if self.outside(text) else []

    def lookup_coco_id(self, image_id: int) -> list[tuple[int, int]]:
        """(pos, v) of a COCO export image id (``row * 10 + camera number``)."""
        row, number = divmod(int(image_id), 10)
        v = self._view_of_number.get(number)
        if v is None:
            return []
        pos = self.position.get(row)
        if pos is None:
            return OUTSIDE if 0 <= row < self.n_table_rows else []
        return [(pos, v)]

    @cached_property
    def by_frame(self) -> dict[tuple[str, int, int], list[int]]:
        """(recording, v, camera video frame) -> positions."""
        index: dict[tuple[str, int, int], list[int]] = {}
        for v, camera in enumerate(self.cameras):
            frames = np.asarray(self.table["table"]["frame_idx"][camera])[self.rows].astype(np.int64).tolist()
            for pos, (frame, recording) in enumerate(zip(frames, self.recording, strict=True)):
                index.setdefault((recording, v, frame), []).append(pos)
        return index

    def chunk_video(self, name: str) -> tuple[str, int, int] | None:
        """(recording, v, first frame) of a chunk video named like ``s5-d1-camera3-3500`` (any suffix after)."""
        parts = path_parts(name)
        match = re.match(r"(s\d+-d\d+-camera\d+-\d+)", parts[-1] if parts else "")
        parsed = catalogue.parse_video_chunk_name(match.group(1) + ".mp4") if match else None
        if parsed is None or parsed.camera not in self.cameras:
            return None
        return parsed.recording.name, self.cameras.index(parsed.camera), parsed.start

    def lookup_video_frame(self, video: tuple[str, int, int], frame: int) -> list[tuple[int, int]]:
        """(pos, v) of frame ``frame`` of a chunk video from :meth:`chunk_video`."""
        recording, v, start = video
        if recording not in self.split_recordings:
            return OUTSIDE
        return [(pos, v) for pos in self.by_frame.get((recording, v, start + int(frame)), [])]

    def recording_positions(self, recording: str) -> np.ndarray:
        """Positions of a recording's samples, in table order."""
        return np.flatnonzero(np.asarray(self.recording) == recording)


# --------------------------------------------------------------------------------------------------
# collecting predictions


@dataclass
class Report:
    """What happened to a file's predictions: counts and the first example of each problem."""

    format: str
    unit: str = "views"  # what one prediction is for: a (sample, camera) view in 2D, a sample in 3D
    n_predictions: int = 0
    n_matched: int = 0
    n_outside_split: int = 0
    n_unmatched: int = 0
    first_unmatched: str | None = None
    n_duplicates: int = 0
    first_duplicate: str | None = None
    n_missing_views: int = 0
    n_missing_joints: int = 0
    notes: list[str] = field(default_factory=list)

    def unmatched(self, label: str) -> None:
        self.n_unmatched += 1
        if self.first_unmatched is None:
            self.first_unmatched = label

    def duplicate(self, label: str) -> None:
        self.n_duplicates += 1
        if self.first_duplicate is None:
            self.first_duplicate = label

    def lines(self) -> list[str]:
        """Printable lines (the counts, then the problems with their first example)."""
        out = [f"{self.format}: {self.n_predictions} predictions, {self.n_matched} matched to the split"]
        if self.n_outside_split:
            out.append(f"  {self.n_outside_split} of table samples outside the split (ignored)")
        if self.n_unmatched:
            out.append(f"  {self.n_unmatched} unmatched (name no sample of the split; first: {self.first_unmatched})")
        if self.n_duplicates:
            out.append(f"  {self.n_duplicates} duplicates (the higher score kept; first: {self.first_duplicate})")
        if self.n_missing_views:
            out.append(f"  {self.n_missing_views} labelled {self.unit} have no prediction (no detection)")
        if self.n_missing_joints:
            out.append(f"  {self.n_missing_joints} labelled joints not predicted (left out of the errors)")
        out += [f"  {note}" for note in self.notes]
        return out

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


@dataclass(frozen=True)
class ToolPredictions2D:
    """2D predictions of a split in the table's pixel convention.

    ``points`` (N, V, J, 2), NaN where missing; ``confidence`` (N, V, J), 0 where missing; ``score``
    (N, V) the tool's detection score (its ranking for OKS AP), 0 where there is no prediction.
    """

    points: np.ndarray
    confidence: np.ndarray
    report: Report
    score: np.ndarray


@dataclass(frozen=True)
class ToolPredictions3D:
    """3D predictions of a split, mm: ``points`` (N, J, 3) NaN where missing; ``confidence`` (N, J)."""

    points: np.ndarray
    confidence: np.ndarray
    report: Report


class Collector2D:
    """Places 0-based 2D predictions at (pos, v); keeps the higher-scored of duplicates (the earlier on a tie).

    Predictions are buffered and placed at once in :meth:`finish` (numpy over all of them: a full test
    split is 147k predictions, and per-prediction numpy calls would cost a minute).
    """

    def __init__(self, index: TableIndex, fmt: str) -> None:
        self.index = index
        self.report = Report(fmt)
        self._limit = MAX_PER_IMAGE * max(index.n * len(index.cameras), 1)
        self._targets: list[list[tuple[int, int]]] = []
        self._labels: list[str | Callable[[], str]] = []
        self._xy: list[np.ndarray] = []
        self._confidence: list[np.ndarray] = []
        self._score: list[np.ndarray] = []

    def add(self, targets: Iterable[tuple[int, int]], xy: np.ndarray, confidence: np.ndarray, score: float,
            label: str) -> None:  # fmt: skip
        """One prediction: ``xy`` (J, 2) 0-based px (NaN = missing), ``confidence`` (J,), its ranking ``score``."""
        self.add_many([list(targets)], np.asarray(xy)[None], np.asarray(confidence)[None], np.array([score]),
                      [label])  # fmt: skip

    def add_many(self, targets: list[list[tuple[int, int]]], xy: np.ndarray, confidence: np.ndarray,
                 score: np.ndarray, labels: Sequence[str | Callable[[], str]]) -> None:  # fmt: skip
        """M predictions: ``targets`` M lists of (pos, v), ``xy`` (M, J, 2), ``confidence`` (M, J), ``score`` (M,).

        ``labels`` name each prediction in the report (a callable is only called when it is needed).
        """
        self.report.n_predictions += len(targets)
        if self.report.n_predictions > self._limit:
            msg = f"{self.report.format}: more than {self._limit} predictions for {self.index.n} samples; wrong file?"
            raise BadInputError(msg)
        self._targets.extend(targets)
        self._labels.extend(labels)
        self._xy.append(np.asarray(xy, dtype=np.float64).reshape(len(targets), catalogue.N_JOINTS, 2))
        self._confidence.append(np.asarray(confidence, dtype=np.float64).reshape(len(targets), catalogue.N_JOINTS))
        self._score.append(np.asarray(score, dtype=np.float64).reshape(len(targets)))

    def _label(self, i: int) -> str:
        label = self._labels[i]
        return label() if callable(label) else label

    def finish(self, target: np.ndarray | None = None) -> ToolPredictions2D:
        """The predictions in the table's convention; ``target`` (N, V, J, 2) lets the report count missing joints."""
        N, V, J = self.index.n, len(self.index.cameras), catalogue.N_JOINTS
        points, confidence, score = np.full((N, V, J, 2), np.nan), np.zeros((N, V, J)), np.zeros((N, V))
        hits: list[tuple[int, int, int]] = []
        for i, targets in enumerate(self._targets):
            if targets == OUTSIDE:
                self.report.n_outside_split += 1
            elif not targets:
                self.report.unmatched(self._label(i))
            else:
                self.report.n_matched += 1
                hits.extend((i, pos, v) for pos, v in targets)
        if hits:
            xy, conf = np.concatenate(self._xy), np.concatenate(self._confidence)
            scores = np.concatenate(self._score)
            which, pos, view = np.array(hits, dtype=np.int64).T
            key = pos * V + view
            first_seen = np.unique(key, return_index=True)[1]
            repeated = np.setdiff1d(np.arange(len(key)), first_seen)
            if len(repeated):  # file order: the report names the first prediction that hit a view again
                self.report.duplicate(self._label(int(which[repeated[0]])))
                self.report.n_duplicates += len(repeated) - 1
            best = np.lexsort((which, -scores[which], key))  # per view: highest score, then earliest
            winners = best[np.r_[True, key[best][1:] != key[best][:-1]]]
            w, p, v = which[winners], pos[winners], view[winners]
            points[p, v] = xy[w]
            confidence[p, v] = np.where(np.isfinite(xy[w]).all(axis=-1), np.nan_to_num(conf[w]), 0.0)
            score[p, v] = scores[w]
        points = pixels.from_zero_based(points, self.index.convention)
        if target is not None:
            labelled = np.isfinite(target).all(axis=-1)
            missing = ~np.isfinite(points).all(axis=-1)
            self.report.n_missing_joints = int((labelled & missing).sum())
            self.report.n_missing_views = int((labelled.any(axis=-1) & missing.all(axis=-1)).sum())
        return ToolPredictions2D(points, confidence, self.report, score)


class Collector3D:
    """Places 3D predictions (mm) at sample positions; keeps the higher-scored of duplicates."""

    def __init__(self, index: TableIndex, fmt: str) -> None:
        N, J = index.n, catalogue.N_JOINTS
        self.index = index
        self.points = np.full((N, J, 3), np.nan)
        self.confidence = np.zeros((N, J))
        self.score = np.full(N, -np.inf)
        self.report = Report(fmt, unit="samples")

    def add(self, positions: Iterable[int], xyz: np.ndarray, confidence: np.ndarray, score: float,
            label: str) -> None:  # fmt: skip
        """One prediction: ``xyz`` (J, 3) mm (NaN = missing), ``confidence`` (J,)."""
        self.report.n_predictions += 1
        positions = list(positions)
        if positions == [-1]:  # a table row outside the split
            self.report.n_outside_split += 1
            return
        if not positions:
            self.report.unmatched(label)
            return
        self.report.n_matched += 1
        for pos in positions:
            if np.isfinite(self.score[pos]):
                self.report.duplicate(label)
                if score <= self.score[pos]:
                    continue
            self.points[pos] = xyz
            self.confidence[pos] = np.where(np.isfinite(xyz).all(axis=-1), np.nan_to_num(confidence), 0.0)
            self.score[pos] = score

    def finish(self, target: np.ndarray | None = None) -> ToolPredictions3D:
        """The predictions; ``target`` (N, J, 3) lets the report count missing samples and joints."""
        if target is not None:
            labelled = np.isfinite(target).all(axis=-1)
            missing = ~np.isfinite(self.points).all(axis=-1)
            self.report.n_missing_joints = int((labelled & missing).sum())
            self.report.n_missing_views = int((labelled.any(axis=-1) & missing.all(axis=-1)).sum())
        return ToolPredictions3D(self.points, self.confidence, self.report)


def is_float(text: str) -> bool:
    """True when Python's ``float`` reads ``text``."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message, at most 200 characters (libraries' messages span pages)."""
    lines = str(exc).strip().splitlines()
    return lines[0][:200] if lines else type(exc).__name__
