"""The process environment for Airflow (and the tools it runs) on the embedded default.

Settings live in ``config/airflow.env`` in the repository; variables already present in the
environment take precedence, so a deployment configures Airflow with its own ``AIRFLOW__*`` variables.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path

from mtl.paths import project_root, state_dir

SETTINGS_FILE = Path("config") / "airflow.env"
_PLACEHOLDER = re.compile(r"\$\{([A-Z_]+)\}")


def read_settings(root: Path | None = None) -> dict[str, str]:
    """``config/airflow.env`` with ``${MTL_HOME}`` and ``${PROJECT_ROOT}`` filled in."""
    root = root or project_root()
    values = {"MTL_HOME": str(state_dir()), "PROJECT_ROOT": str(root)}
    settings: dict[str, str] = {}
    for number, line in enumerate((root / SETTINGS_FILE).read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep:
            raise ValueError(f"{root / SETTINGS_FILE}:{number}: expected KEY=VALUE, got {line!r}")
        settings[key.strip()] = _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), value.strip())
    return settings


def airflow_environment(base: Mapping[str, str] | None = None, root: Path | None = None) -> dict[str, str]:
    """``base`` (default: os.environ) completed with the embedded-default settings it does not set."""
    env = dict(os.environ if base is None else base)
    root = root or project_root()
    for key, value in read_settings(root).items():
        env.setdefault(key, value)
    env.setdefault("MTL_HOME", str(state_dir()))
    env.setdefault("MTL_PARAMS", str(root / "params.yaml"))
    # this environment's console scripts first: `airflow standalone` starts `airflow ...` by name, and
    # `mlflow models serve` starts `uvicorn`
    scripts = str(Path(sys.executable).parent)
    if scripts not in env.get("PATH", "").split(os.pathsep):
        env["PATH"] = os.pathsep.join(filter(None, [scripts, env.get("PATH")]))
    for folder in ("AIRFLOW_HOME", "MPLCONFIGDIR", "XDG_CACHE_HOME"):
        Path(env[folder]).mkdir(parents=True, exist_ok=True)
    return env


def apply_airflow_environment(root: Path | None = None) -> dict[str, str]:
    """Set the embedded-default settings in this process (before airflow is imported)."""
    env = airflow_environment(root=root)
    os.environ.update(env)
    return env
