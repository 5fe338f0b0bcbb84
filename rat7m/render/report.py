"""One self-contained HTML page for a scoring run (a ``compute_metrics.py --save_dir`` folder).

The page holds, in order: the headline table, the per-recording and per-joint tables, the
per-joint chart, the error distribution (histogram and CDF), the error against time within each
recording, and the worst-N samples drawn with :mod:`rat7m.render.samples`. Every image is inline
(base64 PNG) and there is no script and no external reference, so the file can be mailed or
attached to a paper's supplement and opens anywhere.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from rat7m import catalogue
from rat7m.errors import BadInputError
from rat7m.fileio import atomic_write
from rat7m.plotting import rgb

log = logging.getLogger(__name__)

#: File name of the report inside the metrics folder.
REPORT_NAME = "report.html"
#: Section ids of the page, in order (tests check each is there).
SECTIONS = ("headline", "recordings", "joints", "joint-chart", "distribution", "time", "worst")
_TITLES = {"mpjpe": "MPJPE", "pa_mpjpe": "PA-MPJPE", "n_mpjpe": "N-MPJPE"}
_CSS = """body{font-family:sans-serif;max-width:1100px;margin:2em auto;color:#222}
table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #bbb;padding:3px 8px;text-align:right}
th{background:#eee}td:first-child,th:first-child{text-align:left}img{max-width:100%;height:auto}
.note{color:#555;font-size:90%}"""


def read_per_sample(metrics_dir: Path) -> dict[str, np.ndarray]:
    """The columns of ``per_sample_metrics.csv`` (recording as text, the rest as numbers)."""
    path = metrics_dir / "per_sample_metrics.csv"
    try:
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as exc:
        msg = f"cannot read {path}: {exc.strerror}; is {metrics_dir} a compute_metrics --save_dir?"
        raise BadInputError(msg) from None
    if not rows:
        raise BadInputError(f"{path} has no samples")
    columns = {}
    for key in rows[0]:
        values = [r[key] for r in rows]
        try:
            columns[key] = np.asarray(values, dtype=np.float64)
        except ValueError:
            columns[key] = np.asarray(values)
    return columns


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
    ax.set_xticks(range(len(values)), [e["joint"] for e in per_joint], rotation=60, ha="right")
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


def _distribution(errors: np.ndarray) -> Any:
    fig = _figure(9, 3.4)
    hist, cdf = fig.subplots(1, 2)
    scored = np.sort(errors[np.isfinite(errors)])
    hist.hist(scored, bins=40, color=rgb(catalogue.OKABE_ITO["blue"]), label=f"{len(scored)} samples")
    hist.axvline(float(np.median(scored)), color=rgb(catalogue.OKABE_ITO["vermillion"]), linestyle="--",
                 label=f"median {np.median(scored):.1f} mm")  # fmt: skip
    hist.set_xlabel("per-sample MPJPE (mm)")
    hist.set_ylabel("samples")
    hist.legend(fontsize=8)
    cdf.plot(scored, np.arange(1, len(scored) + 1) / len(scored), color=rgb(catalogue.OKABE_ITO["blue"]),
             label="fraction of samples with MPJPE <= x")  # fmt: skip
    cdf.set_xlabel("per-sample MPJPE (mm)")
    cdf.set_ylabel("cumulative fraction")
    cdf.set_ylim(0, 1.01)
    cdf.grid(alpha=0.3)
    cdf.legend(fontsize=8, loc="lower right")
    return fig


def _over_time(columns: dict[str, np.ndarray]) -> Any:
    recordings = [r.name for r in catalogue.RECORDINGS if r.name in set(columns["recording"].tolist())]
    fig = _figure(9, 2.2 * len(recordings) + 0.6)
    axes = np.atleast_1d(fig.subplots(len(recordings), 1, squeeze=False).ravel())
    for ax, name in zip(axes, recordings, strict=True):
        mask = columns["recording"] == name
        order = np.argsort(columns["frame"][mask], kind="stable")
        ax.plot(columns["frame"][mask][order], columns["mpjpe"][mask][order], ".-", markersize=3, linewidth=0.8,
                color=rgb(catalogue.OKABE_ITO["blue"]), label=f"{name}: per-sample MPJPE")  # fmt: skip
        ax.set_ylabel("MPJPE (mm)")
        ax.legend(fontsize=8, loc="upper right")
    axes[-1].set_xlabel("video frame (Camera1)")
    return fig


def _worst(summary: dict[str, Any], columns: dict[str, np.ndarray], n: int, root: Path | None) -> tuple[str, int]:
    """HTML of the worst-``n`` sample figures and how many were drawn (0 with a note when inputs are missing)."""
    from metric_utils.compute_metrics import split_rows
    from rat7m.render.samples import frame_images, load_predictions, sample_figure
    from rat7m.table import load_annotation
    from rat7m.video import ChunkIndex

    gt_path, pred_path = Path(summary.get("gt_path", "")), Path(summary.get("pred_path", ""))
    if not (gt_path.is_file() and pred_path.is_file()):
        note = f"The table ({gt_path}) or the predictions ({pred_path}) named in summary.json are not here."
        return f'<p class="note">{html.escape(note)}</p>', 0
    table = load_annotation(gt_path)
    rows = split_rows(table, summary.get("split", "test"))
    predictions = load_predictions(pred_path, [str(c) for c in table["camera_names"]])
    root = root if root is not None else gt_path.parent
    index = ChunkIndex.from_dir(root / catalogue.VIDEO_DIR)
    samples = columns["sample"].astype(int)
    order = np.argsort(-np.where(np.isfinite(columns["mpjpe"]), columns["mpjpe"], -np.inf), kind="stable")[:n]
    parts = []
    for rank, k in enumerate(order, start=1):
        i = samples[k]
        fig = sample_figure(table, int(rows[i]), predictions, i, frame_images(table, int(rows[i]), root, index),
                            label=f" (sample {i}, worst #{rank})")  # fmt: skip
        parts.append(_img(fig, f"sample {i}"))
    return "\n".join(parts), len(parts)


def build_report(metrics_dir: str | os.PathLike, root: str | os.PathLike | None = None, worst: int = 4) -> str:
    """The HTML of the report of ``metrics_dir`` (``summary.json`` and ``per_sample_metrics.csv`` in it).

    Args:
        metrics_dir: a ``compute_metrics.py --save_dir`` folder.
        root: dataset root for the worst samples' images (default: the table's folder).
        worst: how many of the worst samples to draw.
    """
    metrics_dir = Path(metrics_dir)
    try:
        summary = json.loads((metrics_dir / "summary.json").read_text())
    except (OSError, ValueError) as exc:
        raise BadInputError(f"cannot read {metrics_dir / 'summary.json'}: {exc}") from None
    columns = read_per_sample(metrics_dir)
    names = list(summary["metrics"])
    per_joint = summary["per_joint_mpjpe"]
    worst_html, drawn = _worst(summary, columns, worst, Path(root) if root is not None else None)
    title = f"RAT7M scoring report: {summary['n_samples']} {summary['split']} samples"
    note = (f'<p class="note">Predictions {html.escape(str(summary.get("pred_path")))}, '
            f'table {html.escape(str(summary.get("gt_path")))}; errors in mm.</p>')  # fmt: skip
    header = _metric_header(names)
    recordings = [_group_rows(name, group, names) for name, group in summary["recordings"].items()]
    joints = [[e["joint"], e["mpjpe"], e["n_samples"]] for e in per_joint]
    sections = {
        "headline": ("Headline", _table(header, [_group_rows("all", summary, names)]) + note),
        "recordings": ("Per recording", _table(header, recordings)),
        "joints": ("Per joint", _table(["joint", "MPJPE (mm)", "samples"], joints)),
        "joint-chart": ("Per-joint chart", _img(_joint_chart(per_joint), "per-joint MPJPE")),
        "distribution": ("Error distribution", _img(_distribution(columns["mpjpe"]), "error histogram and CDF")),
        "time": ("Error against time", _img(_over_time(columns), "error against time in each recording")),
        "worst": (f"The {drawn} worst samples", worst_html),
    }
    body = "\n".join(f'<section id="{key}"><h2>{html.escape(head)}</h2>\n{content}</section>'
                     for key, (head, content) in sections.items())  # fmt: skip
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_CSS}</style></head>\n<body><h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n")  # fmt: skip


def write_report(metrics_dir: str | os.PathLike, out: str | os.PathLike | None = None,
                 root: str | os.PathLike | None = None, worst: int = 4) -> Path:  # fmt: skip
    """Write :func:`build_report` to ``out`` (default ``<metrics_dir>/report.html``), atomically; return its path."""
    out = Path(out) if out is not None else Path(metrics_dir) / REPORT_NAME
    text = build_report(metrics_dir, root, worst)
    with atomic_write(out) as handle:
        handle.write(text.encode("utf-8"))
    return out
