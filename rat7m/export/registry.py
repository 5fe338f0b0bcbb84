"""The export formats as explicit objects: name, options, optional dependency, whether images are needed.

Every format module (:mod:`rat7m.export.coco` ...) has one function,
``export(selection, out, *, final, **options) -> Summary``, which takes exactly the keyword options
listed here. :meth:`ExportFormat.export` is the one way to call it: it refuses an option the format
does not take (instead of swallowing it, which hid typos and flags given to the wrong format),
imports the format's optional dependency through :func:`rat7m.extras.require` (one message naming
the pip extra), and only then imports the format module, so ``import rat7m.export`` stays light.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rat7m import extras
from rat7m.errors import BadInputError

if TYPE_CHECKING:
    from rat7m.export.common import Selection, Summary

__all__ = ["FORMATS", "REGISTRY", "ExportFormat", "Requirement", "get_format"]


@dataclass(frozen=True)
class Requirement:
    """An optional dependency: its import name, the toolkit's pip extra, and the pip requirement."""

    module: str
    extra: str
    package: str


@dataclass(frozen=True)
class ExportFormat:
    """One training format the table can be exported to.

    Attributes:
        name: the format's name on the command line and its folder under ``OUT/``.
        title: what it is, for help and messages.
        options: keyword options its export function takes beyond ``selection``, ``out``, ``final``.
        needs_images: whether the images must be extracted (their sizes are read, links made).
        requires: the optional dependency it cannot be written without, if any.
        default_split: rows exported when no split is asked for.
    """

    name: str
    title: str
    options: frozenset[str] = frozenset()
    needs_images: bool = False
    requires: Requirement | None = None
    default_split: str = "all"

    @property
    def module(self) -> str:
        """The module that writes it."""
        return f"{__package__}.{self.name}"

    def available(self) -> bool:
        """Whether its optional dependency (if any) imports here."""
        return self.requires is None or extras.optional(self.requires.module) is not None

    def require(self) -> None:
        """Import its optional dependency, or refuse in one line naming the pip extra.

        Raises:
            rat7m.extras.MissingExtraError: the dependency is not installed.
        """
        if self.requires is not None:
            extras.require(self.requires.module, extra=self.requires.extra,
                           feature=f"the {self.name} export", package=self.requires.package)  # fmt: skip

    def check_options(self, options: Mapping[str, Any]) -> None:
        """Refuse options this format does not take, naming the ones it does.

        Raises:
            BadInputError: an unknown option.
        """
        unknown = sorted(set(options) - self.options)
        if unknown:
            takes = ", ".join(sorted(self.options)) or "none"
            msg = f"the {self.name} export takes no option {', '.join(unknown)} (its options: {takes})"
            raise BadInputError(msg)

    def export(self, selection: Selection, out: Path, *, final: Path, **options: Any) -> Summary:
        """Write this format into ``out`` (a staging folder that will be renamed to ``final``).

        Raises:
            BadInputError: an unknown option, or the format refuses the data.
            rat7m.extras.MissingExtraError: its optional dependency is not installed.
        """
        self.check_options(options)
        self.require()
        writer = importlib.import_module(self.module).export
        return writer(selection, out, final=final, **options)


#: Every format, in the order ``all`` exports them.
REGISTRY: dict[str, ExportFormat] = {
    f.name: f
    for f in (
        ExportFormat("coco", "COCO keypoints + MMPose dataset info", needs_images=True),
        ExportFormat("dlc", "DeepLabCut project labels", frozenset({"images_root"}), needs_images=True,
                     default_split="train"),
        ExportFormat("yolo", "Ultralytics YOLO pose", frozenset({"images_root", "val_recordings"}), needs_images=True),
        ExportFormat("slp", "SLEAP .slp", frozenset({"images_root"}), needs_images=True,
                     requires=Requirement("sleap_io", "sleap", "sleap-io")),
        ExportFormat("anipose", "aniposelib calibration", frozenset({"allow_skew"})),
        ExportFormat("dannce", "DANNCE Label3D files over the raw videos", frozenset({"root"})),
    )
}

#: The formats' names, in the order ``all`` exports them.
FORMATS: tuple[str, ...] = tuple(REGISTRY)


def get_format(name: str) -> ExportFormat:
    """The format called ``name``.

    Raises:
        BadInputError: no such format.
    """
    try:
        return REGISTRY[name]
    except KeyError:
        raise BadInputError(f"unknown export format {name!r}: expected one of {', '.join(FORMATS)}") from None
