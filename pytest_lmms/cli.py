"""The ``pytest-lmms`` command: ``tasks``, ``models``, ``compare``, ``power``, ``pack``,
``submission``, ``merge``, ``runs``, ``show``, ``download``, ``report``, ``serve`` and ``watch``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_lmms.types import SampleResult


def _dataset_of(task_path: Path, task_name: str) -> tuple[str, str]:
    """The dataset id (with its config) and split a task names, read from its YAML only."""
    from pytest_lmms.tasks import TaskSpec, load_specs

    try:
        spec = next(s for s in load_specs(task_path) if isinstance(s, TaskSpec) and s.name == task_name)
    except Exception:  # noqa: BLE001 - listing never fails on one bad file
        return "?", "?"
    dataset = spec.dataset_path or "?"
    if spec.dataset_name:
        dataset += f" ({spec.dataset_name})"
    return dataset, spec.test_split


def _dataset_size(task_path: Path, task_name: str, data_dir: Path | None = None) -> str:
    """Row count when it is cheap to know (local jsonl lines, parquet metadata, the local
    copy ``pytest-lmms download`` saved of a hub split), else '?'."""
    from pytest_lmms.tasks import load_specs
    from pytest_lmms.tasks._sources import LANCE_SCHEME

    try:
        spec = next(s for s in load_specs(task_path) if getattr(s, "name", None) == task_name)
    except Exception:  # noqa: BLE001 - listing never fails on one bad file
        return "?"
    source = getattr(spec, "dataset_path", None)
    if not source:
        return "?"
    if data_dir is not None and hasattr(spec, "test_split"):
        rows = _local_copy_rows(data_dir, spec)
        if rows is not None:
            return rows
    if source.startswith(LANCE_SCHEME):
        return _lance_size(task_path, source)
    path = Path(source)
    if not path.is_absolute():
        path = task_path.parent / path
    try:
        if path.suffix == ".jsonl" and path.is_file():
            with open(path, "rb") as handle:
                return str(sum(1 for line in handle if line.strip()))
        if path.suffix == ".parquet" and path.is_file():
            import pyarrow.parquet as pq

            return str(pq.ParquetFile(path).metadata.num_rows)
    except Exception:  # noqa: BLE001
        return "?"
    return "?"


def _local_copy_rows(data_dir: Path, spec: Any) -> str | None:
    """The row count a downloaded copy's metadata file records, if the copy is there."""
    from pytest_lmms.tasks._local import META_FILE, local_copy_path

    meta = local_copy_path(data_dir, spec) / META_FILE
    try:
        rows = json.loads(meta.read_text())["rows"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return str(rows) if isinstance(rows, int) else None


def _lance_size(task_path: Path, source: str) -> str:
    from pytest_lmms.tasks._sources import lance_path

    path = lance_path(task_path.parent, source)
    if not path.is_dir():
        return "?"
    try:
        import lance

        return str(lance.dataset(str(path)).count_rows())
    except Exception:  # noqa: BLE001
        return "?"


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def cmd_tasks(args: argparse.Namespace) -> int:
    from pytest_lmms.tasks import default_search_paths, discover
    from pytest_lmms.tasks._local import data_dir_from_environment

    paths = [Path(p) for p in args.paths] or default_search_paths()
    data_dir = Path(args.data) if args.data else data_dir_from_environment()
    index = discover(paths)
    groups_of: dict[str, list[str]] = {}
    for group, members in index.groups.items():
        for member in members:
            groups_of.setdefault(member, []).append(group)
    rows = [["task", "groups", "dataset", "split", "docs", "yaml"]]
    for name, path in sorted(index.tasks.items()):
        dataset, split = _dataset_of(path, name)
        rows.append(
            [
                name,
                ",".join(sorted(groups_of.get(name, []))) or "-",
                dataset,
                split,
                _dataset_size(path, name, data_dir),
                str(path),
            ]
        )
    print(_table(rows) if len(rows) > 1 else "no tasks found under " + ", ".join(map(str, paths)))
    for _path, error in sorted(index.errors.items()):
        print(f"error: {error}", file=sys.stderr)  # the message names its file
    return 1 if index.errors else 0


def cmd_models(args: argparse.Namespace) -> int:
    from pytest_lmms.models import available_backends

    rows = [["backend", "source"]]
    rows += [[name, source] for name, source in available_backends().items()]
    print(_table(rows))
    print(
        "\naliases:\n  hf:tiny-qwen2-vl  the embedded tiny Qwen2-VL (random weights), built locally on first use"
    )
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from pytest_lmms.report import compare_runs, format_comparisons, load_run

    try:
        current, baseline = load_run(args.current), load_run(args.baseline)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    primary: dict[str, str] = {}
    clustered: dict[str, bool] = {}
    for task, info in current.results.tasks.items():
        if info.metrics:
            metric = args.metric or next(iter(info.metrics))
            primary[task] = metric
            recorded = info.metrics.get(metric)
            clustered[task] = recorded is not None and "cluster" in recorded.method
    comparisons = compare_runs(current.samples, baseline.samples, primary, clustered)
    if not comparisons:
        print("no task was scored in both runs", file=sys.stderr)
        return 1
    print("\n".join(format_comparisons(comparisons, f"{baseline.label} ({baseline.path})")))
    return 0


def cmd_power(args: argparse.Namespace) -> int:
    from pytest_lmms.stats import design_effect, power, sample_size

    options = {
        "sd": args.sd,
        "p": args.p,
        "alpha": args.alpha,
        "paired_correlation": args.paired_correlation,
        "cluster_size": args.cluster_size,
        "icc": args.icc,
    }
    try:
        if args.n is not None:
            value = power(args.n, args.effect, **options)
            print(f"power to detect a difference of {args.effect:g} with n={args.n}: {value:.4f}")
            return 0
        n = sample_size(args.effect, power=args.power, **options)
        deff = design_effect(args.cluster_size, args.icc)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"minimum n: {n} questions")
    print(
        f"  two-sided paired t test, effect {args.effect:g}, alpha {args.alpha:g}, power {args.power:g}"
        + (f", design effect {deff:.3f}" if deff != 1 else "")
    )
    return 0


def cmd_pack(args: argparse.Namespace) -> int:
    from pytest_lmms.media._lance import LanceError, pack
    from pytest_lmms.tasks import DatasetError, TaskConfigError, load_task

    search_paths = [Path(p) for p in args.tasks_dir] or None
    try:
        task = load_task(args.task, search_paths)
        summary = pack(
            task,
            args.out,
            limit=args.limit,
            overwrite=args.overwrite,
            progress_every=args.progress_every,
            log=lambda line: print(line, file=sys.stderr, flush=True),
        )
    except (TaskConfigError, DatasetError, LanceError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(
        f"wrote {summary.path}: {summary.docs} documents, {summary.media} media items "
        f"({summary.media_bytes / 1e6:.1f} MB, at most {summary.slots} per document) "
        f"in {summary.seconds:.1f} s"
    )
    if summary.unplaced:
        print(
            f"note: {summary.unplaced} media items come from no top-level document column: the "
            "lance:// source does not put them back in the documents (LanceMediaStore.media serves them)",
            file=sys.stderr,
        )
    if summary.dropped_columns:
        print(
            f"note: columns left out (neither media nor JSON data): {', '.join(summary.dropped_columns)}",
            file=sys.stderr,
        )
    return 0


def cmd_submission(args: argparse.Namespace) -> int:
    from pytest_lmms.report import build_submission, write_submission
    from pytest_lmms.tasks import DatasetError, TaskConfigError

    try:
        content = build_submission(args.run, args.task, args.yaml)
        out = write_submission(content, args.out)
    except (ValueError, TaskConfigError, DatasetError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    count = len(content) if hasattr(content, "__len__") else "?"
    print(f"wrote {out}: {count} entries of {args.task}")
    return 0


def cmd_merge(args: argparse.Namespace) -> int:
    from pytest_lmms._summary import summary_lines
    from pytest_lmms.cache import CacheError, ResponseCache
    from pytest_lmms.report import merge_runs
    from pytest_lmms.tasks import DatasetError, TaskConfigError

    try:
        data = merge_runs(args.runs, args.out)
    except (ValueError, TaskConfigError, DatasetError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    for line in summary_lines(data):
        print(line)
    if args.cache_from:
        if not args.cache:
            print("error: --cache-from needs --cache (the cache to merge into)", file=sys.stderr)
            return 1
        try:
            with ResponseCache(args.cache) as target:
                for source in args.cache_from:
                    added = target.merge_from(source)
                    print(f"cache {source}: {added} responses added to {args.cache}")
        except CacheError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    from pytest_lmms.tasks import TaskConfigError, TaskSpec, default_search_paths, discover, load_specs
    from pytest_lmms.tasks._local import download
    from pytest_lmms.tasks._sources import HFSource, open_source

    index = discover([Path(p) for p in args.tasks_dir] or default_search_paths())
    try:
        names = sorted(index.select(args.tasks))
    except TaskConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    failures = 0
    for name in names:
        spec = next(s for s in load_specs(index.tasks[name]) if isinstance(s, TaskSpec) and s.name == name)
        source = open_source(spec)
        if not isinstance(source, HFSource) or source.folder is not None:
            print(f"{name}: reads {spec.dataset_path} from disk: nothing to download")
            continue
        try:
            done = download(spec, args.out, overwrite=args.overwrite)
        except Exception as exc:  # noqa: BLE001 - one task's failure must not stop the others
            failures += 1
            print(f"error: {name}: {spec.dataset_path}: {type(exc).__name__}: {exc}", file=sys.stderr)
            continue
        print(f"{name}: {done.rows} rows -> {done.path} ({done.seconds:.1f} s)")
    if failures:
        print(f"{failures} task(s) not downloaded", file=sys.stderr)
    return 1 if failures else 0


def _score_text(value: Any) -> str:
    return "-" if value is None else f"{value:.4f}"


def cmd_runs(args: argparse.Namespace) -> int:
    from pytest_lmms.report import list_runs

    runs = list_runs(args.output)
    if not runs:
        print(f"no saved runs under {args.output}")
        return 0
    rows = [["run", "created", "model", "complete", "scores"]]
    for run in runs:
        complete = {None: "?", True: "yes", False: "no"}[run.complete]
        scores = "  ".join(f"{task} {_score_text(value)}" for task, value in run.headline().items())
        rows.append([run.path.name, run.created, run.model, complete, scores or "-"])
    print(_table(rows))
    return 0


def _sample_text(record: SampleResult) -> list[str]:
    """A sample for a person: what the model saw, what it said, how it was scored."""
    repeat = f"#r{record.repeat}" if record.repeat else ""
    lines = [
        f"== {record.task}[{record.doc_id}{repeat}]  "
        + "  ".join(f"{name} {value:g}" for name, value in record.scores.items())
    ]
    prompt = record.prompt
    if prompt is not None:
        if prompt.get("text"):
            lines.append("prompt:   " + str(prompt["text"]).replace("\n", "\n          "))
        for media in prompt.get("media") or []:
            lines.append(
                f"media:    {media.get('kind', '?')} {media.get('path') or '-'} {media.get('sha256', '')}"
            )
        if prompt.get("choices"):
            lines.append(f"choices:  {prompt['choices']}")
    lines.append(f"target:   {record.target!r}")
    lines.append(f"response: {record.response!r}")
    lines.append(f"answer:   {record.extracted!r}")
    if record.judge_calls:
        lines.append(f"judge:    {record.judge_calls} call(s)")
    return lines


def cmd_show(args: argparse.Namespace) -> int:
    from pytest_lmms.report import read_results, resolve_run, sample_records

    try:
        run_dir = resolve_run(args.run, args.output)
        results = read_results(run_dir)
        shown = 0
        for record in sample_records(run_dir, args.task):
            task_info = results.tasks.get(record.task)
            primary = task_info.primary_metric if task_info is not None else None
            if args.doc is not None and record.doc_id != args.doc:
                continue
            if args.wrong and (primary is None or record.scores.get(primary) != 0):
                continue
            print("\n".join(_sample_text(record)))
            shown += 1
            if args.limit and shown >= args.limit:
                break
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{shown} sample(s) from {run_dir}")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from pytest_lmms.report import MediaLimits, resolve_run, write_html

    try:
        runs = [resolve_run(run, args.output) for run in args.runs]
        baseline = resolve_run(args.baseline, args.output) if args.baseline else None
        limits = MediaLimits(image_side=args.thumbnail_px, frame_side=max(1, args.thumbnail_px // 2))
        path = write_html(runs, args.out, baseline=baseline, media=not args.no_media, limits=limits)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"report: {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        from pytest_lmms.service import ServeError, parse_gpus, serve
    except ImportError as exc:
        print(f"error: {exc}; install the service extra: pip install 'pytest-lmms[service]'", file=sys.stderr)
        return 2
    try:
        serve(
            store=Path(args.store),
            host=args.host,
            port=args.port,
            gpus=parse_gpus(args.gpus),
            token_file=Path(args.token_file) if args.token_file else None,
            tasks_dirs=[Path(p) for p in args.tasks_dir],
            allow_paths=[Path(p) for p in args.allow_path],
            allow_remote_code=args.allow_remote_code,
            cpu_slots=args.cpu_jobs,
        )
    except (ServeError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    from pytest_lmms.client import EvalClient, ServiceError
    from pytest_lmms.service._watch import watch

    token = Path(args.token_file).read_text().strip() if args.token_file else None
    options = {"limit": args.limit, "gpus": args.gpus, "tags": args.tag}
    try:
        watch(
            Path(args.folder),
            EvalClient(args.server, token=token),
            [t for t in args.tasks.split(",") if t],
            backend=args.backend,
            pattern=args.pattern,
            interval=args.interval,
            settle=args.settle,
            once=args.once,
            log=lambda line: print(line, flush=True),
            **{k: v for k, v in options.items() if v not in (None, [])},
        )
    except ServiceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pytest-lmms", description="pytest-lmms helper commands")
    sub = parser.add_subparsers(dest="command", required=True)
    tasks = sub.add_parser("tasks", help="list tasks and groups (no dataset is loaded)")
    tasks.add_argument(
        "paths", nargs="*", help="folders to search (default: ./benchmarks, else the catalog of pytest-lmms)"
    )
    tasks.add_argument(
        "--data",
        default=None,
        help="folder of local copies (as --lmms-data; default $PYTEST_LMMS_DATA): their sizes are shown",
    )
    tasks.set_defaults(func=cmd_tasks)
    models = sub.add_parser("models", help="list model backends and aliases")
    models.set_defaults(func=cmd_models)
    compare = sub.add_parser("compare", help="paired comparison of two saved runs (CURRENT - BASELINE)")
    compare.add_argument("current", help="results.json of the run to judge (or its folder)")
    compare.add_argument("baseline", help="results.json of the baseline run (or its folder)")
    compare.add_argument("--metric", default=None, help="metric to compare (default: each task's first)")
    compare.set_defaults(func=cmd_compare)
    power = sub.add_parser("power", help="questions needed to detect a difference between two models")
    power.add_argument(
        "--effect", type=float, required=True, help="difference in score to detect (e.g. 0.02)"
    )
    power.add_argument("--p", type=float, default=None, help="expected accuracy (for 0/1 scores)")
    power.add_argument("--sd", type=float, default=None, help="per-question score SD (instead of --p)")
    power.add_argument("--alpha", type=float, default=0.05)
    power.add_argument("--power", type=float, default=0.8)
    power.add_argument(
        "--paired-correlation", type=float, default=None, help="correlation of the two models' scores"
    )
    power.add_argument("--cluster-size", type=float, default=None, help="questions per shared image/video")
    power.add_argument("--icc", type=float, default=None, help="intra-cluster correlation")
    power.add_argument("--n", type=int, default=None, help="print the power for this n instead")
    power.set_defaults(func=cmd_power)
    pack = sub.add_parser(
        "pack", help="write a task's documents and media to a Lance dataset (dataset_path: lance://...)"
    )
    pack.add_argument("task", help="task name, or YAML path (file.yaml::task when it holds several)")
    pack.add_argument("--out", required=True, help="the dataset to write (DIR.lance)")
    pack.add_argument(
        "--tasks-dir",
        action="append",
        default=[],
        help="folder to find the task name in (repeatable; default: ./benchmarks)",
    )
    pack.add_argument("--limit", type=int, default=None, help="pack only the first N documents")
    pack.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    pack.add_argument(
        "--progress-every", type=int, default=1000, help="print progress every N documents (0: never)"
    )
    pack.set_defaults(func=cmd_pack)
    submission = sub.add_parser(
        "submission", help="a saved run's answers to a test split, in its benchmark's submission format"
    )
    submission.add_argument("run", help="the run folder (or its results.json)")
    submission.add_argument("task", help="the task (it must define a submission function)")
    submission.add_argument("--out", required=True, help="file to write: .json, .jsonl, .csv or .xlsx")
    submission.add_argument(
        "--yaml", default=None, help="the task's YAML (default: the one the run recorded)"
    )
    submission.set_defaults(func=cmd_submission)
    merge = sub.add_parser("merge", help="the shard runs of one evaluation (--lmms-shard) as one run")
    merge.add_argument("runs", nargs="+", help="the shards' run folders (or results.json files)")
    merge.add_argument("--out", required=True, help="the merged run's folder")
    merge.add_argument("--cache", default=None, help="a response cache to merge the shards' caches into")
    merge.add_argument(
        "--cache-from", action="append", default=[], help="a shard's cache folder (repeatable)"
    )
    merge.set_defaults(func=cmd_merge)
    download_parser = sub.add_parser(
        "download",
        help="save tasks' hub datasets at their pinned revisions as local copies (for --lmms-data)",
    )
    download_parser.add_argument("tasks", nargs="+", help="task names, groups or globs")
    download_parser.add_argument("--out", required=True, help="the folder of local copies (--lmms-data DIR)")
    download_parser.add_argument(
        "--tasks-dir", action="append", default=[], help="folder to find tasks in (default: the catalog)"
    )
    download_parser.add_argument("--overwrite", action="store_true", help="download copies that exist again")
    download_parser.set_defaults(func=cmd_download)
    runs = sub.add_parser("runs", help="list saved runs: time, model, complete or not, headline scores")
    runs.add_argument("--output", default="results", help="the folder of run folders (default: results)")
    runs.set_defaults(func=cmd_runs)
    show = sub.add_parser("show", help="a saved run's samples: prompt, response, extracted answer, score")
    show.add_argument("run", help="the run folder (or results.json), 'latest' or 'latest:MODEL'")
    show.add_argument("--output", default="results", help="where 'latest' looks (default: results)")
    show.add_argument("--task", default=None, help="only this task's samples")
    show.add_argument("--wrong", action="store_true", help="only samples whose first metric is 0")
    show.add_argument("--doc", default=None, help="only the sample(s) of this document id")
    show.add_argument("--limit", type=int, default=0, help="at most N samples (0: all)")
    show.set_defaults(func=cmd_show)
    report = sub.add_parser("report", help="one self-contained HTML report of saved runs (opens offline)")
    report.add_argument("runs", nargs="+", help="run folders (or results.json), 'latest' or 'latest:MODEL'")
    report.add_argument("--baseline", default=None, help="a run to compare the first run with")
    report.add_argument("--out", required=True, help="the HTML file to write")
    report.add_argument("--output", default="results", help="where 'latest' looks (default: results)")
    report.add_argument("--no-media", action="store_true", help="leave images, frames and audio out")
    report.add_argument(
        "--thumbnail-px", type=int, default=320, help="longer side of image thumbnails (video frames: half)"
    )
    report.set_defaults(func=cmd_report)
    serve = sub.add_parser("serve", help="evaluation as a service: a durable job server (the service extra)")
    serve.add_argument("--store", required=True, help="folder of the job database, logs, runs and cache")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8765, help="port (0: any free port, printed)")
    serve.add_argument("--gpus", default="", help="the GPU pool jobs are placed on, e.g. 0,1,2,3")
    serve.add_argument(
        "--token-file", default=None, help="file holding the bearer token (required beyond loopback)"
    )
    serve.add_argument(
        "--tasks-dir", action="append", default=[], help="task folder jobs run from (default: the catalog)"
    )
    serve.add_argument(
        "--allow-path", action="append", default=[], help="model paths must lie under these roots"
    )
    serve.add_argument(
        "--allow-remote-code", action="store_true", help="accept model_args trust_remote_code=true"
    )
    serve.add_argument("--cpu-jobs", type=int, default=1, help="jobs asking for 0 GPUs run at once")
    serve.set_defaults(func=cmd_serve)
    watch = sub.add_parser("watch", help="submit each new checkpoint folder of DIR to a service once")
    watch.add_argument("folder", help="the training output folder (checkpoints appear in it)")
    watch.add_argument("--server", required=True, help="the service URL (pytest-lmms serve)")
    watch.add_argument("--tasks", required=True, help="tasks to evaluate each checkpoint on, comma separated")
    watch.add_argument("--backend", default="hf", help="backend the checkpoint path is given to (default hf)")
    watch.add_argument("--pattern", default="checkpoint-*", help="checkpoint folder names (a glob)")
    watch.add_argument("--limit", type=int, default=None, help="documents per task")
    watch.add_argument("--gpus", type=int, default=None, help="GPUs each job asks for")
    watch.add_argument("--tag", action="append", default=[], help="a tag for every job (repeatable)")
    watch.add_argument("--interval", type=float, default=10.0, help="seconds between scans")
    watch.add_argument("--settle", type=float, default=5.0, help="seconds a folder must stay unchanged")
    watch.add_argument("--once", action="store_true", help="submit what is there, then exit")
    watch.add_argument("--token-file", default=None, help="file holding the service's bearer token")
    watch.set_defaults(func=cmd_watch)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
