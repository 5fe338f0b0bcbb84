"""Drawing a rat: keypoints, centre of mass and the skeleton in the catalogue's colours (matplotlib)."""

from __future__ import annotations

import numpy as np

from rat7m import catalogue


def _rgb(colour: tuple[int, int, int]) -> tuple[float, float, float]:
    return (colour[0] / 255, colour[1] / 255, colour[2] / 255)


def draw_pose_2d(ax, image: np.ndarray | None, keypoints_2d: np.ndarray, com_2d: np.ndarray | None = None,
                 title: str | None = None) -> None:  # fmt: skip
    """Show ``image`` with the 20 keypoints (red), the 21 bones (anatomical colours) and the COM (blue).

    Args:
        ax: a matplotlib Axes.
        image: ``(H, W, 3)`` RGB image, or None to draw on a blank axis.
        keypoints_2d: ``(20, 2)`` pixels; NaN joints are left out.
        com_2d: ``(2,)`` pixels, optional.
    """
    keypoints_2d = np.asarray(keypoints_2d, dtype=float)
    if image is not None:
        ax.imshow(image)
    for (a, b), colour in zip(catalogue.BONES, catalogue.BONE_COLOURS, strict=True):
        ax.plot(keypoints_2d[[a, b], 0], keypoints_2d[[a, b], 1], "-", color=_rgb(colour), linewidth=2)
    ax.scatter(keypoints_2d[:, 0], keypoints_2d[:, 1], s=12, c="red", zorder=3, label="keypoints")
    if com_2d is not None:
        ax.scatter([com_2d[0]], [com_2d[1]], s=40, c="blue", marker="x", zorder=4, label="centre of mass")
    if image is None:
        ax.invert_yaxis()
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9)


def part_legend_handles() -> list:
    """Legend entries naming the body part of each bone colour, for ``ax.legend(handles=...)``."""
    from matplotlib.lines import Line2D

    return [Line2D([0], [0], color=_rgb(colour), linewidth=2, label=part.replace("_", " "))
            for part, colour in catalogue.PART_COLOURS.items()]  # fmt: skip


def draw_pose_3d(ax, keypoints_3d: np.ndarray, title: str | None = None) -> None:
    """Draw the 3D skeleton (mm) on a matplotlib 3D axis, bones in the catalogue's colours."""
    keypoints_3d = np.asarray(keypoints_3d, dtype=float)
    for (a, b), colour in zip(catalogue.BONES, catalogue.BONE_COLOURS, strict=True):
        ax.plot(*keypoints_3d[[a, b]].T, "-", color=_rgb(colour), linewidth=2)
    ax.scatter(*keypoints_3d.T, s=10, c="red")
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
        ax.set_title(title, fontsize=9)
