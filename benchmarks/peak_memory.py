"""Peak memory of the current process, for the benchmarks' child processes (no imports beyond the
standard library: torch-rechub's interpreter loads it too).

``peak_rss_mb`` is the kernel's high-water mark of resident memory. It counts the pages of shared
libraries that the process touched, and how many those are depends on the page cache: the same torch
build mapped 48 MB of ``libtorch_cpu.so`` in one venv and 94 MB in another on this machine, on import
alone. ``peak_private_mb`` leaves them out: the high-water mark less the file-backed pages resident at
exit (library pages are never given back while mapped, so the ones at exit include the ones at the peak).
That is the memory the run itself allocated: tables, optimiser state, batches, the data.
"""

from __future__ import annotations

import resource
from pathlib import Path


def peak_memory() -> dict[str, float | None]:
    figures: dict[str, float | None] = {
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_private_mb": None,
    }
    status = Path("/proc/self/status")
    if status.is_file():
        kb = {
            line.split(":")[0]: int(line.split()[1])
            for line in status.read_text().splitlines()
            if line.startswith(("VmHWM:", "RssFile:"))
        }
        if len(kb) == 2:
            figures["peak_private_mb"] = (kb["VmHWM"] - kb["RssFile"]) / 1024
    return figures
