"""Audio decoding to mono float32 at a model's sample rate, on real WAV and MP3 files."""

from __future__ import annotations

import base64
import io
import wave
from pathlib import Path

import numpy as np
import pytest

from pytest_lmms.media import MediaError, as_wav, decode_audio, wav_bytes
from pytest_lmms.types import MediaPart, MediaRef, Message, Request, TextPart


def tone(path: Path, seconds: float = 1.0, rate: int = 44100, channels: int = 2) -> Path:
    t = np.arange(int(seconds * rate)) / rate
    signal = 0.5 * np.sin(2 * np.pi * 440 * t)
    pcm = (np.repeat(signal[:, None], channels, axis=1) * 32767).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm.tobytes())
    return path


def test_a_stereo_44k_wav_becomes_mono_16k(tmp_path: Path) -> None:
    samples = decode_audio(MediaRef("audio", tone(tmp_path / "a.wav")), sample_rate=16000)
    assert samples.dtype == np.float32 and abs(len(samples) - 16000) <= 16
    # FFmpeg's stereo-to-mono downmix keeps -3 dB of each channel: 0.5 * sqrt(2) here
    assert float(np.abs(samples).max()) == pytest.approx(0.5 * np.sqrt(2), abs=0.02)
    spectrum = np.abs(np.fft.rfft(samples))
    assert abs(int(np.argmax(spectrum)) * 16000 / len(samples) - 440) < 5


def test_bytes_sources_decode_like_files(tmp_path: Path) -> None:
    path = tone(tmp_path / "a.wav", seconds=0.5)
    from_file = decode_audio(MediaRef("audio", path), 8000)
    from_bytes = decode_audio(MediaRef("audio", path.read_bytes()), 8000)
    assert np.allclose(from_file, from_bytes)


def test_corrupt_audio_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF0000WAVEjunk" * 4)
    with pytest.raises(MediaError, match=r"cannot decode .*bad\.wav: "):
        decode_audio(MediaRef("audio", bad))


def test_wav_round_trip_and_passthrough(tmp_path: Path) -> None:
    path = tone(tmp_path / "a.wav", seconds=0.25, rate=16000, channels=1)
    assert as_wav(MediaRef("audio", path)) == path.read_bytes()
    samples = decode_audio(MediaRef("audio", path), 16000)
    with wave.open(io.BytesIO(wav_bytes(samples, 16000))) as back:
        assert (back.getnchannels(), back.getframerate(), back.getnframes()) == (1, 16000, len(samples))


def test_openai_backend_sends_audio_as_wav_input_audio(tmp_path: Path, openai_server) -> None:  # type: ignore[no-untyped-def]
    av = pytest.importorskip("av")
    mp3 = tmp_path / "a.mp3"
    with av.open(str(mp3), mode="w") as container:
        stream = container.add_stream("mp3", rate=16000)
        t = np.arange(16000) / 16000
        frame = av.AudioFrame.from_ndarray(
            (0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32)[None, :], format="flt", layout="mono"
        )
        frame.sample_rate = 16000
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    from pytest_lmms.models import create_backend

    parts = (MediaPart(MediaRef("audio", mp3), "audio"), TextPart("reply S"))
    client = create_backend("openai:m", {"base_url": openai_server.url})
    (out,) = client.generate([Request(task="t", doc_id="0", messages=(Message("user", parts),))])
    assert out.text == "S"  # type: ignore[union-attr]
    audio = openai_server.bodies[0]["messages"][0]["content"][0]["input_audio"]
    assert audio["format"] == "wav" and base64.b64decode(audio["data"])[:4] == b"RIFF"
