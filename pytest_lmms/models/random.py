"""A seeded chance-level baseline: answers each request with one of its options.

``--model=random:SEED`` (the model id is the seed; empty means 0). For a request with
choices the answer is one option's letter (``A``, ``B``, ...) or, with ``answer=text``,
the option's text; without choices it answers ``fallback`` (default ``"0"``). The pick
depends only on the seed, the task, the document id and the repeat index, so it is the
same in every run, process and xdist worker, whatever the order of requests.
A ``loglikelihood`` request gets a log-probability drawn the same way from the request and
its continuation (uniform in [-10, 0) nats, never greedy): a chance-level ranking.
"""

from __future__ import annotations

import hashlib
import string
from collections.abc import Mapping, Sequence
from typing import Any

from pytest_lmms.models._registry import register_model
from pytest_lmms.types import Request, Response

_LETTERS = string.ascii_uppercase


@register_model("random")
class RandomBackend:
    name = "random"
    max_batch_size = 4096
    request_kinds = frozenset({"generate", "loglikelihood"})

    def __init__(self, model_id: str = "", answer: str = "letter", fallback: str = "0") -> None:
        try:
            self.seed = int(model_id or 0)
        except ValueError:
            raise ValueError(
                f"random backend: the model id is the seed, an integer; got {model_id!r}"
            ) from None
        if answer not in ("letter", "text"):
            raise ValueError(f"random backend: answer must be 'letter' or 'text', got {answer!r}")
        self.answer = answer
        self.fallback = fallback

    def identity(self) -> Mapping[str, Any]:
        return {"backend": self.name, "seed": self.seed, "answer": self.answer, "fallback": self.fallback}

    def _pick(self, request: Request) -> str:
        if not request.choices:
            return self.fallback
        digest = hashlib.blake2b(
            f"{self.seed}\0{request.task}\0{request.doc_id}\0{request.repeat}".encode(), digest_size=8
        ).digest()
        index = int.from_bytes(digest, "little") % len(request.choices)
        return request.choices[index] if self.answer == "text" else _LETTERS[index]

    def _logprob(self, request: Request) -> float:
        digest = hashlib.blake2b(
            f"{self.seed}\0{request.task}\0{request.doc_id}\0{request.continuation}".encode(), digest_size=8
        ).digest()
        return -10.0 * (1.0 - int.from_bytes(digest, "little") / 2**64)

    def _answer(self, request: Request) -> Response:
        if request.kind == "loglikelihood":
            return Response(
                text="", output_tokens=0, latency_s=0.0, logprob=self._logprob(request), is_greedy=False
            )
        return Response(text=self._pick(request), input_tokens=0, output_tokens=1, latency_s=0.0)

    def generate(self, requests: Sequence[Request]) -> list[Response | BaseException]:
        return [self._answer(r) for r in requests]

    def close(self) -> None:
        pass
