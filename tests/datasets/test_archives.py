"""extract_archive on archives the tests build: normal ones unpack, hostile or damaged ones are refused."""

from __future__ import annotations

import io
import random
import re
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from mtl.datasets.archives import extract_archive
from mtl.errors import DownloadError

FILES = {"census/census-income.data": b"39, Private, 1\n" * 50, "census/census-income.test": b"x" * 10}


def make_tar(path: Path, members: list[tarfile.TarInfo | tuple[str, bytes]], mode: str = "w:gz") -> Path:
    with tarfile.open(path, mode) as tar:
        for member in members:
            if isinstance(member, tarfile.TarInfo):
                tar.addfile(member)
            else:
                info = tarfile.TarInfo(member[0])
                info.size = len(member[1])
                tar.addfile(info, io.BytesIO(member[1]))
    return path


def make_zip(path: Path, members: list[zipfile.ZipInfo | tuple[str, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for member in members:
            if isinstance(member, zipfile.ZipInfo):
                zf.writestr(member, b"/etc/passwd")
            else:
                zf.writestr(member[0], member[1])
    return path


def special(name: str, kind: bytes, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    return info


def files_under(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("mode", ["w:gz", "w:bz2", "w:xz", "w"])
def test_tar_archives_unpack(tmp_path: Path, mode: str) -> None:
    archive = make_tar(tmp_path / "census.tar", [special("census", tarfile.DIRTYPE), *FILES.items()], mode)
    names = extract_archive(archive, tmp_path / "raw")
    assert sorted(names) == sorted(FILES)
    assert files_under(tmp_path / "raw") == FILES


def test_zip_unpacks(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "data.zip", [("metaheac/", b""), *FILES.items()])
    assert sorted(extract_archive(archive, tmp_path / "raw")) == sorted(FILES)
    assert files_under(tmp_path / "raw") == FILES


@pytest.mark.parametrize(
    ("member", "reason"),
    [
        ("../evil.txt", "escapes"),
        ("ok/../../evil.txt", "escapes"),
        ("/tmp/evil.txt", "escapes"),
        ("C:/evil.txt", "drive"),
        ("..\\evil.txt", "escapes"),
        (".", "not inside"),
    ],
)
@pytest.mark.parametrize("kind", ["tar", "zip"])
def test_escaping_member_names_are_refused(tmp_path: Path, member: str, reason: str, kind: str) -> None:
    if kind == "tar":
        archive = make_tar(tmp_path / "a.tar.gz", [("fine.txt", b"ok"), (member, b"pwned")])
    else:
        archive = make_zip(tmp_path / "a.zip", [("fine.txt", b"ok"), (member, b"pwned")])
    dest = tmp_path / "deep" / "raw"
    pattern = re.escape(f"refusing member {member!r}") + f".*{reason}"
    with pytest.raises(DownloadError, match=pattern):
        extract_archive(archive, dest)
    assert not list(tmp_path.rglob("evil.txt"))
    assert not (tmp_path / "deep" / ".").joinpath("..", "evil.txt").exists()


@pytest.mark.parametrize(
    "member",
    [
        special("link", tarfile.SYMTYPE, "/etc/passwd"),
        special("link", tarfile.SYMTYPE, "inside.txt"),  # even a harmless-looking one: a later member
        special("link", tarfile.LNKTYPE, "/etc/passwd"),  # could write through it
        special("link", tarfile.LNKTYPE, "inside.txt"),
    ],
    ids=["symlink-out", "symlink-in", "hardlink-out", "hardlink-in"],
)
def test_link_members_are_refused(tmp_path: Path, member: tarfile.TarInfo) -> None:
    archive = make_tar(tmp_path / "a.tar.gz", [("inside.txt", b"ok"), member])
    with pytest.raises(DownloadError, match=r"refusing link member 'link'"):
        extract_archive(archive, tmp_path / "raw")
    assert not (tmp_path / "raw" / "link").exists()
    assert not (tmp_path / "raw" / "link").is_symlink()


@pytest.mark.parametrize("kind", [tarfile.CHRTYPE, tarfile.BLKTYPE, tarfile.FIFOTYPE])
def test_device_and_fifo_members_are_refused(tmp_path: Path, kind: bytes) -> None:
    archive = make_tar(tmp_path / "a.tar.gz", [special("dev", kind)])
    with pytest.raises(DownloadError, match=r"refusing member 'dev' \(device, FIFO"):
        extract_archive(archive, tmp_path / "raw")


def test_zip_symlink_member_is_refused(tmp_path: Path) -> None:
    link = zipfile.ZipInfo("link")
    link.create_system = 3  # Unix, so the mode bits below are meaningful
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    archive = make_zip(tmp_path / "a.zip", [link])
    with pytest.raises(DownloadError, match=r"refusing member 'link' \(a link"):
        extract_archive(archive, tmp_path / "raw")
    assert not (tmp_path / "raw" / "link").exists()


def test_symlink_already_in_the_target_is_not_followed(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "raw").mkdir()
    (tmp_path / "raw" / "sub").symlink_to(outside)
    archive = make_tar(tmp_path / "a.tar.gz", [("sub/evil.txt", b"pwned")])
    with pytest.raises(DownloadError, match=r"'sub/evil\.txt' \(not inside"):
        extract_archive(archive, tmp_path / "raw")
    assert list(outside.iterdir()) == []


def test_truncated_tar_gz_is_refused_and_leaves_no_half_file(tmp_path: Path) -> None:
    data = random.Random(0).randbytes(300_000)  # incompressible: the cut lands inside this member
    archive = make_tar(tmp_path / "a.tar.gz", [("small.txt", b"ok"), ("big.bin", data)])
    archive.write_bytes(archive.read_bytes()[:200_000])
    with pytest.raises(DownloadError, match=r"a\.tar\.gz is corrupt or truncated"):
        extract_archive(archive, tmp_path / "raw")
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == ["small.txt"]


def test_plain_tar_cut_at_a_member_boundary_is_refused(tmp_path: Path) -> None:
    archive = make_tar(tmp_path / "a.tar", [("one.txt", b"1" * 512), ("two.txt", b"2" * 512)], "w")
    archive.write_bytes(archive.read_bytes()[:1024])  # header + data of one.txt, then nothing
    with pytest.raises(DownloadError, match=r"a\.tar is corrupt or truncated.*no valid header at byte 1024"):
        extract_archive(archive, tmp_path / "raw")


def test_truncated_zip_is_refused(tmp_path: Path) -> None:
    archive = make_zip(tmp_path / "a.zip", list(FILES.items()))
    archive.write_bytes(archive.read_bytes()[:-30])  # the central directory is at the end
    with pytest.raises(DownloadError, match=r"a\.zip is neither a zip nor a tar archive"):
        extract_archive(archive, tmp_path / "raw")


def test_corrupt_zip_member_is_refused(tmp_path: Path) -> None:
    data = random.Random(1).randbytes(5000)
    archive = make_zip(tmp_path / "a.zip", [("big.bin", data)])
    raw = bytearray(archive.read_bytes())
    start = raw.index(b"big.bin") + len("big.bin")
    raw[start + 100 : start + 200] = bytes(100)  # damage the compressed data, keep the directory
    archive.write_bytes(bytes(raw))
    with pytest.raises(DownloadError, match=r"a\.zip is corrupt or truncated at member 'big\.bin'"):
        extract_archive(archive, tmp_path / "raw")
    assert not (tmp_path / "raw" / "big.bin").exists()


def test_not_an_archive(tmp_path: Path) -> None:
    (tmp_path / "a.tar.gz").write_bytes(b"<html>Please log in</html>")
    with pytest.raises(DownloadError, match=r"a\.tar\.gz is neither a zip nor a tar archive"):
        extract_archive(tmp_path / "a.tar.gz", tmp_path / "raw")
