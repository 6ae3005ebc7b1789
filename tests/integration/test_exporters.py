"""The MLflow and W&B exporters against the real libraries, in their local modes.

Each test runs a real session with ``--lmms-mlflow`` / ``--lmms-wandb`` and reads the
exported run back with the library's own reader (MLflow's client on a local store; W&B's
offline run files), comparing every number with results.json.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import qa_rows, qa_task_yaml, write_jsonl


def run_session(pytester: pytest.Pytester, *options: str) -> tuple[pytest.RunResult, dict]:
    write_jsonl(pytester.path / "qa.jsonl", qa_rows(10, wrong=[1, 4, 7], cluster_size=2))
    pytester.makefile(".yaml", qa=qa_task_yaml("qa", "qa.jsonl", "cluster_key: group\n"))
    result = pytester.runpytest_subprocess(
        "--model=scripted:m1", "--lmms-output=results", "--no-lmms-cache", "--lmms-html", *options
    )
    (path,) = pytester.path.glob("results/*/results.json")
    return result, json.loads(path.read_text())


def expected_metrics(results: dict) -> dict[str, float]:
    metric = results["tasks"]["qa"]["metrics"]["exact_match"]
    out = {"qa/exact_match": metric["value"]}
    out.update({f"qa/exact_match_{k}": metric[k] for k in ("ci_low", "ci_high", "se", "n")})
    return out


def test_mlflow_exporter_logs_metrics_intervals_config_and_files(
    lmms_project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    if importlib.util.find_spec("mlflow") is None:  # found, not imported (see read_mlflow_run)
        pytest.skip("the mlflow extra is not installed")
    store = (lmms_project.path / "mlruns").as_uri()  # a local file store (mlflow-skinny has no SQL)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3's opt-in for file stores
    result, results = run_session(lmms_project, "--lmms-mlflow=evals", "--model-args=batch_size=2")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str() + result.stderr.str()
    assert "failed: " not in result.stdout.str()  # no exporter failure line

    run = read_mlflow_run(store, "evals")
    assert run["metrics"] == pytest.approx(expected_metrics(results))
    assert run["params"]["model"] == "scripted:m1"
    assert run["params"]["model_args.batch_size"] == "2"
    assert run["tags"]["pytest_lmms.model"] == "scripted:m1"
    assert run["tags"]["pytest_lmms.identity.model"] == "m1"
    assert {"results.json", "samples_qa.jsonl", "report.html"} <= set(run["files"])


READ_MLFLOW = """
import json, sys
from mlflow.tracking import MlflowClient
client = MlflowClient(tracking_uri=sys.argv[1])
(run,) = client.search_runs([client.get_experiment_by_name(sys.argv[2]).experiment_id])
files = [entry.path for entry in client.list_artifacts(run.info.run_id)]
print(json.dumps({"metrics": run.data.metrics, "params": run.data.params, "tags": run.data.tags, "files": files}))
"""


def read_mlflow_run(store: str, experiment: str) -> dict:
    # MLflow's own client reads the store, in a process of its own: imported into the test
    # process, mlflow leaves later in-process pytester runs unable to load pytest-lmms
    out = subprocess.run(
        [sys.executable, "-c", READ_MLFLOW, store, experiment], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_wandb_exporter_writes_an_offline_run_with_the_same_numbers(
    lmms_project: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("wandb", reason="the wandb extra is not installed")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_DIR", str(lmms_project.path))
    monkeypatch.setenv("WANDB_SILENT", "true")
    result, results = run_session(lmms_project, "--lmms-wandb=evals")
    assert result.ret == pytest.ExitCode.OK, result.stdout.str() + result.stderr.str()
    assert "failed: " not in result.stdout.str()

    (log,) = lmms_project.path.glob("wandb/offline-run-*/run-*.wandb")
    records = offline_records(log)
    summary = {
        item.key: json.loads(item.value_json)
        for record in records
        if record.HasField("summary")
        for item in record.summary.update
    }
    expected = expected_metrics(results)
    assert {key: summary[key] for key in expected} == pytest.approx(expected)
    # the config given to wandb.init is in the run record, later updates in config records
    config = {
        item.key: json.loads(item.value_json)
        for record in records
        for item in (
            record.run.config.update
            if record.HasField("run")
            else record.config.update
            if record.HasField("config")
            else ()
        )
    }
    assert config["model"] == "scripted:m1" and config["pytest_lmms.identity.model"] == "m1"
    (artifact,) = [record.artifact for record in records if record.HasField("artifact")]
    files = {entry.path for entry in artifact.manifest.contents}
    assert {"results.json", "samples_qa.jsonl", "report.html"} <= files


def offline_records(path: Path) -> list:
    """The protobuf records of a W&B offline run file: a 7-byte header (":W&B", magic, version),
    then LevelDB-log framing (32 KiB blocks; each chunk: CRC32C, length, type FULL / FIRST /
    MIDDLE / LAST). wandb 0.31 ships no Python reader for it, so the test reads it itself."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    block, position, pending, records = 32768, 7, b"", []
    while position + 7 <= len(data):
        if block - position % block < 7:  # a block's tail too short for a header is padding
            position += block - position % block
            continue
        length = int.from_bytes(data[position + 4 : position + 6], "little")
        kind = data[position + 6]
        chunk = data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind == 0 and length == 0:
            break
        pending = chunk if kind in (1, 2) else pending + chunk
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
    return records


def test_an_exporter_asked_for_without_its_library_is_a_usage_error(lmms_project: pytest.Pytester) -> None:
    # a module named like the library that fails to import stands in for its absence
    lmms_project.makepyfile(wandb="raise ImportError('not installed here')")
    lmms_project.syspathinsert()
    write_jsonl(lmms_project.path / "qa.jsonl", qa_rows(2))
    lmms_project.makefile(".yaml", qa=qa_task_yaml("qa", "qa.jsonl"))
    result = lmms_project.runpytest_subprocess("--model=scripted:m1", "--lmms-wandb", "--no-lmms-cache")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*--lmms-wandb needs the wandb package: pip install 'pytest-lmms[[]wandb[]]'*"]
    )
