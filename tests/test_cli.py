"""The console script as a user runs it: token, export-schema, a refused start, and serve's lifecycle."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from app.settings import PROJECT_ROOT

SCRIPT = str(Path(sys.executable).parent / "carbon-inclusive")


def _env(**overrides: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("CARBON_")}
    env.update(overrides)
    return env


def test_token_prints_the_token_on_its_last_line(registry) -> None:
    result = subprocess.run([SCRIPT, "token", "hankou-bank"], capture_output=True, text=True, env=_env(), check=True)
    token = result.stdout.strip().splitlines()[-1]
    principal = registry.authenticate(f"Bearer {token}")
    assert (principal.client.slug, principal.role.value, principal.client.tenant_slug) == ("hankou-bank", "PARTNER", "wuhan")


def test_token_for_an_unknown_client_fails_clearly() -> None:
    result = subprocess.run([SCRIPT, "token", "nobody"], capture_output=True, text=True, env=_env())
    assert result.returncode == 2
    assert "unknown client 'nobody'" in result.stderr and "wuhan-app" in result.stderr


def test_export_schema_prints_the_contract() -> None:
    result = subprocess.run([SCRIPT, "export-schema"], capture_output=True, text=True, env=_env(), check=True)
    assert result.stdout == (PROJECT_ROOT / "schema.graphql").read_text(encoding="utf-8")


def test_serve_refuses_to_start_with_a_broken_city_file(tmp_path) -> None:
    config = tmp_path / "config"
    shutil.copytree(PROJECT_ROOT / "config", config)
    wuhan = config / "tenants" / "wuhan.toml"
    wuhan.write_text(wuhan.read_text(encoding="utf-8").replace("grams_per_point = 10", 'grams_per_point = "ten"'),
                     encoding="utf-8")
    result = subprocess.run([SCRIPT, "serve"], capture_output=True, text=True, timeout=60,
                            env=_env(CARBON_CONFIG_DIR=str(config), CARBON_DATA_DIR=str(tmp_path / "pg")))
    assert result.returncode == 2
    assert str(wuhan) in result.stderr and "`point_unit.grams_per_point`" in result.stderr
    assert "nothing was loaded or served" in result.stderr
    assert not (tmp_path / "pg").exists(), "no database may be started for a broken configuration"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_ready(port: int, process: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"serve exited early: {process.stderr.read()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError("serve did not become ready")


def _query(port: int, token: str, query: str) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/graphql", data=json.dumps({"query": query}).encode(),
        headers={"content-type": "application/json", "authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM])
def test_serve_runs_stops_cleanly_and_reuses_its_data(tmp_path, registry, stop_signal) -> None:
    data_dir = tmp_path / "data" / "postgres"
    outputs = []
    for stop in (stop_signal, signal.SIGINT):
        port = _free_port()
        process = subprocess.Popen([SCRIPT, "serve"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   env=_env(CARBON_DATA_DIR=str(data_dir), CARBON_PORT=str(port)))
        try:
            _wait_ready(port, process)
            body = _query(port, registry.issue("regulator", 60), "{ tenants { slug pointUnit { name } } }")
            assert [t["slug"] for t in body["data"]["tenants"]] == ["beijing", "guizhou", "shanghai", "wuhan"]
            process.send_signal(stop)
            _, stderr = process.communicate(timeout=60)
        finally:
            if process.poll() is None:
                process.kill()
        assert process.returncode == 0, stderr
        assert f"http://127.0.0.1:{port}/graphql" in stderr and "carbon-inclusive token" in stderr
        assert not (data_dir / "postmaster.pid").exists(), "the embedded PostgreSQL was not stopped"
        outputs.append(stderr)
    assert "wuhan: published version 1" in outputs[0]
    assert "wuhan: unchanged (version 1)" in outputs[1], "the second start must reuse the first one's data"


def test_uvicorn_websocket_lines_never_reach_the_log() -> None:
    """uvicorn's handshake line carries the query string (a token, a holder reference) and the client's
    address: configured logging drops it, and keeps uvicorn's other lines."""
    program = (
        "import logging\n"
        "from app.logs import configure_logging\n"
        "configure_logging('INFO')\n"
        "log = logging.getLogger('uvicorn.error')\n"
        "log.info('%s - \"WebSocket %s\" [accepted]', '10.1.2.3:5555', '/graphql?token=SECRET-T&holderRef=SECRET-H')\n"
        "log.info('%s - \"WebSocket %s\" 403', '10.1.2.3:5555', '/graphql?token=SECRET-T')\n"
        "log.info('Uvicorn running on %s', 'http://127.0.0.1:8000')\n")
    result = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60,
                            cwd=Path(__file__).resolve().parent.parent)
    assert result.returncode == 0, result.stderr
    assert "SECRET" not in result.stderr and "10.1.2.3" not in result.stderr
    assert "Uvicorn running on http://127.0.0.1:8000" in result.stderr
