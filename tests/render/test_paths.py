"""render samples and video keep the command-line contract (issue 20): the OpenCV writer works, ranges
and counts are checked before any work, ``--out`` never lands on an input, both flag spellings,
``$RAT7M_ROOT``, one-line errors with exit 2, killed runs' leftovers removed, and the labelled video
shows the prediction at any size in the colours of the figures."""

from __future__ import annotations

import copy
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rat7m import catalogue
from rat7m.barcode import read_barcode
from rat7m.cli import run_main
from rat7m.demo.pipeline import write_noisy_predictions
from rat7m.render.__main__ import main as render_main
from rat7m.render.samples import Predictions, sample_figure
from rat7m.render.video import mark_sizes
from rat7m.table import load_annotation, save_annotation
from rat7m.table_build import build_table
from tests.helpers.read_only import read_only_command, restore_writable
from tests.helpers.shared import decode_all, limit_address_space

REPO = Path(__file__).resolve().parents[2]
RENDER = [sys.executable, "-m", "rat7m.render"]


@pytest.fixture(scope="module")
def data(synthetic_dataset, tmp_path_factory):
    """A copy of the dataset root of our own (a bad render must not touch the shared one), a table, predictions."""
    root = tmp_path_factory.mktemp("render_paths") / "data"
    for sub in (catalogue.VIDEO_DIR, catalogue.ANNOTATION_DIR):
        shutil.copytree(synthetic_dataset.root / sub, root / sub)
    table_path = catalogue.mini_annotation_path(root)
    save_annotation(build_table([r.mat_path for r in synthetic_dataset.recordings.values()]), table_path)
    predictions = root.parent / "predictions.csv"
    write_noisy_predictions(table_path, predictions)
    return root, table_path, predictions


def render(*argv):
    return run_main(render_main, [str(a) for a in argv])


def errors(text):
    return [line for line in text.splitlines() if line and not line.startswith("dataset root: ")]


def video(root, out, *extra, start=3, stop=27):
    return ("video", "--root", root, "--recording", "s5-d1", "--camera", "2", "--start", start, "--stop", stop,
            "--out", out, "-q", *extra)  # fmt: skip


# ------------------------------------------------------------------------------------------ OpenCV writer


def test_the_opencv_writer_writes_every_frame(data, tmp_path):
    root, _, _ = data
    out = tmp_path / "cv.mp4"
    assert render(*video(root, out, "--codec", "opencv")) == 0
    frames = decode_all(out)
    assert [read_barcode(f) for f in frames] == list(range(3, 27))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cv.mp4"]  # no temporary file left


def test_without_pyav_render_falls_back_to_opencv(data, tmp_path):
    root, table_path, predictions = data
    out = tmp_path / "plain.mp4"
    blocked = "import sys, runpy; sys.modules['av'] = None; runpy.run_module('rat7m.render', run_name='__main__')"
    argv = [str(a) for a in video(root, out, "--gt-path", table_path, "--pred-path", predictions)]
    done = subprocess.run([sys.executable, "-c", blocked, *argv], capture_output=True, text=True, timeout=300,
                          cwd=REPO)  # fmt: skip
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert [read_barcode(f) for f in decode_all(out)] == list(range(3, 27))


# ------------------------------------------------------------------------------------------ checked first


def test_a_stop_past_the_chunks_is_refused_before_decoding(data, tmp_path):
    root, _, _ = data
    argv = [str(a) for a in video(root, tmp_path / "x.mp4", stop=50_000_000)]
    done = subprocess.run([*RENDER, *argv], capture_output=True, text=True, timeout=300, cwd=REPO,
                          preexec_fn=limit_address_space(1536))  # fmt: skip
    err = errors(done.stderr)
    assert done.returncode == 2 and len(err) == 1, done.stderr
    assert "s5-d1 Camera2 ends after frame 33" in err[0] and "--stop <= 34" in err[0]
    assert not (tmp_path / "x.mp4").exists()


@pytest.mark.parametrize(
    ("argv", "why"),
    [
        (["--worst", "-174"], "--worst"),
        (["--random", "-3"], "--random"),
        (["--samples", "-1"], "--samples"),
        (["--samples", "0,99999"], "sample 99999 is outside"),
    ],
)
def test_sample_counts_and_indices_are_checked(data, tmp_path, capsys, argv, why):
    root, table_path, predictions = data
    code = render("samples", "--root", root, "--gt-path", table_path, "--pred-path", predictions,
                  "--out", tmp_path / "f", *argv)  # fmt: skip
    err = errors(capsys.readouterr().err)
    assert code == 2 and len(err) == 1 and why in err[0], err
    assert not (tmp_path / "f").exists() or not list((tmp_path / "f").iterdir())


@pytest.mark.parametrize("fps", ["-30", "0"])
def test_a_frame_rate_below_one_is_refused(data, tmp_path, capsys, fps):
    code = render(*video(data[0], tmp_path / "x.mp4", "--fps", fps))
    err = errors(capsys.readouterr().err)
    assert code == 2 and len(err) == 1 and "--fps" in err[0] and not (tmp_path / "x.mp4").exists()


def test_a_broken_chunk_is_exit_2_and_one_line(data, tmp_path, capsys):
    root = tmp_path / "data"
    shutil.copytree(data[0] / catalogue.ANNOTATION_DIR, root / catalogue.ANNOTATION_DIR)
    (root / catalogue.VIDEO_DIR).mkdir()
    for chunk in (data[0] / catalogue.VIDEO_DIR).glob("s5-d1-camera2-*.mp4"):
        shutil.copy(chunk, root / catalogue.VIDEO_DIR)
    broken = root / catalogue.VIDEO_DIR / "s5-d1-camera2-10.mp4"
    broken.write_bytes(broken.read_bytes()[: broken.stat().st_size // 3])
    code = render(*video(root, tmp_path / "x.mp4"))
    err = errors(capsys.readouterr().err)
    assert code == 2 and len(err) == 1 and "s5-d1-camera2-10.mp4" in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


# ------------------------------------------------------------------------------------------ --out


def test_out_onto_a_chunk_is_refused_and_the_chunk_kept(data, tmp_path, capsys):
    root = data[0]
    chunk = root / catalogue.VIDEO_DIR / "s5-d1-camera1-0.mp4"
    before = hashlib.sha256(chunk.read_bytes()).hexdigest()
    assert render(*video(root, chunk)) == 2
    err = errors(capsys.readouterr().err)
    assert len(err) == 1 and f"inside the dataset's {catalogue.VIDEO_DIR}/" in err[0], err
    assert hashlib.sha256(chunk.read_bytes()).hexdigest() == before


def test_out_onto_the_table_or_predictions_is_refused(data, tmp_path, capsys):
    root, table_path, predictions = data
    copy_of = tmp_path / "preds.mp4"  # a prediction file that happens to be named .mp4 is still an input
    shutil.copy(predictions, tmp_path / "p.csv")
    os.symlink(tmp_path / "p.csv", copy_of)
    assert render(*video(root, copy_of, "--pred-path", tmp_path / "p.csv", "--gt-path", table_path)) == 2
    assert "would overwrite the input" in errors(capsys.readouterr().err)[0]
    assert (tmp_path / "p.csv").read_bytes() == predictions.read_bytes()
    code = render("samples", "--root", root, "--gt-path", table_path, "--pred-path", predictions, "--samples", "0",
                  "--out", root)  # fmt: skip
    assert code == 2 and "would overwrite the input" in errors(capsys.readouterr().err)[0]


def test_out_a_folder_a_file_or_read_only_is_one_line(data, tmp_path, capsys):
    root, table_path, predictions = data
    assert render(*video(root, tmp_path)) == 2
    assert "is a folder" in errors(capsys.readouterr().err)[0]
    (tmp_path / "afile").write_text("x")
    code = render("samples", "--root", root, "--gt-path", table_path, "--pred-path", predictions, "--samples", "0",
                  "--out", tmp_path / "afile")  # fmt: skip
    assert code == 2 and "is a file, not a folder" in errors(capsys.readouterr().err)[0]
    locked = tmp_path / "locked"
    locked.mkdir()
    for argv in (video(root, locked / "x.mp4"),
                 ("samples", "--root", root, "--gt-path", table_path, "--pred-path", predictions, "--samples", "0",
                  "--out", locked / "figures", "-q")):  # fmt: skip
        try:
            done = subprocess.run(read_only_command(locked, [*RENDER, *argv]), capture_output=True, text=True,
                                  timeout=300, cwd=REPO)  # fmt: skip
        finally:
            restore_writable(locked)
        err = errors(done.stderr)
        assert done.returncode == 2 and len(err) == 1 and "cannot write" in err[0], done.stderr
        assert "Traceback" not in done.stderr and list(locked.iterdir()) == []


def test_a_killed_runs_temporary_videos_are_removed(data, tmp_path):
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)  # fmt: skip
    left = [tmp_path / f".out.mp4.{dead}.140234.tmp", tmp_path / f".out.mp4.{dead}.140234.tmp.mp4"]
    live = tmp_path / f".out.mp4.{os.getppid()}.1.tmp.mp4"
    other = tmp_path / f".notes.mp4.{dead}.1.tmp"  # not ours to remove: another output's
    for path in (*left, live, other):
        path.write_bytes(b"partial")
    assert render(*video(data[0], tmp_path / "out.mp4")) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["out.mp4", live.name, other.name])


# ------------------------------------------------------------------------------------------ the contract


def test_rat7m_root_is_honoured_and_said_once(data, tmp_path, monkeypatch, capsys):
    root, _, predictions = data
    monkeypatch.setenv("RAT7M_ROOT", str(root))
    monkeypatch.chdir(tmp_path)
    assert render("video", "--recording", "s5-d1", "--camera", "2", "--stop", "5", "--out", "v.mp4",
                  "--pred-path", predictions) == 0  # fmt: skip
    assert render("samples", "--pred-path", predictions, "--samples", "1", "--out", "figs") == 0
    err = capsys.readouterr().err
    assert err.count(f"dataset root: {root} (from $RAT7M_ROOT)") == 2
    assert len(decode_all(tmp_path / "v.mp4")) == 5 and (tmp_path / "figs" / "sample_000001.png").is_file()


def test_both_spellings_defaults_in_help_and_the_right_suggestion(data, tmp_path, capsys):
    root, table_path, predictions = data
    for gt, pred in (("--gt_path", "--pred_path"), ("--gt-path", "--pred-path")):
        assert render("samples", "--root", root, gt, table_path, pred, predictions, "--samples", "0",
                      "--out", tmp_path / gt, "-q") == 0  # fmt: skip
    capsys.readouterr()
    assert render("samples", "--gt-pth", table_path, "--pred-path", predictions, "--out", tmp_path) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("rat7m-render samples: error: ") and err.endswith("did you mean --gt-path? (see --help)")
    for mode in ("samples", "video", "report"):
        done = subprocess.run([*RENDER, mode, "--help"], capture_output=True, text=True, timeout=60, cwd=REPO)
        assert done.returncode == 0 and "Exit codes: 0 written, 2 " in done.stdout and "130" in done.stdout
        assert "(default: " in done.stdout
    assert "(default: test)" in subprocess.run([*RENDER, "samples", "--help"], capture_output=True, text=True,
                                               cwd=REPO).stdout  # fmt: skip


def test_a_steered_image_path_is_refused_in_samples(data, tmp_path, capsys):
    root, table_path, predictions = data
    table = copy.deepcopy(load_annotation(table_path))
    paths = np.array(table["table"]["image_path"]["Camera4"], dtype=object)
    from rat7m.model import Table

    row = int(Table.of(table).split_rows("test")[2])
    paths[row] = "../../../../etc/passwd.jpg"
    table["table"]["image_path"]["Camera4"] = paths
    save_annotation(table, tmp_path / "t.pkl")
    code = render("samples", "--root", root, "--gt-path", tmp_path / "t.pkl", "--pred-path", predictions,
                  "--samples", "2", "--out", tmp_path / "f")  # fmt: skip
    err = errors(capsys.readouterr().err)
    assert code == 2 and len(err) == 1 and f"image_path['Camera4'][{row}]" in err[0], err


def test_text_from_the_table_is_drawn_as_plain_text(data):
    table = copy.deepcopy(load_annotation(data[1]))
    odd = r"$\foo$"
    columns = table["table"]
    for key in ("2D_keypoints", "frame_idx", "image_path"):
        columns[key][odd] = columns[key].pop("Camera2")
    for days in table["cameras"].values():
        for cameras in days.values():
            cameras[odd] = cameras.pop("Camera2")
    table["camera_names"] = [odd if str(c) == "Camera2" else c for c in table["camera_names"]]
    row = 0
    fig = sample_figure(table, row, Predictions(points_3d=columns["3D_keypoints"][[row]]), 0)
    fig.canvas.draw()  # mathtext would raise ParseFatalException here
    assert any(ax.get_title().startswith(odd) for ax in fig.axes)


# ------------------------------------------------------------------------------------------ what it looks like


def _near(image, colour_rgb, tol=45):
    return np.abs(image.astype(int) - np.array(colour_rgb[::-1])).max(axis=-1) <= tol


def test_the_prediction_is_visible_and_colours_match_the_figures(data, tmp_path):
    root, table_path, _ = data
    table = load_annotation(table_path)
    from rat7m.geometry import project
    from rat7m.model import Table
    from rat7m.render.samples import camera_params

    rows = Table.of(table).split_rows("test")
    truth_3d = table["table"]["3D_keypoints"][rows]
    shifted = truth_3d + np.array([25.0, 0.0, 0.0])  # apart from the ground truth; lost markers at the centre
    shifted = np.where(np.isnan(shifted), np.nanmean(shifted, axis=1, keepdims=True), shifted)
    np.save(tmp_path / "pred.npy", shifted)
    out = tmp_path / "labelled.mp4"
    assert render(*video(root, out, "--gt-path", table_path, "--pred-path", tmp_path / "pred.npy"), ) == 0
    frames = decode_all(out)
    height, width = 152, 192
    columns = table["table"]
    mine = [r for r in rows if catalogue.recording_for(int(columns["subject_idx"][r]), int(columns["day_idx"][r]))
            .name == "s5-d1"]  # fmt: skip
    params = camera_params(table, 5, 1, "Camera2")
    seen_pred = seen_truth = total = 0
    radius = mark_sizes(height, width)[0]
    for r in mine:
        frame = int(columns["frame_idx"]["Camera2"][r])
        if not 3 <= frame < 27:
            continue
        image = frames[frame - 3][:height]
        index = list(rows).index(r)
        for truth, pred in zip(columns["2D_keypoints"]["Camera2"][r], project(shifted[index], params), strict=True):
            if not (np.isfinite(truth).all() and 12 < pred[0] < width - 12 and 30 < pred[1] < height - 12):
                continue
            total += 1
            x, y = (round(float(v)) for v in pred)
            seen_pred += _near(image[y - 2 : y + 3, x - 2 : x + 3], catalogue.PRED_COLOUR).any()
            x, y = (round(float(v)) for v in truth)
            around = image[y - radius : y + radius + 1, x - radius : x + radius + 1]
            seen_truth += _near(around, catalogue.GT_COLOUR).any()
    assert total > 20
    assert seen_pred >= 0.95 * total and seen_truth >= 0.6 * total, (seen_pred, seen_truth, total)
    assert frames[0].shape == (frames[0].shape[0], width, 3) and frames[0].shape[0] > height  # a strip below
    strip = frames[0][height:]
    assert _near(strip, catalogue.GT_COLOUR).sum() > 4 and _near(strip, catalogue.PRED_COLOUR).sum() > 4


def test_notebook_style_plots_use_the_ground_truth_colour(data):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from rat7m.plotting import draw_pose_2d

    table = load_annotation(data[1])
    keypoints = table["table"]["2D_keypoints"]["Camera1"][0]
    fig = Figure(figsize=(4, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    draw_pose_2d(ax, None, keypoints, title=r"$\foo$ from a table")
    fig.canvas.draw()
    buffer = np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(int)
    joint = int(np.flatnonzero(np.isfinite(keypoints).all(axis=1))[0])
    x, y = ax.transData.transform(keypoints[joint])
    pixel = buffer[buffer.shape[0] - 1 - round(float(y)), round(float(x))]
    assert np.abs(pixel - np.array(catalogue.GT_COLOUR)).max() <= 40, pixel


@pytest.mark.parametrize("codec", ["pyav", "opencv"])
def test_a_full_disk_is_one_line_and_leaves_nothing(data, tmp_path, codec):
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    small = tmp_path / "small"
    small.mkdir()
    script = 'mount -t tmpfs -o size=8k tmpfs "$0" && "$@"; code=$?; ls -A "$0" > "$0.ls"; exit $code'
    argv = [str(a) for a in video(data[0], small / "v.mp4", "--codec", codec)]
    done = subprocess.run(["unshare", "-m", "sh", "-c", script, str(small), *RENDER, *argv], capture_output=True,
                          text=True, timeout=300, cwd=REPO)  # fmt: skip
    err = errors(done.stderr)
    assert done.returncode == 2 and len(err) == 1 and "Traceback" not in done.stderr, done.stderr
    assert (tmp_path / "small.ls").read_text() == ""  # no video, complete or not, and no temporary file


def test_a_killed_runs_temporary_figures_are_removed(data, tmp_path):
    root, table_path, predictions = data
    dead = int(subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout)  # fmt: skip
    out = tmp_path / "figs"
    out.mkdir()
    left = out / f".sample_000001.png.{dead}.77.tmp"
    mine = out / f".notes.png.{dead}.77.tmp"  # not a figure this run draws: left alone
    for path in (left, mine):
        path.write_bytes(b"partial")
    assert render("samples", "--root", root, "--gt-path", table_path, "--pred-path", predictions, "--samples", "1",
                  "--out", out, "-q") == 0  # fmt: skip
    assert sorted(p.name for p in out.iterdir()) == sorted(["sample_000001.png", mine.name])


@pytest.mark.parametrize("value", [1e200, -np.inf])
def test_a_2d_npy_with_a_non_finite_or_absurd_value_is_one_line(data, tmp_path, capsys, value):
    """Was a figure drawn with overflow warnings (1e200), exit 0. (NaN is a joint not predicted: not drawn.)"""
    root, table_path, _ = data
    table = load_annotation(table_path)
    n = int((np.asarray(table["table"]["train_test"]) == "test").sum())
    points = np.full((n, len(table["camera_names"]), 20, 2), 100.0)
    points[0, 1, 2, 1] = value
    np.save(tmp_path / "p.npy", points)
    code = render("samples", "--root", root, "--gt-path", table_path, "--pred-path", tmp_path / "p.npy",
                  "--samples", "0", "--out", tmp_path / "f")  # fmt: skip
    err = errors(capsys.readouterr().err)
    assert code == 2 and len(err) == 1 and "sample 0, camera 2, joint 2: " in err[0], err
    assert not (tmp_path / "f").exists() or list((tmp_path / "f").iterdir()) == []


def test_a_2d_npy_declaring_a_huge_shape_is_refused_before_reading(data, tmp_path, capsys):
    root, table_path, _ = data
    fake = tmp_path / "huge.npy"
    header = {"descr": "<f8", "fortran_order": False, "shape": (10**12, 6, 20, 2)}
    with open(fake, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        f.write(b"\0" * 64)
    code = render("samples", "--root", root, "--gt-path", table_path, "--pred-path", fake, "--samples", "0",
                  "--out", tmp_path / "f")  # fmt: skip
    err = errors(capsys.readouterr().err)
    assert code == 2 and len(err) == 1 and "declares a float64 array of shape (1000000000000, 6, 20, 2)" in err[0], err


def test_a_2d_npy_of_the_right_shape_is_drawn(data, tmp_path):
    root, table_path, _ = data
    table = load_annotation(table_path)
    from rat7m.model import Table

    rows = Table.of(table).split_rows("test")
    points = np.stack([table["table"]["2D_keypoints"][str(c)][rows] for c in table["camera_names"]], axis=1)
    np.save(tmp_path / "p2d.npy", np.nan_to_num(points, nan=5.0))
    assert render("samples", "--root", root, "--gt-path", table_path, "--pred-path", tmp_path / "p2d.npy",
                  "--samples", "0", "--out", tmp_path / "f", "-q") == 0  # fmt: skip
    assert (tmp_path / "f" / "sample_000000.png").is_file()


def test_a_video_killed_midway_leaves_no_final_name_and_a_rerun_cleans_up(data, tmp_path):
    import signal
    import time

    root = data[0]
    out = tmp_path / "v.mp4"
    argv = [str(a) for a in ("video", "--root", root, "--recording", "s1-d1", "--camera", "3", "--start", "0",
                             "--stop", "125", "--out", out, "-q")]  # fmt: skip
    process = subprocess.Popen([*RENDER, *argv], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob(".v.mp4.*.tmp.mp4")) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait(timeout=60)
    if process.returncode != -signal.SIGKILL:
        pytest.skip("the render finished before it could be killed")
    assert not out.exists() and len(list(tmp_path.glob(".v.mp4.*.tmp.mp4"))) == 1
    assert render(*argv) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]
    assert [read_barcode(f) for f in decode_all(out)] == list(range(125))
