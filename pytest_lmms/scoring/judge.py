"""LLM-as-judge: a benchmark's published judge prompt answered by any backend.

A benchmark declares its prompt once, at import, as a :class:`JudgePrompt` (name, template,
optional system message, token budget); its ``process_results`` takes a ``judge`` argument
and calls ``judge.ask(PROMPT, **fields)``. In a run, the judge is the model given by
``--judge-model`` (and ``--judge-model-args``): its requests go through the same response
cache, engine, concurrency control and retries as the model's, and the judge's model and
every prompt it was asked are recorded in results.json. Without ``--judge-model`` the
``judge`` argument is ``None`` and the benchmark falls back to its rules (or, if it cannot
be scored without a judge, says so).

Outside a run (``load_task`` in a notebook or a test), build one with
:meth:`Judge.from_model` or wrap any function from Request to Response.
"""

from __future__ import annotations

import string
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_lmms.types import GenParams, Message, Request, Response, TextPart

__all__ = ["Judge", "JudgeError", "JudgePrompt", "judge_prompts"]

_PROMPTS: dict[str, JudgePrompt] = {}
_PROMPTS_LOCK = threading.Lock()


class JudgeError(RuntimeError):
    """A judge call that failed (after the backend's retries) or a prompt that cannot render."""


@dataclass(frozen=True)
class JudgePrompt:
    """A judge prompt: ``template`` is a ``str.format`` string over named fields.

    Constructing one registers it by name, so results.json can record the exact text of
    every prompt a run's judge was asked. A later prompt of the same name replaces the
    earlier one (an edited benchmark module imported again), so name prompts after their
    benchmark ("mathvista_extract").
    """

    name: str
    template: str
    system: str | None = None
    max_new_tokens: int = 512

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a judge prompt needs a name")
        with _PROMPTS_LOCK:
            _PROMPTS[self.name] = self

    @property
    def fields(self) -> list[str]:
        return sorted({field for _, field, _, _ in string.Formatter().parse(self.template) if field})

    def render(self, **fields: Any) -> str:
        missing = [name for name in self.fields if name not in fields]
        if missing:
            raise JudgeError(f"judge prompt {self.name!r}: missing field(s) {', '.join(missing)}")
        return self.template.format(**fields)

    def request(self, **fields: Any) -> Request:
        messages = []
        if self.system:
            messages.append(Message("system", (TextPart(self.system),)))
        messages.append(Message("user", (TextPart(self.render(**fields)),)))
        return Request(
            task=f"judge:{self.name}",
            doc_id="",
            messages=tuple(messages),
            gen=GenParams(max_new_tokens=self.max_new_tokens, temperature=0.0),
        )

    def to_json(self) -> dict[str, Any]:
        return {"template": self.template, "system": self.system, "max_new_tokens": self.max_new_tokens}


def judge_prompts() -> dict[str, JudgePrompt]:
    """Every judge prompt registered in this process, by name."""
    with _PROMPTS_LOCK:
        return dict(_PROMPTS)


def prompt_records(names: Iterable[str]) -> dict[str, dict[str, Any] | None]:
    """The registered text of each named prompt, as results.json records it (None for a
    name this process never registered)."""
    prompts = judge_prompts()
    return {name: prompts[name].to_json() if name in prompts else None for name in sorted(set(names))}


class Judge:
    """Asks judge prompts of one model; ``complete`` sends a Request and returns its Response
    (in a run: through the judge model's engine and the response cache)."""

    def __init__(
        self,
        complete: Callable[[Request], Response],
        model: str = "custom",
        identity: Mapping[str, Any] | None = None,
        close: Callable[[], None] | None = None,
    ) -> None:
        self._complete = complete
        self.model = model
        self.identity = dict(identity or {"model": model})
        self._close = close
        self._lock = threading.Lock()
        self.calls = 0
        self.prompts_used: set[str] = set()

    def ask(self, prompt: JudgePrompt, /, **fields: Any) -> str:
        """The judge's answer to ``prompt`` filled with ``fields``; a failed call raises
        JudgeError (the sample fails; it is never scored on an error string)."""
        request = prompt.request(**fields)
        with self._lock:
            self.calls += 1
            self.prompts_used.add(prompt.name)
        try:
            response = self._complete(request)
        except Exception as exc:  # noqa: BLE001 - named with the prompt and the model
            raise JudgeError(
                f"judge {self.model} failed on prompt {prompt.name!r}: {type(exc).__name__}: {exc}"
            ) from exc
        return response.text

    def for_sample(self) -> SampleJudge:
        """A view that counts the calls made while scoring one sample."""
        return SampleJudge(self)

    def describe(self) -> dict[str, Any]:
        """What results.json records: the model, its identity and the prompts used."""
        return {"model": self.model, "identity": self.identity, "prompts": prompt_records(self.prompts_used)}

    def close(self) -> None:
        if self._close is not None:
            self._close()
            self._close = None

    @classmethod
    def from_model(
        cls, spec: str, args: Mapping[str, str] | None = None, cache_dir: str | Path | None = None
    ) -> Judge:
        """A judge on ``spec`` ("backend:model"), with an optional response cache folder."""
        from pytest_lmms.cache import ResponseCache, cache_key
        from pytest_lmms.models import create_backend
        from pytest_lmms.models._engine import Engine

        backend = create_backend(spec, dict(args or {}))
        identity = dict(backend.identity())
        cache = ResponseCache(Path(cache_dir)) if cache_dir is not None else None
        engine = Engine(lambda: backend, identity, cache)

        def complete(request: Request) -> Response:
            return engine.response(cache_key(identity, request), request).result()

        def close() -> None:
            engine.close()
            if cache is not None:
                cache.close()

        return cls(complete, spec, identity, close)


class SampleJudge:
    """The judge as one sample's scorer sees it: same model, its own call count."""

    def __init__(self, judge: Judge) -> None:
        self.judge = judge
        self.model = judge.model
        self.calls = 0
        self.prompts_used: list[str] = []
        # each call as the sample's record shows it: the prompt's name and the judge's reply
        self.log: list[dict[str, str]] = []

    def ask(self, prompt: JudgePrompt, /, **fields: Any) -> str:
        self.calls += 1
        if prompt.name not in self.prompts_used:
            self.prompts_used.append(prompt.name)
        reply = self.judge.ask(prompt, **fields)
        self.log.append({"prompt": prompt.name, "reply": reply})
        return reply
