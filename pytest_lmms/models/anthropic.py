"""``anthropic``: the Messages API, with images.

    --model=anthropic:claude-sonnet-4-5    (key from $ANTHROPIC_API_KEY)

The same client as ``openai`` (adaptive concurrency, retries, backoff, ``Retry-After``;
529 "overloaded" counts as a rate limit): only the request body, headers and response
shape differ. System messages go to the top-level ``system`` field.
"""

from __future__ import annotations

from typing import Any

import orjson

from pytest_lmms.models._base import BackendError
from pytest_lmms.models._registry import register_model
from pytest_lmms.models.openai import OpenAIBackend
from pytest_lmms.types import MediaPart, Request, Response, TextPart

API_VERSION = "2023-06-01"


@register_model("anthropic")
class AnthropicBackend(OpenAIBackend):
    name = "anthropic"
    ENDPOINT = "/v1/messages"
    DEFAULT_BASE_URL = "https://api.anthropic.com"
    BASE_URL_ENV = "ANTHROPIC_BASE_URL"
    KEY_ENV = "ANTHROPIC_API_KEY"
    # the Messages API returns no log-probabilities: likelihood tasks are refused at collection
    request_kinds = frozenset({"generate"})

    def __init__(self, model_id: str, **args: Any) -> None:
        super().__init__(model_id, **args)
        if self.args.stream:
            raise ValueError("anthropic backend: stream=true is not supported yet")

    def auth_headers(self, key: str | None) -> dict[str, str]:
        headers = {"anthropic-version": API_VERSION}
        if key:
            headers["x-api-key"] = key
        return headers

    def _part(self, part: TextPart | MediaPart) -> dict[str, Any]:
        if isinstance(part, TextPart):
            return {"type": "text", "text": part.text}
        if part.type != "image":
            raise BackendError(f"anthropic backend: {part.type} parts are not supported by the Messages API")
        mime, data = self._media.get(part.media)
        return {"type": "image", "source": {"type": "base64", "media_type": mime, "data": data}}

    def body(self, request: Request) -> bytes:
        if request.kind != "generate":
            raise BackendError(f"anthropic backend: {request.kind} requests are not supported")
        system = [m.text for m in request.messages if m.role == "system"]
        messages = [
            {"role": m.role, "content": [self._part(p) for p in m.content]}
            for m in request.messages
            if m.role != "system"
        ]
        gen = request.gen
        body: dict[str, Any] = {
            "model": self.model_id,
            "messages": messages,
            "max_tokens": gen.max_new_tokens,
            "temperature": gen.temperature,
        }
        if system:
            body["system"] = "\n\n".join(system)
        if gen.top_p != 1.0:
            body["top_p"] = gen.top_p
        if gen.stop:
            body["stop_sequences"] = list(gen.stop)
        return orjson.dumps(body)

    def parse(self, data: Any, latency: float) -> Response:
        blocks = data["content"]
        text = "".join(block["text"] for block in blocks if block.get("type") == "text")
        usage = data.get("usage") or {}
        return Response(
            text=text,
            input_tokens=usage.get("input_tokens"),
            output_tokens=usage.get("output_tokens"),
            latency_s=latency,
            meta={"stop_reason": data.get("stop_reason")},
        )
