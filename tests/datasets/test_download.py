"""fetch_source against a scripted HTTP server on 127.0.0.1 and local origins; never the internet."""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mtl.datasets import download
from mtl.datasets.base import RemoteFile, Source
from mtl.datasets.download import fetch_source
from mtl.errors import DownloadError


@dataclass
class Site:
    """What the test server serves, what it is told to do per request, and what it was asked."""

    base: str = ""
    files: dict[str, bytes] = field(default_factory=dict)
    script: dict[str, list[str]] = field(default_factory=dict)  # path -> actions for its next requests
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def paths(self) -> list[str]:
        return [path for path, _ in self.requests]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        site: Site = self.server.site  # type: ignore[attr-defined]
        site.requests.append((self.path, dict(self.headers)))
        actions = site.script.get(self.path, [])
        action = actions.pop(0) if actions else "ok"
        if action == "slow":
            time.sleep(0.6)
        body = site.files.get(self.path)
        if action.isdigit() or body is None:
            status = int(action) if action.isdigit() else 404
            self.send_response(status)
            if status == 429:
                self.send_header("Retry-After", "7")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        etag = '"' + hashlib.sha256(body).hexdigest()[:16] + '"'
        wanted = self.headers.get("Range")
        if self.headers.get("If-Range", etag) != etag:
            wanted = None  # the file changed since the part was fetched: send all of it
        start = int(wanted.removeprefix("bytes=").rstrip("-")) if wanted and action != "ignore_range" else 0
        if start >= len(body) > 0:
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(body)}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(206 if start else 200)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.send_header("ETag", etag)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        broken = action in ("truncate", "stall")  # promise everything, send half, then hang up
        self.wfile.write(body[start : start + (len(body) - start) // 2 if broken else len(body)])
        if action == "stall":
            time.sleep(0.6)  # longer than the client's read timeout
        self.close_connection = broken

    def log_message(self, *args: object) -> None:
        pass


class _Server(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that timed out and hung up is part of the script, not a failure


@pytest.fixture
def site(monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    server = _Server(("127.0.0.1", 0), _Handler)
    server.site = Site(base=f"http://127.0.0.1:{server.server_address[1]}")  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield server.site  # type: ignore[attr-defined]
    server.shutdown()
    server.server_close()
    thread.join()


def payload(seed: int, size: int = 200_000) -> bytes:
    return random.Random(seed).randbytes(size)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def source(*files: RemoteFile) -> Source:
    return Source(name="test", description="a test source", files=files)


def fetch(src: Source, dest: Path, location: str | None = None, **kwargs: object) -> list[dict]:
    options = {"retries": 3, "backoff_seconds": 0.0, "timeout_seconds": 5.0, **kwargs}
    return fetch_source(src, location, dest, **options)  # type: ignore[arg-type]


def leftovers(dest: Path) -> list[str]:
    return sorted(p.name for p in dest.iterdir() if p.name.startswith("."))


# --- HTTP -------------------------------------------------------------------------------------------


def test_download_verifies_and_describes_the_file(site: Site, tmp_path: Path) -> None:
    data = payload(1)
    site.files["/d/a.bin"] = data
    url = site.base + "/d/a.bin"
    files = fetch(source(RemoteFile("a.bin", url, sha256=sha(data), size=len(data))), tmp_path)
    assert files == [{"name": "a.bin", "sha256": sha(data), "size": len(data), "origin": url}]
    assert (tmp_path / "a.bin").read_bytes() == data
    assert leftovers(tmp_path) == []
    assert site.requests[0][1]["Accept-Encoding"] == "identity"


def test_truncated_response_resumes_with_range(site: Site, tmp_path: Path) -> None:
    data = payload(2)
    site.files["/a.bin"], site.script["/a.bin"] = data, ["truncate"]
    fetch(source(RemoteFile("a.bin", site.base + "/a.bin", sha256=sha(data))), tmp_path)
    assert (tmp_path / "a.bin").read_bytes() == data
    assert [headers.get("Range") for _, headers in site.requests] == [None, f"bytes={len(data) // 2}-"]
    assert leftovers(tmp_path) == []


def test_interrupted_download_resumes_on_the_next_run(site: Site, tmp_path: Path) -> None:
    data = payload(3)
    site.files["/a.bin"], site.script["/a.bin"] = data, ["truncate"]
    src = source(RemoteFile("a.bin", site.base + "/a.bin"))
    with pytest.raises(DownloadError, match=r"giving up after 1 failed attempts.*next run resumes"):
        fetch(src, tmp_path, retries=0)
    assert (tmp_path / ".a.bin.part").stat().st_size == len(data) // 2
    assert not (tmp_path / "a.bin").exists()
    [entry] = fetch(src, tmp_path, retries=0)
    assert entry["sha256"] == sha(data)
    assert (tmp_path / "a.bin").read_bytes() == data
    assert site.requests[1][1]["Range"] == f"bytes={len(data) // 2}-"
    assert site.requests[1][1]["If-Range"].startswith('"')


def test_part_of_a_changed_file_is_not_resumed(site: Site, tmp_path: Path) -> None:
    old, new = payload(4), payload(5)
    site.files["/a.bin"], site.script["/a.bin"] = old, ["truncate"]
    src = source(RemoteFile("a.bin", site.base + "/a.bin"))
    with pytest.raises(DownloadError):
        fetch(src, tmp_path, retries=0)
    site.files["/a.bin"] = new  # new ETag: the server answers the If-Range request with the whole file
    fetch(src, tmp_path)
    assert (tmp_path / "a.bin").read_bytes() == new


def test_server_ignoring_range_restarts_cleanly(site: Site, tmp_path: Path) -> None:
    data = payload(6)
    site.files["/a.bin"], site.script["/a.bin"] = data, ["truncate", "ignore_range"]
    [entry] = fetch(source(RemoteFile("a.bin", site.base + "/a.bin")), tmp_path)
    assert site.requests[1][1]["Range"] == f"bytes={len(data) // 2}-"
    assert len(site.requests) == 2  # the 200 answer itself was used, from byte 0
    assert (tmp_path / "a.bin").read_bytes() == data
    assert entry["size"] == len(data)


def test_complete_part_is_finished_after_a_416(site: Site, tmp_path: Path) -> None:
    data = payload(7)
    site.files["/a.bin"] = data
    src = source(RemoteFile("a.bin", site.base + "/a.bin", sha256=sha(data)))
    (tmp_path / ".a.bin.part").write_bytes(data)  # fetched in full, interrupted before the rename
    (tmp_path / ".a.bin.part.json").write_text(f'{{"origin": "{site.base}/a.bin", "validator": null}}')
    fetch(src, tmp_path)
    assert len(site.requests) == 1
    assert (tmp_path / "a.bin").read_bytes() == data


def test_wrong_checksum_deletes_the_file_and_names_both_digests(site: Site, tmp_path: Path) -> None:
    data = payload(8)
    site.files["/a.bin"] = data
    src = source(RemoteFile("a.bin", site.base + "/a.bin", sha256="ab" * 32))
    with pytest.raises(DownloadError, match=rf"a\.bin .*expected sha256 {'ab' * 32}, got {sha(data)}"):
        fetch(src, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_wrong_size_is_refused(site: Site, tmp_path: Path) -> None:
    site.files["/a.bin"] = payload(9, 1000)
    with pytest.raises(DownloadError, match=r"a\.bin .*expected 999 bytes, got 1000"):
        fetch(source(RemoteFile("a.bin", site.base + "/a.bin", size=999)), tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("failure", ["500", "503", "408", "slow", "stall"])
def test_transient_failure_then_success(site: Site, tmp_path: Path, failure: str) -> None:
    data = payload(10, 5000)
    site.files["/a.bin"], site.script["/a.bin"] = data, [failure]
    fetch(source(RemoteFile("a.bin", site.base + "/a.bin")), tmp_path, timeout_seconds=0.2)
    assert len(site.requests) == 2
    assert (tmp_path / "a.bin").read_bytes() == data


def test_backoff_doubles_and_honours_retry_after(
    site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    delays: list[float] = []
    monkeypatch.setattr(download.time, "sleep", delays.append)
    site.files["/a.bin"], site.script["/a.bin"] = b"x", ["500", "500", "500", "429"]
    fetch(source(RemoteFile("a.bin", site.base + "/a.bin")), tmp_path, retries=4, backoff_seconds=1.0)
    expected = [1.0, 2.0, 4.0, 8.0]  # the 429 asks for 7 s; the backoff (8 s) is longer
    assert all(low <= got <= low * 1.1 for low, got in zip(expected, delays))
    assert len(delays) == 4
    delays.clear()
    site.script["/a.bin"] = ["429"]
    (tmp_path / "a.bin").unlink()
    fetch(source(RemoteFile("a.bin", site.base + "/a.bin")), tmp_path, backoff_seconds=0.0)
    assert 7.0 <= delays[0] <= 7.7


def test_retries_are_exhausted_with_a_clear_error(site: Site, tmp_path: Path) -> None:
    site.files["/a.bin"], site.script["/a.bin"] = b"x", ["500"] * 5
    with pytest.raises(DownloadError, match=r"/a\.bin: giving up after 3 failed attempts \(HTTP 500"):
        fetch(source(RemoteFile("a.bin", site.base + "/a.bin")), tmp_path, retries=2)
    assert len(site.requests) == 3


def test_404_fails_at_once_naming_the_url(site: Site, tmp_path: Path) -> None:
    url = site.base + "/missing.bin"
    with pytest.raises(DownloadError, match=rf"{url}: not found \(HTTP 404\)"):
        fetch(source(RemoteFile("missing.bin", url)), tmp_path)
    assert len(site.requests) == 1
    assert list(tmp_path.iterdir()) == []


def test_other_client_errors_are_not_retried(site: Site, tmp_path: Path) -> None:
    site.files["/a.bin"], site.script["/a.bin"] = b"x", ["403"]
    with pytest.raises(DownloadError, match=r"/a\.bin: HTTP 403"):
        fetch(source(RemoteFile("a.bin", site.base + "/a.bin")), tmp_path)
    assert len(site.requests) == 1


def test_optional_file_missing_on_the_server_is_skipped(site: Site, tmp_path: Path) -> None:
    site.files["/a.bin"] = b"a"
    src = source(
        RemoteFile("a.bin", site.base + "/a.bin"), RemoteFile("b.bin", site.base + "/b.bin", required=False)
    )
    assert [f["name"] for f in fetch(src, tmp_path)] == ["a.bin"]


def test_second_run_makes_no_request(site: Site, tmp_path: Path) -> None:
    data = payload(11)
    site.files["/a.bin"], site.files["/b.bin"] = data, b"b" * 10
    src = source(
        RemoteFile("a.bin", site.base + "/a.bin"),  # nothing published: our manifest vouches for it
        RemoteFile("b.bin", site.base + "/b.bin", sha256=sha(b"b" * 10)),
    )
    first = fetch(src, tmp_path)
    assert fetch(src, tmp_path, known=first) == first
    assert len(site.requests) == 2
    assert [f["name"] for f in fetch(src, tmp_path)] == ["a.bin", "b.bin"]  # no manifest: a.bin again
    assert site.paths()[2:] == ["/a.bin"]


def test_file_changed_on_disk_or_new_origin_is_fetched_again(site: Site, tmp_path: Path) -> None:
    site.files["/a.bin"] = site.files["/mirror/a.bin"] = data = payload(12, 1000)
    src = source(RemoteFile("a.bin", site.base + "/a.bin"))
    first = fetch(src, tmp_path)
    (tmp_path / "a.bin").write_bytes(b"\0" * 1000)  # same size, different content
    assert fetch(src, tmp_path, known=first) == first
    assert (tmp_path / "a.bin").read_bytes() == data
    fetch(src, tmp_path, location=site.base + "/mirror/", known=first)
    assert site.paths() == ["/a.bin", "/a.bin", "/mirror/a.bin"]


def test_from_url_is_a_base_or_the_single_file(site: Site, tmp_path: Path) -> None:
    site.files["/m/a.csv"], site.files["/m/b.csv"], site.files["/x/renamed.tar.gz"] = b"a", b"b", b"c"
    two = source(RemoteFile("a.csv", "https://unused.invalid/a.csv"), RemoteFile("b.csv"))
    files = fetch(two, tmp_path / "two", location=site.base + "/m")
    assert [f["origin"] for f in files] == [site.base + "/m/a.csv", site.base + "/m/b.csv"]
    one = source(RemoteFile("c.tar.gz"))
    fetch(one, tmp_path / "one", location=site.base + "/x/renamed.tar.gz")
    assert (tmp_path / "one" / "c.tar.gz").read_bytes() == b"c"


def test_source_without_url_asks_for_from(site: Site, tmp_path: Path) -> None:
    src = source(RemoteFile("sample_train.tar.gz"), RemoteFile("sample_test.tar.gz"))
    with pytest.raises(
        DownloadError, match=r"--from URL_OR_PATH.*sample_train\.tar\.gz, sample_test\.tar\.gz"
    ):
        fetch(src, tmp_path)
    assert site.requests == []


# --- local paths and file:// ------------------------------------------------------------------------


def test_file_url_and_local_file_origins(tmp_path: Path) -> None:
    origin = tmp_path / "mirror" / "census archive.tar.gz"
    origin.parent.mkdir()
    origin.write_bytes(data := payload(13, 3000))
    src = source(RemoteFile("census.tar.gz", sha256=sha(data), size=len(data)))
    [by_url] = fetch(src, tmp_path / "a", location=origin.as_uri())
    [by_path] = fetch(src, tmp_path / "b", location=str(origin))
    assert by_url["origin"] == origin.as_uri()
    assert by_path["origin"] == str(origin)
    assert (
        (tmp_path / "a" / "census.tar.gz").read_bytes()
        == data
        == (tmp_path / "b" / "census.tar.gz").read_bytes()
    )
    assert leftovers(tmp_path / "a") == []


def test_from_directory_copies_files_and_skips_absent_optional_ones(tmp_path: Path) -> None:
    folder = tmp_path / "by_hand"
    folder.mkdir()
    (folder / "train.csv").write_bytes(b"train")
    (folder / "test.csv").write_bytes(b"test")
    src = source(RemoteFile("train.csv"), RemoteFile("test.csv"), RemoteFile("val.csv", required=False))
    files = fetch(src, tmp_path / "raw", location=str(folder))
    assert [(f["name"], f["size"]) for f in files] == [("train.csv", 5), ("test.csv", 4)]
    assert sorted(p.name for p in (tmp_path / "raw").iterdir()) == ["test.csv", "train.csv"]
    (folder / "test.csv").unlink()
    with pytest.raises(DownloadError, match=r"by_hand/test\.csv: no such file; source 'test' needs"):
        fetch(src, tmp_path / "again", location=str(folder))


def test_local_second_run_copies_nothing_unless_the_origin_changed(tmp_path: Path) -> None:
    origin = tmp_path / "a.csv"
    origin.write_bytes(b"1,2,3\n")
    src = source(RemoteFile("a.csv"))
    first = fetch(src, tmp_path / "raw", location=str(origin))
    copied = (tmp_path / "raw" / "a.csv").stat().st_mtime_ns
    time.sleep(0.01)
    assert fetch(src, tmp_path / "raw", location=str(origin), known=first) == first
    assert (tmp_path / "raw" / "a.csv").stat().st_mtime_ns == copied
    origin.write_bytes(b"1,2,3\n4,5,6\n")
    [entry] = fetch(src, tmp_path / "raw", location=str(origin), known=first)
    assert entry["sha256"] == sha(b"1,2,3\n4,5,6\n")


def test_stale_part_of_another_version_is_not_resumed(tmp_path: Path) -> None:
    origin = tmp_path / "a.bin"
    origin.write_bytes(data := payload(14, 4000))
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / ".a.bin.part").write_bytes(b"\xff" * 1000)
    (raw / ".a.bin.part.json").write_text(f'{{"origin": "{origin}", "validator": "1000:1"}}')
    fetch(source(RemoteFile("a.bin")), raw, location=str(origin))
    assert (raw / "a.bin").read_bytes() == data
    assert leftovers(raw) == []


@pytest.mark.parametrize(
    ("location", "message"),
    [
        ("{tmp}/nowhere", r"nowhere: no such file or folder"),
        ("{tmp}/one.csv", r"one\.csv is one file; source 'test' needs a folder holding a\.csv, b\.csv"),
        ("s3://bucket/data", r"unsupported scheme"),
        ("file://otherhost/data", r"must name a local path"),
    ],
)
def test_bad_from_locations(tmp_path: Path, location: str, message: str) -> None:
    (tmp_path / "one.csv").write_text("x")
    with pytest.raises(DownloadError, match=message):
        fetch(
            source(RemoteFile("a.csv"), RemoteFile("b.csv")), tmp_path / "raw", location.format(tmp=tmp_path)
        )
