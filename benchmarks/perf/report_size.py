"""Size and speed of the HTML report of a 2,000-sample image run.

Builds a task of N questions on N distinct photo-like 640x480 JPEGs, runs it for real with
the seeded random model, writes the report (timed) and opens it in headless Chromium:
prints the file size, the time to write it, the load time (navigation until the sample
browser is ready) and the time to apply a filter and a text search and to open a sample.
Targets (issue 17): under 20 MB, opens and filters without lag.

    python benchmarks/perf/report_size.py [--samples 2000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

from pytest_lmms.report import CHROMIUM, launch_chromium

TASK_YAML = """task: photos
dataset_path: photos.jsonl
doc_to_messages: !function photos_utils.messages
doc_to_target: answer
doc_to_choice: options
generation_kwargs:
  max_new_tokens: 8
  temperature: 0
metric_list:
  - metric: choice_accuracy
    aggregation: mean
    higher_is_better: true
"""
TASK_UTILS = """
def messages(doc):
    options = "\\n".join(f"{l}. {o}" for l, o in zip("ABCD", doc["options"]))
    text = f"{doc['question']}\\n{options}\\nAnswer with the option's letter."
    return [{"role": "user", "content": [{"type": "image", "image": doc["image"]}, {"type": "text", "text": text}]}]
"""


def photo(index: int, width: int = 640, height: int = 480) -> bytes:
    """A photo-like picture (smooth gradient, soft blobs, sensor noise): JPEG-compresses
    like a natural image, unlike flat shapes (too easy) or pure noise (too hard)."""
    import io

    import numpy as np
    from PIL import Image, ImageDraw, ImageFilter

    rng = random.Random(index)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack(
        [rng.uniform(40, 200) + rng.uniform(-0.15, 0.15) * (x if c % 2 else y) for c in range(3)], axis=-1
    )
    image = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(14):
        cx, cy, r = rng.randint(0, width), rng.randint(0, height), rng.randint(15, 120)
        colour = tuple(rng.randint(0, 255) for _ in range(3))
        draw.ellipse((cx - r, cy - r, cx + r, cy + int(r * rng.uniform(0.5, 1.5))), fill=colour)
    image = image.filter(ImageFilter.GaussianBlur(3))
    noise = np.random.default_rng(index).normal(0, 6, (height, width, 3))
    pixels = np.clip(np.asarray(image, dtype=np.float32) + noise, 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, format="JPEG", quality=88)
    return out.getvalue()


def build_task(folder: Path, n: int) -> None:
    rows_file = folder / "photos.jsonl"
    if rows_file.exists() and len(rows_file.read_text().splitlines()) == n:
        return  # a kept folder of the same size: reuse its images
    (folder / "photos").mkdir(parents=True, exist_ok=True)
    with open(folder / "photos.jsonl", "w") as rows:
        for i in range(n):
            (folder / "photos" / f"p{i:05d}.jpg").write_bytes(photo(i))
            options = random.Random(i).sample(["cat", "dog", "car", "tree", "boat", "house"], 4)
            row = {
                "id": f"p{i:05d}",
                "image": f"photos/p{i:05d}.jpg",
                "question": "What is in the picture?",
                "options": options,
                "answer": "ABCD"[i % 4],
            }
            rows.write(json.dumps(row) + "\n")
    (folder / "photos.yaml").write_text(TASK_YAML)
    (folder / "photos_utils.py").write_text(TASK_UTILS)


def browser_timings(report: Path) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        page = browser.new_page(viewport={"width": 1300, "height": 900})
        started = time.perf_counter()
        page.goto(report.as_uri())
        page.wait_for_selector("body[data-ready='1']")
        load_s = time.perf_counter() - started
        timings = {"load_s": load_s}
        # the handlers run synchronously on 'change': the elapsed time is the filter's cost
        timings["filter_wrong_ms"] = page.evaluate(
            """() => { const s = document.getElementById('f-status'), t = performance.now();
            s.value = 'wrong'; s.dispatchEvent(new Event('change')); return performance.now() - t; }"""
        )
        timings["search_ms"] = page.evaluate(
            """() => { const q = document.getElementById('f-search'), s = document.getElementById('f-status');
            q.value = 'p0000'; s.value = ''; const t = performance.now();
            s.dispatchEvent(new Event('change')); return performance.now() - t; }"""
        )
        started = time.perf_counter()
        page.locator("#samples tr.srow").first.click()
        page.wait_for_function(
            "() => { const i = document.querySelector('tr.detail img.thumb'); return i && i.naturalWidth > 0; }"
        )
        timings["open_sample_ms"] = (time.perf_counter() - started) * 1000
        browser.close()
    return timings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--keep", default=None, help="build in this folder and keep it")
    args = parser.parse_args()
    import pytest_lmms
    from pytest_lmms.report import write_html

    folder = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="report-size-"))
    try:
        started = time.perf_counter()
        build_task(folder / "task", args.samples)
        print(f"built {args.samples} images in {time.perf_counter() - started:.1f} s")
        shutil.rmtree(folder / "results" / "run", ignore_errors=True)  # a kept folder's last run
        started = time.perf_counter()
        results = pytest_lmms.evaluate(
            model="random:0",
            tasks=["photos"],
            paths=[folder / "task"],
            cache=False,
            output=folder / "results",
            run_name="run",
        )
        print(f"run: {results['throughput']['samples']} samples in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        report = write_html(folder / "results" / "run", folder / "report.html")
        write_s = time.perf_counter() - started
        size = report.stat().st_size
        print(f"report: {report}")
        print(f"  size {size / 1e6:.2f} MB ({size / args.samples / 1e3:.1f} kB per sample; target < 20 MB)")
        print(f"  written in {write_s:.2f} s")
        if not Path(CHROMIUM).exists():
            print(f"  no {CHROMIUM}: browser timings skipped")
            return 0
        for name, value in browser_timings(report).items():
            unit = "s" if name.endswith("_s") else "ms"
            print(f"  chromium {name.rsplit('_', 1)[0].replace('_', ' ')}: {value:.2f} {unit}")
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
