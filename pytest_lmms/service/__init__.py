"""Evaluation as a service: a durable job store, a GPU scheduler and the HTTP API
(``pytest-lmms serve``; the ``service`` extra: fastapi, uvicorn)."""

from pytest_lmms.service._app import JobRequest, ServiceSettings, create_app
from pytest_lmms.service._server import ServeError, is_loopback, parse_gpus, read_token, serve
from pytest_lmms.service._store import JOB_STATES, Job, JobState, JobStore
from pytest_lmms.service._trainer import EvalCallback, checkpoint_fingerprint, checkpoint_key, scores_of

__all__ = [
    "JOB_STATES",
    "EvalCallback",
    "checkpoint_fingerprint",
    "checkpoint_key",
    "scores_of",
    "Job",
    "JobRequest",
    "JobState",
    "JobStore",
    "ServeError",
    "ServiceSettings",
    "create_app",
    "is_loopback",
    "parse_gpus",
    "read_token",
    "serve",
]
