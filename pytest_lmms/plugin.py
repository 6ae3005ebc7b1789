"""pytest hooks, kept thin: options, collection, sample items, the summary."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_lmms._properties import (
    BASELINE_PROPERTY,
    MODELS_PROPERTY,
    PROBE_PROPERTY,
    RESULT_PROPERTY,
    TASK_PROPERTY,
    TASK_SOURCE_PROPERTY,
    WRONG_PROPERTY,
    task_of_node_id,
)
from pytest_lmms._session import LmmsSession, SampleFailure
from pytest_lmms.config import RunConfig, add_options, build_run_config

if TYPE_CHECKING:
    from pytest_lmms.tasks import Task

SESSION_KEY = pytest.StashKey[LmmsSession]()
RESULTS_KEY = pytest.StashKey[dict[str, Any]]()
HTML_KEY = pytest.StashKey[str]()  # the summary's line about the HTML report
EXPORT_KEY = pytest.StashKey[list[str]]()  # exporters that failed


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from pytest_lmms import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    per_worker = config.getoption("lmms_gpus_per_worker")
    workerinput = getattr(config, "workerinput", None)
    if per_worker is not None and workerinput is not None:
        from pytest_lmms.xdist import pin_worker

        try:
            pin_worker(workerinput, per_worker)
        except ValueError as exc:
            raise pytest.UsageError(str(exc)) from None
    _call_registration_hooks(config)
    state = LmmsSession(config, build_run_config(config))
    config.stash[SESSION_KEY] = state
    groups_dir = (workerinput or {}).get("lmms_groups_dir")
    if groups_dir:
        from pytest_lmms._xdist_scheduler import WorkerGroups

        config.pluginmanager.register(WorkerGroups(config, Path(groups_dir)), "lmms-worker-groups")
    if not state.is_worker:
        config.pluginmanager.register(ResultCollector(state), "lmms-result-collector")
        from pytest_lmms.report import ProgressReporter

        progress = ProgressReporter(
            config,
            mode=config.getoption("lmms_progress"),
            interval=config.getoption("lmms_progress_interval"),
            requests=state.request_counters,
            status=state.request_status,
        )
        config.pluginmanager.register(progress, "lmms-progress")
        from pytest_lmms.report import FailureGrouper

        config.pluginmanager.register(FailureGrouper(), "lmms-failure-groups")
        config.pluginmanager.register(JsonReportProperties(), "lmms-json-properties")
        _register_exporters(config, state.run)
        if config.pluginmanager.hasplugin("xdist"):
            config.pluginmanager.register(XdistRunName(state.run_name), "lmms-xdist-run-name")
            from pytest_lmms._xdist_scheduler import LmmsDistribution

            # samples sharing media go to one worker, in chunks its engine plans together
            config.pluginmanager.register(LmmsDistribution(), "lmms-xdist-scheduler")


def _register_exporters(config: pytest.Config, run: RunConfig) -> None:
    """The exporters shipped as extras, when asked for: a missing library is a usage error
    now, not a lost export after an hour of evaluation."""
    wanted = [("mlflow", run.mlflow, "MlflowExporter"), ("wandb", run.wandb, "WandbExporter")]
    for library, target, name in wanted:
        if target is None:
            continue
        import importlib

        module = importlib.import_module(f"pytest_lmms.exporters._{library}")
        try:
            exporter = getattr(module, name)(target)
        except ImportError:
            raise pytest.UsageError(
                f"--lmms-{library} needs the {library} package: pip install 'pytest-lmms[{library}]'"
            ) from None
        config.pluginmanager.register(exporter, f"lmms-{library}-exporter")


def _call_registration_hooks(config: pytest.Config) -> None:
    """Backends, metrics and task folders other plugins add (pytest_lmms.hookspecs)."""
    from pytest_lmms.models import register_model
    from pytest_lmms.scoring import metric

    config.hook.pytest_lmms_register_backends(register=lambda name, factory: register_model(name)(factory))
    config.hook.pytest_lmms_register_metrics(register=lambda name, fn: metric(name)(fn))
    extra = [str(p) for paths in config.hook.pytest_lmms_task_paths(config=config) for p in paths or ()]
    if extra:  # collected with the command line's paths
        config.args[:] = [*config.args, *(p for p in extra if p not in config.args)]


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(SESSION_KEY, None)
    if state is not None:
        state.close()


def _state(config: pytest.Config) -> LmmsSession:
    return config.stash[SESSION_KEY]


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.suffix in (".yaml", ".yml"):
        from pytest_lmms.tasks import is_task_file

        if is_task_file(file_path):
            return TaskFile.from_parent(parent, path=file_path)
    return None


class TaskFile(pytest.File):
    """A task YAML: one item per document of each task it defines."""

    def collect(self) -> Iterator[pytest.Item]:
        from pytest_lmms.tasks import GroupSpec, Task, TaskConfigError, load_specs

        state = _state(self.config)
        try:
            specs = load_specs(self.path)
        except TaskConfigError as exc:
            # One broken file must not stop the others: it becomes one failing item.
            yield TaskErrorItem.from_parent(
                self, name=self.path.stem, error=str(exc), task_name=self.path.stem
            )
            return
        for spec in specs:
            if isinstance(spec, GroupSpec) or not state.selected(spec.name):
                continue
            try:
                task = Task(spec, data_dir=state.run.data_dir)
                doc_ids = task.doc_ids(limit=state.run.limit)
            except Exception as exc:  # noqa: BLE001 - reported on the task's own item
                yield TaskErrorItem.from_parent(self, name=spec.name, error=str(exc), task_name=spec.name)
                continue
            state.tasks[task.name] = task
            repeats = state.run.repeats
            for doc_id in doc_ids:
                for repeat in range(repeats):
                    # The node id is passed as the string pytest would parse back: pytest 9.2
                    # reads a saved `f.yaml::t[d]` (--lf, --sw, cache) as name `t` with
                    # parameters `d`, and an id derived from the name `t[d]` would not equal it.
                    name = f"{task.name}[{doc_id}]" if repeats == 1 else f"{task.name}[{doc_id}#r{repeat}]"
                    yield SampleItem.from_parent(
                        self,
                        name=name,
                        nodeid=f"{self.nodeid}::{name}",
                        task=task,
                        doc_id=doc_id,
                        repeat=repeat,
                    )


def pytest_collection(session: pytest.Session) -> None:
    _state(session.config).resolve_selection()


def shard_of(task: str, doc_id: str, count: int) -> int:
    """The shard of a document: stable across runs, processes and machines; every repeat
    of a document lands in the same shard (its answers are clustered together)."""
    digest = hashlib.sha1(f"{task}\0{doc_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % count


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    shard = _state(config).run.shard
    if shard is not None:
        index, count = shard
        keep: list[pytest.Item] = []
        drop: list[pytest.Item] = []
        for item in items:
            other = isinstance(item, SampleItem) and shard_of(item.task.name, item.doc_id, count) != index
            (drop if other else keep).append(item)
        if drop:
            config.hook.pytest_deselected(items=drop)
            items[:] = keep
    if any(isinstance(item, SampleItem) for item in items):
        from pytest_lmms.models import resolve_backend

        _state(config).seed_everything()
        state = _state(config)
        judge = state.judge_runner
        for model in [*state.models, *([judge] if judge is not None and judge not in state.models else [])]:
            try:
                resolve_backend(model.spec)
                # Constructing a backend is cheap by contract (no weights, no server), so
                # bad --model-args are one usage error here, not a failure per sample.
                model.identity  # noqa: B018
            except (ValueError, ImportError) as exc:
                raise pytest.UsageError(f"{model.option}={model.spec}: {exc}") from None
            except Exception as exc:  # noqa: BLE001 - any backend's constructor, named
                raise pytest.UsageError(f"{model.option}={model.spec}: {type(exc).__name__}: {exc}") from None
        from pytest_lmms.tasks._likelihood import refuse_unsupported

        refused = refuse_unsupported(state, [item.task for item in items if isinstance(item, SampleItem)])
        if refused is not None:
            raise pytest.UsageError(refused)


class TaskErrorItem(pytest.Item):
    """Stands for a task that could not be loaded, so the error shows once, by name."""

    def __init__(self, *, error: str, task_name: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.error = error
        self.user_properties.append((TASK_PROPERTY, task_name))

    def runtest(self) -> None:
        raise SampleFailure(self.error)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        return str(excinfo.value)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"task {self.name}"


class SampleItem(pytest.Item):
    """One benchmark sample: waits for its response, scores it, records the result."""

    def __init__(self, *, task: Task, doc_id: str, repeat: int = 0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.task = task
        self.doc_id = doc_id
        self.repeat = repeat
        self.user_properties.append((TASK_PROPERTY, task.name))
        self.user_properties.append(
            (
                TASK_SOURCE_PROPERTY,
                {"task": task.name, "yaml": str(task.path), "fingerprint": task.fingerprint},
            )
        )
        # (keys, request, doc); for likelihood tasks (keys per pair, requests, doc)
        self.planned: tuple[Any, Any, dict[str, Any]] | None = None
        self.plan_error: BaseException | None = None
        self.plan_tried = False

    def runtest(self) -> None:
        state = _state(self.config)
        if state.is_worker and not state.identities_shipped:
            # The first report of each worker tells the controller who answered, so the
            # controller never constructs a backend (whose identity may mean a hub lookup).
            state.identities_shipped = True
            self.user_properties.append((MODELS_PROPERTY, state.model_identities()))
        if not self.plan_tried:
            state.plan(self._items_to_plan(state))
        if self.plan_error is not None:
            raise SampleFailure(
                f"could not render the request: {type(self.plan_error).__name__}: {self.plan_error}"
            )
        if self.task.kind == "loglikelihood":
            self._run_likelihood(state)
            return
        if self.planned is None:
            try:
                self.planned = state.render(self.task, self.doc_id, self.repeat)
            except Exception as exc:  # noqa: BLE001
                raise SampleFailure(f"could not render the request: {type(exc).__name__}: {exc}") from exc
        keys, request, doc = self.planned
        self.planned = None  # the rendered request (media) is not kept once asked
        futures = [model.engine.response(key, request) for model, key in zip(state.models, keys, strict=True)]
        for index, future in enumerate(futures):
            try:
                response = future.result()
            except Exception as exc:  # noqa: BLE001 - a failed call is never scored
                who = "model" if index == 0 else f"baseline model ({state.models[index].spec})"
                raise SampleFailure(f"{who} call failed: {type(exc).__name__}: {exc}") from exc
            self._score(state, doc, request, response, baseline=index > 0)

    def _run_likelihood(self, state: LmmsSession) -> None:
        """A multiple-choice / loglikelihood sample: its pairs answered and scored by
        tasks/_likelihood.py, the records attached as a generated sample's are."""
        from pytest_lmms.tasks._likelihood import answer_sample

        planned, self.planned = self.planned, None
        for result, baseline in answer_sample(state, self.task, self.doc_id, self.repeat, planned):
            self._attach(result, baseline)

    def _attach(self, result: dict[str, Any], baseline: bool) -> None:
        """A scored sample's record on the report (so xdist ships it), and the wrong mark
        when its primary metric is 0 (the baseline model's record is never marked)."""
        if baseline:
            self.user_properties.append((BASELINE_PROPERTY, result))
            return
        self.user_properties.append((RESULT_PROPERTY, result))
        primary = self.task.primary_metric
        if primary is not None and self.task.higher_is_better(primary) and result["scores"].get(primary) == 0:
            self.user_properties.append((WRONG_PROPERTY, True))

    def _items_to_plan(self, state: LmmsSession) -> list[SampleItem]:
        if state.is_worker:
            return [self, *self._queued_on_this_worker()]
        return [item for item in self.session.items if isinstance(item, SampleItem)]

    def _queued_on_this_worker(self) -> list[SampleItem]:
        """Items xdist has already handed this worker, so they are planned (batched) together.

        xdist's worker keeps them in a queue it documents as inspectable under its lock;
        without it (another xdist version) each chunk is planned as its items come.
        """
        items = self.session.items
        for plugin in self.config.pluginmanager.get_plugins():
            queue = getattr(plugin, "torun", None)
            if queue is None or not hasattr(queue, "lock"):
                continue
            with queue.lock() as pending:
                indices = [i for i in pending if isinstance(i, int)]
            following = getattr(plugin, "nextitem_index", None)
            if isinstance(following, int):
                indices.insert(0, following)
            queued = [items[i] for i in indices if 0 <= i < len(items)]
            return [item for item in queued if isinstance(item, SampleItem)]
        return []

    def _score(
        self, state: LmmsSession, doc: dict[str, Any], request: Any, response: Any, baseline: bool = False
    ) -> None:
        from pytest_lmms.report import prompt_record
        from pytest_lmms.scoring import strip_reasoning
        from pytest_lmms.types import SampleResult

        task = self.task
        raw = response.text
        text = strip_reasoning(raw, state.reasoning_tags(task))
        judge = state.judge.for_sample() if task.uses_judge and state.judge is not None else None
        try:
            scores, answer = task.score_and_answer(doc, text, judge=judge)
            target = task.target(doc)
            cluster_id = task.cluster_id(doc)
        except Exception as exc:  # noqa: BLE001
            raise SampleFailure(f"scoring failed: {type(exc).__name__}: {exc}") from exc
        result = SampleResult(
            task=task.name,
            doc_id=self.doc_id,
            cluster_id=cluster_id,
            repeat=self.repeat,
            target=target,
            response=text,
            raw=raw,
            scores=scores,
            cached=response.cached,
            latency_s=response.latency_s,
            input_tokens=response.input_tokens,
            output_tokens=response.output_tokens,
            ttft_s=response.ttft_s,
            judge_calls=judge.calls if judge is not None else 0,
            judge_prompts=tuple(judge.prompts_used) if judge is not None else (),
            judge_log=tuple(judge.log) if judge is not None else (),
            prompt=prompt_record(request),
            extracted=_json_safe(answer),
        ).to_json()
        self._attach(result, baseline)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, SampleFailure):
            return f"{self.task.name}[{self.doc_id}]: {excinfo.value}"
        return super().repr_failure(excinfo)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"{self.task.name}[{self.doc_id}]"


def _json_safe(value: Any) -> Any:
    """An extracted answer as JSON data: numbers, strings, lists of them; anything else as
    its text (a scorer may note any object)."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return str(value)


@pytest.fixture(scope="session")
def lmms_model(request: pytest.FixtureRequest) -> Any:
    """The run's model (--model, --model-args): ``lmms_model.ask(prompt, images=[...])``
    answers through the run's engine and response cache."""
    from pytest_lmms._fixtures import ModelHandle

    state = _state(request.config)
    return ModelHandle(state, state.model)


@pytest.fixture(scope="session")
def lmms_cache(request: pytest.FixtureRequest) -> Any:
    """The run's response cache (``pytest_lmms.cache.ResponseCache``), None with --no-lmms-cache."""
    return _state(request.config).cache


@pytest.fixture(scope="session")
def lmms_judge(request: pytest.FixtureRequest) -> Any:
    """The run's LLM judge (--judge-model): ``lmms_judge.ask(PROMPT, **fields)``; None without."""
    return _state(request.config).judge


@pytest.fixture
def lmms_record(request: pytest.FixtureRequest) -> Any:
    """``lmms_record(task, {metric: score}, doc_id=None)``: put a hand-written probe's scores
    in the run's summary and results.json, as a task of its own (also under xdist)."""
    from pytest_lmms._fixtures import probe_record

    node = request.node
    count = [0]

    def record(task: str, scores: dict[str, float], doc_id: str | None = None) -> None:
        count[0] += 1
        doc = doc_id or (node.name if count[0] == 1 else f"{node.name}#{count[0]}")
        node.user_properties.append((PROBE_PROPERTY, probe_record(task, scores, doc, node.nodeid)))

    return record


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config) -> tuple[str, str, str] | None:
    if report.when == "call" and report.passed:
        for name, _ in report.user_properties:
            if name == WRONG_PROPERTY:
                return "wrong", "w", "WRONG"
    return None


class JsonReportProperties:
    """JUnit XML writes each report property with str(): a sample's record would be a Python
    repr. The teardown report (the one junitxml writes properties from) gets them as JSON;
    the call report, which the result collector reads, keeps the records as they are."""

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "teardown" and any(isinstance(v, (dict, list)) for _, v in report.user_properties):
            import orjson

            report.user_properties = [
                (name, orjson.dumps(value).decode() if isinstance(value, (dict, list)) else value)
                for name, value in report.user_properties
            ]


class XdistRunName:
    """Gives every xdist worker the controller's run name (one run folder, one log folder)."""

    def __init__(self, run_name: str) -> None:
        self.run_name = run_name

    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput["lmms_run_name"] = self.run_name


class ResultCollector:
    """Receives every sample's result from its report (locally or shipped by xdist)."""

    def __init__(self, state: LmmsSession) -> None:
        self.state = state
        # Under xdist: the sample node ids the workers collected, and those reported, so the
        # summary can name every sample a stopped run never did.
        self.collected: set[str] = set()
        self.reported: set[str] = set()

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        for item in session.items:
            if isinstance(item, SampleItem):
                self.state.planned[item.task.name] = self.state.planned.get(item.task.name, 0) + 1

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.reported.add(report.nodeid)
        if report.when != "call":
            return
        task_name = dict(report.user_properties).get(TASK_PROPERTY)
        if task_name is not None:
            span = self.state.task_spans.setdefault(str(task_name), [report.start, report.stop])
            span[0], span[1] = min(span[0], report.start), max(span[1], report.stop)
        for name, value in report.user_properties:
            if name == TASK_SOURCE_PROPERTY and isinstance(value, dict):
                self.state.learn_task(str(value["task"]), str(value["yaml"]), str(value["fingerprint"]))
            elif name == MODELS_PROPERTY and isinstance(value, dict):
                self.state.shipped_identities.update(value)
            elif name == RESULT_PROPERTY and isinstance(value, dict):
                self.state.record(value)
            elif name == BASELINE_PROPERTY and isinstance(value, dict):
                self.state.record(value, baseline=True)
            elif name == PROBE_PROPERTY and isinstance(value, dict):
                self.state.record_probe(value)
            elif name == TASK_PROPERTY and report.failed:
                task = str(value)
                self.state.failed[task] = self.state.failed.get(task, 0) + 1

    @pytest.hookimpl(optionalhook=True)
    def pytest_handlecrashitem(self, crashitem: str, report: pytest.TestReport, sched: Any) -> None:
        """xdist's word that a worker died while running ``crashitem``: the sample is not
        done (the worker's other samples are rescheduled by xdist), and the summary says so."""
        task = task_of_node_id(crashitem) or crashitem
        self.state.failed[task] = self.state.failed.get(task, 0) + 1
        self.state.not_done[crashitem] = str(report.longrepr)

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        samples = [i for i in ids if i.partition("::")[0].endswith((".yaml", ".yml"))]
        if not self.collected:  # every worker collects the same samples: count them once
            for nodeid in samples:
                task = task_of_node_id(nodeid) or nodeid
                self.state.planned[task] = self.state.planned.get(task, 0) + 1
        self.collected.update(samples)

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        state = self.state
        state.interrupted = exitstatus == pytest.ExitCode.INTERRUPTED or bool(
            session.shouldstop or session.shouldfail
        )
        for nodeid in sorted(self.collected - self.reported):
            # xdist stopped before handing it to a worker (workers died past
            # --max-worker-restart, or -x / --maxfail)
            state.not_done.setdefault(nodeid, "never run: the run stopped before it")
        if not state.results and not state.failed:
            return
        from pytest_lmms._summary import build_results

        results = build_results(state, session, time.time() - state.started)
        session.config.stash[RESULTS_KEY] = results
        html = session.config.getoption("lmms_html")
        if html is not None:
            session.config.stash[HTML_KEY] = _write_html(results, state.run_dir, html or None)
        # after the report, so exporters attach every file of the run folder
        session.config.stash[EXPORT_KEY] = _export(session.config, results, state.run_dir)
        unscored = any(info.get("error") for info in results["tasks"].values())
        if (results["gates"]["failures"] or unscored) and session.exitstatus == pytest.ExitCode.OK:
            # A gate (or a task that could not be aggregated) fails the run, never a sample:
            # pytest's own outcome counts stay true.
            session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _export(config: pytest.Config, results: dict[str, Any], run_dir: Path) -> list[str]:
    """Call every pytest_lmms_results exporter with the typed results; one that raises is a
    summary line, never a failed run (the results are written already)."""
    impls = config.hook.pytest_lmms_results.get_hookimpls()
    if not impls:
        return []
    from pytest_lmms.report import results_from_json

    typed = results_from_json(results, source=str(run_dir / "results.json"))
    problems = []
    for impl in impls:
        try:
            impl.function(results=typed, run_dir=run_dir, config=config)
        except Exception as exc:  # noqa: BLE001 - any exporter's error, named
            problems.append(f"exporter {impl.plugin_name} failed: {type(exc).__name__}: {exc}")
    return problems


def _write_html(results: dict[str, Any], run_dir: Path, out: str | None) -> str:
    """The run's HTML report; a report that cannot be written is said so, never a failed run."""
    from pytest_lmms.report import write_html_for_run

    try:
        return f"report: {write_html_for_run(results, run_dir, out)}"
    except Exception as exc:  # noqa: BLE001 - the scores are written already; say what failed
        return f"report not written: {type(exc).__name__}: {exc}"


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    results = config.stash.get(RESULTS_KEY, None)
    if results is None:
        return
    from pytest_lmms._summary import error_lines, gate_lines, summary_lines

    # Ends the progress line first: else the first row is preceded by a blank line when
    # progress was printed per file (one process) but not under xdist.
    terminalreporter.ensure_newline()
    terminalreporter.section("pytest-lmms results")
    for line in summary_lines(results):
        terminalreporter.write_line(line)
    for line in error_lines(results):
        terminalreporter.write_line(line, red=True, bold=True)
    html = config.stash.get(HTML_KEY, None)
    if html is not None:
        terminalreporter.write_line(html)
    for line in config.stash.get(EXPORT_KEY, []):
        terminalreporter.write_line(line, red=True)
    for line in gate_lines(results):
        terminalreporter.write_line(line, red=True, bold=True)
