"""The state of one pytest-lmms session: engine, cache, results; hung off config.stash."""

from __future__ import annotations

import dataclasses
import os
import random
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_lmms.config import RunConfig
from pytest_lmms.types import GenParams, Request, Response, SampleResult

if TYPE_CHECKING:
    from pytest_lmms.models import Backend
    from pytest_lmms.models._engine import Engine
    from pytest_lmms.report import SamplesWriter
    from pytest_lmms.scoring.judge import Judge
    from pytest_lmms.tasks import Task, TaskIndex


DEFAULT_REPEAT_TEMPERATURE = 0.7


class SampleFailure(Exception):
    """A sample that could not be answered or scored; shown without a traceback."""


def apply_gen_overrides(gen: GenParams, overrides: dict[str, str]) -> GenParams:
    changes: dict[str, Any] = {}
    for key, value in overrides.items():
        if key == "max_new_tokens":
            changes[key] = int(value)
        elif key in ("temperature", "top_p"):
            changes[key] = float(value)
        elif key == "seed":
            changes[key] = int(value)
        elif key in ("stop", "until"):
            changes["stop"] = tuple(s for s in value.split("|") if s)
        else:
            raise pytest.UsageError(
                f"--lmms-gen-kwargs: unknown key {key!r}; known: max_new_tokens, temperature, top_p, seed, stop"
            )
    return dataclasses.replace(gen, **changes) if changes else gen


class ModelRunner:
    """One model of the run (the model, the baseline model, the judge): backend identity and
    engine. ``option`` is the command-line flag that named it, for error messages."""

    def __init__(
        self, session: LmmsSession, spec: str, args: Mapping[str, str], option: str = "--model"
    ) -> None:
        self.session = session
        self.option = option
        self.spec = spec
        self.args = dict(args)
        self._identity: dict[str, Any] | None = None
        self._probe: Backend | None = None
        self._engine: Engine | None = None

    def _make_backend(self) -> Backend:
        from pytest_lmms.models import create_backend

        return create_backend(self.spec, self.args)

    @property
    def identity(self) -> dict[str, Any]:
        if self._identity is None:
            # Constructing a backend must be cheap (no weights, no server): the real work
            # starts on its first generate call, so a fully cached run never loads a model.
            self._probe = self._make_backend()
            self._identity = dict(self._probe.identity())
        return self._identity

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            from pytest_lmms.models._engine import Engine

            identity = self.identity
            probe = self._probe

            def factory() -> Backend:
                return probe if probe is not None else self._make_backend()

            self._engine = Engine(
                factory,
                identity,
                self.session.cache,
                None if self.session.run.rescore else self.session.prefetcher,
                cache_only=self.session.run.rescore,
            )
        return self._engine

    @property
    def backend(self) -> Backend:
        """The constructed backend, without starting it (construction is cheap by contract)."""
        self.identity  # noqa: B018 - constructs it
        assert self._probe is not None
        return self._probe

    @property
    def started_engine(self) -> Engine | None:
        """The engine if one was built (reading it never builds one)."""
        return self._engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()


class LmmsSession:
    """Everything a run shares: built lazily, so a session without samples costs nothing."""

    def __init__(self, config: pytest.Config, run: RunConfig) -> None:
        self.config = config
        self.run = run
        self.started = time.time()
        self.is_worker = hasattr(config, "workerinput")
        self._index: TaskIndex | None = None
        self._selected: set[str] | None = None
        self._cache: Any = None
        self.models = [ModelRunner(self, run.model, run.model_args)]
        if run.baseline_model:
            self.models.append(
                ModelRunner(self, run.baseline_model, run.baseline_model_args, "--baseline-model")
            )
        self.baseline_results: list[SampleResult] = []
        self.models_extra: list[ModelRunner] = []
        self._prefetcher: Any = None  # the judge, when it is a model of its own
        self._judge: Judge | None = None
        self._gen_by_task: dict[str, GenParams] = {}
        self._reasoning_override: tuple[tuple[str, str], ...] | None = None
        self.results: list[SampleResult] = []
        self.failed: dict[str, int] = {}
        # Samples of an xdist run not done (node id -> why): the one a dying worker was
        # running, and those a stopped run never handed out.
        self.not_done: dict[str, str] = {}
        # Samples this run planned, per task (collected and selected), and each task's span
        # (its first sample's start, its last one's stop): completeness and per-task times.
        self.planned: dict[str, int] = {}
        self.task_spans: dict[str, list[float]] = {}
        self.interrupted = False
        self.tasks: dict[str, Task] = {}
        # Why a task shipped by an xdist worker could not be rebuilt here (its summary row).
        self.task_errors: dict[str, str] = {}
        self._specs_by_path: dict[str, dict[str, Any]] = {}
        # Model identities shipped by workers (role -> identity), so the controller of an
        # xdist run never constructs a backend of its own for results.json.
        self.shipped_identities: dict[str, dict[str, Any]] = {}
        self.identities_shipped = False
        self._writer: SamplesWriter | None = None
        from pytest_lmms.report import default_run_name

        workerinput = getattr(config, "workerinput", {})
        self.run_name = str(
            workerinput.get("lmms_run_name") or run.run_name or default_run_name(run.model, self.started)
        )
        if not workerinput.get("lmms_run_name") and not run.run_name:
            # Two sessions of one process in the same second (evaluate() in a loop) must
            # not share a folder: number the later ones.
            base, number = self.run_name, 2
            while (run.output_dir / self.run_name).exists():
                self.run_name, number = f"{base}-{number}", number + 1
        self.run_dir = run.output_dir / self.run_name
        # Backends that write files of their own (a launched server's log) put them here.
        os.environ["PYTEST_LMMS_RUN_DIR"] = str(self.run_dir.absolute())
        if run.reasoning_tags is not None:
            from pytest_lmms.scoring import parse_reasoning_tags

            try:
                self._reasoning_override = parse_reasoning_tags(run.reasoning_tags)
            except ValueError as exc:
                raise pytest.UsageError(f"--lmms-reasoning-tags: {exc}") from None
        # variables this session sets, with what they were, put back when it closes: a
        # second session in the process (evaluate() again) sees nothing of this one
        self._environment_before: dict[str, str | None] = {}
        for key, value in run.environment.items():
            if key not in os.environ:
                self._environment_before[key] = None
                os.environ[key] = value
        if run.frame_cache_dir is not None:
            from pytest_lmms.media import FRAME_CACHE

            FRAME_CACHE.use_disk(run.frame_cache_dir)

    def seed_everything(self) -> None:
        """Seed Python, NumPy and torch: only in sessions that run samples, so the plugin
        never touches the random state of an unrelated test suite."""
        random.seed(self.run.seed)
        if "numpy" in sys.modules:
            sys.modules["numpy"].random.seed(self.run.seed)
        if "torch" in sys.modules:
            sys.modules["torch"].manual_seed(self.run.seed)

    # ---- selection -------------------------------------------------------------------
    def resolve_selection(self) -> None:
        """Expand --tasks (names, groups, globs) over the collected paths; a usage error if
        a pattern matches nothing."""
        if not self.run.tasks or self._selected is not None:
            return
        from pytest_lmms.tasks import TaskConfigError, discover

        paths = [Path(a.split("::")[0]) for a in self.config.args] or [self.config.rootpath]
        paths = [p if p.is_dir() else p.parent for p in paths if p.exists()]
        self._index = discover(paths or [self.config.rootpath])
        try:
            self._selected = self._index.select(self.run.tasks)
        except TaskConfigError as exc:
            raise pytest.UsageError(str(exc)) from None

    def selected(self, task_name: str) -> bool:
        if not self.run.tasks:
            return True
        self.resolve_selection()
        return self._selected is not None and task_name in self._selected

    # ---- models ----------------------------------------------------------------------
    @property
    def model(self) -> ModelRunner:
        return self.models[0]

    @property
    def baseline_model(self) -> ModelRunner | None:
        return self.models[1] if len(self.models) > 1 else None

    @property
    def identity(self) -> dict[str, Any]:
        return self.model.identity

    @property
    def prefetcher(self) -> Any:
        """One decode-ahead pool for every engine of the session (None with 0 threads)."""
        if self._prefetcher is None and self.run.decode_threads > 0:
            from pytest_lmms.media import MediaPrefetcher

            self._prefetcher = MediaPrefetcher(threads=self.run.decode_threads)
        return self._prefetcher

    @property
    def judge_runner(self) -> ModelRunner | None:
        """The runner of --judge-model: the model's own when it is the same model with the
        same arguments, else one of its own (its own engine, the run's response cache)."""
        if not self.run.judge_model:
            return None
        spec, args = self.run.judge_model, dict(self.run.judge_model_args)
        runner = next(
            (m for m in [*self.models, *self.models_extra] if m.spec == spec and m.args == args), None
        )
        if runner is None:
            runner = ModelRunner(self, spec, args, "--judge-model")
            self.models_extra.append(runner)
        return runner

    @property
    def judge(self) -> Judge | None:
        """The LLM judge handed to scorers that take one (None without --judge-model)."""
        runner = self.judge_runner
        if self._judge is None and runner is not None:
            from pytest_lmms.cache import cache_key
            from pytest_lmms.scoring.judge import Judge

            def complete(request: Request) -> Response:
                return runner.engine.response(cache_key(runner.identity, request), request).result()

            self._judge = Judge(complete, runner.spec, runner_identity(runner))
        return self._judge

    @property
    def engine(self) -> Engine:
        return self.model.engine

    @property
    def cache(self) -> Any:
        if self._cache is None and self.run.cache_dir is not None:
            from pytest_lmms.cache import ResponseCache

            self._cache = ResponseCache(self.run.cache_dir)
        return self._cache

    # ---- requests --------------------------------------------------------------------
    def gen_for(self, task: Task, repeat: int = 0) -> GenParams:
        gen = self._gen_by_task.get(task.name)
        if gen is None:
            gen = apply_gen_overrides(task.generation, dict(self.run.gen_kwargs))
            temperature = self.run.temperature
            if temperature is None and self.run.repeats > 1 and gen.temperature == 0:
                temperature = DEFAULT_REPEAT_TEMPERATURE
            if temperature is not None:
                gen = dataclasses.replace(gen, temperature=temperature)
            self._gen_by_task[task.name] = gen
        if gen.deterministic:
            return gen
        # Sampled requests carry a seed per repeat: the k answers differ from each other,
        # and an interrupted run can resume them from the cache on seed-honouring backends.
        return dataclasses.replace(gen, seed=(gen.seed if gen.seed is not None else self.run.seed) + repeat)

    def reasoning_tags(self, task: Task) -> Sequence[tuple[str, str]]:
        if self._reasoning_override is not None:
            return self._reasoning_override
        return task.reasoning_tags

    def render(self, task: Task, doc_id: str, repeat: int) -> tuple[tuple[str, ...], Request, dict[str, Any]]:
        """The request of one sample, with its cache key for each model of the run."""
        from pytest_lmms.cache import cache_key

        doc = task.doc(doc_id)
        request = task.request(doc, repeat=repeat, gen=self.gen_for(task, repeat))
        return tuple(cache_key(model.identity, request) for model in self.models), request, doc

    def plan(self, items: Sequence[Any]) -> None:
        """Render every sample of this process up front and hand them to the engines."""
        entries: list[tuple[tuple[str, ...], Request]] = []
        for item in items:
            if item.plan_tried:
                continue
            item.plan_tried = True
            try:
                if item.task.kind == "loglikelihood":  # N (context, option) pairs per sample
                    from pytest_lmms.tasks._likelihood import render_sample

                    item.planned = render_sample(self, item.task, item.doc_id)
                    entries.extend(zip(item.planned[0], item.planned[1], strict=True))
                    continue
                keys, request, doc = self.render(item.task, item.doc_id, item.repeat)
            except Exception as exc:  # noqa: BLE001 - the item reports it when it runs
                item.plan_error = exc
                continue
            item.planned = (keys, request, doc)
            entries.append((keys, request))
        for index, model in enumerate(self.models):
            if entries:
                model.engine.plan([(keys[index], request) for keys, request in entries])

    # ---- tasks seen by the controller of an xdist run ---------------------------------
    def learn_task(self, name: str, yaml: str, fingerprint: str) -> None:
        """Know the task a report names: built from its YAML on first sight (the definition
        only: its dataset opens lazily and is never read here), and checked against the
        fingerprint the worker computed, so every process scored with the same definition."""
        if name in self.task_errors:
            return
        task = self.tasks.get(name)
        if task is None:
            try:
                task = self._task_from_yaml(name, yaml)
            except Exception as exc:  # noqa: BLE001 - shown in the task's summary row
                self.task_errors[name] = f"cannot load task {name!r} from {yaml}: {type(exc).__name__}: {exc}"
                return
            self.tasks[name] = task
        if task.fingerprint != fingerprint:
            self.task_errors[name] = (
                f"task {name!r} ({yaml}) differs between processes: a worker scored it with "
                f"definition {fingerprint[:12]}, this process reads {task.fingerprint[:12]} "
                "(was the YAML or its functions edited during the run?)"
            )

    def _task_from_yaml(self, name: str, yaml: str) -> Task:
        from pytest_lmms.tasks import GroupSpec, Task, load_specs

        specs = self._specs_by_path.get(yaml)
        if specs is None:
            specs = {s.name: s for s in load_specs(yaml) if not isinstance(s, GroupSpec)}
            self._specs_by_path[yaml] = specs
        if name not in specs:
            raise KeyError(f"no task {name!r} in the file")
        return Task(specs[name])

    def model_identities(self) -> dict[str, dict[str, Any]]:
        """What a worker ships once: the identity of each model of the run, by role."""
        out = {"model": dict(self.model.identity)}
        if self.baseline_model is not None:
            out["baseline_model"] = dict(self.baseline_model.identity)
        judge = self.judge_runner
        if judge is not None:
            out["judge"] = runner_identity(judge)
        return out

    def identity_of(self, role: str, runner: ModelRunner) -> dict[str, Any] | None:
        """A model's identity for results.json: shipped by a worker, else constructed here;
        None when its backend cannot be constructed."""
        shipped = self.shipped_identities.get(role)
        if shipped is not None:
            return shipped
        try:
            return dict(runner.identity) if role != "judge" else runner_identity(runner)
        except Exception:  # noqa: BLE001 - the summary must not fail on a backend that cannot start
            return None

    # ---- results ---------------------------------------------------------------------
    @property
    def writer(self) -> SamplesWriter:
        if self._writer is None:
            from pytest_lmms.report import SamplesWriter

            self._writer = SamplesWriter(self.run_dir)
        return self._writer

    def record(self, result: dict[str, Any], baseline: bool = False) -> None:
        if baseline:
            self.writer.write(result, prefix="baseline_samples_")
            self.baseline_results.append(SampleResult.from_json(result))
        else:
            self.writer.write(result)
            self.results.append(SampleResult.from_json(result))

    def request_counters(self) -> dict[str, int]:
        """The engines' request counts summed over the run's models (for the progress view);
        empty before any engine exists, so nothing is started to read them."""
        out: dict[str, int] = {}
        for model in [*self.models, *self.models_extra]:
            engine = model.started_engine
            if engine is not None:
                for name, value in engine.counters().items():
                    out[name] = out.get(name, 0) + value
        return out

    def request_status(self) -> str | None:
        """What the first engine still starting is doing (for the progress view)."""
        for model in [*self.models, *self.models_extra]:
            engine = model.started_engine
            text = engine.status() if engine is not None else None
            if text:
                return text
        return None

    def record_probe(self, result: dict[str, Any]) -> None:
        """A hand-written test's scores (the lmms_record fixture): a task of its own, whose
        definition is made here from the scores it reports (means with intervals)."""
        task = str(result["task"])
        if task not in self.tasks:
            from pytest_lmms.tasks import Task, TaskSpec

            where = str(result.get("probe") or task).partition("::")[0]
            self.tasks[task] = Task(
                TaskSpec(name=task, source_path=Path(where), raw={"task": task, "probe": where})
            )
        self.record(result)

    def close(self) -> None:
        for model in [*self.models, *self.models_extra]:
            model.close()
        if self._prefetcher is not None:
            self._prefetcher.close()
        # module-level memos of this process, emptied so the next session starts afresh
        # (the media package only if this session loaded it: it imports numpy)
        from pytest_lmms.types import forget_file_hashes

        video = sys.modules.get("pytest_lmms.media._video")
        if video is not None:
            video.FRAME_CACHE.use_disk(None)
            video.FRAME_CACHE.clear()
        forget_file_hashes()
        for key, value in self._environment_before.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        if self._cache is not None:
            self._cache.close()
        if self._writer is not None:
            self._writer.close()


def runner_identity(runner: ModelRunner) -> dict[str, Any]:
    """The runner's identity without transport fields (URLs, keys), for results.json; the
    spec alone when the backend cannot be constructed (its calls then fail one by one)."""
    from pytest_lmms.cache import TRANSPORT_FIELDS

    try:
        return {k: v for k, v in runner.identity.items() if k not in TRANSPORT_FIELDS}
    except Exception:  # noqa: BLE001
        return {"spec": runner.spec}
