"""Drawing a rat: keypoints, centre of mass, the skeleton, and prediction overlays (matplotlib).

Every colour comes from the catalogue's colour-blind-safe palette (Okabe-Ito): bones by body part
(:data:`rat7m.catalogue.PART_COLOURS`), and in overlays ground truth and prediction told apart by
colour *and* by marker (filled circles and solid bones vs crosses and dashed bones), with a thin
line from each true joint to its prediction.
"""

from __future__ import annotations

import numpy as np

from rat7m import catalogue

__all__ = [
    "draw_overlay_2d",
    "draw_pose_2d",
    "draw_pose_3d",
    "overlay_legend_handles",
    "part_legend_handles",
    "pose_legend_handles",
    "rgb",
]


def rgb(colour: tuple[int, int, int]) -> tuple[float, float, float]:
    """A catalogue colour (RGB 0-255) as matplotlib's 0-1 floats."""
    return (colour[0] / 255, colour[1] / 255, colour[2] / 255)


_rgb = rgb  # the name older callers use

#: Look of the 20 ground-truth keypoints in single-pose drawings: the ground truth's colour in every
#: figure and video (:data:`rat7m.catalogue.GT_COLOUR`), so one colour means one role everywhere.
_KEYPOINT_STYLE = {"s": 14, "c": [rgb(catalogue.GT_COLOUR)], "edgecolors": "black", "linewidths": 0.6, "zorder": 3}


def _segments(ax, starts: np.ndarray, ends: np.ndarray, colors: list, **style) -> None:
    """Draw the segments ``starts[i]`` -> ``ends[i]`` as one LineCollection, leaving out those with a NaN end.

    One artist instead of a ``plot`` per segment: a six-view figure had ~370 Line2D objects, and making
    them was most of the cost of a sample figure. The caps are Line2D's, so the pixels are the same.
    """
    from matplotlib import rcParams
    from matplotlib.collections import LineCollection

    segments = np.stack([starts, ends], axis=1)  # (n, 2 ends, 2 coordinates)
    keep = np.isfinite(segments).all(axis=(1, 2))
    dashed = style.get("linestyles", "-") != "-"
    capstyle = rcParams["lines.dash_capstyle" if dashed else "lines.solid_capstyle"]
    colours = [colors[i % len(colors)] for i in np.flatnonzero(keep)]
    ax.add_collection(LineCollection(segments[keep], colors=colours, capstyle=capstyle, **style))


def draw_pose_2d(ax, image: np.ndarray | None, keypoints_2d: np.ndarray, com_2d: np.ndarray | None = None,
                 title: str | None = None) -> None:  # fmt: skip
    """Show ``image`` with the 20 keypoints (ground-truth colour), the 21 bones (by part) and the COM (black cross).

    Args:
        ax: a matplotlib Axes.
        image: ``(H, W, 3)`` RGB image, or None to draw on a blank axis.
        keypoints_2d: ``(20, 2)`` pixels; NaN joints are left out.
        com_2d: ``(2,)`` pixels, optional.
    """
    keypoints_2d = np.asarray(keypoints_2d, dtype=float)
    if image is not None:
        ax.imshow(image)
    bones = np.asarray(catalogue.BONES)
    _segments(ax, keypoints_2d[bones[:, 0]], keypoints_2d[bones[:, 1]], colors=[rgb(c) for c in catalogue.BONE_COLOURS],
              linewidths=2)  # fmt: skip
    ax.scatter(keypoints_2d[:, 0], keypoints_2d[:, 1], label="keypoints", **_KEYPOINT_STYLE)
    if com_2d is not None:
        ax.scatter([com_2d[0]], [com_2d[1]], s=50, c="black", marker="x", linewidths=2, zorder=4,
                   label="centre of mass")  # fmt: skip
    if image is None:
        ax.invert_yaxis()
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9, parse_math=False)  # text from data: never mathtext


def part_legend_handles() -> list:
    """Legend entries naming the body part of each bone colour, for ``ax.legend(handles=...)``."""
    from matplotlib.lines import Line2D

    return [Line2D([0], [0], color=rgb(colour), linewidth=2, label=part.replace("_", " "))
            for part, colour in catalogue.PART_COLOURS.items()]  # fmt: skip


def pose_legend_handles(com: bool = True) -> list:
    """Legend entries of a :func:`draw_pose_2d` drawing: keypoints, centre of mass, then the body parts."""
    from matplotlib.lines import Line2D

    handles = [Line2D([0], [0], linestyle="none", marker="o", markersize=5, markerfacecolor=rgb(catalogue.GT_COLOUR),
                      markeredgecolor="black", label="keypoints")]  # fmt: skip
    if com:
        handles.append(Line2D([0], [0], linestyle="none", marker="x", markersize=7, color="black",
                              markeredgewidth=2, label="centre of mass"))  # fmt: skip
    return handles + part_legend_handles()


def draw_overlay_2d(ax, image: np.ndarray | None, truth_2d: np.ndarray, predicted_2d: np.ndarray,
                    title: str | None = None) -> None:  # fmt: skip
    """Ground truth and a prediction on one view, with a line from each true joint to its prediction.

    Args:
        ax: a matplotlib Axes.
        image: ``(H, W, 3)`` RGB image, or None for a blank axis (y pointing down, as in an image).
        truth_2d: ``(20, 2)`` pixels; NaN joints are left out.
        predicted_2d: ``(20, 2)`` pixels, drawn exactly where given.
    """
    truth_2d = np.asarray(truth_2d, dtype=float)
    predicted_2d = np.asarray(predicted_2d, dtype=float)
    if image is not None:
        ax.imshow(image)
    _segments(ax, truth_2d, predicted_2d, colors=[rgb(catalogue.ERROR_COLOUR)], linewidths=1, zorder=2)
    bones = np.asarray(catalogue.BONES)
    for points, colour, style in ((truth_2d, catalogue.GT_COLOUR, "-"), (predicted_2d, catalogue.PRED_COLOUR, "--")):
        _segments(ax, points[bones[:, 0]], points[bones[:, 1]], colors=[rgb(colour)], linestyles=style,
                  linewidths=1.5, zorder=3)  # fmt: skip
    ax.scatter(truth_2d[:, 0], truth_2d[:, 1], s=22, c=[rgb(catalogue.GT_COLOUR)], marker=catalogue.GT_MARKER,
               edgecolors="black", linewidths=0.5, zorder=4, label="ground truth")  # fmt: skip
    ax.scatter(predicted_2d[:, 0], predicted_2d[:, 1], s=40, c=[rgb(catalogue.PRED_COLOUR)],
               marker=catalogue.PRED_MARKER, edgecolors="black", linewidths=0.5, zorder=5,
               label="prediction")  # fmt: skip
    if image is None:
        ax.set_aspect("equal")
        if not ax.yaxis_inverted():
            ax.invert_yaxis()
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9, parse_math=False)  # text from data: never mathtext


def overlay_legend_handles() -> list:
    """Legend entries of :func:`draw_overlay_2d`: ground truth, prediction, error line."""
    from matplotlib.lines import Line2D

    return [
        Line2D([0], [0], color=rgb(catalogue.GT_COLOUR), marker=catalogue.GT_MARKER, markeredgecolor="black",
               linestyle="-", label="ground truth"),
        Line2D([0], [0], color=rgb(catalogue.PRED_COLOUR), marker=catalogue.PRED_MARKER, markeredgecolor="black",
               linestyle="--", markersize=8, label="prediction"),
        Line2D([0], [0], color=rgb(catalogue.ERROR_COLOUR), linewidth=1, label="error (truth to prediction)"),
    ]  # fmt: skip


def draw_pose_3d(ax, keypoints_3d: np.ndarray, title: str | None = None, joint_names: bool = False) -> None:
    """Draw the 3D skeleton (mm) on a matplotlib 3D axis, bones by body part.

    Args:
        ax: a matplotlib 3D Axes.
        keypoints_3d: ``(20, 3)`` mm; NaN joints are left out.
        title: optional title.
        joint_names: write each joint's name (catalogue order) next to it.
    """
    keypoints_3d = np.asarray(keypoints_3d, dtype=float)
    for (a, b), colour in zip(catalogue.BONES, catalogue.BONE_COLOURS, strict=True):
        ax.plot(*keypoints_3d[[a, b]].T, "-", color=rgb(colour), linewidth=2)
    ax.scatter(*keypoints_3d.T, s=14, c=[rgb(catalogue.GT_COLOUR)], edgecolors="black", linewidths=0.6,
               depthshade=False)  # fmt: skip
    if joint_names:
        for name, point in zip(catalogue.JOINT_NAMES, keypoints_3d, strict=True):
            if np.isfinite(point).all():
                ax.text(*point, f" {name}", fontsize=6, parse_math=False)
    ax.set_xlabel("x (mm)")
    ax.set_ylabel("y (mm)")
    ax.set_zlabel("z (mm)")
    finite = keypoints_3d[np.isfinite(keypoints_3d).all(axis=1)]
    if len(finite):  # equal scale on all axes, so the rat is not squashed
        centre, half = finite.mean(axis=0), max(np.ptp(finite, axis=0).max() / 2, 1.0)
        ax.set_xlim(centre[0] - half, centre[0] + half)
        ax.set_ylim(centre[1] - half, centre[1] + half)
        ax.set_zlim(centre[2] - half, centre[2] + half)
    if title:
        ax.set_title(title, fontsize=9, parse_math=False)  # text from data: never mathtext
