"""Likelihood tasks without a model: requests per option, targets, acc / acc_norm, corpus
perplexities, the prompt-log-probability parser, and the MME / MMBench likelihood variants."""

from __future__ import annotations

import io
import json
import math
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from pytest_lmms import stats
from pytest_lmms.cache import cache_key
from pytest_lmms.models._base import BackendError
from pytest_lmms.models._prompt_logprobs import parse_prompt_logprobs
from pytest_lmms.tasks import load_task
from pytest_lmms.tasks._likelihood import (
    bits_per_byte,
    byte_perplexity,
    choice_scores,
    likelihood_requests,
    score_sample,
    target_index,
    word_perplexity,
)
from pytest_lmms.types import Response, SampleResult

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def answers(*logprobs: float) -> list[Response]:
    return [Response(text="", logprob=value, is_greedy=False) for value in logprobs]


@pytest.mark.parametrize(
    ("target", "index"),
    [(2, 2), ("dog", 1), ("B", 1), ("c", 2), ("0", 0), ("A", 0)],
)
def test_a_target_is_an_index_an_option_or_a_letter(target: Any, index: int) -> None:
    assert target_index(target, ["cat", "dog", "cow"]) == index


def test_an_option_text_wins_over_a_letter_or_an_index() -> None:
    assert target_index("B", ["A", "B"]) == 1  # the option "B", not the letter
    assert target_index("1", ["2", "1"]) == 1  # the option "1", not index 1
    with pytest.raises(ValueError, match="out of range"):
        target_index("D", ["cat", "dog"])
    with pytest.raises(ValueError, match="neither an option"):
        target_index("horse", ["cat", "dog"])


def test_acc_takes_the_total_and_acc_norm_the_log_probability_per_byte() -> None:
    records = [
        {"choice": "ox", "logprob": -4.0, "length": 2},  # -2.0 per byte
        {"choice": "elephant", "logprob": -8.0, "length": 8},  # -1.0 per byte
    ]
    scores, chosen = choice_scores(records, target=1)
    assert chosen == 0
    assert scores == {"acc": 0.0, "acc_norm": 1.0}


def test_the_length_of_acc_norm_is_in_bytes_of_utf8(tmp_path: Path) -> None:
    (tmp_path / "d.jsonl").write_text(json.dumps({"id": "1", "q": "?", "o": ["é", "ab"], "a": 0}) + "\n")
    (tmp_path / "t.yaml").write_text(
        "task: t\ndataset_path: d.jsonl\noutput_type: multiple_choice\ndoc_to_text: q\n"
        "doc_to_choice: o\ndoc_to_target: a\n"
    )
    task = load_task(tmp_path / "t.yaml")
    scores, records, text, chosen = score_sample(task, task.doc("1"), answers(-1.0, -1.5))
    assert [r["length"] for r in records] == [2, 2]  # "é" is two bytes
    assert (text, chosen, scores) == ("é", 0, {"acc": 1.0, "acc_norm": 1.0})
    assert task.metric_names == ["acc", "acc_norm"]  # the defaults of multiple_choice


def toy_task(tmp_path: Path, extra: str = "") -> Any:
    rows = [
        {"id": "1", "q": "Which barks?", "o": ["cat", "dog"], "a": 1},
        {"id": "2", "q": "Which moos?", "o": ["cow", "dog", "hen"], "a": "cow"},
    ]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "t.yaml").write_text(
        "task: t\ndataset_path: d.jsonl\noutput_type: multiple_choice\ndoc_to_text: q\n"
        f"doc_to_choice: o\ndoc_to_target: a\n{extra}"
    )
    return load_task(tmp_path / "t.yaml")


def test_one_request_per_option_each_its_own_cache_entry(tmp_path: Path) -> None:
    task = toy_task(tmp_path)
    requests = likelihood_requests(task, task.doc("2"))
    assert [r.continuation for r in requests] == ["cow", "dog", "hen"]
    assert all(r.kind == "loglikelihood" and r.choices == () for r in requests)
    assert len({r.messages for r in requests}) == 1
    identity = {"backend": "x"}
    keys = [cache_key(identity, r) for r in requests]
    assert len(set(keys)) == 3
    # another option list and other generation settings leave a pair's key as it was
    (tmp_path / "b").mkdir()
    other = toy_task(tmp_path / "b", "generation_kwargs:\n  max_new_tokens: 3\n")
    assert cache_key(identity, likelihood_requests(other, other.doc("2"))[0]) == keys[0]


def caption_task(tmp_path: Path) -> Any:
    rows = [{"id": "1", "text": "two red circles"}, {"id": "2", "text": "one square"}]
    (tmp_path / "c.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "c.yaml").write_text(
        "task: c\ndataset_path: c.jsonl\noutput_type: loglikelihood\ndoc_to_text: Describe.\ndoc_to_target: text\n"
    )
    return load_task(tmp_path / "c.yaml")


def test_loglikelihood_tasks_give_corpus_perplexities_with_bootstrap_intervals(tmp_path: Path) -> None:
    task = caption_task(tmp_path)
    assert task.metric_names == ["word_perplexity", "byte_perplexity", "bits_per_byte"]
    assert not task.higher_is_better("word_perplexity")
    results = []
    for doc_id, logprob in (("1", -6.0), ("2", -3.0)):
        doc = task.doc(doc_id)
        scores, records, _, _ = score_sample(task, doc, answers(logprob))
        results.append(SampleResult("c", doc_id, None, "", "", scores, options=tuple(records)))
    # corpus formulas: 3 + 2 words, 15 + 10 bytes
    assert word_perplexity(results) == pytest.approx(math.exp(9 / 5))
    assert byte_perplexity(results) == pytest.approx(math.exp(9 / 25))
    assert bits_per_byte(results) == pytest.approx(9 / (25 * math.log(2)))
    estimates = task.aggregate(results * 5)
    assert estimates["word_perplexity"].value == pytest.approx(math.exp(9 / 5))
    assert estimates["word_perplexity"].method == stats.bootstrap(results * 5, word_perplexity).method


def vllm_entry(token_id: int, logprob: float, rank: int, text: str) -> dict[str, Any]:
    entry = {str(token_id): {"logprob": logprob, "rank": rank, "decoded_token": text}}
    if rank != 1:
        entry["99"] = {"logprob": -0.1, "rank": 1, "decoded_token": "x"}
    return entry


def test_prompt_logprobs_sum_the_tokens_covering_the_continuation() -> None:
    data = {
        "prompt_logprobs": [
            None,
            vllm_entry(1, -0.5, 1, "Answer"),
            vllm_entry(2, -1.0, 1, ":"),
            vllm_entry(3, -2.0, 3, " gre"),
            vllm_entry(4, -0.25, 1, "en"),
        ],
        "usage": {"prompt_tokens": 5},
    }
    response = parse_prompt_logprobs(data, "green", 0.1)
    # " gre" straddles the boundary: it counts with the continuation, its space included
    assert response.logprob == pytest.approx(-2.25)
    assert response.is_greedy is False  # " gre" had rank 3
    assert parse_prompt_logprobs(data, "en", 0.1).is_greedy is True
    with pytest.raises(BackendError, match="not the continuation"):
        parse_prompt_logprobs(data, "blue", 0.1)


# ---- benchmark variants ------------------------------------------------------------------


def image_file(folder: Path) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="PNG")
    (folder / "img.png").write_bytes(buffer.getvalue())


def test_mme_ppl_asks_yes_and_no_and_scores_with_mmes_rules(tmp_path: Path) -> None:
    image_file(tmp_path)
    rows = [("existence/1.png", "existence", "Yes"), ("existence/1.png", "existence", "No")]
    with open(tmp_path / "rows.jsonl", "w") as handle:
        for question_id, category, answer in rows:
            image = {"bytes": None, "path": "img.png"}
            row = {
                "question_id": question_id,
                "image": image,
                "question": "A dog? Please answer yes or no.",
                "answer": answer,
                "category": category,
            }
            handle.write(json.dumps(row) + "\n")
    (tmp_path / "f.yaml").write_text(
        f"include: {BENCHMARKS / 'mme' / 'mme_ppl.yaml'}\ntask: f\ndataset_path: rows.jsonl\n"
    )
    task = load_task(tmp_path / "f.yaml")
    assert task.metric_names == ["acc", "acc_norm", "mme_perception", "mme_cognition"]
    results = []
    for doc_id in ("0", "1"):
        doc = task.doc(doc_id)
        requests = likelihood_requests(task, doc)
        assert [r.continuation for r in requests] == ["Yes", "No"]
        assert requests[0].messages[0].text.endswith("Answer the question using a single word or phrase.")
        scores, _, text, _ = score_sample(task, doc, answers(-1.0, -2.0))  # "Yes" is more likely
        assert text == "Yes"
        results.append(
            SampleResult("f", doc_id, doc["answer"], text, text, scores, cluster_id=task.cluster_id(doc))
        )
    assert [r.scores["acc"] for r in results] == [1.0, 0.0]
    assert results[0].scores["cat_existence"] == 1.0 and results[1].scores["mme_perception"] == 0.0
    assert task.aggregate(results)["mme_perception"].value == pytest.approx(50.0)  # acc 50 + acc+ 0


def test_mmbench_ppl_scores_the_option_texts_with_circular_accuracy(tmp_path: Path) -> None:
    image_file(tmp_path)
    base = {
        "question": "Which animal?",
        "hint": "nan",
        "A": "cat",
        "B": "bird",
        "C": "fish",
        "D": "nan",
        "category": "ocr",
        "L2-category": "coarse_perception",
        "image": {"bytes": None, "path": "img.png"},
    }
    rows = [
        {**base, "index": "5", "answer": "A"},
        {**base, "index": "1000005", "A": "bird", "B": "cat", "answer": "B"},
    ]
    (tmp_path / "rows.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "f.yaml").write_text(
        f"include: {BENCHMARKS / 'mmbench' / 'mmbench_en_dev_ppl.yaml'}\ntask: f\ndataset_path: rows.jsonl\n"
    )
    task = load_task(tmp_path / "f.yaml")
    results = []
    for doc_id, logprobs in (("5", (-1.0, -3.0, -4.0)), ("1000005", (-3.0, -1.0, -4.0))):
        doc = task.doc(doc_id)
        requests = likelihood_requests(task, doc)
        assert requests[0].messages[0].text == "Which animal?\nAnswer with the correct option."
        scores, _, text, _ = score_sample(task, doc, answers(*logprobs))
        assert text == "cat"
        results.append(
            SampleResult("f", doc_id, doc["answer"], text, text, scores, cluster_id=task.cluster_id(doc))
        )
    assert [r.scores["acc"] for r in results] == [1.0, 1.0]
    assert results[0].scores["l2_CP"] == 1.0
    assert task.aggregate(results)["circular_accuracy"].value == 1.0
