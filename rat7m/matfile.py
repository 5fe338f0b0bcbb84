"""Read and write RAT7M ``mocap-s{S}-d{D}.mat`` files (MATLAB v5) in their exact struct layout.

A file holds ``cameras`` (a struct with ``Camera1`` .. ``Camera6``, each with ``frame``,
``IntrinsicMatrix``, ``rotationMatrix``, ``translationVector``, ``TangentialDistortion``,
``RadialDistortion``), ``mocap`` (one ``(n_samples, 3)`` field per marker, mm, NaN where lost) and
``name``. Markers are mapped by name onto the catalogue's joint order, never by field order. Every
problem with a file is a :class:`~rat7m.errors.BadInputError` naming the file and what is wrong,
instead of a traceback from deep inside scipy.
"""

from __future__ import annotations

import io
import logging
import math
import os
import re
import struct
import zlib
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rat7m import catalogue
from rat7m.errors import BadInputError
from rat7m.fileio import atomic_write, read_input
from rat7m.model import MAT_SPELLING, camera_param, with_both_spellings

__all__ = [
    "CAMERA_FIELDS",
    "MAT_CAMERA_ORDER",
    "MAX_DEPTH",
    "MAX_EXPANSION",
    "MAX_FIELDS",
    "MAX_FRAME_INDEX",
    "MIN_DECOMPRESSED_BOUND",
    "MocapRecording",
    "check_variables",
    "load_cameras",
    "load_mocap",
    "load_recording",
    "save_recording",
]

log = logging.getLogger(__name__)

#: Camera fields in the order and spellings the real files store them. :func:`load_cameras` returns
#: them under these names and, for the extrinsics, also under the documentation's spellings
#: (``RotationMatrix``, ``TranslationVector``), bound to the same arrays (see
#: :func:`rat7m.geometry.with_both_spellings`).
CAMERA_FIELDS: tuple[str, ...] = ("frame", *MAT_SPELLING.values())

#: Order of the cameras in a real file's ``cameras`` struct (not sorted). We write it so, and
#: read by name only, never by field order.
MAT_CAMERA_ORDER: tuple[str, ...] = ("Camera1", "Camera2", "Camera4", "Camera5", "Camera3", "Camera6")

#: Expected shape of each camera parameter (``frame`` is checked against the sample count).
_PARAM_SHAPES: dict[str, tuple[tuple[int, ...], ...]] = {MAT_SPELLING[name]: shapes for name, shapes in {
    "IntrinsicMatrix": ((3, 3),),
    "RotationMatrix": ((3, 3),),
    "TranslationVector": ((1, 3),),
    "TangentialDistortion": ((1, 2),),
    "RadialDistortion": ((1, 2), (1, 3)),
}.items()}

#: Largest video frame index accepted in a ``frame`` map (a rig at 120 fps for a year is 3.8e9);
#: checked before the cast to int64, so 1e300 is refused instead of wrapping around.
MAX_FRAME_INDEX = 2**40

#: The variables a RAT7M file must have, and the only ones decompressed.
_VARIABLES = ("cameras", "mocap", "name")

#: The largest .mat file read (a RAT7M mocap file is tens of MB; it is read whole, once, then checked and parsed).
MAX_MAT_BYTES = 4 << 30
#: Bound on what the wanted variables may decompress to: at most this many times the file size
#: (real motion capture compresses a few times, a zlib bomb a thousand times) ...
MAX_EXPANSION = 64
#: ... and never less than this floor, so a small file of zeros still loads.
MIN_DECOMPRESSED_BOUND = 256 * 2**20


@dataclass(frozen=True)
class MocapRecording:
    """Everything in one ``mocap-*.mat`` file.

    Attributes:
        name: the file's ``name`` string, e.g. ``"Subject1-Day1"``.
        cameras: ``{"Camera1": {...}, ...}`` as returned by :func:`load_cameras`.
        mocap: ``(n_samples, 20, 3)`` float64 marker positions in mm, catalogue joint order.
        recording: the catalogue recording, from the file name or ``name`` (None if neither says).
    """

    name: str
    cameras: dict[str, dict[str, np.ndarray]]
    mocap: np.ndarray
    recording: catalogue.Recording | None = None

    @property
    def n_samples(self) -> int:
        """Number of motion-capture samples."""
        return int(self.mocap.shape[0])


def _read(path: str | os.PathLike) -> dict:
    """Load a v5 .mat file, turning every way it can fail into a clear BadInputError."""
    path = Path(path)
    if not path.is_file():
        raise BadInputError(f"{path}: no such file")
    data = read_input(path, "MATLAB file", max_bytes=MAX_MAT_BYTES)  # checked and parsed: the same bytes
    head = data[:128]
    if head.startswith(b"MATLAB 7.3") or b"\x89HDF" in head[:8]:
        msg = (
            f"{path}: is a MATLAB v7.3 (HDF5) file; RAT7M files are MATLAB v5. "
            "Re-save it in MATLAB with save(..., '-v7') or download the original again."
        )
        raise BadInputError(msg)
    readable = check_variables(path, data=data)  # before whosmat: scipy inflates a compressed variable to list it
    import scipy.io  # here: ~0.3 s of every rat7m-build-annotation start, --check and refusals included

    try:
        # whosmat and loadmat take an open file too (scipy's docs); scipy-stubs types only paths
        variables = {name: cls for name, _, cls in scipy.io.whosmat(io.BytesIO(data))}  # type: ignore[arg-type]
    except NotImplementedError as exc:  # scipy's message for v7.3 files without the header
        raise BadInputError(f"{path}: is a MATLAB v7.3 (HDF5) file; RAT7M files are MATLAB v5") from exc
    except Exception as exc:  # scipy raises ValueError, TypeError, struct.error... on garbage
        raise BadInputError(f"{path}: is not a readable MATLAB .mat file ({exc})") from exc
    for key in ("cameras", "mocap"):  # checked before a variable is parsed; only ours are loaded
        if key not in variables:
            found = ", ".join(variables) or "nothing"
            raise BadInputError(f"{path}: has no '{key}' variable (found: {found}); is this a RAT7M mocap file?")
        if variables[key] != "struct":
            raise BadInputError(f"{path}: '{key}' is a MATLAB {variables[key]}, not a struct")
    try:
        wanted = [v for v in _VARIABLES if v in readable]  # cameras and mocap are, or the check refused the file
        stream = io.BytesIO(data)
        return scipy.io.loadmat(stream, struct_as_record=True, squeeze_me=False, variable_names=wanted)  # type: ignore[arg-type]
    except Exception as exc:  # scipy raises ValueError, TypeError, struct.error... on garbage
        raise BadInputError(f"{path}: is not a readable MATLAB .mat file ({exc})") from exc


def check_variables(path: Path, strict: Collection[str] = ("cameras", "mocap"), data: bytes | None = None) -> set[str]:
    """Refuse a file whose variables would decompress past the bound, or whose ``strict`` variables are not laid out
    as RAT7M's are; return the variables scipy may then read (any other only if it passed the same checks).
    With ``data`` (the file's bytes, read once), those are walked: hand scipy the same bytes, not the path again.

    scipy inflates a compressed variable whole before parsing it, so a few MB of zlib can ask for
    gigabytes; and it builds what the headers declare, recursing once per nesting level with no limit:
    40 KB of cells nested 20000 deep overflowed the C stack (the process died, SIGSEGV), and a 285-byte
    struct declaring 46000 x 46000 elements asked for 15.8 GB. So each top-level element (MATLAB v5:
    128-byte header, then elements of an 8-byte tag ``type, nbytes``) is read here first, inflated in
    small pieces and discarded as it goes (:class:`_Elements`), and its headers walked (:func:`_walk`):
    at most :data:`MAX_DEPTH` levels, no cells, objects, sparse or function arrays, every struct one
    element of at most :data:`MAX_FIELDS` fields, every other array no more elements than bytes.
    """
    size = path.stat().st_size if data is None else len(data)
    budget = [max(MIN_DECOMPRESSED_BOUND, MAX_EXPANSION * size)]
    readable: set[str] = set()
    seen: set[str] = set()
    with open(path, "rb") if data is None else io.BytesIO(data) as f:
        head = f.read(128)
        order = "<" if head[126:128] == b"IM" else ">"
        while True:
            tag = f.read(8)
            if len(tag) < 8:
                return readable
            kind, nbytes = struct.unpack(order + "II", tag)
            compressed = kind == _MI_COMPRESSED
            elements = _Elements(f, nbytes, compressed, order, budget, path)
            if compressed:
                kind, nbytes = elements.tag()
            if kind == _MI_MATRIX:
                if not compressed and nbytes % 8:  # scipy would not skip the padding this walk skips
                    raise BadInputError(f"{path}: a variable of {nbytes} bytes, not a multiple of 8; not a v5 file")
                try:
                    _walk(elements, nbytes, 1, path)
                    if elements.variable in seen:  # scipy reads the first of two: the check must not pass another
                        raise BadInputError(f"{path}: two variables named {elements.variable!r}")
                    readable.add(elements.variable)
                except _ZlibBombError:
                    raise
                except BadInputError:
                    if elements.variable in strict or not elements.variable or elements.variable in seen:
                        raise
                    log.debug("%s: variable %r is not read (not in RAT7M's layout)", path, elements.variable)
                seen.add(elements.variable)
            elements.finish()
            if not compressed:
                f.seek(-nbytes % 8, os.SEEK_CUR)


class _ZlibBombError(BadInputError):
    """The file's compressed variables expand past the bound."""


#: MATLAB v5 element and class numbers (MathWorks' "MAT-File Format", 2021, tables 1-2 and 1-3).
_MI_INT8, _MI_INT32, _MI_UINT32, _MI_MATRIX, _MI_COMPRESSED = 1, 5, 6, 14, 15
_MX_CELL, _MX_STRUCT, _MX_OBJECT, _MX_SPARSE = 1, 2, 3, 5
_MX_REFUSED = {_MX_CELL: "a cell array", _MX_OBJECT: "an object", _MX_SPARSE: "a sparse array",
               16: "a function handle", 17: "an opaque object"}  # fmt: skip
#: The deepest nesting read: ``cameras`` > ``Camera1`` > ``IntrinsicMatrix``.
MAX_DEPTH = 3
#: The most fields a struct may have (RAT7M's have 6 to 20).
MAX_FIELDS = 1024
#: The most dimensions an array may have (scipy's own limit).
MAX_DIMS = 32


class _Elements:
    """The bytes of one top-level element, read in order (inflated in pieces if compressed), within a budget."""

    def __init__(self, f: Any, nbytes: int, compressed: bool, order: str, budget: list[int], path: Path) -> None:
        self.f, self.left, self.order, self.budget, self.path = f, nbytes, order, budget, path
        self.inflate = zlib.decompressobj() if compressed else None
        self.buffer = b""
        self.consumed = 0  # bytes read or skipped past by read() and skip()
        self.variable = ""  # the top-level variable's name, once its header is read

    def _more(self) -> bytes:
        """The next piece of the element's (inflated) bytes; b"" at its end."""
        if self.inflate is None:
            piece = self.f.read(min(self.left, 1 << 16))
            self.left -= len(piece)
            return piece
        while True:
            try:
                if self.inflate.unconsumed_tail:
                    data = self.inflate.decompress(self.inflate.unconsumed_tail, 1 << 20)
                elif self.left > 0:
                    piece = self.f.read(min(self.left, 1 << 16))
                    if not piece:
                        return b""
                    self.left -= len(piece)
                    data = self.inflate.decompress(piece, 1 << 20)
                else:
                    return b""
            except zlib.error as exc:
                raise BadInputError(f"{self.path}: a compressed variable is corrupt ({exc})") from None
            self.budget[0] -= len(data)
            if self.budget[0] < 0:
                msg = (f"{self.path}: its compressed variables expand to more than the bound "
                       f"({MAX_EXPANSION}x the file's size, at least {MIN_DECOMPRESSED_BOUND >> 20} MiB); "
                       "refusing a zlib bomb")  # fmt: skip
                raise _ZlibBombError(msg)
            if data:
                return data

    def read(self, n: int) -> bytes:
        while len(self.buffer) < n:
            more = self._more()
            if not more:
                raise BadInputError(f"{self.path}: ends inside a variable; is it a complete .mat file?")
            self.buffer += more
        out, self.buffer = self.buffer[:n], self.buffer[n:]
        self.consumed += n
        return out

    def skip(self, n: int) -> None:
        self.consumed += n
        if self.inflate is None and n > len(self.buffer):  # on disk: seek past it
            ahead = n - len(self.buffer)
            if ahead > self.left:
                raise BadInputError(f"{self.path}: ends inside a variable; is it a complete .mat file?")
            self.f.seek(ahead, os.SEEK_CUR)
            self.left -= ahead
            self.buffer = b""
            return
        while n > len(self.buffer):
            n -= len(self.buffer)
            self.buffer = self._more()
            if not self.buffer:
                raise BadInputError(f"{self.path}: ends inside a variable; is it a complete .mat file?")
        self.buffer = self.buffer[n:]

    def tag(self) -> tuple[int, int]:
        """An element's tag ``(type, nbytes)``; a small element's data (the tag's last 4 bytes) is read with it."""
        kind, nbytes = struct.unpack(self.order + "II", self.read(8))
        if kind >> 16:  # small data element format: nbytes in the upper half, data in the tag's last 4 bytes
            return kind & 0xFFFF, kind >> 16
        return kind, nbytes

    def element(self, want: Collection[int], what: str, small: bool = True) -> bytes:
        """The data of the next element, of a type in ``want``, padded to 8 bytes (or a small element if ``small``).

        Read as scipy reads it: a tag that scipy would read differently (a small flags element, say) is refused,
        so that what is checked here is what scipy then parses.
        """
        raw = self.read(8)
        kind, nbytes = struct.unpack(self.order + "II", raw)
        if kind >> 16:
            kind, nbytes, data = kind & 0xFFFF, kind >> 16, raw[4:]
            if nbytes > 4 or not small:
                raise BadInputError(f"{self.path}: a malformed {what}")
            data = data[:nbytes]
        else:
            if nbytes > 1 << 20:
                raise BadInputError(f"{self.path}: a {what} of {nbytes} bytes")
            data = self.read(nbytes)
            self.skip(-nbytes % 8)
        if kind not in want:
            raise BadInputError(f"{self.path}: a {what} of element type {kind}; not a MATLAB v5 array")
        return data

    def finish(self) -> None:
        """Read (and count) what is left of the element."""
        while self._more():
            pass
        self.buffer = b""


def _walk(elements: _Elements, nbytes: int, depth: int, path: Path, label: str = "") -> None:
    """Check one ``miMATRIX`` of ``nbytes`` (its tag read) and what it holds; recursion bounded by MAX_DEPTH.

    ``label`` names it in errors: ``cameras.Camera1`` (a variable's own name is in its header).
    """
    if nbytes == 0:
        if depth == 1:  # scipy reads a variable's header whatever its size says
            raise BadInputError(f"{path}: a variable of 0 bytes; not a MATLAB v5 array")
        return  # an empty array
    order, start = elements.order, elements.consumed
    malformed = f"{path}: a malformed array header (flags or dimensions); not a MATLAB v5 array"
    flags = elements.element((_MI_UINT32,), "array's flags", small=False)
    if len(flags) != 8:  # scipy reads 8 bytes of flags whatever the tag says
        raise BadInputError(malformed)
    dims_data = elements.element((_MI_INT32, _MI_UINT32), "array's dimensions", small=False)
    if not 2 <= len(dims_data) // 4 <= MAX_DIMS or len(dims_data) % 4:
        raise BadInputError(malformed)
    name = elements.element((_MI_INT8, _MI_UTF8), "array's name")
    mclass = struct.unpack(order + "I", flags[:4])[0] & 0xFF
    dims = struct.unpack(order + f"{len(dims_data) // 4}i", dims_data)
    used = elements.consumed - start
    if depth == 1:
        elements.variable = name.decode("utf-8", "replace")
    label = label or name.decode("utf-8", "replace") or "a variable"
    if any(d < 0 for d in dims):
        raise BadInputError(f"{path}: {label} has negative dimensions; not a MATLAB array")
    count = math.prod(dims)
    if mclass in _MX_REFUSED:
        raise BadInputError(f"{path}: {label} is {_MX_REFUSED[mclass]}; a RAT7M file holds structs and numbers")
    if mclass != _MX_STRUCT:  # numbers or text: at most as many elements as the bytes that remain
        if count > max(nbytes - used, 0):
            raise BadInputError(f"{path}: {label} declares more elements than its {nbytes} bytes hold; not RAT7M's")
        complex_ = struct.unpack(order + "I", flags[:4])[0] & 0x800
        _data_elements(elements, nbytes - used, count, 2 if complex_ else 1, path, label)
        return
    if depth >= MAX_DEPTH:
        raise BadInputError(f"{path}: {label} nests structs more than {MAX_DEPTH} deep; not a RAT7M file")
    if count != 1:
        raise BadInputError(f"{path}: {label} is a {' x '.join(map(str, dims))} struct array; RAT7M's are 1 x 1")
    length = elements.element((_MI_INT32,), "struct's field name length")
    names = elements.element((_MI_INT8,), "struct's field names")
    width = struct.unpack(order + "i", length)[0] if len(length) == 4 else 0
    fields = len(names) // width if width > 0 else 0
    if fields > MAX_FIELDS:
        raise BadInputError(f"{path}: {label} has {fields} fields; RAT7M's structs have at most 20")
    for k in range(fields):
        field = names[k * width : (k + 1) * width].split(b"\0")[0].decode("latin-1")
        kind, size = elements.tag()
        if kind != _MI_MATRIX:
            raise BadInputError(f"{path}: {label}.{field} is not a MATLAB array")
        _walk(elements, size, depth + 1, path, f"{label}.{field}")
    if elements.consumed - start != nbytes:  # scipy moves on by what it parsed: both must end where the tag says
        raise BadInputError(f"{path}: {label} does not fill its {nbytes} bytes; not a MATLAB v5 array")


#: Element types that hold numbers or text, and their item sizes (miINT8 .. miUINT64, miUTF8 .. miUTF32).
_MI_DATA = {1: 1, 2: 1, 3: 2, 4: 2, 5: 4, 6: 4, 7: 4, 9: 8, 12: 8, 13: 8, 16: 1, 17: 2, 18: 4}
_MI_UTF8 = 16


def _data_elements(elements: _Elements, remaining: int, count: int, parts: int, path: Path, label: str) -> None:
    """Check the ``parts`` data elements (real, and imaginary if complex) that fill ``remaining`` bytes of an array
    of ``count`` elements: each of a number type, with ``count`` items, inside the array; then skip them.

    scipy's reader trusts them: a small-format tag declaring more than its 4 bytes, or a complex flag with one
    part (each one changed byte of a real file), made it read past its buffers (SIGBUS, SIGSEGV).
    """
    bad = f"{path}: {label} has a malformed data element; not a MATLAB v5 array"
    for _ in range(parts):
        if remaining < 8:
            raise BadInputError(bad)
        kind, nbytes = struct.unpack(elements.order + "II", elements.read(8))
        if kind >> 16:  # small data element format: nbytes in the upper half, data in the tag's last 4 bytes
            kind, nbytes, padded = kind & 0xFFFF, kind >> 16, 0
            if nbytes > 4:
                raise BadInputError(bad)
        else:
            padded = nbytes + (-nbytes % 8)
        item = _MI_DATA.get(kind)
        fits = item is not None and (nbytes == count * item or (kind == _MI_UTF8 and nbytes >= count))
        if not fits or padded > remaining - 8:
            raise BadInputError(bad)
        elements.skip(padded)
        remaining -= 8 + padded
    if remaining:
        raise BadInputError(bad)


def _struct(mat: dict, key: str, path: Path) -> np.void:
    """Return the 1x1 MATLAB struct ``key`` of a loaded file."""
    if key not in mat:
        found = ", ".join(k for k in mat if not k.startswith("__")) or "nothing"
        raise BadInputError(f"{path}: has no '{key}' variable (found: {found}); is this a RAT7M mocap file?")
    value = mat[key]
    if not (isinstance(value, np.ndarray) and value.dtype.names and value.size == 1):
        raise BadInputError(f"{path}: '{key}' is not a MATLAB struct")
    return value.reshape(-1)[0]


def _float_array(value: Any, where: str) -> np.ndarray:
    if np.iscomplexobj(value):
        raise BadInputError(f"{where}: holds complex numbers; a camera or marker value is real")
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise BadInputError(f"{where}: is not numeric") from exc


def _parse_cameras(mat: dict, path: Path) -> dict[str, dict[str, np.ndarray]]:
    cams = _struct(mat, "cameras", path)
    names = cams.dtype.names or ()  # a struct (checked by _struct): never empty
    missing = [c for c in catalogue.CAMERA_NAMES if c not in names]
    if missing:
        raise BadInputError(f"{path}: cameras struct lacks {', '.join(missing)} (found: {', '.join(names)})")
    cameras: dict[str, dict[str, np.ndarray]] = {}
    for cam_name in catalogue.CAMERA_NAMES:
        cam_value = cams[cam_name]
        if not (isinstance(cam_value, np.ndarray) and cam_value.dtype.names and cam_value.size == 1):
            raise BadInputError(f"{path}: cameras.{cam_name} is not a struct")
        cam = cam_value.reshape(-1)[0]
        params: dict[str, np.ndarray] = {}
        for field in CAMERA_FIELDS:
            if field not in cam.dtype.names:
                raise BadInputError(f"{path}: cameras.{cam_name} has no field '{field}'")
            params[field] = _float_array(cam[field], f"{path}: cameras.{cam_name}.{field}")
        extra = [f for f in cam.dtype.names if f not in CAMERA_FIELDS]
        if extra:
            log.debug("%s: cameras.%s: ignoring field(s) %s", path, cam_name, ", ".join(extra))
        for key, shapes in _PARAM_SHAPES.items():
            if params[key].shape not in shapes:
                want = " or ".join(str(s) for s in shapes)
                msg = f"{path}: cameras.{cam_name}.{key} has shape {params[key].shape}, expected {want}"
                raise BadInputError(msg)
        frame = params["frame"].reshape(-1)
        whole = np.all(np.isfinite(frame)) and np.all(frame == np.round(frame))
        if not (whole and np.all(frame >= 0) and np.all(frame <= MAX_FRAME_INDEX)):
            msg = f"{path}: cameras.{cam_name}.frame must hold whole frame indices from 0 to {MAX_FRAME_INDEX}"
            raise BadInputError(msg)
        params["frame"] = frame.astype(np.int64)
        cameras[cam_name] = with_both_spellings(params)
    return cameras


def _parse_mocap(mat: dict, path: Path) -> np.ndarray:
    markers = _struct(mat, "mocap", path)
    names = markers.dtype.names or ()  # a struct (checked by _struct): never empty
    unknown = [n for n in names if n not in catalogue.JOINT_NAMES]
    if unknown:
        raise BadInputError(f"{path}: mocap has unknown marker(s) {', '.join(unknown)}")
    missing = [n for n in catalogue.JOINT_NAMES if n not in names]
    if missing:
        raise BadInputError(f"{path}: mocap lacks marker(s) {', '.join(missing)}")
    columns = []
    for joint in catalogue.JOINT_NAMES:
        values = _float_array(markers[joint], f"{path}: mocap.{joint}")
        if values.ndim != 2 or values.shape[1] != 3:
            raise BadInputError(f"{path}: mocap.{joint} has shape {values.shape}, expected (n_samples, 3)")
        columns.append(values)
    lengths = {len(c) for c in columns}
    if len(lengths) != 1:
        detail = ", ".join(f"{j}: {len(c)}" for j, c in zip(catalogue.JOINT_NAMES, columns, strict=True))
        raise BadInputError(f"{path}: mocap markers have different sample counts ({detail})")
    return np.stack(columns, axis=1)


def _string(mat: dict, key: str) -> str:
    value = mat.get(key)
    if isinstance(value, np.ndarray) and value.dtype.kind == "U" and value.size:
        return str(value.reshape(-1)[0])
    return ""


def _recording_of(path: Path, name: str) -> catalogue.Recording | None:
    try:
        return catalogue.parse_mocap_file_name(path.name)
    except (ValueError, KeyError):
        pass
    match = re.fullmatch(r"Subject(\d+)-Day(\d+)", name)
    if match:
        try:
            return catalogue.recording_for(int(match.group(1)), int(match.group(2)))
        except KeyError:
            return None
    return None


def load_cameras(path: str | os.PathLike) -> dict[str, dict[str, np.ndarray]]:
    """Read the six cameras of a ``mocap-*.mat`` file.

    Returns:
        ``{"Camera1": {"IntrinsicMatrix": (3, 3), "rotationMatrix": (3, 3), "translationVector": (1, 3),
        "TangentialDistortion": (1, 2), "RadialDistortion": (1, 2) or (1, 3), "frame": (n,) int64}, ...}``;
        float64 parameters in MATLAB's conventions (see :mod:`rat7m.geometry`). ``RotationMatrix`` and
        ``TranslationVector`` (the documentation's spellings) are the same arrays under a second name.

    Raises:
        BadInputError: the file is missing, not a v5 .mat file, or not in the RAT7M layout.
    """
    path = Path(path)
    return _parse_cameras(_read(path), path)


def load_mocap(path: str | os.PathLike) -> np.ndarray:
    """Read the motion capture of a ``mocap-*.mat`` file as ``(n_samples, 20, 3)`` float64 mm.

    Joints are in ``catalogue.JOINT_NAMES`` order, mapped by marker name; NaN where a marker was lost.
    """
    path = Path(path)
    return _parse_mocap(_read(path), path)


def load_recording(path: str | os.PathLike) -> MocapRecording:
    """Read cameras, motion capture and name of a ``mocap-*.mat`` file in one pass, checked together.

    Raises:
        BadInputError: as :func:`load_cameras` and :func:`load_mocap`, or when a camera's ``frame``
            map does not have one entry per motion-capture sample.
    """
    path = Path(path)
    mat = _read(path)
    cameras = _parse_cameras(mat, path)
    mocap = _parse_mocap(mat, path)
    for cam_name, params in cameras.items():
        if len(params["frame"]) != len(mocap):
            msg = (
                f"{path}: cameras.{cam_name}.frame has {len(params['frame'])} entries "
                f"but mocap has {len(mocap)} samples"
            )
            raise BadInputError(msg)
    name = _string(mat, "name")
    return MocapRecording(name=name, cameras=cameras, mocap=mocap, recording=_recording_of(path, name))


def save_recording(
    path: str | os.PathLike,
    name: str,
    cameras: Mapping[str, Mapping[str, np.ndarray]],
    mocap: np.ndarray,
    *,
    marker_order: Sequence[str] | None = None,
) -> None:
    """Write a ``mocap-*.mat`` file in the exact RAT7M struct layout (atomically).

    Args:
        path: destination file.
        name: the ``name`` string, e.g. ``"Subject1-Day1"``.
        cameras: ``{"Camera1": {...}}`` with the keys :func:`load_cameras` returns (either spelling);
            written in the real files' camera order (:data:`MAT_CAMERA_ORDER`) and field spellings.
        mocap: ``(n_samples, 20, 3)`` mm in catalogue joint order.
        marker_order: order of the marker fields in the file (default: catalogue order); real files
            need not follow the joint order, which is why readers map by name.
    """
    mocap = np.asarray(mocap, dtype=np.float64)
    if mocap.ndim != 3 or mocap.shape[1:] != (catalogue.N_JOINTS, 3):
        raise ValueError(f"mocap must have shape (n_samples, {catalogue.N_JOINTS}, 3), got {mocap.shape}")
    order = list(marker_order) if marker_order is not None else list(catalogue.JOINT_NAMES)
    if sorted(order) != sorted(catalogue.JOINT_NAMES):
        raise ValueError("marker_order must name each of the 20 catalogue joints once")
    cam_structs = {}
    for cam_name in MAT_CAMERA_ORDER:  # the real files' struct order
        params = cameras[cam_name]
        fields = {}
        for field in CAMERA_FIELDS:
            value = np.asarray(camera_param(params, field), dtype=np.float64)
            fields[field] = value.reshape(-1, 1) if field == "frame" else value
        cam_structs[cam_name] = fields
    markers = {joint: mocap[:, catalogue.JOINT_NAMES.index(joint), :] for joint in order}
    content = {"cameras": cam_structs, "mocap": markers, "name": name}
    import scipy.io

    with atomic_write(path) as f:
        # savemat takes an open file too (scipy's docs); scipy-stubs types only paths
        scipy.io.savemat(f, content, format="5", oned_as="row")  # type: ignore[arg-type]
