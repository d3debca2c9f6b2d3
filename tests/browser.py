"""Headless Chromium for the tests that look at a web page (the launcher's status page, the
leaderboard): find the browser (or skip the test), run it once, check a screenshot."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

# Hermetic: every host but this machine fails to resolve (Discord's CDN among them, so an
# avatar falls back to its initial).
OFFLINE = "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"


def chromium() -> str:
    """The browser's path; skips the test where none is installed."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    pytest.skip("Chromium is not installed (Debian: apt-get install chromium)")


def headless(browser: str, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """One headless run with a profile of its own (`--dump-dom URL`, `--screenshot=...`)."""
    return subprocess.run(
        [
            browser,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--user-data-dir={profile}",
            "--virtual-time-budget=5000",
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def check_screenshot(shot: Path, *, min_size: int, keep_as: str) -> None:
    """A PNG of a rendered page (not a blank one), copied to GUILDHOUSE_SCREENSHOT_DIR if set."""
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > min_size
    if keep := os.environ.get("GUILDHOUSE_SCREENSHOT_DIR"):
        shutil.copy(shot, Path(keep) / keep_as)
