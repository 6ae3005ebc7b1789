"""Where a benchmark's media files live on this machine."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

DEFAULT_HF_HOME = "~/.cache/huggingface"


def media_folder(
    metadata: Mapping[str, Any] | None, env_var: str, default_subdir: str, *, key: str = "video_dir"
) -> Path:
    """The folder a benchmark reads its media from, first found of:

    1. ``metadata[key]`` (the YAML's metadata, e.g. ``video_dir: /data/videomme``);
    2. the environment variable ``env_var``;
    3. ``$HF_HOME/<default_subdir>``, with ``HF_HOME`` defaulting to ``~/.cache/huggingface``.

    An empty value counts as unset. ``~`` is expanded; the folder need not exist.
    """
    configured = (metadata or {}).get(key) or os.environ.get(env_var)
    if configured:
        return Path(str(configured)).expanduser()
    return Path(os.environ.get("HF_HOME", DEFAULT_HF_HOME)).expanduser() / default_subdir
