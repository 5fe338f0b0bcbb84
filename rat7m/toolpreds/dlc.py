"""DeepLabCut prediction tables: ``.h5`` (pandas/PyTables) or ``.csv``, as DLC writes them.

Columns have the levels ``scorer``, optionally ``individuals`` (DLC 3 writes it even for one
animal), ``bodyparts`` and ``coords`` (``x``, ``y``, ``likelihood``). Rows are indexed by

* ``(labeled-data, <recording>_<camera>, <image>)``: ``evaluate_network`` on our DLC export (key
  ``df_with_missing``; rows of frames outside the evaluated split are all NaN and are skipped);
* an image path string: ``analyze_images`` (key ``predictions``), paths as they were passed;
* a frame number: ``analyze_videos`` on a chunk video, whose name the file's name starts with
  (``s5-d1-camera3-3500DLC_resnet50_...h5``): frame ``k`` is the camera's video frame ``3500 + k``.
  Give the folder of those files to score every chunk and camera at once.

Pixels are 0-based; a NaN coordinate is a missing joint; the likelihood is the joint's confidence,
their mean the prediction's score. Each individual is one prediction (the higher-scored wins).

The ``.h5`` is read by pandas and PyTables, which unpickle some of its metadata: score only ``.h5``
files you made; the ``.csv`` twin is parsed here without any of that.
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import math
import pickle
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from rat7m import extras
from rat7m.errors import BadInputError
from rat7m.toolpreds.common import (
    Collector2D,
    TableIndex,
    ToolPredictions2D,
    check_confidence,
    check_values,
    is_float,
    joint_order,
    library_read,
    read_text,
)

__all__ = [
    "FORMAT",
    "H5_KEYS",
    "MAX_COLUMNS",
    "MAX_FILES",
    "read",
    "sniff",
]

FORMAT = "dlc"
#: Keys DLC writes its tables under, tried in this order when a file holds several.
H5_KEYS = ("df_with_missing", "predictions", "keypoints")
#: Most files read from a folder (a recording's six cameras in chunks of 3500 frames: ~200 files).
MAX_FILES = 10_000
#: Most columns a DLC table may have (20 joints x 3 coords x many individuals, and more).
MAX_COLUMNS = 20_000
_LEVELS = ("scorer", "individuals", "bodyparts", "coords")


def sniff(path: Path, head: bytes) -> bool:
    """A ``.h5`` (HDF5 magic), a CSV whose first cell is ``scorer``, or a folder of ``.h5`` files."""
    if path.is_dir():
        return next(path.glob("*.h5"), None) is not None
    if path.suffix.lower() in (".h5", ".hdf5"):
        return head.startswith(b"\x89HDF\r\n\x1a\n")
    return path.suffix.lower() == ".csv" and head.lstrip(b"\xef\xbb\xbf").startswith(b"scorer,")


def read(path: Path, index: TableIndex, target: np.ndarray | None = None) -> ToolPredictions2D:
    """Read a DLC prediction table (or a folder of them) and place every row at its (sample, camera)."""
    collector = Collector2D(index, FORMAT)
    for file in _files(path):
        _read_one(file, index, collector)
    return collector.finish(target)


def _files(path: Path) -> list[Path]:
    """``path``, or the DLC tables of a folder (one per chunk video): its ``.h5`` files, else its ``.csv``."""
    if not path.is_dir():
        return [path]
    for pattern in ("*.h5", "*.csv"):
        files = sorted(f for f in path.glob(pattern) if f.is_file())
        if files:
            if len(files) > MAX_FILES:
                raise BadInputError(f"{path} holds {len(files)} {pattern} files, more than {MAX_FILES}")
            return files
    raise BadInputError(f"{path} holds no DeepLabCut .h5 or .csv file")


def _read_one(path: Path, index: TableIndex, collector: Collector2D) -> None:
    if path.suffix.lower() in (".h5", ".hdf5"):
        keys, columns, values = _read_h5(path)
    else:
        keys, columns, values = _read_csv(path)
    check_values(values, f"{path} values")
    coords = [c[-1] for c in columns]
    bodyparts = [c[-2] for c in columns]
    groups: dict[tuple[str, ...], dict[tuple[str, str], int]] = {}
    for k, column in enumerate(columns):
        groups.setdefault(tuple(column[:-2]), {})[(bodyparts[k], coords[k])] = k
    video = index.chunk_video(path.name)
    skipped = 0
    for group, where in groups.items():
        names = list(dict.fromkeys(b for b, _ in where))
        order = joint_order(names, f"{path} (columns {'/'.join(group)})")
        cols = {}
        for coord in ("x", "y", "likelihood"):
            lacking = [names[j] for j in order if (names[j], coord) not in where]
            if lacking and coord != "likelihood":
                raise BadInputError(f"{path}: body part {lacking[0]!r} has no {coord!r} column")
            cols[coord] = None if lacking else np.array([where[(names[j], coord)] for j in order])
        xy = np.stack([values[:, cols["x"]], values[:, cols["y"]]], axis=-1)
        likelihood = np.ones(xy.shape[:2]) if cols["likelihood"] is None else values[:, cols["likelihood"]]
        check_confidence(likelihood, f"{path} likelihoods")
        predicted = ~np.isnan(xy).all(axis=(1, 2))  # all-NaN rows: frames outside the evaluated split
        skipped += int((~predicted).sum())
        seen = ~np.isnan(xy[..., 0])
        counts = seen.sum(axis=1)
        score = np.where(seen, np.nan_to_num(likelihood), 0.0).sum(axis=1) / np.maximum(counts, 1)
        rows = np.flatnonzero(predicted)
        found = [_lookup(index, keys[r], video, path) for r in rows.tolist()]
        collector.add_many([t for t, _ in found], xy[rows], np.nan_to_num(likelihood[rows]), score[rows],
                           [label for _, label in found])  # fmt: skip
    if skipped:
        note = f"{path.name}: {skipped} rows without any prediction (outside the evaluated split) skipped"
        collector.report.notes.append(note)


def _lookup(index: TableIndex, key: object, video: tuple[str, int, int] | None, path: Path) -> tuple[list, str]:
    if isinstance(key, tuple):
        text = "/".join(str(k) for k in key)
        return index.lookup_path(text), repr(text[:100])
    text = str(key)
    if text.isdigit() and len(text) < 10:
        if video is None:
            msg = (f"{path} is indexed by frame number but its name does not start with a chunk video's name "
                   "(s5-d1-camera3-3500...): rename it after the analysed video")  # fmt: skip
            raise BadInputError(msg)
        return index.lookup_video_frame(video, int(text)), f"frame {text} of {path.name}"
    return index.lookup_path(text), repr(text[:100])


def _read_h5(path: Path) -> tuple[list, list[tuple[str, ...]], np.ndarray]:
    with library_read(path, "DLC .h5 table"):
        pd = extras.require("pandas", extra="export", feature=f"reading {path}", package="pandas tables")
        image = path.read_bytes()  # checked, then read by PyTables from this memory: the same bytes
        _check_pickles(image, path)
        try:
            # HDF5 will not take an image for a name that exists on disk: under the file itself, none can
            with _pytables_unpickles_safely(path), pd.HDFStore(
                str(path / "in-memory"), mode="r", driver="H5FD_CORE", driver_core_image=image,
                driver_core_backing_store=0,
            ) as store:  # fmt: skip
                stored = [k.lstrip("/") for k in store]
                key = next((k for k in H5_KEYS if k in stored), stored[0] if len(stored) == 1 else None)
                if key is None:
                    raise BadInputError(f"{path} holds tables {stored}; expected one of {', '.join(H5_KEYS)}")
                frame = store[key]
        except ImportError:  # pandas imports PyTables when it opens the store
            extras.require("tables", extra="export", feature=f"reading {path}", package="tables")
            raise
    if not isinstance(frame, pd.DataFrame) or frame.columns.nlevels < 3:
        raise BadInputError(f"{path}: expected a table with scorer/bodyparts/coords columns")
    names = [str(n).lower() if n is not None else "" for n in frame.columns.names]
    if "bodyparts" in names and "coords" in names:
        keep = [i for i, n in enumerate(names) if n not in ("bodyparts", "coords")]
        keep += [names.index("bodyparts"), names.index("coords")]
    else:
        keep = list(range(frame.columns.nlevels))
    columns = [tuple(str(c[i]) for i in keep) for c in frame.columns]
    try:
        values = frame.to_numpy(dtype=np.float64)
    except (TypeError, ValueError):
        raise BadInputError(f"{path}: the table holds values that are not numbers") from None
    return list(frame.index), columns, values


def _check_pickles(image: bytes, path: Path) -> None:
    """Refuse an HDF5 file that carries a pickle PyTables would load with ``pickle.loads`` and the allow-list refuses.

    PyTables unpickles every string attribute that ends with ``.`` as it opens a node (h5py gives a
    variable-length one as ``str``, PyTables as bytes), every row of an object-atom array (pandas stores
    a non-string object index that way), and in a 1.x file a rewritten ``FILTERS``; pandas' "table"
    format keeps its own metadata as such pickles (lists, dicts, strings). h5py, which never unpickles,
    finds them here for a clear error: each must pass :func:`rat7m.safe_pickle.safe_loads`, 1.x files,
    links to other files and virtual datasets are refused. What PyTables reads next is guarded anyway
    (:func:`_pytables_unpickles_safely`): two readers of one format may not see the same bytes alike.
    """
    h5py = extras.require("h5py", extra="export", feature=f"reading {path}", package="h5py")
    found: list[tuple[str, Any]] = []
    links: list[str] = []
    with h5py.File(io.BytesIO(image), "r") as f:
        f.visit_links(links.append)  # no exception may leave an h5py callback: collected, then checked
        groups = {h5py.h5o.get_info(f.id).addr}
        for name in links:
            link = f.get(name, getlink=True)
            if isinstance(link, h5py.ExternalLink):
                raise BadInputError(f"{path}: {name} links to another file; refused")
            if isinstance(link, h5py.HardLink) and isinstance(f[name], h5py.Group):
                # a group linked from two places (by address: the link count in the file may lie): PyTables'
                # walk of the groups would never end
                address = h5py.h5o.get_info(f[name].id).addr
                if address in groups:
                    raise BadInputError(f"{path}: group {name} is linked from two places; not a DLC prediction file")
                groups.add(address)
        version = _as_bytes(f.attrs.get("PYTABLES_FORMAT_VERSION", b"2.0"))
        if not version[:1].isdigit() or int(version[:1]) < 2:
            raise BadInputError(f"{path}: a PyTables {version!r} file (before 2.0); refused")
        f.visititems(lambda name, node: found.append((name, node)))
        budget = max(MAX_H5_DECLARED, 32 * len(image))
        declared = 0  # bytes the datasets (and pandas' "shape" attributes) declare: what reading them allocates
        for name, node in [("/", f), *found]:
            shape = node.attrs.get("shape")
            if shape is not None and np.asarray(shape).dtype.kind in "iu":
                declared += 8 * math.prod(int(n) for n in np.asarray(shape).reshape(-1)[:32])
            if isinstance(node, h5py.Dataset):
                declared += node.size * node.dtype.itemsize
            if declared > budget:
                raise BadInputError(f"{path}: its tables declare more than {budget:,} bytes; not a DLC prediction file")
            for attribute in node.attrs:
                value = node.attrs[attribute]
                raw = _as_bytes(value) if isinstance(value, str | bytes) else value
                if isinstance(raw, bytes) and raw.endswith(b".") and raw not in (b"0", b"0."):
                    _safe_pickle(raw, f"{path}: attribute {attribute!r} of {name}")
            if not isinstance(node, h5py.Dataset):
                continue
            if node.is_virtual:
                raise BadInputError(f"{path}: {name} is a virtual dataset (data from other files); refused")
            if _as_bytes(node.attrs.get("PSEUDOATOM", b"")) == b"object":
                for k, row in enumerate(node):
                    data = np.asarray(row).tobytes()
                    declared += len(data)  # rows may all point at one stored blob: each is read (and unpickled)
                    if declared > budget:
                        raise BadInputError(f"{path}: its rows of {name} hold more than the file could; refused")
                    _safe_pickle(data, f"{path}: row {k} of {name}")


def _as_bytes(value: Any) -> bytes:
    """An attribute's bytes: h5py gives a variable-length text one as str, where PyTables sees bytes."""
    return value.encode("utf-8", "surrogateescape") if isinstance(value, str) else bytes(value)


def _safe_pickle(data: bytes, where: str) -> None:
    from rat7m.safe_pickle import safe_loads

    try:
        safe_loads(data, where)
    except BadInputError as exc:  # its message starts with where
        reason = str(exc).removeprefix(f"{where}: ")
        raise BadInputError(f"{where}: a pickle PyTables would load, running what it names: {reason}") from None


#: The most bytes a DLC .h5's tables may declare (a prediction of 1M frames x 60 columns is 480 MB), at least
#: 32x the file's size: 15 KB of unwritten chunked rows, or pandas' "shape" attribute, asked for 4.7 GB.
MAX_H5_DECLARED = 512 << 20

_PYTABLES_PICKLE = threading.Lock()


class _AllowListPickle:
    """Stands in for the ``pickle`` module inside PyTables: ``loads`` is the allow-list unpickler."""

    HIGHEST_PROTOCOL = pickle.HIGHEST_PROTOCOL
    UnpicklingError = pickle.UnpicklingError
    dumps = staticmethod(pickle.dumps)

    def __init__(self, path: Path) -> None:
        self.path = path

    def loads(self, data: bytes, **_: Any) -> Any:
        from rat7m.safe_pickle import safe_loads

        return safe_loads(bytes(data), f"{self.path}: a pickle inside")


@contextlib.contextmanager
def _pytables_unpickles_safely(path: Path) -> Iterator[None]:
    """While a DLC .h5 is read, PyTables' modules that unpickle (attributes, object atoms) see only the allow-list.

    pandas swaps ``pickle.loads`` for its own (unrestricted) one while it reads; PyTables' modules get
    this stand-in in place of the module itself, so neither reaches the real ``pickle.loads``. A refused
    attribute comes back as its raw bytes (PyTables returns an attribute it cannot unpickle as it is).
    """
    import tables.atom
    import tables.attributeset

    modules = (tables.attributeset, tables.atom)
    with _PYTABLES_PICKLE:
        saved = [module.pickle for module in modules]
        try:
            for module in modules:
                module.pickle = _AllowListPickle(path)
            yield
        finally:
            for module, original in zip(modules, saved, strict=True):
                module.pickle = original


def _read_csv(path: Path) -> tuple[list, list[tuple[str, ...]], np.ndarray]:
    text = read_text(path)
    reader = csv.reader(io.StringIO(text))
    header: list[list[str]] = []
    try:
        for row in reader:
            if len(row) > MAX_COLUMNS:
                raise BadInputError(f"{path} line {reader.line_num} has {len(row)} columns, above {MAX_COLUMNS}")
            if not row or row[0].strip().lower() not in _LEVELS:
                first_data = row
                break
            header.append(row)
        else:
            first_data = None
        if [h[0].strip().lower() for h in header][-2:] != ["bodyparts", "coords"] or header[0][0] != "scorer":
            raise BadInputError(f"{path}: expected DLC header rows scorer, [individuals,] bodyparts, coords")
        width = len(header[0])
        n_index = next((i for i in range(1, width) if header[0][i].strip()), width)
        if any(len(h) != width for h in header) or n_index >= width:
            raise BadInputError(f"{path}: the DLC header rows have different lengths or no data columns")
        columns = [tuple(h[c] for h in header) for c in range(n_index, width)]
        # rows are parsed as they are read into an array sized from the line count: memory stays the
        # text plus the numbers, never a list of every cell's string
        values = np.empty((text.count("\n") + 1, width - n_index))
        keys: list = []
        for row in itertools.chain([first_data] if first_data is not None else [], reader):
            if not any(c.strip() for c in row):
                continue  # blank lines, pandas' row of index names
            where = f"{path} line {reader.line_num}"
            if len(row) != width:
                raise BadInputError(f"{where} has {len(row)} columns; the header has {width}")
            keys.append(row[0] if n_index == 1 else tuple(row[:n_index]))
            try:
                values[len(keys) - 1] = [float(c) if c.strip() else np.nan for c in row[n_index:]]
            except ValueError:
                bad = next(c for c in row[n_index:] if c.strip() and not is_float(c))
                raise BadInputError(f"{where}: {bad[:30]!r} is not a number") from None
    except csv.Error as exc:
        raise BadInputError(f"{path} line {reader.line_num}: {exc}") from None
    values = values[: len(keys)]
    return keys, columns, values

