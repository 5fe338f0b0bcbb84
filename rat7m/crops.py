"""Training samples: crops around the animal whose keypoints and cameras stay exact, defined once.

Both training datasets (per-file JPEGs and tar shards, :mod:`rat7m.torch_dataset`) and the shard
writer (:mod:`rat7m.shards`) go through this module, so a sample is the same whichever way it is read.
It imports neither torch nor tensorflow.

Conventions, decided once:

- **Pixels are 0-based**: the centre of the top-left pixel is (0, 0) (OpenCV, NumPy, PIL, COCO).
  A table's 2D columns are converted with :mod:`rat7m.pixels` (MATLAB 1-based tables: minus 1),
  its MATLAB cameras with :meth:`rat7m.model.Camera.to_zero_based` (principal point minus 1).
- **Cameras in OpenCV's layout** (column vectors): ``x_cam = R @ X + t`` (X in mm),
  ``x, y = x_cam[:2] / x_cam[2]``, distortion ``dist = [k1, k2, p1, p2, k3]`` on those normalised
  coordinates exactly as OpenCV and MATLAB, then ``[u, v, 1] = K @ [xd, yd, 1]`` with
  ``K = [[fx, s, cx], [0, fy, cy], [0, 0, 1]]``. So ``K = IntrinsicMatrix.T``, ``R = RotationMatrix.T``,
  ``t = TranslationVector``. The skew ``s`` is kept (``cv2.projectPoints`` ignores it; :func:`project`
  does not).
- **Crop**: a box ``(x0, y0, w, h)`` with integer ``x0, y0``: crop pixel ``(i, j)`` is source pixel
  ``(x0 + i, y0 + j)``; outside the image it is ``pad``. The box is centred on the view's 2D COM
  (``x0 = round(com_x - (w - 1) / 2)``; the image centre when the COM is NaN).
- **Resize** from ``(w, h)`` to ``(W, H)`` with ``cv2.resize``, which maps pixel centres:
  ``u' = sx * (u + 0.5) - 0.5`` with ``sx = W / w`` (``INTER_AREA`` when shrinking, else ``INTER_LINEAR``).

So a crop and resize change only the intrinsics: ``fx' = sx fx``, ``s' = sx s``,
``cx' = sx (cx - x0 + 0.5) - 0.5``, ``fy' = sy fy``, ``cy' = sy (cy - y0 + 0.5) - 0.5``; the distortion
coefficients are unchanged (they act on normalised coordinates), so projecting the 3D keypoints
through ``(K', R, t, dist)`` with :func:`project` lands on the crop's keypoints (tested to 1e-9 px).

Geometric augmentation goes through the crop box (:class:`CropSpec` ``jitter_shift`` /
``jitter_scale``), which keeps keypoints and ``K`` consistent by construction; a ``transform`` hook
may change pixel values only (colour, noise, blur).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import cv2
import numpy as np

from rat7m import catalogue, images, pixels
from rat7m.errors import BadInputError
from rat7m.model import Camera, CameraLike, Table

__all__ = [
    "VIEW_KEYS",
    "Annotator",
    "CropSpec",
    "Jitter",
    "ViewSource",
    "camera_arrays",
    "crop_box",
    "crop_image",
    "decode_jpeg",
    "draw_jitter",
    "from_json",
    "make_sample",
    "make_samples",
    "member_name",
    "parse_sample",
    "project",
    "sample_key",
    "to_json",
]

#: Keys of the per-view arrays of a sample (first axis: the views, in camera order).
VIEW_KEYS = ("keypoints_2d", "com_2d", "K", "R", "t", "dist", "box", "scale", "frame")


def camera_arrays(camera: CameraLike) -> dict[str, np.ndarray]:
    """A table (MATLAB) camera as 0-based OpenCV-layout arrays: ``K``, ``R`` (3, 3), ``t`` (3,), ``dist`` (5,)."""
    zero = Camera.of(camera).to_zero_based()
    k1, k2, k3, p1, p2 = zero.distortion
    return {"K": zero.K.T.copy(), "R": zero.R.T.copy(), "t": zero.t.copy(), "dist": np.array([k1, k2, p1, p2, k3])}


def project(points_3d: np.ndarray, K: np.ndarray, R: np.ndarray, t: np.ndarray, dist: np.ndarray) -> np.ndarray:
    """Project ``(..., 3)`` mm through an OpenCV-layout camera (skew kept); ``(..., 2)`` pixels, NaN stays NaN.

    The sample's own ``K``, ``R``, ``t``, ``dist`` (0-based, adjusted for the crop), read as a
    :class:`rat7m.model.Camera` (MATLAB's layout is the transpose of OpenCV's) and projected by it.
    """
    k1, k2, p1, p2, k3 = np.asarray(dist, dtype=np.float64)
    camera = Camera(K=np.asarray(K, dtype=np.float64).T, R=np.asarray(R, dtype=np.float64).T,
                    t=np.asarray(t, dtype=np.float64).reshape(3), radial=np.array([k1, k2, k3]),
                    tangential=np.array([p1, p2]), convention=pixels.ZERO_BASED)  # fmt: skip
    return camera.project(points_3d)


def sample_key(recording: str, frame: int, row: int) -> str:
    """A sample's key in shards and indexes: ``s1-d1_f000014_r000003`` (no dot: WebDataset splits keys at dots)."""
    return f"{recording}_f{frame:06d}_r{row:06d}"


def member_name(camera: str) -> str:
    """The tar member suffix of a view: ``cam1.jpg`` .. ``cam6.jpg``."""
    return f"cam{catalogue.camera_number(camera)}.jpg"


class Annotator:
    """Per-row annotations of a table, 0-based and in OpenCV layout: what a shard's JSON holds.

    Built once per dataset: the cameras of each recording are converted here, once, and a row is then
    a few array lookups (this runs per sample, next to a JPEG decode).

    Args:
        annotation: a table (:func:`rat7m.table.load_annotation`); its pixel convention is detected once.
        cameras: the views, in order.
    """

    def __init__(self, annotation: Mapping[str, Any], cameras: Sequence[str]) -> None:
        self.cameras = list(cameras)
        table = Table.of(annotation)
        self.convention = table.pixel_convention
        self.offset = float(pixels.to_zero_based(np.zeros(1), self.convention)[0])  # -1 or 0
        self.columns = table.columns
        #: The recording of every row (a validated table has only catalogue recordings).
        self.recording_of = np.empty(table.n_samples, dtype=object)
        # every recording's cameras now, so that no Table method is needed later: a Table pickles as the
        # plain dict, so a DataLoader worker that unpickles this (spawn) would hold a dict
        self._cameras: dict[str, dict[str, np.ndarray]] = {}
        for recording, mask in table.recording_masks():
            self.recording_of[mask] = recording
            arrays = [camera_arrays(camera) for camera in table.cameras(recording, self.cameras).values()]
            self._cameras[recording.name] = {k: np.stack([a[k] for a in arrays]) for k in ("K", "R", "t", "dist")}

    def __call__(self, row: int) -> dict[str, Any]:
        """Row ``row``'s annotation: ``{"key", "recording", "row", "cameras": [names], "frame": (V,),
        "keypoints_2d": (V, 20, 2), "com_2d": (V, 2), "keypoints_3d": (20, 3), "K": (V, 3, 3), "R": (V, 3, 3),
        "t": (V, 3), "dist": (V, 5)}``; pixels 0-based in the full image."""
        columns, row = self.columns, int(row)
        recording = self.recording_of[row]
        frames = np.array([columns["frame_idx"][c][row] for c in self.cameras], dtype=np.int64)
        k2d = np.array([columns["2D_keypoints"][c][row] for c in self.cameras], dtype=np.float64)
        com = np.array([columns["2D_com"][c][row] for c in self.cameras], dtype=np.float64)
        return {
            "key": sample_key(recording.name, int(frames[0]), row),
            "recording": recording.name,
            "row": row,
            "cameras": list(self.cameras),
            "frame": frames,
            "keypoints_2d": k2d + self.offset,
            "com_2d": com + self.offset,
            "keypoints_3d": np.array(columns["3D_keypoints"][row], dtype=np.float64),
            **{k: v.copy() for k, v in self._cameras[recording.name].items()},  # callers may write to theirs
        }


def _plain(value: Any) -> Any:
    """JSON-ready: arrays to nested lists, NaN to null (standard JSON that any reader parses)."""
    if isinstance(value, np.ndarray) and value.dtype.kind == "f":
        plain = value.astype(object)
        plain[np.isnan(value)] = None
        return plain.tolist()
    return value.tolist() if isinstance(value, np.ndarray) else value


def to_json(ann: Mapping[str, Any]) -> bytes:
    """An annotation as compact JSON bytes (floats round-trip exactly; NaN as null)."""
    return json.dumps({k: _plain(v) for k, v in ann.items()}, separators=(",", ":"), allow_nan=False).encode()


#: The largest annotation JSON read from a shard (a six-view sample's is ~6 KB).
MAX_JSON_BYTES = 1 << 20
#: Each array field of an annotation: its shape (V: the sample's cameras, J: the joints) and whether NaN (a lost
#: marker, JSON's null) may stand in it.
_ARRAYS: dict[str, tuple[tuple[str | int, ...], bool]] = {
    "keypoints_2d": (("V", "J", 2), True), "com_2d": (("V", 2), True), "keypoints_3d": (("J", 3), True),
    "K": (("V", 3, 3), False), "R": (("V", 3, 3), False), "t": (("V", 3), False), "dist": (("V", 5), False),
}  # fmt: skip
_NUMBER_TYPES = frozenset({int, float, type(None)})


def from_json(data: bytes | bytearray, where: str = "a sample's JSON") -> dict[str, Any]:
    """The inverse of :func:`to_json`: arrays back (null as NaN), each field checked to be what to_json writes.

    A shard's JSON is bytes from elsewhere: a field missing, misshapen or of the wrong kind is a
    :class:`~rat7m.errors.BadInputError` naming ``where`` and the field, not a KeyError or wrong numbers later.
    """
    if len(data) > MAX_JSON_BYTES:
        raise BadInputError(f"{where}: {len(data):,} bytes, more than an annotation may have ({MAX_JSON_BYTES:,})")
    try:
        ann = json.loads(data, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:  # UnicodeDecodeError is a ValueError
        raise BadInputError(f"{where}: not an annotation's JSON ({type(exc).__name__}: {exc})") from None
    if not isinstance(ann, dict):
        raise BadInputError(f"{where}: not an annotation's JSON (a {type(ann).__name__}, not an object)")
    for key in ("key", "recording"):
        if not isinstance(ann.get(key), str):
            raise BadInputError(f"{where}: {key!r} is missing or not a string")
    cameras = ann.get("cameras")
    if (not isinstance(cameras, list) or not cameras or len(set(map(str, cameras))) != len(cameras)
            or not all(isinstance(c, str) and c in catalogue.CAMERA_NAMES for c in cameras)):  # fmt: skip
        names = ", ".join(catalogue.CAMERA_NAMES)
        raise BadInputError(f"{where}: 'cameras' is not a list of distinct names among {names}")
    sizes = {"V": len(cameras), "J": catalogue.N_JOINTS}
    for key, (shape, nan) in _ARRAYS.items():
        size = tuple(sizes[n] if isinstance(n, str) else n for n in shape)
        ann[key] = _array(ann.get(key), size, nan, f"{where}: {key!r}")
    ann["frame"] = _integers(ann.get("frame"), len(cameras), f"{where}: 'frame'")
    ann["row"] = int(_integers([ann.get("row")], 1, f"{where}: 'row'")[0])
    return ann


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number (to_json writes null)")


def _array(value: Any, shape: tuple[int, ...], nan: bool, what: str) -> np.ndarray:
    """``value`` (nested lists of numbers and nulls) as a float64 array of ``shape``; NaN only where ``nan``."""
    try:
        cells = np.array(value, dtype=object)
    except ValueError:  # ragged beyond what an object array holds
        cells = np.empty(0, dtype=object)
    if cells.shape != shape or not {type(x) for x in cells.flat} <= _NUMBER_TYPES:
        raise BadInputError(f"{what} is not {' x '.join(map(str, shape))} numbers")
    try:
        array = cells.astype(np.float64)  # null -> NaN
    except OverflowError:  # an integer beyond float64
        array = np.full(shape, np.inf)
    if np.isinf(array).any() or (not nan and np.isnan(array).any()):
        raise BadInputError(f"{what} holds {'an infinite number' if nan else 'a null or an infinite number'}")
    return array


def _integers(value: Any, n: int, what: str) -> np.ndarray:
    """``value``, a list of ``n`` integers in 0 .. 2**31 - 1 (frame indexes, a row), as int64."""
    if (not isinstance(value, list) or len(value) != n
            or not all(type(x) is int and 0 <= x < 2**31 for x in value)):  # fmt: skip
        raise BadInputError(f"{what} is not {n} integer(s) from 0 to 2**31 - 1")
    return np.array(value, dtype=np.int64)


def parse_sample(raw: Mapping[str, Any]) -> tuple[dict[str, Any], list[bytes], list[str]]:
    """A shard's sample (tar member suffix -> bytes, as webdataset gives it, ``__key__`` and ``__url__`` too) as
    its checked annotation (:func:`from_json`), its views' JPEG bytes in camera order, and their names."""
    key = raw.get("__key__")
    where = f"{raw.get('__url__', 'a shard')}: {key}"
    data = raw.get("json")
    if not isinstance(data, bytes | bytearray):
        raise BadInputError(f"{where}: no member {key}.json (its annotation)")
    ann = from_json(data, f"{where}.json")
    if ann["key"] != key:
        raise BadInputError(f"{where}.json: its key is {ann['key']!r}, not the members' {key!r}")
    members = [member_name(camera) for camera in ann["cameras"]]
    missing = [m for m in members if not isinstance(raw.get(m), bytes | bytearray)]
    if missing:
        raise BadInputError(f"{where}: no member {', '.join(f'{key}.{m}' for m in missing)} for its cameras")
    return ann, [raw[m] for m in members], [f"{where}.{m}" for m in members]


# --------------------------------------------------------------------------------------------- decoding


#: Decodes JPEG bytes to an ``(H, W, 3)`` uint8 RGB array (simplejpeg, else OpenCV), their header checked first;
#: ``decode_jpeg(data, where)`` raises :class:`~rat7m.errors.BadInputError` naming ``where`` (:mod:`rat7m.images`).
decode_jpeg = images.decode_jpeg


# --------------------------------------------------------------------------------------------- cropping


@dataclass(frozen=True)
class CropSpec:
    """How views are cropped and resized.

    Attributes:
        size: crop ``(w, h)`` in source pixels around the 2D COM (an int for a square); None: the whole image.
        output: ``(W, H)`` after resizing (an int for a square); None: the crop's size.
        pad: value of pixels outside the image.
        jitter_shift: random shift of the box centre, as a fraction of its size (uniform in +-).
        jitter_scale: random scale of the box, ``2 ** uniform(-j, j)`` (needs ``output``, so batches stack).
    """

    size: int | tuple[int, int] | None = 512
    output: int | tuple[int, int] | None = None
    pad: int = 0
    jitter_shift: float = 0.0
    jitter_scale: float = 0.0

    def __post_init__(self) -> None:
        for name in ("size", "output"):
            value = getattr(self, name)
            if isinstance(value, int):
                object.__setattr__(self, name, (value, value))
            elif value is not None:
                object.__setattr__(self, name, (int(value[0]), int(value[1])))
            value = getattr(self, name)
            if value is not None and min(value) < 1:
                raise ValueError(f"CropSpec.{name} must be at least 1 pixel, got {value}")
        if self.jitter_scale and self.output is None:
            raise ValueError("CropSpec.jitter_scale needs an output size (crops of random sizes do not batch)")

    @property
    def size_wh(self) -> tuple[int, int] | None:
        """:attr:`size` as ``(w, h)`` or None: an int is a square (``__post_init__`` already made it a pair)."""
        return (self.size, self.size) if isinstance(self.size, int) else self.size

    @property
    def output_wh(self) -> tuple[int, int] | None:
        """:attr:`output` as ``(W, H)`` or None, as :attr:`size_wh`."""
        return (self.output, self.output) if isinstance(self.output, int) else self.output

    @property
    def random(self) -> bool:
        """Whether crops are random (jitter)."""
        return bool(self.jitter_shift or self.jitter_scale)


def crop_box(com: np.ndarray, image_size: tuple[int, int], spec: CropSpec, rng: np.random.Generator | None = None):
    """The integer box ``(x0, y0, w, h)`` of a view: centred on ``com`` (0-based px), jittered if ``spec`` says so."""
    return _box(com, image_size, spec, draw_jitter(spec, rng))


#: A view's random jitter: the box's scale factor, then its centre's shifts as fractions of its size.
Jitter = tuple[float, float, float]


def draw_jitter(spec: CropSpec, rng: np.random.Generator | None) -> Jitter | None:
    """A view's jitter drawn from ``rng`` (None if crops are not random), before its image is decoded.

    Drawn in view order on the caller's thread, so a seed gives the same crops whichever thread decodes.
    """
    if not (spec.random and rng is not None) or spec.size_wh is None:  # whole images are never jittered
        return None
    factor = 2.0 ** rng.uniform(-spec.jitter_scale, spec.jitter_scale) if spec.jitter_scale else 1.0
    shift = spec.jitter_shift
    return factor, rng.uniform(-shift, shift), rng.uniform(-shift, shift)


def _box(com: np.ndarray, image_size: tuple[int, int], spec: CropSpec, jitter: Jitter | None):
    """:func:`crop_box` with the jitter already drawn."""
    width, height = image_size
    if spec.size_wh is None:
        return 0, 0, width, height
    w, h = spec.size_wh
    cx, cy = float(com[0]), float(com[1])
    if not (math.isfinite(cx) and math.isfinite(cy)):
        cx, cy = (width - 1) / 2, (height - 1) / 2
    if jitter is not None:
        factor, shift_x, shift_y = jitter
        if spec.jitter_scale:
            w, h = max(1, round(w * factor)), max(1, round(h * factor))
        cx += shift_x * w
        cy += shift_y * h
    return math.floor(cx - (w - 1) / 2 + 0.5), math.floor(cy - (h - 1) / 2 + 0.5), w, h


def crop_image(
    image: np.ndarray,
    box: tuple[int, int, int, int],
    output: tuple[int, int],
    pad: int = 0,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """The box's pixels (``pad`` outside the image), resized to ``output`` ``(W, H)`` by cv2 (pixel centres mapped).

    With ``out`` (``(H, W, C)``, contiguous), the pixels are written there and ``out`` returned: a batch
    slot filled once, where a new array would be copied again into the batch.
    """
    x0, y0, w, h = box
    height, width = image.shape[:2]
    resize = (w, h) != tuple(output)
    if x0 >= 0 and y0 >= 0 and x0 + w <= width and y0 + h <= height:
        crop = image[y0 : y0 + h, x0 : x0 + w]  # inside: a view, no copy
    else:
        crop = out if out is not None and not resize else np.empty((h, w, image.shape[2]), dtype=image.dtype)
        crop[...] = pad
        xa, ya, xb, yb = max(x0, 0), max(y0, 0), min(x0 + w, width), min(y0 + h, height)
        if xa < xb and ya < yb:
            crop[ya - y0 : yb - y0, xa - x0 : xb - x0] = image[ya:yb, xa:xb]
    if not resize:
        if out is not None and crop is not out:
            np.copyto(out, crop)
        return crop if out is None else out
    shrink = output[0] < w and output[1] < h
    resized = cv2.resize(crop, tuple(output), dst=out, interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    if out is not None and resized is not out:  # cv2 allocates when dst does not fit; never expected
        np.copyto(out, resized)
        return out
    return resized


#: A view's JPEG: its bytes, or a function that reads them (called on the thread that decodes the view).
ViewSource = bytes | Callable[[], bytes]


def make_sample(
    ann: Mapping[str, Any],
    jpegs: Sequence[ViewSource],
    spec: CropSpec | None = None,
    rng: np.random.Generator | None = None,
    out: np.ndarray | None = None,
) -> dict[str, Any]:
    """A training sample (numpy) from an annotation (:class:`Annotator` / :func:`from_json`) and its views' JPEGs.

    ``out``, a ``(V, H, W, 3)`` uint8 array of the crops' shape (a slot of a batch), receives the images.

    Returns:
        ``{"key", "recording", "row", "images": (V, H, W, 3) uint8 RGB, "keypoints_2d": (V, 20, 2) crop px,
        "com_2d": (V, 2) crop px, "K": (V, 3, 3) adjusted, "R", "t", "dist", "keypoints_3d": (20, 3) mm,
        "box": (V, 4) x0, y0, w, h in source px, "scale": (V, 2), "frame": (V,)}``.
    """
    return make_samples([ann], [jpegs], spec, [rng], None if out is None else [out])[0]


def make_samples(
    anns: Sequence[Mapping[str, Any]],
    jpegs: Sequence[Sequence[ViewSource]],
    spec: CropSpec | None = None,
    rngs: Sequence[np.random.Generator | None] | None = None,
    out: Sequence[np.ndarray] | None = None,
    *,
    map_views: Callable[..., Iterable[Any]] = map,
    names: Sequence[Sequence[str]] | None = None,
) -> list[dict[str, Any]]:
    """:func:`make_sample` for several samples, every view read, decoded and cropped through ``map_views``.

    ``map_views`` is ``map`` or a thread pool's ``map``: the JPEG decoders release the GIL, so threads
    decode a batch's views in parallel, in one process (bench/bench_dataset.py). Jitter is drawn
    beforehand, in order, so the samples do not depend on it. ``out[b]`` receives sample ``b``'s images.
    ``names[b][v]`` says where view ``v`` of sample ``b`` comes from in an error (a file, a shard's member);
    by default the sample's key and camera.
    """
    spec = spec or CropSpec(size=None)
    if not anns:
        return []
    rngs = rngs if rngs is not None else [None] * len(anns)
    if names is None:
        names = [[f"sample {ann.get('key', b)} {camera}" for camera in ann.get("cameras", range(len(jpegs[b])))]
                 for b, ann in enumerate(anns)]  # fmt: skip
    views = [
        (source, ann["com_2d"][v], draw_jitter(spec, rngs[b]), None if out is None else out[b][v], names[b][v])
        for b, ann in enumerate(anns) for v, source in enumerate(jpegs[b])
    ]  # fmt: skip
    # consumed in order as the views are done: with the built-in map, one sample's whole images at a time
    done = iter(map_views(partial(_view, spec=spec), *zip(*views, strict=True)))
    return [_sample(ann, [next(done) for _ in jpegs[b]], None if out is None else out[b]) for b, ann in enumerate(anns)]


def _view(
    source: ViewSource, com: np.ndarray, jitter: Jitter | None, out: np.ndarray | None, where: str, spec: CropSpec
) -> tuple[np.ndarray, tuple[int, int, int, int], tuple[float, float]]:
    """One view read, decoded and cropped (into ``out`` if given): its pixels, box and scale."""
    image = decode_jpeg(source() if callable(source) else source, where)
    height, width = image.shape[:2]
    box = _box(com, (width, height), spec, jitter)
    output = spec.output_wh or (box[2], box[3])
    return crop_image(image, box, output, spec.pad, out), box, (output[0] / box[2], output[1] / box[3])


def _sample(ann: Mapping[str, Any], views: list[tuple], out: np.ndarray | None) -> dict[str, Any]:
    """A sample from its cropped views: the keypoints and intrinsics moved into each crop."""
    images, boxes, scales = zip(*views, strict=True)
    if out is None and len({image.shape for image in images}) > 1:  # whole images (no crop) of different sizes
        sizes = ", ".join(f"{camera} {image.shape[1]} x {image.shape[0]}" for camera, image in
                          zip(ann.get("cameras", range(len(images))), images, strict=True))  # fmt: skip
        raise BadInputError(f"sample {ann.get('key')}: its views differ in size ({sizes}); crop them (CropSpec(size=))")
    box_array, scale = np.array(boxes, dtype=np.float64), np.array(scales)
    origin = box_array[:, None, :2]
    K = np.array(ann["K"], dtype=np.float64)
    K[:, 0, :2] *= scale[:, :1]  # fx and skew
    K[:, 1, 1] *= scale[:, 1]
    K[:, :2, 2] = scale * (K[:, :2, 2] - box_array[:, :2] + 0.5) - 0.5
    return {
        "key": ann["key"],
        "recording": ann["recording"],
        "row": ann["row"],
        "images": np.stack(images) if out is None else out,
        "keypoints_2d": scale[:, None] * (ann["keypoints_2d"] - origin + 0.5) - 0.5,
        "com_2d": scale * (ann["com_2d"] - box_array[:, :2] + 0.5) - 0.5,
        "K": K,
        "R": ann["R"],
        "t": ann["t"],
        "dist": ann["dist"],
        "keypoints_3d": ann["keypoints_3d"],
        "box": box_array,
        "scale": scale,
        "frame": ann["frame"],
    }
