"""The sample browser's data: one entry per scored sample (prompt, media ids, responses,
scores, status against the baseline) and one per failed task, embedded as JSON."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pytest_lmms.report._html_data import (
    ReportRun,
    baseline_records,
    sample_key,
    sample_status,
    varying_docs,
)
from pytest_lmms.report._html_media import (
    MediaEmbedder,
    MediaLimits,
    TaskRenderer,
    media_parts,
    needs_rendering,
)


def browser_data(
    run: ReportRun,
    baseline: ReportRun | None,
    flipped: Mapping[tuple[str, str], str],
    media: bool,
    limits: MediaLimits | None,
) -> dict[str, Any]:
    embedder = MediaEmbedder(limits)
    renderer = TaskRenderer(run) if media else None
    before = baseline_records(baseline)
    variance = varying_docs(run)
    samples = [
        _sample_entry(record, run, before, flipped, variance, embedder, renderer) for record in run.samples
    ]
    samples += _failed_entries(run)
    notes = []
    if renderer is not None:
        notes += [f"media of {task} not shown: {error}" for task, error in sorted(renderer.errors.items())]
    return {"samples": samples, "media": embedder.items, "notes": notes}


def _sample_entry(
    record: Mapping[str, Any],
    run: ReportRun,
    before: Mapping[tuple[str, str, int], Mapping[str, Any]],
    flipped: Mapping[tuple[str, str], str],
    variance: Mapping[tuple[str, str], float],
    embedder: MediaEmbedder,
    renderer: TaskRenderer | None,
) -> dict[str, Any]:
    task, doc, repeat = sample_key(record)
    metric = run.primary_metric(task)
    scores = record.get("scores") or {}
    entry: dict[str, Any] = {
        "key": f"{task}/{doc}#{repeat}",
        "task": task,
        "doc": doc,
        "repeat": repeat,
        "status": sample_status(record, metric),
        "score": scores.get(metric) if metric else None,
        "flip": flipped.get((task, doc)),
        "variance": variance.get((task, doc)),
        "response": record.get("response"),
        "raw": record.get("raw"),
        "target": record.get("target"),
        "scores": scores,
        "judge_calls": record.get("judge_calls") or 0,
        "judge_prompts": record.get("judge_prompts") or [],
        "latency_s": record.get("latency_s"),
        "ttft_s": record.get("ttft_s"),
        "cached": bool(record.get("cached")),
    }
    if "extracted" in record:
        entry["extracted"] = record["extracted"]
    entry.update(_prompt_fields(record, embedder, renderer))
    old = before.get((task, doc, repeat))
    if old is not None:
        entry["baseline"] = {"response": old.get("response"), "scores": old.get("scores") or {}}
    return entry


def _prompt_fields(
    record: Mapping[str, Any], embedder: MediaEmbedder, renderer: TaskRenderer | None
) -> dict[str, Any]:
    """The prompt text, choices and embedded media ids: from the sample line, re-rendered
    from the task where the line lacks them (older runs, media held in memory)."""
    from pytest_lmms.report._results import prompt_record

    prompt = record.get("prompt") if isinstance(record.get("prompt"), Mapping) else None
    parts = []
    if renderer is not None and needs_rendering(record):
        request = renderer.request(str(record.get("task")), str(record.get("doc_id")))
        if request is not None:
            parts = media_parts(request)
            prompt = prompt or prompt_record(request)
    if prompt is None:
        return {"prompt_note": "the prompt was not recorded for this sample"}
    out: dict[str, Any] = {"prompt": prompt.get("text"), "choices": prompt.get("choices")}
    if renderer is None:
        return out
    by_hash = {part.media.content_hash: part.media for part in parts}
    entries = list(prompt.get("media") or [])
    out["media"] = [
        embedder.add(entry, by_hash.get(entry.get("sha256")) or (parts[k].media if k < len(parts) else None))
        for k, entry in enumerate(entries)
    ]
    return out


def _failed_entries(run: ReportRun) -> list[dict[str, Any]]:
    """Samples that were not scored: named where results.json lists them, else one entry
    per task saying how many failed (their lines are not in the samples files)."""
    out = []
    for item in run.document.not_done:
        task = item.nodeid.split("::")[-1].split("[")[0]
        out.append(_failed(task, item.nodeid, item.reason or "not done"))
    for task, info in run.tasks.items():
        failed = info.failed
        if failed:
            out.append(
                _failed(task, f"{failed} failed", f"{failed} sample(s) of {task} failed; see the test log")
            )
    return out


def _failed(task: str, doc: str, reason: str) -> dict[str, Any]:
    return {
        "key": f"{task}/{doc}#failed", "task": task, "doc": doc, "repeat": 0, "status": "failed",
        "reason": reason, "score": None, "flip": None, "variance": None, "response": "", "raw": "",
        "target": None, "scores": {},
    }  # fmt: skip
