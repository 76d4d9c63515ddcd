"""Atomic checkpoint files, read back with ``torch.load(weights_only=True)`` only (no unpickling)."""

from __future__ import annotations

import functools
import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import torch

from mtl.errors import TrainingError

log = logging.getLogger(__name__)


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


def of_this_run(
    path: Path,
    saved: dict[str, Any],
    fingerprint: dict[str, Any],
    version: int,
    *,
    reached: int | None = None,
    end: int | None = None,
    unit: str = "epoch",
) -> bool:
    """Whether the checkpoint ``saved``, read from ``path``, was written by this run (same format version
    and resume fingerprint) and is not past its end (``reached``, the checkpoint's count of ``unit``s,
    above this run's ``end``: the run count is outside the fingerprint so that a run can be extended, and
    a longer run's weights must not stand in for a shorter one's); if not, a warning names the file and
    why. The name is the resolved one: a training step reaches the model's checkpoints through its staging
    folder's link."""
    theirs = saved.get("fingerprint") or {}
    if saved.get("format") != version or theirs != fingerprint:
        differing = sorted(k for k in {*fingerprint, *theirs} if fingerprint.get(k) != theirs.get(k))
        log.warning(
            "%s belongs to another run (differs in %s); starting afresh",
            Path(path).resolve(),
            ", ".join(differing) or "format",
        )
        return False
    if reached is not None and end is not None and reached > end:
        log.warning(
            "%s is after %s %d, past this run's %d; starting afresh", Path(path).resolve(), unit, reached, end
        )
        return False
    return True
