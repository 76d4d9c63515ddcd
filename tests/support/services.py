"""Local services (PostgreSQL, Redis) for the tests that need them: skip where absent, fail in CI.

A plain module, not a conftest: importing it has no side effects (``tests/conftest.py`` sets up the
session's environment and must run once)."""

from __future__ import annotations

import os
import socket

import pytest


def service_available(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def require_service(name: str, host: str, port: int) -> None:
    """Skip with a reason where a local service is absent; fail instead under MTL_REQUIRE_SERVICES=1 (CI)."""
    if service_available(host, port):
        return
    message = f"{name} is not reachable at {host}:{port}"
    if os.environ.get("MTL_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{message}, and MTL_REQUIRE_SERVICES=1 makes it mandatory")
    pytest.skip(f"{message} (start it, or run in CI where it is mandatory)")
