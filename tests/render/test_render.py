"""rat7m.render on the synthetic dataset: sample overlays, labelled videos, the HTML report.

Everything runs for real: a table built from the synthetic .mat files, predictions scored by
compute_metrics.py, images decoded from the H.264 chunks, an MP4 encoded and decoded again, and
the report opened by a real headless Chromium (Debian's ``chromium``, driven by Playwright).
"""

import base64
import os
import re
import shutil
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from metric_utils import compute_metrics
from rat7m import catalogue
from rat7m.barcode import read_barcode
from rat7m.cli import run_main
from rat7m.demo.pipeline import write_noisy_predictions
from rat7m.geometry import project
from rat7m.render import report as report_mod
from rat7m.render.__main__ import main as render_main
from rat7m.render.samples import Predictions, camera_params, sample_figure
from rat7m.table import load_annotation, save_annotation
from rat7m.table_build import build_table

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]  # fmt: skip


@pytest.fixture(scope="module")
def scored(synthetic_dataset, tmp_path_factory):
    """A dataset root (videos and .mat linked, no extracted frames), its table, predictions and a scoring run."""
    root = tmp_path_factory.mktemp("render") / "data"
    root.mkdir()
    for sub in (catalogue.VIDEO_DIR, catalogue.ANNOTATION_DIR):
        (root / sub).symlink_to(synthetic_dataset.root / sub, target_is_directory=True)
    table_path = catalogue.mini_annotation_path(root)
    save_annotation(build_table([r.mat_path for r in synthetic_dataset.recordings.values()]), table_path)
    predictions = root.parent / "predictions.csv"
    write_noisy_predictions(table_path, predictions)
    metrics = root.parent / "metrics"
    argv = ["--pred_path", str(predictions), "--gt_path", str(table_path), "--save_dir", str(metrics), "--report", "-q"]
    assert run_main(compute_metrics.main, argv) == 0
    return root, table_path, predictions, metrics


def _pixel(fig, ax, xy):
    """RGB of the rendered figure at data point ``xy`` of ``ax``."""
    fig.canvas.draw()
    buffer = np.asarray(fig.canvas.buffer_rgba())
    x, y = ax.transData.transform(xy)
    return buffer[buffer.shape[0] - 1 - round(float(y)), round(float(x)), :3].astype(int)


def _near(colour, expected, tol=40):
    return int(np.abs(np.asarray(colour) - np.asarray(expected)).max()) <= tol


@pytest.mark.parametrize("kind", ["3d", "2d"])
def test_samples_figure_draws_the_prediction_where_it_is(scored, kind):
    _, table_path, _, _ = scored
    table = load_annotation(table_path)
    columns = table["table"]
    row, joint, camera = 3, 4, "Camera2"
    subject, day = int(columns["subject_idx"][row]), int(columns["day_idx"][row])
    params = camera_params(table, subject, day, camera)
    truth_2d = columns["2D_keypoints"][camera][row] - 1.0  # drawn 0-based: the table is MATLAB's 1-based
    if kind == "3d":  # the prediction moves one joint 15 mm: it must appear where its projection is
        points = columns["3D_keypoints"][[row]].copy()
        points[0, joint] += [15.0, -10.0, 5.0]
        expected = project(points[0, joint], params) - 1.0
        predictions = Predictions(points_3d=points)
    else:  # a 2D prediction (0-based, as detectors write) is drawn exactly as given
        points = {str(c): columns["2D_keypoints"][c][[row]] - 1.0 for c in table["camera_names"]}
        points[camera][0, joint] += [12.0, 7.0]
        expected = points[camera][0, joint]
        predictions = Predictions(points_2d=points)
    assert np.linalg.norm(expected - truth_2d[joint]) > 5  # the two markers do not overlap
    fig = sample_figure(table, row, predictions, 0, images=None)
    ax = fig.axes[[str(c) for c in table["camera_names"]].index(camera)]
    assert _near(_pixel(fig, ax, expected), catalogue.PRED_COLOUR)
    assert _near(_pixel(fig, ax, truth_2d[joint]), catalogue.GT_COLOUR)
    assert not _near(_pixel(fig, ax, truth_2d[joint]), catalogue.PRED_COLOUR)
    title = fig._suptitle.get_text()
    assert re.search(r"MPJPE \d+\.\d mm" if kind == "3d" else r"2D error \d+\.\d px", title), title


def test_samples_mode_writes_worst_figures_as_vector_files(scored, tmp_path):
    _, table_path, predictions, metrics = scored
    argv = ["samples", "--gt_path", str(table_path), "--pred_path", str(predictions), "--metrics_dir", str(metrics),
            "--worst", "1", "--samples", "0", "--format", "svg", "--out", str(tmp_path), "-q"]  # fmt: skip
    assert run_main(render_main, argv) == 0
    written = sorted(tmp_path.glob("*.svg"))
    columns = report_mod.read_per_sample(metrics)
    worst = int(columns["sample"][np.nanargmax(columns["mpjpe"])])  # the worst by the per-sample CSV
    assert written == sorted(tmp_path / f"sample_{i:06d}.svg" for i in {0, worst})
    assert all(p.read_text().lstrip().startswith("<?xml") for p in written)
    assert "<image" in written[0].read_text()  # frames decoded from the chunks are in the figure


def _decoded(path):
    with av.open(str(path)) as container:
        return [frame.to_ndarray(format="bgr24") for frame in container.decode(video=0)]


def test_video_is_frame_exact_across_chunks_and_labelled(scored, synthetic_dataset, tmp_path):
    root, table_path, predictions, _ = scored
    start, stop = 7, 26  # three chunks of 10 frames
    out = tmp_path / "s5-d1.mp4"
    argv = ["video", "--root", str(root), "--recording", "s5-d1", "--camera", "2", "--start", str(start),
            "--stop", str(stop), "--gt_path", str(table_path), "--pred_path", str(predictions), "--out", str(out),
            "-q"]  # fmt: skip
    assert run_main(render_main, argv) == 0
    with av.open(str(out)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
    frames = _decoded(out)
    assert len(frames) == stop - start
    assert [read_barcode(f) for f in frames] == list(range(start, stop))
    # the prediction's crosses are drawn: vermillion pixels appear, which the synthetic frames never have
    bgr = np.array(catalogue.PRED_COLOUR[::-1])
    assert any((np.abs(f.astype(int) - bgr).max(axis=2) < 40).sum() > 10 for f in frames)


def test_video_refuses_an_empty_range(scored, tmp_path, capsys):
    root = scored[0]
    argv = ["video", "--root", str(root), "--recording", "s1-d1", "--camera", "1", "--start", "5", "--stop", "5",
            "--out", str(tmp_path / "x.mp4")]  # fmt: skip
    assert run_main(render_main, argv) == 2
    assert "empty" in capsys.readouterr().err and not (tmp_path / "x.mp4").exists()


def test_report_holds_every_section_and_inline_image(scored):
    _, _, _, metrics = scored
    page = (metrics / report_mod.REPORT_NAME).read_text()
    for section in report_mod.SECTIONS:
        assert f'<section id="{section}">' in page
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(images) == 3 + 4  # per-joint chart, distribution, time, and the 4 worst samples
    for data in images:
        assert cv2.imdecode(np.frombuffer(base64.b64decode(data), np.uint8), cv2.IMREAD_COLOR) is not None
    assert not re.search(r'(src|href)="(?!data:)', page)  # self-contained: nothing fetched from anywhere
    assert "s5-d1" in page and "s5-d2" in page and "HeadF" in page


def test_report_opens_in_a_headless_browser_without_errors(scored):
    if not Path(CHROMIUM).exists():
        if os.environ.get("RAT7M_REQUIRE_BROWSER"):
            pytest.fail(f"RAT7M_REQUIRE_BROWSER is set but {CHROMIUM} is missing")
        pytest.skip(f"no browser: {CHROMIUM} missing (apt-get install chromium)")
    playwright = pytest.importorskip("playwright.sync_api")
    page_path = scored[3] / report_mod.REPORT_NAME
    problems = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.on("console", lambda m: problems.append(m.text) if m.type in ("error", "warning") else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
            page.goto(page_path.as_uri())
            sizes = page.eval_on_selector_all("img", "imgs => imgs.map(i => [i.complete, i.naturalWidth])")
            sections = page.eval_on_selector_all("section", "s => s.map(e => e.id)")
        finally:
            browser.close()
    assert problems == []
    assert sections == list(report_mod.SECTIONS)
    assert len(sizes) == 7 and all(done and width > 100 for done, width in sizes)


def test_report_of_a_folder_without_results_is_a_one_line_error(tmp_path, capsys):
    assert run_main(render_main, ["report", "--metrics_dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "summary.json" in err and "Traceback" not in err
    shutil.rmtree(tmp_path)
