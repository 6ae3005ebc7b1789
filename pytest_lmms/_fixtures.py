"""Session fixtures for tests users write by hand: the run's model, cache and judge, and a
way to put a hand-written probe's scores in the run's summary.

    def test_counts_apples(lmms_model, lmms_record):
        answer = lmms_model.ask("How many apples? Answer with a number.", images=["apples.png"])
        lmms_record("apple_probe", {"exact": float(answer.text.strip() == "3")})

``lmms_model.ask`` goes through the run's engine and response cache (a rerun makes no model
call), under the run's --model and --model-args. A probe recorded with ``lmms_record``
appears in the summary table and results.json as a task of its own, with an interval,
also under xdist (the scores travel in the test's report like a sample's).
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_lmms._session import LmmsSession, ModelRunner
    from pytest_lmms.types import Response


class ModelHandle:
    """One model of the run, as a hand-written test calls it."""

    def __init__(self, session: LmmsSession, runner: ModelRunner) -> None:
        self._session = session
        self._runner = runner
        self.spec = runner.spec

    @property
    def identity(self) -> Mapping[str, Any]:
        return self._runner.identity

    def ask(
        self,
        prompt: str,
        *,
        images: Sequence[str | Path | bytes] = (),
        max_new_tokens: int = 64,
        temperature: float = 0.0,
        system: str | None = None,
    ) -> Response:
        """The model's answer to ``prompt`` (with images, by path or bytes), through the cache.
        A failed call raises ``pytest_lmms.models.BackendError``."""
        from pytest_lmms.cache import cache_key
        from pytest_lmms.types import GenParams, MediaPart, MediaRef, Message, Request, TextPart

        parts: list[Any] = [MediaPart(MediaRef("image", image), "image") for image in images]
        parts.append(TextPart(prompt))
        messages = [Message("user", tuple(parts))]
        if system is not None:
            messages.insert(0, Message("system", (TextPart(system),)))
        doc_id = hashlib.sha256(prompt.encode()).hexdigest()[:12]
        request = Request(
            task="probe",
            doc_id=doc_id,
            messages=tuple(messages),
            gen=GenParams(max_new_tokens=max_new_tokens, temperature=temperature),
        )
        key = cache_key(self._runner.identity, request)
        return self._runner.engine.response(key, request).result()


def probe_record(task: str, scores: Mapping[str, float], doc_id: str, where: str) -> dict[str, Any]:
    """A probe's scores as a sample record (what a sample item ships in its report)."""
    from pytest_lmms.types import SampleResult

    record = SampleResult(
        task=task,
        doc_id=doc_id,
        target=None,
        response="",
        raw="",
        scores={str(k): float(v) for k, v in scores.items()},
        probe=where,
    ).to_json()
    return record
