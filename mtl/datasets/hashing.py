"""Content hashes computed the way DVC 3 computes them, so lineage ids match ``dvc.lock``."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

_BLOCK = 1 << 20


def file_md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        while block := handle.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(_BLOCK):
            digest.update(block)
    return digest.hexdigest()


def dir_md5(root: Path, exclude: Iterable[str] = ()) -> str:
    """DVC's directory hash: md5 of the sorted JSON list of ``{"md5", "relpath"}`` entries, plus ``.dir``.

    With ``exclude`` empty this equals the md5 ``dvc add``/``dvc repro`` records for the directory.
    Names in ``exclude`` are top-level entries to leave out (e.g. the metadata file that stores the hash).
    """
    root = Path(root)
    skip = set(exclude)
    entries = [
        {"md5": file_md5(path), "relpath": path.relative_to(root).as_posix()}
        for path in sorted(root.rglob("*"))
        if path.is_file() and path.relative_to(root).parts[0] not in skip
    ]
    entries.sort(key=lambda e: e["relpath"])
    payload = json.dumps(entries, sort_keys=True).encode("utf-8")
    return hashlib.md5(payload, usedforsecurity=False).hexdigest() + ".dir"
