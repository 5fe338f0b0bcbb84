"""rat7m: the utility layer behind the RAT7M toolkit's scripts.

One module per concern: ``catalogue`` (dataset facts and path conventions), ``errors``,
``cli`` (what every script shares), and the modules for MATLAB files, camera geometry,
the annotation table, video, download, metrics and the synthetic dataset.
"""

__version__ = "0.1.0"
