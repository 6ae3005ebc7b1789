"""The hf backend on the embedded tiny Qwen2-VL, offline, on CPU."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from pytest_lmms.models import create_backend  # noqa: E402
from pytest_lmms.models._tiny import TINY_MODEL_NAME, tiny_model_path  # noqa: E402
from pytest_lmms.models.hf import HFBackend  # noqa: E402
from pytest_lmms.types import (  # noqa: E402
    GenParams,
    MediaPart,
    MediaRef,
    Message,
    Request,
    Response,
    TextPart,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
GREEDY = GenParams(max_new_tokens=12)


@pytest.fixture(scope="session")
def lmms_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    home = tmp_path_factory.mktemp("lmms-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PYTEST_LMMS_HOME", str(home))
        patch.setenv("HF_HUB_OFFLINE", "1")
        yield home


@pytest.fixture(scope="session")
def tiny_dir(lmms_home: Path) -> Path:
    return tiny_model_path()


@pytest.fixture(scope="session")
def backend(tiny_dir: Path) -> Iterator[HFBackend]:
    hf = HFBackend("tiny-qwen2-vl", batch_size="8")
    yield hf
    hf.close()


def png(background: tuple[int, int, int], shape: str) -> bytes:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (64, 64), background)
    draw = ImageDraw.Draw(image)
    if shape == "circle":
        draw.ellipse((12, 12, 52, 52), fill=(255, 255, 255))
    else:
        draw.rectangle((8, 20, 56, 44), fill=(0, 0, 0))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def request(
    doc_id: str,
    text: str,
    image: bytes | None = None,
    gen: GenParams = GREEDY,
    kind: str = "generate",
) -> Request:
    parts: tuple[TextPart | MediaPart, ...] = (TextPart(text),)
    if image is not None:
        parts = (MediaPart(MediaRef("image", image)), *parts)
    return Request(
        task="tiny",
        doc_id=doc_id,
        messages=(Message("user", parts),),
        gen=gen,
        kind=kind,  # type: ignore[arg-type]
    )


@pytest.fixture(scope="session")
def mixed_requests() -> list[Request]:
    return [
        request("red-circle", "What colour is the circle?", png((200, 30, 30), "circle")),
        request(
            "blue-bar",
            "How many shapes are there in the image? Answer with a digit.",
            png((20, 40, 220), "bar"),
        ),
        request("text", "Answer with the option's letter. (A) one (B) two"),
    ]


def texts(results: list[Response | BaseException]) -> list[str]:
    assert all(isinstance(r, Response) for r in results), results
    return [r.text for r in results if isinstance(r, Response)]


def test_tiny_model_builds_and_loads_offline(tiny_dir: Path, backend: HFBackend) -> None:
    assert tiny_dir.name == TINY_MODEL_NAME
    for name in ("config.json", "model.safetensors", "tokenizer.json", "processor_config.json"):
        assert (tiny_dir / name).is_file(), name
    [result] = backend.generate([request("hello", "Describe this image.", png((0, 0, 0), "bar"))])
    assert isinstance(result, Response)
    assert result.output_tokens is not None and 0 < result.output_tokens <= GREEDY.max_new_tokens


def test_mixed_batch_gives_one_response_per_request(
    backend: HFBackend, mixed_requests: list[Request]
) -> None:
    results = backend.generate(mixed_requests)
    assert len(results) == len(mixed_requests)
    for result in results:
        assert isinstance(result, Response)
        assert isinstance(result.text, str)
        assert result.input_tokens is not None and result.input_tokens > 0
        assert result.output_tokens is not None and result.output_tokens > 0
        assert result.latency_s is not None and result.latency_s > 0


def test_an_image_adds_its_placeholder_tokens(backend: HFBackend) -> None:
    text = "What colour is the circle?"
    with_image, without = backend.generate(
        [request("image", text, png((0, 90, 0), "circle")), request("no-image", text)]
    )
    assert isinstance(with_image, Response) and isinstance(without, Response)
    assert with_image.input_tokens is not None and without.input_tokens is not None
    # 64x64 -> 56x56 -> 4x4 patches merged 2x2: 4 image tokens, between start/end markers.
    assert with_image.input_tokens - without.input_tokens == 4 + 2


def test_batched_greedy_equals_one_at_a_time(backend: HFBackend, mixed_requests: list[Request]) -> None:
    batched = backend.generate(mixed_requests)
    alone = [backend.generate([r])[0] for r in mixed_requests]
    assert texts(batched) == texts(alone)
    assert [r.input_tokens for r in batched] == [r.input_tokens for r in alone]  # type: ignore[union-attr]


def test_token_budget_splits_batches_without_changing_outputs(
    tiny_dir: Path, backend: HFBackend, mixed_requests: list[Request]
) -> None:
    small = HFBackend("tiny-qwen2-vl", max_batch_tokens="1", batch_size="2")
    try:
        assert texts(small.generate(mixed_requests)) == texts(backend.generate(mixed_requests))
    finally:
        small.close()


def test_greedy_is_deterministic_across_calls(backend: HFBackend, mixed_requests: list[Request]) -> None:
    assert texts(backend.generate(mixed_requests)) == texts(backend.generate(mixed_requests))


def test_seeded_sampling_is_reproducible(backend: HFBackend) -> None:
    sampled = GenParams(max_new_tokens=8, temperature=1.0, seed=7)
    prompt = request("sampled", "Count the objects.", gen=sampled)
    assert texts(backend.generate([prompt, prompt])) == texts(backend.generate([prompt]) * 2)


def test_stop_strings_truncate_the_text(backend: HFBackend, mixed_requests: list[Request]) -> None:
    [full] = texts(backend.generate(mixed_requests[:1]))
    stop = full[3:5]
    assert len(stop) == 2, full
    stopped_gen = GenParams(max_new_tokens=GREEDY.max_new_tokens, stop=(stop,))
    original = mixed_requests[0]
    stopped = Request(original.task, original.doc_id, original.messages, gen=stopped_gen)
    [text] = texts(backend.generate([stopped]))
    assert text == full[: full.index(stop)]


def test_a_bad_image_fails_only_its_own_request(backend: HFBackend, mixed_requests: list[Request]) -> None:
    bad = request("broken", "What is this?", b"definitely not a png")
    results = backend.generate([mixed_requests[0], bad, mixed_requests[2]])
    assert isinstance(results[1], ValueError)
    assert "broken" in str(results[1])
    expected = texts(backend.generate([mixed_requests[0], mixed_requests[2]]))
    assert texts([results[0], results[2]]) == expected


def test_a_loglikelihood_request_without_continuation_fails_alone(backend: HFBackend) -> None:
    # loglikelihood requests are answered (tests/integration/test_likelihood.py); one
    # without a continuation fails on its own, next to a request that is answered
    results = backend.generate([request("ll", "A", kind="loglikelihood"), request("ok", "Hi")])
    assert isinstance(results[0], ValueError) and "continuation is empty" in str(results[0])
    assert isinstance(results[1], Response)


def test_identity_is_stable_and_excludes_transport(tiny_dir: Path, backend: HFBackend) -> None:
    identity = dict(backend.identity())
    assert set(identity) == {"backend", "model", "revision", "dtype"}
    assert identity["backend"] == "hf"
    assert identity["model"] == TINY_MODEL_NAME
    assert identity["dtype"] == "float32"
    assert json.dumps(identity, sort_keys=True) == json.dumps(backend.identity(), sort_keys=True)
    assert HFBackend("tiny-qwen2-vl", dtype="bfloat16").identity()["dtype"] == "bfloat16"
    local = HFBackend(str(tiny_dir), device="cpu", batch_size="1", max_batch_tokens="64")
    assert dict(local.identity()) == dict(HFBackend(str(tiny_dir), batch_size="8").identity())
    assert local.identity()["model"] == tiny_dir.name


def test_tiny_alias_identity_needs_no_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A fully cached run must not build (or import torch for) the embedded model.
    monkeypatch.setenv("PYTEST_LMMS_HOME", str(tmp_path / "empty-home"))
    identity = HFBackend("tiny-qwen2-vl").identity()
    assert identity["model"] == TINY_MODEL_NAME and "torch-" in identity["revision"]
    assert not (tmp_path / "empty-home").exists()


def test_arguments_are_converted_and_checked(tiny_dir: Path) -> None:
    hf = HFBackend("tiny-qwen2-vl", batch_size="3", trust_remote_code="false")
    assert hf.max_batch_size == 3
    assert hf.args.trust_remote_code is False
    with pytest.raises(ValueError, match="temperature.*valid: .*batch_size"):
        HFBackend("tiny-qwen2-vl", temperature="0")
    with pytest.raises(ValueError, match="dtype"):
        HFBackend("tiny-qwen2-vl", dtype="int3")
    with pytest.raises(ValueError, match="batch_size"):
        HFBackend("tiny-qwen2-vl", batch_size="0")


@pytest.mark.parametrize("spec", ["hf:tiny-qwen2-vl", "hf:"])
def test_create_backend_resolves_the_tiny_alias(tiny_dir: Path, spec: str) -> None:
    hf = create_backend(spec, {"batch_size": "2"})
    try:
        assert isinstance(hf, HFBackend)
        assert hf.max_batch_size == 2
        [result] = hf.generate([request("spec", "Hello")])
        assert isinstance(result, Response)
    finally:
        hf.close()


def run_python(code: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    full_env = {**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})}
    full_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    return subprocess.Popen(
        [sys.executable, "-c", code],
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_importing_the_backend_does_not_import_torch() -> None:
    code = (
        "import sys, pytest_lmms.models.hf, pytest_lmms.models\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "assert 'transformers' not in sys.modules, 'transformers imported'\n"
    )
    process = run_python(code)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr


def test_concurrent_builds_yield_one_valid_model(tmp_path: Path, tiny_dir: Path) -> None:
    code = "from pytest_lmms.models._tiny import tiny_model_path; print(tiny_model_path())"
    processes = [run_python(code, {"PYTEST_LMMS_HOME": str(tmp_path)}) for _ in range(2)]
    outputs = [process.communicate(timeout=120) for process in processes]
    for process, (_, stderr) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, stderr
    paths = {stdout.strip() for stdout, _ in outputs}
    target = tmp_path / "models" / TINY_MODEL_NAME
    assert paths == {str(target)}
    # Only the finished model and the lock file: no half-built staging directory left.
    assert sorted(p.name for p in (tmp_path / "models").iterdir()) == sorted(
        [TINY_MODEL_NAME, f".{TINY_MODEL_NAME}.lock"]
    )
    # Built deterministically: the same files, byte for byte, as the session's build.
    built = sorted(p.name for p in target.iterdir())
    assert built == sorted(p.name for p in tiny_dir.iterdir())
    for name in built:
        assert (target / name).read_bytes() == (tiny_dir / name).read_bytes(), name


def test_text_only_models_load_with_tokenizer_and_causal_lm(tiny_dir: Path, tmp_path: Path) -> None:
    import torch
    from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        bos_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    Qwen2ForCausalLM(config).save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)

    text_lm = HFBackend(str(tmp_path), batch_size="4")
    try:
        prompts = [request("short", "Hi"), request("long", "Count the objects in the picture.")]
        with_image = request("image", "What is this?", png((0, 0, 0), "circle"))
        results = text_lm.generate([*prompts, with_image])
        assert texts(results[:2]) == texts([text_lm.generate([p])[0] for p in prompts])
        assert isinstance(results[2], ValueError)
        assert text_lm.identity()["model"] == tmp_path.name
    finally:
        text_lm.close()


# -- audio: a tiny Qwen2-Audio built from a config ------------------------------------------

AUDIO_TOKEN = "<|AUDIO|>"


def wav(frequency: float, seconds: float, sample_rate: int = 16000) -> bytes:
    """A 16-bit mono WAV of a sine tone."""
    import numpy as np

    from pytest_lmms.media import wav_bytes

    times = np.arange(int(seconds * sample_rate)) / sample_rate
    return wav_bytes((0.5 * np.sin(2 * np.pi * frequency * times)).astype(np.float32), sample_rate)


def audio_request(doc_id: str, text: str, clip: bytes, gen: GenParams = GREEDY) -> Request:
    parts = (MediaPart(MediaRef("audio", clip), "audio"), TextPart(text))
    return Request(task="tiny-audio", doc_id=doc_id, messages=(Message("user", parts),), gen=gen)


@pytest.fixture(scope="session")
def tiny_audio_dir(lmms_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pytest_lmms.models._tiny import build_tiny_qwen2_audio

    return build_tiny_qwen2_audio(tmp_path_factory.mktemp("tiny-qwen2-audio"))


@pytest.fixture(scope="session")
def audio_backend(tiny_audio_dir: Path) -> Iterator[HFBackend]:
    hf = HFBackend(str(tiny_audio_dir), batch_size="8")
    yield hf
    hf.close()


def audio_token_count(hf: HFBackend, prompt: Request) -> int:
    inputs = hf.model_inputs(prompt)
    token_id = hf._tokenizer.convert_tokens_to_ids(AUDIO_TOKEN)
    return int((inputs["input_ids"] == token_id).sum())


def test_an_audio_request_returns_text(audio_backend: HFBackend) -> None:
    [result] = audio_backend.generate([audio_request("tone", "What is this sound?", wav(440, 0.5))])
    assert isinstance(result, Response)
    assert isinstance(result.text, str)
    assert result.output_tokens is not None and 0 < result.output_tokens <= GREEDY.max_new_tokens
    assert result.input_tokens is not None and result.input_tokens > 12


@pytest.mark.parametrize(
    ("seconds", "sample_rate", "expected"),
    [
        # mel frames = samples / 160 (at 16 kHz); tokens = ((frames - 1) // 2 + 1 - 2) // 2 + 1
        (0.5, 16000, 12),  # 50 frames -> 25 -> 12
        (0.5, 8000, 12),  # decoded at the extractor's 16 kHz: the same 50 frames
        (0.25, 16000, 6),  # 25 frames -> 13 -> 6
        (3.0, 16000, 25),  # the extractor keeps its 1 s window: 100 frames -> 50 -> 25
    ],
)
def test_audio_placeholders_follow_the_clip_length_at_the_extractor_rate(
    audio_backend: HFBackend, seconds: float, sample_rate: int, expected: int
) -> None:
    prompt = audio_request("tone", "Listen.", wav(440, seconds, sample_rate))
    assert audio_token_count(audio_backend, prompt) == expected


def test_the_audio_hash_keys_the_cache_and_the_clip_reaches_the_features(
    audio_backend: HFBackend,
) -> None:
    import hashlib

    import torch

    from pytest_lmms.cache import cache_key

    low, high = wav(220, 0.5), wav(880, 0.5)
    low_request = audio_request("clip", "What is this sound?", low)
    high_request = audio_request("clip", "What is this sound?", high)
    [part] = low_request.canonical()["messages"][0]["content"][:1]
    assert part == {"type": "audio", "sha256": hashlib.sha256(low).hexdigest()}
    identity = audio_backend.identity()
    assert cache_key(identity, low_request) != cache_key(identity, high_request)
    assert cache_key(identity, low_request) == cache_key(
        identity, audio_request("clip", "What is this sound?", low)
    )

    low_features = audio_backend.model_inputs(low_request)["input_features"]
    high_features = audio_backend.model_inputs(high_request)["input_features"]
    assert low_features.shape == high_features.shape == (1, 32, 100)
    assert not torch.equal(low_features, high_features)
    assert torch.equal(low_features, audio_backend.model_inputs(low_request)["input_features"])


def test_a_batch_mixing_audio_and_text_equals_one_at_a_time(audio_backend: HFBackend) -> None:
    prompts = [
        audio_request("low", "What is this sound?", wav(220, 0.5)),
        request("text", "Answer with the option's letter. (A) one (B) two"),
        audio_request("high", "Describe the sound.", wav(880, 0.25)),
    ]
    batched = audio_backend.generate(prompts)
    alone = [audio_backend.generate([p])[0] for p in prompts]
    assert texts(batched) == texts(alone)
    assert [r.input_tokens for r in batched] == [r.input_tokens for r in alone]  # type: ignore[union-attr]


def test_a_bad_audio_or_an_image_fails_only_its_own_request(audio_backend: HFBackend) -> None:
    good = audio_request("good", "What is this sound?", wav(440, 0.5))
    broken = audio_request("broken", "What is this sound?", b"definitely not audio")
    image = request("picture", "What colour is the circle?", png((200, 30, 30), "circle"))
    results = audio_backend.generate([good, broken, image])
    assert isinstance(results[1], ValueError)
    assert "tiny-audio/broken" in str(results[1])
    assert isinstance(results[2], ValueError)
    assert "takes no image input" in str(results[2]) and "tiny/picture" in str(results[2])
    assert texts(results[:1]) == texts(audio_backend.generate([good]))


def test_models_without_audio_fail_audio_requests_clearly(backend: HFBackend) -> None:
    clip = audio_request("speech", "What is this sound?", wav(440, 0.5))
    results = backend.generate([clip, request("text", "Hi")])
    assert isinstance(results[0], ValueError)
    message = str(results[0])
    assert "tiny-qwen2-vl takes no audio input" in message and "tiny-audio/speech" in message
    assert isinstance(results[1], Response)


def test_audio_support_is_read_from_the_processor(tiny_audio_dir: Path, tiny_dir: Path) -> None:
    from transformers import AutoProcessor, AutoTokenizer

    from pytest_lmms.models.hf import audio_sampling_rate

    assert audio_sampling_rate(AutoProcessor.from_pretrained(tiny_audio_dir)) == 16000
    assert audio_sampling_rate(AutoProcessor.from_pretrained(tiny_dir)) is None
    assert audio_sampling_rate(AutoTokenizer.from_pretrained(tiny_dir)) is None

    class Extractor:
        sampling_rate = 16000

    class NoAudioArgument:
        feature_extractor = Extractor()

        def __call__(self, text: str) -> None: ...

    class OldAudiosArgument(NoAudioArgument):
        def __call__(self, text: str, audios: object = None) -> None: ...  # type: ignore[override]

    assert audio_sampling_rate(NoAudioArgument()) is None
    assert audio_sampling_rate(OldAudiosArgument()) == 16000
