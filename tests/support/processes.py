"""Killing a training process mid-run, the way a lost worker or an OOM kill stops it."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path


def kill_after_first_checkpoint(command: list[str], checkpoint: Path, repo_root: Path) -> None:
    """Run ``command`` (an ``mtl`` CLI call) and SIGKILL it as soon as ``checkpoint`` exists (or after
    120 s, or when it ended by itself); asserts that the kill is what stopped it."""
    env = {**os.environ, "PYTHONPATH": str(repo_root)}
    process = subprocess.Popen(
        command, cwd=repo_root, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 120
        while not checkpoint.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
    finally:
        process.wait()
    assert process.returncode == -signal.SIGKILL, f"{command} ended by itself ({process.returncode})"
