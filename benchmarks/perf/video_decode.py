"""Video decoding speed: torchcodec against PyAV, and the frame cache, on synthetic videos.

    python benchmarks/perf/video_decode.py [--seconds 60]

Writes H.264 MP4s at 720p and 240p (30 fps, a keyframe every 2 s, moving gradients so the
codec has work; 60 s long by default, a short Video-MME clip), then
prints, per resolution and frame count (8, 32, 128 uniformly sampled), the decoded frames
per second of each decoder and the ratio (target: torchcodec >= 1.5x PyAV for 32 frames at
720p), the media time of a question on an already-decoded video (target: < 1 ms), and the
wall time of questions on several videos with decoding on demand and with decode-ahead.

The ratio depends on the length: torchcodec seeks to the keyframe before each wanted
frame, while the PyAV path decodes through gaps of up to 250 frames (x264's default
keyframe interval) and seeks only over longer ones. On a 10 s clip both decode nearly every
frame (measured 1.1x on 2 CPU cores); on 60 s, 1.9x. Longer videos (gaps over 250 frames)
make both seek: this script does not measure them.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from pytest_lmms.media import FrameCache, available_decoders, decode_video  # noqa: E402
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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--model-ms", type=float, default=100.0, help="simulated model time per question")
    parser.add_argument("--videos", type=int, default=6, help="videos in the decode-ahead measurement")
    opts = parser.parse_args()
    decoders = available_decoders()
    print(f"decoders available: {', '.join(decoders) or 'none'}")
    with tempfile.TemporaryDirectory(prefix="lmms-video-") as tmp:
        for label, (width, height) in (("720p", (1280, 720)), ("240p", (426, 240))):
            video = MediaRef("video", write_video(Path(tmp) / f"{label}.mp4", width, height, opts.seconds))
            for n in (8, 32, 128):
                sampling = VideoSampling(num_frames=n)
                speeds = {d: n / timed(partial(decode_video, video, sampling, decoder=d)) for d in decoders}
                ratio = speeds["torchcodec"] / speeds["pyav"] if len(speeds) == 2 else float("nan")
                cells = "  ".join(f"{d} {v:8.1f} frames/s" for d, v in speeds.items())
                target = "  (target >= 1.5x)" if (label, n) == ("720p", 32) else ""
                print(f"{label} {n:4d} frames  {cells}  torchcodec/pyav {ratio:5.2f}x{target}")
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
