"""The shared data types: the bottom layer of the package.

Nothing here imports anything else from ``pytest_lmms``, so tasks, models, the cache and
the report can all depend on these types without import cycles.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

MediaKind = Literal["image", "video", "audio"]
RequestKind = Literal["generate", "loglikelihood", "agentic"]
Role = Literal["system", "user", "assistant", "tool"]


_FILE_HASHES: dict[tuple[str, int, int], str] = {}


def forget_file_hashes() -> None:
    """Drop the memo of file hashes (the end of a session: a next one starts empty)."""
    _FILE_HASHES.clear()


def _file_hash(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    found = _FILE_HASHES.get(key)
    if found is None:
        with open(path, "rb") as handle:
            found = hashlib.file_digest(handle, "sha256").hexdigest()
        _FILE_HASHES[key] = found
    return found


class MediaRef:
    """A lazy reference to one image, video or audio clip.

    The bytes load only when a backend asks for them; the content hash (which enters the
    cache key) is computed once, from the bytes. A source is a file path, raw bytes, or a
    zero-argument callable returning bytes (for media rendered or decoded on demand).
    """

    __slots__ = ("kind", "_source", "_hash", "_bytes", "mime")

    def __init__(
        self,
        kind: MediaKind,
        source: str | Path | bytes | Callable[[], bytes],
        *,
        content_hash: str | None = None,
        mime: str | None = None,
    ) -> None:
        self.kind = kind
        self._source = source
        self._hash = content_hash
        self._bytes: bytes | None = source if isinstance(source, bytes) else None
        self.mime = mime

    @property
    def path(self) -> Path | None:
        return Path(self._source) if isinstance(self._source, (str, Path)) else None

    def read_bytes(self) -> bytes:
        if self._bytes is None:
            source = self._source
            if isinstance(source, (str, Path)):
                self._bytes = Path(source).read_bytes()
            elif callable(source):
                self._bytes = source()
            else:  # pragma: no cover - guarded by __init__
                raise TypeError(f"unsupported media source {type(source).__name__}")
        return self._bytes

    def release(self) -> None:
        """Drop the loaded bytes (they can be loaded again) to bound memory."""
        if not isinstance(self._source, bytes):
            self._bytes = None

    @property
    def has_hash(self) -> bool:
        """Whether the content hash is known (a backend about to read the bytes hashes them)."""
        return self._hash is not None

    @property
    def content_hash(self) -> str:
        if self._hash is None:
            source = self._source
            if self._bytes is None and isinstance(source, (str, Path)):
                # a file is hashed as a stream, and only once per (path, size, mtime): a long
                # video asked about by many questions is neither held in memory nor re-read
                self._hash = _file_hash(Path(source))
            else:
                self._hash = hashlib.sha256(self.read_bytes()).hexdigest()
        return self._hash

    def __repr__(self) -> str:
        return f"MediaRef({self.kind!r}, hash={self._hash or '?'})"


@dataclass(frozen=True, slots=True)
class TextPart:
    text: str
    type: Literal["text"] = "text"


@dataclass(frozen=True, slots=True)
class VideoSampling:
    """Which frames of a video the model sees: ``num_frames`` spread uniformly (segment
    centres, optionally forcing the last frame), or every ``1 / fps`` seconds capped at
    ``max_frames``; frames resized so the longer side is at most ``max_side``."""

    num_frames: int | None = 8
    fps: float | None = None
    max_frames: int = 64
    force_last: bool = False
    max_side: int | None = None

    def __post_init__(self) -> None:
        if (self.num_frames is None) == (self.fps is None):
            raise ValueError("video sampling: give exactly one of num_frames or fps")
        if self.num_frames is not None and self.num_frames < 1:
            raise ValueError(f"video sampling: num_frames must be >= 1, got {self.num_frames}")
        if self.fps is not None and self.fps <= 0:
            raise ValueError(f"video sampling: fps must be > 0, got {self.fps}")
        if self.max_frames < 1 or (self.max_side is not None and self.max_side < 1):
            raise ValueError("video sampling: max_frames and max_side must be >= 1")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> VideoSampling:
        """From a task's ``sampling`` mapping: ``{"fps": 1}`` alone means no frame count."""
        unknown = set(data) - {"num_frames", "fps", "max_frames", "force_last", "max_side"}
        if unknown:
            raise ValueError(f"video sampling: unknown key(s) {', '.join(sorted(unknown))}")
        values = dict(data)
        if "fps" in values and "num_frames" not in values:
            values["num_frames"] = None
        return cls(**values)

    def as_dict(self) -> dict[str, Any]:
        return {
            "num_frames": self.num_frames,
            "fps": self.fps,
            "max_frames": self.max_frames,
            "force_last": self.force_last,
            "max_side": self.max_side,
        }


@dataclass(frozen=True, slots=True)
class MediaPart:
    media: MediaRef
    type: MediaKind = "image"
    sampling: VideoSampling | None = None  # videos only; None means the default sampling


ContentPart = TextPart | MediaPart


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool the model may call (agentic requests): its name, what it does, and its
    parameters as a JSON Schema object (the OpenAI ``function`` shape)."""

    name: str
    description: str = ""
    parameters: Mapping[str, Any] = field(default_factory=lambda: {"type": "object", "properties": {}})

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "parameters": dict(self.parameters)}


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One call a model asked for. ``arguments`` is the JSON text as the model wrote it,
    unparsed: a malformed call is the environment's to report, never a crash here."""

    name: str
    arguments: str = "{}"
    id: str = ""

    def parsed_arguments(self) -> dict[str, Any]:
        """The arguments as a JSON object; ValueError names what is wrong with them."""
        try:
            value = json.loads(self.arguments or "{}")
        except json.JSONDecodeError as exc:
            raise ValueError(f"tool call {self.name!r}: arguments are not JSON ({exc.msg})") from None
        if not isinstance(value, dict):
            raise ValueError(f"tool call {self.name!r}: arguments must be a JSON object")
        return value

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "arguments": self.arguments}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ToolCall:
        return cls(
            name=str(data["name"]), arguments=str(data.get("arguments", "{}")), id=str(data.get("id", ""))
        )


@dataclass(frozen=True, slots=True)
class Message:
    """One turn. An assistant turn may carry the tool calls it made; a ``tool`` turn is the
    observation answering the call ``tool_call_id``."""

    role: Role
    content: tuple[ContentPart, ...]
    tool_calls: tuple[ToolCall, ...] = ()
    tool_call_id: str | None = None

    @property
    def text(self) -> str:
        return "".join(part.text for part in self.content if isinstance(part, TextPart))


@dataclass(frozen=True, slots=True)
class GenParams:
    """Normalized generation parameters (the part of them that changes outputs)."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int | None = None

    def __post_init__(self) -> None:
        # 0 and 0.0 must give the same cache key: store one numeric type per field.
        object.__setattr__(self, "max_new_tokens", int(self.max_new_tokens))
        object.__setattr__(self, "temperature", float(self.temperature))
        object.__setattr__(self, "top_p", float(self.top_p))
        object.__setattr__(self, "stop", tuple(str(s) for s in self.stop))
        if self.seed is not None:
            object.__setattr__(self, "seed", int(self.seed))

    @property
    def deterministic(self) -> bool:
        return self.temperature == 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "max_new_tokens": self.max_new_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "stop": list(self.stop),
            "seed": self.seed,
        }


@dataclass(frozen=True, slots=True)
class Request:
    """What the model sees for one sample (and repeat)."""

    task: str
    doc_id: str
    messages: tuple[Message, ...]
    gen: GenParams = GenParams()
    kind: RequestKind = "generate"
    choices: tuple[str, ...] = ()
    repeat: int = 0
    # agentic requests: the tools the model may call this turn
    tools: tuple[ToolSpec, ...] = ()
    # loglikelihood requests: the text whose log-probability given ``messages`` is asked
    continuation: str | None = None

    @property
    def media(self) -> list[MediaRef]:
        return [p.media for m in self.messages for p in m.content if isinstance(p, MediaPart)]

    @property
    def prompt_text(self) -> str:
        return "\n".join(m.text for m in self.messages)

    def canonical(self) -> dict[str, Any]:
        """The rendered request as plain JSON data, media replaced by their content hashes."""
        messages = []
        for message in self.messages:
            parts: list[dict[str, Any]] = []
            for part in message.content:
                if isinstance(part, TextPart):
                    parts.append({"type": "text", "text": part.text})
                else:
                    entry: dict[str, Any] = {"type": part.type, "sha256": part.media.content_hash}
                    if part.type == "video":
                        # the frames the model sees change its answer: they are part of the key
                        entry["sampling"] = (part.sampling or VideoSampling()).as_dict()
                    parts.append(entry)
            record: dict[str, Any] = {"role": message.role, "content": parts}
            # keys only when set, so the keys of plain generate requests never change
            if message.tool_calls:
                record["tool_calls"] = [call.as_dict() for call in message.tool_calls]
            if message.tool_call_id is not None:
                record["tool_call_id"] = message.tool_call_id
            messages.append(record)
        canonical: dict[str, Any] = {
            "kind": self.kind,
            "messages": messages,
            "choices": list(self.choices),
            "gen": self.gen.as_dict(),
            "repeat": self.repeat,
        }
        if self.tools:
            canonical["tools"] = [tool.as_dict() for tool in self.tools]
        if self.continuation is not None:
            canonical["continuation"] = self.continuation
        return canonical

    @property
    def prefix_key(self) -> str:
        """Hash of the shared media / first text, used to put related requests together."""
        media = self.media
        head = media[0].content_hash if media else self.prompt_text[:256]
        return hashlib.sha1(head.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Response:
    """A model's answer. A failed call is an exception, never a Response."""

    text: str
    input_tokens: int | None = None
    output_tokens: int | None = None
    latency_s: float | None = None
    ttft_s: float | None = None
    cached: bool = False
    meta: Mapping[str, Any] = field(default_factory=dict)
    # agentic requests: the tool calls the model made (native, or parsed from the text protocol)
    tool_calls: tuple[ToolCall, ...] = ()
    # loglikelihood requests: log P(continuation | context) in nats, and whether greedy
    # decoding would have produced exactly the continuation
    logprob: float | None = None
    is_greedy: bool | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "text": self.text,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "latency_s": self.latency_s,
            "ttft_s": self.ttft_s,
            "meta": dict(self.meta),
        }
        if self.tool_calls:
            data["tool_calls"] = [call.as_dict() for call in self.tool_calls]
        if self.logprob is not None:
            data["logprob"] = self.logprob
            data["is_greedy"] = self.is_greedy
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, cached: bool = False) -> Response:
        text = data.get("text")
        if not isinstance(text, str):
            raise ValueError(f"response record has no text: {data!r:.200}")
        return cls(
            text=text,
            input_tokens=data.get("input_tokens"),
            output_tokens=data.get("output_tokens"),
            latency_s=data.get("latency_s"),
            ttft_s=data.get("ttft_s"),
            cached=cached,
            meta=data.get("meta") or {},
            tool_calls=tuple(ToolCall.from_dict(call) for call in data.get("tool_calls") or ()),
            logprob=data.get("logprob"),
            is_greedy=data.get("is_greedy"),
        )


_OMIT: Mapping[str, Any] = {"omit": True}


@dataclass(frozen=True, slots=True)
class SampleResult:
    """One scored sample, as written to the samples JSONL file."""

    task: str
    doc_id: str
    target: Any
    response: str
    raw: str
    scores: Mapping[str, float]
    cluster_id: str | None = None
    repeat: int = 0
    cached: bool = False
    latency_s: float | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    ttft_s: float | None = None
    # "omit": to_json leaves the key out while the value is its default (the JSON Schema
    # generated from these fields marks it optional)
    judge_calls: int = field(default=0, metadata=_OMIT)  # LLM-judge calls made to score this sample
    judge_prompts: tuple[str, ...] = field(default=(), metadata=_OMIT)
    # what the model was shown: {"text", "media": [{kind, path, sha256, sampling?}], "choices"}
    prompt: Mapping[str, Any] | None = field(default=None, metadata=_OMIT)
    extracted: Any = None  # the answer the scorer read out of the response (None: none noted)
    judge_log: tuple[Mapping[str, str], ...] = field(default=(), metadata=_OMIT)  # {"prompt", "reply"}
    # a hand-written test's record (the lmms_record fixture): its file::test, else None
    probe: str | None = field(default=None, metadata=_OMIT)
    # likelihood tasks: one {"choice", "logprob", "length", "is_greedy"} per option, in order
    options: tuple[Mapping[str, Any], ...] = field(default=(), metadata=_OMIT)
    # agentic tasks: the episode (messages, tool calls, observations, per-turn latency/tokens)
    trajectory: Mapping[str, Any] | None = field(default=None, metadata=_OMIT)

    def to_json(self) -> dict[str, Any]:
        data = self._core_json()
        if self.prompt is not None:
            data["prompt"] = dict(self.prompt)
        data["extracted"] = self.extracted
        if self.judge_calls:
            data["judge_calls"] = self.judge_calls
            data["judge_prompts"] = list(self.judge_prompts)
            data["judge_log"] = [dict(call) for call in self.judge_log]
        if self.probe is not None:
            data["probe"] = self.probe
        if self.options:
            data["options"] = [dict(option) for option in self.options]
        if self.trajectory is not None:
            data["trajectory"] = dict(self.trajectory)
        return data

    def _core_json(self) -> dict[str, Any]:
        return {
            "task": self.task,
            "doc_id": self.doc_id,
            "cluster_id": self.cluster_id,
            "repeat": self.repeat,
            "target": self.target,
            "response": self.response,
            "raw": self.raw,
            "scores": dict(self.scores),
            "cached": self.cached,
            "latency_s": self.latency_s,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "ttft_s": self.ttft_s,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SampleResult:
        return cls(
            task=data["task"],
            doc_id=str(data["doc_id"]),
            target=data.get("target"),
            response=data.get("response", ""),
            raw=data.get("raw", ""),
            scores={k: float(v) for k, v in data.get("scores", {}).items()},
            cluster_id=data.get("cluster_id"),
            repeat=int(data.get("repeat", 0)),
            cached=bool(data.get("cached", False)),
            latency_s=data.get("latency_s"),
            input_tokens=data.get("input_tokens"),
            output_tokens=data.get("output_tokens"),
            ttft_s=data.get("ttft_s"),
            judge_calls=int(data.get("judge_calls") or 0),
            judge_prompts=tuple(data.get("judge_prompts") or ()),
            prompt=data.get("prompt"),
            extracted=data.get("extracted"),
            judge_log=tuple(data.get("judge_log") or ()),
            probe=data.get("probe"),
            options=tuple(data.get("options") or ()),
            trajectory=data.get("trajectory"),
        )


def json_number(x: float) -> float | None:
    """NaN (an undefined SE or interval) as JSON null."""
    return None if math.isnan(x) else x


@dataclass(frozen=True, slots=True)
class Estimate:
    """A point estimate with its standard error and confidence interval."""

    value: float
    se: float
    ci_low: float
    ci_high: float
    n: int
    n_clusters: int | None = None
    method: str = "t"
    level: float = 0.95

    def to_json(self) -> dict[str, Any]:
        return {
            "value": json_number(self.value),
            "se": json_number(self.se),
            "ci_low": json_number(self.ci_low),
            "ci_high": json_number(self.ci_high),
            "n": self.n,
            "n_clusters": self.n_clusters,
            "method": self.method,
            "level": self.level,
        }
