"""Log-probabilities of continuations for the ``hf`` backend (``kind="loglikelihood"``).

One request is one (context, continuation) pair; the answer is ``log P(continuation |
context)`` in nats, summed over the continuation's tokens, and whether greedy decoding
would have produced exactly those tokens.

Tokenization at the boundary, as lm-evaluation-harness does it: the context is the chat
rendered with the model's chat template up to the opening of the assistant turn (with the
processor, so images, video frames and audio become the model's own placeholder tokens and
features); the continuation's tokens are those of ``context + continuation`` encoded whole,
past the token length of the context encoded alone. A model without a chat template sees
the messages' text joined by blank lines; there, trailing whitespace of the context is moved
onto the continuation (``"Answer: " + "B"`` is scored as ``"Answer:" + " B"``), so a space
is scored as part of the answer the way the word-initial tokens of BPE vocabularies carry
it. With a chat template the template's own text ends the context as it is.

Context sharing: requests with the same context (the N options of one question) are
grouped; the context runs through the model once, its key/value cache is repeated for the
options, and only the options' tokens run again, batched (right-padded, so no row attends
to another's padding). N options therefore cost one pass over the image tokens, not N.
With ``share_context=false`` (or a model whose cache cannot be reused) each pair runs as
one full sequence, context + continuation, which is also the reference the tests compare
against.
"""

from __future__ import annotations

import copy
import inspect
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pytest_lmms.types import Request, Response

if TYPE_CHECKING:
    from pytest_lmms.models.hf import HFBackend


@dataclass(slots=True)
class _Pair:
    """One request with its continuation's token ids."""

    index: int
    request: Request
    tokens: list[int]


def context_key(request: Request) -> str:
    """Requests with equal keys share one context (the messages with media hashes)."""
    import orjson

    return orjson.dumps(request.canonical()["messages"], option=orjson.OPT_SORT_KEYS).decode()


def loglikelihood(backend: HFBackend, requests: Sequence[Request]) -> list[Response | BaseException]:
    """Answer loglikelihood requests in order; a request that fails gets its exception."""
    groups: dict[str, list[int]] = {}
    for index, request in enumerate(requests):
        try:
            key = context_key(request)
        except Exception:  # noqa: BLE001 - unreadable media: the request fails on its own below
            key = f"\0{index}"
        groups.setdefault(key, []).append(index)
    results: list[Response | BaseException] = [RuntimeError("no result")] * len(requests)
    for indices in groups.values():
        try:
            answered = _score_context(backend, [requests[i] for i in indices])
        except Exception as exc:  # noqa: BLE001 - the context's requests fail, the rest go on
            answered = [exc] * len(indices)
        for index, output in zip(indices, answered, strict=True):
            results[index] = output
    return results


def _score_context(backend: HFBackend, requests: list[Request]) -> list[Response | BaseException]:
    import torch

    started = time.perf_counter()
    conversation = backend._conversation(requests[0])
    text, inputs = _encoded_context(backend, conversation)
    pairs: list[_Pair] = []
    out: list[Response | BaseException | None] = [None] * len(requests)
    for index, request in enumerate(requests):
        try:
            pairs.append(_Pair(index, request, _continuation_tokens(backend, text, request)))
        except ValueError as exc:
            out[index] = exc
    inputs = inputs.to(backend._device)
    if backend._is_multimodal():
        inputs = inputs.to(backend._model.dtype)
    context_length = int(inputs["input_ids"].shape[1])
    with torch.inference_mode():
        if backend.args.share_context:
            scored = _shared(backend, inputs, pairs)
        else:
            scored = [_alone(backend, inputs, pair) for pair in pairs]
    share = (time.perf_counter() - started) / max(len(requests), 1)
    for pair, (logprob, greedy) in zip(pairs, scored, strict=True):
        out[pair.index] = Response(
            text="",
            input_tokens=context_length + len(pair.tokens),
            output_tokens=0,
            latency_s=share,
            meta={"continuation_tokens": len(pair.tokens)},
            logprob=logprob,
            is_greedy=greedy,
        )
    return [o if o is not None else RuntimeError("no result") for o in out]


def _encoded_context(backend: HFBackend, conversation: list[dict[str, Any]]) -> tuple[str, Any]:
    """The context's text and its model inputs (one row)."""
    owner = backend._processor
    if getattr(owner, "chat_template", None) is None:
        text = "\n\n".join(str(message["content"]) for message in conversation).rstrip()
        return text, backend._tokenizer([text], return_tensors="pt")
    fresh = [dict(message) for message in conversation]
    text = owner.apply_chat_template(fresh, add_generation_prompt=True, tokenize=False)
    if isinstance(text, list):
        text = text[0]
    return str(text), backend._encode([conversation])


def _continuation_tokens(backend: HFBackend, context: str, request: Request) -> list[int]:
    continuation = request.continuation or ""
    if getattr(backend._processor, "chat_template", None) is None:
        # the whitespace the context ended with (stripped in _encoded_context) is the answer's
        source = "\n\n".join(m.text for m in request.messages)
        continuation = source[len(source.rstrip()) :] + continuation
    if not continuation:
        raise ValueError(f"{request.task}/{request.doc_id}: the continuation is empty")
    tokenizer = backend._tokenizer
    whole = tokenizer(context + continuation, add_special_tokens=False)["input_ids"]
    head = tokenizer(context, add_special_tokens=False)["input_ids"]
    tokens = list(whole[len(head) :])
    if not tokens:
        raise ValueError(f"{request.task}/{request.doc_id}: the continuation {continuation!r} has no tokens")
    return tokens


def _cache_argument(model: Any) -> str:
    """The forward argument taking a key/value cache (``cache`` in newer transformers)."""
    parameters = inspect.signature(model.forward).parameters
    return "cache" if "cache" in parameters else "past_key_values"


def _shared(backend: HFBackend, inputs: Any, pairs: list[_Pair]) -> list[tuple[float, bool]]:
    """The context once, then the continuations batched over its repeated cache."""
    import torch

    if not pairs:
        return []
    model = backend._model
    _forget_position_state(model)
    prefill = model(**inputs, use_cache=True)
    cache = getattr(prefill, "past_key_values", None)
    if cache is None or not hasattr(cache, "batch_repeat_interleave"):
        return [_alone(backend, inputs, pair) for pair in pairs]
    last = torch.log_softmax(prefill.logits[0, -1].float(), dim=-1)
    scored: dict[int, tuple[float, bool]] = {}
    longer: list[_Pair] = []
    for pair in pairs:
        if len(pair.tokens) == 1:  # one token: the context's last logits are all it needs
            token = pair.tokens[0]
            scored[pair.index] = (float(last[token]), int(last.argmax()) == token)
        else:
            longer.append(pair)
    size = backend.args.batch_size
    argument = _cache_argument(model)
    for start in range(0, len(longer), size):
        chunk = longer[start : start + size]
        for pair, value in zip(chunk, _continue(backend, cache, argument, last, chunk), strict=True):
            scored[pair.index] = value
    return [scored[pair.index] for pair in pairs]


def _forget_position_state(model: Any) -> None:
    """Drop position offsets a model keeps from its last prefill (M-RoPE models store
    ``rope_deltas`` and reuse them for every cached step): a text-only context does not
    overwrite them, so the options after it would be placed as if the previous context's
    image were there."""
    for module in model.modules():
        if getattr(module, "rope_deltas", None) is not None:
            module.rope_deltas = None


def _continue(
    backend: HFBackend, cache: Any, argument: str, last: Any, chunk: list[_Pair]
) -> list[tuple[float, bool]]:
    """Feed each continuation's tokens but its last after the context's cache, right-padded:
    causal attention keeps every real token away from the padding that follows it, so no
    attention mask is needed and positions continue from the context on every row."""
    import torch

    width = max(len(pair.tokens) for pair in chunk) - 1
    pad = backend._tokenizer.pad_token_id or 0
    ids = torch.full((len(chunk), width), pad, dtype=torch.long)
    for row, pair in enumerate(chunk):
        ids[row, : len(pair.tokens) - 1] = torch.tensor(pair.tokens[:-1])
    repeated = copy.deepcopy(cache)  # the forward pass extends the cache in place
    repeated.batch_repeat_interleave(len(chunk))
    output = backend._model(input_ids=ids.to(backend._device), use_cache=True, **{argument: repeated})
    logprobs = torch.log_softmax(output.logits.float(), dim=-1)
    out = []
    for row, pair in enumerate(chunk):
        rows = [last, *(logprobs[row, j] for j in range(len(pair.tokens) - 1))]
        out.append(_sum(rows, pair.tokens))
    return out


def _alone(backend: HFBackend, inputs: Any, pair: _Pair) -> tuple[float, bool]:
    """One full forward pass over context + continuation."""
    import torch

    length = int(inputs["input_ids"].shape[1])
    tokens = torch.tensor([pair.tokens], dtype=torch.long, device=backend._device)
    full: dict[str, Any] = {}
    for name, value in inputs.items():
        if isinstance(value, torch.Tensor) and value.dim() == 2 and value.shape == (1, length):
            # per-token rows: ids get the continuation, the mask ones, type ids 0 (text)
            if name == "input_ids":
                extra = tokens
            elif name == "attention_mask":
                extra = torch.ones_like(tokens, dtype=value.dtype)
            else:
                extra = torch.zeros_like(tokens, dtype=value.dtype)
            full[name] = torch.cat([value, extra], dim=1)
        else:
            full[name] = value
    logits = backend._model(**full).logits[0].float()
    logprobs = torch.log_softmax(logits[length - 1 : length - 1 + len(pair.tokens)], dim=-1)
    return _sum(list(logprobs), pair.tokens)


def _sum(rows: Sequence[Any], tokens: Sequence[int]) -> tuple[float, bool]:
    """Sum of each token's log-probability, and whether each token was the argmax."""
    total = 0.0
    greedy = True
    for row, token in zip(rows, tokens, strict=True):
        total += float(row[token])
        greedy = greedy and int(row.argmax()) == token
    return total, greedy
