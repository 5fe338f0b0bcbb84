"""The RAT7M catalogue: every fact about the dataset and every path convention, defined once.

Recordings, Figshare articles, camera names, the mini-RAT7M joint order and skeleton, and the
names of files and folders on disk all live here. Every other module and script asks this one,
so a convention can never be written twice and disagree (the original scripts wrote
``Camera1/`` folders while the annotation table says ``camera1/``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from os import PathLike
from pathlib import Path, PurePosixPath

__all__ = [
    "ANNOTATION_ARTICLE",
    "ANNOTATION_DIR",
    "BONES",
    "BONE_COLOURS",
    "BONE_PARTS",
    "CAMERA_NAMES",
    "CHUNK_LENGTH",
    "ERROR_COLOUR",
    "FIGSHARE_API_URL",
    "FIGSHARE_COLLECTION_ID",
    "FLIP_INDEX",
    "GT_COLOUR",
    "IMAGES_DIR",
    "JOINT_NAMES",
    "KEYPOINT_SIGMAS",
    "LEFT_RIGHT_PAIRS",
    "MINI_ANNOTATION_DRIVE_ID",
    "MINI_ANNOTATION_NAME",
    "N_JOINTS",
    "OKABE_ITO",
    "PART_COLOURS",
    "PRED_COLOUR",
    "RECORDINGS",
    "SPLITS",
    "VIDEO_DIR",
    "Article",
    "ChunkName",
    "Recording",
    "camera_name",
    "camera_number",
    "image_path",
    "image_paths",
    "mini_annotation_path",
    "mocap_file_name",
    "parse_cameras",
    "parse_image_path",
    "parse_mocap_file_name",
    "parse_recordings",
    "parse_video_chunk_name",
    "recording_by_name",
    "recording_for",
    "video_chunk_name",
]

#: Folder (under the dataset root) holding the MP4 chunks.
VIDEO_DIR = "video_sequences"
#: Folder (under the dataset root) holding the ``mocap-s{S}-d{D}.mat`` files.
ANNOTATION_DIR = "annotations"
#: Folder (under the dataset root) receiving extracted JPEG frames.
IMAGES_DIR = "images_unpacked"
#: File name of the official mini-RAT7M annotation table (a pickle).
MINI_ANNOTATION_NAME = "mini_rat7m_train_test_annotation.pkl"
#: Google Drive file id of the official mini-RAT7M annotation table.
MINI_ANNOTATION_DRIVE_ID = "1sZwwX2v0NGkT9j3I5-QCetCxCKEZk5U-"

#: Figshare collection holding every RAT7M article.
FIGSHARE_COLLECTION_ID = 5295370
#: Figshare public API root.
FIGSHARE_API_URL = "https://api.figshare.com/v2"

#: Frames per video chunk in the published dataset (the last chunk of a camera may be shorter).
CHUNK_LENGTH = 3500


@dataclass(frozen=True)
class Article:
    """A Figshare article (id and version) holding some of the dataset's files."""

    id: int
    version: int


@dataclass(frozen=True)
class Recording:
    """One RAT7M recording session: a subject on a day, with its video article."""

    subject: int
    day: int
    video_article: Article
    split: str  # "train" or "test" (the official mini-RAT7M split)

    @property
    def name(self) -> str:
        """The recording's short name, e.g. ``s1-d1``."""
        return f"s{self.subject}-d{self.day}"


#: The seven recordings, in the order of the dataset documentation.
RECORDINGS: tuple[Recording, ...] = (
    Recording(1, 1, Article(13751023, 1), "train"),
    Recording(2, 1, Article(13753417, 1), "train"),
    Recording(2, 2, Article(13759336, 1), "train"),
    Recording(3, 1, Article(13764208, 1), "train"),
    Recording(4, 1, Article(13767502, 2), "train"),
    Recording(5, 1, Article(13770565, 1), "test"),
    Recording(5, 2, Article(13769833, 1), "test"),
)

#: The article holding all seven ``mocap-s{S}-d{D}.mat`` files.
ANNOTATION_ARTICLE = Article(13739233, 2)

#: Split names used in the table's ``train_test`` column.
SPLITS = ("train", "test")

#: Camera names as they appear in the ``.mat`` files and the table (``Camera1`` .. ``Camera6``).
CAMERA_NAMES: tuple[str, ...] = tuple(f"Camera{c}" for c in range(1, 7))

#: The 20 motion-capture markers in mini-RAT7M order: index i of every (..., 20, D) array.
JOINT_NAMES: tuple[str, ...] = (
    "HeadF", "HeadB", "HeadL", "SpineF", "SpineM", "SpineL", "Offset1", "Offset2",
    "HipL", "HipR", "ElbowL", "ArmL", "ShoulderL", "ShoulderR", "ElbowR", "ArmR",
    "KneeR", "KneeL", "ShinL", "ShinR",
)  # fmt: skip
N_JOINTS = len(JOINT_NAMES)

#: The 21 bones of the skeleton as pairs of joint indices.
BONES: tuple[tuple[int, int], ...] = (
    (0, 1), (0, 2), (1, 2), (2, 3), (3, 4), (4, 5), (3, 6), (5, 7), (3, 12), (3, 13), (5, 8),
    (5, 9), (6, 7), (8, 17), (9, 16), (17, 18), (16, 19), (10, 11), (10, 12), (13, 14), (14, 15),
)  # fmt: skip

#: Body part of each bone, for colouring: head, spine, left/right fore limb, left/right hind limb.
BONE_PARTS: tuple[str, ...] = (
    "head", "head", "head", "spine", "spine", "spine", "spine", "spine", "fore_left",
    "fore_right", "hind_left", "hind_right", "spine", "hind_left", "hind_right", "hind_left",
    "hind_right", "fore_left", "fore_left", "fore_right", "fore_right",
)  # fmt: skip

#: The Okabe-Ito palette (Okabe & Ito 2008, "Color Universal Design"), RGB 0-255: colours that stay
#: apart for readers with deuteranopia, protanopia or tritanopia. Every drawing takes its colours
#: from here; tests/render/test_palette.py checks the pairs that must be told apart under simulated
#: colour-blindness (Machado et al. 2009) in CIELAB.
OKABE_ITO: dict[str, tuple[int, int, int]] = {
    "orange": (230, 159, 0),
    "sky_blue": (86, 180, 233),
    "bluish_green": (0, 158, 115),
    "yellow": (240, 228, 66),
    "blue": (0, 114, 178),
    "vermillion": (213, 94, 0),
    "reddish_purple": (204, 121, 167),
    "grey": (153, 153, 153),
    "black": (0, 0, 0),
}

#: Colour (RGB, 0-255) of each body part, used by every drawing of the skeleton: left limbs in
#: blues, right limbs in oranges, so left and right differ in hue for every reader.
PART_COLOURS: dict[str, tuple[int, int, int]] = {
    "head": OKABE_ITO["yellow"],
    "spine": OKABE_ITO["grey"],
    "fore_left": OKABE_ITO["sky_blue"],
    "fore_right": OKABE_ITO["orange"],
    "hind_left": OKABE_ITO["blue"],
    "hind_right": OKABE_ITO["vermillion"],
}

#: Ground truth and prediction in overlays: told apart by colour (blue vs vermillion, far apart
#: under every colour-blindness) and by marker (filled circle vs cross, solid vs dashed bones).
GT_COLOUR: tuple[int, int, int] = OKABE_ITO["sky_blue"]
PRED_COLOUR: tuple[int, int, int] = OKABE_ITO["vermillion"]
GT_MARKER, PRED_MARKER = "o", "X"
#: Lines from each ground-truth joint to its prediction.
ERROR_COLOUR: tuple[int, int, int] = OKABE_ITO["yellow"]

#: Colour (RGB, 0-255) of each bone, in BONES order.
BONE_COLOURS: tuple[tuple[int, int, int], ...] = tuple(PART_COLOURS[p] for p in BONE_PARTS)


def recording_by_name(name: str) -> Recording:
    """Return the recording called ``name`` (e.g. ``"s5-d2"``).

    Raises:
        KeyError: with the list of valid names, if there is no such recording.
    """
    for rec in RECORDINGS:
        if rec.name == name:
            return rec
    valid = ", ".join(r.name for r in RECORDINGS)
    raise KeyError(f"unknown recording {name!r}; valid names: {valid}")


def recording_for(subject: int, day: int) -> Recording:
    """Return the recording of ``subject`` on ``day``."""
    return recording_by_name(f"s{int(subject)}-d{int(day)}")


def parse_recordings(text: str | None) -> tuple[Recording, ...]:
    """Parse a comma-separated list of recording names (``None`` or ``"all"``: all seven)."""
    if text is None or text.strip().lower() in ("", "all"):
        return RECORDINGS
    names = [n.strip() for n in text.split(",") if n.strip()]
    return tuple(recording_by_name(n) for n in names)


def camera_name(camera: int) -> str:
    """Camera name as in the ``.mat`` files and the table: ``Camera3`` for camera 3."""
    return f"Camera{int(camera)}"


def camera_number(name: str) -> int:
    """Camera number from a name such as ``Camera3``, ``camera3`` or ``3``."""
    match = re.fullmatch(r"(?:[Cc]amera)?([1-9]\d*)", str(name).strip())
    if match is None or camera_name(int(match.group(1))) not in CAMERA_NAMES:
        raise KeyError(f"unknown camera {name!r}; valid: 1..{len(CAMERA_NAMES)} or Camera1..Camera6")
    return int(match.group(1))


def parse_cameras(text: str | None) -> tuple[str, ...]:
    """Parse a comma-separated list of cameras (``1,3`` or ``Camera1``); ``None``: all six."""
    if text is None or text.strip().lower() in ("", "all"):
        return CAMERA_NAMES
    return tuple(camera_name(camera_number(t)) for t in text.split(",") if t.strip())


def mini_annotation_path(root: str | PathLike) -> Path:
    """Where the mini-RAT7M table lives: ``<root>/mini_rat7m_train_test_annotation.pkl``.

    The download (``--mini-annotation``), the table builder, extraction and metrics all default to it.
    """
    return Path(root) / MINI_ANNOTATION_NAME


def mocap_file_name(recording: Recording) -> str:
    """Annotation file name of a recording: ``mocap-s1-d1.mat``."""
    return f"mocap-{recording.name}.mat"


_MOCAP_RE = re.compile(r"mocap-s(\d+)-d(\d+)\.mat")


def parse_mocap_file_name(name: str) -> Recording:
    """Recording of an annotation file name such as ``mocap-s5-d2.mat``."""
    match = _MOCAP_RE.fullmatch(PurePosixPath(name).name)
    if match is None:
        raise ValueError(f"{name!r} is not an annotation file name like 'mocap-s1-d1.mat'")
    return recording_for(int(match.group(1)), int(match.group(2)))


def video_chunk_name(recording: Recording, camera: str, start: int) -> str:
    """Video chunk file name: ``s1-d1-camera1-3500.mp4`` (``start``: first frame's index)."""
    return f"{recording.name}-camera{camera_number(camera)}-{int(start)}.mp4"


_CHUNK_RE = re.compile(r"s(\d+)-d(\d+)-camera(\d+)-(\d+)\.mp4")


@dataclass(frozen=True)
class ChunkName:
    """What a video chunk's file name says: recording, camera and first frame index."""

    recording: Recording
    camera: str
    start: int


def parse_video_chunk_name(name: str) -> ChunkName | None:
    """Parse ``s1-d1-camera1-3500.mp4``; ``None`` when the name is not a chunk name."""
    match = _CHUNK_RE.fullmatch(PurePosixPath(name).name)
    if match is None:
        return None
    subject, day, camera, start = (int(g) for g in match.groups())
    try:
        return ChunkName(recording_for(subject, day), camera_name(camera_number(str(camera))), start)
    except KeyError:
        return None


def image_path(recording: Recording, camera: str, frame: int) -> str:
    """Path of an extracted frame, relative to the dataset root, as in the table's ``image_path``.

    ``images_unpacked/s1-d1/camera1/frame_000014.jpg`` for frame 14 of Camera1 of s1-d1.
    """
    return image_paths(recording, camera, [frame])[0]


def image_paths(recording: Recording, camera: str, frames: Iterable[int]) -> list[str]:
    """:func:`image_path` of many frames of one camera at once (a table holds 676k of them)."""
    folder = f"{IMAGES_DIR}/{recording.name}/camera{camera_number(camera)}"
    return [f"{folder}/frame_{int(frame):06d}.jpg" for frame in frames]


_IMAGE_RE = re.compile(r"images_unpacked/s(\d+)-d(\d+)/camera(\d+)/frame_(\d{6,})\.jpg")


def parse_image_path(path: str) -> tuple[Recording, str, int] | None:
    """Inverse of :func:`image_path`; ``None`` if ``path`` does not follow the convention."""
    match = _IMAGE_RE.fullmatch(str(path))
    if match is None:
        return None
    subject, day, camera, frame = (int(g) for g in match.groups())
    try:
        return recording_for(subject, day), camera_name(camera_number(str(camera))), frame
    except KeyError:
        return None


#: Left/right joint pairs (indices into JOINT_NAMES), swapped when an image is mirrored.
#: HeadL has no right-hand partner in the RAT7M marker set, so a flip keeps it in place.
LEFT_RIGHT_PAIRS: tuple[tuple[int, int], ...] = ((8, 9), (10, 14), (11, 15), (12, 13), (17, 16), (18, 19))


def _flip_index() -> tuple[int, ...]:
    index = list(range(len(JOINT_NAMES)))
    for left, right in LEFT_RIGHT_PAIRS:
        index[left], index[right] = right, left
    return tuple(index)


#: ``FLIP_INDEX[i]``: the joint that joint ``i`` becomes in a mirrored image (YOLO's ``flip_idx``).
FLIP_INDEX: tuple[int, ...] = _flip_index()

#: Per-keypoint OKS sigmas, one definition for the COCO/MMPose export and for 2D scoring.
#: RAT7M has no human-annotation study of its own (its labels are motion capture), so each marker
#: takes the COCO keypoint sigma (Lin et al. 2014, cocodataset.org keypoint evaluation; the same
#: values MMPose ships for AP-10K animals) of its nearest anatomical counterpart: snout ~ nose
#: 0.026, back/left of head ~ ears 0.035, front spine and shoulders ~ shoulders 0.079, mid/low spine,
#: offsets and hips ~ hips 0.107, elbows 0.072, arms (forearm) ~ wrists 0.062, knees 0.087,
#: shins ~ ankles 0.089.
KEYPOINT_SIGMAS: tuple[float, ...] = (
    0.026, 0.035, 0.035, 0.079, 0.107, 0.107, 0.107, 0.107,
    0.107, 0.107, 0.072, 0.062, 0.079, 0.079, 0.072, 0.062,
    0.087, 0.087, 0.089, 0.089,
)  # fmt: skip
