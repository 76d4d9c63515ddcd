"""Fetching source files over HTTP(S), from file:// URLs and local paths: verified, atomic, resumable."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import sys
import time
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO
from urllib.parse import quote, urlsplit, urlunsplit
from urllib.request import url2pathname

import requests
from tqdm import tqdm
from urllib3.exceptions import HTTPError as TransportError

from mtl.datasets.archives import extract_archive
from mtl.datasets.base import RemoteFile, Source
from mtl.datasets.hashing import file_sha256
from mtl.errors import DownloadError

# extract_archive is re-exported for mtl.pipeline
__all__ = ["check_location", "extract_archive", "fetch_source"]

log = logging.getLogger(__name__)

_BLOCK = 1 << 20
_MAX_DELAY_SECONDS = 60.0


class _Retryable(Exception):
    """A failure another attempt may cure: network errors, timeouts, 5xx/408/429, a truncated body."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class _Absent(Exception):
    """The origin says the file does not exist (HTTP 404/410, or no such local file)."""


def fetch_source(
    source: Source,
    location: str | None,
    dest_dir: Path,
    *,
    retries: int,
    backoff_seconds: float,
    timeout_seconds: float,
    known: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Fetch every file of ``source`` into ``dest_dir`` (verified, atomic, resumable); describe each one.

    ``location`` (``--from``) is a base (http(s)/file URL or folder) the file names are joined to, or the
    file itself for a one-file source (a local file, or a URL whose last segment has an extension; end a
    URL with '/' to make it a base). ``known`` is the previous manifest's file list: a file it vouches for
    (same origin, same sha256 on disk) is not fetched again, nor is one matching a published sha256.
    """
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    previous = {entry["name"]: entry for entry in known or []}
    described = []
    with requests.Session() as session:
        session.headers.update({"User-Agent": "mtl-download", "Accept-Encoding": "identity"})
        origins = [_origin(source, remote, location) for remote in source.files]  # fail before fetching
        for remote, origin in zip(source.files, origins):
            target = dest_dir / remote.name
            digest = _verified_digest(target, remote, origin, previous.get(remote.name))
            if digest:
                log.info("%s already present and verified; not fetched again", target)
            else:
                try:
                    if _is_http(origin):
                        digest = _download(
                            session, origin, remote, target, retries, backoff_seconds, timeout_seconds
                        )
                    else:
                        digest = _copy(_local_path(origin), origin, remote, target)
                except _Absent as exc:
                    if remote.required:
                        raise DownloadError(f"{exc}; source {source.name!r} needs {_names(source)}") from None
                    log.info("optional %s skipped: %s", remote.name, exc)
                    continue
                log.info("fetched %s from %s", target, origin)
            described.append(
                {"name": remote.name, "sha256": digest, "size": target.stat().st_size, "origin": origin}
            )
    return described


def check_location(source: Source, location: str | None) -> list[str]:
    """Where every file of ``source`` comes from; a DownloadError (before anything is fetched or
    written) when ``location`` is missing for a source without a public URL or names no such path."""
    return [_origin(source, remote, location) for remote in source.files]


def _origin(source: Source, remote: RemoteFile, location: str | None) -> str:
    """Where ``remote`` comes from: its default URL, or ``location`` as a base or as the file itself."""
    if location is None:
        if remote.url is None:
            raise DownloadError(
                f"source {source.name!r} ({source.description}) has no public download URL: fetch its files "
                f"by hand and pass --from URL_OR_PATH, a folder or URL holding {_names(source)}"
            )
        return remote.url
    single = len(source.files) == 1
    if _is_http(location):
        parts = urlsplit(location)
        if single and not parts.path.endswith("/") and PurePosixPath(parts.path).suffix:
            return location
        return urlunsplit(parts._replace(path=parts.path.rstrip("/") + "/" + quote(remote.name)))
    base = _local_path(location)
    if base.is_dir():
        path = base / remote.name
    elif base.is_file() and single:
        path = base
    elif base.is_file():
        raise DownloadError(
            f"--from {location} is one file; source {source.name!r} needs a folder holding {_names(source)}"
        )
    else:
        raise DownloadError(f"--from {location}: no such file or folder")
    path = path.resolve()
    return path.as_uri() if location.startswith("file:") else str(path)


def _names(source: Source) -> str:
    return ", ".join(remote.name for remote in source.files)


def _is_http(location: str) -> bool:
    return urlsplit(location).scheme.lower() in ("http", "https")


def _local_path(location: str) -> Path:
    parts = urlsplit(location)
    if parts.scheme.lower() == "file":
        if parts.netloc not in ("", "localhost"):
            raise DownloadError(f"{location}: file:// URLs must name a local path (no host {parts.netloc!r})")
        return Path(url2pathname(parts.path))
    if "://" in location:
        raise DownloadError(f"{location}: unsupported scheme; use http(s)://, file:// or a local path")
    return Path(location).expanduser()


def _verified_digest(
    target: Path, remote: RemoteFile, origin: str, entry: dict[str, Any] | None
) -> str | None:
    """The sha256 of a file already in place if it is known good (published checksum or our manifest)."""
    if not target.is_file():
        return None
    size = target.stat().st_size
    vouched = entry is not None and entry.get("origin") == origin and entry.get("size") == size
    if (remote.size is not None and size != remote.size) or not (remote.sha256 or vouched):
        return None
    if not _is_http(origin):  # a local origin can be checked for free: re-copy if it changed size
        source = _local_path(origin)
        if source.is_file() and source.stat().st_size != size:
            return None
    digest = file_sha256(target)
    expected = remote.sha256 or (entry or {}).get("sha256", "")
    return digest if digest == expected.lower() else None


class _PartFile:
    """``.NAME.part`` beside the target, hashed as it grows, with a note of the origin's version so a
    later run resumes it only from the same, unchanged origin."""

    def __init__(self, target: Path, origin: str, validator: str | None):
        self.path = target.with_name(f".{target.name}.part")
        self.note = target.with_name(f".{target.name}.part.json")
        self.origin, self.validator = origin, validator
        self.hasher, self.size = hashlib.sha256(), 0
        try:
            note = json.loads(self.note.read_text())
        except (OSError, ValueError):
            note = {}
        resumable = note.get("origin") == origin and self.path.is_file()
        if resumable and (validator is None or note.get("validator") == validator):
            self.validator = note.get("validator")
            with open(self.path, "rb") as handle:
                while block := handle.read(_BLOCK):
                    self.write_hash(block)
        self.handle: BinaryIO = open(self.path, "ab")  # noqa: SIM115 (closed by finish/discard or the caller)
        if not self.size:
            self.restart(validator)

    def write_hash(self, block: bytes) -> None:
        self.hasher.update(block)
        self.size += len(block)

    def write(self, block: bytes) -> None:
        self.handle.write(block)
        self.write_hash(block)

    def restart(self, validator: str | None) -> None:
        self.handle.seek(0)
        self.handle.truncate()
        self.hasher, self.size, self.validator = hashlib.sha256(), 0, validator
        self.note.write_text(json.dumps({"origin": self.origin, "validator": validator}))

    def finish(self, remote: RemoteFile, target: Path) -> str:
        """Verify size and sha256 where published, then move into place; a bad file is deleted."""
        self.handle.close()
        digest = self.hasher.hexdigest()
        problem = None
        if remote.size is not None and self.size != remote.size:
            problem = f"expected {remote.size} bytes, got {self.size}"
        elif remote.sha256 and digest != remote.sha256.lower():
            problem = f"expected sha256 {remote.sha256.lower()}, got {digest}"
        if problem:
            self.discard()
            raise DownloadError(
                f"{remote.name} from {self.origin} failed verification: {problem}; deleted it"
            )
        os.replace(self.path, target)
        self.note.unlink(missing_ok=True)
        return digest

    def discard(self) -> None:
        self.handle.close()
        self.path.unlink(missing_ok=True)
        self.note.unlink(missing_ok=True)


def _progress(name: str) -> tqdm:
    quiet = os.environ.get("TQDM_DISABLE", "").lower() not in ("", "0", "false") or not sys.stderr.isatty()
    return tqdm(desc=name, unit="B", unit_scale=True, unit_divisor=1024, disable=quiet, leave=False)


def _copy(path: Path, origin: str, remote: RemoteFile, target: Path) -> str:
    """Copy a local file into place (resuming an interrupted copy of the same, unchanged file)."""
    if not path.is_file():
        raise _Absent(f"{path}: no such file")
    stat = path.stat()
    part = _PartFile(target, origin, f"{stat.st_size}:{stat.st_mtime_ns}")
    with part.handle, open(path, "rb") as source, _progress(remote.name) as bar:
        bar.reset(total=stat.st_size)
        bar.update(part.size)
        source.seek(part.size)
        while block := source.read(_BLOCK):
            part.write(block)
            bar.update(len(block))
    return part.finish(remote, target)


def _download(
    session: requests.Session,
    url: str,
    remote: RemoteFile,
    target: Path,
    retries: int,
    backoff_seconds: float,
    timeout_seconds: float,
) -> str:
    """GET ``url`` into place with retries and exponential backoff, resuming with Range after a failure."""
    part = _PartFile(target, url, None)
    failures, best = 0, part.size
    with part.handle, _progress(remote.name) as bar:
        while True:
            try:
                _attempt(session, url, part, timeout_seconds, bar)
                break
            except _Retryable as exc:
                if part.size > best:  # progress was made: a flaky link should not exhaust the budget
                    best, failures = part.size, 0
                failures += 1
                if failures > retries:
                    raise DownloadError(
                        f"{url}: giving up after {failures} failed attempts ({exc}); {part.size} bytes are "
                        f"kept in {part.path} and the next run resumes from there"
                    ) from None
                delay = min(backoff_seconds * 2.0 ** min(failures - 1, 32), _MAX_DELAY_SECONDS)
                delay = min(max(delay, exc.retry_after or 0.0), _MAX_DELAY_SECONDS)
                delay += random.uniform(0.0, 0.1 * delay)
                log.warning("%s: %s; retry %d of %d in %.1fs", url, exc, failures, retries, delay)
                time.sleep(delay)
            except (DownloadError, _Absent):
                part.discard()
                raise
    return part.finish(remote, target)


def _attempt(session: requests.Session, url: str, part: _PartFile, timeout: float, bar: tqdm) -> None:
    """One GET: append to the part file from where it stands; raise _Retryable if it may be retried."""
    headers = {}
    if part.size:
        headers["Range"] = f"bytes={part.size}-"
        if part.validator:
            headers["If-Range"] = part.validator
    try:
        with session.get(url, headers=headers, stream=True, timeout=timeout) as response:
            total = _accept(response, url, part)
            if total == part.size:
                return
            bar.reset(total=total)
            bar.update(part.size)
            # read1, not iter_content: a dropped connection then loses none of the bytes received
            while block := response.raw.read1(_BLOCK, decode_content=True):
                part.write(block)
                bar.update(len(block))
    except requests.exceptions.SSLError as exc:
        raise DownloadError(f"{url}: TLS failure: {exc}") from None
    except (requests.ConnectionError, requests.Timeout, TransportError) as exc:
        raise _Retryable(f"{type(exc).__name__}: {exc}") from None
    except requests.RequestException as exc:
        raise DownloadError(f"{url}: {exc}") from None
    if total is not None and part.size != total:
        raise _Retryable(f"body ended at byte {part.size} of {total}")


def _accept(response: requests.Response, url: str, part: _PartFile) -> int | None:
    """Check the status, line the part file up with the response body; return the full size if told."""
    status = response.status_code
    if status in (404, 410):
        raise _Absent(f"{url}: not found (HTTP {status})")
    if status in (408, 429) or status >= 500:
        after = response.headers.get("Retry-After", "")
        raise _Retryable(f"HTTP {status} {response.reason}", float(after) if after.isdigit() else None)
    if status == 416 and part.size:
        total, offset = _range_total(response.headers.get("Content-Range", "")), part.size
        if total != offset:  # the part is not simply complete: start over
            part.restart(None)
            raise _Retryable(f"server refused to resume at byte {offset} (HTTP 416)")
        return total
    if status not in (200, 206):
        raise DownloadError(f"{url}: HTTP {status} {response.reason} (not a status worth retrying)")
    validator = response.headers.get("ETag", "")
    validator = validator if validator and not validator.startswith("W/") else None
    validator = validator or response.headers.get("Last-Modified")
    if status == 206:
        start = response.headers.get("Content-Range", "").removeprefix("bytes ").split("-")[0]
        if start != str(part.size):
            part.restart(validator)
            raise _Retryable(f"server resumed at byte {start or '?'} instead of {part.size}")
        return _range_total(response.headers["Content-Range"])
    if part.size:
        log.info("%s ignored the resume request (HTTP 200); restarting from byte 0", url)
    if part.size or validator != part.validator:
        part.restart(validator)
    length = response.headers.get("Content-Length", "")
    encoded = response.headers.get("Content-Encoding", "identity") != "identity"
    return int(length) if length.isdigit() and not encoded else None


def _range_total(content_range: str) -> int | None:
    total = content_range.rpartition("/")[2]
    return int(total) if total.isdigit() else None
