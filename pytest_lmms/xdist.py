"""GPU pinning for pytest-xdist workers: each worker sees only its own GPU (or GPU group).

It runs in ``pytest_configure`` of each worker, before anything imports CUDA, and sets
``CUDA_VISIBLE_DEVICES`` to the worker's slice of the devices the controller could see
(``CUDA_VISIBLE_DEVICES`` if set, else the GPUs ``nvidia-smi -L`` lists). Pinning is on
when ``--lmms-gpus-per-worker N`` is given; with no GPU visible it does nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess


def visible_devices() -> list[str]:
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [device.strip() for device in listed.split(",") if device.strip()]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]


def worker_devices(devices: list[str], worker_index: int, n_workers: int, per_worker: int) -> list[str]:
    """The devices of one worker; an error when the workers need more than there are."""
    needed = n_workers * per_worker
    if needed > len(devices):
        raise ValueError(
            f"{n_workers} workers x {per_worker} GPU(s) need {needed} devices, but {len(devices)} are visible "
            f"({','.join(devices) or 'none'}); lower -n or --lmms-gpus-per-worker"
        )
    return devices[worker_index * per_worker : (worker_index + 1) * per_worker]


def pin_worker(workerinput: dict[str, object], per_worker: int) -> str | None:
    """Set CUDA_VISIBLE_DEVICES for this worker; returns what it was set to."""
    devices = visible_devices()
    if not devices:
        return None
    index = int(str(workerinput["workerid"]).removeprefix("gw"))
    count = int(str(workerinput.get("workercount", index + 1)))
    mine = ",".join(worker_devices(devices, index, count, per_worker))
    os.environ["CUDA_VISIBLE_DEVICES"] = mine
    return mine
