"""Likelihood tasks: ``output_type: multiple_choice`` and ``output_type: loglikelihood``.

A sample of such a task is N requests, one (context, continuation) pair each
(``Request(kind="loglikelihood", continuation=...)``, one cache entry per pair): the context
is the document's messages (``doc_to_messages`` / ``doc_to_text`` + ``doc_to_visual``), the
continuations are the options of ``doc_to_choice`` as written (add a leading space to them
where the context is raw text that ends before the answer), or, for ``loglikelihood``, the
single text of ``doc_to_target``. Generation parameters play no part (a log-probability is
not sampled): every repeat and every ``--lmms-gen-kwargs`` reuses the same pairs.

multiple_choice metrics (each a mean with its interval):

- ``acc``: 1 when the option of highest total log-probability is the target;
- ``acc_norm``: the same with each option's log-probability divided by its length in bytes
  of UTF-8 (lm-evaluation-harness divides by characters; bytes do not favour scripts whose
  characters take several bytes per token).

The target (``doc_to_target``) is an option's index (an int), the option's text, or its
letter (``"A"`` is the first option), looked up in that order; a digit string counts as an
index only when it is not an option's text.

loglikelihood metrics (corpus-level, with a cluster-bootstrap interval): ``word_perplexity``
``exp(-sum logprob / sum words)`` (words split on whitespace), ``byte_perplexity``
``exp(-sum logprob / sum bytes)``, ``bits_per_byte`` ``-sum logprob / (sum bytes * ln 2)``,
``perplexity`` ``exp(-mean logprob per document)``; and ``acc``, the share of documents whose
target greedy decoding would produce (a mean).

Any other metric of ``metric_list`` (or a ``process_results``) scores the chosen option's
text as if the model had answered it, so a benchmark's own scorer (MME's per-category
acc+, MMBench's circular accuracy) works on its likelihood variant unchanged.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from pytest_lmms.types import GenParams, Request, Response, SampleResult

if TYPE_CHECKING:
    from pytest_lmms.tasks._task import Task

CHOICE_METRICS = ("acc", "acc_norm")
CORPUS_METRICS = ("word_perplexity", "byte_perplexity", "bits_per_byte", "perplexity")
LIKELIHOOD_METRICS = frozenset({*CHOICE_METRICS, *CORPUS_METRICS})
DEFAULT_METRICS = {"multiple_choice": CHOICE_METRICS, "loglikelihood": CORPUS_METRICS[:3]}
_LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
# a log-probability's GenParams: fixed, so no generation setting changes a pair's cache key
_NO_GENERATION = GenParams(max_new_tokens=0)


# ---- requests --------------------------------------------------------------------------


def continuations(task: Task, doc: Mapping[str, Any]) -> list[str]:
    """The texts whose log-probability is asked: the options, or the target alone."""
    if task.spec.output_type == "loglikelihood":
        return [str(task.target(doc))]
    options = task.choices(doc)
    if not options:
        raise ValueError(f"task {task.name!r}: multiple_choice needs doc_to_choice options, got none")
    return options


def likelihood_requests(task: Task, doc: Mapping[str, Any]) -> list[Request]:
    """One loglikelihood request per continuation. The options are not in the requests'
    ``choices``: a new option then costs only its own pair, never the others' cache entries."""
    messages = task.messages(doc)
    doc_id = task.doc_id_of(doc)
    return [
        Request(
            task=task.name,
            doc_id=doc_id,
            messages=messages,
            gen=_NO_GENERATION,
            kind="loglikelihood",
            continuation=text,
        )
        for text in continuations(task, doc)
    ]


# ---- scoring ---------------------------------------------------------------------------


def target_index(target: Any, options: Sequence[str]) -> int:
    """The target as an option index: an int, an option's text, a letter, or a digit string."""
    if isinstance(target, bool):
        raise ValueError(f"target {target!r} names no option")
    if isinstance(target, int):
        index = target
    else:
        text = str(target).strip()
        if text in options:
            return list(options).index(text)
        if len(text) == 1 and text.upper() in _LETTERS:
            index = _LETTERS.index(text.upper())
        elif text.isdigit():
            index = int(text)
        else:
            raise ValueError(
                f"target {target!r} is neither an option, a letter nor an index of {list(options)}"
            )
    if not 0 <= index < len(options):
        raise ValueError(f"target {target!r} is out of range for {len(options)} options")
    return index


def option_records(options: Sequence[str], responses: Sequence[Response]) -> list[dict[str, Any]]:
    """What SampleResult.options records per option; ``length`` is in bytes of UTF-8."""
    records = []
    for text, response in zip(options, responses, strict=True):
        if response.logprob is None:
            raise ValueError(f"the backend gave no log-probability for option {text!r}")
        records.append(
            {
                "choice": text,
                "logprob": float(response.logprob),
                "length": len(text.encode("utf-8")),
                "is_greedy": bool(response.is_greedy),
            }
        )
    return records


def _argmax(values: Sequence[float]) -> int:
    # the first of equal maxima, as numpy's argmax: a tie never depends on option order twice
    return max(range(len(values)), key=lambda i: (values[i], -i))


def choice_scores(records: Sequence[Mapping[str, Any]], target: int) -> tuple[dict[str, float], int]:
    """acc, acc_norm, and the index of the option of highest total log-probability."""
    totals = [float(r["logprob"]) for r in records]
    normalized = [float(r["logprob"]) / max(int(r["length"]), 1) for r in records]
    chosen = _argmax(totals)
    scores = {"acc": float(chosen == target), "acc_norm": float(_argmax(normalized) == target)}
    return scores, chosen


def _capped_exp(value: float) -> float:
    return math.exp(min(value, 700.0))  # a per-document perplexity stays a finite JSON number


def continuation_scores(record: Mapping[str, Any]) -> dict[str, float]:
    """One document's perplexity-style scores (the corpus values come from the aggregation)."""
    logprob, length = float(record["logprob"]), max(int(record["length"]), 1)
    words = max(len(str(record["choice"]).split()), 1)
    return {
        "word_perplexity": _capped_exp(-logprob / words),
        "byte_perplexity": _capped_exp(-logprob / length),
        "bits_per_byte": -logprob / (length * math.log(2)),
        "perplexity": _capped_exp(-logprob),
        "acc": float(bool(record["is_greedy"])),
    }


def score_sample(
    task: Task, doc: Mapping[str, Any], responses: Sequence[Response]
) -> tuple[dict[str, float], list[dict[str, Any]], str, Any]:
    """Scores, per-option records, the response text (the chosen option) and the extracted
    answer (the chosen option's index) of one likelihood sample."""
    texts = continuations(task, doc)
    records = option_records(texts, responses)
    if task.spec.output_type == "loglikelihood":
        scores = continuation_scores(records[0])
        return _wanted(task, scores), records, texts[0], None
    scores, chosen = choice_scores(records, target_index(task.target(doc), texts))
    scores = _wanted(task, scores)
    if task.spec.process_results is not None or any(m not in LIKELIHOOD_METRICS for m in task.metric_names):
        # the benchmark's own scorer, on the chosen option as if it were the answer
        scores.update(task.score(doc, texts[chosen]))
    return scores, records, texts[chosen], chosen


def _wanted(task: Task, scores: dict[str, float]) -> dict[str, float]:
    names = set(task.metric_names)
    return {name: value for name, value in scores.items() if name in names}


# ---- corpus aggregation ----------------------------------------------------------------


def _sums(results: Sequence[SampleResult]) -> tuple[float, int, int]:
    logprob = 0.0
    words = length = 0
    for result in results:
        if not result.options:
            raise ValueError(f"sample {result.doc_id!r} has no option record (not a likelihood result)")
        record = result.options[0]
        logprob += float(record["logprob"])
        length += max(int(record["length"]), 1)
        words += max(len(str(record["choice"]).split()), 1)
    return float(logprob), words, length


def word_perplexity(results: Sequence[SampleResult]) -> float:
    logprob, words, _ = _sums(results)
    return math.exp(-logprob / words)


def byte_perplexity(results: Sequence[SampleResult]) -> float:
    logprob, _, length = _sums(results)
    return math.exp(-logprob / length)


def bits_per_byte(results: Sequence[SampleResult]) -> float:
    logprob, _, length = _sums(results)
    return -logprob / (length * math.log(2))


def perplexity(results: Sequence[SampleResult]) -> float:
    logprob, _, _ = _sums(results)
    return math.exp(-logprob / len(results))


AGGREGATIONS: dict[str, Callable[[Sequence[SampleResult]], float]] = {
    "word_perplexity": word_perplexity,
    "byte_perplexity": byte_perplexity,
    "bits_per_byte": bits_per_byte,
    "perplexity": perplexity,
}
# lower is better for these; a YAML may still say so itself
LOWER_IS_BETTER = frozenset(AGGREGATIONS)


# ---- the sample item's side ------------------------------------------------------------


def render_sample(
    session: Any, task: Task, doc_id: str
) -> tuple[tuple[tuple[str, ...], ...], tuple[Request, ...], dict[str, Any]]:
    """The pairs of one sample, each with its cache key for every model of the run."""
    from pytest_lmms.cache import cache_key

    doc = task.doc(doc_id)
    requests = tuple(likelihood_requests(task, doc))
    keys = tuple(
        tuple(cache_key(model.identity, request) for model in session.models) for request in requests
    )
    return keys, requests, doc


def answer_sample(
    session: Any, task: Task, doc_id: str, repeat: int, planned: Any
) -> list[tuple[dict[str, Any], bool]]:
    """Wait for every pair of one sample (per model of the run) and score it: the results
    as JSON records, each with whether it is the baseline model's."""
    from pytest_lmms._session import SampleFailure

    if planned is None:
        try:
            planned = render_sample(session, task, doc_id)
        except Exception as exc:  # noqa: BLE001
            raise SampleFailure(f"could not render the requests: {type(exc).__name__}: {exc}") from exc
    keys, requests, doc = planned
    out = []
    for index, model in enumerate(session.models):
        futures = [
            model.engine.response(key[index], request) for key, request in zip(keys, requests, strict=True)
        ]
        responses = []
        for future in futures:
            try:
                responses.append(future.result())
            except Exception as exc:  # noqa: BLE001 - a failed call is never scored
                who = "model" if index == 0 else f"baseline model ({model.spec})"
                raise SampleFailure(f"{who} call failed: {type(exc).__name__}: {exc}") from exc
        out.append((_result(task, doc, doc_id, repeat, requests, responses), index > 0))
    return out


def _result(
    task: Task,
    doc: Mapping[str, Any],
    doc_id: str,
    repeat: int,
    requests: Sequence[Request],
    responses: Sequence[Response],
) -> dict[str, Any]:
    from pytest_lmms._session import SampleFailure
    from pytest_lmms.report import prompt_record

    try:
        scores, records, text, chosen = score_sample(task, doc, responses)
        target = task.target(doc)
        cluster_id = task.cluster_id(doc)
    except Exception as exc:  # noqa: BLE001
        raise SampleFailure(f"scoring failed: {type(exc).__name__}: {exc}") from exc
    shown = dataclasses.replace(
        requests[0], choices=tuple(r.continuation or "" for r in requests), continuation=None
    )
    latencies = [r.latency_s for r in responses if r.latency_s is not None]
    inputs = [r.input_tokens for r in responses if r.input_tokens is not None]
    return SampleResult(
        task=task.name,
        doc_id=doc_id,
        cluster_id=cluster_id,
        repeat=repeat,
        target=target if isinstance(target, (str, int, float, bool, type(None))) else str(target),
        response=text,
        raw=text,
        scores=scores,
        cached=all(r.cached for r in responses),
        latency_s=sum(latencies) if latencies else None,
        input_tokens=sum(inputs) if inputs else None,
        output_tokens=0,
        prompt=prompt_record(shown),
        extracted=chosen,
        options=tuple(records),
    ).to_json()


def refuse_unsupported(session: Any, tasks: Sequence[Task]) -> str | None:
    """Why a likelihood task cannot run on a model of the run (a backend that declares no
    ``loglikelihood`` in its ``request_kinds``), or None. Said once, at collection."""
    likelihood = sorted({task.name for task in tasks if task.kind == "loglikelihood"})
    if not likelihood:
        return None
    for model in session.models:
        kinds = getattr(model.backend, "request_kinds", frozenset({"generate"}))
        if "loglikelihood" not in kinds:
            named = ", ".join(likelihood[:3]) + (
                f" and {len(likelihood) - 3} more" if len(likelihood) > 3 else ""
            )
            return (
                f"{model.option}={model.spec}: task {named} ranks options by log-probability, but the "
                f"{getattr(model.backend, 'name', model.spec)} backend gives no log-probabilities "
                "(use hf, vllm, or an OpenAI-compatible server that returns prompt log-probabilities)"
            )
    return None
