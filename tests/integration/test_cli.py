"""The `pytest-lmms` command: `tasks` and `models`, in-process and as the console script."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_lmms.cli import main

ROOT = Path(__file__).resolve().parents[2]
OFFLINE = ROOT / "benchmarks" / "offline"


def console_script() -> list[str]:
    script = Path(sys.executable).with_name("pytest-lmms")
    if script.exists():
        return [str(script)]
    found = shutil.which("pytest-lmms")
    if found is None:
        pytest.skip("the pytest-lmms console script is not installed")
    return [found]


def table_rows(out: str) -> dict[str, list[str]]:
    """Rows of a `tasks` / `models` table by their first cell (header and rule skipped)."""
    lines = out.strip().splitlines()
    assert set(lines[1].replace(" ", "")) == {"-"}, out  # the rule under the header
    rows: dict[str, list[str]] = {}
    for line in lines[2:]:
        if not line.strip():
            break
        cells = line.split()
        rows[cells[0]] = cells
    return rows


def test_tasks_lists_offline_tasks_with_group_size_and_yaml(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tasks", str(OFFLINE)]) == 0
    captured = capsys.readouterr()
    assert captured.err == ""
    assert captured.out.splitlines()[0].split() == ["task", "groups", "dataset", "split", "docs", "yaml"]
    rows = table_rows(captured.out)
    yaml = str(OFFLINE / "shapes.yaml")
    assert rows["shapes_count"][1:] == ["offline", "shapes_count.jsonl", "test", "80", yaml]
    assert rows["shapes_color"][1:] == ["offline", "shapes_color.jsonl", "test", "40", yaml]
    assert rows["motion"][1:5] == ["offline", "motion.jsonl", "test", "36"]
    assert "group" not in rows  # the group file is not listed as a task
    for cells in rows.values():
        assert Path(cells[5]).is_file()


def test_tasks_console_script_prints_what_main_prints(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    proc = subprocess.run(
        [*console_script(), "tasks", "benchmarks/offline"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    rows = table_rows(proc.stdout)
    assert rows["shapes_count"][-2:] == ["80", "benchmarks/offline/shapes.yaml"]
    assert rows["shapes_color"][-2:] == ["40", "benchmarks/offline/shapes.yaml"]
    monkeypatch.chdir(ROOT)
    assert main(["tasks", "benchmarks/offline"]) == 0
    assert capsys.readouterr().out == proc.stdout


def test_tasks_reports_broken_yaml_on_stderr_and_still_lists_good_tasks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "data.jsonl").write_text('{"id": "1"}\n{"id": "2"}\n\n{"id": "3"}\n')
    (tmp_path / "good.yaml").write_text('task: good\ndataset_path: data.jsonl\ndoc_to_text: "q"\n')
    (tmp_path / "nested").mkdir()
    (tmp_path / "nested" / "also_good.yaml").write_text(
        'task: also_good\ndataset_path: ../data.jsonl\ndoc_to_text: "q"\n'
    )
    (tmp_path / "syntax.yaml").write_text("task: syntax\ndataset_path: [data.jsonl\n")
    (tmp_path / "schema.yaml").write_text("task: schema\ndataset_path: data.jsonl\ndoc_to_txt: q\n")
    (tmp_path / "notes.yaml").write_text("title: not a task file\n")  # ignored, not an error
    assert main(["tasks", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    rows = table_rows(captured.out)
    assert set(rows) == {"good", "also_good"}
    assert rows["good"][1] == "-" and rows["good"][-2:] == ["3", str(tmp_path / "good.yaml")]
    assert rows["also_good"][-2] == "3"
    errors = captured.err.splitlines()
    assert len(errors) == 2, captured.err
    (schema,) = [line for line in errors if "schema.yaml" in line]
    assert schema.startswith("error: ") and "doc_to_txt" in schema
    (syntax,) = [line for line in errors if "syntax.yaml" in line]
    assert syntax.startswith("error: ") and "invalid YAML" in syntax


def test_tasks_console_script_exits_1_on_a_broken_yaml(tmp_path: Path) -> None:
    (tmp_path / "data.jsonl").write_text('{"id": "1"}\n')
    (tmp_path / "good.yaml").write_text('task: good\ndataset_path: data.jsonl\ndoc_to_text: "q"\n')
    (tmp_path / "bad.yaml").write_text("task: bad\ndataset_path: data.jsonl\nmetric_lst: []\n")
    proc = subprocess.run(
        [*console_script(), "tasks", str(tmp_path)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 1
    assert "good" in table_rows(proc.stdout) and "bad" not in table_rows(proc.stdout)
    assert "bad.yaml" in proc.stderr and "metric_lst" in proc.stderr


def test_tasks_shows_every_group_of_a_task_and_defaults_to_benchmarks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = tmp_path / "benchmarks"
    bench.mkdir()
    (bench / "d.jsonl").write_text('{"id": "1"}\n')
    for name in ("t1", "t2"):
        (bench / f"{name}.yaml").write_text(f'task: {name}\ndataset_path: d.jsonl\ndoc_to_text: "q"\n')
    (bench / "g_all.yaml").write_text("group: all_of_them\ntask: [t1, t2]\n")
    (bench / "g_one.yaml").write_text("group: just_one\ntask: [t1]\n")
    monkeypatch.chdir(tmp_path)
    assert main(["tasks"]) == 0
    rows = table_rows(capsys.readouterr().out)
    assert set(rows) == {"t1", "t2"}
    assert rows["t1"][1] == "all_of_them,just_one" and rows["t2"][1] == "all_of_them"
    assert rows["t1"][-1] == str(Path("benchmarks") / "t1.yaml")


def test_tasks_in_a_folder_without_tasks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tasks", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == f"no tasks found under {tmp_path}"


def test_models_lists_the_builtin_backends(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    rows = table_rows(out)
    assert {"hf", "random"} <= set(rows)
    assert rows["random"][1:] == ["built-in", "(pytest_lmms.models.random)"]
    assert "hf:tiny-qwen2-vl" in out


def test_models_console_script_lists_hf_and_random_without_importing_them() -> None:
    proc = subprocess.run([*console_script(), "models"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert {"hf", "random"} <= set(table_rows(proc.stdout))
    probe = (
        "import sys; from pytest_lmms.cli import main; main(['models']); "
        "print('heavy', sorted(m for m in ('torch', 'transformers', 'pytest_lmms.models.hf') if m in sys.modules))"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert proc.stdout.splitlines()[-1] == "heavy []", proc.stdout + proc.stderr


def test_unknown_or_missing_subcommand_is_an_argparse_error(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in ([], ["nosuch"]):
        with pytest.raises(SystemExit) as exit_info:
            main(argv)
        assert exit_info.value.code == 2
    assert "usage: pytest-lmms" in capsys.readouterr().err
