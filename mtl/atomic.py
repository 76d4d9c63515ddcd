"""Replace an output only on success: build the new one beside the old, then swap.

Every step that replaces an output (download, extract, validate, prepare, train, evaluate) writes into
``.NAME.staging`` next to the target ``NAME`` and calls ``swap`` when the new output is complete: the
old output is renamed to ``.NAME.aside``, the new one renamed in, and the old one deleted. A failure
(an exception, a SIGKILL, a full disk) before the swap leaves the previous good output untouched; a
kill between the two renames is repaired by ``recover`` at the start of the next run (the aside copy
goes back in place). ``replace_on_success`` wraps the whole dance in a ``with`` block.

``MTL_TEST_KILL_AT=<step>:<point>`` (tests only) makes ``checkpoint(step, point)`` SIGKILL the process,
so a test can kill a step exactly where it wants (e.g. ``download:before-swap``).
"""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

KILL_ENV = "MTL_TEST_KILL_AT"


def staging_path(target: Path) -> Path:
    target = Path(target)
    return target.with_name(f".{target.name}.staging")


def published_path(path: Path | str) -> Path:
    """Where ``path`` will be once its staging folder is swapped in (``.NAME.staging`` -> ``NAME``), for
    messages written before the swap; other paths are returned as they are."""
    parts = [
        part[1 : -len(".staging")] if part.startswith(".") and part.endswith(".staging") else part
        for part in Path(path).parts
    ]
    return Path(*parts)


def aside_path(target: Path) -> Path:
    target = Path(target)
    return target.with_name(f".{target.name}.aside")


def checkpoint(step: str, point: str) -> None:
    """Test hook: SIGKILL this process here if ``$MTL_TEST_KILL_AT`` is ``step:point``."""
    if os.environ.get(KILL_ENV) == f"{step}:{point}":
        os.kill(os.getpid(), signal.SIGKILL)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def recover(target: Path) -> None:
    """Undo what a killed run left: a staging copy is dropped; an aside copy without a target (killed
    between the two renames of a swap) goes back in place, one beside a target is dropped."""
    target = Path(target)
    staging, aside = staging_path(target), aside_path(target)
    if staging.exists() or staging.is_symlink():
        _remove(staging)
    if aside.exists():
        if target.exists():
            _remove(aside)
        else:
            os.replace(aside, target)


def begin(target: Path, *, copy_current: bool = False, link: bool = False, directory: bool = True) -> Path:
    """A fresh staging path for ``target`` (after ``recover``); with ``copy_current`` it starts as a
    copy of the current output (a step that updates some files and keeps the others), with ``link``
    a copy made of hard links (only for writers that replace files by rename, never in place)."""
    target = Path(target)
    recover(target)
    staging = staging_path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    if copy_current and target.is_dir():
        shutil.copytree(target, staging, symlinks=True, copy_function=os.link if link else shutil.copy2)
    elif copy_current and target.is_file():
        shutil.copy2(target, staging)
    elif directory:
        staging.mkdir()
    return staging


def swap(staging: Path, target: Path, step: str = "") -> None:
    """Put ``staging`` in place of ``target``: the old output goes aside, the new one in, the old away."""
    staging, target = Path(staging), Path(target)
    aside = aside_path(target)
    had_target = target.exists() or target.is_symlink()
    if had_target:
        os.replace(target, aside)
    checkpoint(step, "mid-swap")
    os.replace(staging, target)
    if had_target:
        _remove(aside)


@contextmanager
def replace_on_success(
    target: Path,
    *,
    step: str = "",
    copy_current: bool = False,
    link: bool = False,
    directory: bool = True,
) -> Iterator[Path]:
    """``with replace_on_success(out) as staging:`` write the new output into ``staging``; it replaces
    ``out`` only if the block completes. On an exception the staging copy is removed, ``out`` kept."""
    staging = begin(target, copy_current=copy_current, link=link, directory=directory)
    try:
        yield staging
        checkpoint(step, "before-swap")
        swap(staging, target, step)
    finally:
        if staging.exists() or staging.is_symlink():
            _remove(staging)
