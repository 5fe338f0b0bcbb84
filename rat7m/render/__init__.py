"""Seeing results: prediction overlays, labelled videos, and a one-page report of a scoring run.

``python -m rat7m.render`` (console command ``rat7m-render``) has three modes, one module each:

- :mod:`rat7m.render.samples`: a figure per sample, six views, ground truth and prediction overlaid;
- :mod:`rat7m.render.video`: a labelled MP4 of one recording and camera, straight from the chunks;
- :mod:`rat7m.render.report`: one self-contained HTML page for a ``compute_metrics.py --save_dir``.

Colours come from the catalogue's colour-blind-safe palette; drawing helpers from :mod:`rat7m.plotting`.
"""

__all__: list[str] = []  # the API is its modules (samples, video, report)
