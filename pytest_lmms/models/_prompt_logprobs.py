"""Log-probabilities from an OpenAI-compatible server (``kind="loglikelihood"`` requests).

The protocol is vLLM's chat endpoint with prompt log-probabilities: the context's messages,
then the continuation as the assistant's own message, rendered by the server's chat template
with ``add_generation_prompt: false, continue_final_message: true`` (the assistant turn is
left open after the continuation, exactly as the model would have written it), and
``prompt_logprobs: 1``: the answer's ``prompt_logprobs`` holds, per prompt token, the token's
log-probability and rank (and the top-1 token), keyed by token id. The chat endpoint was
chosen over ``/v1/completions`` with ``echo`` because the template is the server's (the client
has no tokenizer) and images go in as they do for generation.

The continuation's tokens are the trailing prompt tokens whose decoded text covers the
continuation: a token straddling the boundary counts with the continuation, as moving the
context's trailing whitespace onto the continuation does in the standard harnesses. Greedy
means every one of them has rank 1.

A server without the extension (the OpenAI API, SGLang's chat endpoint) is found by one
probe request before the first likelihood request: it fails every likelihood request with
one message saying what the server lacks, never one retry storm per sample.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pytest_lmms.models._base import BackendError
from pytest_lmms.types import Response

PROBE_MESSAGES = [{"role": "user", "content": "Say hi."}, {"role": "assistant", "content": "Hi"}]


def likelihood_body(
    model: str, messages: list[dict[str, Any]], continuation: str, max_tokens_field: str
) -> dict[str, Any]:
    """The request body asking for the prompt log-probabilities of context + continuation."""
    return {
        "model": model,
        "messages": [*messages, {"role": "assistant", "content": continuation}],
        max_tokens_field: 1,  # one token must be generated; it is not read
        "temperature": 0.0,
        "prompt_logprobs": 1,
        "add_generation_prompt": False,
        "continue_final_message": True,
    }


def continuation_of(body: Mapping[str, Any]) -> str:
    """The continuation a likelihood body asks about (its last message)."""
    return str(body["messages"][-1]["content"])


def _actual(entry: Mapping[str, Any]) -> Mapping[str, Any]:
    """The prompt token's own record in one position's entry: the entry holds it and the
    top-1 token; when they differ, the prompt token is the one whose rank is not 1."""
    records = list(entry.values())
    if len(records) == 1:
        return records[0]  # type: ignore[no-any-return]
    for record in records:
        if record.get("rank") != 1:
            return record  # type: ignore[no-any-return]
    return records[0]  # type: ignore[no-any-return]


def parse_prompt_logprobs(data: Mapping[str, Any], continuation: str, latency: float) -> Response:
    """A Response from a chat answer with ``prompt_logprobs``; KeyError / TypeError when the
    answer has none (read as a malformed body), BackendError when they do not cover the text."""
    entries: Sequence[Any] = data["prompt_logprobs"]
    if not isinstance(entries, list):
        raise TypeError("prompt_logprobs is not a list")
    covered = ""
    total = 0.0
    greedy = True
    count = 0
    for entry in reversed(entries):
        if len(covered) >= len(continuation):
            break
        if not entry:
            raise BackendError(
                f"the server's prompt log-probabilities do not cover the continuation {continuation!r}"
            )
        record = _actual(entry)
        covered = str(record.get("decoded_token") or "") + covered
        total += float(record["logprob"])
        greedy = greedy and record.get("rank") == 1
        count += 1
    if not covered.endswith(continuation):
        raise BackendError(
            f"the prompt's last tokens read {covered[-60:]!r}, not the continuation {continuation!r} "
            "(does the server's chat template close the assistant turn despite continue_final_message?)"
        )
    usage = data.get("usage") or {}
    return Response(
        text="",
        input_tokens=usage.get("prompt_tokens"),
        output_tokens=0,
        latency_s=latency,
        meta={"continuation_tokens": count},
        logprob=total,
        is_greedy=greedy,
    )


def probe_refusal(status: int, data: Any, url: str, backend: str) -> str | None:
    """Why a server cannot answer likelihood requests, from its answer to the probe; None
    when it gave prompt log-probabilities."""
    if status == 200 and isinstance(data, Mapping) and isinstance(data.get("prompt_logprobs"), list):
        return None
    answered = f"HTTP {status}: {str(data)[:200]}" if status != 200 else "an answer without prompt_logprobs"
    return (
        f"{backend} backend: the server at {url} gives no prompt log-probabilities, which "
        f"likelihood tasks need: to a chat request with prompt_logprobs=1 and "
        f"continue_final_message=true it gave {answered} (vLLM's OpenAI-compatible server has them)"
    )
