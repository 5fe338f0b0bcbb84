"""Write a table as numpy 1.x and a 2021 ``pickle.dump`` would: the test fixture for "the official table".

numpy 2 names its pickle helpers ``numpy._core.multiarray``; numpy 1.x wrote ``numpy.core.multiarray``
(``_reconstruct``, ``scalar``) and ``numpy.core.numeric._frombuffer``. The pure-Python pickler below
emits those numpy-1 paths as plain ``GLOBAL`` opcodes; everything else is the stock pickle stream.
The table itself is given the official file's likely age marks: the ``.mat``'s lower-case camera
spellings only, float ``subject_idx``/``day_idx``, ``numpy.int64`` subject/day keys, object arrays
of ``str``, and keys we do not use (a camera's ``frame`` map, a cluster id column).
"""

from __future__ import annotations

import io
import pickle
import types
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np

from rat7m.geometry import mat_spellings


class Numpy1Pickler(pickle._Pickler):
    """A pickler whose numpy globals carry numpy 1.x's module paths."""

    def save_global(self, obj: Any, name: str | None = None) -> None:
        module = getattr(obj, "__module__", "") or ""
        if module.startswith("numpy._core"):
            module = "numpy.core" + module[len("numpy._core") :]
            self.write(pickle.GLOBAL + f"{module}\n{name or obj.__qualname__}\n".encode())
            self.memoize(obj)
            return
        super().save_global(obj, name)

    # the base class binds Python functions (numpy's _frombuffer) to its own save_global
    dispatch: ClassVar[dict] = dict(pickle._Pickler.dispatch)
    dispatch[types.FunctionType] = save_global


def numpy1_dumps(obj: Any, protocol: int = 4) -> bytes:
    buffer = io.BytesIO()
    Numpy1Pickler(buffer, protocol=protocol).dump(obj)
    data = buffer.getvalue()
    assert b"numpy._core" not in data and b"numpy.core." in data
    return data


def official_style(table: Mapping) -> dict:
    """A copy of a built table, reshaped the way the 2021 official file probably is."""
    columns = dict(table["table"])
    columns["subject_idx"] = columns["subject_idx"].astype(np.float64)
    columns["day_idx"] = columns["day_idx"].astype(np.float64)
    columns["train_test"] = np.array(columns["train_test"].tolist(), dtype=object)
    columns["image_path"] = {c: np.array(v.tolist(), dtype=object) for c, v in columns["image_path"].items()}
    columns["cluster_ids"] = np.arange(len(columns["subject_idx"])) % 7
    cameras = {}
    for subject, days in table["cameras"].items():
        for day, cams in days.items():
            out = {}
            for cam, params in cams.items():
                out[cam] = mat_spellings(params)
                out[cam]["frame"] = np.arange(5, dtype=np.float64)  # the .mat's frame map, unused by us
            cameras.setdefault(np.int64(subject), {})[np.int64(day)] = out
    return {"cameras": cameras, "camera_names": np.array(table["camera_names"].tolist(), dtype=object),
            "table": columns, "version": "2021"}  # fmt: skip
