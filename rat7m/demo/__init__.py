"""The demo and test machinery: a synthetic RAT7M-format dataset, local Figshare and Google Drive servers.

Importable from an installed package (``python -m rat7m.demo`` runs the whole toolkit on synthetic data),
but never imported by the toolkit's runtime modules: tests, benchmarks and the demo use it.

- :mod:`~rat7m.demo.synthetic`: a small dataset in RAT7M's exact on-disk format, with a known truth;
- :mod:`~rat7m.demo.figshare_server`: a Figshare-compatible API and file server on 127.0.0.1;
- :mod:`~rat7m.demo.drive_server`: Google Drive's download endpoints and interstitial pages, on 127.0.0.1;
- :mod:`~rat7m.demo.pipeline`: every command end to end (``make demo``);
- :mod:`~rat7m.demo.notebook`: ``visualization.ipynb`` executed headless.
"""

__all__: list[str] = []  # the API is its modules (synthetic, figshare_server, drive_server, pipeline, notebook)
