"""The screenshot of the HTML report shown in README.md (docs/report.png), generated, not drawn.

Runs the offline suite (images and videos) twice with the seeded random model, the
second run against the first as its baseline, writes `pytest-lmms report`'s file, opens it
in headless Chromium, expands one image sample and one video sample, and saves a PNG.

    python benchmarks/perf/report_screenshot.py [--out docs/report.png] [--limit 4]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from pytest_lmms.report import launch_chromium

ROOT = Path(__file__).resolve().parents[2]


def offline_runs(folder: Path, limit: int) -> tuple[Path, Path]:
    import pytest_lmms

    common = {
        "tasks": ["offline"],
        "limit": limit,
        "paths": [ROOT / "benchmarks" / "offline"],
        "cache": False,
        "output": folder,
    }
    pytest_lmms.evaluate(model="random:0", run_name="baseline", seed=1, **common)
    pytest_lmms.evaluate(model="random:1", run_name="current", seed=2, baseline=folder / "baseline", **common)
    return folder / "current", folder / "baseline"


def screenshot(report: Path, out: Path, width: int) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": width, "height": 900}, device_scale_factor=1)
        page.goto(report.as_uri())
        page.wait_for_selector("body[data-ready='1']")
        # one image sample and one video sample opened, as a reader would
        for task in ("shapes_color", "motion"):
            page.locator(f"#samples tr.srow[data-key^='{task}/']").first.click()
        page.wait_for_function(
            "() => [...document.querySelectorAll('tr.detail img')].every(i => i.complete && i.naturalWidth > 0)"
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(out), full_page=True)
        browser.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "report.png"))
    parser.add_argument("--limit", type=int, default=4, help="documents per task")
    parser.add_argument("--width", type=int, default=1280)
    args = parser.parse_args()
    from pytest_lmms.report import write_html

    folder = Path(tempfile.mkdtemp(prefix="report-shot-"))
    try:
        current, baseline = offline_runs(folder / "results", args.limit)
        report = write_html(current, folder / "report.html", baseline=baseline)
        screenshot(report, Path(args.out), args.width)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    print(f"screenshot: {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
