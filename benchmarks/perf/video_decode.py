"""Video decoding speed: torchcodec against PyAV, and the frame cache, on synthetic videos.

    python benchmarks/perf/video_decode.py [--seconds 60]

Writes H.264 MP4s at 720p and 240p (30 fps, a keyframe at most every 2 s, moving gradients
so the codec has work; 60 s long by default, a short Video-MME clip), then prints, per
resolution and frame count (8, 32, 128 uniformly sampled), the decoded frames per second of
torchcodec, of PyAV and of the default (``decoder="auto"``), the path the default chose,
and the default against the faster of the two (target: >= 1.0x in every row); then the
media time of a question on an already-decoded video (target: < 1 ms), and the wall time
of questions on several videos with decoding on demand and with decode-ahead.

Both decoders seek to the keyframe before a wanted frame (PyAV reads the keyframes from the
container's index), so they decode the same frames and differ in the cost per frame: the
default takes PyAV for sparse sampling and small frames, torchcodec for several frames per
keyframe interval at 720p and above (``pytest_lmms.media.choose_decoder``). The three
paths are timed in turn, best of ``--repeats``, so a busy machine slows all of them alike.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pytest_lmms.media import FrameCache, auto_decoder, available_decoders, decode_video  # noqa: E402
from pytest_lmms.types import MediaRef, VideoSampling  # noqa: E402


def write_video(path: Path, width: int, height: int, seconds: float, fps: int = 30, shift: int = 0) -> Path:
    import av

    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        # a keyframe every 2 s, as in typical web video (x264's default is one per 250 frames)
        stream.options = {"preset": "veryfast", "crf": "23", "g": str(2 * fps)}
        x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
        y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
        for i in range(shift, shift + int(seconds * fps)):  # shift: another video, other bytes
            r = (x + 3 * i) % 256
            g = (y + 5 * i) % 256
            b = ((x + y) / 2 + 7 * i) % 256
            image = np.stack([r + 0 * y, g + 0 * x, b], axis=-1).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def timed(function, repeats: int = 3) -> float:  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def interleaved(functions: dict[str, Any], repeats: int) -> dict[str, float]:
    """Best wall time of each function, run in turn so a busy moment of the machine slows
    all of them alike rather than one."""
    times: dict[str, list[float]] = {name: [] for name in functions}
    for _ in range(repeats):
        for name, function in functions.items():
            start = time.perf_counter()
            function()
            times[name].append(time.perf_counter() - start)
    return {name: min(values) for name, values in times.items()}


def decode_row(
    label: str, video: MediaRef, sampling: VideoSampling, decoders: list[str], repeats: int
) -> str:
    """One row: frames/s of each decoder and of the default (``auto``), the path the default
    chose, and the default against the faster of the two (target >= 1.0x)."""
    n = sampling.num_frames
    paths: dict[str, Any] = {d: partial(decode_video, video, sampling, decoder=d) for d in decoders}
    paths["auto"] = partial(decode_video, video, sampling)
    speeds = {d: n / t for d, t in interleaved(paths, repeats).items()}
    cells = "  ".join(f"{d} {v:7.1f}" for d, v in speeds.items() if d != "auto")
    ratio = speeds["torchcodec"] / speeds["pyav"] if len(decoders) == 2 else float("nan")
    faster = max(speeds[d] for d in decoders)
    chosen = auto_decoder(video, sampling)
    return (
        f"{label} {n:4d} frames  frames/s: {cells}  torchcodec/pyav {ratio:5.2f}x  "
        f"default ({chosen:<10}) {speeds['auto']:7.1f}  default/faster {speeds['auto'] / faster:5.2f}x "
        "(target >= 1.0x)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--model-ms", type=float, default=100.0, help="simulated model time per question")
    parser.add_argument("--videos", type=int, default=6, help="videos in the decode-ahead measurement")
    parser.add_argument("--repeats", type=int, default=5, help="timed decodes per path and row (best kept)")
    opts = parser.parse_args()
    decoders = available_decoders()
    print(f"decoders available: {', '.join(decoders) or 'none'}")
    with tempfile.TemporaryDirectory(prefix="lmms-video-") as tmp:
        for label, (width, height) in (("720p", (1280, 720)), ("240p", (426, 240))):
            video = MediaRef("video", write_video(Path(tmp) / f"{label}.mp4", width, height, opts.seconds))
            for n in (8, 32, 128):
                print(
                    decode_row(label, video, VideoSampling(num_frames=n), decoders, opts.repeats), flush=True
                )
            cache = FrameCache()
            sampling = VideoSampling(num_frames=32)
            ask = partial(cache.frames, video, sampling)
            first = timed(ask, repeats=1)
            repeats = [timed(ask, repeats=1) for _ in range(200)]
            print(
                f"{label} frame cache: first question {first * 1e3:8.2f} ms, each further question on the same "
                f"video {statistics.median(repeats) * 1e3:.4f} ms (target < 1 ms); decodes: {cache.decodes}"
            )
        decode_ahead(Path(tmp), opts.model_ms, opts.videos)


def decode_ahead(folder: Path, model_ms: float, n_videos: int, questions: int = 3) -> None:
    """Wall time of a model that reads each question's frames and then works ``model_ms``,
    with decoding on demand and with the decode-ahead pool (2 threads)."""
    from pytest_lmms.media import MediaPrefetcher
    from pytest_lmms.types import MediaPart, Message, Request, TextPart

    videos = [
        MediaRef("video", write_video(folder / f"ahead{i}.mp4", 1280, 720, 6, shift=7 * i))
        for i in range(n_videos)
    ]
    sampling = VideoSampling(num_frames=16)
    requests = [
        Request("t", f"{v}-{q}", (Message("user", (MediaPart(video, "video", sampling), TextPart("q"))),))
        for v, video in enumerate(videos)
        for q in range(questions)
    ]
    for video in videos:
        video.content_hash  # noqa: B018 - hashed at planning in a real run, not timed here
    walls = {}
    for threads in (0, 2):
        cache = FrameCache()
        prefetcher = MediaPrefetcher(threads=threads, cache=cache) if threads else None
        start = time.perf_counter()
        if prefetcher is not None:
            prefetcher.submit(requests)
        for request in requests:
            part = request.messages[0].content[0]
            assert isinstance(part, MediaPart)
            cache.frames(part.media, part.sampling)
            time.sleep(model_ms / 1e3)  # the model (a GPU) works; the CPU is free
        walls[threads] = time.perf_counter() - start
        if prefetcher is not None:
            prefetcher.close()
    print(
        f"decode-ahead: {len(requests)} questions on {n_videos} 720p 6 s videos, model {model_ms:.0f} ms each: "
        f"on demand {walls[0]:.2f} s, with 2 decode threads {walls[2]:.2f} s "
        f"({walls[0] / walls[2]:.2f}x; floor {len(requests) * model_ms / 1e3:.2f} s)"
    )


if __name__ == "__main__":
    main()
