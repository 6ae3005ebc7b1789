"""The task package: YAML specs, includes, !function, dataset sources, media, discovery.

Every test builds real files in ``tmp_path`` (YAML, jsonl, parquet, a ``datasets``
save_to_disk folder, PNG files) and goes through the public ``pytest_lmms.tasks`` API.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import textwrap
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pytest_lmms.scoring import DEFAULT_REASONING_TAGS
from pytest_lmms.tasks import (
    DatasetError,
    FunctionRef,
    GroupSpec,
    TaskConfigError,
    TaskSpec,
    discover,
    is_task_file,
    load_specs,
    load_task,
    render_template,
)
from pytest_lmms.types import GenParams, MediaPart, SampleResult, TextPart, VideoSampling
from tests.helpers import write_jsonl

REPO = Path(__file__).resolve().parents[2]

ROWS = [
    {"id": "q0", "question": "2+2", "answer": "4", "options": ["3", "4"], "letter": "B", "image_id": "i0"},
    {"id": "q1", "question": "3+3", "answer": "6", "options": ["6", "7"], "letter": "A", "image_id": "i0"},
    {"id": "q2", "question": "1+1", "answer": "2", "options": ["2", "5"], "letter": "A", "image_id": "i1"},
    {"id": "q3", "question": "5+5", "answer": "10", "options": ["9", "10"], "letter": "B", "image_id": "i2"},
]


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def task_yaml(name: str = "qa", data: str = "data.jsonl", extra: str = "") -> str:
    return textwrap.dedent(
        f"""\
            task: {name}
            dataset_path: {data}
            doc_to_text: "Question: {{{{ question }}}}"
            doc_to_target: answer
            metric_list:
              - metric: exact_match
            """
    ) + textwrap.dedent(extra)


def png_bytes(color: tuple[int, int, int] = (255, 0, 0), size: int = 4) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buffer, format="PNG")
    return buffer.getvalue()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def result(doc_id: str, score: float, cluster: str | None = None) -> SampleResult:
    return SampleResult("qa", doc_id, None, "", "", {"exact_match": score}, cluster_id=cluster)


@pytest.fixture
def qa_dir(tmp_path: Path) -> Path:
    write_jsonl(tmp_path / "data.jsonl", ROWS)
    write(tmp_path / "qa.yaml", task_yaml())
    return tmp_path


# ---- a minimal task, end to end ------------------------------------------------------------


def test_minimal_task_end_to_end(qa_dir: Path) -> None:
    task = load_task(qa_dir / "qa.yaml")
    assert task.name == "qa"
    assert task.doc_ids() == ["q0", "q1", "q2", "q3"]
    doc = task.doc("q1")
    assert doc["question"] == "3+3"

    request = task.request(doc)
    assert request.task == "qa"
    assert request.doc_id == "q1"
    assert request.kind == "generate"
    assert request.choices == ()
    assert request.gen == GenParams()
    assert [m.role for m in request.messages] == ["user"]
    assert request.messages[0].content == (TextPart("Question: 3+3"),)
    assert request.prompt_text == "Question: 3+3"

    assert task.target(doc) == "6"
    assert task.choices(doc) is None
    assert task.cluster_id(doc) is None
    assert task.metric_names == ["exact_match"]
    assert task.primary_metric == "exact_match"
    assert task.higher_is_better("exact_match") is True
    assert task.score(doc, "  6 ") == {"exact_match": 1.0}
    assert task.score(doc, "7") == {"exact_match": 0.0}

    results = [result(d, s) for d, s in zip(task.doc_ids(), [1.0, 1.0, 0.0, 1.0], strict=True)]
    estimate = task.aggregate(results)["exact_match"]
    assert estimate.value == pytest.approx(0.75)
    assert estimate.n == 4
    assert estimate.method == "agresti-coull"  # 0/1 scores: a proportion
    assert estimate.n_clusters is None
    assert estimate.ci_low < 0.75 < estimate.ci_high


def test_doc_to_messages_function_gives_roles_text_and_media(tmp_path: Path) -> None:
    image = png_bytes((0, 0, 255))
    write_jsonl(tmp_path / "data.jsonl", ROWS)
    write(
        tmp_path / "utils.py",
        f"""\
        IMAGE = {image!r}

        def messages(doc):
            return [
                {{"role": "system", "content": "Be brief."}},
                {{"role": "user", "content": [
                    {{"type": "image", "image": IMAGE}},
                    {{"type": "text", "text": "What is " + doc["question"] + "?"}},
                ]}},
            ]
        """,
    )
    write(
        tmp_path / "t.yaml",
        """\
        task: msgs
        dataset_path: data.jsonl
        doc_to_messages: !function utils.messages
        doc_to_target: answer
        metric_list: [exact_match]
        """,
    )
    task = load_task(tmp_path / "t.yaml")
    assert isinstance(task.spec.doc_to_messages, FunctionRef)
    request = task.request(task.doc("q0"))
    assert [m.role for m in request.messages] == ["system", "user"]
    assert request.messages[0].text == "Be brief."
    user = request.messages[1]
    assert isinstance(user.content[0], MediaPart)
    assert user.content[0].type == "image"
    assert user.content[0].media.content_hash == sha256(image)
    assert user.content[1] == TextPart("What is 2+2?")
    assert request.canonical()["messages"][1]["content"][0] == {"type": "image", "sha256": sha256(image)}


def test_choices_and_choice_accuracy(qa_dir: Path) -> None:
    write(
        qa_dir / "mc.yaml",
        """\
        task: mc
        dataset_path: data.jsonl
        doc_to_text: "{{ question }}"
        doc_to_target: letter
        doc_to_choice: options
        metric_list:
          - metric: choice_accuracy
        """,
    )
    task = load_task(qa_dir / "mc.yaml")
    doc = task.doc("q0")
    assert task.choices(doc) == ["3", "4"]
    assert task.target(doc) == "B"
    assert task.request(doc).choices == ("3", "4")
    assert task.score(doc, "The answer is (B).") == {"choice_accuracy": 1.0}
    assert task.score(doc, "A") == {"choice_accuracy": 0.0}


def test_literal_choice_list_and_loglikelihood_kind(qa_dir: Path) -> None:
    write(
        qa_dir / "yn.yaml",
        """\
        task: yn
        dataset_path: data.jsonl
        output_type: multiple_choice
        doc_to_text: "{{ question }}"
        doc_to_target: 0
        doc_to_choice: ["yes", "no"]
        metric_list: [choice_accuracy]
        """,
    )
    task = load_task(qa_dir / "yn.yaml")
    doc = task.doc("q2")
    request = task.request(doc)
    assert request.kind == "loglikelihood"
    assert request.choices == ("yes", "no")
    assert task.target(doc) == 0
    assert task.score(doc, "A") == {"choice_accuracy": 1.0}


def test_cluster_key_gives_a_clustered_proportion_estimate(qa_dir: Path) -> None:
    write(qa_dir / "qa.yaml", task_yaml(extra="cluster_key: image_id\n"))
    task = load_task(qa_dir / "qa.yaml")
    docs = [task.doc(i) for i in task.doc_ids()]
    assert [task.cluster_id(d) for d in docs] == ["i0", "i0", "i1", "i2"]
    results = [
        result(task.doc_id_of(d), s, task.cluster_id(d)) for d, s in zip(docs, [1, 0, 1, 1], strict=True)
    ]
    estimate = task.aggregate(results)["exact_match"]
    assert estimate.method == "agresti-coull-cluster"
    assert estimate.n_clusters == 3
    assert estimate.n == 4
    assert estimate.value == pytest.approx(0.75)


def test_cluster_key_missing_from_document_names_it(qa_dir: Path) -> None:
    write(qa_dir / "qa.yaml", task_yaml(extra="cluster_key: video\n"))
    task = load_task(qa_dir / "qa.yaml")
    with pytest.raises(KeyError, match="video.*q0"):
        task.cluster_id(task.doc("q0"))


def test_aggregation_function_and_process_results(qa_dir: Path) -> None:
    write(
        qa_dir / "utils.py",
        """\
        def process(doc, response):
            return {"right": response == doc["answer"], "length": len(response)}

        def total(results):
            return sum(r.scores["right"] for r in results)
        """,
    )
    write(
        qa_dir / "t.yaml",
        """\
        task: custom
        dataset_path: data.jsonl
        doc_to_text: "{{ question }}"
        process_results: !function utils.process
        metric_list:
          - metric: right
            aggregation: !function utils.total
          - metric: length
            higher_is_better: false
        """,
    )
    task = load_task(qa_dir / "t.yaml")
    assert task.score(task.doc("q0"), "4") == {"right": 1.0, "length": 1.0}
    assert task.higher_is_better("length") is False
    results = [
        SampleResult("custom", d, None, "", "", {"right": s, "length": 2.0})
        for d, s in zip(task.doc_ids(), [1.0, 0.0, 1.0, 1.0], strict=True)
    ]
    estimates = task.aggregate(results)
    assert estimates["right"].value == 3.0
    assert estimates["right"].method == "bootstrap"
    assert estimates["length"].value == 2.0
    assert estimates["length"].method == "t"


@pytest.mark.parametrize(
    ("template", "doc", "expected"),
    [
        ("{{ a }}+{{a}}", {"a": 1}, "1+1"),
        ("Q: {{ q.text }} ({{ q.n }})", {"q": {"text": "hi", "n": 2}}, "Q: hi (2)"),
        ("no fields", {}, "no fields"),
    ],
)
def test_render_template(template: str, doc: dict[str, Any], expected: str) -> None:
    assert render_template(template, doc) == expected


def test_render_template_names_a_missing_field() -> None:
    with pytest.raises(KeyError, match="'q.missing'"):
        render_template("{{ q.missing }}", {"q": {}})


# ---- multi-document YAML -------------------------------------------------------------------


def test_multi_document_yaml_defines_two_tasks(qa_dir: Path) -> None:
    path = write(qa_dir / "two.yaml", task_yaml("first") + "---\n" + task_yaml("second"))
    specs = load_specs(path)
    assert [s.name for s in specs] == ["first", "second"]
    assert all(isinstance(s, TaskSpec) and s.source_path == path for s in specs)
    assert load_task(f"{path}::second").name == "second"
    with pytest.raises(TaskConfigError, match=r"two\.yaml.*::NAME.*first, second"):
        load_task(path)
    with pytest.raises(TaskConfigError, match="first, second"):
        load_task(f"{path}::third")


def test_group_and_task_in_one_file(qa_dir: Path) -> None:
    path = write(qa_dir / "g.yaml", "group: grp\ntask: [qa, other]\n---\n" + task_yaml("other"))
    group, task = load_specs(path)
    assert isinstance(group, GroupSpec) and group.tasks == ("qa", "other")
    assert load_task(path).name == "other"


def test_load_task_by_name(qa_dir: Path) -> None:
    write_jsonl(qa_dir / "sub" / "data.jsonl", ROWS)
    write(qa_dir / "sub" / "deep.yaml", task_yaml("deep_task"))
    assert load_task("deep_task", search_paths=[qa_dir]).path == qa_dir / "sub" / "deep.yaml"
    with pytest.raises(TaskConfigError, match="no task named 'deep_tsak'.*did you mean deep_task"):
        load_task("deep_tsak", search_paths=[qa_dir])


# ---- include -------------------------------------------------------------------------------


def test_include_merges_underneath_and_is_overridden(qa_dir: Path) -> None:
    write(
        qa_dir / "_base.yaml",
        """\
        dataset_path: data.jsonl
        doc_to_text: "base {{ question }}"
        doc_to_target: answer
        generation_kwargs: {max_new_tokens: 16}
        metric_list: [exact_match]
        """,
    )
    write(
        qa_dir / "child.yaml",
        """\
        include: _base.yaml
        task: child
        doc_to_text: "child {{ question }}"
        """,
    )
    task = load_task(qa_dir / "child.yaml")
    assert "include" not in task.spec.raw
    assert task.spec.dataset_path == "data.jsonl"
    assert task.generation.max_new_tokens == 16
    assert task.request(task.doc("q0")).prompt_text == "child 2+2"


def test_nested_include_across_folders_resolves_functions_from_their_own_folder(tmp_path: Path) -> None:
    write(tmp_path / "shared" / "utils.py", "def text(doc):\n    return 'shared ' + doc['question']\n")
    write(
        tmp_path / "shared" / "_root.yaml",
        """\
        doc_to_text: !function utils.text
        doc_to_target: answer
        metric_list: [exact_match]
        generation_kwargs: {max_new_tokens: 4, until: ["\\n"]}
        """,
    )
    write(
        tmp_path / "shared" / "_middle.yaml", "include: _root.yaml\ngeneration_kwargs: {max_new_tokens: 8}\n"
    )
    write_jsonl(tmp_path / "bench" / "data.jsonl", ROWS)
    write(
        tmp_path / "bench" / "leaf.yaml",
        "include: ../shared/_middle.yaml\ntask: leaf\ndataset_path: data.jsonl\n",
    )
    task = load_task(tmp_path / "bench" / "leaf.yaml")
    assert task.spec.doc_to_text == FunctionRef("utils", "text", tmp_path / "shared")
    assert task.request(task.doc("q1")).prompt_text == "shared 3+3"
    # the middle file replaces generation_kwargs as a whole (no deep merge)
    assert task.generation == GenParams(max_new_tokens=8)


@pytest.mark.parametrize(
    ("files", "start", "chain"),
    [
        (
            {"a.yaml": "include: b.yaml\ntask: a\n", "b.yaml": "include: a.yaml\n"},
            "a.yaml",
            "a.yaml -> b.yaml -> a.yaml",
        ),
        ({"s.yaml": "include: s.yaml\ntask: s\n"}, "s.yaml", "s.yaml -> s.yaml"),
        (
            {
                "a.yaml": "include: b.yaml\ntask: a\n",
                "b.yaml": "include: c.yaml\n",
                "c.yaml": "include: b.yaml\n",
            },
            "a.yaml",
            "a.yaml -> b.yaml -> c.yaml -> b.yaml",
        ),
    ],
    ids=["two-files", "self", "three-files"],
)
def test_include_cycle_names_the_chain(tmp_path: Path, files: dict[str, str], start: str, chain: str) -> None:
    for name, text in files.items():
        write(tmp_path / name, text)
    with pytest.raises(TaskConfigError, match="include cycle") as info:
        load_specs(tmp_path / start)
    message = str(info.value)
    assert "field 'include'" in message
    names = [Path(part.strip()).name for part in message.split("include cycle", 1)[1].split("->")]
    assert " -> ".join(names) == chain


def test_missing_include_file(tmp_path: Path) -> None:
    write(tmp_path / "t.yaml", "include: nowhere.yaml\ntask: t\n")
    with pytest.raises(TaskConfigError, match=r"t\.yaml: field 'include': file 'nowhere\.yaml' not found"):
        load_specs(tmp_path / "t.yaml")


def test_include_must_be_a_single_document_file_name(tmp_path: Path) -> None:
    write(tmp_path / "t.yaml", "include: [a.yaml]\ntask: t\n")
    with pytest.raises(TaskConfigError, match="field 'include': expected a file name"):
        load_specs(tmp_path / "t.yaml")
    write(
        tmp_path / "two.yaml",
        "task: a\ndataset_path: a.jsonl\n---\ntask: b\ndataset_path: b.jsonl\ndoc_to_text: q\n",
    )
    write(tmp_path / "u.yaml", "include: two.yaml\ntask: u\n")
    with pytest.raises(TaskConfigError, match=r"holds several YAML documents; name one as two\.yaml::TASK"):
        load_specs(tmp_path / "u.yaml")
    write(tmp_path / "u.yaml", "include: two.yaml::b\ntask: u\n")
    (spec,) = load_specs(tmp_path / "u.yaml")
    assert isinstance(spec, TaskSpec) and (spec.name, spec.dataset_path) == ("u", "b.jsonl")
    write(tmp_path / "u.yaml", "include: two.yaml::c\ntask: u\n")
    with pytest.raises(TaskConfigError, match="no task 'c' in 'two.yaml'"):
        load_specs(tmp_path / "u.yaml")


def test_doc_to_messages_taking_metadata_gets_the_yaml_metadata(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "data.jsonl", ROWS)
    write(
        tmp_path / "utils.py",
        """\
        def messages(doc, metadata=None):
            return [{"role": "user", "content": f"{doc['question']} frames={metadata['num_frames']}"}]
        """,
    )
    write(
        tmp_path / "t.yaml",
        """\
        task: meta
        dataset_path: data.jsonl
        doc_to_messages: !function utils.messages
        metadata: {num_frames: 16}
        metric_list: [exact_match]
        """,
    )
    task = load_task(tmp_path / "t.yaml")
    assert task.request(task.doc("q0")).messages[0].text == "2+2 frames=16"


# ---- !function -----------------------------------------------------------------------------


def test_function_is_resolved_from_the_yaml_folder_not_the_cwd(
    qa_dir: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(qa_dir / "helpers" / "prompts.py", "def text(doc):\n    return 'nested ' + doc['id']\n")
    write(
        qa_dir / "qa.yaml",
        task_yaml().replace('"Question: {{ question }}"', "!function helpers.prompts.text"),
    )
    monkeypatch.chdir(tmp_path_factory.mktemp("elsewhere"))
    task = load_task(qa_dir / "qa.yaml")
    assert task.request(task.doc("q3")).prompt_text == "nested q3"


def test_two_folders_with_their_own_utils_do_not_collide(tmp_path: Path) -> None:
    for name in ("alpha", "beta"):
        write_jsonl(tmp_path / name / "data.jsonl", ROWS)
        write(tmp_path / name / "utils.py", f"def text(doc):\n    return '{name} ' + doc['question']\n")
        write(
            tmp_path / name / "t.yaml",
            task_yaml(name).replace('"Question: {{ question }}"', "!function utils.text"),
        )
    alpha = load_task(tmp_path / "alpha" / "t.yaml")
    beta = load_task(tmp_path / "beta" / "t.yaml")
    assert alpha.request(alpha.doc("q0")).prompt_text == "alpha 2+2"
    assert beta.request(beta.doc("q0")).prompt_text == "beta 2+2"


def test_an_edited_utils_module_is_reloaded_by_a_new_task(qa_dir: Path) -> None:
    utils = write(qa_dir / "utils.py", "def text(doc):\n    return 'old'\n")
    write(qa_dir / "qa.yaml", task_yaml().replace('"Question: {{ question }}"', "!function utils.text"))
    old = load_task(qa_dir / "qa.yaml")
    assert old.request(old.doc("q0")).prompt_text == "old"
    utils.write_text("def text(doc):\n    return 'edited'\n")
    os.utime(utils, ns=(utils.stat().st_atime_ns, utils.stat().st_mtime_ns + 2_000_000_000))
    new = load_task(qa_dir / "qa.yaml")
    assert new.request(new.doc("q0")).prompt_text == "edited"
    # the old task keeps the fingerprint of the code it runs, though it is read after the edit
    assert new.fingerprint != old.fingerprint


# ---- configuration errors: each names the file and the field --------------------------------

BASE = "task: t\ndataset_path: data.jsonl\ndoc_to_text: q\n"


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        pytest.param("task: t\ndataset_path: [unclosed\n", ["line 3", "invalid YAML"], id="malformed-yaml"),
        pytest.param("task: t\n  bad: indent\n", ["line 2", "invalid YAML"], id="bad-indentation"),
        pytest.param(
            BASE + "doc_to_txet: q\n",
            ["unknown field 'doc_to_txet'", "did you mean 'doc_to_text'"],
            id="typo",
        ),
        pytest.param(BASE + "zzzz: 1\n", ["unknown field 'zzzz'"], id="unknown-field"),
        pytest.param(
            BASE.replace("doc_to_text: q", "doc_to_text: 5"),
            ["field 'doc_to_text'", "expected str or FunctionRef, got int"],
            id="wrong-type-text",
        ),
        pytest.param(BASE + "tags: 5\n", ["field 'tags'", "expected list or str"], id="wrong-type-tags"),
        pytest.param(
            BASE + "dataset_kwargs: [1]\n",
            ["field 'dataset_kwargs'", "expected dict"],
            id="wrong-type-kwargs",
        ),
        pytest.param(
            BASE.replace("dataset_path: data.jsonl", "dataset_path: 3"),
            ["field 'dataset_path'", "expected str"],
            id="wrong-type-path",
        ),
        pytest.param(
            "dataset_path: d.jsonl\ndoc_to_text: q\n", ["field 'task': required"], id="missing-task"
        ),
        pytest.param(
            BASE.replace("task: t", "task: 'a b'"), ["field 'task'", "may only use"], id="bad-task-name"
        ),
        pytest.param(
            "task: t\ndoc_to_text: q\n",
            ["task 't'", "field 'dataset_path': required"],
            id="missing-dataset-path",
        ),
        pytest.param(
            "task: t\ndataset_path: d.jsonl\n",
            ["task 't'", "field 'doc_to_text': required"],
            id="missing-doc-to-text",
        ),
        pytest.param(
            BASE + "generation_kwargs: {max_tokens: 3}\n",
            ["field 'generation_kwargs'", "unknown key 'max_tokens'", "max_new_tokens"],
            id="bad-gen-key",
        ),
        pytest.param(
            BASE + "generation_kwargs: {max_new_tokens: lots}\n",
            ["field 'generation_kwargs'", "lots"],
            id="bad-gen-value",
        ),
        pytest.param(
            BASE + "generation_kwargs: [1]\n", ["field 'generation_kwargs'", "mapping"], id="gen-not-mapping"
        ),
        pytest.param(BASE + "output_type: chat\n", ["field 'output_type'", "'chat'"], id="bad-output-type"),
        pytest.param(
            BASE + "metric_list: exact_match\n", ["field 'metric_list'", "list"], id="metrics-not-list"
        ),
        pytest.param(
            BASE + "metric_list: [{aggregation: mean}]\n",
            ["field 'metric_list[0]'", "'metric' name"],
            id="metric-no-name",
        ),
        pytest.param(
            BASE + "metric_list: [{metric: m, aggregation: 5}]\n",
            ["field 'metric_list[0].aggregation'"],
            id="aggregation-type",
        ),
        pytest.param(
            BASE + "metric_list: [m, {metric: m, higher_is_better: maybe}]\n",
            ["field 'metric_list[1].higher_is_better'"],
            id="higher-is-better-type",
        ),
        pytest.param(
            BASE + "process_results: !function nodot\n",
            ["line 4", "!function expects module.attr", "'nodot'"],
            id="function-syntax",
        ),
        pytest.param(
            BASE + "process_results: utils.fn\n",
            ["field 'process_results'", "expected FunctionRef"],
            id="function-without-tag",
        ),
        pytest.param("- task: t\n", ["document 1 is a list", "expected a mapping"], id="not-a-mapping"),
        pytest.param("# nothing here\n", ["no task or group defined"], id="empty"),
        pytest.param("group: g\ntask: [a, 1]\n", ["group 'g'", "field 'task'"], id="group-bad-members"),
        pytest.param(
            "group: g\ntask: [a]\ntags: [x]\n",
            ["group 'g'", "unknown field 'tags'"],
            id="group-unknown-field",
        ),
    ],
)
def test_spec_errors_name_the_file_and_the_field(tmp_path: Path, text: str, fragments: list[str]) -> None:
    path = write(tmp_path / "broken_task.yaml", text)
    with pytest.raises(TaskConfigError) as info:
        load_specs(path)
    message = str(info.value)
    assert message.startswith(str(path)), message
    for fragment in fragments:
        assert fragment in message, message


def test_unreadable_yaml_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(TaskConfigError, match=r"absent\.yaml: cannot read"):
        load_specs(tmp_path / "absent.yaml")


@pytest.mark.parametrize(
    ("extra", "fragments"),
    [
        pytest.param(
            "doc_to_target: !function nomodule.fn\n",
            ["field 'doc_to_target'", "cannot import nomodule", "no module file"],
            id="missing-module",
        ),
        pytest.param(
            "doc_to_target: !function utils.nope\n",
            ["field 'doc_to_target'", "utils.nope not found", "utils.py"],
            id="missing-attribute",
        ),
        pytest.param(
            "doc_to_target: !function utils.CONSTANT\n",
            ["field 'doc_to_target'", "utils.CONSTANT not found"],
            id="not-callable",
        ),
        pytest.param(
            "doc_to_visual: !function broken.fn\n",
            ["field 'doc_to_visual'", "cannot import broken", "broken.py, line 1"],
            id="syntax-error",
        ),
        pytest.param(
            "metric_list: [exact_match, no_such_metric]\n",
            ["field 'metric_list[1].metric'", "unknown metric 'no_such_metric'"],
            id="unknown-metric",
        ),
        pytest.param(
            "metric_list: [{metric: exact_match, aggregation: median}]\n",
            ["field 'metric_list[0].aggregation'", "'median'"],
            id="bad-aggregation",
        ),
        pytest.param(
            "metric_list: [{metric: exact_match, aggregation: !function utils.nope}]\n",
            ["field 'metric_list[0].aggregation'", "utils.nope not found"],
            id="missing-aggregation-function",
        ),
        pytest.param(
            "reasoning_tags: 'a:b:c'\n", ["field 'reasoning_tags'", "a:b:c"], id="bad-reasoning-tags"
        ),
    ],
)
def test_task_errors_name_the_file_and_the_field(tmp_path: Path, extra: str, fragments: list[str]) -> None:
    write(tmp_path / "utils.py", "CONSTANT = 3\n")
    write(tmp_path / "broken.py", "def fn(doc)\n    return 1\n")
    path = write(tmp_path / "t.yaml", BASE + extra)
    load_specs(path)  # the spec itself is valid; the Task finds the problem
    with pytest.raises(TaskConfigError) as info:
        load_task(path)
    message = str(info.value)
    assert message.startswith(f"{path}: task 't': "), message
    for fragment in fragments:
        assert fragment in message, message


# ---- generation parameters and reasoning tags ----------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ("{}", GenParams()),
        ('{until: ["\\n\\n", "Q:"]}', GenParams(stop=("\n\n", "Q:"))),
        ("{until: END}", GenParams(stop=("END",))),
        ("{stop: [x]}", GenParams(stop=("x",))),
        ("{do_sample: false, temperature: 0.7}", GenParams(temperature=0.0)),
        (
            "{do_sample: true, temperature: 0.7, top_p: 0.9, seed: 3}",
            GenParams(temperature=0.7, top_p=0.9, seed=3),
        ),
        ("{max_new_tokens: 1024, temperature: 0}", GenParams(max_new_tokens=1024)),
    ],
)
def test_generation_kwargs_map_to_gen_params(tmp_path: Path, kwargs: str, expected: GenParams) -> None:
    (spec,) = load_specs(write(tmp_path / "t.yaml", BASE + f"generation_kwargs: {kwargs}\n"))
    assert isinstance(spec, TaskSpec)
    assert spec.generation == expected


def test_gen_params_normalize_types() -> None:
    params = GenParams(max_new_tokens=8.0, temperature=0, top_p=1, stop=["a"], seed="2")  # type: ignore[arg-type]
    assert params == GenParams(max_new_tokens=8, temperature=0.0, top_p=1.0, stop=("a",), seed=2)
    assert hash(params) == hash(GenParams(max_new_tokens=8, stop=("a",), seed=2))
    assert params.deterministic
    assert not GenParams(temperature=0.5).deterministic
    assert params.as_dict() == {
        "max_new_tokens": 8,
        "temperature": 0.0,
        "top_p": 1.0,
        "stop": ["a"],
        "seed": 2,
    }


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, DEFAULT_REASONING_TAGS),
        ("think", (("<think>", "</think>"),)),
        ("[think, '<r>:</r>']", (("<think>", "</think>"), ("<r>", "</r>"))),
        ("[['[[', ']]']]", (("[[", "]]"),)),
        ("none", ()),
        ("'off'", ()),
        ("off", ()),  # YAML 1.1 reads a bare off / false / no as a boolean
        ("false", ()),
        ("true", DEFAULT_REASONING_TAGS),
    ],
)
def test_reasoning_tags_field(qa_dir: Path, value: str | None, expected: tuple[tuple[str, str], ...]) -> None:
    extra = "" if value is None else f"reasoning_tags: {value}\n"
    write(qa_dir / "qa.yaml", task_yaml(extra=extra))
    assert load_task(qa_dir / "qa.yaml").reasoning_tags == expected


# ---- dataset sources -----------------------------------------------------------------------


def write_parquet(path: Path, columns: dict[str, list[Any]]) -> Path:
    pq.write_table(pa.table(columns), path)
    return path


def write_hf(path: Path, rows: list[dict[str, Any]], split: str | None = None) -> Path:
    import datasets

    dataset = datasets.Dataset.from_list(rows)
    (datasets.DatasetDict({split: dataset}) if split else dataset).save_to_disk(str(path))
    return path


PLAIN_ROWS = [{"id": f"d{i}", "question": f"q{i}", "answer": str(i)} for i in range(5)]


def make_source(folder: Path, kind: str, rows: list[dict[str, Any]]) -> str:
    """Write ``rows`` in the ``kind`` format under ``folder``; return the dataset_path."""
    if kind == "jsonl":
        write_jsonl(folder / "data.jsonl", rows)
        return "data.jsonl"
    if kind == "parquet":
        write_parquet(folder / "data.parquet", {k: [r[k] for r in rows] for k in rows[0]})
        return "data.parquet"
    if kind == "hf":
        write_hf(folder / "hf_data", rows)
        return "hf_data"
    if kind == "hf-dict":
        write_hf(folder / "hf_dict", rows, split="test")
        return "hf_dict"
    raise AssertionError(kind)


SOURCE_KINDS = ["jsonl", "parquet", "hf", "hf-dict"]


@pytest.mark.parametrize("kind", SOURCE_KINDS)
def test_sources_give_ids_rows_and_limit(tmp_path: Path, kind: str) -> None:
    data = make_source(tmp_path, kind, PLAIN_ROWS)
    write(tmp_path / "t.yaml", task_yaml(data=data))
    task = load_task(tmp_path / "t.yaml")
    assert task.doc_ids() == [r["id"] for r in PLAIN_ROWS]
    assert task.doc_ids(limit=2) == ["d0", "d1"]
    assert task.doc_ids(limit=50) == [r["id"] for r in PLAIN_ROWS]
    assert task.doc("d3") == PLAIN_ROWS[3]
    assert list(task.docs()) == PLAIN_ROWS
    assert task.request(task.doc("d2")).prompt_text == "Question: q2"
    with pytest.raises(DatasetError, match="no document with id 'zz'"):
        task.doc("zz")


@pytest.mark.parametrize("kind", SOURCE_KINDS)
def test_row_index_ids_when_the_id_column_is_absent(tmp_path: Path, kind: str) -> None:
    rows = [{k: v for k, v in r.items() if k != "id"} for r in PLAIN_ROWS]
    data = make_source(tmp_path, kind, rows)
    write(tmp_path / "t.yaml", task_yaml(data=data))
    task = load_task(tmp_path / "t.yaml")
    assert task.doc_ids() == ["0", "1", "2", "3", "4"]
    assert task.doc_ids(limit=3) == ["0", "1", "2"]
    doc = task.doc("4")
    assert doc["question"] == "q4"
    assert task.doc_id_of(doc) == "4"
    assert task.request(doc).doc_id == "4"


@pytest.mark.parametrize("kind", ["jsonl", "parquet", "hf"])
def test_doc_id_column_and_integer_ids(tmp_path: Path, kind: str) -> None:
    rows = [{"qid": 10 + i, "question": f"q{i}", "answer": "a"} for i in range(3)]
    data = make_source(tmp_path, kind, rows)
    write(tmp_path / "t.yaml", task_yaml(data=data, extra="doc_id_column: qid\n"))
    task = load_task(tmp_path / "t.yaml")
    assert task.doc_ids() == ["10", "11", "12"]
    assert task.doc("11")["question"] == "q1"
    assert task.doc_id_of(task.doc("12")) == "12"


@pytest.mark.parametrize("kind", ["jsonl", "parquet", "hf"])
def test_null_ids_fall_back_to_the_row_index(tmp_path: Path, kind: str) -> None:
    rows = [{"id": "x", "q": 1}, {"id": None, "q": 2}, {"id": "z", "q": 3}]
    data = make_source(tmp_path, kind, rows)
    write(tmp_path / "t.yaml", task_yaml(data=data))
    task = load_task(tmp_path / "t.yaml")
    assert task.doc_ids() == ["x", "1", "z"]
    assert task.doc("1")["q"] == 2


@pytest.mark.parametrize("kind", ["jsonl", "parquet", "hf"])
def test_duplicate_ids_are_a_dataset_error(tmp_path: Path, kind: str) -> None:
    rows = [{"id": "a", "q": 1}, {"id": "b", "q": 2}, {"id": "a", "q": 3}]
    data = make_source(tmp_path, kind, rows)
    write(tmp_path / "t.yaml", task_yaml(data=data))
    task = load_task(tmp_path / "t.yaml")
    with pytest.raises(DatasetError, match=r"t\.yaml: task 'qa'.*document id 'a' appears more than once"):
        task.doc_ids()
    assert task.doc_ids(limit=2) == ["a", "b"]


def test_jsonl_blank_lines_are_skipped(tmp_path: Path) -> None:
    (tmp_path / "data.jsonl").write_text('\n{"question": "a"}\n\n{"question": "b"}\n  \n')
    write(tmp_path / "t.yaml", task_yaml())
    task = load_task(tmp_path / "t.yaml")
    assert task.doc_ids() == ["0", "1"]
    assert task.doc("1") == {"question": "b"}


def test_parquet_doc_ids_read_only_the_id_column(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_parquet(
        tmp_path / "data.parquet",
        {"id": ["a", "b", "c"], "question": ["1", "2", "3"], "blob": [b"x" * 100] * 3},
    )
    write(tmp_path / "t.yaml", task_yaml(data="data.parquet"))
    calls: list[Any] = []
    original = pq.ParquetFile.read

    def spy(self: pq.ParquetFile, *args: Any, **kwargs: Any) -> pa.Table:
        calls.append(kwargs.get("columns", args[0] if args else None))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read", spy)
    task = load_task(tmp_path / "t.yaml")
    assert task.doc_ids() == ["a", "b", "c"]
    assert task.doc_ids(limit=1) == ["a"]
    assert calls == [["id"], ["id"]]


def test_parquet_without_id_column_reads_no_column(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_parquet(tmp_path / "data.parquet", {"question": ["1", "2", "3"]})
    write(tmp_path / "t.yaml", task_yaml(data="data.parquet"))
    monkeypatch.setattr(pq.ParquetFile, "read", lambda *a, **k: pytest.fail("read the table"))
    assert load_task(tmp_path / "t.yaml").doc_ids() == ["0", "1", "2"]


def test_hf_dataset_dict_split_selection(tmp_path: Path) -> None:
    write_hf(tmp_path / "hf", PLAIN_ROWS, split="validation")
    write(tmp_path / "t.yaml", task_yaml(data="hf", extra="test_split: validation\n"))
    assert load_task(tmp_path / "t.yaml").doc_ids(limit=1) == ["d0"]
    write(tmp_path / "u.yaml", task_yaml("u", data="hf"))
    with pytest.raises(DatasetError, match=r"u\.yaml: task 'u'.*split 'test' not in \['validation'\]"):
        load_task(tmp_path / "u.yaml").doc_ids()


@pytest.mark.parametrize(
    ("data", "content", "fragments"),
    [
        pytest.param(
            "missing.jsonl", None, ["dataset_path 'missing.jsonl'", "no such file"], id="missing-jsonl"
        ),
        pytest.param(
            "missing.parquet", None, ["dataset_path 'missing.parquet'", "no such file"], id="missing-parquet"
        ),
        pytest.param("./nowhere", None, ["dataset_path './nowhere'", "no such path"], id="missing-folder"),
        pytest.param(
            "data.jsonl",
            b'{"id": "a"}\n\n{"id": b\n',
            ["dataset_path 'data.jsonl'", "data.jsonl:3: not valid JSON"],
            id="bad-json-line",
        ),
        pytest.param(
            "data.jsonl",
            b'{"id": "a"}\n[1, 2]\n',
            ["dataset_path 'data.jsonl'", "data.jsonl:2: expected a JSON object"],
            id="not-an-object",
        ),
        pytest.param(
            "data.parquet",
            b"PAR1 this is not parquet",
            ["dataset_path 'data.parquet'", "cannot be loaded"],
            id="corrupt-parquet",
        ),
        pytest.param(
            "hf_broken", "folder", ["dataset_path 'hf_broken'", "cannot be loaded"], id="corrupt-hf-folder"
        ),
    ],
)
def test_dataset_errors_surface_at_doc_ids_naming_yaml_and_dataset_path(
    tmp_path: Path, data: str, content: bytes | str | None, fragments: list[str]
) -> None:
    if content == "folder":
        (tmp_path / data).mkdir()
        (tmp_path / data / "state.json").write_text("{not json")
    elif isinstance(content, bytes):
        (tmp_path / data).write_bytes(content)
    path = write(tmp_path / "t.yaml", task_yaml(data=data))
    task = load_task(path)  # spec load and Task construction never touch the data
    with pytest.raises(DatasetError) as info:
        task.doc_ids()
    message = str(info.value)
    assert message.startswith(f"{path}: task 'qa': "), message
    for fragment in fragments:
        assert fragment in message, message


def test_rows_error_is_a_dataset_error_too(tmp_path: Path) -> None:
    (tmp_path / "data.jsonl").write_text('{"id": "a"}\nnot json\n')
    write(tmp_path / "t.yaml", task_yaml())
    with pytest.raises(DatasetError, match=r"task 'qa'.*data\.jsonl:2"):
        list(load_task(tmp_path / "t.yaml").docs())


# ---- media ---------------------------------------------------------------------------------


def visual_task(folder: Path, data: str, visual: str) -> Path:
    return write(folder / "v.yaml", task_yaml("vis", data=data, extra=f"doc_to_visual: {visual}\n"))


def test_hf_style_image_struct_column_in_parquet(tmp_path: Path) -> None:
    images = [png_bytes((i * 40, 0, 0)) for i in range(3)]
    write_parquet(
        tmp_path / "data.parquet",
        {
            "id": ["a", "b", "c"],
            "question": ["x", "y", "z"],
            "answer": ["1", "2", "3"],
            "image": [{"bytes": b, "path": None} for b in images],
        },
    )
    task = load_task(visual_task(tmp_path, "data.parquet", "image"))
    request = task.request(task.doc("b"))
    (media,) = request.media
    assert media.kind == "image"
    assert media.content_hash == sha256(images[1])
    assert isinstance(request.messages[0].content[0], MediaPart)
    assert request.messages[0].content[-1] == TextPart("Question: y")


def test_path_columns_resolve_from_the_yaml_folder(tmp_path: Path) -> None:
    image = png_bytes((1, 2, 3))
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "one.png").write_bytes(image)
    write_jsonl(
        tmp_path / "data.jsonl",
        [
            {"id": "rel", "question": "x", "file": "images/one.png"},
            {"id": "struct", "question": "y", "file": {"bytes": None, "path": "images/one.png"}},
            {"id": "abs", "question": "z", "file": str(tmp_path / "images" / "one.png")},
            {"id": "many", "question": "w", "file": ["images/one.png", {"path": "images/one.png"}]},
            {"id": "none", "question": "v", "file": None},
        ],
    )
    task = load_task(visual_task(tmp_path, "data.jsonl", "file"))
    for doc_id in ("rel", "struct", "abs"):
        (media,) = task.request(task.doc(doc_id)).media
        assert media.path == tmp_path / "images" / "one.png"
        assert media.content_hash == sha256(image)
    assert [m.content_hash for m in task.request(task.doc("many")).media] == [sha256(image)] * 2
    assert task.request(task.doc("none")).media == []


def test_folder_of_png_files_is_a_source(tmp_path: Path) -> None:
    images = {"a": png_bytes((255, 0, 0)), "sub/b": png_bytes((0, 255, 0)), "c": png_bytes((0, 0, 255))}
    for name, data in images.items():
        (tmp_path / "pics" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "pics" / f"{name}.png").write_bytes(data)
    (tmp_path / "pics" / ".DS_Store").write_bytes(b"junk")
    write(
        tmp_path / "p.yaml",
        """\
        task: pics
        dataset_path: pics
        doc_to_visual: path
        doc_to_text: "Describe {{ name }}"
        """,
    )
    task = load_task(tmp_path / "p.yaml")
    assert task.doc_ids() == ["a", "c", "sub/b"]
    assert task.doc_ids(limit=1) == ["a"]
    for doc_id, data in images.items():
        request = task.request(task.doc(doc_id))
        assert request.media[0].content_hash == sha256(data)
        assert request.prompt_text == f"Describe {Path(doc_id).name}.png"


def test_hf_image_feature_gives_lazy_png_media(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    pictures = [Image.new("RGB", (5, 5), (i * 60, 10, 10)) for i in range(3)]
    features = datasets.Features({"id": datasets.Value("string"), "image": datasets.Image()})
    dataset = datasets.Dataset.from_dict({"id": ["a", "b", "c"], "image": pictures}, features=features)
    dataset.save_to_disk(str(tmp_path / "hf"))
    write(
        tmp_path / "v.yaml",
        "task: hfimg\ndataset_path: hf\ndoc_to_visual: image\ndoc_to_text: Which colour?\n",
    )
    task = load_task(tmp_path / "v.yaml")
    assert task.doc_ids() == ["a", "b", "c"]
    encodings: list[str] = []
    original_save = Image.Image.save

    def counting_save(self: Image.Image, *args: Any, **kwargs: Any) -> None:
        encodings.append(str(kwargs.get("format")))
        original_save(self, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", counting_save)
    (media,) = task.request(task.doc("b")).media
    assert media.mime == "image/png"
    assert encodings == []  # nothing encoded until a backend (or the cache key) needs the bytes
    decoded = Image.open(io.BytesIO(media.read_bytes()))
    assert decoded.getpixel((0, 0)) == (60, 10, 10)
    assert encodings == ["PNG"]
    assert media.content_hash == sha256(media.read_bytes())
    again = load_task(tmp_path / "v.yaml")
    assert again.request(again.doc("b")).media[0].content_hash == media.content_hash


def test_pil_images_from_a_function_are_encoded_lazily(qa_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write(
        qa_dir / "utils.py",
        """\
        from PIL import Image

        def visual(doc):
            return [Image.new("RGB", (3, 3), (int(doc["answer"]), 9, 9))]
        """,
    )
    task = load_task(visual_task(qa_dir, "data.jsonl", "!function utils.visual"))
    encodings: list[str] = []
    original_save = Image.Image.save

    def counting_save(self: Image.Image, *args: Any, **kwargs: Any) -> None:
        encodings.append(str(kwargs.get("format")))
        original_save(self, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", counting_save)
    requests = [task.request(task.doc(doc_id)) for doc_id in task.doc_ids()]
    assert encodings == []  # building every request encodes nothing
    media = requests[3].media[0]
    assert media.mime == "image/png"
    assert media.path is None
    encoded = media.read_bytes()
    assert encodings == ["PNG"]
    assert Image.open(io.BytesIO(encoded)).getpixel((0, 0)) == (10, 9, 9)
    assert media.content_hash == sha256(encoded)
    assert encodings == ["PNG"]  # the hash reuses the bytes already encoded


def test_unusable_visual_value_names_its_type(qa_dir: Path) -> None:
    write(qa_dir / "utils.py", "def visual(doc):\n    return 42\n")
    task = load_task(visual_task(qa_dir, "data.jsonl", "!function utils.visual"))
    with pytest.raises(TypeError, match="cannot use a int as image media"):
        task.request(task.doc("q0"))


# ---- discovery and selection ---------------------------------------------------------------


@pytest.fixture
def bench(tmp_path: Path) -> Path:
    root = tmp_path / "bench"
    write_jsonl(root / "data.jsonl", ROWS)
    write(root / "math" / "add.yaml", task_yaml("math_add", data="../data.jsonl"))
    write(root / "math" / "mul.yml", task_yaml("math_mul", data="../data.jsonl"))
    write(root / "vision" / "v.yaml", task_yaml("vqa_a", data="../data.jsonl") + "---\n" + task_yaml("vqa_b"))
    write(
        root / "groups.yaml",
        "group: math\ntask: [math_add, math_mul]\n---\ngroup: everything\ntask: [math, vqa_a]\n",
    )
    write(root / "_template.yaml", "task: hidden\ndataset_path: x.jsonl\ndoc_to_text: q\n")
    write(root / "_private" / "p.yaml", task_yaml("private_task"))
    write(root / "broken.yaml", "task: broken\ndataset_path: x.jsonl\ndoc_to_txt: q\n")
    write(root / "not_a_task.yaml", "setting: 1\n")
    write(root / "readme.txt", "task: nope\n")
    return root


def test_discover_indexes_tasks_and_groups(bench: Path) -> None:
    index = discover([bench])
    assert index.tasks == {
        "math_add": bench / "math" / "add.yaml",
        "math_mul": bench / "math" / "mul.yml",
        "vqa_a": bench / "vision" / "v.yaml",
        "vqa_b": bench / "vision" / "v.yaml",
    }
    assert index.groups == {"math": ("math_add", "math_mul"), "everything": ("math", "vqa_a")}
    assert list(index.errors) == [bench / "broken.yaml"]
    assert "did you mean 'doc_to_text'" in index.errors[bench / "broken.yaml"]


def test_discover_accepts_files_and_overlapping_paths(bench: Path) -> None:
    assert set(discover([bench / "math" / "add.yaml"]).tasks) == {"math_add"}
    index = discover([bench, bench / "math"])
    assert index.errors == {bench / "broken.yaml": index.errors[bench / "broken.yaml"]}
    assert len(index.tasks) == 4


@pytest.mark.parametrize(
    ("patterns", "expected"),
    [
        (["math_add"], {"math_add"}),
        (["math"], {"math_add", "math_mul"}),
        (["everything"], {"math_add", "math_mul", "vqa_a"}),
        (["vqa_*"], {"vqa_a", "vqa_b"}),
        (["math_?dd", "vqa_b"], {"math_add", "vqa_b"}),
        (["*"], {"math_add", "math_mul", "vqa_a", "vqa_b"}),
        (["every*"], {"math_add", "math_mul", "vqa_a"}),
        ([], set()),
    ],
)
def test_select_names_groups_and_globs(bench: Path, patterns: list[str], expected: set[str]) -> None:
    assert discover([bench]).select(patterns) == expected


@pytest.mark.parametrize(
    ("pattern", "fragment"),
    [("math_ad", "did you mean math_add"), ("vision_*", "'vision_*'"), ("zzzzzz", "'zzzzzz'")],
)
def test_select_unknown_pattern_is_an_error_with_a_suggestion(
    bench: Path, pattern: str, fragment: str
) -> None:
    with pytest.raises(TaskConfigError, match="no task or group matches") as info:
        discover([bench]).select(["math", pattern])
    assert fragment in str(info.value)


def test_group_cycle_does_not_recurse_forever(tmp_path: Path) -> None:
    write(tmp_path / "g.yaml", "group: a\ntask: [b]\n---\ngroup: b\ntask: [a, t]\n")
    write_jsonl(tmp_path / "data.jsonl", ROWS)
    write(tmp_path / "t.yaml", task_yaml("t"))
    assert discover([tmp_path]).select(["a"]) == {"t"}


def test_discover_records_a_task_defined_twice(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "data.jsonl", ROWS)
    write(tmp_path / "a.yaml", task_yaml("same"))
    write(tmp_path / "b.yaml", task_yaml("same") + "---\n" + task_yaml("unique"))
    index = discover([tmp_path])
    assert index.tasks == {"same": tmp_path / "a.yaml", "unique": tmp_path / "b.yaml"}
    assert "task 'same' is already defined in" in index.errors[tmp_path / "b.yaml"]
    assert "a.yaml" in index.errors[tmp_path / "b.yaml"]


def test_discover_survives_a_file_that_is_not_utf8(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "data.jsonl", ROWS)
    write(tmp_path / "good.yaml", task_yaml("good"))
    (tmp_path / "latin1.yaml").write_bytes("task: caf\u00e9\ndataset_path: d.jsonl\n".encode("latin-1"))
    index = discover([tmp_path])
    assert list(index.tasks) == ["good"]
    assert "latin1.yaml" in index.errors[tmp_path / "latin1.yaml"]


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("t.yaml", "task: t\n", True),
        ("t.yml", "# comment\ngroup: g\n", True),
        ("t.yaml", "dataset_path: x\n  task: indented\n", False),
        ("_base.yaml", "task: t\n", False),
        (".hidden.yaml", "task: t\n", False),
        ("t.json", "task: t\n", False),
        ("t.yaml", "tasks: [a]\n", False),
        ("t.yaml", "tasking: 1\n", False),
        ("t.yaml", "include: _base.yaml\ntask : spaced\n", True),
    ],
)
def test_is_task_file(tmp_path: Path, name: str, text: str, expected: bool) -> None:
    assert is_task_file(write(tmp_path / name, text)) is expected


def test_is_task_file_of_a_missing_path_is_false(tmp_path: Path) -> None:
    assert is_task_file(tmp_path / "gone.yaml") is False


# ---- fingerprint ---------------------------------------------------------------------------


def test_fingerprint_follows_the_yaml_the_includes_and_the_utils(qa_dir: Path) -> None:
    utils = write(qa_dir / "utils.py", "def text(doc):\n    return doc['question']\n")
    base = write(qa_dir / "_base.yaml", "doc_to_target: answer\nmetric_list: [exact_match]\n")
    path = write(
        qa_dir / "t.yaml",
        "include: _base.yaml\ntask: fp\ndataset_path: data.jsonl\ndoc_to_text: !function utils.text\n",
    )

    def fingerprint() -> str:
        return load_task(path).fingerprint

    first = fingerprint()
    assert len(first) == 64
    assert fingerprint() == first  # stable across loads
    (qa_dir / "data.jsonl").write_text('{"id": "other"}\n')
    assert fingerprint() == first  # data is not part of the task definition

    utils.write_text("def text(doc):\n    return 'Q: ' + doc['question']\n")
    after_utils = fingerprint()
    assert after_utils != first

    path.write_text(path.read_text().replace("task: fp", "task: fp\ntags: [x]"))
    after_yaml = fingerprint()
    assert after_yaml not in (first, after_utils)

    base.write_text(base.read_text() + "generation_kwargs: {max_new_tokens: 3}\n")
    assert fingerprint() not in (first, after_utils, after_yaml)


def test_fingerprint_ignores_formatting_and_comments(qa_dir: Path) -> None:
    before = load_task(qa_dir / "qa.yaml").fingerprint
    path = qa_dir / "qa.yaml"
    path.write_text("# a comment\n" + path.read_text().replace("task: qa", "task:    qa"))
    assert load_task(path).fingerprint == before


# ---- the shipped offline benchmark ---------------------------------------------------------


def import_offline_utils() -> Any:
    spec = importlib.util.spec_from_file_location(
        "offline_shapes_utils", REPO / "benchmarks/offline/utils.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_shipped_offline_data_equals_a_fresh_generation(tmp_path: Path) -> None:
    utils = import_offline_utils()
    written = utils.write(tmp_path)
    assert [p.name for p in written] == ["shapes_count.jsonl", "shapes_color.jsonl"]
    for path in written:
        assert path.read_bytes() == (REPO / "benchmarks" / "offline" / path.name).read_bytes(), path.name
    assert len(utils.documents()) == 3 * utils.N_IMAGES


def test_shipped_offline_tasks_load_and_render() -> None:
    index = discover([REPO / "benchmarks" / "offline"])
    assert index.errors == {}
    assert index.select(["offline"]) == {"shapes_count", "shapes_color", "motion"}
    count = load_task(f"{REPO}/benchmarks/offline/shapes.yaml::shapes_count")
    doc = count.doc("img000-count-square")
    request = count.request(doc)
    (image,) = request.media
    assert image.read_bytes().startswith(b"\x89PNG")
    assert count.cluster_id(doc) == "img000"
    assert count.score(doc, "1") == {"number_match": 1.0}
    color = load_task(f"{REPO}/benchmarks/offline/shapes.yaml::shapes_color")
    doc = color.doc("img000-color")
    assert color.request(doc).choices == ("blue", "green", "red", "yellow")
    assert color.score(doc, "D") == {"choice_accuracy": 1.0}


def test_group_listing_an_unknown_task_is_an_error(tmp_path: Path) -> None:
    from pytest_lmms.tasks import TaskConfigError, discover

    (tmp_path / "grp.yaml").write_text("group: mine\ntask: [real, typo_task]\n")
    (tmp_path / "real.yaml").write_text("task: real\ndataset_path: d.jsonl\ndoc_to_text: q\n")
    with pytest.raises(TaskConfigError, match="group 'mine' lists 'typo_task'"):
        discover([tmp_path]).select(["mine"])


def test_a_video_part_carries_its_sampling_into_the_cache_key(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "data.jsonl", ROWS)
    (tmp_path / "clip.mp4").write_bytes(b"not decoded here")
    write(
        tmp_path / "utils.py",
        """\
        def messages(doc):
            sampling = {"fps": 0.5, "max_frames": 16} if doc["id"] == "q0" else None
            part = {"type": "video", "video": "clip.mp4"}
            if sampling:
                part["sampling"] = sampling
            return [{"role": "user", "content": [part, {"type": "text", "text": doc["question"]}]}]

        def bad(doc):
            return [{"role": "user", "content": [{"type": "image", "image": "clip.mp4", "sampling": {"num_frames": 2}}]}]
        """,
    )
    write(
        tmp_path / "t.yaml",
        """\
        task: vid
        dataset_path: data.jsonl
        doc_to_messages: !function utils.messages
        doc_to_target: answer
        metric_list: [exact_match]
        """,
    )
    task = load_task(tmp_path / "t.yaml")
    sampled = task.request(task.doc("q0")).messages[0].content[0]
    default = task.request(task.doc("q1")).messages[0].content[0]
    assert isinstance(sampled, MediaPart) and isinstance(default, MediaPart)
    assert sampled.sampling == VideoSampling(num_frames=None, fps=0.5, max_frames=16)
    assert default.sampling is None
    canonical = task.request(task.doc("q0")).canonical()["messages"][0]["content"][0]
    assert canonical["sampling"]["fps"] == 0.5
    write(tmp_path / "t.yaml", (tmp_path / "t.yaml").read_text().replace("utils.messages", "utils.bad"))
    with pytest.raises(TypeError, match="image part cannot have a 'sampling'"):
        load_task(tmp_path / "t.yaml").request(task.doc("q0"))


def test_process_results_taking_a_judge_gets_it(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "data.jsonl", ROWS)
    write(
        tmp_path / "utils.py",
        """\
        def judged(doc, response, judge=None):
            return {"acc": 0.0 if judge is None else float(judge(response))}

        def plain(doc, response):
            return {"acc": float(response == doc["answer"])}
        """,
    )
    write(
        tmp_path / "t.yaml",
        """\
        task: judged
        dataset_path: data.jsonl
        doc_to_text: question
        process_results: !function utils.judged
        metric_list: [acc]
        """,
    )
    task = load_task(tmp_path / "t.yaml")
    doc = task.doc("q0")
    assert task.uses_judge
    assert task.score(doc, "x") == {"acc": 0.0}
    assert task.score(doc, "x", judge=lambda response: response == "x") == {"acc": 1.0}
    write(tmp_path / "t.yaml", (tmp_path / "t.yaml").read_text().replace("utils.judged", "utils.plain"))
    plain = load_task(tmp_path / "t.yaml")
    assert not plain.uses_judge
    assert plain.score(doc, "4", judge=object()) == {"acc": 1.0}


def test_an_unreachable_hub_switches_to_the_local_cache_with_a_warning(tmp_path: Path) -> None:
    import subprocess
    import sys

    write(tmp_path / "t.yaml", "task: hubbed\ndataset_path: someone/not-here\ndoc_to_text: q\n")
    script = textwrap.dedent(
        f"""\
        import os, warnings
        from pytest_lmms.tasks import DatasetError, load_task
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                load_task({str(tmp_path / "t.yaml")!r}).doc_ids()
            except DatasetError as exc:
                print("ERROR", exc)
        print("WARN", *[str(w.message) for w in caught])
        print("OFFLINE", os.environ.get("HF_HUB_OFFLINE"))
        """
    )
    env = {k: v for k, v in os.environ.items() if k not in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")}
    env.update(HF_ENDPOINT="http://127.0.0.1:1", HF_HOME=str(tmp_path / "hf"))
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120, check=True
    ).stdout
    assert "ERROR" in out and "t.yaml: task 'hubbed': dataset_path 'someone/not-here'" in out
    assert "the Hugging Face hub is unreachable (127.0.0.1:1:" in out
    assert "OFFLINE 1" in out
