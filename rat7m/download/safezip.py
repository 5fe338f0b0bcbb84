"""Unpack a zip archive safely: nothing outside the target, no symlinks, no zip bombs, resumable.

``zipfile.ZipFile.extractall`` trusts the archive more than we want to: it quietly rewrites
hostile names instead of refusing them, will happily expand a few kB into terabytes, and starts
writing before it has looked at the whole archive. An archive downloaded from the internet
(Figshare's whole-article zips, or anything a user hands us) gets this instead:

1. Every member is checked before anything is written: no absolute path, drive letter or ``..``
   component, no symlink or device entry, no encryption, no duplicate (or case-only duplicate)
   name, no member that is both a file and a folder, and no member (nor the archive as a whole)
   whose declared size is more than ``max_ratio`` times its compressed size. Targets are resolved
   on disk too, so a symlink already inside ``dest`` cannot carry a member elsewhere.
2. Each file is streamed to ``<name>.part`` next to its target, counting bytes: a member that
   yields more or fewer bytes than its header declares, or fails its CRC, is refused and its
   ``.part`` removed. Only a complete member is renamed to its final name.
3. A member already present with its declared size is skipped, so a rerun after a crash or a
   kill continues where it stopped.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import stat
import time
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from tqdm import tqdm

from rat7m.errors import BadInputError, Rat7mError

__all__ = ["CHUNK_SIZE", "NAME_MAX_BYTES", "RATIO_FLOOR_BYTES", "TEMP_SUFFIX", "CorruptArchiveError", "safe_extract"]

log = logging.getLogger(__name__)

#: Members and archives smaller than this are never taken for bombs, whatever their ratio:
#: a few kB of zeros legitimately compress a thousand to one.
RATIO_FLOOR_BYTES = 1 << 20

#: Bytes decompressed per read.
CHUNK_SIZE = 1 << 20

#: Suffix of the temporary name a member is written under before its rename.
TEMP_SUFFIX = ".part"

#: Longest path component (bytes, UTF-8) most file systems take (ext4, XFS, tmpfs, NTFS in UTF-16
#: units); a member's name must fit with :data:`TEMP_SUFFIX` added.
NAME_MAX_BYTES = 255

class CorruptArchiveError(BadInputError):
    """The archive's bytes are damaged (unreadable, a bad CRC, a member shorter or longer than declared).

    Unlike an unsafe member, this is what a damaged download looks like: fetching the archive
    again may cure it.
    """


_SUPPORTED_METHODS = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA}
_DRIVE_RE = re.compile(r"^[A-Za-z]:")


@dataclass(frozen=True)
class _Member:
    """A checked archive member: its entry and its path components under the target."""

    info: zipfile.ZipInfo
    parts: tuple[str, ...]
    is_dir: bool


def safe_extract(
    zip_path: Path,
    dest: Path,
    *,
    max_ratio: float = 100.0,
    max_total_bytes: int | None = None,
    progress: bool = False,
) -> list[Path]:
    """Extract ``zip_path`` into ``dest`` after checking every member; skip members already there.

    Args:
        zip_path: The archive.
        dest: The folder to extract into (created if needed, only once the archive passed its checks).
        max_ratio: Largest uncompressed/compressed size ratio allowed for a member (and for the
            whole archive against its file size); members under ``RATIO_FLOOR_BYTES`` are exempt.
        max_total_bytes: Largest total uncompressed size allowed, or None for no such limit.
        progress: Show a tqdm bar of the bytes written.

    Returns:
        The paths (under ``dest``) of every file member, in archive order, whether written now or
        found already complete.

    Raises:
        CorruptArchiveError: The archive is unreadable, or a member's bytes are damaged (bad CRC,
            shorter or longer than its header says); members extracted before it are kept.
        BadInputError: A member is unsafe (the message names the archive and the member).
            Nothing is written when a member fails the checks.
        Rat7mError: The files to write do not fit on the disk.
    """
    zip_path, dest = Path(zip_path), Path(dest)
    try:
        archive = zipfile.ZipFile(zip_path)
    except (zipfile.BadZipFile, OSError) as exc:
        msg = f"{zip_path}: not a readable zip archive ({exc}); if it was downloaded, delete it and download it again"
        raise CorruptArchiveError(msg) from exc
    with archive:
        members = _check_members(archive, zip_path, max_ratio, max_total_bytes)
        root = dest.resolve()
        placed = [(member, _target(root, dest, member, zip_path)) for member in members]
        files = [(m, t) for m, t in placed if not m.is_dir]
        todo = [(m, t) for m, t in files if not _is_complete(t, m.info)]
        _check_free_space(dest, sum(m.info.file_size for m, _ in todo))
        # Every check passed: from here on we write.
        dest.mkdir(parents=True, exist_ok=True)
        for member, target in placed:
            if member.is_dir:
                target.mkdir(parents=True, exist_ok=True)
        skipped = len(files) - len(todo)
        if skipped:
            log.info("%s: %d member(s) already extracted, skipped", zip_path.name, skipped)
        with tqdm(
            total=sum(m.info.file_size for m, _ in todo), unit="B", unit_scale=True, unit_divisor=1024,
            desc=zip_path.name, disable=not progress, leave=False,
        ) as bar:
            for member, target in todo:
                _extract_member(archive, member, target, zip_path, bar)
    return [target for _, target in files]


def _check_members(
    archive: zipfile.ZipFile, zip_path: Path, max_ratio: float, max_total_bytes: int | None
) -> list[_Member]:
    """Check every entry's name, type and declared sizes; return them as members, or refuse."""
    members: list[_Member] = []
    files: dict[str, str] = {}  # casefolded path -> name as in the archive
    folders: set[str] = set()
    total = 0
    for info in archive.infolist():
        name = info.filename
        mode = info.external_attr >> 16
        is_dir = info.is_dir() or stat.S_ISDIR(mode)
        parts = _name_parts(name, zip_path)
        if stat.S_ISLNK(mode):
            _refuse(zip_path, name, "is a symbolic link; links could point anywhere, so they are not extracted")
        if stat.S_IFMT(mode) not in (0, stat.S_IFREG, stat.S_IFDIR):
            _refuse(zip_path, name, "is a special file (device, pipe or socket), not a file or folder")
        if info.flag_bits & 0x1:
            _refuse(zip_path, name, "is encrypted; this tool does not take passwords")
        if info.compress_type not in _SUPPORTED_METHODS:
            _refuse(zip_path, name, f"uses compression method {info.compress_type}, which Python cannot read; "
                                    "unpack the archive with 7-Zip instead")
        if not parts:
            if not is_dir:
                _refuse(zip_path, name, "has an empty file name")
            continue  # an entry for the target folder itself
        key = "/".join(parts).casefold()
        folders.update("/".join(parts[:i]).casefold() for i in range(1, len(parts)))
        if is_dir:
            folders.add(key)
        else:
            if key in files:
                _refuse(zip_path, name, f"appears twice (also as {files[key]!r}); names differing only in case "
                                        "count as the same on many disks")
            files[key] = name
            _check_ratio(zip_path, name, info.file_size, info.compress_size, max_ratio)
            total += info.file_size
        members.append(_Member(info, parts, is_dir))
    for key, name in files.items():
        if key in folders:
            _refuse(zip_path, name, "is both a file and a folder in this archive")
        if key + TEMP_SUFFIX in files:
            _refuse(zip_path, files[key + TEMP_SUFFIX], f"clashes with the temporary name used to extract {name!r}")
    archive_size = zip_path.stat().st_size
    if total > RATIO_FLOOR_BYTES and total > max_ratio * archive_size:
        msg = (f"{zip_path}: its members add up to {total} bytes from a {archive_size}-byte archive "
               f"(ratio over {max_ratio:g}): refusing a likely zip bomb")
        raise BadInputError(msg)
    if max_total_bytes is not None and total > max_total_bytes:
        msg = f"{zip_path}: its members add up to {total} bytes, over the limit of {max_total_bytes} bytes"
        raise BadInputError(msg)
    return members


def _name_parts(name: str, zip_path: Path) -> tuple[str, ...]:
    """A member name as path components, refusing any that would leave the target folder."""
    slashed = name.replace("\\", "/")  # archives made on Windows sometimes use backslashes
    if slashed.startswith("/"):
        _refuse(zip_path, name, "has an absolute path")
    if _DRIVE_RE.match(slashed):
        _refuse(zip_path, name, "starts with a drive letter")
    parts = tuple(p for p in slashed.split("/") if p not in ("", "."))
    if ".." in parts:
        _refuse(zip_path, name, "climbs out of the target folder with '..'")
    if "\0" in name:
        _refuse(zip_path, name, "holds a NUL character")
    for part in parts:
        size = len(part.encode("utf-8", "surrogateescape")) + len(TEMP_SUFFIX)
        if size > NAME_MAX_BYTES:
            _refuse(zip_path, name[:80] + "...", f"has a path component of {size - len(TEMP_SUFFIX)} bytes; file "
                                                  f"systems take at most {NAME_MAX_BYTES - len(TEMP_SUFFIX)} here")
    return parts


def _check_ratio(zip_path: Path, name: str, size: int, compressed: int, max_ratio: float) -> None:
    """Refuse a member whose declared size is beyond ``max_ratio`` times its compressed size."""
    if size > RATIO_FLOOR_BYTES and size > max_ratio * compressed:
        ratio = size / max(compressed, 1)
        _refuse(zip_path, name, f"would expand {compressed} bytes into {size} (ratio {ratio:.0f}, "
                                f"limit {max_ratio:g}): refusing a likely zip bomb")


def _target(root: Path, dest: Path, member: _Member, zip_path: Path) -> Path:
    """Where a member goes (under ``dest``), refusing places that existing symlinks or files make unsafe."""
    target = dest.joinpath(*member.parts)
    resolved = root.joinpath(*member.parts).resolve()
    if not resolved.is_relative_to(root):
        _refuse(zip_path, member.info.filename, f"would land in {resolved} through a symbolic link inside {dest}")
    for folder in list(target.parents)[: len(member.parts) - 1]:
        if folder.exists() and not folder.is_dir():
            _refuse(zip_path, member.info.filename, f"needs the folder {folder}, but a file is in the way")
    if not member.is_dir and target.is_dir():
        _refuse(zip_path, member.info.filename, f"is a file, but {target} is a folder")
    return target


def _is_complete(target: Path, info: zipfile.ZipInfo) -> bool:
    """A member counts as done when its final name holds a file of the declared size (files are
    renamed into place only once complete and CRC-checked, so a partial one never has that name)."""
    return target.is_file() and target.stat().st_size == info.file_size


def _check_free_space(dest: Path, needed: int) -> None:
    """Refuse before writing when the members still to extract do not fit on the disk."""
    probe = dest
    while not probe.exists():
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if needed > free:
        msg = (f"extracting into {dest} needs {_megabytes(needed)} but only {_megabytes(free)} are free; "
               "free some space or extract elsewhere")
        raise Rat7mError(msg)


def _megabytes(size: int) -> str:
    return f"{size / 1e6:,.2f} MB"


def _extract_member(archive: zipfile.ZipFile, member: _Member, target: Path, zip_path: Path, bar: tqdm) -> None:
    """Stream one member to ``<target>.part``, counting bytes against its header, then rename it into place."""
    info = member.info
    temp = target.with_name(target.name + TEMP_SUFFIX)
    target.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    # A fresh file, never one already at the temporary name: a symlink left there would carry the
    # bytes wherever it points ("x" refuses to open an existing name, links included).
    temp.unlink(missing_ok=True)
    try:
        with archive.open(info) as src, open(temp, "xb") as out:
            while chunk := src.read(CHUNK_SIZE):
                written += len(chunk)
                if written > info.file_size:
                    _refuse(zip_path, info.filename, f"holds more than the {info.file_size} bytes its header "
                                                     "declares: a zip bomb or a corrupt archive", corrupt=True)
                out.write(chunk)
                bar.update(len(chunk))
        if written != info.file_size:
            _refuse(zip_path, info.filename, f"ends after {written} bytes but its header declares "
                                             f"{info.file_size}: the archive is corrupt or truncated", corrupt=True)
    except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
        temp.unlink(missing_ok=True)
        msg = f"{zip_path}: member {info.filename!r} is corrupt ({exc}); download the archive again"
        raise CorruptArchiveError(msg) from exc
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    try:
        stamp = time.mktime((*info.date_time, 0, 0, -1))
        os.utime(temp, (stamp, stamp))
    except (ValueError, OverflowError):
        pass  # a nonsense date in the archive: keep the extraction time
    os.replace(temp, target)
    log.debug("extracted %s (%d bytes)", target, written)


def _refuse(zip_path: Path, name: str, why: str, *, corrupt: bool = False) -> NoReturn:
    msg = f"{zip_path}: member {name!r} {why}"
    raise (CorruptArchiveError if corrupt else BadInputError)(msg)
