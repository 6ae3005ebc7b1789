"""The embedded default model: a tiny, randomly initialised Qwen2-VL built locally.

``tiny_model_path()`` gives every machine the same small vision-language model without a
download, so the ``hf`` backend, the engine and the offline suites run anywhere, fast. Its
answers are noise: it exists to exercise the real code path (chat template, image
processing, left-padded batching, ``generate``), not to score well. ``build_tiny_qwen2_audio(directory)`` writes a tiny Qwen2-Audio the same
way, for the tests of audio inputs (it is not cached and has no alias).

The build is deterministic. The tokenizer is a byte-level BPE trained with ``tokenizers``
on a generated corpus; the weights come from a fixed torch seed. It is written into a
temporary directory next to the target and renamed into place, under a file lock, so
concurrent builders (xdist workers) produce one complete directory and never a partial one.

What a tiny Qwen2-VL needs to load and generate (found by building it, transformers 5.x):

- ``text_config``: ``head_dim = hidden_size / num_attention_heads``, and
  ``rope_parameters["mrope_section"]`` (temporal, height, width) must sum to
  ``head_dim / 2``; ``vocab_size`` must cover every tokenizer id; ``bos_token_id``,
  ``eos_token_id`` and ``pad_token_id`` must lie inside the vocabulary (the defaults are
  Qwen's ids around 151k).
- top-level ``image_token_id``, ``video_token_id``, ``vision_start_token_id`` and
  ``vision_end_token_id`` must be the ids of the tokenizer's special tokens: the model finds
  the image placeholders and computes the 3D rope positions from them.
- ``vision_config``: ``hidden_size`` is the merger's output size and must equal the text
  ``hidden_size``; ``embed_dim`` must be divisible by ``num_heads``, and its per-head size
  must be even (2D rotary over the patch grid). ``patch_size``, ``temporal_patch_size`` and
  ``spatial_merge_size`` must match the image processor's ``patch_size``,
  ``temporal_patch_size`` and ``merge_size``.
- the image processor must be the PIL one (``Qwen2VLImageProcessorPil``): the default one
  needs torchvision. There is no video processor for the same reason, so the tiny model
  takes images only.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

TINY_MODEL_NAME = "tiny-qwen2-vl-v1"
SEED = 0

SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|image_pad|>",
    "<|video_pad|>",
)

# Qwen-style: images and videos become <|vision_start|><|..._pad|><|vision_end|>; the
# processor expands each pad into one token per merged patch.
CHAT_TEMPLATE = (
    "{%- for message in messages -%}"
    "{{ '<|im_start|>' + message['role'] + '\\n' }}"
    "{%- if message['content'] is string -%}"
    "{{ message['content'] }}"
    "{%- else -%}"
    "{%- for part in message['content'] -%}"
    "{%- if part['type'] == 'image' -%}"
    "{{ '<|vision_start|><|image_pad|><|vision_end|>' }}"
    "{%- elif part['type'] == 'video' -%}"
    "{{ '<|vision_start|><|video_pad|><|vision_end|>' }}"
    "{%- elif part['type'] == 'text' -%}"
    "{{ part['text'] }}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- endif -%}"
    "{{ '<|im_end|>\\n' }}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}"
    "{{ '<|im_start|>assistant\\n' }}"
    "{%- endif -%}"
)

VOCAB_SIZE = 512
PATCH_SIZE = 14
MERGE_SIZE = 2
TEMPORAL_PATCH_SIZE = 2
# A 64x64 image resizes to 56x56: 4x4 patches, merged 2x2 into 4 image tokens.
MIN_PIXELS = 28 * 28
MAX_PIXELS = 56 * 56 * 4


def training_corpus() -> list[str]:
    """A few hundred short English sentences in the vocabulary of the offline suites."""
    colours = ["red", "green", "blue", "yellow", "black", "white", "orange", "purple", "grey"]
    shapes = ["circle", "square", "triangle", "star", "rectangle", "line", "dot", "cross"]
    numbers = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
    sentences: list[str] = []
    for i, colour in enumerate(colours):
        for j, shape in enumerate(shapes):
            count = numbers[(i + j) % len(numbers)]
            sentences.append(f"The image shows a {colour} {shape}.")
            sentences.append(f"How many {shape}s are there? There are {count} {colour} {shape}s.")
            sentences.append(f"What colour is the {shape}? The {shape} is {colour}.")
    for digit, word in enumerate(numbers):
        sentences.append(f"Count the objects. The answer is {digit} ({word}).")
        sentences.append(f"{digit} + {digit} = {2 * digit}. {word} plus {word}.")
    for letter in "ABCD":
        sentences.append(f"Answer with the option's letter from the given choices. Answer: {letter}")
        sentences.append(f"({letter}) is the correct option. The answer is {letter}.")
    sentences += [
        "Describe this image in detail.",
        "Answer the question using a single word or phrase.",
        "Is there a circle in the picture? Yes. Is there a square? No.",
        "You are a helpful assistant.",
        "system\nuser\nassistant\n",
        "The quick brown fox jumps over the lazy dog.",
        "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789",
    ]
    return sentences


_VISION_TOKEN_ROLES = {
    "image_token": "<|image_pad|>",
    "video_token": "<|video_pad|>",
    "vision_bos_token": "<|vision_start|>",
    "vision_eos_token": "<|vision_end|>",
}


def _train_tokenizer(
    special_tokens: tuple[str, ...] = SPECIAL_TOKENS,
    token_roles: dict[str, str] | None = None,
    chat_template: str | None = CHAT_TEMPLATE,
):  # -> transformers.PreTrainedTokenizerFast
    """A byte-level BPE trained on ``training_corpus()``; ``token_roles`` names the special
    tokens a processor looks up on its tokenizer (``image_token``, ``audio_token``...)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    backend.train_from_iterator(training_corpus(), trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        padding_side="left",
        extra_special_tokens=dict(_VISION_TOKEN_ROLES if token_roles is None else token_roles),
    )
    if chat_template is not None:
        tokenizer.chat_template = chat_template
    return tokenizer


def _model_config(tokenizer):  # -> transformers.Qwen2VLConfig
    from transformers import Qwen2VLConfig

    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in SPECIAL_TOKENS}
    hidden_size, heads = 64, 4
    # Temporal, height and width sections of the 3D rope: they must sum to head_dim / 2.
    mrope_section = [2, 3, 3]
    assert sum(mrope_section) == hidden_size // heads // 2
    return Qwen2VLConfig(
        text_config={
            "vocab_size": len(tokenizer),
            "hidden_size": hidden_size,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": heads,
            "num_key_value_heads": 2,
            "max_position_embeddings": 4096,
            "max_window_layers": 2,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": 10000.0,
                "mrope_section": mrope_section,
            },
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        vision_config={
            "depth": 2,
            "embed_dim": 32,
            "hidden_size": hidden_size,
            "mlp_ratio": 2,
            "num_heads": 2,
            "patch_size": PATCH_SIZE,
            "spatial_merge_size": MERGE_SIZE,
            "temporal_patch_size": TEMPORAL_PATCH_SIZE,
        },
        image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"],
        tie_word_embeddings=False,
    )


def build_tiny_qwen2_vl(directory: Path) -> Path:
    """Write the tiny model (weights, config, tokenizer, processor) into ``directory``."""
    import torch
    from transformers import GenerationConfig, PaddleOCRVLProcessor, Qwen2VLForConditionalGeneration
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (
        Qwen2VLImageProcessorPil,
    )

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = _train_tokenizer()
    image_processor = Qwen2VLImageProcessorPil(
        min_pixels=MIN_PIXELS,
        max_pixels=MAX_PIXELS,
        patch_size=PATCH_SIZE,
        temporal_patch_size=TEMPORAL_PATCH_SIZE,
        merge_size=MERGE_SIZE,
    )
    config = _model_config(tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = Qwen2VLForConditionalGeneration(config).float().eval()
    model.generation_config = GenerationConfig(
        do_sample=False,
        bos_token_id=config.text_config.bos_token_id,
        eos_token_id=config.text_config.eos_token_id,
        pad_token_id=config.text_config.pad_token_id,
    )
    model.save_pretrained(directory, safe_serialization=True)
    processor = PaddleOCRVLProcessor(
        image_processor=image_processor, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE
    )
    processor.save_pretrained(directory)
    return directory


AUDIO_SPECIAL_TOKENS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|audio_bos|>",
    "<|audio_eos|>",
    "<|AUDIO|>",
)
AUDIO_SAMPLING_RATE = 16000
# One second of audio per clip (Qwen2-Audio's real extractor keeps 30 s): 100 mel frames,
# which the encoder's stride-2 convolution turns into 50 positions.
AUDIO_CHUNK_SECONDS = 1
AUDIO_MEL_BINS = 32


def build_tiny_qwen2_audio(directory: Path) -> Path:
    """Write a tiny, randomly initialised Qwen2-Audio into ``directory`` (not cached).

    What it needs to load and generate (found by building it, transformers 5.x):

    - the tokenizer holds ``<|AUDIO|>``, ``<|audio_bos|>`` and ``<|audio_eos|>``, named as
      its ``audio_token``, ``audio_bos_token`` and ``audio_eos_token``; the config's
      ``audio_token_index`` is the id of ``<|AUDIO|>`` (the processor expands each into one
      token per encoder output frame, and the model scatters the audio features there);
    - the encoder checks its input is exactly ``2 * max_source_positions`` mel frames: the
      feature extractor's ``nb_max_frames`` (``chunk_length * sampling_rate / hop_length``),
      since Qwen2-Audio's processor always pads clips to the extractor's full window;
      ``num_mel_bins`` equals the extractor's ``feature_size``;
    - the processor's chat template is its built-in default (Qwen2-Audio-Instruct's).
    """
    import torch
    from transformers import (
        GenerationConfig,
        Qwen2AudioConfig,
        Qwen2AudioForConditionalGeneration,
        Qwen2AudioProcessor,
        WhisperFeatureExtractor,
    )

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = _train_tokenizer(
        AUDIO_SPECIAL_TOKENS,
        {
            "audio_token": "<|AUDIO|>",
            "audio_bos_token": "<|audio_bos|>",
            "audio_eos_token": "<|audio_eos|>",
        },
        chat_template=None,
    )
    feature_extractor = WhisperFeatureExtractor(
        feature_size=AUDIO_MEL_BINS,
        sampling_rate=AUDIO_SAMPLING_RATE,
        chunk_length=AUDIO_CHUNK_SECONDS,
        return_attention_mask=True,
    )
    ids = {token: tokenizer.convert_tokens_to_ids(token) for token in AUDIO_SPECIAL_TOKENS}
    config = Qwen2AudioConfig(
        audio_config={
            "model_type": "qwen2_audio_encoder",
            "d_model": 32,
            "encoder_layers": 1,
            "encoder_attention_heads": 2,
            "encoder_ffn_dim": 64,
            "num_mel_bins": AUDIO_MEL_BINS,
            "max_source_positions": feature_extractor.nb_max_frames // 2,
        },
        text_config={
            "model_type": "qwen2",
            "vocab_size": len(tokenizer),
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 4096,
            "bos_token_id": ids["<|endoftext|>"],
            "eos_token_id": ids["<|im_end|>"],
            "pad_token_id": ids["<|endoftext|>"],
        },
        audio_token_index=ids["<|AUDIO|>"],
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = Qwen2AudioForConditionalGeneration(config).float().eval()
    model.generation_config = GenerationConfig(
        do_sample=False,
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"],
        pad_token_id=ids["<|endoftext|>"],
    )
    model.save_pretrained(directory, safe_serialization=True)
    Qwen2AudioProcessor(feature_extractor=feature_extractor, tokenizer=tokenizer).save_pretrained(directory)
    return directory


def pytest_lmms_home() -> Path:
    """``$PYTEST_LMMS_HOME``, or ``~/.cache/pytest-lmms``."""
    home = os.environ.get("PYTEST_LMMS_HOME")
    return Path(home).expanduser() if home else Path.home() / ".cache" / "pytest-lmms"


@contextlib.contextmanager
def _exclusive_lock(lock_path: Path) -> Iterator[None]:
    with open(lock_path, "a+b") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def tiny_model_path() -> Path:
    """The embedded model's directory, built on first use (once, whatever the concurrency)."""
    models_dir = pytest_lmms_home() / "models"
    target = models_dir / TINY_MODEL_NAME
    # The rename is atomic, so an existing target is always a complete build.
    if target.is_dir():
        return target
    models_dir.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(models_dir / f".{TINY_MODEL_NAME}.lock"):
        if target.is_dir():
            return target
        staging = Path(tempfile.mkdtemp(prefix=f".{TINY_MODEL_NAME}.", dir=models_dir))
        try:
            build_tiny_qwen2_vl(staging)
            os.rename(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return target
