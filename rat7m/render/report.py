"""One self-contained HTML page for a scoring run (a ``compute_metrics.py --save_dir`` folder).

The page holds, in order: the headline table, the per-recording and per-joint tables, the
per-joint chart, the error distribution (histogram and CDF), the error against time within each
recording (these from the 3D scores), then for 2D predictions the per-camera 2D table (pixel error,
PCK, OKS AP) and the PCK curve, the triangulation diagnostics, and last the worst-N samples drawn
with :mod:`rat7m.render.samples`. A section whose file the run did not write is left out. The
folder's files are read as untrusted input (:mod:`rat7m.render.report_inputs`); text from them is
escaped in the page and drawn without mathtext in the figures. Every image is inline
(base64 PNG) and there is no script and no external reference, so the file can be mailed or
attached to a paper's supplement and opens anywhere.
"""

from __future__ import annotations

import base64
import html
import io
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from rat7m import catalogue
from rat7m.errors import BadInputError
from rat7m.fileio import atomic_write, remove_stale_temporaries
from rat7m.plotting import rgb
from rat7m.render.report_inputs import PER_SAMPLE_CSV, read_per_sample, read_run

__all__ = ["REPORT_NAME", "SECTIONS", "SECTIONS_2D", "SECTIONS_TRIANGULATION", "build_report", "read_per_sample",
           "write_report"]  # fmt: skip

log = logging.getLogger(__name__)

#: File name of the report inside the metrics folder.
REPORT_NAME = "report.html"
#: Section ids of the page of a 3D run, in order (tests check each is there).
SECTIONS = ("headline", "recordings", "joints", "joint-chart", "distribution", "time", "worst")
#: Sections added by 2D predictions (``summary_2d.json``), before the worst samples.
SECTIONS_2D = ("scores-2d", "pck")
#: Section added by a triangulated run (``triangulation.json``), before the worst samples.
SECTIONS_TRIANGULATION = ("triangulation",)
_TITLES = {"mpjpe": "MPJPE", "pa_mpjpe": "PA-MPJPE", "n_mpjpe": "N-MPJPE"}
_CSS = """body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}
th{background:#eee}td:first-child,th:first-child{text-align:left}img{max-width:100%;height:auto}
.note{color:#555;font-size:90%}"""


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _img(fig: Any, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{_png(fig)}">'


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _table(header: list[str], rows: list[list[Any]]) -> str:
    def cell(value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.2f}"
        return html.escape(str(value))

    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _group_rows(label: str, group: dict[str, Any], names: list[str]) -> list[Any]:
    row: list[Any] = [label, group["n_samples"], group["n_excluded_joints"]]
    for name in names:
        row += [group["metrics"][name]["mean"], group["metrics"][name]["median"]]
    return row


def _metric_header(names: list[str]) -> list[str]:
    header = ["", "samples", "excluded joints"]
    for name in names:
        header += [f"{_TITLES.get(name, name)} mean (mm)", f"{_TITLES.get(name, name)} median (mm)"]
    return header


def _joint_chart(per_joint: list[dict[str, Any]]) -> Any:
    fig = _figure(9, 3.6)
    ax = fig.add_subplot()
    parts = _joint_parts()
    values = [np.nan if e["mpjpe"] is None else e["mpjpe"] for e in per_joint]
    colours = [rgb(catalogue.PART_COLOURS[parts[j]]) for j in range(len(per_joint))]
    ax.bar(range(len(values)), np.nan_to_num(values), color=colours, edgecolor="black", linewidth=0.5)
    labels = [_short(e["joint"]) for e in per_joint]
    ax.set_xticks(range(len(values)), labels, rotation=60, ha="right", parse_math=False)  # names from a file: plain
    ax.set_ylabel("MPJPE (mm)")
    ax.set_title("Per-joint MPJPE, bars coloured by body part")
    from rat7m.plotting import part_legend_handles

    ax.set_ylim(0, np.nanmax(values) * 1.3 if np.isfinite(values).any() else 1)  # room for the legend
    ax.legend(handles=part_legend_handles(), fontsize=8, ncols=6, loc="upper center")
    return fig


def _joint_parts() -> dict[int, str]:
    """Body part of each joint: the part of the first bone it belongs to."""
    parts: dict[int, str] = {}
    for (a, b), part in zip(catalogue.BONES, catalogue.BONE_PARTS, strict=True):
        parts.setdefault(a, part)
        parts.setdefault(b, part)
    return parts


def _distribution(errors: np.ndarray, title: str) -> str:
    scored = np.sort(errors[np.isfinite(errors)])
    if not len(scored):
        return _note(f"No sample has a finite {title}: nothing to plot.")
    fig = _figure(9, 3.4)
    hist, cdf = fig.subplots(1, 2)
    hist.hist(scored, bins=40, color=rgb(catalogue.OKABE_ITO["blue"]), label=f"{len(scored)} samples")
    hist.axvline(float(np.median(scored)), color=rgb(catalogue.OKABE_ITO["vermillion"]), linestyle="--",
                 label=f"median {np.median(scored):.1f} mm")  # fmt: skip
    hist.set_xlabel(f"per-sample {title} (mm)")
    hist.set_ylabel("samples")
    hist.legend(fontsize=8)
    cdf.plot(scored, np.arange(1, len(scored) + 1) / len(scored), color=rgb(catalogue.OKABE_ITO["blue"]),
             label=f"fraction of samples with {title} <= x")  # fmt: skip
    cdf.set_xlabel(f"per-sample {title} (mm)")
    cdf.set_ylabel("cumulative fraction")
    cdf.set_ylim(0, 1.01)
    cdf.grid(alpha=0.3)
    cdf.legend(fontsize=8, loc="lower right")
    return _img(fig, "error histogram and CDF")


def _over_time(columns: dict[str, np.ndarray], metric: str, title: str) -> str:
    recordings = [r.name for r in catalogue.RECORDINGS if r.name in set(columns["recording"].tolist())]
    if not recordings:
        return _note("No sample names a RAT7M recording (column recording): nothing to plot.")
    fig = _figure(9, 2.2 * len(recordings) + 0.6)
    axes = np.atleast_1d(fig.subplots(len(recordings), 1, squeeze=False).ravel())
    for ax, name in zip(axes, recordings, strict=True):
        mask = columns["recording"] == name
        order = np.argsort(columns["frame"][mask], kind="stable")
        ax.plot(columns["frame"][mask][order], columns[metric][mask][order], ".-", markersize=3, linewidth=0.8,
                color=rgb(catalogue.OKABE_ITO["blue"]), label=f"{name}: per-sample {title}")  # fmt: skip
        ax.set_ylabel(f"{title} (mm)")
        ax.legend(fontsize=8, loc="upper right")
    axes[-1].set_xlabel("video frame (Camera1)")
    return _img(fig, "error against time in each recording")


def _note(text: str) -> str:
    return f'<p class="note">{html.escape(text)}</p>'


def _short(text: str, most: int = 40) -> str:
    """Text from a file, cut to fit a figure (the page's tables show it whole)."""
    return text if len(text) <= most else text[: most - 3] + "..."


def _plain(text: str) -> str:
    """Text from a file, to draw in a figure as it is: an escaped ``$`` never starts mathtext."""
    return text.replace("$", r"\$")


def _pck_keys(group: dict[str, Any]) -> tuple[list[tuple[float, str]], list[tuple[float, str]]]:
    """``(radius px, key)`` and ``(alpha, key)`` of the PCK thresholds in a 2D group, each sorted."""
    pixels: list[tuple[float, str]] = []
    alphas: list[tuple[float, str]] = []
    for key in group:
        if not key.startswith("pck@"):
            continue
        threshold = key[4:].removesuffix("px")
        try:
            value = float(threshold)
        except ValueError:
            continue
        (pixels if key.endswith("px") else alphas).append((value, key))
    return sorted(pixels), sorted(alphas)


def _table_2d(result: dict[str, Any]) -> str:
    pixels, alphas = _pck_keys(result["all"])
    keys = ["n_images", "mpjpe_px", "median_px", *(k for _, k in alphas), *(k for _, k in pixels)]
    titles = ["images", "MPJPE (px)", "median (px)", *(f"PCK@{a:g}" for a, _ in alphas),
              *(f"PCK@{r:g}px" for r, _ in pixels)]  # fmt: skip
    ap = [k for k in ("ap", "ap50", "ap75", "ar") if k in result["all"]]
    keys += ap
    titles += [k.upper() for k in ap]

    def cells(label: str, group: dict[str, Any]) -> list[Any]:
        return [label, *(_round(group.get(k)) for k in keys)]

    rows = [cells(name, group) for name, group in result["cameras"].items()] + [cells("all", result["all"])]
    note = (f"2D predictions {result['pred2d']}, table {result['gt_path']}, {result['split']} split; pixel errors "
            f"in the distorted image. PCK@a counts a joint within a times the longer side of the ground-truth box, "
            f"PCK@r px within r pixels; AP/AR are COCO OKS with the RAT7M keypoint sigmas.")  # fmt: skip
    if not ap:
        note += " " + (result["ap_note"] or "This run has no OKS AP/AR.")
    return _table(["camera", *titles], rows) + _note(note)


def _round(value: Any) -> Any:
    """Fractions to 3 decimals (PCK, AP), pixels to 2 (the table's float format)."""
    return f"{value:.3f}" if isinstance(value, float) and value <= 1.0 else value


def _pck_curve(result: dict[str, Any]) -> str:
    """PCK against the pixel radius and against the box fraction, one line per camera and one for all."""
    pixels, alphas = _pck_keys(result["all"])
    if not pixels and not alphas:
        return _note("This run has no PCK thresholds.")
    fig = _figure(9, 3.4)
    panels = [(pixels, "threshold (px)"), (alphas, "threshold (fraction of the box's longer side)")]
    panels = [panel for panel in panels if panel[0]]
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    groups = [*result["cameras"].items(), ("all", result["all"])]
    for ax, (thresholds, label) in zip(axes, panels, strict=True):
        x = [0.0] + [t for t, _ in thresholds]
        for name, group in groups:
            y = [0.0] + [np.nan if group.get(k) is None else group[k] for _, k in thresholds]
            style = {"color": "black", "linewidth": 2.0} if name == "all" else {"linewidth": 0.9, "alpha": 0.8}
            ax.plot(x, y, "o-", markersize=3, label=_plain(_short(name)), **style)
        ax.set_xlabel(label)
        ax.set_ylabel("PCK (fraction of joints)")
        ax.set_ylim(0, 1.01)
        ax.grid(alpha=0.3)
    axes[-1].legend(fontsize=7, loc="lower right")
    return _img(fig, "PCK curve per camera")


def _triangulation(diagnostics: dict[str, Any]) -> str:
    error, views = _fmt(diagnostics["reprojection_error_px_mean"]), _fmt(diagnostics["views_used_mean"])
    head = f"Mode: {diagnostics['mode']}. Mean reprojection error {error} px; mean views used {views} per joint."
    rows = [[e["joint"], e["reprojection_error_px"], e["views_used"]] for e in diagnostics["per_joint"]]
    return _note(head) + _table(["joint", "reprojection error (px)", "views used (mean)"], rows)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _worst(summary: dict[str, Any], columns: dict[str, np.ndarray], metric: str, n: int,
           root: Path | None) -> tuple[str, str]:  # fmt: skip
    """The worst section's heading and HTML: the ``n`` samples of highest ``metric``, or a note saying why none."""
    heading = "Worst samples"
    pred = summary["pred_path"] or summary["pred2d"]
    if n == 0:
        return heading, _note("None asked for (--worst 0).")
    if summary["gt_path"] is None or pred is None:
        return heading, _note("Not drawn: summary.json names no table (gt_path) or no predictions file.")
    gt_path, pred_path = Path(summary["gt_path"]), Path(pred)
    absent = [f"the {what} {path}" for what, path in (("table", gt_path), ("predictions", pred_path))
              if not path.is_file()]  # fmt: skip
    if absent:
        return heading, _note(f"Not drawn: {' and '.join(absent)} named in summary.json cannot be found from here "
                              f"(paths are relative to where compute_metrics ran).")  # fmt: skip
    if summary["split"] not in ("test", "train", "all"):
        return heading, _note(f"Not drawn: summary.json names the split {summary['split']!r}.")
    scores = np.where(np.isfinite(columns[metric]), columns[metric], -np.inf)
    order = [int(k) for k in np.argsort(-scores, kind="stable")[:n] if np.isfinite(scores[k])]
    if not order:
        return heading, _note(f"Not drawn: no sample has a finite {_TITLES.get(metric, metric)}.")
    table, rows, predictions = _load_for_samples(summary, gt_path, pred_path, columns)
    root = root if root is not None else gt_path.parent
    from rat7m.render.samples import frame_images, sample_figure
    from rat7m.video import ChunkIndex

    index = ChunkIndex.from_dir(root / catalogue.VIDEO_DIR)
    parts, lost, total = [], 0, 0
    for rank, k in enumerate(order, start=1):
        i = int(columns["sample"][k])
        images = frame_images(table, int(rows[i]), root, index)
        lost, total = lost + sum(image is None for image in images.values()), total + len(images)
        fig = sample_figure(table, int(rows[i]), predictions, i, images, label=f" (sample {i}, worst #{rank})")
        parts.append(_img(fig, f"sample {i}"))
    if lost:
        parts.insert(0, _note(_images_left_out(root, lost, total)))
        log.warning("%s", _images_left_out(root, lost, total))
    return f"The {len(order)} worst samples", "\n".join(parts)


def _load_for_samples(summary: dict[str, Any], gt_path: Path, pred_path: Path,
                      columns: dict[str, np.ndarray]) -> tuple[dict, np.ndarray, Any]:  # fmt: skip
    """The table, the split's rows and the predictions (3D, or the 2D views of a triangulated run)."""
    from rat7m.model import Table
    from rat7m.render.samples import Predictions, load_predictions
    from rat7m.table import load_annotation

    table = load_annotation(gt_path)
    rows = Table.of(table).split_rows(summary["split"])
    if len(rows) != summary["n_samples"] or (columns["sample"] >= len(rows)).any():
        msg = (f"{gt_path} has {len(rows)} {summary['split']} samples but the run scored {summary['n_samples']}: "
               f"the table is not the one that was scored")  # fmt: skip
        raise BadInputError(msg)
    names = [str(c) for c in table["camera_names"]]
    if summary["pred_path"] is not None:
        return table, rows, load_predictions(pred_path, names)
    from rat7m.predictions import read_predictions_2d

    points = read_predictions_2d(pred_path, len(rows), names).points
    return table, rows, Predictions(points_2d={name: points[:, v] for v, name in enumerate(names)})


def _images_left_out(root: Path, lost: int, total: int) -> str:
    """Why images are missing from the worst samples, and the fix."""
    images, video = root / catalogue.IMAGES_DIR, root / catalogue.VIDEO_DIR
    if not images.is_dir() and not video.is_dir():
        why = f"{root} holds neither {catalogue.IMAGES_DIR}/ nor {catalogue.VIDEO_DIR}/"
    else:
        why = f"neither found under {images} nor decodable from the chunks under {video}"
    return f"{lost} of {total} images left out of the worst samples: {why}; pass --root with the dataset folder."


def _sections(run: dict[str, Any], worst: int, root: Path | None) -> tuple[str, dict[str, tuple[str, str]]]:
    """The page's title and its sections ``{id: (heading, html)}``, in order."""
    summary, columns, result_2d, diagnostics = run["summary"], run["columns"], run["summary_2d"], run["triangulation"]
    sections: dict[str, tuple[str, str]] = {}
    if summary is not None:
        names = list(summary["metrics"])
        shown = next((n for n in ("mpjpe", *names) if n in columns), None)  # what the per-sample charts show
        if shown is None:
            msg = f"{PER_SAMPLE_CSV} has no column of the metrics summary.json names ({', '.join(names)})"
            raise BadInputError(msg)
        metric = shown
        title = _TITLES.get(metric, metric)
        header = _metric_header(names)
        source = (f"Predictions {summary['pred_path']}" if summary["pred_path"] is not None
                  else f"2D predictions {summary['pred2d']}, triangulated")  # fmt: skip
        note = _note(f"{source}; table {summary['gt_path']}; errors in mm.")
        recordings = [_group_rows(name, group, names) for name, group in summary["recordings"].items()]
        joints = [[e["joint"], e["mpjpe"], e["n_samples"]] for e in summary["per_joint_mpjpe"]]
        sections |= {
            "headline": ("Headline", _table(header, [_group_rows("all", summary, names)]) + note),
            "recordings": ("Per recording", _table(header, recordings)),
            "joints": ("Per joint", _table(["joint", "MPJPE (mm)", "samples"], joints)),
            "joint-chart": ("Per-joint chart", _img(_joint_chart(summary["per_joint_mpjpe"]), "per-joint MPJPE")),
            "distribution": ("Error distribution", _distribution(columns[metric], title)),
            "time": ("Error against time", _over_time(columns, metric, title)),
        }
        kind = "triangulated 2D" if summary["pred_path"] is None else "3D"
        title = f"RAT7M scoring report: {summary['n_samples']} {summary['split']} samples ({kind})"
    else:
        title = f"RAT7M scoring report: 2D predictions, {result_2d['split']} split"
    if result_2d is not None:
        sections["scores-2d"] = ("2D scores per camera", _table_2d(result_2d))
        if summary is not None and summary["pred2d"] != result_2d["pred2d"]:
            other = summary["pred_path"] or summary["pred2d"]
            stale = f"These 2D scores ({result_2d['pred2d']}) and the 3D scores above ({other}) are of different runs."
            sections["scores-2d"] = (sections["scores-2d"][0], _note(stale) + sections["scores-2d"][1])
        sections["pck"] = ("PCK curve", _pck_curve(result_2d))
    if diagnostics is not None:
        sections["triangulation"] = ("Triangulation", _triangulation(diagnostics))
    if summary is not None:
        sections["worst"] = _worst(summary, columns, metric, worst, root)
    else:
        why = "A 2D run has no per-sample 3D errors and so no worst samples: add --triangulate to have them."
        sections["scores-2d"] = (sections["scores-2d"][0], sections["scores-2d"][1] + _note(why))
    return title, sections


def build_report(metrics_dir: str | os.PathLike, root: str | os.PathLike | None = None, worst: int = 4) -> str:
    """The HTML of the report of ``metrics_dir`` (``summary.json`` and/or ``summary_2d.json`` in it).

    Args:
        metrics_dir: a ``compute_metrics.py --save_dir`` folder (3D, 2D or triangulated run).
        root: dataset root for the worst samples' images (default: the table's folder).
        worst: how many of the worst samples to draw (0 or more).

    Raises:
        BadInputError: a missing or hostile file, or a bad field (one line naming file and field).
    """
    if isinstance(worst, bool) or not isinstance(worst, int) or worst < 0:
        raise BadInputError(f"--worst {worst}: expected a whole number >= 0")
    run = read_run(Path(metrics_dir))
    title, sections = _sections(run, worst, Path(root) if root is not None else None)
    body = "\n".join(f'<section id="{key}"><h2>{html.escape(head)}</h2>\n{content}</section>'
                     for key, (head, content) in sections.items())  # fmt: skip
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_CSS}</style></head>\n<body><h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n")  # fmt: skip


def write_report(metrics_dir: str | os.PathLike, out: str | os.PathLike | None = None,
                 root: str | os.PathLike | None = None, worst: int = 4) -> Path:  # fmt: skip
    """Write :func:`build_report` to ``out`` (default ``<metrics_dir>/report.html``), atomically; return its path."""
    from rat7m.cli import check_writable

    out = Path(out) if out is not None else Path(metrics_dir) / REPORT_NAME
    if out.is_dir():
        raise BadInputError(f"--out {out} is a folder; name the report's file, e.g. {out / REPORT_NAME}")
    check_writable(out.parent, f"the report {out.name}", "pass --out PATH")  # before the seconds of drawing
    text = build_report(metrics_dir, root, worst)
    remove_stale_temporaries(out.parent, {out.name})  # what a killed run (SIGKILL) left
    try:
        with atomic_write(out) as handle:
            handle.write(text.encode("utf-8"))
    except OSError as exc:  # read-only or full folder, or a parent that is a file: nothing was written
        raise BadInputError(f"cannot write the report {out}: {exc.strerror or exc}; pass --out PATH") from None
    return out
