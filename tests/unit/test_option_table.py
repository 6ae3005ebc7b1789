"""Every run setting is one RunConfig field: flags, ini keys, the config file, evaluate()
keywords and the results' config block all come from it and agree."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_lmms.config import RunConfig, build_run_config, config_file_keys, evaluate_flags, settings

# a raw value for each setting, as a user writes it, and the value RunConfig holds
SAMPLES = {
    "model": ("random:0", "random:0"),
    "model_args": ("answer=letter", {"answer": "letter"}),
    "tasks": ("a,b*", ("a", "b*")),
    "limit": ("5", 5),
    "cache": ("c", Path("c")),
    "output": ("o", Path("o")),
    "run_name": ("r1", "r1"),
    "data": (None, None),
    "strict_metrics": ("true", True),
    "seed": ("7", 7),
    "reasoning_tags": ("think", "think"),
    "gen_kwargs": ("max_new_tokens=4", {"max_new_tokens": "4"}),
    "repeats": ("3", 3),
    "temperature": ("0.5", 0.5),
    "baseline_model": ("random:1", "random:1"),
    "baseline_model_args": ("answer=letter", {"answer": "letter"}),
    "decode_threads": ("0", 0),
    "frame_cache": ("frames", Path("frames")),
    "shard": ("1/4", (1, 4)),
    "rescore": ("true", True),
    "judge_model": ("random:2", "random:2"),
    "judge_model_args": ("seed=3", {"seed": "3"}),
    "baseline": (None, None),
    "fail_under": (["t:acc=0.5"], ("t:acc=0.5",)),
    "fail_on_regression": (None, None),
    "mlflow": ("my-experiment", "my-experiment"),
    "wandb": ("my-project", "my-project"),
    "environment": ({"X_FROM_CONFIG": "1"}, {"X_FROM_CONFIG": "1"}),
}


def test_every_setting_has_a_sample_here() -> None:
    # a new setting is one RunConfig field; this table of sample values is what its tests read
    assert {entry.key for _, entry in settings() if entry.key != "config"} == set(SAMPLES)


def test_flags_and_ini_keys_are_in_pytest_help(pytester: pytest.Pytester) -> None:
    text = pytester.runpytest("--help").stdout.str()
    for _, entry in settings():
        if entry.flag is not None:
            assert entry.flag in text, entry.flag
            assert entry.help.split()[0] in text
        if entry.ini:
            assert f"lmms_{entry.key} " in text or f"lmms_{entry.key}(" in text, entry.key
    assert "--no-lmms-cache" in text


@pytest.mark.parametrize("key", sorted(k for k, (raw, _) in SAMPLES.items() if raw is not None))
def test_each_config_file_key_reaches_the_run_config(pytester: pytest.Pytester, key: str) -> None:
    import yaml

    raw, expected = SAMPLES[key]
    pytester.makefile(".yaml", run=yaml.safe_dump({key: raw}))
    config = pytester.parseconfig("--lmms-config=run.yaml")
    run = build_run_config(config)
    name = next(name for name, entry in settings() if entry.key == key)
    assert getattr(run, name) == expected


@pytest.mark.parametrize("key", sorted(k for k, (raw, _) in SAMPLES.items() if isinstance(raw, str)))
def test_each_ini_key_and_flag_reaches_the_run_config(pytester: pytest.Pytester, key: str) -> None:
    raw, expected = SAMPLES[key]
    name, entry = next((n, e) for n, e in settings() if e.key == key)
    pytester.makeini(f"[pytest]\nlmms_{key} = {raw}\n")
    assert getattr(build_run_config(pytester.parseconfig()), name) == expected
    if entry.flag is not None:
        flag = [entry.flag] if entry.action == "flag" else [f"{entry.flag}={raw}"]
        pytester.makeini("[pytest]\n")
        assert getattr(build_run_config(pytester.parseconfig(*flag)), name) == expected


def test_evaluate_keywords_are_the_settings_with_a_flag() -> None:
    flags = evaluate_flags()
    assert set(flags) == {e.key for _, e in settings() if e.flag is not None}
    assert flags["judge_model"] == "--judge-model" and flags["seed"] == "--lmms-seed"
    assert config_file_keys() == set(SAMPLES)
    import pytest_lmms

    with pytest.raises(ValueError, match="unknown keyword 'sed'.*seed"):
        pytest_lmms.evaluate(model="random:0", sed=1)


def test_the_results_config_block_is_every_recorded_setting() -> None:
    block = RunConfig(model_args={"api_key": "sk-1", "answer": "letter"}, shard=(0, 2)).to_json()
    assert set(block) == {name for name, entry in settings() if entry.in_results}
    assert block["model_args"] == {"api_key": "***", "answer": "letter"}
    assert block["shard"] == "0/2" and block["cache_dir"] == ".lmms-cache"
    assert "environment" not in block
