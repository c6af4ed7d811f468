"""Debian's Chromium and ChromeDriver for the page's end-to-end test: found, or installed once.

Where /usr/bin/chromium or /usr/bin/chromedriver is missing and the suite runs as root with apt-get, they
are installed (`apt-get install -y --no-install-recommends chromium chromium-driver`, after `apt-get
update` when the package lists do not know them). pytest-xdist workers take a file lock first, so only
one of them installs. Where they cannot be installed, `unavailable()` says why and how to fix it.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
PACKAGES = ["chromium", "chromium-driver"]
HOW_TO = "install them with `sudo apt-get install chromium chromium-driver` (Debian or Ubuntu) and run again"
LOCK = Path("/tmp/carbon-inclusive-chromium-install.lock")


def _present() -> bool:
    return all(path.exists() and os.access(path, os.X_OK) for path in (CHROMIUM, CHROMEDRIVER))


def _apt(*args: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(["apt-get", *args], capture_output=True, text=True, env=env, timeout=900, check=False)


def _install() -> str | None:
    """Install the packages; None when done, else what went wrong."""
    attempt = _apt("install", "-y", "--no-install-recommends", *PACKAGES)
    if attempt.returncode != 0:  # the package lists may be missing or stale: refresh them once and retry
        update = _apt("update")
        if update.returncode != 0:
            return f"`apt-get update` failed: {update.stderr.strip()[-400:]}"
        attempt = _apt("install", "-y", "--no-install-recommends", *PACKAGES)
    if attempt.returncode != 0:
        return f"`apt-get install {' '.join(PACKAGES)}` failed: {attempt.stderr.strip()[-400:]}"
    return None


def unavailable() -> str | None:
    """None when Chromium and ChromeDriver are ready (installing them if need be), else the reason."""
    if _present():
        return None
    missing = ", ".join(str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.exists())
    if shutil.which("apt-get") is None:
        return f"{missing} missing and no apt-get on this machine: {HOW_TO}"
    if os.geteuid() != 0:
        return f"{missing} missing and the tests do not run as root, so they cannot install them: {HOW_TO}"
    with LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another worker may be installing: wait for it, then look again
        try:
            if _present():
                return None
            problem = _install()
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    if problem is None and not _present():
        problem = "the packages installed but the binaries are not where Debian puts them"
    return None if problem is None else f"{missing} missing and could not be installed ({problem}): {HOW_TO}"
