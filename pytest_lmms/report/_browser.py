"""Headless Chromium for looking at reports: Debian's build, launched with the flags this
machine's closed network needs (no background networking, component updates or sync)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)


def launch_chromium(playwright: Any, executable: str | Path = CHROMIUM) -> Any:
    """A playwright Browser on Debian's chromium (never a downloaded build)."""
    return playwright.chromium.launch(executable_path=str(executable), args=list(CHROMIUM_ARGS))
