"""Audio: decoded to mono float32 at the sample rate a model wants (torchcodec, else PyAV)."""

from __future__ import annotations

import io
import wave
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from pytest_lmms.media._video import MediaError
from pytest_lmms.types import MediaRef

Samples = npt.NDArray[np.float32]


def _decode_torchcodec(media: MediaRef, sample_rate: int) -> Samples:
    from torchcodec.decoders import AudioDecoder

    source = str(media.path) if media.path is not None else media.read_bytes()
    decoded = AudioDecoder(source, sample_rate=sample_rate, num_channels=1).get_all_samples()
    return np.ascontiguousarray(decoded.data.numpy()[0], dtype=np.float32)


def _decode_pyav(media: MediaRef, sample_rate: int) -> Samples:
    import av

    source = str(media.path) if media.path is not None else io.BytesIO(media.read_bytes())
    resampler = av.AudioResampler(format="flt", layout="mono", rate=sample_rate)
    chunks: list[Samples] = []
    with av.open(source, mode="r") as container:
        stream = container.streams.audio[0]
        for frame in container.decode(stream):
            for out in resampler.resample(frame):
                chunks.append(np.asarray(out.to_ndarray(), dtype=np.float32).reshape(-1))
        for out in resampler.resample(None):
            chunks.append(np.asarray(out.to_ndarray(), dtype=np.float32).reshape(-1))
    if not chunks:
        raise MediaError("no audio samples could be decoded")
    return np.concatenate(chunks)


def decode_audio(media: MediaRef, sample_rate: int = 16000) -> Samples:
    """Mono float32 samples in [-1, 1] at ``sample_rate``; MediaError names the file and
    each decoder's error."""
    where = str(media.path) if media.path is not None else f"audio {media.content_hash[:12]}"
    errors = []
    for name, decode in (("torchcodec", _decode_torchcodec), ("pyav", _decode_pyav)):
        try:
            return decode(media, sample_rate)
        except ImportError as exc:
            errors.append(f"{name}: not installed ({exc.name})")
        except Exception as exc:  # noqa: BLE001 - the decoder's own error, named below
            errors.append(f"{name}: {type(exc).__name__}: {exc}")
    raise MediaError(f"cannot decode {where}: " + "; ".join(errors))


def wav_bytes(samples: Samples, sample_rate: int) -> bytes:
    """16-bit PCM mono WAV, the format OpenAI-compatible servers accept as input_audio."""
    pcm = (np.clip(samples, -1.0, 1.0) * 32767).astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(pcm.tobytes())
    return buffer.getvalue()


def as_wav(media: MediaRef, sample_rate: int = 16000) -> bytes:
    """The medium as WAV bytes: unchanged when it already is a WAV file, else decoded."""
    data = media.read_bytes()
    if data[:4] == b"RIFF" and data[8:12] == b"WAVE":
        return data
    return wav_bytes(decode_audio(media, sample_rate), sample_rate)


def decoded_cell_bytes(value: Any) -> bytes | None:
    """The bytes of a dataset cell ``datasets`` has already decoded, or None for other values.

    ``datasets`` 4+ decodes audio (and video) columns to torchcodec decoders that keep the
    file's bytes in ``_hf_encoded`` (sent unchanged); ``datasets`` 3 gives ``{"array",
    "sampling_rate"}``, and a decoder without its file gives its samples: those are sent as
    16-bit mono WAV (channels averaged).
    """
    encoded = getattr(value, "_hf_encoded", None)
    if isinstance(encoded, Mapping) and encoded.get("bytes"):
        return bytes(encoded["bytes"])
    if isinstance(value, Mapping) and value.get("array") is not None and value.get("sampling_rate"):
        samples = np.asarray(value["array"], dtype=np.float32)
        return wav_bytes(samples if samples.ndim == 1 else samples.mean(axis=0), int(value["sampling_rate"]))
    if hasattr(value, "get_all_samples"):
        decoded = value.get_all_samples()
        data = np.asarray(decoded.data.cpu().numpy(), dtype=np.float32)
        return wav_bytes(data.mean(axis=0) if data.ndim > 1 else data, int(decoded.sample_rate))
    return None
