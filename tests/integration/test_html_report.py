"""The HTML report of real offline runs (images and videos) against a baseline run,
rendered by `pytest-lmms report` and opened in headless Chromium."""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

import pytest_lmms
from pytest_lmms.cli import main
from pytest_lmms.media import wav_bytes
from pytest_lmms.report import CHROMIUM, launch_chromium, write_html, write_html_for_run
from tests.helpers import qa_rows, qa_task_yaml, write_jsonl

ROOT = Path(__file__).resolve().parents[2]
OFFLINE = ROOT / "benchmarks" / "offline"


@dataclass(frozen=True)
class Runs:
    base: Path
    new: Path  # compared with base during the session (results.json holds the comparison)
    plain: Path  # the same model and seed as new, run without a baseline


def _evaluate(out: Path, name: str, model: str, seed: int, **options: Any) -> Path:
    results = pytest_lmms.evaluate(
        model=model,
        tasks=["offline"],
        limit=6,
        paths=[OFFLINE],
        cache=False,
        output=out,
        run_name=name,
        seed=seed,
        **options,
    )
    assert results["exit_code"] == 0
    return out / name


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    out = tmp_path_factory.mktemp("html-runs")
    base = _evaluate(out, "base", "random:0", 1)
    new = _evaluate(out, "new", "random:1", 2, baseline=base, fail_on_regression="0")
    plain = _evaluate(out, "plain", "random:1", 2)
    return Runs(base, new, plain)


def _results(run: Path) -> dict[str, Any]:
    return json.loads((run / "results.json").read_text())


def _samples(run: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for path in sorted(run.glob("samples_*.jsonl")) for line in path.open()]


def _primary(run: Path) -> dict[str, str]:
    return {task: next(iter(info["metrics"])) for task, info in _results(run)["tasks"].items()}


def _key(sample: dict[str, Any]) -> str:
    return f"{sample['task']}/{sample['doc_id']}#{sample.get('repeat', 0)}"


def _expected_wrong(run: Path) -> set[str]:
    primary = _primary(run)
    return {_key(s) for s in _samples(run) if s["scores"][primary[s["task"]]] == 0}


def _expected_flips(new: Path, base: Path) -> dict[str, set[str]]:
    primary = _primary(new)
    before = {(s["task"], s["doc_id"]): s["scores"][primary[s["task"]]] for s in _samples(base)}
    out: dict[str, set[str]] = {"worse": set(), "better": set()}
    for s in _samples(new):
        old, now = before.get((s["task"], s["doc_id"])), s["scores"][primary[s["task"]]]
        if old is not None and old != now:
            out["worse" if old == 1 else "better"].add(_key(s))
    return out


def _number(value: float | None) -> str:
    """A number as the report prints it ('-' where results.json has none)."""
    return "-" if value is None else f"{value:.4f}"


def _cell(page_html: str, row_attrs: str, field: str) -> str:
    """The text of one cell of the row whose opening tag carries ``row_attrs``."""
    match = re.search(rf"<tr [^>]*{re.escape(row_attrs)}[^>]*>(.*?)</tr>", page_html, re.S)
    assert match, row_attrs
    cell = re.search(rf"data-field='{field}'>([^<]*)<", match.group(1))
    assert cell, (row_attrs, field)
    return cell.group(1)


def test_cli_writes_one_file_that_needs_no_network(runs: Runs, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    assert main(["report", str(runs.new), "--baseline", str(runs.base), "--out", str(out)]) == 0
    page = out.read_text()
    # scripts, styles, plots and media inline: nothing is fetched when the file opens
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert "<link" not in page and "<script src" not in page
    assert page.count('<svg class="forest"') == 2  # scores, and the paired differences
    assert "data:image/jpeg;base64," in page


def test_several_runs_give_one_table_row_per_run(runs: Runs, tmp_path: Path) -> None:
    page = write_html([runs.new, runs.base], tmp_path / "both.html").read_text()
    for index, run in enumerate((runs.new, runs.base)):
        for task, info in _results(run)["tasks"].items():
            for metric, est in info["metrics"].items():
                attrs = f"data-run='{index}' data-task='{task}' data-metric='{metric}'"
                assert _cell(page, attrs, "value") == _number(est["value"])
                assert _cell(page, attrs, "n") == str(est["n"])


def test_comparison_computed_from_saved_runs_equals_the_sessions(runs: Runs, tmp_path: Path) -> None:
    """`plain` recorded no comparison: the report pairs it with the baseline itself, and
    gets what the session that ran with --baseline printed."""
    page = write_html(runs.plain, tmp_path / "r.html", baseline=runs.base).read_text()
    recorded = _results(runs.new)["comparison"]["tasks"]
    for task, c in recorded.items():
        for field in ("current", "baseline", "diff", "p_value", "p_holm"):
            assert _cell(page, f"class='diff' data-task='{task}'", field) == _number(c.get(field))


def test_plugin_entry_point_writes_report_html_in_the_run_folder(runs: Runs, tmp_path: Path) -> None:
    run_dir = tmp_path / "new"
    shutil.copytree(runs.new, run_dir)
    path = write_html_for_run(_results(run_dir), run_dir)
    assert path == run_dir / "report.html"
    page = path.read_text()
    assert "Paired comparison with baseline random:0" in page  # the baseline the run recorded
    assert "Gates" in page and "passed" in page
    done = _results(run_dir)["completeness"]
    assert f"complete: {done['done']} of {done['planned']} samples done" in page


def test_missing_task_yaml_still_gives_a_report_saying_why(runs: Runs, tmp_path: Path) -> None:
    run_dir = tmp_path / "moved"
    shutil.copytree(runs.base, run_dir)
    results = _results(run_dir)
    for info in results["tasks"].values():
        info["yaml"] = str(tmp_path / "gone.yaml")
    (run_dir / "results.json").write_text(json.dumps(results))
    page = write_html(run_dir, tmp_path / "r.html").read_text()
    assert "media of shapes_color not shown" in page
    assert _cell(page, "data-task='shapes_color'", "value") == _number(
        results["tasks"]["shapes_color"]["metrics"]["choice_accuracy"]["value"]
    )


# ---- in a browser ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} missing (apt-get install -y --no-install-recommends chromium)")
    sync_api = pytest.importorskip(
        "playwright.sync_api", reason="playwright missing (pip install playwright)"
    )
    with sync_api.sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        yield chromium
        chromium.close()


def _shown_keys(page: Any) -> set[str]:
    return set(page.eval_on_selector_all("#samples tr.srow", "rows => rows.map(r => r.dataset.key)"))


def _loaded(page: Any, selector: str) -> int:
    """How many images matching ``selector`` have decoded with a non-zero width (waits for
    the first one, as data URLs decode asynchronously)."""
    page.wait_for_function(
        "s => { const i = document.querySelector(s); return i && i.complete && i.naturalWidth > 0; }",
        arg=selector,
    )
    return int(page.eval_on_selector_all(selector, "imgs => imgs.filter(i => i.naturalWidth > 0).length"))


def test_report_in_chromium(runs: Runs, browser: Any, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    assert main(["report", str(runs.new), "--baseline", str(runs.base), "--out", str(out)]) == 0
    page = browser.new_page(viewport={"width": 1300, "height": 900})
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(out.as_uri())
    page.wait_for_selector("body[data-ready='1']")

    # the table shows results.json's numbers
    results = _results(runs.new)
    for task, info in results["tasks"].items():
        for metric, est in info["metrics"].items():
            row = page.locator(f"#scores tr[data-task='{task}'][data-metric='{metric}']")
            assert row.locator("[data-field='value']").inner_text() == _number(est["value"])
            ci = "-" if est["ci_low"] is None else f"[{_number(est['ci_low'])}, {_number(est['ci_high'])}]"
            assert row.locator("[data-field='ci']").inner_text() == ci
            assert row.locator("[data-field='n']").inner_text() == str(est["n"])
    for task, c in results["comparison"]["tasks"].items():
        row = page.locator(f"#comparison tr[data-task='{task}']")
        assert row.locator("[data-field='diff']").inner_text() == _number(c["diff"])

    # every sample is listed; the filters show exactly the expected ones
    assert _shown_keys(page) == {_key(s) for s in _samples(runs.new)}
    page.select_option("#f-status", "wrong")
    assert _shown_keys(page) == _expected_wrong(runs.new)
    page.select_option("#f-status", "")
    flips = _expected_flips(runs.new, runs.base)
    assert flips["worse"] or flips["better"]  # two different random models disagree somewhere
    page.select_option("#f-flip", "flipped")
    assert _shown_keys(page) == flips["worse"] | flips["better"]
    page.select_option("#f-flip", "worse")
    assert _shown_keys(page) == flips["worse"]
    page.select_option("#f-flip", "")
    page.fill("#f-search", "img001-count-circle")
    page.wait_for_function("document.querySelectorAll('#samples tr.srow').length === 1")
    page.fill("#f-search", "")
    page.wait_for_function(
        f"document.querySelectorAll('#samples tr.srow').length === {len(_samples(runs.new))}"
    )

    # a sample shows the prompt as rendered, the image the model saw; another the video frames
    page.select_option("#f-task", "shapes_color")
    page.locator("#samples tr.srow").first.click()
    assert "prompt (as rendered)" in page.locator("tr.detail").inner_text()
    assert _loaded(page, "tr.detail img.thumb") >= 1
    page.select_option("#f-task", "motion")
    page.locator("#samples tr.srow").first.click()
    assert _loaded(page, "tr.detail img.frame") >= 2

    page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
    assert (tmp_path / "report.png").stat().st_size > 10_000
    assert errors == []
    page.close()


def test_failed_and_high_variance_filters(
    lmms_project: pytest.Pytester, browser: Any, tmp_path: Path
) -> None:
    """Repeats where one question's answers disagree, and one question whose model call fails."""
    rows = qa_rows(6, wrong=[1], fail=[2])
    rows[3]["reply"] = "ans3|nope|ans3"  # right, wrong, right over the three repeats
    write_jsonl(lmms_project.path / "qa.jsonl", rows)
    lmms_project.makefile(".yaml", qa=qa_task_yaml("qa", "qa.jsonl"))
    result = lmms_project.runpytest("--model=scripted:m", "--lmms-repeats=3", "--lmms-run-name=r")
    result.stdout.fnmatch_lines(["*3 failed, 11 passed, 4 wrong*"])
    run_dir = lmms_project.path / "results" / "r"
    out = write_html(run_dir, tmp_path / "report.html")
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(out.as_uri())
    page.wait_for_selector("body[data-ready='1']")
    page.check("#f-var")
    assert _shown_keys(page) == {"qa/3#0", "qa/3#1", "qa/3#2"}
    page.uncheck("#f-var")
    page.select_option("#f-status", "failed")
    assert page.locator("#samples tr.srow").count() == 1
    assert "3 sample(s) of qa failed" in page.locator("#samples").inner_text()
    page.select_option("#f-status", "wrong")
    assert _shown_keys(page) == {"qa/1#0", "qa/1#1", "qa/1#2", "qa/3#1"}
    stability = _results(run_dir)["tasks"]["qa"]["stability"]
    assert f"{stability['expected_accuracy']:.4f}" in page.locator("#stability").inner_text()
    assert errors == []
    page.close()


def test_recorded_media_files_are_embedded_small(runs: Runs, tmp_path: Path) -> None:
    """Media named by path in the sample lines (what the run records for files): a large
    photo becomes a thumbnail, an audio clip a short WAV the page can play."""
    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (1200, 1600, 3), dtype=np.uint8)).save(photo)
    clip = tmp_path / "clip.wav"
    clip.write_bytes(wav_bytes(np.zeros(16000 * 60, dtype=np.float32), 16000))  # one minute
    run_dir = tmp_path / "run"
    shutil.copytree(runs.base, run_dir)
    lines = (run_dir / "samples_shapes_count.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    first["prompt"] = {
        "text": "what is here?",
        "media": [
            {"kind": "image", "path": str(photo), "sha256": "p" * 64},
            {"kind": "audio", "path": str(clip), "sha256": "a" * 64},
        ],
        "choices": None,
    }
    (run_dir / "samples_shapes_count.jsonl").write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")
    image, audio = _embedded_media(write_html(run_dir, tmp_path / "r.html"), _key(first))
    assert _image_size(image) == (320, 240)  # 1600x1200 shrunk
    assert audio["src"][0].startswith("data:audio/wav;base64,")
    assert len(audio["src"][0]) < 1_000_000 < photo.stat().st_size  # 20 s of 16 kHz 16-bit WAV, not 60
    out = tmp_path / "small.html"
    assert main(["report", str(run_dir), "--thumbnail-px", "100", "--out", str(out)]) == 0
    assert _image_size(_embedded_media(out, _key(first))[0]) == (100, 75)


def _embedded_media(report: Path, key: str) -> list[dict[str, Any]]:
    """The media entries the page embeds for one sample."""
    embedded = re.search(r"id='lmms-data'>(.*?)</script>", report.read_text(), re.S)
    assert embedded
    data = json.loads(embedded.group(1).replace("<\\/", "</"))
    entry = next(s for s in data["samples"] if s["key"] == key)
    return [data["media"][media_id] for media_id in entry["media"]]


def _image_size(item: dict[str, Any]) -> tuple[int, int]:
    with Image.open(io.BytesIO(base64.b64decode(item["src"][0].split(",", 1)[1]))) as image:
        return image.size


def test_three_runs_are_also_a_line_over_the_runs(runs: Runs, tmp_path: Path) -> None:
    page = write_html([runs.base, runs.new, runs.plain], tmp_path / "steps.html").read_text()
    lines = page.split('<svg class="lines"', 1)[1].split("</svg>", 1)[0]
    assert lines.count("<polyline") == len(_results(runs.base)["tasks"])  # one line per task
    for task, info in _results(runs.plain)["tasks"].items():
        metric = next(iter(info["metrics"]))
        assert f"{task} · {metric}" in lines


def test_lmms_html_writes_the_report_at_the_end_of_a_session(lmms_project: pytest.Pytester) -> None:
    from tests.helpers import qa_rows, qa_task_yaml, write_jsonl

    write_jsonl(lmms_project.path / "qa.jsonl", qa_rows(4, wrong=[1]))
    lmms_project.makefile(".yaml", qa=qa_task_yaml("qa", "qa.jsonl"))
    result = lmms_project.runpytest("--model=scripted:m1", "--lmms-run-name=r", "--lmms-html")
    report = lmms_project.path / "results" / "r" / "report.html"
    result.stdout.fnmatch_lines([f"report: {Path('results') / 'r' / 'report.html'}"])
    text = report.read_text()
    assert "exact_match" in text and "0.7500" in text
    chosen = lmms_project.runpytest("--model=scripted:m1", "--lmms-run-name=s", "--lmms-html=mine.html")
    chosen.stdout.fnmatch_lines(["report: mine.html"])
    assert (lmms_project.path / "mine.html").is_file()
