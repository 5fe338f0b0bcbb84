"""Run a command while a folder is really read-only (not a mock): a read-only bind mount, or no write bit.

As root, permission bits do not stop writes, so the command runs in its own mount namespace
(``unshare -m``) where the folder is bind-mounted onto itself read-only: writes fail with EROFS
exactly as on read-only cluster storage. As another user, the folder tree loses its write bits
for the duration of the command (restored by :func:`restore_writable`).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Sequence
from pathlib import Path


def read_only_command(folder: Path, command: Sequence[str | os.PathLike]) -> list[str]:
    """``command`` wrapped so that ``folder`` is read-only while it runs."""
    command = [str(c) for c in command]
    if os.geteuid() == 0:
        mount = 'mount --bind -o ro "$0" "$0" && exec "$@"'
        return ["unshare", "-m", "sh", "-c", mount, str(folder), *command]
    for path in [folder, *folder.rglob("*")]:
        if path.is_dir():
            path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    return command


def restore_writable(folder: Path) -> None:
    """Give the folder tree its write bits back (after :func:`read_only_command` as a non-root user)."""
    for path in [folder, *folder.rglob("*")]:
        if path.is_dir():
            path.chmod(path.stat().st_mode | stat.S_IWUSR)
