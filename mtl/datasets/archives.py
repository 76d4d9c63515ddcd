"""Unpacking downloaded archives (.tar, .tar.gz/.bz2/.xz, .zip) without letting any member escape."""

from __future__ import annotations

import lzma
import os
import tarfile
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from mtl.errors import DownloadError

_BLOCK = 1 << 20
# What reading a damaged archive raises (gzip/bz2 report bad data as OSError, xz as LZMAError).
_CORRUPT = (tarfile.TarError, zipfile.BadZipFile, EOFError, zlib.error, lzma.LZMAError, OSError)


class _StrictTarInfo(tarfile.TarInfo):
    """Header reader that treats data ending without the end-of-archive zero block (or a garbage
    header) as damage; tarfile alone would stop quietly there and extract a truncated archive."""

    @classmethod
    def fromtarfile(cls, tar: tarfile.TarFile) -> tarfile.TarInfo:
        try:
            return super().fromtarfile(tar)
        except (tarfile.EmptyHeaderError, tarfile.TruncatedHeaderError, tarfile.InvalidHeaderError) as exc:
            raise tarfile.ReadError(f"no valid header at byte {tar.offset} ({exc})") from None


def extract_archive(archive: Path, dest: Path) -> list[str]:
    """Unpack a .tar(.gz|.bz2|.xz) or .zip into ``dest``; return the extracted file names (relative).

    Refuses members with absolute paths, drive prefixes or '..', any symbolic or hard link (one could
    point outside ``dest`` or be written through by a later member), device files and FIFOs. Members are
    streamed in blocks to a temporary name and renamed, so no half-written file keeps its real name.
    """
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    if zipfile.is_zipfile(archive):
        extracted = _extract_zip(archive, dest)
    else:
        try:
            tar = tarfile.open(archive, tarinfo=_StrictTarInfo)  # noqa: SIM115 (closed in _extract_tar)
        except _CORRUPT as exc:
            raise DownloadError(
                f"{archive} is neither a zip nor a tar archive, or is damaged: {exc}"
            ) from None
        extracted = _extract_tar(tar, archive, dest)
    return [target.relative_to(dest.resolve()).as_posix() for target in extracted]


def _extract_tar(tar: tarfile.TarFile, archive: Path, dest: Path) -> list[Path]:
    extracted = []
    with tar:
        try:
            for member in tar:
                target = _member_path(dest, member.name, archive, member.isdir())
                if member.issym() or member.islnk():
                    raise DownloadError(
                        f"{archive}: refusing link member {member.name!r} -> {member.linkname!r}"
                    )
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                elif not member.isfile():
                    raise DownloadError(
                        f"{archive}: refusing member {member.name!r} (device, FIFO or special file)"
                    )
                else:
                    with tar.extractfile(member) as src:  # type: ignore[union-attr] (files have data)
                        _write_member(src, target, archive, member.name)
                    extracted.append(target)
        except _CORRUPT as exc:
            raise DownloadError(f"{archive} is corrupt or truncated: {exc}") from None
    return extracted


def _extract_zip(archive: Path, dest: Path) -> list[Path]:
    extracted = []
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            target = _member_path(dest, info.filename, archive, info.is_dir())
            kind = (info.external_attr >> 16) & 0o170000  # Unix file type bits; 0 from non-Unix zips
            if kind not in (0, 0o100000, 0o040000):
                raise DownloadError(f"{archive}: refusing member {info.filename!r} (a link or special file)")
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            try:
                src = zf.open(info)
            except (NotImplementedError, RuntimeError, *_CORRUPT) as exc:  # encrypted, unknown method
                raise DownloadError(f"{archive}: cannot read member {info.filename!r}: {exc}") from None
            with src:
                _write_member(src, target, archive, info.filename)
            extracted.append(target)
    return extracted


def _member_path(dest: Path, name: str, archive: Path, is_dir: bool) -> Path:
    """Where an archive member may land: strictly inside ``dest`` (``dest`` itself only as a folder)."""
    posix = PurePosixPath(name.replace("\\", "/"))
    if posix.is_absolute() or ".." in posix.parts or (posix.parts and ":" in posix.parts[0]):
        raise DownloadError(
            f"{archive}: refusing member {name!r} (absolute, drive or '..' path escapes {dest})"
        )
    root = dest.resolve()
    target = root.joinpath(*posix.parts).resolve()  # resolved: a symlink already in dest must not lead out
    if not target.is_relative_to(root) or (target == root and not is_dir):
        raise DownloadError(
            f"{archive}: refusing member {name!r} (not inside {dest} once links are resolved)"
        )
    return target


def _write_member(src: BinaryIO, target: Path, archive: Path, name: str) -> None:
    """Stream one member to a temporary name, then rename; a failing read means a damaged archive."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.part-{os.getpid()}")
    try:
        with open(tmp, "wb") as out:
            while True:
                try:
                    block = src.read(_BLOCK)
                except _CORRUPT as exc:
                    raise DownloadError(
                        f"{archive} is corrupt or truncated at member {name!r}: {exc}"
                    ) from None
                if not block:
                    break
                out.write(block)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
