"""Samples JSONL files and results.json: what a run leaves on disk."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any

import orjson

from pytest_lmms.report._records import GitInfo, Throughput
from pytest_lmms.types import MediaPart, Request, SampleResult, VideoSampling


def default_run_name(model: str, started: float) -> str:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", model).strip("-")[:60] or "model"
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(started))
    return f"{stamp}_{slug}_{os.getpid()}"


class SamplesWriter:
    """Writes one JSON line per scored sample to ``samples_<task>.jsonl``, flushed at once."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self._files: dict[str, IO[bytes]] = {}

    def path_for(self, task: str, prefix: str = "samples_") -> Path:
        return self.run_dir / f"{prefix}{task}.jsonl"

    def write(self, result: SampleResult | Mapping[str, Any], prefix: str = "samples_") -> None:
        """One sample line: a SampleResult, or its to_json() form as xdist ships it. A
        mapping goes through the sample type too, so every line has the schema's layout."""
        record = (result if isinstance(result, SampleResult) else SampleResult.from_json(result)).to_json()
        task = record["task"]
        handle = self._files.get(prefix + task)
        if handle is None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            # A session owns its samples files: a reused run name starts them afresh, so the
            # file always matches the results.json written next to it.
            handle = self._files[prefix + task] = open(self.path_for(task, prefix), "wb")  # noqa: SIM115
        handle.write(orjson.dumps(record) + b"\n")
        handle.flush()

    def close(self) -> None:
        for handle in self._files.values():
            handle.close()
        self._files.clear()


def prompt_record(request: Request) -> dict[str, Any]:
    """What the model was shown, for a person reading the run folder: the prompt text (the
    messages' text, roles marked when there are several), each medium with its path (None
    for media held in memory), content hash and, for videos, the frame sampling; the choices."""
    media: list[dict[str, Any]] = []
    for message in request.messages:
        for part in message.content:
            if isinstance(part, MediaPart):
                entry: dict[str, Any] = {
                    "kind": part.type,
                    "path": str(part.media.path) if part.media.path is not None else None,
                    "sha256": part.media.content_hash,
                }
                if part.type == "video":
                    entry["sampling"] = (part.sampling or VideoSampling()).as_dict()
                media.append(entry)
    if len(request.messages) == 1:
        text = request.messages[0].text
    else:
        text = "\n".join(f"[{m.role}] {m.text}" for m in request.messages)
    return {"text": text, "media": media, "choices": list(request.choices) or None}


def read_samples(path: str | Path) -> list[SampleResult]:
    results = []
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                results.append(SampleResult.from_json(orjson.loads(line)))
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"{path}:{number}: not a sample record: {exc}") from None
    return results


def git_commit(directory: Path) -> GitInfo | None:
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=directory, capture_output=True, text=True, timeout=5
        )
        if commit.returncode != 0:
            return None
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=directory,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return GitInfo(commit=commit.stdout.strip(), dirty=bool(status.stdout.strip()))


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    versions = {"python": platform.python_version(), "platform": platform.platform()}
    for name in ("pytest-lmms", "pytest", "numpy", "torch", "transformers", "pytest-xdist"):
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            continue
    return versions


def throughput(results: Sequence[SampleResult], wall_s: float) -> Throughput:
    computed = [r for r in results if not r.cached]
    latencies = sorted(r.latency_s for r in computed if r.latency_s is not None)
    first_tokens = sorted(r.ttft_s for r in computed if r.ttft_s is not None)

    def pct(q: float, values: list[float] = latencies) -> float | None:
        return values[min(len(values) - 1, int(q * len(values)))] if values else None

    out_tokens = sum(r.output_tokens or 0 for r in computed)
    return Throughput(
        samples=len(results),
        cached=len(results) - len(computed),
        # a likelihood sample is one request per option (an upper bound when some of its
        # options were answered from the cache)
        model_calls=sum(max(len(r.options), 1) for r in computed),
        input_tokens=sum(r.input_tokens or 0 for r in computed),
        output_tokens=out_tokens,
        wall_s=round(wall_s, 4),
        samples_per_s=round(len(results) / wall_s, 3) if wall_s > 0 else None,
        output_tokens_per_s=round(out_tokens / wall_s, 3) if wall_s > 0 else None,
        latency_p50_s=pct(0.5),
        latency_p95_s=pct(0.95),
        ttft_p50_s=pct(0.5, first_tokens),
        ttft_p95_s=pct(0.95, first_tokens),
    )
