"""Finding tasks and groups on disk, and loading one task by name or path."""

from __future__ import annotations

import difflib
import fnmatch
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pytest_lmms.tasks._spec import GroupSpec, TaskConfigError, TaskSpec, _where, is_task_file, load_specs
from pytest_lmms.tasks._task import Task


@dataclass
class TaskIndex:
    tasks: dict[str, Path] = field(default_factory=dict)
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)
    errors: dict[Path, str] = field(default_factory=dict)

    def _expand(self, name: str, seen: frozenset[str] = frozenset()) -> set[str]:
        if name in self.tasks:
            return {name}
        if name in self.groups and name not in seen:
            out: set[str] = set()
            for member in self.groups[name]:
                if member not in self.tasks and member not in self.groups:
                    # a typo in a group file must not silently run fewer tasks
                    raise TaskConfigError(f"group {name!r} lists {member!r}, which is no task or group found")
                out |= self._expand(member, seen | {name})
            return out
        return set()

    def select(self, patterns: Sequence[str]) -> set[str]:
        """Task names for names, group names (recursively) and fnmatch globs."""
        chosen: set[str] = set()
        known = sorted(set(self.tasks) | set(self.groups))
        for pattern in patterns:
            matched = (
                {n for n in known if fnmatch.fnmatchcase(n, pattern)}
                if any(c in pattern for c in "*?[")
                else ({pattern} if pattern in known else set())
            )
            if not matched:
                close = difflib.get_close_matches(pattern, known, n=3)
                hint = f"; did you mean {', '.join(close)}?" if close else ""
                raise TaskConfigError(f"--tasks: no task or group matches {pattern!r}{hint}")
            for name in matched:
                chosen |= self._expand(name)
        return chosen


CATALOG_VARIABLE = "PYTEST_LMMS_CATALOG"


def catalog_path() -> Path | None:
    """The benchmark catalog that comes with pytest-lmms: ``$PYTEST_LMMS_CATALOG`` when set,
    else the ``benchmarks`` folder beside the package (a source checkout or an editable
    install); None when neither exists."""
    named = os.environ.get(CATALOG_VARIABLE)
    if named:
        return Path(named)
    beside = Path(__file__).resolve().parents[2] / "benchmarks"
    return beside if beside.is_dir() else None


def default_search_paths() -> list[Path]:
    """Where tasks are looked for when no path is given: ./benchmarks, else the catalog that
    comes with the package, else the current folder."""
    if Path("benchmarks").is_dir():
        return [Path("benchmarks")]
    catalog = catalog_path()
    return [catalog] if catalog is not None else [Path(".")]


def discover(paths: Sequence[str | Path]) -> TaskIndex:
    """Index every task and group YAML under ``paths`` (no dataset is loaded)."""
    index = TaskIndex()
    for root in paths:
        root = Path(root)
        files = [root] if root.is_file() else _walk(root)
        for path in files:
            if not is_task_file(path):
                continue
            try:
                specs = load_specs(path)
            except TaskConfigError as exc:
                index.errors[path] = str(exc)
                continue
            for spec in specs:
                if isinstance(spec, GroupSpec):
                    index.groups[spec.name] = spec.tasks
                    continue
                known = index.tasks.setdefault(spec.name, path)
                if known.resolve() != path.resolve():
                    # Two definitions of one name: keep the first, never pick one silently.
                    duplicate = f"{_where(path)}: task '{spec.name}' is already defined in {_where(known)}"
                    index.errors[path] = "; ".join(filter(None, (index.errors.get(path), duplicate)))
    return index


def _walk(root: Path) -> list[Path]:
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "_")) and d != "node_modules")
        found += [Path(folder) / f for f in sorted(files) if f.endswith((".yaml", ".yml"))]
    return found


def load_task(name_or_path: str | Path, search_paths: Sequence[str | Path] | None = None) -> Task:
    """A Task from a YAML path (``file.yaml::task`` when the file holds several) or a name."""
    text = str(name_or_path)
    file_part, _, wanted = text.partition("::")
    path = Path(file_part)
    if path.suffix in (".yaml", ".yml"):
        specs = [s for s in load_specs(path) if isinstance(s, TaskSpec)]
        if wanted:
            specs = [s for s in specs if s.name == wanted]
        if len(specs) != 1:
            names = ", ".join(s.name for s in load_specs(path) if isinstance(s, TaskSpec))
            raise TaskConfigError(f"{path}: choose one task with {path}::NAME (it defines: {names})")
        return Task(specs[0])
    if search_paths is None:
        search_paths = default_search_paths()
    index = discover(search_paths)
    if text not in index.tasks:
        close = difflib.get_close_matches(text, sorted(index.tasks), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise TaskConfigError(f"no task named {text!r} under {', '.join(map(str, search_paths))}{hint}")
    return load_task(f"{index.tasks[text]}::{text}")
