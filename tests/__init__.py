"""The test suite (a regular package, so that `tests.*` imports never resolve to a `tests` package
that a dependency installs into site-packages, as sleap-io's wheels do).

Its folders mirror the package: a test of ``rat7m/download/...`` goes in ``tests/download/``, of
``rat7m/export/...`` in ``tests/export/``, and so on (``cli``, ``demo``, ``render``, ``toolpreds``);
the top-level modules are grouped by concern: ``table/`` (matfile, table, table_build, model,
safe_pickle), ``geometry/`` (geometry, pixels), ``extract/`` (extract, video, barcode, SLURM),
``evaluation/`` (metrics, metrics2d, predictions, triangulate, evaluate), ``training/`` (crops,
shards, the datasets). Tests of the package as a whole and of the small shared modules (catalogue,
extras, fileio, untrusted) stay here. Shared code is in ``tests.helpers``, data in ``tests/fixtures/``,
session fixtures in ``conftest.py``.
"""
