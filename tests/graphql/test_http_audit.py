"""The reference GraphQL-over-HTTP audit suite (npm `graphql-http`, `serverAudits`) against a running
`carbon-inclusive serve`: every audit must pass (no error, warning or notice).

Needs Node.js and the npm registry; skipped with the reason where either is missing (the project itself
never needs Node). test_http_conformance covers the same audits in Python."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from app.settings import PROJECT_ROOT
from bench.common import running_server

AUDIT_DIR = PROJECT_ROOT / "tests" / "http_audit"
INSTALL_DIR = PROJECT_ROOT / ".data" / "http-audit"


def _installed() -> str:
    if not (shutil.which("node") and shutil.which("npm")):
        pytest.skip("Node.js and npm are not installed: the graphql-http audit suite cannot run here")
    INSTALL_DIR.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "audit.mjs"):
        shutil.copy(AUDIT_DIR / name, INSTALL_DIR / name)
    if not (INSTALL_DIR / "node_modules" / "graphql-http").exists():
        try:
            subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent"], cwd=INSTALL_DIR, check=True,
                           capture_output=True, text=True, timeout=180)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as error:
            pytest.skip(f"could not install graphql-http from the npm registry: {error}")
    return str(INSTALL_DIR / "audit.mjs")


def test_the_graphql_http_audit_suite_passes(database_target, registry) -> None:
    script = _installed()
    with running_server(database_target) as base_url:
        result = subprocess.run(["node", script, f"{base_url}/graphql", registry.issue("wuhan-app", 600)],
                                capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout + result.stderr
    assert " 0 notices, 0 warnings, 0 errors" in result.stdout
