"""RunConfig: the settings of one run, from the command line, ini keys or a YAML file.

Every run setting is declared once, as a field of ``RunConfig`` made with ``setting(...)``:
its type and default (the field's), its command-line flag and help, its ini key
(``lmms_<key>``) and ``--lmms-config`` key (``<key>``), its ``evaluate()`` keyword
(``<key>``), how a raw value is parsed and checked, whether it enters results.json and
whether it is redacted there. The options, ini keys, config-file schema, ``evaluate()``
keywords, redaction and the results' config block are all derived from those fields.

Precedence, highest first: command-line option, ini / pyproject key, ``--lmms-config``
YAML, the field's default.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import pytest

DEFAULT_MODEL = "hf:tiny-qwen2-vl"
DEFAULT_SEED = 1234
DEFAULT_OUTPUT = "results"
DEFAULT_CACHE = ".lmms-cache"

Parse = Callable[[Any, str], Any]
Action = Literal["value", "flag", "optional", "append"]


@dataclass(frozen=True)
class Setting:
    """How one RunConfig field is given and recorded."""

    key: str  # ini key lmms_<key>, --lmms-config key, evaluate() keyword
    flag: str | None  # None: not on the command line (config file only)
    help: str
    parse: Parse
    action: Action = "value"
    metavar: str | None = None
    const: str | None = None  # the value of an "optional" flag given bare
    ini: bool = True  # has an ini key
    in_results: bool = True
    redact: bool = False  # a mapping of backend arguments whose secrets are hidden in results
    negative_flag: str | None = None  # a flag that sets the value to None (--no-lmms-cache)
    negative_help: str = ""


def setting(
    key: str,
    flag: str | None,
    help: str,
    parse: Parse,
    *,
    default: Any = None,
    default_factory: Callable[[], Any] | None = None,
    **options: Any,
) -> Any:
    """A RunConfig field declared with everything needed to give it and record it."""
    meta = {"setting": Setting(key, flag, help, parse, **options)}
    if default_factory is not None:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


# ---- value parsers: (raw value, the flag naming it) -> typed value, or a usage error --------


def _text(value: Any, option: str) -> str | None:
    return None if value is None or value == "" else str(value)


def _path(value: Any, option: str) -> Path | None:
    return None if value is None or value == "" else Path(value)


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


def _integer(minimum: int, default: int | None = None) -> Parse:
    def parse(value: Any, option: str) -> int | None:
        number = _to_int(value, option, minimum)
        return default if number is None else number

    return parse


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


def _tasks(value: Any, option: str) -> tuple[str, ...]:
    if isinstance(value, (list, tuple)):
        return tuple(str(t).strip() for t in value if str(t).strip())
    return tuple(t.strip() for t in str(value or "").split(",") if t.strip())


def _temperature(value: Any, option: str) -> float | None:
    if value is None or value == "":
        return None
    try:
        temperature = float(value)
    except (TypeError, ValueError):
        raise pytest.UsageError(f"{option} expects a number, got {value!r}") from None
    if temperature < 0:
        raise pytest.UsageError(f"{option} must be >= 0, got {temperature}")
    return temperature


def _margin(value: Any, option: str) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        raise pytest.UsageError(f"{option} expects a margin (a number), got {value!r}") from None


def _shard(value: Any, option: str = "--lmms-shard") -> tuple[int, int] | None:
    if value is None or value == "":
        return None
    index, _, count = str(value).partition("/")
    try:
        shard = (int(index), int(count))
    except ValueError:
        raise pytest.UsageError(f"{option} expects I/N (shard I of N, from 0), got {value!r}") from None
    if not 0 <= shard[0] < shard[1]:
        raise pytest.UsageError(f"{option} {value}: I must be in 0..N-1")
    return shard


def _gates(value: Any, option: str) -> tuple[str, ...]:
    specs = [value] if isinstance(value, str) else list(value or [])
    from pytest_lmms.report import FailUnder

    for spec in specs:
        try:
            FailUnder.parse(spec)
        except ValueError as exc:
            raise pytest.UsageError(str(exc)) from None
    return tuple(specs)


def _environment(value: Any, option: str) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise pytest.UsageError(f"{option}: 'environment' must be a mapping")
    return {str(k): str(v) for k, v in value.items()}


def _data_dir(value: Any, option: str) -> Path | None:
    from pytest_lmms.tasks._local import data_dir_from_environment

    folder = Path(value) if value else data_dir_from_environment()
    if folder is not None and not folder.is_dir():
        raise pytest.UsageError(f"{option} {folder}: no such folder (make it with pytest-lmms download)")
    return folder


GEN_OVERRIDES = {
    "max_new_tokens": int,
    "temperature": float,
    "top_p": float,
    "seed": int,
    "stop": str,
    "until": str,
}


def _gen_kwargs(value: Any, option: str) -> dict[str, str]:
    """Generation overrides are checked up front: a typo is one usage error, not a failed run."""
    values = parse_kv(value, option)
    for key, text in values.items():
        kind = GEN_OVERRIDES.get(key)
        if kind is None:
            raise pytest.UsageError(f"{option}: unknown key {key!r}; known: {', '.join(GEN_OVERRIDES)}")
        try:
            kind(text)
        except ValueError:
            raise pytest.UsageError(f"{option}: {key} expects {kind.__name__}, got {text!r}") from None
    return values


def _kv(value: Any, option: str) -> dict[str, str]:
    return parse_kv(value, option)


def _bool(value: Any, option: str) -> bool:
    return _to_bool(value, option)


# ---- the settings ----------------------------------------------------------------------


@dataclass(frozen=True)
class RunConfig:
    model: str = setting(
        "model",
        "--model",
        "model to evaluate as BACKEND:MODEL_ID (default: the embedded tiny model)",
        lambda v, o: _text(v, o) or DEFAULT_MODEL,
        default=DEFAULT_MODEL,
        metavar="BACKEND:MODEL_ID",
    )
    model_args: Mapping[str, str] = setting(
        "model_args",
        "--model-args",
        "backend arguments as k=v,k2=v2",
        _kv,
        default_factory=dict,
        redact=True,
        metavar="K=V,...",
    )
    tasks: tuple[str, ...] = setting(
        "tasks",
        "--tasks",
        "tasks, groups or globs to run, comma separated (default: every collected task)",
        _tasks,
        default=(),
        metavar="NAMES",
    )
    limit: int | None = setting(
        "limit", "--limit", "take the first N documents of each task", _integer(1), metavar="N"
    )
    cache_dir: Path | None = setting(
        "cache",
        "--lmms-cache",
        f"response cache directory (default: {DEFAULT_CACHE})",
        lambda v, o: Path(v or DEFAULT_CACHE),
        default=Path(DEFAULT_CACHE),
        metavar="DIR",
        negative_flag="--no-lmms-cache",
        negative_help="do not read or write the response cache",
    )
    output_dir: Path = setting(
        "output",
        "--lmms-output",
        f"directory for results.json and samples files (default: {DEFAULT_OUTPUT})",
        lambda v, o: Path(v or DEFAULT_OUTPUT),
        default=Path(DEFAULT_OUTPUT),
        metavar="DIR",
    )
    run_name: str | None = setting(
        "run_name",
        "--lmms-run-name",
        "name of this run's results folder (default: time and model)",
        _text,
        metavar="NAME",
    )
    data_dir: Path | None = setting(
        "data",
        "--lmms-data",
        "folder of local dataset copies (pytest-lmms download): hub datasets are read from it "
        "(default: $PYTEST_LMMS_DATA)",
        _data_dir,
        metavar="DIR",
    )
    strict_metrics: bool = setting(
        "strict_metrics",
        "--lmms-strict-metrics",
        "fail the run (exit 1) when a metric a task declares was produced by no sample",
        _bool,
        default=False,
        action="flag",
    )
    seed: int = setting(
        "seed",
        "--lmms-seed",
        f"seed for Python, NumPy and torch (default: {DEFAULT_SEED})",
        _integer(0, DEFAULT_SEED),
        default=DEFAULT_SEED,
        metavar="N",
    )
    reasoning_tags: str | None = setting(
        "reasoning_tags",
        "--lmms-reasoning-tags",
        "reasoning tags to strip: names (think,reasoning), <open>:<close> pairs, or none",
        _text,
        metavar="TAGS",
    )
    gen_kwargs: Mapping[str, str] = setting(
        "gen_kwargs",
        "--lmms-gen-kwargs",
        "generation overrides for every task as k=v,... (max_new_tokens, temperature, top_p, seed)",
        _gen_kwargs,
        default_factory=dict,
        metavar="K=V,...",
    )
    repeats: int = setting(
        "repeats",
        "--lmms-repeats",
        "ask each sample K times (sampled; adds EA, CA, IV and CR to the summary)",
        _integer(1, 1),
        default=1,
        metavar="K",
    )
    temperature: float | None = setting(
        "temperature",
        "--lmms-temperature",
        "sampling temperature for every task (default 0.7 with --lmms-repeats > 1)",
        _temperature,
        metavar="T",
    )
    baseline_model: str | None = setting(
        "baseline_model",
        "--baseline-model",
        "a second model (BACKEND:MODEL_ID) asked the same samples in this session, for paired comparisons",
        _text,
        metavar="BACKEND:MODEL_ID",
    )
    baseline_model_args: Mapping[str, str] = setting(
        "baseline_model_args",
        "--baseline-model-args",
        "backend arguments of the baseline model as k=v,...",
        _kv,
        default_factory=dict,
        redact=True,
        metavar="K=V,...",
    )
    decode_threads: int = setting(
        "decode_threads",
        "--lmms-decode-threads",
        "threads decoding videos ahead of the model (default 2; 0 decodes on demand only)",
        _integer(0, 2),
        default=2,
        metavar="N",
    )
    frame_cache_dir: Path | None = setting(
        "frame_cache",
        "--lmms-frame-cache",
        "also keep decoded video frames in this folder, across runs and processes (diskcache)",
        _path,
        metavar="DIR",
    )
    shard: tuple[int, int] | None = setting(
        "shard",
        "--lmms-shard",
        "run shard I of N (I/N, from 0): a stable split of the samples by task and document",
        _shard,
        metavar="I/N",
    )
    rescore: bool = setting(
        "rescore",
        "--lmms-rescore",
        "score from the response cache only: no model is loaded, a sample not in the cache fails",
        _bool,
        default=False,
        action="flag",
    )
    judge_model: str | None = setting(
        "judge_model",
        "--judge-model",
        "the LLM judge (BACKEND:MODEL_ID) for benchmarks scored or rescued by a judge",
        _text,
        metavar="BACKEND:MODEL_ID",
    )
    judge_model_args: Mapping[str, str] = setting(
        "judge_model_args",
        "--judge-model-args",
        "backend arguments of the judge model as k=v,...",
        _kv,
        default_factory=dict,
        redact=True,
        metavar="K=V,...",
    )
    baseline: Path | None = setting(
        "baseline",
        "--baseline",
        "a previous run's results.json (or its folder), 'latest' or 'latest:MODEL': paired comparisons per task",
        _text,  # resolved against the output folder once every setting is read
        metavar="RESULTS",
    )
    fail_under: tuple[str, ...] = setting(
        "fail_under",
        "--lmms-fail-under",
        "exit non-zero when a task's metric is below VALUE (repeatable; TASK may be a glob; ini: one per line)",
        _gates,
        default=(),
        action="append",
        metavar="TASK:METRIC=VALUE",
    )
    fail_on_regression: float | None = setting(
        "fail_on_regression",
        "--lmms-fail-on-regression",
        "with a baseline: exit non-zero when a task is significantly worse than the baseline by more "
        "than MARGIN (default 0)",
        _margin,
        action="optional",
        const="0",
        metavar="MARGIN",
    )
    mlflow: str | None = setting(
        "mlflow",
        "--lmms-mlflow",
        "log the run's metrics with intervals, config and results files to MLflow (the mlflow "
        "extra; tracking URI from $MLFLOW_TRACKING_URI), in EXPERIMENT (default pytest-lmms)",
        _text,
        action="optional",
        const="pytest-lmms",
        metavar="EXPERIMENT",
        in_results=False,
    )
    wandb: str | None = setting(
        "wandb",
        "--lmms-wandb",
        "log the run's metrics with intervals, config and results files to Weights & Biases "
        "(the wandb extra; $WANDB_MODE=offline works without a server), in PROJECT (default pytest-lmms)",
        _text,
        action="optional",
        const="pytest-lmms",
        metavar="PROJECT",
        in_results=False,
    )
    environment: Mapping[str, str] = setting(
        "environment",
        None,
        "environment variables to set for the run (config file only; existing ones are kept)",
        _environment,
        default_factory=dict,
        ini=False,
        in_results=False,
    )
    config_file: Path | None = setting(
        "config",
        "--lmms-config",
        "YAML file with run settings (model, model_args, tasks, limit, gen_kwargs, environment, ...)",
        _path,
        metavar="FILE",
        ini=False,
    )

    def to_json(self) -> dict[str, Any]:
        """The results' config block: every setting that enters results, secrets hidden."""
        out: dict[str, Any] = {}
        for spec, entry in _declared():
            if entry.in_results:
                value = getattr(self, spec.name)
                out[spec.name] = _redact(value) if entry.redact else _json(value)
        return out


def _declared() -> Iterator[tuple[dataclasses.Field[Any], Setting]]:
    for spec in dataclasses.fields(RunConfig):
        entry = spec.metadata.get("setting")
        if isinstance(entry, Setting):
            yield spec, entry


def settings() -> list[tuple[str, Setting]]:
    """Every run setting: (RunConfig field name, how it is given and recorded)."""
    return [(spec.name, entry) for spec, entry in _declared()]


def _json(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, int) for v in value):
        return f"{value[0]}/{value[1]}"  # a shard
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, Mapping):
        return dict(value)
    return value


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


# ---- options, ini keys, config file -------------------------------------------------------


def _dest(name: str) -> str:
    return f"lmms_{name}"


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("lmms", "pytest-lmms: multimodal model evaluation")
    for name, entry in settings():
        if entry.flag is not None:
            kwargs: dict[str, Any] = {"dest": _dest(name), "default": None, "help": entry.help}
            if entry.metavar:
                kwargs["metavar"] = entry.metavar
            if entry.action == "flag":
                kwargs.update(action="store_const", const="true")
                kwargs.pop("metavar", None)
            elif entry.action == "optional":
                kwargs.update(nargs="?", const=entry.const)
            elif entry.action == "append":
                kwargs.update(action="append")
            group.addoption(entry.flag, **kwargs)
        if entry.negative_flag is not None:
            group.addoption(
                entry.negative_flag,
                dest=_dest(f"no_{name}"),
                action="store_true",
                default=False,
                help=entry.negative_help,
            )
        if entry.ini and entry.action == "append":
            parser.addini(f"lmms_{entry.key}", entry.help, type="linelist", default=[])
        elif entry.ini:
            parser.addini(f"lmms_{entry.key}", entry.help, default=None)
    # Not run settings (they change no result): command line only, not in results.json.
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


def config_file_keys() -> set[str]:
    return {entry.key for _, entry in settings() if entry.key != "config"}


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
    known = config_file_keys()
    unknown = sorted(set(data) - known)
    if unknown:
        raise pytest.UsageError(f"--lmms-config {path}: unknown field(s) {unknown}; known: {sorted(known)}")
    return data


def evaluate_flags() -> dict[str, str]:
    """evaluate() keyword -> the command-line flag it becomes."""
    return {entry.key: entry.flag for _, entry in settings() if entry.flag is not None}


def build_run_config(config: pytest.Config) -> RunConfig:
    file_path = config.getoption(_dest("config_file"))
    from_file = _load_config_file(Path(file_path)) if file_path else {}

    def raw(name: str, entry: Setting) -> Any:
        cli = config.getoption(_dest(name)) if entry.flag is not None else None
        if cli is not None:
            return cli
        if entry.ini:
            ini = config.getini(f"lmms_{entry.key}")
            if ini not in (None, "", []):
                return ini
        return from_file.get(entry.key)

    values: dict[str, Any] = {}
    for name, entry in settings():
        value = raw(name, entry)
        if name == "config_file":
            value = file_path
        where = entry.flag or f"--lmms-config {file_path}"
        values[name] = entry.parse(value, where) if value is not None else _default(name, entry, where)
        if entry.negative_flag is not None and config.getoption(_dest(f"no_{name}")):
            values[name] = None
    return _checked(RunConfig(**values))


def _default(name: str, entry: Setting, where: str) -> Any:
    # a parser that reads the environment when nothing is given (--lmms-data) is asked too
    if name == "data_dir":
        return entry.parse(None, where)
    spec = next(s for s in dataclasses.fields(RunConfig) if s.name == name)
    if spec.default_factory is not dataclasses.MISSING:
        return spec.default_factory()
    return spec.default


def _checked(run: RunConfig) -> RunConfig:
    """What holds between settings; 'latest' baselines resolved before this run writes any."""
    baseline = run.baseline
    if baseline is not None:
        from pytest_lmms.report import resolve_run

        try:
            baseline = Path(resolve_run(str(baseline), run.output_dir))
        except ValueError as exc:
            raise pytest.UsageError(f"--baseline {run.baseline}: {exc}") from None
        if not baseline.exists():
            raise pytest.UsageError(f"--baseline {baseline}: no such file or folder")
    if baseline is not None and run.baseline_model is not None:
        raise pytest.UsageError(
            "give --baseline (a saved run) or --baseline-model (a second model), not both"
        )
    if run.fail_on_regression is not None and baseline is None and run.baseline_model is None:
        raise pytest.UsageError(
            "--lmms-fail-on-regression needs a baseline (--baseline RESULTS or --baseline-model SPEC)"
        )
    if run.rescore and run.cache_dir is None:
        raise pytest.UsageError(
            "--lmms-rescore scores from the response cache: it cannot go with --no-lmms-cache"
        )
    return dataclasses.replace(run, baseline=baseline)
