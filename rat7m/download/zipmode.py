"""``--via-zip``: whole-article zips, for when the Figshare API cannot be reached.

Figshare serves every article as one zip (``{zip_url}/articles/{id}/versions/{v}``), which is
what the original scripts downloaded. Without the API there is no listing, so no per-file MD5:
each zip is downloaded with the same resumable transfer as single files (``zips/NAME.zip.part``,
Range resume, atomic rename), its size checked against what the server announced, and then
unpacked by :func:`rat7m.download.safezip.safe_extract`, which refuses members that escape the target,
links and zip bombs and checks every member's CRC. Unpacking goes to ``zips/NAME/`` first;
members whose names the catalogue recognises (and that the selection wants) are then moved into
``video_sequences/`` and ``annotations/``, the rest is dropped, and the zip is deleted to give
its disk space back. The files placed are recorded (size and mtime, no MD5), so a rerun skips the
zip; a later run in API mode will hash them against the listing's MD5s.

Disk: a zip needs its own size plus room to unpack it (about the same again, as video does not
compress), so the preflight counts twice the size of each zip still to fetch.
"""

from __future__ import annotations

import logging
import os
import shutil
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rat7m import catalogue as cat
from rat7m.download.http import (
    HttpClient,
    PermanentError,
    RetryPolicy,
    UnreachableError,
    call_with_retries,
    check_status,
)
from rat7m.download.listing import RemoteFile, articles_for, target_path
from rat7m.download.plan import Action, Step, decide, local_state
from rat7m.download.record import VerificationRecord
from rat7m.download.safezip import CorruptArchiveError, safe_extract
from rat7m.download.transfer import (
    DOWNLOADED,
    FAILED,
    SKIPPED,
    Interrupt,
    Outcome,
    TransferContext,
    carry_out,
    size_from_response,
)
from rat7m.errors import Rat7mError

__all__ = [
    "MAX_RATIO",
    "ZIP_DIR",
    "ZipJob",
    "plan_zips",
    "probe_size",
    "run_zip_job",
]

log = logging.getLogger(__name__)

#: Folder (under the output folder) holding the zips while they download and unpack.
ZIP_DIR = "zips"
#: Largest uncompressed/compressed ratio accepted in a zip (Figshare stores video uncompressed).
MAX_RATIO = 100.0


@dataclass(frozen=True)
class ZipJob:
    """One article's zip: where it comes from, where it goes, what it holds and what to do."""

    article: cat.Article
    kind: str
    label: str
    step: Step | None  # None: unpacked by an earlier run, nothing to do

    @property
    def path(self) -> str:
        """The zip's path relative to the output folder."""
        return f"{ZIP_DIR}/{self.label}.zip"

    @property
    def needed(self) -> int:
        """Disk bytes this zip still needs: the rest of the zip, plus its size again to unpack it."""
        if self.step is None or self.step.file.size is None:
            return 0
        return self.step.remaining + self.step.file.size


def _label(article: cat.Article, kind: str) -> str:
    if kind == "annotations":
        return "annotations"
    rec = next(r for r in cat.RECORDINGS if r.video_article == article)
    return f"{rec.name}-videos"


def probe_size(client: HttpClient, url: str, policy: RetryPolicy) -> int | None:
    """The size of the file at ``url`` without downloading it: ``None`` if the server will not say.

    Raises:
        UnreachableError: the host does not resolve or refuses connections (after two quick tries).
        PermanentError: the server refused, or kept failing.
    """

    def ask() -> int | None:
        response, final_url = client.open(url, {"Range": "bytes=0-0", "Accept-Encoding": "identity"})
        try:
            if response.status in (200, 206):
                return size_from_response(response)
            check_status(response, final_url)
            return None
        finally:
            response.close()  # never read the body of a whole-article zip just to learn its size
            response.release_conn()

    return call_with_retries(ask, policy, f"asking the size of {url}", fail_fast=True)


def _selected(rel: str, kind: str, article: cat.Article, wanted: set[str], cameras: Sequence[str]) -> bool:
    """Whether the selection wants the dataset file at ``rel`` (a path :func:`target_path` gave)."""
    owner = next((r for r in cat.RECORDINGS if r.video_article == article), None)
    target = target_path(Path(rel).name, kind, owner)
    return target is not None and target[1].name in wanted and (target[2] is None or target[2] in cameras)


def _already_unpacked(
    job: ZipJob, root: Path, record: VerificationRecord, wanted: set[str], cameras: Sequence[str]
) -> bool:
    """Was this zip unpacked before, with every file the selection wants still in place unchanged?"""
    contents = record.extracted_files(job.path)
    if contents is None:
        return False
    for rel in contents:
        if not _selected(rel, job.kind, job.article, wanted, cameras):
            continue
        known = record.verified(rel)
        state = local_state(root / rel)
        if known is None or (state.final_size, state.final_mtime_ns) != (known.size, known.mtime_ns):
            return False
    return True


def plan_zips(
    client: HttpClient,
    zip_url: str,
    recordings: Sequence[cat.Recording],
    what: str,
    cameras: Sequence[str],
    root: Path,
    record: VerificationRecord,
    policy: RetryPolicy,
) -> tuple[list[ZipJob], list[str]]:
    """Decide, per article zip, whether to skip it, resume it or fetch it (asking each zip's size).

    Returns:
        The jobs, and errors for zips whose size could not even be asked for (when the server
        cannot be reached at all, one error and the remaining zips are not asked for).
    """
    jobs: list[ZipJob] = []
    errors: list[str] = []
    for article, kind in articles_for(recordings, what):
        label = _label(article, kind)
        job = ZipJob(article, kind, label, None)
        if _already_unpacked(job, root, record, {r.name for r in recordings}, cameras):
            jobs.append(job)
            continue
        url = f"{zip_url.rstrip('/')}/articles/{article.id}/versions/{article.version}"
        try:
            size = probe_size(client, url, policy)
        except UnreachableError as exc:
            errors.append(
                f"the zip server at {zip_url} is unreachable ({exc}): check the network connection "
                "and the proxy settings (HTTPS_PROXY, HTTP_PROXY, NO_PROXY)"
            )
            break
        except PermanentError as exc:
            errors.append(f"{job.path}: {exc}")
            continue
        if size is None:
            log.warning("%s: the server does not say how big the zip is; it cannot be counted in the disk check", url)
        recording = label.removesuffix("-videos")
        remote = RemoteFile(job.path, url, size, None, article, -1, recording, kind)
        step = decide(remote, local_state(root / job.path), record.verified(job.path), record.partial(job.path))
        if step.action is Action.SKIP:  # downloaded but not unpacked: check the size again, then unpack
            step = Step(remote, Action.VERIFY, 0, "downloaded, not unpacked yet")
        jobs.append(ZipJob(article, kind, label, step))
    return jobs, errors


def run_zip_job(
    job: ZipJob,
    context: TransferContext,
    recordings: Sequence[cat.Recording],
    cameras: Sequence[str],
    stop: Interrupt | None = None,
) -> Outcome:
    """Download one zip (resumably), unpack it safely and move the wanted files into place.

    Returns:
        The zip's outcome, counting (and sizing) the dataset files placed, or found in place when
        it was unpacked by an earlier run; a failed zip counts as one file.
    """
    root, record, progress = context.root, context.record, context.progress
    wanted = {r.name for r in recordings}
    if job.step is None:
        extracted = record.extracted_files(job.path) or []
        selected = [rel for rel in extracted if _selected(rel, job.kind, job.article, wanted, cameras)]
        size = sum(known.size for known in map(record.verified, selected) if known is not None)
        return Outcome(job.path, SKIPPED, size, files=len(selected))
    fetched = carry_out(job.step, context, stop)
    if fetched.status == FAILED:
        return fetched
    zip_file = root / job.path
    staging = root / ZIP_DIR / job.label
    try:
        members = safe_extract(zip_file, staging, max_ratio=MAX_RATIO, progress=progress.enabled and progress.tty)
    except (Rat7mError, OSError) as exc:
        # a damaged download (no MD5 could catch it: its size was right): the next run fetches it
        # again, rather than trusting the same bad zip forever
        if isinstance(exc, CorruptArchiveError) or not zipfile.is_zipfile(zip_file):
            zip_file.unlink(missing_ok=True)
            record.forget(job.path)
        if not isinstance(exc, CorruptArchiveError):  # a refusal will be the same next time: leave nothing
            shutil.rmtree(staging, ignore_errors=True)
        message = str(exc) if isinstance(exc, Rat7mError) else f"cannot unpack into {staging}: {exc.strerror or exc}"
        log.error("%s: %s", job.path, message)
        return Outcome(job.path, FAILED, fetched.size, fetched.transferred, message)
    owner = next((r for r in cat.RECORDINGS if r.video_article == job.article), None)
    targets: dict[str, Path] = {}
    for member in members:
        target = target_path(member.name, job.kind, owner)
        if target is None:
            log.warning("%s: ignoring %s (not a %s file of this article)", job.path, member.name, job.kind)
            continue
        if target[0] in targets:  # e.g. sub1/mocap-s1-d1.mat and sub2/mocap-s1-d1.mat: which one is right?
            first, second = (p.relative_to(staging).as_posix() for p in (targets[target[0]], member))
            message = f"{job.path}: holds two files for {target[0]} ({first} and {second}); refusing the zip"
            shutil.rmtree(staging, ignore_errors=True)
            log.error("%s", message)
            return Outcome(job.path, FAILED, fetched.size, fetched.transferred, message)
        targets[target[0]] = member
    contents: list[str] = []
    placed = placed_bytes = 0
    for rel, member in targets.items():
        contents.append(rel)
        if not _selected(rel, job.kind, job.article, wanted, cameras):
            continue
        final = root / rel
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(member, final)
        record.mark_verified(rel, final, None)
        placed += 1
        placed_bytes += final.stat().st_size
    record.mark_extracted(job.path, contents)
    shutil.rmtree(staging, ignore_errors=True)
    zip_file.unlink(missing_ok=True)
    record.forget(job.path)
    log.info("%s: placed %d of its %d files; deleted the zip", job.path, placed, len(contents))
    return Outcome(job.path, DOWNLOADED, placed_bytes, fetched.transferred, files=placed)
