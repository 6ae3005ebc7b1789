"""The media of each sample as the model was fed them, made small enough to embed.

Images become downscaled JPEG data URLs, videos the frames their sampling picked (decoded
with pytest_lmms.media, as the backends do), audio a short 16 kHz WAV. A medium is embedded
once however many questions share it (keyed by content hash). Samples whose line does not
record the prompt, or whose media were held in memory (no path), are re-rendered from their
task's YAML, which is the same rendering the run did.
"""

from __future__ import annotations

import base64
import io
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_lmms.types import MediaPart, MediaRef, Request, VideoSampling

if TYPE_CHECKING:
    from pytest_lmms.report._html_data import ReportRun
    from pytest_lmms.tasks import Task


@dataclass(frozen=True)
class MediaLimits:
    """How small embedded media are made: the longer side of image thumbnails and video
    frames in pixels, JPEG quality, seconds of audio kept, frames kept per video."""

    image_side: int = 320
    frame_side: int = 160
    jpeg_quality: int = 75
    audio_seconds: float = 20.0
    max_frames: int = 64


def _data_url(mime: str, data: bytes) -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def _jpeg(image: Any, side: int, quality: int) -> str:
    """A PIL image as a JPEG data URL whose longer side is at most ``side``."""
    image = image.convert("RGB")
    image.thumbnail((side, side), reducing_gap=2.0)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality, optimize=True)
    return _data_url("image/jpeg", buffer.getvalue())


def image_thumbnail(data: bytes, limits: MediaLimits) -> str:
    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        # a JPEG decodes straight at (about) thumbnail scale: several times faster than
        # decoding it whole and shrinking
        scale = min(1.0, limits.image_side / max(image.size))
        image.draft("RGB", (math.ceil(image.width * scale), math.ceil(image.height * scale)))
        return _jpeg(image, limits.image_side, limits.jpeg_quality)


def video_thumbnails(media: MediaRef, sampling: VideoSampling, limits: MediaLimits) -> list[str]:
    """The frames the model saw (its sampling, decoded like a backend does), downscaled."""
    from PIL import Image

    from pytest_lmms.media import FRAME_CACHE

    frames = FRAME_CACHE.frames(media, sampling)
    return [
        _jpeg(Image.fromarray(frame), limits.frame_side, limits.jpeg_quality)
        for frame in frames[: limits.max_frames]
    ]


def audio_clip(media: MediaRef, limits: MediaLimits) -> str:
    """The first seconds of the clip as 16 kHz mono WAV (enough to hear what was asked)."""
    from pytest_lmms.media import decode_audio, wav_bytes

    rate = 16000
    samples = decode_audio(media, rate)[: int(limits.audio_seconds * rate)]
    return _data_url("audio/wav", wav_bytes(samples, rate))


class MediaEmbedder:
    """Data URLs of every medium shown, by content hash; a medium that cannot be read is
    kept with its error, so the sample says why its image is missing."""

    def __init__(self, limits: MediaLimits | None = None) -> None:
        self.limits = limits or MediaLimits()
        self.items: dict[str, dict[str, Any]] = {}

    def add(self, entry: Mapping[str, Any], ref: MediaRef | None) -> str:
        """Embed one prompt media entry (kind, path, sha256, sampling); returns its id."""
        kind = str(entry.get("kind") or (ref.kind if ref is not None else "image"))
        sampling = entry.get("sampling") if kind == "video" else None
        key = f"{entry.get('sha256') or entry.get('path') or id(ref)}:{sampling or ''}"
        if key in self.items:
            return key
        if ref is None and entry.get("path"):
            ref = MediaRef(kind, Path(str(entry["path"])), content_hash=entry.get("sha256"))  # type: ignore[arg-type]
        item: dict[str, Any] = {"kind": kind, "path": entry.get("path"), "src": []}
        if ref is None:
            item["error"] = "not recorded (held in memory during the run)"
        else:
            try:
                item["src"] = self._encode(kind, ref, sampling)
            except Exception as exc:  # noqa: BLE001 - the report shows why, and goes on
                item["error"] = f"{type(exc).__name__}: {exc}"
            finally:
                ref.release()
        self.items[key] = item
        return key

    def _encode(self, kind: str, ref: MediaRef, sampling: Mapping[str, Any] | None) -> list[str]:
        if kind == "image":
            return [image_thumbnail(ref.read_bytes(), self.limits)]
        if kind == "video":
            return video_thumbnails(ref, VideoSampling.from_dict(sampling or {}), self.limits)
        if kind == "audio":
            return [audio_clip(ref, self.limits)]
        raise ValueError(f"unknown media kind {kind!r}")


class TaskRenderer:
    """Re-renders samples' requests from their tasks (loaded once each, lazily); a task
    that cannot be loaded is remembered with its error and never retried."""

    def __init__(self, run: ReportRun) -> None:
        self._run = run
        self._tasks: dict[str, Task | None] = {}
        self.errors: dict[str, str] = {}

    def _task(self, name: str) -> Task | None:
        if name not in self._tasks:
            self._tasks[name] = None
            try:
                self._tasks[name] = self._load(name)
            except Exception as exc:  # noqa: BLE001 - a report without media beats no report
                self.errors[name] = f"{type(exc).__name__}: {exc}"
        return self._tasks[name]

    def _load(self, name: str) -> Task | None:
        from pytest_lmms.tasks import Task, TaskSpec, load_specs

        info = self._run.tasks.get(name)
        yaml = info.yaml if info is not None else None
        if not yaml or not Path(yaml).is_file():
            raise ValueError(f"task YAML {yaml!r} not found")
        data_dir = self._run.document.config.get("data_dir")
        for spec in load_specs(Path(yaml)):
            if isinstance(spec, TaskSpec) and spec.name == name:
                return Task(spec, data_dir=data_dir)
        raise ValueError(f"{yaml} defines no task {name!r}")

    def request(self, task: str, doc_id: str) -> Request | None:
        loaded = self._task(task)
        if loaded is None:
            return None
        try:
            return loaded.request(loaded.doc(doc_id))
        except Exception as exc:  # noqa: BLE001 - one unreadable document keeps its sample
            self.errors.setdefault(task, f"document {doc_id}: {type(exc).__name__}: {exc}")
            return None


def media_parts(request: Request) -> list[MediaPart]:
    return [part for message in request.messages for part in message.content if isinstance(part, MediaPart)]


def needs_rendering(record: Mapping[str, Any]) -> bool:
    """A sample line without its prompt, or with media that have no file to read."""
    prompt = record.get("prompt")
    if not isinstance(prompt, Mapping):
        return True
    return any(not m.get("path") for m in prompt.get("media") or [])
