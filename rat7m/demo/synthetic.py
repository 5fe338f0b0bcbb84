"""A synthetic dataset in RAT7M's exact on-disk format: the demo's data and every test's fixture.

The real dataset is hundreds of GB; tests and the demo need something small that has every
property the toolkit relies on, with a known truth to check against:

- ``annotations/mocap-s{S}-d{D}.mat`` in the real struct layout (written by
  :func:`rat7m.matfile.save_recording`): a plausible moving rat (20 markers in mm, smooth motion
  inside the arena, a few NaN dropouts, marker fields not in joint order), six cameras around
  the arena with realistic intrinsics, skew and lens distortion, and per-camera ``frame`` maps,
  one camera with a constant offset.
- ``video_sequences/s{S}-d{D}-camera{C}-{start}.mp4``: real H.264, cut into chunks of
  ``chunk_length`` frames (the last one short), in one of two encodings (:data:`ENCODINGS`):
  ``bframes`` (B-frames, as a re-encode would have) or ``capture`` (the rig's own
  ``x264 --preset ultrafast``: no B-frames, CAVLC, no deblocking, scene-cut off, a key frame
  every 250, each chunk starting with an IDR, as its capture program started a new encoder per
  file). Each frame shows a textured floor,
  the rat's skeleton projected through that camera (:func:`rat7m.geometry.project`) for the
  mocap sample(s) whose ``frame`` map points at it, and the recording-wide frame index as a
  barcode (:mod:`rat7m.barcode`), so a test can prove any decoded picture is the right frame.

The cameras are MATLAB calibrations, as the real ones: a projection gives MATLAB's 1-based pixel
coordinates (the top-left pixel's centre is (1, 1)), so a marker is drawn at the 0-based image
position ``projection - 1`` (:mod:`rat7m.pixels`), where a real MATLAB camera would have seen it.
A conversion forgotten anywhere downstream then puts keypoints a pixel off the drawn markers.

Profiles set the size: ``test`` (tiny frames, all 7 recordings, one with 13 chunks so a string
sort of chunk starts breaks; seconds), ``demo`` (larger frames for the notebook's pictures) and
``bench`` (RAT7M-like 1328x1048 at ~40 KB per frame with sensor noise, for decoding speed) and
``capture`` (``bench`` in the rig's capture encoding). Any profile can be made in the other
encoding (``encoding=`` / ``--encoding``), e.g. the ``test`` profile in the capture encoding.

Usage::

    python -m rat7m.demo.synthetic --out synthetic_rat7m --profile demo
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from rat7m import catalogue, extras
from rat7m.barcode import BITS, draw_barcode
from rat7m.cli import (
    ArgumentParser,
    add_recordings_argument,
    add_verbosity_arguments,
    positive_int,
    progress_enabled,
    run_main,
    setup_logging,
)
from rat7m.errors import BadInputError
from rat7m.geometry import project
from rat7m.matfile import save_recording
from rat7m.model import Camera, CameraLike
from rat7m.pixels import MATLAB, to_zero_based

__all__ = [
    "ARENA_CENTRE",
    "ENCODINGS",
    "FRAME_OFFSETS",
    "PROFILES",
    "Profile",
    "SyntheticDataset",
    "SyntheticRecording",
    "add_dropouts",
    "draw_skeleton",
    "generate_dataset",
    "joint_radius",
    "main",
    "make_cameras",
    "make_motion",
    "render_floor",
]

log = logging.getLogger(__name__)

#: Frame size of the real RAT7M videos; intrinsics are drawn at this size, then scaled.
FULL_WIDTH, FULL_HEIGHT = 1328, 1048
#: Centre of the arena (mm): markers of the real data span x -250..0, y -30..140, z 15..190.
ARENA_CENTRE = np.array([-125.0, 55.0, 60.0])
#: Constant offset of each camera's ``frame`` map (video frame = mocap sample + offset).
FRAME_OFFSETS: dict[str, int] = {"Camera1": 0, "Camera2": 2, "Camera3": 0, "Camera4": 1, "Camera5": 0, "Camera6": 0}
#: x264 settings of each video encoding. ``capture`` is the rig's ``x264 --preset ultrafast``
#: (which already means no B-frames, CAVLC, no deblocking, scene-cut off), spelled out so that a
#: change of x264's preset cannot silently change it, with its key frame every 250 frames.
ENCODINGS: dict[str, dict[str, str]] = {
    "bframes": {"x264-params": "bframes=3:b-adapt=0"},
    "capture": {"preset": "ultrafast", "x264-params": "bframes=0:cabac=0:no-deblock=1:scenecut=0:keyint=250"},
}


@dataclass(frozen=True)
class Profile:
    """Size and encoding of a synthetic dataset.

    Attributes:
        name: ``test``, ``demo`` or ``bench``.
        width, height: frame size in pixels (even numbers, for 4:2:0 H.264).
        chunk_length: frames per MP4 chunk (the real data: 3500).
        n_frames: video frames per camera, by recording name (recordings not listed: ``default_frames``).
        default_frames: video frames per camera of a recording not in ``n_frames``.
        recordings: recordings generated when the caller names none.
        fps: frame rate of the videos and of the motion capture (one sample per frame).
        crf: x264 constant quality (used when ``bit_rate`` is None).
        bit_rate: target bits per second (None: constant quality).
        preset: x264 speed preset.
        threads: encoder threads (0: as many as x264 likes).
        noise: standard deviation (grey levels) of per-frame sensor noise; 0 for none.
        encoding: ``bframes`` or ``capture`` (see :data:`ENCODINGS`; ``capture`` implies preset ultrafast).
    """

    name: str
    width: int
    height: int
    chunk_length: int
    n_frames: dict[str, int] = field(default_factory=dict)
    default_frames: int = 30
    recordings: tuple[str, ...] = tuple(r.name for r in catalogue.RECORDINGS)
    fps: int = 30
    crf: int = 18
    bit_rate: int | None = None
    preset: str = "veryfast"
    threads: int = 1
    noise: float = 0.0
    encoding: str = "bframes"

    def __post_init__(self) -> None:
        if self.encoding not in ENCODINGS:
            raise BadInputError(f"unknown encoding {self.encoding!r}; choose one of {', '.join(ENCODINGS)}")
        if self.width % 2 or self.height % 2 or self.width < 4 * BITS or self.height < 64:
            size = f"{self.width}x{self.height}"
            msg = f"profile {self.name!r}: frames must have even sizes of at least {4 * BITS}x64, got {size}"
            raise BadInputError(msg)
        if self.chunk_length < 1:
            raise BadInputError(f"profile {self.name!r}: chunk_length must be at least 1, got {self.chunk_length}")

    def describe(self) -> str:
        """One line for ``--help``: size, chunking, recordings."""
        recordings = (
            "all 7 recordings" if len(self.recordings) == len(catalogue.RECORDINGS) else ", ".join(self.recordings)
        )
        size = f"{self.bit_rate / self.fps / 8000:.0f} KB/frame" if self.bit_rate else f"crf {self.crf}"
        return (
            f"{self.name}: {self.width}x{self.height}, {self.encoding} encoding, {size}, chunks of "
            f"{self.chunk_length}, {recordings}"
        )

    def frames_of(self, recording: catalogue.Recording) -> int:
        """Video frames per camera of ``recording``."""
        return self.n_frames.get(recording.name, self.default_frames)


#: The built-in profiles.
PROFILES: dict[str, Profile] = {
    # s1-d1: 13 chunks, the last of 5 frames (a string sort puts chunk 100 before 20);
    # s3-d1 ends with a one-frame chunk, s2-d2 with a full one.
    "test": Profile(
        "test", 192, 152, chunk_length=10, default_frames=24,
        n_frames={"s1-d1": 125, "s2-d1": 23, "s2-d2": 30, "s3-d1": 21, "s4-d1": 26, "s5-d1": 34, "s5-d2": 28},
    ),
    "demo": Profile("demo", 384, 304, chunk_length=40, default_frames=90, n_frames={"s1-d1": 130}, crf=20),
    # ~40 KB per frame of H.264 with B-frames at the real frame size, like the real chunks.
    "bench": Profile(
        "bench", FULL_WIDTH, FULL_HEIGHT, chunk_length=250, default_frames=600, recordings=("s1-d1",),
        bit_rate=40_000 * 8 * 30, preset="faster", threads=0, noise=4.0,
    ),
    # the same pictures and size in the rig's capture encoding (x264 ultrafast, no B-frames)
    "capture": Profile(
        "capture", FULL_WIDTH, FULL_HEIGHT, chunk_length=250, default_frames=600, recordings=("s1-d1",),
        bit_rate=40_000 * 8 * 30, threads=0, noise=4.0, encoding="capture",
    ),
}  # fmt: skip


@dataclass(frozen=True)
class SyntheticRecording:
    """What was generated for one recording.

    Attributes:
        recording: the catalogue recording.
        n_samples: motion-capture samples in the ``.mat`` file.
        n_frames: video frames per camera (recording-wide indices 0 .. n_frames - 1).
        chunk_length: frames per chunk (the last chunk may be shorter).
        chunk_starts: first frame index of each chunk, in numeric order.
        frame_offsets: ``{camera: offset}``: camera ``frame`` map is ``sample + offset``.
        mat_path: the ``mocap-*.mat`` file.
        video_dir: folder of the MP4 chunks.
    """

    recording: catalogue.Recording
    n_samples: int
    n_frames: int
    chunk_length: int
    chunk_starts: tuple[int, ...]
    frame_offsets: dict[str, int]
    mat_path: Path
    video_dir: Path

    @property
    def name(self) -> str:
        """Recording name, e.g. ``s1-d1``."""
        return self.recording.name

    def chunk_frames(self, start: int) -> int:
        """Number of frames in the chunk starting at ``start``."""
        return min(self.chunk_length, self.n_frames - start)

    def chunk_path(self, camera: str, start: int) -> Path:
        """Path of the chunk of ``camera`` starting at frame ``start``."""
        return self.video_dir / catalogue.video_chunk_name(self.recording, camera, start)

    def chunk_paths(self, camera: str | None = None) -> list[Path]:
        """Every chunk of one camera (or of all six), in frame order."""
        cameras = catalogue.CAMERA_NAMES if camera is None else (camera,)
        return [self.chunk_path(c, s) for c in cameras for s in self.chunk_starts]


@dataclass(frozen=True)
class SyntheticDataset:
    """A generated dataset: where it is and what is in it (tests read their expectations here).

    Attributes:
        root: dataset root (holds ``annotations/`` and ``video_sequences/``).
        profile: the profile it was made with.
        seed: the random seed.
        recordings: ``{"s1-d1": SyntheticRecording, ...}`` in catalogue order.
    """

    root: Path
    profile: Profile
    seed: int
    recordings: dict[str, SyntheticRecording]

    @property
    def width(self) -> int:
        """Frame width in pixels."""
        return self.profile.width

    @property
    def height(self) -> int:
        """Frame height in pixels."""
        return self.profile.height

    @property
    def annotation_dir(self) -> Path:
        """Folder of the ``mocap-*.mat`` files."""
        return self.root / catalogue.ANNOTATION_DIR

    @property
    def video_dir(self) -> Path:
        """Folder of the MP4 chunks."""
        return self.root / catalogue.VIDEO_DIR

    def files(self) -> list[Path]:
        """Every file of the dataset: the ``.mat`` files, then the chunks."""
        mats = [r.mat_path for r in self.recordings.values()]
        return mats + [p for r in self.recordings.values() for p in r.chunk_paths()]


# --- the rat ----------------------------------------------------------------------------------

#: Marker positions (mm) of a standing rat in its own frame: x forward, y left, z up, origin on
#: the floor under the middle of the spine. Rows in catalogue.JOINT_NAMES order.
_BODY = np.array([
    [95, 0, 55], [62, 0, 68], [72, 16, 62],            # HeadF, HeadB, HeadL
    [32, 0, 78], [-20, 0, 84], [-72, 0, 68],           # SpineF, SpineM, SpineL
    [2, -22, 82], [-46, -22, 78],                      # Offset1, Offset2
    [-80, 26, 42], [-80, -26, 42],                     # HipL, HipR
    [30, 26, 30], [40, 24, 12], [32, 22, 56],          # ElbowL, ArmL, ShoulderL
    [32, -22, 56], [30, -26, 30], [40, -24, 12],       # ShoulderR, ElbowR, ArmR
    [-58, -30, 26], [-58, 30, 26], [-74, 30, 10], [-74, -30, 10],  # KneeR, KneeL, ShinL, ShinR
], dtype=np.float64)  # fmt: skip
_HEAD = [0, 1, 2]
#: Limbs moving together in a trot (left fore + right hind, then the other pair), with their pivot.
_GAIT = (([10, 11], 0.0), ([17, 18], np.pi), ([14, 15], np.pi), ([16, 19], 0.0))
_PITCH_PIVOT = np.array([-75.0, 0.0, 40.0])  # a rearing rat pivots about its hips


def _rot_z(angle: np.ndarray) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    z, o = np.zeros_like(angle), np.ones_like(angle)
    return np.stack([np.stack([c, -s, z], -1), np.stack([s, c, z], -1), np.stack([z, z, o], -1)], -2)


def _rot_y(angle: np.ndarray) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    z, o = np.zeros_like(angle), np.ones_like(angle)
    return np.stack([np.stack([c, z, s], -1), np.stack([z, o, z], -1), np.stack([-s, z, c], -1)], -2)


def _wave(rng: np.random.Generator, t: np.ndarray, terms: Sequence[tuple[float, float]]) -> np.ndarray:
    """A smooth random signal: a sum of sines with given (amplitude, frequency Hz), random phases."""
    out = np.zeros_like(t)
    for amplitude, freq in terms:
        out += amplitude * np.sin(2 * np.pi * freq * rng.uniform(0.7, 1.3) * t + rng.uniform(0, 2 * np.pi))
    return out


def make_motion(rng: np.random.Generator, n_samples: int, fps: float) -> np.ndarray:
    """A rat walking, turning, looking around and rearing inside the arena.

    Returns:
        ``(n_samples, 20, 3)`` float64 marker positions in mm (catalogue joint order), no NaN.
    """
    t = np.arange(n_samples) / fps
    body = np.broadcast_to(_BODY, (n_samples, *_BODY.shape)).copy()
    for joints, phase in _GAIT:  # trotting limbs swing back and forth, paws lift while swinging forward
        swing = np.sin(2 * np.pi * 2.0 * t + phase)
        body[:, joints, 0] += 9.0 * swing[:, None]
        body[:, joints[-1], 2] += 5.0 * np.clip(swing, 0, None)
    head_yaw = _wave(rng, t, [(0.35, 0.4), (0.15, 1.1)])
    pivot = _BODY[3]
    body[:, _HEAD] = (body[:, _HEAD] - pivot) @ _rot_z(head_yaw).transpose(0, 2, 1) + pivot
    pitch = 0.6 * np.clip(_wave(rng, t, [(1.0, 0.15)]), 0, None) ** 2  # rears up now and then, up to ~35 deg
    body = (body - _PITCH_PIVOT) @ _rot_y(-pitch).transpose(0, 2, 1) + _PITCH_PIVOT
    yaw = rng.uniform(0, 2 * np.pi) + _wave(rng, t, [(1.4, 0.08), (0.5, 0.25)])
    centre = np.stack(
        [
            ARENA_CENTRE[0] + _wave(rng, t, [(40, 0.06), (15, 0.2)]),
            ARENA_CENTRE[1] + _wave(rng, t, [(25, 0.09), (8, 0.3)]),
            np.zeros_like(t),
        ],
        axis=-1,
    )
    world = body @ _rot_z(yaw).transpose(0, 2, 1) + centre[:, None, :]
    world += rng.normal(0.0, 0.4, world.shape)  # motion-capture jitter
    world[..., 2] = np.maximum(world[..., 2], 5.0)
    return world


def add_dropouts(rng: np.random.Generator, mocap: np.ndarray) -> list[tuple[int, int, int]]:
    """Blank a few short runs of single markers with NaN, in place, as lost markers look.

    Returns:
        The runs as ``(joint, first_sample, length)``.
    """
    n = len(mocap)
    runs = []
    for _ in range(max(2, n // 40)):
        joint, length = int(rng.integers(catalogue.N_JOINTS)), int(rng.integers(1, 7))
        first = int(rng.integers(0, max(1, n - length)))
        mocap[first : first + length, joint] = np.nan
        runs.append((joint, first, min(length, n - first)))
    return runs


# --- the cameras ------------------------------------------------------------------------------


def _rotation_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The rotation matrix turning unit vector ``a`` onto unit vector ``b`` (Rodrigues)."""
    v, c = np.cross(a, b), float(a @ b)
    vx = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return np.eye(3) + vx + vx @ vx / (1.0 + c)


def make_cameras(rng: np.random.Generator, width: int, height: int) -> dict[str, dict[str, np.ndarray]]:
    """Six cameras around the arena, each aimed so the arena centre is in the middle of its picture.

    Intrinsics are drawn in RAT7M's ranges at the real frame size (focal 2000-4100 px, principal
    point x 400-920, y 500-830, a little skew) and scaled to ``width`` x ``height``; distortion is
    a barrel k1 < 0 with small k2 and tangential p1, p2.

    Returns:
        ``{"Camera1": raw camera dict, ...}`` (:meth:`rat7m.model.Camera.to_dict`: both spellings) in
        MATLAB conventions, no ``frame`` maps yet.
    """
    sx, sy = width / FULL_WIDTH, height / FULL_HEIGHT
    cameras = {}
    for k, cam_name in enumerate(catalogue.CAMERA_NAMES):
        fx = rng.uniform(2000, 4100)
        fy, skew = fx * rng.uniform(0.995, 1.005), rng.uniform(-6, 2)
        cx, cy = rng.uniform(400, 920), rng.uniform(500, 830)
        azimuth, elevation = np.deg2rad(30 + 60 * k + rng.uniform(-10, 10)), np.deg2rad(rng.uniform(25, 45))
        distance = fx * 160 / 480  # +-160 mm around the arena centre fill +-480 px of the full frame
        centre = ARENA_CENTRE + distance * np.array(
            [np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth), np.sin(elevation)]
        )
        forward = (ARENA_CENTRE - centre) / distance
        right = np.cross(forward, [0.0, 0.0, 1.0])
        right /= np.linalg.norm(right)
        axes = np.stack([right, np.cross(forward, right), forward])  # camera x right, y down, z forward
        yd = (FULL_HEIGHT / 2 - cy) / fy  # turn the camera so the arena centre lands mid-picture
        wanted = np.array([(FULL_WIDTH / 2 - cx - skew * yd) / fx, yd, 1.0])
        axes = _rotation_between(np.array([0.0, 0.0, 1.0]), wanted / np.linalg.norm(wanted)) @ axes
        rotation = axes.T  # MATLAB row vectors: p_cam = X @ R + t
        camera = Camera(
            K=np.array([[fx * sx, 0, 0], [skew * sx, fy * sy, 0], [cx * sx, cy * sy, 1]]),
            R=rotation,
            t=-centre @ rotation,
            tangential=rng.uniform(-0.004, 0.004, 2),  # drawn before the radial terms: the seed's stream
            radial=np.array([rng.uniform(-0.3, -0.08), rng.uniform(0.0, 0.3)]),
        )
        cameras[cam_name] = camera.to_dict()
    return cameras


# --- the pictures -----------------------------------------------------------------------------

_FLOOR_BGR = (np.array([96.0, 108.0, 118.0]), np.array([122.0, 132.0, 140.0]))  # two tiles, dull beige-grey
_OUTSIDE_BGR = np.array([58.0, 60.0, 64.0])
_JOINT_BGR = (255, 255, 255)


def render_floor(camera: CameraLike, width: int, height: int) -> np.ndarray:
    """The empty arena seen by ``camera``: a tiled, grained floor on z = 0 and dark walls beyond.

    Lens distortion is ignored for the floor (it is only a background). ``camera`` is a MATLAB
    camera; pixel ``(u, v)`` of the picture (0-based) is MATLAB's ``(u + 1, v + 1)``. Deterministic,
    so tests can compare a frame with it.

    Returns:
        ``(height, width, 3)`` uint8 BGR picture.
    """
    zero = Camera.of(camera).to_zero_based()
    K, R, t = zero.K, zero.R, zero.t
    u, v = np.meshgrid(np.arange(width) + 0.0, np.arange(height) + 0.0)
    pixels = np.stack([u, v, np.ones_like(u)], axis=-1)
    rays = (pixels @ np.linalg.inv(K)) @ R.T  # normalised camera rays, turned into the world frame
    origin = -t @ R.T
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = -origin[2] / rays[..., 2]
    hits = np.isfinite(depth) & (depth > 0)
    x = origin[0] + np.where(hits, depth, 0) * rays[..., 0]
    y = origin[1] + np.where(hits, depth, 0) * rays[..., 1]
    tile = ((np.floor(x / 40) + np.floor(y / 40)) % 2).astype(int)
    grain = 9 * np.sin(0.45 * x + 3 * np.sin(0.04 * y)) + 5 * np.sin(0.7 * y + 2 * np.sin(0.05 * x))
    floor = np.where(tile[..., None] == 1, _FLOOR_BGR[1], _FLOOR_BGR[0]) + grain[..., None]
    inside = hits & (x > -330) & (x < 80) & (y > -110) & (y < 220)
    picture = np.where(inside[..., None], floor, _OUTSIDE_BGR + 0.3 * grain[..., None])
    return np.clip(picture, 0, 255).astype(np.uint8)


def joint_radius(width: int) -> int:
    """Radius (px) of the white joint discs on a picture ``width`` pixels wide."""
    return max(2, round(width / 120))


def draw_skeleton(image: np.ndarray, keypoints_2d: np.ndarray) -> None:
    """Draw bones (catalogue colours) and joints (white dots) at 0-based ``keypoints_2d`` (20, 2) px, in place."""
    width = image.shape[1]
    thickness, radius = max(1, round(width / 200)), joint_radius(width)
    finite = np.isfinite(keypoints_2d).all(axis=1) & (np.abs(keypoints_2d) < 10 * width).all(axis=1)
    fixed = np.round(np.where(finite[:, None], keypoints_2d, 0) * 16).astype(np.int64)  # 4 bits of sub-pixel
    for (a, b), (red, green, blue) in zip(catalogue.BONES, catalogue.BONE_COLOURS, strict=True):
        if finite[a] and finite[b]:
            cv2.line(
                image,
                tuple(map(int, fixed[a])),
                tuple(map(int, fixed[b])),
                (blue, green, red),
                thickness,
                cv2.LINE_AA,
                shift=4,
            )
    for j in np.flatnonzero(finite):
        cv2.circle(image, tuple(map(int, fixed[j])), radius * 16, _JOINT_BGR, -1, cv2.LINE_AA, shift=4)


# --- writing ----------------------------------------------------------------------------------


def _encode_chunk(path: Path, frames: Iterable[np.ndarray], profile: Profile) -> None:
    """Write BGR frames as an H.264 MP4 in the profile's encoding, under a temporary name, then rename.

    A new encoder per chunk, as the rig's capture program did: every chunk starts with an IDR frame.
    """
    av = extras.require("av", extra="pyav", feature="encoding the synthetic dataset's H.264 chunks")
    tmp = path.with_name(path.name + ".part")
    options = {"preset": profile.preset, "threads": str(profile.threads), **ENCODINGS[profile.encoding]}
    if profile.bit_rate is None:
        options["crf"] = str(profile.crf)
    try:
        with av.open(str(tmp), mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=profile.fps, options=options)
            stream.width, stream.height, stream.pix_fmt = profile.width, profile.height, "yuv420p"
            if profile.bit_rate is not None:
                stream.bit_rate = profile.bit_rate
            for image in frames:
                container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")))
            container.mux(stream.encode())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


#: Distinct sensor-noise fields cycled through: more than x264 keeps as references, so the
#: encoder meets fresh noise in every frame, at a fraction of the cost of drawing it anew.
_NOISE_FIELDS = 16


def _noise_bank(rng: np.random.Generator, profile: Profile) -> np.ndarray | None:
    """``(_NOISE_FIELDS, H, W)`` int8 grey-level sensor noise for ``profile``, None for a clean profile."""
    if profile.noise <= 0:
        return None
    shape = (_NOISE_FIELDS, profile.height, profile.width)
    return np.clip(np.round(rng.standard_normal(shape, dtype=np.float32) * profile.noise), -127, 127).astype(np.int8)


def _frames(
    background: np.ndarray,
    keypoints: np.ndarray,
    frame_map: np.ndarray,
    first: int,
    count: int,
    noise: np.ndarray | None,
) -> Iterable[np.ndarray]:
    """The pictures of frames ``first .. first + count - 1`` of one camera."""
    for index in range(first, first + count):
        if noise is None:
            image = background.copy()
        else:
            grain = noise[index % len(noise), :, :, None]
            image = np.clip(background + grain.astype(np.int16), 0, 255).astype(np.uint8)
        for sample in np.flatnonzero(frame_map == index):
            draw_skeleton(image, keypoints[sample])
        draw_barcode(image, index)
        yield image


def _recording_name(recording: catalogue.Recording) -> str:
    return f"Subject{recording.subject}-Day{recording.day}"


def _resolve_recordings(
    recordings: Iterable[str | catalogue.Recording] | str | None, profile: Profile
) -> tuple[catalogue.Recording, ...]:
    if recordings is None:
        recordings = profile.recordings
    if isinstance(recordings, str):
        recordings = recordings.split(",")
    try:
        return tuple(
            r if isinstance(r, catalogue.Recording) else catalogue.recording_by_name(r.strip()) for r in recordings
        )
    except KeyError as exc:
        raise BadInputError(exc.args[0]) from exc


def _remove_stale_chunks(info: SyntheticRecording) -> None:
    """Delete chunks of this recording an earlier, longer run left behind, and unfinished ``.part`` files."""
    keep = set(info.chunk_paths())
    for path in info.video_dir.glob(f"{info.name}-camera*"):
        chunk = catalogue.parse_video_chunk_name(path.name.removesuffix(".part"))
        if chunk is not None and chunk.recording == info.recording and path not in keep:
            log.info("removing %s (not part of this dataset)", path)
            path.unlink()


def _write_recording(
    root: Path, recording: catalogue.Recording, seed: int, profile: Profile, n_frames: int,
    noise: np.ndarray | None, bar: tqdm,
) -> SyntheticRecording:  # fmt: skip
    """Write the ``.mat`` file and every chunk of one recording."""
    rng = np.random.default_rng([seed, recording.subject, recording.day])
    n_samples = n_frames - max(FRAME_OFFSETS.values())  # so every mapped frame exists in every video
    mocap = make_motion(rng, n_samples, profile.fps)
    add_dropouts(rng, mocap)
    cameras = make_cameras(rng, profile.width, profile.height)
    for cam_name, cam in cameras.items():
        cam["frame"] = np.arange(n_samples, dtype=np.int64) + FRAME_OFFSETS[cam_name]
    mat_path = root / catalogue.ANNOTATION_DIR / catalogue.mocap_file_name(recording)
    marker_order = [catalogue.JOINT_NAMES[j] for j in rng.permutation(catalogue.N_JOINTS)]
    save_recording(mat_path, _recording_name(recording), cameras, mocap, marker_order=marker_order)
    info = SyntheticRecording(
        recording=recording,
        n_samples=n_samples,
        n_frames=n_frames,
        chunk_length=profile.chunk_length,
        chunk_starts=tuple(range(0, n_frames, profile.chunk_length)),
        frame_offsets=dict(FRAME_OFFSETS),
        mat_path=mat_path,
        video_dir=root / catalogue.VIDEO_DIR,
    )
    _remove_stale_chunks(info)
    for cam_name, cam in cameras.items():
        background = render_floor(cam, profile.width, profile.height)
        keypoints = to_zero_based(project(mocap, cam), MATLAB)  # where a MATLAB camera puts them
        for start in info.chunk_starts:
            pictures = _frames(background, keypoints, cam["frame"], start, info.chunk_frames(start), noise)
            _encode_chunk(info.chunk_path(cam_name, start), pictures, profile)
        bar.update()
    log.debug("%s: %d samples, %d frames per camera in %d chunks", recording.name, n_samples, n_frames,
              len(info.chunk_starts))  # fmt: skip
    return info


def generate_dataset(
    root: str | os.PathLike,
    *,
    seed: int = 0,
    profile: str | Profile = "test",
    recordings: Iterable[str | catalogue.Recording] | str | None = None,
    n_frames: int | None = None,
    chunk_length: int | None = None,
    encoding: str | None = None,
    progress: bool = False,
) -> SyntheticDataset:
    """Write a synthetic dataset in RAT7M's layout under ``root``.

    Args:
        root: dataset root; ``annotations/`` and ``video_sequences/`` are created in it. Files
            already there are overwritten (each is written under a temporary name, then renamed).
        seed: random seed; the same seed and profile give the same motion, cameras and pictures.
        profile: ``"test"``, ``"demo"``, ``"bench"`` or a :class:`Profile`.
        recordings: names (``"s1-d1"``), catalogue recordings, or a comma-separated string;
            default: the profile's recordings.
        n_frames: video frames per camera of every recording (default: the profile's).
        chunk_length: frames per chunk (default: the profile's).
        encoding: ``bframes`` or ``capture`` (default: the profile's; see :data:`ENCODINGS`).
        progress: show a progress bar.

    Returns:
        What was written, with the numbers tests check against.

    Raises:
        BadInputError: unknown profile or recording, or sizes that make no sense.
    """
    if isinstance(profile, str):
        if profile not in PROFILES:
            raise BadInputError(f"unknown profile {profile!r}; choose one of {', '.join(PROFILES)}")
        profile = PROFILES[profile]
    if chunk_length is not None:
        profile = replace(profile, chunk_length=int(chunk_length))
    if encoding is not None:
        profile = replace(profile, encoding=encoding)
    max_offset = max(FRAME_OFFSETS.values())
    if n_frames is not None and n_frames <= max_offset:
        raise BadInputError(f"n_frames must be more than {max_offset} (the largest camera frame offset)")
    chosen = _resolve_recordings(recordings, profile)
    root = Path(root)
    for folder in (catalogue.ANNOTATION_DIR, catalogue.VIDEO_DIR):
        (root / folder).mkdir(parents=True, exist_ok=True)

    noise = _noise_bank(np.random.default_rng([seed, 0]), profile)
    bar = tqdm(total=len(chosen) * len(catalogue.CAMERA_NAMES), unit="camera", disable=not progress)
    made = {}
    for recording in chosen:
        frames = int(n_frames) if n_frames is not None else profile.frames_of(recording)
        made[recording.name] = _write_recording(root, recording, seed, profile, frames, noise, bar)
    bar.close()
    return SyntheticDataset(root=root, profile=profile, seed=seed, recordings=made)


# --- command line -----------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    profiles = "; ".join(p.describe() for p in PROFILES.values())
    parser = ArgumentParser(
        prog="python -m rat7m.demo.synthetic",
        description=__doc__,
        epilog=f"Profiles: {profiles}.\n\nExit codes: 0 written, 2 bad arguments.",
    )
    parser.add_argument("--out", required=True, type=Path, help="dataset root to write (created if missing)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: %(default)s)")
    parser.add_argument(
        "--profile", choices=sorted(PROFILES), default="test", help="size and encoding (default: %(default)s)"
    )
    add_recordings_argument(parser, default="the profile's")
    parser.add_argument(
        "--frames", type=positive_int, default=None, help="video frames per camera of every recording "
        "(default: the profile's)",
    )  # fmt: skip
    parser.add_argument(
        "--chunk-length", type=positive_int, default=None, help="frames per MP4 chunk (default: the profile's)"
    )
    parser.add_argument(
        "--encoding", choices=sorted(ENCODINGS), default=None,
        help="bframes (H.264 with B-frames) or capture (the rig's x264 ultrafast) (default: the profile's)",
    )  # fmt: skip
    add_verbosity_arguments(parser, progress_bars=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Generate a synthetic dataset and print what was written."""
    args = _parser().parse_args(argv)
    setup_logging(args)
    began = time.perf_counter()
    dataset = generate_dataset(
        args.out,
        seed=args.seed,
        profile=args.profile,
        recordings=args.recordings,
        n_frames=args.frames,
        chunk_length=args.chunk_length,
        encoding=args.encoding,
        progress=progress_enabled(args),
    )
    files = dataset.files()
    size = sum(p.stat().st_size for p in files)
    video_bytes = sum(p.stat().st_size for p in files if p.suffix == ".mp4")
    frames = sum(r.n_frames for r in dataset.recordings.values()) * len(catalogue.CAMERA_NAMES)
    print(
        f"wrote {len(files)} files to {dataset.root}: {len(dataset.recordings)} mocap .mat, "
        f"{len(files) - len(dataset.recordings)} MP4 chunks holding {frames} frames "
        f"({dataset.width}x{dataset.height}, {video_bytes / max(frames, 1) / 1000:.1f} KB per frame); "
        f"{size / 1e6:.1f} MB in {time.perf_counter() - began:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
