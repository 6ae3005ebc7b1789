"""Work distribution for pytest-xdist that keeps engines' prefix caches hot.

Samples sharing an image, a video or a prompt prefix (one cluster of a task with
``cluster_key``; the repeats of one document otherwise) go to one worker, so vLLM / SGLang
prefix caching hits across them. Groups are dealt out in contiguous chunks of decreasing
size (guided self-scheduling): early chunks are large, so each worker's engine plans many
requests together, and the last ones are small, so no worker is left with a long tail.

The controller collects nothing and never opens a dataset, so a worker tells it the
clusters: the first worker writes the cluster of every collected sample to a file in a
folder the controller names in ``workerinput``, before it reports its collection (which
the controller waits for before scheduling). Without that file (workers on other hosts)
groups fall back to what a node id alone says: the document, with its repeats.

It is xdist's scheduler under ``-n`` when ``--dist`` is not given and the collection holds
pytest-lmms samples; ``--dist MODE`` selects xdist's own modes. Node ids are unchanged, so
``--lf``, ``-k`` and pasted ids work as before. Queued work is never stolen back from a
worker: its engine has already planned (and may be running) those requests, so a steal
would compute them twice.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import shutil
import tempfile
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

GROUPS_DIR_KEY = "lmms_groups_dir"
# The smallest chunk handed out (whole groups, so a chunk may be larger): the tail at the
# end of a run is about this many samples' worth of one worker's time.
MIN_CHUNK = 8
# Chunks are the remaining samples / (CHUNK_DIVISOR x workers): 2 gives each worker a
# quarter of its share of the run first.
CHUNK_DIVISOR = 2
# A worker runs an item only once it knows the next one (or is told to stop), so it needs
# two items queued.
MIN_PENDING = 2
# The worker that writes the clusters: the first, whose collection the controller waits
# for before it schedules anything, as it waits for every initial worker's.
LABELLING_WORKER = "gw0"
_REPEAT = re.compile(r"#r\d+\]$")


def is_sample(nodeid: str) -> bool:
    return nodeid.partition("::")[0].endswith((".yaml", ".yml"))


def default_group(nodeid: str) -> str:
    """The group a node id alone gives: a sample's document (all its repeats, which share
    the whole prompt), any other test on its own."""
    if not is_sample(nodeid):
        return nodeid
    return _REPEAT.sub("]", nodeid)


def collection_digest(ids: Sequence[str]) -> str:
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()


def group_indices(ids: Sequence[str], labels: Sequence[str | None] | None = None) -> list[list[int]]:
    """The collection's indices by group, groups in order of first appearance. ``labels``
    (a sample's cluster, from the workers) override the default group where given."""
    groups: dict[tuple[str, str], list[int]] = {}
    for index, nodeid in enumerate(ids):
        label = labels[index] if labels is not None else None
        key = ("cluster", label) if label is not None else ("default", default_group(nodeid))
        groups.setdefault(key, []).append(index)
    return list(groups.values())


# ---- worker side ----------------------------------------------------------------------
def cluster_labels(items: Sequence[pytest.Item]) -> list[str | None]:
    """Each item's cluster as a group label (None: not a clustered sample, or a document
    that cannot be read, which its item reports when it runs)."""
    from pytest_lmms.plugin import SampleItem

    labels: list[str | None] = []
    for item in items:
        label = None
        if isinstance(item, SampleItem) and item.task.spec.cluster_key is not None:
            try:
                cluster = item.task.cluster_id(item.task.doc(item.doc_id))
            except Exception:  # noqa: BLE001 - the sample fails with the reason when it runs
                cluster = None
            if cluster is not None:
                scope = item.nodeid.rpartition("::")[0]
                label = f"{scope}::{item.task.name}\0{cluster}"
        labels.append(label)
    return labels


def write_labels(directory: Path, worker_id: str, ids: Sequence[str], labels: Sequence[str | None]) -> Path:
    """Written whole, then renamed: the controller never reads half a file."""
    path = directory / f"{worker_id}.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"digest": collection_digest(ids), "labels": list(labels)}))
    os.replace(tmp, path)
    return path


def read_labels(directory: Path | None, ids: Sequence[str]) -> list[str | None] | None:
    """The labels some worker wrote for exactly this collection; None if none did."""
    if directory is None or not directory.is_dir():
        return None
    digest = collection_digest(ids)
    for path in sorted(directory.glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        labels = data.get("labels")
        if data.get("digest") == digest and isinstance(labels, list) and len(labels) == len(ids):
            return [None if label is None else str(label) for label in labels]
    return None


class WorkerGroups:
    """On a worker: ships the clusters of its collection, and plans chunks as they arrive."""

    def __init__(self, config: pytest.Config, directory: Path) -> None:
        self.config = config
        self.directory = directory
        self._queue: Any = None

    @pytest.hookimpl(tryfirst=True)  # before xdist's own, which reports the collection
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        worker_id = str(getattr(self.config, "workerinput", {}).get("workerid", "gw"))
        if worker_id != LABELLING_WORKER:
            return  # one worker reads the clusters (every document of every task) for all
        ids = [item.nodeid for item in session.items]
        # unwritable (a worker on another host): the controller falls back to the groups
        # node ids give
        with contextlib.suppress(OSError):
            write_labels(self.directory, worker_id, ids, cluster_labels(session.items))

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_call(self, item: pytest.Item) -> None:
        """A chunk that arrived while the previous one runs is planned now, not when its first
        item starts: the engine keeps its batches (and a server its concurrency) full."""
        from pytest_lmms.plugin import SampleItem, _state

        last = self._last_queued(item.session)
        if isinstance(last, SampleItem) and not last.plan_tried and isinstance(item, SampleItem):
            state = _state(self.config)
            state.plan(item._items_to_plan(state))

    def _last_queued(self, session: pytest.Session) -> pytest.Item | None:
        if self._queue is None:
            for plugin in self.config.pluginmanager.get_plugins():
                queue = getattr(plugin, "torun", None)
                if queue is not None and hasattr(queue, "lock"):
                    self._queue = queue
                    break
            else:
                return None
        with self._queue.lock() as pending:
            last = pending[-1] if pending else None
        if isinstance(last, int) and 0 <= last < len(session.items):
            return session.items[last]
        return None


# ---- controller side ------------------------------------------------------------------
class GroupScheduling:
    """xdist's scheduler protocol (``xdist.scheduler.protocol.Scheduling``): whole groups,
    in chunks of decreasing size, to whichever worker runs low first."""

    def __init__(self, config: pytest.Config, log: Any, groups_dir: Path | None) -> None:
        from xdist.workermanage import parse_tx_spec_config

        self.config = config
        self.log = log.lmmssched if log is not None else (lambda *args: None)
        self.numnodes = len(parse_tx_spec_config(config))
        self.groups_dir = groups_dir
        self.node2collection: dict[Any, list[str]] = {}
        self.node2pending: dict[Any, deque[int]] = {}
        self.refill_at: dict[Any, int] = {}
        self.collection: list[str] | None = None
        self.queue: deque[list[int]] = deque()
        self.queued = 0  # samples in self.queue
        self.labelled = False  # whether the workers' clusters were read
        self.delegate: Any = None  # xdist's load scheduler, for a collection of no samples

    # -- the protocol's properties
    @property
    def nodes(self) -> list[Any]:
        if self.delegate is not None:
            return list(self.delegate.nodes)
        return list(self.node2pending)

    @property
    def collection_is_completed(self) -> bool:
        return len(self.node2collection) >= self.numnodes

    @property
    def tests_finished(self) -> bool:
        if self.delegate is not None:
            return bool(self.delegate.tests_finished)
        if not self.collection_is_completed or self.queue:
            return False
        return all(len(pending) < MIN_PENDING for pending in self.node2pending.values())

    @property
    def has_pending(self) -> bool:
        if self.delegate is not None:
            return bool(self.delegate.has_pending)
        return bool(self.queue) or any(self.node2pending.values())

    # -- nodes
    def add_node(self, node: Any) -> None:
        if self.delegate is not None:
            self.delegate.add_node(node)
            return
        assert node not in self.node2pending
        self.node2pending[node] = deque()

    def add_node_collection(self, node: Any, collection: Sequence[str]) -> None:
        if self.delegate is not None:
            self.delegate.add_node_collection(node, collection)
            return
        if self.collection is not None and list(collection) != self.collection:
            from xdist.report import report_collection_diff

            other = next(iter(self.node2collection))
            self.log(report_collection_diff(self.collection, collection, other.gateway.id, node.gateway.id))
            return
        self.node2collection[node] = list(collection)

    def remove_node(self, node: Any) -> str | None:
        """A finished or dead node; a dead one's queue goes back to the front, together."""
        if self.delegate is not None:
            return self.delegate.remove_node(node)  # type: ignore[no-any-return]
        pending = self.node2pending.pop(node)
        self.refill_at.pop(node, None)
        if not pending:
            return None
        assert self.collection is not None
        crashitem = self.collection[pending.popleft()]
        if pending:
            self.queue.appendleft(list(pending))
            self.queued += len(pending)
        for other in self.nodes:
            self._refill(other)
        return crashitem

    # -- progress
    def mark_test_complete(self, node: Any, item_index: int, duration: float = 0) -> None:
        if self.delegate is not None:
            self.delegate.mark_test_complete(node, item_index, duration)
            return
        self.node2pending[node].remove(item_index)
        self._refill(node)

    def mark_test_pending(self, item: str) -> None:
        if self.delegate is not None:
            self.delegate.mark_test_pending(item)
            return
        assert self.collection is not None
        self.queue.appendleft([self.collection.index(item)])
        self.queued += 1
        for node in self.nodes:
            self._refill(node)

    def remove_pending_tests_from_node(self, node: Any, indices: Sequence[int]) -> None:
        raise NotImplementedError("pytest-lmms's scheduler never steals queued work back")

    # -- scheduling
    def schedule(self) -> None:
        assert self.collection_is_completed
        if self.delegate is not None:
            self.delegate.schedule()
            return
        if self.collection is not None:  # a node joined later (a dead one's replacement)
            for node in self.nodes:
                self._refill(node)
            return
        if not self._same_collections():
            self.log("**Different tests collected, aborting run**")
            return
        collection = next(iter(self.node2collection.values()))
        if not any(is_sample(nodeid) for nodeid in collection):
            self._delegate_to_load()
            return
        self.collection = collection
        labels = read_labels(self.groups_dir, collection)
        self.labelled = labels is not None
        groups = group_indices(collection, labels)
        self.queue = deque(groups)
        self.queued = len(collection)
        self.log(f"{len(groups)} groups of {len(collection)} items, clusters from workers: {self.labelled}")
        for node in self.nodes:
            self._send_chunk(node)
        if not self.queue:
            for node in self.nodes:
                node.shutdown()

    def _chunk_size(self) -> int:
        workers = max(1, sum(1 for node in self.node2pending if not node.shutting_down))
        return max(MIN_CHUNK, math.ceil(self.queued / (CHUNK_DIVISOR * workers)))

    def _send_chunk(self, node: Any) -> None:
        target = self._chunk_size()
        chunk: list[int] = []
        while self.queue and len(chunk) < target:
            chunk.extend(self.queue.popleft())
        if not chunk:
            return
        self.queued -= len(chunk)
        self.node2pending[node].extend(chunk)
        # the next chunk is sent while a quarter of this one is left, so it is planned
        # before the engine runs dry
        self.refill_at[node] = max(MIN_PENDING, len(chunk) // 4)
        node.send_runtest_some(chunk)

    def _refill(self, node: Any) -> None:
        if node.shutting_down:
            return
        if not self.queue:
            node.shutdown()
            return
        if len(self.node2pending[node]) <= self.refill_at.get(node, MIN_PENDING):
            self._send_chunk(node)

    def _same_collections(self) -> bool:
        from xdist.report import report_collection_diff

        (first, ids), *others = self.node2collection.items()
        same = True
        for node, collection in others:
            message = report_collection_diff(ids, collection, first.gateway.id, node.gateway.id)
            if message:
                same = False
                self.log(message)
                report = pytest.CollectReport(
                    nodeid=node.gateway.id, outcome="failed", longrepr=message, result=[]
                )
                self.config.hook.pytest_collectreport(report=report)
        return same

    def _delegate_to_load(self) -> None:
        """Plain tests only: xdist's own load scheduling, exactly as without pytest-lmms."""
        from xdist.scheduler import LoadScheduling

        delegate = LoadScheduling(self.config)
        for node, collection in self.node2collection.items():
            delegate.add_node(node)
            delegate.add_node_collection(node, collection)
        self.delegate = delegate
        delegate.schedule()


class LmmsDistribution:
    """On the controller: makes the scheduler and names the folder the clusters come in."""

    def __init__(self) -> None:
        self.groups_dir: Path | None = None

    def _folder(self) -> Path:
        if self.groups_dir is None:
            self.groups_dir = Path(tempfile.mkdtemp(prefix="pytest-lmms-groups-"))
        return self.groups_dir

    @staticmethod
    def applies(config: pytest.Config) -> bool:
        """Only under -n without an explicit --dist: a mode the user asked for is theirs."""
        asked = getattr(config.known_args_namespace, "dist", "no")
        return config.getoption("dist") == "load" and asked == "no" and not config.getoption("distload")

    def pytest_configure_node(self, node: Any) -> None:
        if self.applies(node.config):
            node.workerinput[GROUPS_DIR_KEY] = str(self._folder())

    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: Any) -> GroupScheduling | None:
        if not self.applies(config):
            return None
        return GroupScheduling(config, log, self._folder())

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        if self.groups_dir is not None:
            shutil.rmtree(self.groups_dir, ignore_errors=True)
