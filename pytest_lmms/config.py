"""RunConfig: the settings of one run, from the command line, ini keys or a YAML file.

Precedence, highest first: command-line option, ini / pyproject key, ``--lmms-config``
YAML, built-in default.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

DEFAULT_MODEL = "hf:tiny-qwen2-vl"
DEFAULT_SEED = 1234
DEFAULT_OUTPUT = "results"
DEFAULT_CACHE = ".lmms-cache"

# option dest -> (ini key, help). The ini key doubles as the key in --lmms-config files.
_SETTINGS: dict[str, tuple[str, str]] = {
    "lmms_model": ("model", "model to evaluate as BACKEND:MODEL_ID (default: the embedded tiny model)"),
    "lmms_model_args": ("model_args", "backend arguments as k=v,k2=v2"),
    "lmms_tasks": ("tasks", "tasks, groups or globs to run, comma separated (default: every collected task)"),
    "lmms_limit": ("limit", "take the first N documents of each task"),
    "lmms_cache": ("cache", f"response cache directory (default: {DEFAULT_CACHE})"),
    "lmms_output": ("output", f"directory for results.json and samples files (default: {DEFAULT_OUTPUT})"),
    "lmms_run_name": ("run_name", "name of this run's results folder (default: time and model)"),
    "lmms_strict_metrics": (
        "strict_metrics",
        "fail the run (exit 1) when a metric a task declares was produced by no sample",
    ),
    "lmms_data": (
        "data",
        "folder of local dataset copies (pytest-lmms download): hub datasets are read from it "
        "(default: $PYTEST_LMMS_DATA)",
    ),
    "lmms_seed": ("seed", f"seed for Python, NumPy and torch (default: {DEFAULT_SEED})"),
    "lmms_reasoning_tags": (
        "reasoning_tags",
        "reasoning tags to strip: names (think,reasoning), <open>:<close> pairs, or none",
    ),
    "lmms_gen_kwargs": (
        "gen_kwargs",
        "generation overrides for every task as k=v,... (max_new_tokens, temperature, top_p, seed)",
    ),
    "lmms_repeats": ("repeats", "ask each sample K times (sampled; adds EA, CA, IV and CR to the summary)"),
    "lmms_temperature": (
        "temperature",
        "sampling temperature for every task (default 0.7 with --lmms-repeats > 1)",
    ),
    "lmms_baseline_model": (
        "baseline_model",
        "a second model (BACKEND:MODEL_ID) asked the same samples in this session, for paired comparisons",
    ),
    "lmms_baseline_model_args": ("baseline_model_args", "backend arguments of the baseline model as k=v,..."),
    "lmms_decode_threads": (
        "decode_threads",
        "threads decoding videos ahead of the model (default 2; 0 decodes on demand only)",
    ),
    "lmms_frame_cache": (
        "frame_cache",
        "also keep decoded video frames in this folder, across runs and processes (diskcache)",
    ),
    "lmms_shard": (
        "shard",
        "run shard I of N (I/N, from 0): a stable split of the samples by task and document",
    ),
    "lmms_rescore": (
        "rescore",
        "score from the response cache only: no model is loaded, a sample not in the cache fails",
    ),
    "lmms_judge_model": (
        "judge_model",
        "the LLM judge (BACKEND:MODEL_ID) for benchmarks scored or rescued by a judge",
    ),
    "lmms_judge_model_args": ("judge_model_args", "backend arguments of the judge model as k=v,..."),
    "lmms_baseline": (
        "baseline",
        "a previous run's results.json (or its folder), 'latest' or 'latest:MODEL': paired comparisons per task",
    ),
    "lmms_fail_on_regression": (
        "fail_on_regression",
        "with a baseline: exit non-zero when a task is significantly worse than the baseline by more than MARGIN (default 0)",
    ),
}


@dataclass(frozen=True)
class RunConfig:
    model: str = DEFAULT_MODEL
    model_args: Mapping[str, str] = field(default_factory=dict)
    tasks: tuple[str, ...] = ()
    limit: int | None = None
    cache_dir: Path | None = Path(DEFAULT_CACHE)
    output_dir: Path = Path(DEFAULT_OUTPUT)
    run_name: str | None = None
    seed: int = DEFAULT_SEED
    reasoning_tags: str | None = None
    gen_kwargs: Mapping[str, str] = field(default_factory=dict)
    config_file: Path | None = None
    environment: Mapping[str, str] = field(default_factory=dict)
    repeats: int = 1
    temperature: float | None = None
    baseline: Path | None = None
    baseline_model: str | None = None
    baseline_model_args: Mapping[str, str] = field(default_factory=dict)
    fail_under: tuple[str, ...] = ()
    fail_on_regression: float | None = None
    judge_model: str | None = None
    decode_threads: int = 2
    rescore: bool = False
    shard: tuple[int, int] | None = None
    frame_cache_dir: Path | None = None
    judge_model_args: Mapping[str, str] = field(default_factory=dict)
    data_dir: Path | None = None
    strict_metrics: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "model_args": _redact(self.model_args),
            "tasks": list(self.tasks),
            "limit": self.limit,
            "cache_dir": str(self.cache_dir) if self.cache_dir else None,
            "output_dir": str(self.output_dir),
            "run_name": self.run_name,
            "seed": self.seed,
            "reasoning_tags": self.reasoning_tags,
            "gen_kwargs": dict(self.gen_kwargs),
            "config_file": str(self.config_file) if self.config_file else None,
            "repeats": self.repeats,
            "temperature": self.temperature,
            "baseline": str(self.baseline) if self.baseline else None,
            "baseline_model": self.baseline_model,
            "baseline_model_args": _redact(self.baseline_model_args),
            "fail_under": list(self.fail_under),
            "fail_on_regression": self.fail_on_regression,
            "decode_threads": self.decode_threads,
            "rescore": self.rescore,
            "shard": f"{self.shard[0]}/{self.shard[1]}" if self.shard else None,
            "frame_cache_dir": str(self.frame_cache_dir) if self.frame_cache_dir else None,
            "judge_model": self.judge_model,
            "judge_model_args": _redact(self.judge_model_args),
            "data_dir": str(self.data_dir) if self.data_dir else None,
            "strict_metrics": self.strict_metrics,
        }


# An argument holding a secret; not one naming where a secret is (api_key_env) or
# counting tokens (max_tokens_field, max_batch_tokens).
_SECRET = re.compile(r"(key|token(?!s)|secret|password|auth)", re.IGNORECASE)
_NAMES_A_SECRET = ("_env", "_file_env")


def _is_secret(name: str) -> bool:
    return bool(_SECRET.search(name)) and not name.endswith(_NAMES_A_SECRET)


# Plain decimal numbers only: "1e3" or "nan" stay text, and so does "007" (an id, not 7).
_INTEGER = re.compile(r"[+-]?(0|[1-9][0-9]*)")
_DECIMAL = re.compile(r"[+-]?(0|[1-9][0-9]*)\.[0-9]+")


def _redact(args: Mapping[str, str]) -> dict[str, str | int | float]:
    """Backend arguments as results.json records them: secrets hidden, numbers as numbers."""
    return {k: ("***" if _is_secret(k) else _json_value(v)) for k, v in args.items()}


def _json_value(text: str) -> str | int | float:
    # The backend still gets the text (it converts what it needs); only the record that
    # readers compare and plot is typed: max_concurrency=8 is 8, not "8".
    if _INTEGER.fullmatch(text):
        return int(text)
    if _DECIMAL.fullmatch(text):
        return float(text)
    return text


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("lmms", "pytest-lmms: multimodal model evaluation")
    group.addoption("--model", dest="lmms_model", default=None, help=_SETTINGS["lmms_model"][1])
    group.addoption(
        "--model-args", dest="lmms_model_args", default=None, help=_SETTINGS["lmms_model_args"][1]
    )
    group.addoption("--tasks", dest="lmms_tasks", default=None, help=_SETTINGS["lmms_tasks"][1])
    group.addoption("--limit", dest="lmms_limit", default=None, help=_SETTINGS["lmms_limit"][1])
    group.addoption(
        "--lmms-cache", dest="lmms_cache", default=None, metavar="DIR", help=_SETTINGS["lmms_cache"][1]
    )
    group.addoption(
        "--no-lmms-cache",
        dest="lmms_no_cache",
        action="store_true",
        default=False,
        help="do not read or write the response cache",
    )
    group.addoption(
        "--lmms-output", dest="lmms_output", default=None, metavar="DIR", help=_SETTINGS["lmms_output"][1]
    )
    group.addoption("--lmms-run-name", dest="lmms_run_name", default=None, help=_SETTINGS["lmms_run_name"][1])
    group.addoption(
        "--lmms-data", dest="lmms_data", default=None, metavar="DIR", help=_SETTINGS["lmms_data"][1]
    )
    group.addoption(
        "--lmms-strict-metrics",
        dest="lmms_strict_metrics",
        action="store_const",
        const="true",
        default=None,
        help=_SETTINGS["lmms_strict_metrics"][1],
    )
    group.addoption("--lmms-seed", dest="lmms_seed", default=None, help=_SETTINGS["lmms_seed"][1])
    group.addoption(
        "--lmms-reasoning-tags",
        dest="lmms_reasoning_tags",
        default=None,
        help=_SETTINGS["lmms_reasoning_tags"][1],
    )
    group.addoption(
        "--lmms-gen-kwargs", dest="lmms_gen_kwargs", default=None, help=_SETTINGS["lmms_gen_kwargs"][1]
    )
    group.addoption(
        "--lmms-repeats", dest="lmms_repeats", default=None, metavar="K", help=_SETTINGS["lmms_repeats"][1]
    )
    group.addoption(
        "--lmms-temperature",
        dest="lmms_temperature",
        default=None,
        metavar="T",
        help=_SETTINGS["lmms_temperature"][1],
    )
    group.addoption(
        "--baseline-model",
        dest="lmms_baseline_model",
        default=None,
        metavar="BACKEND:MODEL_ID",
        help=_SETTINGS["lmms_baseline_model"][1],
    )
    group.addoption(
        "--baseline-model-args",
        dest="lmms_baseline_model_args",
        default=None,
        help=_SETTINGS["lmms_baseline_model_args"][1],
    )
    group.addoption(
        "--lmms-decode-threads",
        dest="lmms_decode_threads",
        default=None,
        metavar="N",
        help=_SETTINGS["lmms_decode_threads"][1],
    )
    group.addoption(
        "--lmms-frame-cache",
        dest="lmms_frame_cache",
        default=None,
        metavar="DIR",
        help=_SETTINGS["lmms_frame_cache"][1],
    )
    group.addoption(
        "--lmms-shard", dest="lmms_shard", default=None, metavar="I/N", help=_SETTINGS["lmms_shard"][1]
    )
    group.addoption(
        "--lmms-rescore",
        dest="lmms_rescore",
        action="store_true",
        default=None,
        help=_SETTINGS["lmms_rescore"][1],
    )
    group.addoption(
        "--judge-model",
        dest="lmms_judge_model",
        default=None,
        metavar="BACKEND:MODEL_ID",
        help=_SETTINGS["lmms_judge_model"][1],
    )
    group.addoption(
        "--judge-model-args",
        dest="lmms_judge_model_args",
        default=None,
        help=_SETTINGS["lmms_judge_model_args"][1],
    )
    group.addoption(
        "--baseline",
        dest="lmms_baseline",
        default=None,
        metavar="RESULTS",
        help=_SETTINGS["lmms_baseline"][1],
    )
    group.addoption(
        "--lmms-fail-under",
        dest="lmms_fail_under",
        action="append",
        default=None,
        metavar="TASK:METRIC=VALUE",
        help="exit non-zero when a task's metric is below VALUE (repeatable; TASK may be a glob)",
    )
    group.addoption(
        "--lmms-fail-on-regression",
        dest="lmms_fail_on_regression",
        nargs="?",
        const="0",
        default=None,
        metavar="MARGIN",
        help=_SETTINGS["lmms_fail_on_regression"][1],
    )
    parser.addini("lmms_fail_under", "gates as TASK:METRIC=VALUE, one per line", type="linelist", default=[])
    group.addoption(
        "--lmms-gpus-per-worker",
        dest="lmms_gpus_per_worker",
        type=int,
        default=None,
        metavar="N",
        help="with -n: pin each xdist worker to its own N visible GPUs (CUDA_VISIBLE_DEVICES)",
    )
    group.addoption(
        "--lmms-html",
        dest="lmms_html",
        nargs="?",
        const="",
        default=None,
        metavar="PATH",
        help="also write the run's self-contained HTML report (default PATH: report.html in the run folder)",
    )
    # Display only (they change no result): command line, not run settings.
    group.addoption(
        "--lmms-progress",
        dest="lmms_progress",
        choices=("auto", "live", "lines", "off"),
        default="auto",
        help="progress: a live status area on a terminal, a plain line every interval in logs (auto), or off",
    )
    group.addoption(
        "--lmms-progress-interval",
        dest="lmms_progress_interval",
        type=float,
        default=None,
        metavar="SECONDS",
        help="seconds between progress lines (default 30) or status area refreshes (default 0.5)",
    )
    group.addoption(
        "--lmms-config",
        dest="lmms_config",
        default=None,
        metavar="FILE",
        help="YAML file with run settings (model, model_args, tasks, limit, gen_kwargs, environment, ...)",
    )
    for key, help_text in _SETTINGS.values():
        parser.addini(f"lmms_{key}", help_text, default=None)


def parse_kv(text: str | Mapping[str, Any] | None, what: str) -> dict[str, str]:
    """Parse ``k=v,k2=v2`` (or a mapping from YAML) into a dict of strings."""
    if text is None or text == "":
        return {}
    if isinstance(text, Mapping):
        return {str(k): str(v) for k, v in text.items()}
    out: dict[str, str] = {}
    for item in str(text).split(","):
        if not item.strip():
            continue
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise pytest.UsageError(
                f"{what}: expected k=v pairs separated by commas, got {item!r} in {text!r}"
            )
        out[key.strip()] = value.strip()
    return out


def _load_config_file(path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise pytest.UsageError(f"--lmms-config {path}: cannot read: {exc}") from None
    except yaml.YAMLError as exc:
        raise pytest.UsageError(f"--lmms-config {path}: invalid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise pytest.UsageError(f"--lmms-config {path}: expected a mapping at top level")
    known = {key for key, _ in _SETTINGS.values()} | {"environment", "fail_under"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise pytest.UsageError(f"--lmms-config {path}: unknown field(s) {unknown}; known: {sorted(known)}")
    return data


def build_run_config(config: pytest.Config) -> RunConfig:
    file_path = config.getoption("lmms_config")
    from_file = _load_config_file(Path(file_path)) if file_path else {}

    def setting(dest: str) -> Any:
        key = _SETTINGS[dest][0]
        cli = config.getoption(dest)
        if cli is not None:
            return cli
        ini = config.getini(f"lmms_{key}")
        if ini not in (None, "", []):
            return ini
        return from_file.get(key)

    tasks_value = setting("lmms_tasks")
    if isinstance(tasks_value, (list, tuple)):
        tasks = tuple(str(t).strip() for t in tasks_value if str(t).strip())
    else:
        tasks = tuple(t.strip() for t in str(tasks_value or "").split(",") if t.strip())

    limit = _to_int(setting("lmms_limit"), "--limit", minimum=1)
    seed = _to_int(setting("lmms_seed"), "--lmms-seed", minimum=0)
    cache_value = setting("lmms_cache")
    cache_dir = None if config.getoption("lmms_no_cache") else Path(cache_value or DEFAULT_CACHE)
    environment = from_file.get("environment") or {}
    if not isinstance(environment, dict):
        raise pytest.UsageError(f"--lmms-config {file_path}: 'environment' must be a mapping")
    fail_under_specs = list(config.getoption("lmms_fail_under") or []) or list(
        config.getini("lmms_fail_under")
    )
    if not fail_under_specs:
        from_file_gates = from_file.get("fail_under") or []
        fail_under_specs = [from_file_gates] if isinstance(from_file_gates, str) else list(from_file_gates)
    from pytest_lmms.report import FailUnder

    for spec in fail_under_specs:
        try:
            FailUnder.parse(spec)
        except ValueError as exc:
            raise pytest.UsageError(str(exc)) from None
    regression = setting("lmms_fail_on_regression")
    try:
        margin = None if regression is None else float(regression)
    except ValueError:
        raise pytest.UsageError(
            f"--lmms-fail-on-regression expects a margin (a number), got {regression!r}"
        ) from None
    repeats = _to_int(setting("lmms_repeats"), "--lmms-repeats", minimum=1) or 1
    temperature_value = setting("lmms_temperature")
    try:
        temperature = None if temperature_value is None else float(temperature_value)
    except ValueError:
        raise pytest.UsageError(f"--lmms-temperature expects a number, got {temperature_value!r}") from None
    if temperature is not None and temperature < 0:
        raise pytest.UsageError(f"--lmms-temperature must be >= 0, got {temperature}")
    threads = _to_int(setting("lmms_decode_threads"), "--lmms-decode-threads", minimum=0)
    decode_threads = 2 if threads is None else threads
    baseline = setting("lmms_baseline")
    if baseline is not None:
        from pytest_lmms.report import resolve_run

        try:  # 'latest' / 'latest:MODEL': the newest saved run, found before this run writes any
            baseline = resolve_run(baseline, setting("lmms_output") or DEFAULT_OUTPUT)
        except ValueError as exc:
            raise pytest.UsageError(f"--baseline {baseline}: {exc}") from None
        if not Path(baseline).exists():
            raise pytest.UsageError(f"--baseline {baseline}: no such file or folder")
    baseline_model = setting("lmms_baseline_model")
    if baseline is not None and baseline_model is not None:
        raise pytest.UsageError(
            "give --baseline (a saved run) or --baseline-model (a second model), not both"
        )
    if margin is not None and baseline is None and baseline_model is None:
        raise pytest.UsageError(
            "--lmms-fail-on-regression needs a baseline (--baseline RESULTS or --baseline-model SPEC)"
        )
    rescore = _to_bool(setting("lmms_rescore"), "--lmms-rescore")
    shard = _shard(setting("lmms_shard"))
    if rescore and cache_dir is None:
        raise pytest.UsageError(
            "--lmms-rescore scores from the response cache: it cannot go with --no-lmms-cache"
        )
    return RunConfig(
        repeats=repeats,
        temperature=temperature,
        baseline=Path(baseline) if baseline is not None else None,
        baseline_model=baseline_model,
        baseline_model_args=parse_kv(setting("lmms_baseline_model_args"), "--baseline-model-args"),
        fail_under=tuple(fail_under_specs),
        fail_on_regression=margin,
        judge_model=setting("lmms_judge_model"),
        decode_threads=decode_threads,
        rescore=rescore,
        shard=shard,
        frame_cache_dir=Path(setting("lmms_frame_cache")) if setting("lmms_frame_cache") else None,
        judge_model_args=parse_kv(setting("lmms_judge_model_args"), "--judge-model-args"),
        data_dir=_data_dir(setting("lmms_data")),
        strict_metrics=bool(_to_bool(setting("lmms_strict_metrics"), "--lmms-strict-metrics")),
        model=str(setting("lmms_model") or DEFAULT_MODEL),
        model_args=parse_kv(setting("lmms_model_args"), "--model-args"),
        tasks=tasks,
        limit=limit,
        cache_dir=cache_dir,
        output_dir=Path(setting("lmms_output") or DEFAULT_OUTPUT),
        run_name=setting("lmms_run_name"),
        seed=DEFAULT_SEED if seed is None else seed,
        reasoning_tags=setting("lmms_reasoning_tags"),
        gen_kwargs=_checked_gen_kwargs(parse_kv(setting("lmms_gen_kwargs"), "--lmms-gen-kwargs")),
        config_file=Path(file_path) if file_path else None,
        environment={str(k): str(v) for k, v in environment.items()},
    )


def _data_dir(value: Any) -> Path | None:
    from pytest_lmms.tasks._local import data_dir_from_environment

    folder = Path(value) if value else data_dir_from_environment()
    if folder is not None and not folder.is_dir():
        raise pytest.UsageError(f"--lmms-data {folder}: no such folder (make it with pytest-lmms download)")
    return folder


GEN_OVERRIDES = {
    "max_new_tokens": int,
    "temperature": float,
    "top_p": float,
    "seed": int,
    "stop": str,
    "until": str,
}


def _checked_gen_kwargs(values: dict[str, str]) -> dict[str, str]:
    """Generation overrides are checked up front: a typo is one usage error, not a failed run."""
    for key, value in values.items():
        kind = GEN_OVERRIDES.get(key)
        if kind is None:
            raise pytest.UsageError(
                f"--lmms-gen-kwargs: unknown key {key!r}; known: {', '.join(GEN_OVERRIDES)}"
            )
        try:
            kind(value)
        except ValueError:
            raise pytest.UsageError(
                f"--lmms-gen-kwargs: {key} expects {kind.__name__}, got {value!r}"
            ) from None
    return values


def _to_int(value: Any, option: str, minimum: int) -> int | None:
    if value is None or value == "":
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise pytest.UsageError(f"{option} expects an integer, got {value!r}") from None
    if number < minimum:
        raise pytest.UsageError(f"{option} must be >= {minimum}, got {number}")
    return number


def _to_bool(value: Any, option: str) -> bool:
    """A flag from the command line (True/None), an ini value or a config file entry."""
    if value is None or isinstance(value, bool):
        return bool(value)
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise pytest.UsageError(f"{option} expects true or false, got {value!r}")


def _shard(value: Any) -> tuple[int, int] | None:
    if value is None or value == "":
        return None
    index, _, count = str(value).partition("/")
    try:
        shard = (int(index), int(count))
    except ValueError:
        raise pytest.UsageError(f"--lmms-shard expects I/N (shard I of N, from 0), got {value!r}") from None
    if not 0 <= shard[0] < shard[1]:
        raise pytest.UsageError(f"--lmms-shard {value}: I must be in 0..N-1")
    return shard
