"""The whole toolkit end to end on a small synthetic RAT7M-format dataset (``make demo``).

1. generate the synthetic dataset (what "Figshare" holds) and serve it on 127.0.0.1,
2. ``rat7m-download`` from that server, 3. ``rat7m-build-annotation`` (and ``--check``), 4. ``rat7m-extract``
(JPEG files, then tar shards: ``--format shards``), 5. ``rat7m-metrics`` on noisy predictions of the test
split, 5b. ``rat7m-metrics --pred2d --triangulate`` on noisy 2D predictions (scored per camera, then
triangulated and scored in 3D), 6. ``visualization.ipynb`` executed headless (from a checkout: an installed
package does not carry the notebook). Each step runs the installed console command as a user would, in a
subprocess, so the demo works from ``pip install`` as well as from a checkout.

    python -m rat7m.demo                                # into ./demo_output, the "demo" profile
    python -m rat7m.demo --out /tmp/demo --profile test --quiet

Exit codes: 0 every step passed; otherwise the demo stops at the first failing step with its message.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rat7m import catalogue, pixels
from rat7m.cli import ArgumentParser, run_main
from rat7m.demo.figshare_server import FigshareServer
from rat7m.demo.synthetic import generate_dataset
from rat7m.errors import BadInputError
from rat7m.table import load_annotation

__all__ = [
    "NOTEBOOK",
    "PREDICTION_NOISE_MM",
    "PREDICTION_NOISE_PX",
    "build_parser",
    "command",
    "export_step",
    "main",
    "notebook_step",
    "run_demo",
    "score_2d_step",
    "write_noisy_2d_predictions",
    "write_noisy_predictions",
]

#: Where ``visualization.ipynb`` lies in a checkout (the package's parent folder); absent from an installed wheel.
NOTEBOOK = Path(__file__).resolve().parents[2] / "visualization.ipynb"

#: Standard deviation (mm) of the noise added to the ground truth to make demo predictions.
PREDICTION_NOISE_MM = 5.0
#: Standard deviation (px) of the noise added to the table's 2D keypoints to make demo 2D predictions.
PREDICTION_NOISE_PX = 2.0


def command(name: str) -> str:
    """The path of console command ``name`` (``rat7m-download`` ...), installed beside this Python or on PATH.

    Raises:
        BadInputError: the toolkit's commands are not installed (``pip install .`` puts them there).
    """
    found = shutil.which(name, path=os.path.dirname(sys.executable)) or shutil.which(name)
    if found is None:
        msg = f"{name} is not installed beside {sys.executable} nor on PATH: pip install the toolkit first"
        raise BadInputError(msg)
    return found


def _step(title: str, argv: Sequence[str | Path], quiet: bool) -> None:
    """Run one of the toolkit's console commands (``argv[0]`` its name); stop the demo if it fails."""
    started = time.perf_counter()
    print(f"\n== {title}\n$ {' '.join(str(c) for c in argv)}", flush=True)
    command_line = [command(str(argv[0])), *(str(c) for c in argv[1:])]
    result = subprocess.run(command_line, capture_output=quiet, text=True)
    if result.returncode != 0:
        if quiet:
            print(result.stdout, result.stderr, sep="\n")
        raise SystemExit(f"demo step failed ({title}), exit code {result.returncode}")
    print(f"   ({time.perf_counter() - started:.1f} s)", flush=True)


def write_noisy_predictions(table_path: Path, csv_path: Path, *, seed: int = 0) -> int:
    """Write test-split predictions (ground truth + Gaussian noise) as the documented headerless CSV."""
    table = load_annotation(table_path)
    truth = np.asarray(table.columns["3D_keypoints"])[table.split_rows("test")]
    rng = np.random.default_rng(seed)
    predictions = np.where(np.isfinite(truth), truth, 0.0) + rng.normal(0.0, PREDICTION_NOISE_MM, truth.shape)
    np.savetxt(csv_path, predictions.reshape(len(predictions), -1), delimiter=",", fmt="%.4f")
    return len(predictions)


# --- 2D predictions: scored per camera and triangulated (compute_metrics.py --pred2d --triangulate) ---


def write_noisy_2d_predictions(table_path: Path, csv_path: Path, *, seed: int = 0) -> int:
    """Write test-split 2D predictions (table keypoints + Gaussian noise, confidence 1) in the --pred2d CSV layout.

    In 0-based pixels, as a detector writes them (the table's are MATLAB's 1-based: :mod:`rat7m.pixels`).
    """
    annotation = load_annotation(table_path)
    table, cameras = annotation.columns, annotation.camera_names
    rows = annotation.split_rows("test")
    rng = np.random.default_rng(seed)
    joints = range(1, catalogue.N_JOINTS + 1)
    lines = ["sample,camera," + ",".join(f"x{j},y{j},c{j}" for j in joints)]
    for n, row in enumerate(rows):
        for cam in cameras:
            truth = pixels.to_zero_based(table["2D_keypoints"][cam][row], annotation.pixel_convention)
            xy = np.where(np.isfinite(truth), truth, 0.0) + rng.normal(0.0, PREDICTION_NOISE_PX, truth.shape)
            lines.append(f"{n},{cam}," + ",".join(f"{x:.3f},{y:.3f},1" for x, y in xy))
    csv_path.write_text("\n".join(lines) + "\n")
    return len(rows)


def score_2d_step(table: Path, out: Path, seed: int) -> None:
    """Write noisy 2D predictions of the test split and score them in 2D and triangulated to 3D."""
    predictions = out / "predictions_2d_test.csv"
    n = write_noisy_2d_predictions(table, predictions, seed=seed)
    print(f"\n== wrote 2D predictions of {n} test samples ({PREDICTION_NOISE_PX} px noise) to {predictions}")
    _step("rat7m-metrics --pred2d --triangulate: 2D per camera, and the views triangulated to 3D", [
        "rat7m-metrics", "--pred2d", predictions, "--gt_path", table,
        "--triangulate", "--save_dir", out / "metrics_2d", "--triangulated_out", out / "triangulated_test.csv",
    ], False)  # fmt: skip


def run_demo(out: Path, *, profile: str = "demo", seed: int = 0, quiet: bool = False) -> dict[str, Path]:
    """Run every step into ``out`` and return the paths of what it made."""
    out = out.resolve()
    source, dataset = out / "figshare", out / "dataset"
    for folder in (source, dataset):
        shutil.rmtree(folder, ignore_errors=True)
    table = dataset / catalogue.MINI_ANNOTATION_NAME

    print(f"== generating the synthetic RAT7M-format dataset ({profile} profile) in {source}", flush=True)
    generate_dataset(source, seed=seed, profile=profile)
    with FigshareServer(source) as server:
        print(f"   serving it as Figshare at {server.api_url}")
        _step("rat7m-download from the local Figshare server", [
            "rat7m-download", "--out", dataset, "--api-url", server.api_url,
            "--zip-url", f"{server.base_url}/ndownloader", "--jobs", "4", "--quiet",
        ], quiet)  # fmt: skip
    _step("rat7m-build-annotation: the mini-RAT7M table from the .mat files",
          ["rat7m-build-annotation", "--root", dataset, "--out", table], quiet)  # fmt: skip
    _step("rat7m-build-annotation --check: reprojection, image paths, frames inside the videos",
          ["rat7m-build-annotation", "--check", table, "--root", dataset], quiet)  # fmt: skip
    _step("rat7m-extract: the table's frames as JPEGs",
          ["rat7m-extract", "--root", dataset, "--annotation", table, "--quiet"], quiet)  # fmt: skip

    _step("rat7m-extract --format shards: WebDataset tar shards of both splits, straight from the videos",
          ["rat7m-extract", "--root", dataset, "--annotation", table, "--format", "shards",
           "--samples-per-shard", "32", "--quiet"], quiet)  # fmt: skip
    exports = export_step(dataset, table, out / "exports", quiet)  # issue 15: every training format

    predictions = out / "predictions_test.csv"
    n = write_noisy_predictions(table, predictions, seed=seed)
    print(f"\n== wrote {n} noisy test-split predictions ({PREDICTION_NOISE_MM} mm noise) to {predictions}")
    metrics = out / "metrics"
    _step("rat7m-metrics on the predictions", [
        "rat7m-metrics", "--pred_path", predictions, "--gt_path", table,
        "--save_dir", metrics,
    ], False)  # fmt: skip
    score_2d_step(table, out, seed)

    figures = out / "figures"
    notebook = out / "visualization.ipynb"
    notebook_step(notebook, table, dataset, figures, seed)
    rendered = _render_step(out, dataset, table, predictions, metrics, quiet)
    made = {
        "dataset": dataset,
        "table": table,
        "images": dataset / catalogue.IMAGES_DIR,
        "shards": dataset / "shards",
        "predictions": predictions,
        "metrics": metrics,
        "predictions_2d": out / "predictions_2d_test.csv",
        "metrics_2d": out / "metrics_2d",
        "notebook": notebook,
        "notebook_html": notebook.with_suffix(".html"),
        "figures": figures,
        "exports": exports,
        **rendered,
    }
    print("\n== demo done; everything is under", out)
    for name, path in made.items():
        print(f"   {name:14s} {path}")
    return made


# --------------------------------------------------------------------------------------------------
# rendering (issue 17): the scoring run's report and a labelled video of one camera


def _render_step(out: Path, dataset: Path, table: Path, predictions: Path, metrics: Path,
                 quiet: bool) -> dict[str, Path]:  # fmt: skip
    """Write ``metrics/report.html`` and a labelled video of the first test recording's Camera1."""
    _step("rat7m-render report: one HTML page for the scoring run",
          ["rat7m-render", "report", "--metrics_dir", metrics, "--root", dataset], quiet)  # fmt: skip
    recording = next(r for r in catalogue.RECORDINGS if r.split == "test")
    annotation = load_annotation(table)
    frames = np.asarray(annotation.columns["frame_idx"]["Camera1"])[annotation.recording_rows(recording)]
    video = out / f"labelled_{recording.name}_camera1.mp4"
    _step(f"rat7m-render video: {recording.name} Camera1 with ground truth and prediction", [
        "rat7m-render", "video", "--root", dataset, "--recording", recording.name, "--camera", "1",
        "--start", "0", "--stop", str(min(frames.max() + 1, 120)), "--gt_path", table, "--pred_path", predictions,
        "--fps", "30", "--out", video, *(["--quiet"] if quiet else []),
    ], quiet)  # fmt: skip
    return {"report": metrics / "report.html", "labelled_video": video}


def notebook_step(notebook: Path, table: Path, dataset: Path, figures: Path, seed: int) -> None:
    """Execute ``visualization.ipynb`` into ``notebook`` (and its HTML copy), when this is a checkout."""
    if not NOTEBOOK.is_file():
        print(f"\n== visualization.ipynb skipped: not at {NOTEBOOK} (an installed package does not carry it)")
        return
    from rat7m.demo.notebook import execute_notebook  # nbclient and nbformat: development requirements

    print("\n== executing visualization.ipynb with a Jupyter kernel", flush=True)
    parameters = {"TABLE_PATH": str(table), "DATASET_ROOT": str(dataset), "SEED": seed, "FIGURE_DIR": str(figures)}
    execute_notebook(NOTEBOOK, notebook, parameters, cwd=NOTEBOOK.parent)


def export_step(dataset: Path, table: Path, out: Path, quiet: bool) -> Path:
    """``rat7m-export all``: the table in every training format whose library is installed (issue 15)."""
    _step("rat7m-export all: COCO/MMPose, DeepLabCut, YOLO, SLEAP, anipose, DANNCE", [
        "rat7m-export", "all", "--root", dataset, "--annotation", table, "--out", out,
        "--allow-skew", "--overwrite", "--quiet",
    ], quiet)  # fmt: skip
    return out


def build_parser() -> ArgumentParser:
    """The command line of ``python -m rat7m.demo``."""
    parser = ArgumentParser(prog="python -m rat7m.demo", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("demo_output"), help="output folder (default: %(default)s)")
    parser.add_argument(
        "--profile", default="demo", choices=["test", "demo"], help="synthetic dataset size (default: %(default)s)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed of the synthetic data (default: %(default)s)")
    parser.add_argument("-q", "--quiet", action="store_true", help="hide the scripts' own output unless they fail")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo from the command line."""
    args = build_parser().parse_args(argv)
    started = time.perf_counter()
    run_demo(args.out, profile=args.profile, seed=args.seed, quiet=args.quiet)
    print(f"   total time     {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))
