"""Download RAT7M from Figshare: listing, planning, resumable verified transfer, safe unzip.

The pieces, one role each (as pooch splits downloaders, hashes and processors):

- :mod:`~rat7m.download.http`: the shared connection pool, proxies, the retry policy;
- :mod:`~rat7m.download.listing`: what the Figshare API says there is (names checked);
- :mod:`~rat7m.download.record`: which files were verified already;
- :mod:`~rat7m.download.plan`: per file, skip / verify / resume / restart / fetch (pure);
- :mod:`~rat7m.download.transfer`: one file to ``NAME.part``, Range resume, MD5, atomic rename;
- :mod:`~rat7m.download.zipmode`: ``--via-zip``, whole-article zips unpacked safely;
- :mod:`~rat7m.download.progress`: bars on a terminal, log lines elsewhere;
- :mod:`~rat7m.download.run`: one run from listing to report (``download_all.py`` calls it).
"""

from rat7m.download.run import Options, Report, download_dataset, format_plan, format_summary

__all__ = ["Options", "Report", "download_dataset", "format_plan", "format_summary"]
