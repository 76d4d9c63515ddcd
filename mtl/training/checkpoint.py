"""Atomic checkpoint files, read back with ``torch.load(weights_only=True)`` only (no unpickling)."""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path
from typing import Any

import torch

from mtl.errors import TrainingError


@functools.cache
def code_version() -> str:
    """md5 of the ``mtl`` package's Python sources. Part of every resume fingerprint: a checkpoint resumes
    only under the code that wrote it (a fix to a model must retrain it, not pick up its old weights)."""
    package = Path(__file__).resolve().parents[1]
    digest = hashlib.md5()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` via a temporary file and a rename: a crash never leaves half a file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint or weights file onto the CPU; only tensors and plain containers are accepted."""
    path = Path(path)
    if not path.is_file():
        raise TrainingError(f"{path} not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises UnpicklingError, RuntimeError or EOFError for bad files
        raise TrainingError(
            f"{path} is not a readable checkpoint ({type(exc).__name__}: {exc}); delete it to start afresh"
        ) from None
