"""The ``hf`` backend: a transformers model run in-process (``--model=hf:MODEL_ID``).

``MODEL_ID`` is a local directory, a Hugging Face hub id, or ``tiny-qwen2-vl`` (also an
empty id) for the embedded tiny model built locally by ``pytest_lmms.models._tiny``.
Multimodal models load with ``AutoProcessor`` + ``AutoModelForImageTextToText`` (or, for
audio-language models such as Qwen2-Audio, ``AutoModelForMultimodalLM``); text-only models
fall back to ``AutoTokenizer`` + ``AutoModelForCausalLM``. Which class is used is decided by
the checkpoint's own config, never by its name.

torch and transformers are imported lazily: importing this module, constructing the
backend and computing its ``identity()`` never import torch (except to build the tiny
model the first time it is asked for); the model loads on the first ``generate``.

``kind="loglikelihood"`` requests (one context, one continuation) are answered by
``_hf_likelihood.py``: the context once per group of requests sharing it, the options'
tokens batched after its cache (``share_context=false`` runs each pair whole); tokenization
at the context / continuation boundary is described there. ``agentic`` requests get a
``NotImplementedError`` in their slot. Video parts are given to the model as
their sampled frames (images). Audio parts are decoded to mono float32 at the sampling rate
of the processor's feature extractor and handed to its chat template in order; what the
model sees of a long clip is its feature extractor's business (Whisper-style extractors
keep the first 30 s). Which inputs a model takes is read from its processor (an image
processor; an audio feature extractor and an ``audio`` argument); a part the model cannot
take fails its own request with a ``ValueError`` naming the model.
"""

from __future__ import annotations

import hashlib
import inspect
import io
import json
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pytest_lmms.models._registry import register_model
from pytest_lmms.types import GenParams, MediaPart, Request, Response, TextPart

TINY_MODEL_ALIAS = "tiny-qwen2-vl"

Dtype = Literal["auto", "float32", "bfloat16", "float16"]
_DTYPES: tuple[str, ...] = ("auto", "float32", "bfloat16", "float16")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})

# Small files whose content changes outputs (architecture, generation defaults, prompt
# rendering): part of a local checkpoint's fingerprint, with the weight files' names/sizes.
_FINGERPRINT_FILES = (
    "config.json",
    "generation_config.json",
    "chat_template.jinja",
    "chat_template.json",
    "tokenizer_config.json",
    "processor_config.json",
    "preprocessor_config.json",
)
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")


@dataclass(frozen=True, slots=True)
class HFArgs:
    """The ``--model-args`` of the hf backend, converted from command-line strings."""

    dtype: Dtype = "auto"
    device: str | None = None
    batch_size: int = 8
    max_batch_tokens: int = 4096
    revision: str | None = None
    trust_remote_code: bool = False
    attn_implementation: str | None = None
    # loglikelihood: run a shared context once (changes no value, only the cost)
    share_context: bool = True

    @classmethod
    def parse(cls, args: Mapping[str, Any]) -> HFArgs:
        valid = cls.__dataclass_fields__.keys()
        unknown = sorted(set(args) - set(valid))
        if unknown:
            raise ValueError(
                f"unknown hf backend argument(s) {', '.join(unknown)}; valid: {', '.join(sorted(valid))}"
            )
        dtype = str(args.get("dtype", "auto"))
        if dtype not in _DTYPES:
            raise ValueError(f"hf backend: dtype must be one of {', '.join(_DTYPES)}, got {dtype!r}")
        return cls(
            dtype=dtype,  # type: ignore[arg-type]  # checked against _DTYPES above
            device=_optional_str(args.get("device")),
            batch_size=_positive_int("batch_size", args.get("batch_size", 8)),
            max_batch_tokens=_positive_int("max_batch_tokens", args.get("max_batch_tokens", 4096)),
            revision=_optional_str(args.get("revision")),
            trust_remote_code=_as_bool("trust_remote_code", args.get("trust_remote_code", False)),
            attn_implementation=_optional_str(args.get("attn_implementation")),
            share_context=_as_bool("share_context", args.get("share_context", True)),
        )


def _optional_str(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def _positive_int(name: str, value: Any) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"hf backend: {name} must be a positive integer, got {value!r}") from None
    if number < 1:
        raise ValueError(f"hf backend: {name} must be a positive integer, got {value!r}")
    return number


def _as_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"hf backend: {name} must be true or false, got {value!r}")


def local_fingerprint(directory: Path) -> str:
    """A short hash of a checkpoint directory: small config files, weight names and sizes."""
    digest = hashlib.sha256()
    for name in _FINGERPRINT_FILES:
        path = directory / name
        if path.is_file():
            digest.update(f"{name}\0".encode())
            digest.update(path.read_bytes())
    for path in sorted(directory.iterdir()):
        if path.is_file() and path.name.endswith(_WEIGHT_SUFFIXES):
            digest.update(f"{path.name}\0{path.stat().st_size}\0".encode())
    return digest.hexdigest()[:16]


def _hub_config(model_id: str, revision: str | None) -> Path | None:
    """config.json of a hub model (from the local cache when offline), or None."""
    try:
        from huggingface_hub import hf_hub_download

        return Path(hf_hub_download(model_id, "config.json", revision=revision))
    except Exception:  # offline and not cached, gated, missing: identity degrades, not fails
        return None


def _checkpoint_dtype(config_path: Path | None) -> str | None:
    if config_path is None or not config_path.is_file():
        return None
    try:
        config = json.loads(config_path.read_text())
    except (OSError, ValueError):
        return None
    for section in (config, config.get("text_config") or {}):
        dtype = section.get("dtype") or section.get("torch_dtype")
        if isinstance(dtype, str):
            return dtype
    return None


@dataclass(slots=True)
class _Prepared:
    """One request ready for batching: its chat and its exact prompt length in tokens."""

    index: int
    request: Request
    conversation: list[dict[str, Any]]
    prompt_tokens: int


@register_model("hf")
class HFBackend:
    """A transformers model, run in-process with left-padded batched ``generate``."""

    name = "hf"
    request_kinds = frozenset({"generate", "loglikelihood"})

    def __init__(self, model_id: str, **args: Any) -> None:
        self.args = HFArgs.parse(args)
        self.model_id = model_id or TINY_MODEL_ALIAS
        self.max_batch_size = self.args.batch_size
        self._local_path: Path | None = None
        if self.model_id != TINY_MODEL_ALIAS:
            candidate = Path(self.model_id).expanduser()
            if candidate.is_dir():
                self._local_path = candidate.resolve()
        self._identity: dict[str, Any] | None = None
        self._lock = threading.Lock()
        self._model: Any = None
        self._processor: Any = None  # a ProcessorMixin, or a tokenizer for text-only models
        self._tokenizer: Any = None
        self._device: Any = None
        self._takes_images = False
        self._audio_sampling_rate: int | None = None  # None: the model takes no audio
        # what the backend is doing before it can answer (read by the progress view)
        self.status: str | None = None

    # -- identity ---------------------------------------------------------------------

    def _path_or_id(self) -> str:
        if self.model_id == TINY_MODEL_ALIAS and self._local_path is None:
            from pytest_lmms.models._tiny import tiny_model_path

            self.status = "building the embedded tiny model (once per machine)"
            try:
                self._local_path = tiny_model_path()
            finally:
                self.status = None
        return str(self._local_path) if self._local_path is not None else self.model_id

    def identity(self) -> Mapping[str, Any]:
        """Model, revision (or local fingerprint) and dtype: never device or batch size."""
        if self._identity is None:
            self._identity = self._compute_identity()
        return dict(self._identity)

    def _compute_identity(self) -> dict[str, Any]:
        if self.model_id == TINY_MODEL_ALIAS and self.args.revision is None:
            # The embedded model is a function of its builder's version and of the torch /
            # transformers that ran it, so its identity needs no build (and no torch import):
            # a fully cached run on a fresh machine never builds it.
            from importlib.metadata import version

            from pytest_lmms.models._tiny import TINY_MODEL_NAME

            return {
                "backend": "hf",
                "model": TINY_MODEL_NAME,
                "revision": f"torch-{version('torch')}/transformers-{version('transformers')}",
                "dtype": self.args.dtype if self.args.dtype != "auto" else "float32",
            }
        path_or_id = self._path_or_id()
        if self._local_path is not None:
            model = self._local_path.name
            revision = self.args.revision or local_fingerprint(self._local_path)
            config_path: Path | None = self._local_path / "config.json"
        else:
            model = path_or_id
            config_path = _hub_config(path_or_id, self.args.revision)
            # The snapshot folder a hub file sits in is named by the resolved commit.
            commit = config_path.parent.name if config_path is not None else None
            revision = self.args.revision or commit or "main"
        dtype: str = self.args.dtype
        if dtype == "auto":
            dtype = _checkpoint_dtype(config_path) or "auto"
        identity: dict[str, Any] = {
            "backend": "hf",
            "model": model,
            "revision": revision,
            "dtype": dtype,
        }
        if self.args.attn_implementation is not None:
            identity["attn_implementation"] = self.args.attn_implementation
        return identity

    # -- loading ----------------------------------------------------------------------

    def _ensure_loaded(self) -> None:
        if self._model is not None:
            return
        source = self._path_or_id()
        self.status = f"loading the model from {source}"
        try:
            self._load(source)
        finally:
            self.status = None

    def _load(self, source: str) -> None:
        import torch
        from transformers import AutoProcessor, AutoTokenizer, PreTrainedTokenizerBase

        common: dict[str, Any] = {
            "revision": self.args.revision,
            "trust_remote_code": self.args.trust_remote_code,
        }
        try:
            processor = AutoProcessor.from_pretrained(source, **common)
        except (ValueError, OSError, KeyError):
            processor = AutoTokenizer.from_pretrained(source, **common)
        tokenizer = (
            processor
            if isinstance(processor, PreTrainedTokenizerBase)
            else getattr(processor, "tokenizer", None)
        )
        if tokenizer is None:
            raise ValueError(f"hf backend: {source} has no tokenizer")
        tokenizer.padding_side = "left"
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token

        model_kwargs = dict(common)
        model_kwargs["dtype"] = "auto" if self.args.dtype == "auto" else getattr(torch, self.args.dtype)
        if self.args.attn_implementation is not None:
            model_kwargs["attn_implementation"] = self.args.attn_implementation
        model = _load_model(source, model_kwargs)

        device = self.args.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self._device = torch.device(device)
        self._model = model.to(self._device).eval()
        self._processor = processor
        self._tokenizer = tokenizer
        self._takes_images = hasattr(processor, "image_processor")
        self._audio_sampling_rate = audio_sampling_rate(processor)

    def close(self) -> None:
        """Free the model (it loads again on the next ``generate``)."""
        with self._lock:
            if self._model is None:
                return
            on_cuda = self._device is not None and self._device.type == "cuda"
            self._model = self._processor = self._tokenizer = None
            import gc

            gc.collect()
            if on_cuda:
                import torch

                torch.cuda.empty_cache()

    # -- generation -------------------------------------------------------------------

    def generate(self, requests: Sequence[Request]) -> list[Response | BaseException]:
        """Answer ``requests`` in order; a request that fails gets its exception instead.

        Requests sharing generation parameters are batched (at most ``batch_size`` each,
        and at most ``max_batch_tokens`` padded prompt + new tokens), left-padded. Greedy
        when ``temperature == 0``. A sampled request with a seed runs alone, so its
        output depends on its seed only, not on the other requests of the batch.
        """
        with self._lock:
            self._ensure_loaded()
            results: list[Response | BaseException | None] = [None] * len(requests)
            prepared: list[_Prepared] = []
            self._answer_loglikelihood(requests, results)
            for index, request in enumerate(requests):
                if results[index] is not None:
                    continue
                try:
                    prepared.append(self._prepare(index, request))
                except Exception as exc:
                    results[index] = exc
            for batch in self._plan_batches(prepared):
                self._answer(batch, results)
        return [r if r is not None else RuntimeError("no result") for r in results]

    def _answer_loglikelihood(
        self, requests: Sequence[Request], results: list[Response | BaseException | None]
    ) -> None:
        indices = [i for i, request in enumerate(requests) if request.kind == "loglikelihood"]
        if not indices:
            return
        from pytest_lmms.models._hf_likelihood import loglikelihood

        for index, output in zip(indices, loglikelihood(self, [requests[i] for i in indices]), strict=True):
            results[index] = output

    def _prepare(self, index: int, request: Request) -> _Prepared:
        if request.kind != "generate":
            raise NotImplementedError(f"hf backend does not support {request.kind!r} requests yet")
        conversation = self._conversation(request)
        encoded = self._encode([conversation])
        return _Prepared(index, request, conversation, int(encoded["input_ids"].shape[1]))

    def model_inputs(self, request: Request) -> Any:
        """The tensors ``generate`` gives the model for ``request`` alone (a ``BatchFeature``
        or ``BatchEncoding``): to check a prompt's rendering or its media features."""
        with self._lock:
            self._ensure_loaded()
            return self._encode([self._conversation(request)])

    def _is_multimodal(self) -> bool:
        # A text-only model's "processor" is its tokenizer.
        return self._processor is not self._tokenizer

    def _check_input_kinds(self, request: Request) -> None:
        takes = {"image": self._takes_images, "video": self._takes_images}
        takes["audio"] = self._audio_sampling_rate is not None
        for message in request.messages:
            for part in message.content:
                if isinstance(part, MediaPart) and not takes.get(part.type, False):
                    raise ValueError(
                        f"hf backend: {self.model_id} takes no {part.type} input, but "
                        f"{request.task}/{request.doc_id} has a {part.type} part"
                    )

    def _conversation(self, request: Request) -> list[dict[str, Any]]:
        self._check_input_kinds(request)
        if not self._is_multimodal():
            return [{"role": m.role, "content": m.text} for m in request.messages]
        conversation: list[dict[str, Any]] = []
        for message in request.messages:
            content: list[dict[str, Any]] = []
            for part in message.content:
                if isinstance(part, TextPart):
                    content.append({"type": "text", "text": part.text})
                elif part.type == "image":
                    content.append({"type": "image", "image": _load_image(part, request)})
                elif part.type == "video":
                    # sampled frames as images: works with any image model, and the
                    # processor needs no video support (none without torchvision here)
                    from pytest_lmms.media import video_as_images

                    for frame in video_as_images(part):
                        content.append({"type": "image", "image": _load_image(frame, request)})
                elif part.type == "audio" and self._audio_sampling_rate is not None:
                    samples = _load_audio(part, request, self._audio_sampling_rate)
                    content.append({"type": "audio", "audio": samples})
                else:
                    raise ValueError(f"hf backend: unknown part type {part.type!r}")
            conversation.append({"role": message.role, "content": content})
        return conversation

    def _encode(self, conversations: list[list[dict[str, Any]]]) -> Any:
        # apply_chat_template replaces each message's content list: give it fresh dicts.
        fresh = [[dict(message) for message in conversation] for conversation in conversations]
        template_owner = self._processor
        if getattr(template_owner, "chat_template", None) is None:
            # A base model without a chat template: the messages' text, one after another.
            texts = ["\n\n".join(m["content"] for m in c) for c in fresh]
            return self._tokenizer(texts, padding=True, return_tensors="pt")
        kwargs: dict[str, Any] = {
            "add_generation_prompt": True,
            "tokenize": True,
            "return_dict": True,
            "return_tensors": "pt",
        }
        if self._is_multimodal():
            kwargs["processor_kwargs"] = {"padding": True}
        else:
            kwargs["padding"] = True
        return template_owner.apply_chat_template(fresh, **kwargs)

    def _plan_batches(self, prepared: list[_Prepared]) -> list[list[_Prepared]]:
        groups: dict[tuple[GenParams, int], list[_Prepared]] = {}
        for item in prepared:
            gen = item.request.gen
            alone = item.index if not gen.deterministic and gen.seed is not None else -1
            groups.setdefault((gen, alone), []).append(item)
        batches: list[list[_Prepared]] = []
        for (gen, _), items in groups.items():
            # Similar lengths together: less padding.
            items.sort(key=lambda item: item.prompt_tokens)
            batch: list[_Prepared] = []
            longest = 0
            for item in items:
                length = item.prompt_tokens + gen.max_new_tokens
                padded = (len(batch) + 1) * max(longest, length)
                if batch and (len(batch) >= self.args.batch_size or padded > self.args.max_batch_tokens):
                    batches.append(batch)
                    batch, longest = [], 0
                batch.append(item)
                longest = max(longest, length)
            if batch:
                batches.append(batch)
        return batches

    def _answer(self, batch: list[_Prepared], results: list[Response | BaseException | None]) -> None:
        try:
            for item, response in zip(batch, self._run_batch(batch), strict=True):
                results[item.index] = response
        except Exception as exc:
            if len(batch) == 1:
                results[batch[0].index] = exc
                return
            # Whatever broke the batch (a bad input, out of memory), answer what can be.
            for item in batch:
                self._answer([item], results)

    def _run_batch(self, batch: list[_Prepared]) -> list[Response]:
        import torch

        gen = batch[0].request.gen
        started = time.perf_counter()
        inputs = self._encode([item.conversation for item in batch])
        inputs = inputs.to(self._device)
        if self._is_multimodal():
            # Floating inputs (pixel values, audio features) in the model's dtype; ids and
            # masks stay ints.
            inputs = inputs.to(self._model.dtype)
        prompt_length = int(inputs["input_ids"].shape[1])
        kwargs: dict[str, Any] = {
            "max_new_tokens": gen.max_new_tokens,
            "pad_token_id": self._tokenizer.pad_token_id,
        }
        if gen.stop:
            kwargs["stop_strings"] = list(gen.stop)
            kwargs["tokenizer"] = self._tokenizer
        if gen.deterministic:
            kwargs["do_sample"] = False
        else:
            kwargs.update(do_sample=True, temperature=gen.temperature, top_p=gen.top_p, top_k=0)
        with torch.inference_mode():
            if gen.deterministic or gen.seed is None:
                output = self._model.generate(**inputs, **kwargs)
            else:
                devices = [self._device] if self._device.type == "cuda" else []
                with torch.random.fork_rng(devices=devices, device_type=self._device.type):
                    torch.manual_seed(gen.seed)
                    output = self._model.generate(**inputs, **kwargs)
        share = (time.perf_counter() - started) / len(batch)

        finished_ids = self._finished_token_ids()
        responses: list[Response] = []
        for row in range(len(batch)):
            new_tokens = output[row, prompt_length:].tolist()
            count = next(
                (i + 1 for i, token in enumerate(new_tokens) if token in finished_ids),
                len(new_tokens),
            )
            text = self._tokenizer.decode(new_tokens[:count], skip_special_tokens=True)
            responses.append(
                Response(
                    text=_truncate_at_stop(text, gen.stop),
                    input_tokens=int(inputs["attention_mask"][row].sum()),
                    output_tokens=count,
                    latency_s=share,
                )
            )
        return responses

    def _finished_token_ids(self) -> set[int]:
        eos = self._model.generation_config.eos_token_id
        ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if self._tokenizer.eos_token_id is not None:
            ids.add(self._tokenizer.eos_token_id)
        # Finished rows of a batch are filled with padding.
        ids.add(self._tokenizer.pad_token_id)
        return ids


def _load_model(source: str, model_kwargs: dict[str, Any]) -> Any:
    """The generating model class the checkpoint's config maps to: image-text-to-text, then
    any multimodal LM (audio-language models), then a plain causal LM."""
    import transformers

    # AutoModelForMultimodalLM is new in transformers 5.
    multimodal = getattr(transformers, "AutoModelForMultimodalLM", None)
    for auto_class in (transformers.AutoModelForImageTextToText, multimodal):
        if auto_class is None:
            continue
        try:
            return auto_class.from_pretrained(source, **model_kwargs)
        except ValueError:  # the config maps to no class of this kind
            continue
    return transformers.AutoModelForCausalLM.from_pretrained(source, **model_kwargs)


def audio_sampling_rate(processor: Any) -> int | None:
    """The sampling rate ``processor`` wants audio at, or None when it takes no audio.

    A processor takes audio when it holds an audio feature extractor with a sampling rate
    and its ``__call__`` accepts audio (``audio=``, or ``audios=`` in older transformers).
    """
    extractor = getattr(processor, "audio_processor", None) or getattr(processor, "feature_extractor", None)
    rate = getattr(extractor, "sampling_rate", None)
    if not isinstance(rate, int) or isinstance(rate, bool) or rate <= 0:
        return None
    try:
        parameters = inspect.signature(type(processor).__call__).parameters
    except (TypeError, ValueError):
        return None
    return rate if "audio" in parameters or "audios" in parameters else None


def _load_audio(part: MediaPart, request: Request, sampling_rate: int) -> Any:
    from pytest_lmms.media import decode_audio

    try:
        return decode_audio(part.media, sample_rate=sampling_rate)
    except Exception as exc:
        raise ValueError(f"cannot read the audio of {request.task}/{request.doc_id}: {exc}") from exc


def _load_image(part: MediaPart, request: Request) -> Any:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(part.media.read_bytes())) as image:
            return image.convert("RGB")
    except Exception as exc:
        raise ValueError(f"cannot read the image of {request.task}/{request.doc_id}: {exc}") from exc


def _truncate_at_stop(text: str, stop: Sequence[str]) -> str:
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=len(text))
    return text[:cut]
