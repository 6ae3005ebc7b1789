"""Helpers shared by the tests: a scripted test backend and task folder builders."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# A backend for pytester sessions. It answers the text after "reply " in the prompt, so
# each document decides its own answer ("a|b|c" answers a, b, c to repeats 0, 1, 2); the
# model "worse" answers "nope" to every even doc id, and the model "down" fails every call. "FAIL" answers raise; every answered request is
# logged (one doc id per line) to $SCRIPTED_LOG, so tests count real model calls, and each
# batch's size to $SCRIPTED_BATCHES;
# $SCRIPTED_CRASH_AFTER=N kills the process with SIGKILL once N requests were answered
# (only in the xdist worker $SCRIPTED_CRASH_WORKER names, when it is set);
# each construction of the backend is logged to $SCRIPTED_INIT_LOG as "<xdist worker or
# main> <model id>"; $SCRIPTED_SLEEP sleeps that many seconds before each batch;
# $SCRIPTED_WORKER_LOG gets "<xdist worker or main> <doc id>" per answered request.
SCRIPTED_BACKEND = """
import os
import signal
import time

from pytest_lmms.models import register_model
from pytest_lmms.types import Response

_answered = [0]


@register_model("scripted")
class ScriptedBackend:
    name = "scripted"

    def __init__(self, model_id="", batch_size="4"):
        self.model_id = model_id
        self.max_batch_size = int(batch_size)
        constructed = os.environ.get("SCRIPTED_INIT_LOG")
        if constructed:
            with open(constructed, "a") as handle:
                handle.write(f"{os.environ.get('PYTEST_XDIST_WORKER', 'main')} {model_id}\\n")

    def identity(self):
        return {"backend": "scripted", "model": self.model_id}

    def generate(self, requests):
        crash_after = int(os.environ.get("SCRIPTED_CRASH_AFTER", "0"))
        # $SCRIPTED_CRASH_WORKER=gw1 limits the crash to that xdist worker
        crash_here = os.environ.get("SCRIPTED_CRASH_WORKER") in (None, os.environ.get("PYTEST_XDIST_WORKER"))
        if crash_after and crash_here and _answered[0] >= crash_after:
            os.kill(os.getpid(), signal.SIGKILL)
        # $SCRIPTED_SLEEP seconds per batch: a slow model, for Ctrl-C mid-run
        time.sleep(float(os.environ.get("SCRIPTED_SLEEP", "0")))
        out = []
        for request in requests:
            reply = request.prompt_text.rpartition("reply ")[2].strip()
            options = reply.split("|")
            reply = options[request.repeat % len(options)]
            if self.model_id == "worse" and int(request.doc_id) % 2 == 0:
                reply = "nope"
            if reply == "FAIL" or self.model_id == "down":
                out.append(RuntimeError(f"server said no to {request.doc_id}"))
            else:
                out.append(Response(text=reply, input_tokens=len(request.prompt_text), output_tokens=1, latency_s=0.001))
        batches = os.environ.get("SCRIPTED_BATCHES")
        if batches:
            with open(batches, "a") as handle:
                handle.write(f"{len(requests)}\\n")
        env_log = os.environ.get("SCRIPTED_ENV_LOG")
        if env_log:
            with open(env_log, "a") as handle:
                handle.write(f"{os.getpid()} {os.environ.get('CUDA_VISIBLE_DEVICES')}\\n")
        log = os.environ.get("SCRIPTED_LOG")
        if log:
            with open(log, "a") as handle:
                handle.writelines(f"{r.doc_id}\\n" for r, o in zip(requests, out) if isinstance(o, Response))
        worker_log = os.environ.get("SCRIPTED_WORKER_LOG")
        if worker_log:
            worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
            with open(worker_log, "a") as handle:
                handle.writelines(f"{worker} {r.doc_id}\\n" for r, o in zip(requests, out) if isinstance(o, Response))
        _answered[0] += len(requests)
        return out

    def close(self):
        pass
"""


def write_jsonl(path: Path, rows: Sequence[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
    return path


def qa_task_yaml(name: str, data: str, extra: str = "") -> str:
    return textwrap.dedent(
        f"""\
        task: {name}
        dataset_path: {data}
        doc_to_text: "Question {{{{ question }}}}: reply {{{{ reply }}}}"
        doc_to_target: answer
        generation_kwargs:
          max_new_tokens: 8
        metric_list:
          - metric: exact_match
        """
    ) + textwrap.dedent(extra)


def qa_rows(
    n: int, wrong: Sequence[int] = (), fail: Sequence[int] = (), cluster_size: int = 0
) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        answer = f"ans{i}"
        reply = "FAIL" if i in fail else ("nope" if i in wrong else answer)
        row: dict[str, Any] = {"id": str(i), "question": f"q{i}", "answer": answer, "reply": reply}
        if cluster_size:
            row["group"] = f"g{i // cluster_size}"
        rows.append(row)
    return rows


def model_calls(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []
