"""The test suite (a regular package, so that `tests.*` imports never resolve to a `tests` package
that a dependency installs into site-packages, as sleap-io's wheels do)."""
