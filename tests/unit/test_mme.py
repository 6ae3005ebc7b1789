"""MME: prompt, the official yes/no parser, acc / acc+ per category, and the totals."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from PIL import Image

from pytest_lmms.tasks import load_task
from pytest_lmms.types import SampleResult

MME_YAML = Path(__file__).resolve().parents[2] / "benchmarks" / "mme" / "mme.yaml"

# (question_id, category, answer) in the dataset's schema: two questions per image
ROWS = [
    ("existence/1.png", "existence", "Yes"),
    ("existence/1.png", "existence", "No"),
    ("existence/2.png", "existence", "Yes"),
    ("existence/2.png", "existence", "No"),
    ("code_reasoning/7.png", "code_reasoning", "Yes"),
    ("code_reasoning/7.png", "code_reasoning", "No"),
]


@pytest.fixture
def mme(tmp_path: Path):  # type: ignore[no-untyped-def]
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), (0, 128, 255)).save(buffer, format="PNG")
    (tmp_path / "img.png").write_bytes(buffer.getvalue())
    with open(tmp_path / "rows.jsonl", "w") as handle:
        for question_id, category, answer in ROWS:
            row = {
                "question_id": question_id,
                "image": {"bytes": None, "path": "img.png"},
                "question": "Is there a dog in this image? Please answer yes or no.",
                "answer": answer,
                "category": category,
            }
            handle.write(json.dumps(row) + "\n")
    (tmp_path / "fixture.yaml").write_text(
        f"include: {MME_YAML}\ntask: mme_fixture\ndataset_path: rows.jsonl\n"
    )
    return load_task(tmp_path / "fixture.yaml")


def test_prompt_is_lmms_evals_the_question_without_its_instruction_then_the_post_prompt(mme) -> None:  # type: ignore[no-untyped-def]
    request = mme.request(mme.doc("0"))
    (message,) = request.messages
    assert [part.type for part in message.content] == ["image", "text"]
    assert message.text == "Is there a dog in this image?\nAnswer the question using a single word or phrase."


@pytest.mark.parametrize(
    ("response", "right_for_yes"),
    [
        ("Yes", 1.0),
        ("yes", 1.0),
        (" YES ", 1.0),
        ("Yes, there is a dog.", 1.0),
        ("No.", 0.0),
        ("There is a dog.", 0.0),  # neither word in the first four characters: "other", wrong
        ("", 0.0),
        ("Nope", 0.0),  # the official rule reads "no" in "nope"
    ],
)
def test_official_yes_no_parsing(mme, response: str, right_for_yes: float) -> None:  # type: ignore[no-untyped-def]
    assert mme.score(mme.doc("0"), response)["accuracy"] == right_for_yes


def test_nope_counts_as_no(mme) -> None:  # type: ignore[no-untyped-def]
    assert mme.score(mme.doc("1"), "Nope")["accuracy"] == 1.0


def results_for(mme, answers: list[str]) -> list[SampleResult]:  # type: ignore[no-untyped-def]
    out = []
    for index, response in enumerate(answers):
        doc = mme.doc(str(index))
        out.append(
            SampleResult(
                task="mme",
                doc_id=str(index),
                target=doc["answer"],
                response=response,
                raw=response,
                scores=mme.score(doc, response),
                cluster_id=mme.cluster_id(doc),
            )
        )
    return out


def test_category_scores_totals_and_bootstrap_on_the_reported_scale(mme) -> None:  # type: ignore[no-untyped-def]
    # existence: image 1 both right, image 2 one right -> acc 75 + acc+ 50 = 125
    # code_reasoning: image 7 both right -> 100 + 100 = 200
    results = results_for(mme, ["Yes", "No", "Yes", "Yes", "Yes", "No"])
    estimates = mme.aggregate(results)
    assert estimates["accuracy"].value == pytest.approx(5 / 6)
    assert estimates["accuracy"].n_clusters == 3
    perception, cognition = estimates["mme_perception"], estimates["mme_cognition"]
    assert perception.value == pytest.approx(125.0) and perception.n == 4
    assert cognition.value == pytest.approx(200.0)
    assert perception.method == "cluster-bootstrap" and perception.n_clusters == 2
    assert 0.0 <= perception.ci_low <= perception.value <= perception.ci_high <= 200.0


def test_a_resampled_image_counts_as_two_images() -> None:
    import importlib.util

    spec = importlib.util.spec_from_file_location("mme_utils", MME_YAML.with_name("utils.py"))
    assert spec is not None and spec.loader is not None
    utils = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(utils)

    def row(doc_id: str, cluster: str, score: float) -> SampleResult:
        scores = {"mme_perception": score, "cat_color": score}
        return SampleResult("mme", doc_id, "Yes", "", "", scores, cluster_id=cluster)

    # image a (both right) drawn twice, image b (one right) once, as a bootstrap resample lays them out
    a = [row("1", "color/a", 1), row("2", "color/a", 1)]
    resample = [*a, *a, row("3", "color/b", 1), row("4", "color/b", 0)]
    assert utils.category_scores(resample, "mme_perception") == {
        "color": pytest.approx(100 * 5 / 6 + 100 * 2 / 3)
    }


def test_each_category_has_its_own_score(mme) -> None:  # type: ignore[no-untyped-def]
    estimates = mme.aggregate(results_for(mme, ["Yes", "No", "Yes", "Yes", "Yes", "No"]))
    assert estimates["cat_existence"].value == pytest.approx(125.0)
    assert estimates["cat_code_reasoning"].value == pytest.approx(200.0)
    assert "cat_count" not in estimates  # no question of that category in this run


def task_with_rows(tmp_path: Path, rows: list[tuple[str, str, str]]):  # type: ignore[no-untyped-def]
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16)).save(buffer, format="PNG")
    (tmp_path / "img.png").write_bytes(buffer.getvalue())
    with open(tmp_path / "other.jsonl", "w") as handle:
        for question_id, category, answer in rows:
            row = {"question_id": question_id, "image": {"bytes": None, "path": "img.png"}}
            row |= {"question": "Is it? Please answer yes or no.", "answer": answer, "category": category}
            handle.write(json.dumps(row) + "\n")
    (tmp_path / "other.yaml").write_text(f"include: {MME_YAML}\ntask: mme_other\ndataset_path: other.jsonl\n")
    return load_task(tmp_path / "other.yaml")


def test_categories_come_from_the_category_column_not_the_id(tmp_path: Path) -> None:
    # the same questions with bare file names as ids (no "<category>/" prefix): same totals
    bare = [(question_id.split("/")[1], category, answer) for question_id, category, answer in ROWS]
    mme = task_with_rows(tmp_path, bare)
    estimates = mme.aggregate(results_for(mme, ["Yes", "No", "Yes", "Yes", "Yes", "No"]))
    assert estimates["mme_perception"].value == pytest.approx(125.0)
    assert estimates["mme_cognition"].value == pytest.approx(200.0)
    assert estimates["cat_existence"].value == pytest.approx(125.0)
    assert {mme.cluster_id(mme.doc(str(i))) for i in range(6)} == {
        "existence/1.png",
        "existence/2.png",
        "code_reasoning/7.png",
    }


def test_a_category_outside_the_fourteen_is_an_error(tmp_path: Path) -> None:
    mme = task_with_rows(tmp_path, [("x/1.png", "Existence", "Yes")])
    with pytest.raises(ValueError, match="category 'Existence' is not one of the 14 MME categories"):
        mme.score(mme.doc("0"), "Yes")
