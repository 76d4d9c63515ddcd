#!/usr/bin/env bash
# The one install path for the project: `make setup`, CI and the Dockerfile all come through here.
#   scripts/install.sh VENV_DIR [EXTRAS]      e.g. scripts/install.sh .venv dev
# Creates VENV_DIR with Python 3.11 (unless it exists) and installs the package with every
# dependency pinned by requirements.lock (used as pip constraints, so nothing floats).
# TORCH_INDEX_URL, when set, is an extra index for torch builds (the Dockerfile's CPU/CUDA switch).
set -euo pipefail
venv="${1:?usage: scripts/install.sh VENV_DIR [EXTRAS]}"
extras="${2:-}"
root="$(cd "$(dirname "$0")/.." && pwd)"

find_python() {
    for candidate in "${PYTHON:-}" python3.11 python3; do
        [ -n "$candidate" ] || continue
        command -v "$candidate" >/dev/null 2>&1 || continue
        if "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' 2>/dev/null; then
            echo "$candidate"; return 0
        fi
    done
    echo "error: Python 3.11 is required (set PYTHON=/path/to/python3.11)" >&2
    return 1
}

if [ ! -x "$venv/bin/python" ]; then
    python="$(find_python)"
    "$python" -m venv "$venv"
fi
pip_args=(--disable-pip-version-check --no-input -q)
"$venv/bin/python" -m pip install "${pip_args[@]}" --upgrade "pip>=24" wheel
if [ -n "${TORCH_INDEX_URL:-}" ]; then
    pip_args+=(--extra-index-url "$TORCH_INDEX_URL")
fi
target="$root"
[ -n "$extras" ] && target="$root[$extras]"
"$venv/bin/python" -m pip install "${pip_args[@]}" -c "$root/requirements.lock" -e "$target"
