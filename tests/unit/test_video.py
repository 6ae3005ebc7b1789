"""Video sampling and decoding on real files written with PyAV (H.264 in MP4)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pytest_lmms.cache import cache_key
from pytest_lmms.media import (
    FrameCache,
    MediaError,
    VideoInfo,
    auto_decoder,
    available_decoders,
    choose_decoder,
    decode_video,
    sample_indices,
)
from pytest_lmms.types import MediaPart, MediaRef, Message, Request, TextPart, VideoSampling

av = pytest.importorskip("av")

LEVEL = 5  # frame i is a flat grey of level i * LEVEL: decoded pixels tell which frame it was


def write_video(path: Path, n_frames: int = 30, size: tuple[int, int] = (64, 48), fps: int = 10) -> Path:
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"qp": "0", "preset": "ultrafast"}
        for i in range(n_frames):
            image = np.full((size[1], size[0], 3), i * LEVEL, dtype=np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def frame_ids(frames: np.ndarray) -> list[int]:
    return [round(float(frame.mean()) / LEVEL) for frame in frames]


@pytest.mark.parametrize(
    ("total", "sampling", "expected"),
    [
        (30, VideoSampling(num_frames=8), [1, 5, 9, 13, 16, 20, 24, 28]),
        (30, VideoSampling(num_frames=8, force_last=True), [1, 5, 9, 13, 16, 20, 24, 29]),
        (5, VideoSampling(num_frames=8), [0, 1, 2, 3, 4]),
        (30, VideoSampling(num_frames=None, fps=2), [0, 5, 10, 15, 20, 25]),
        (30, VideoSampling(num_frames=None, fps=2, max_frames=3), [0, 10, 25]),
    ],
)
def test_sample_indices(total: int, sampling: VideoSampling, expected: list[int]) -> None:
    assert sample_indices(total, 10.0, sampling) == expected


def test_sampling_is_validated() -> None:
    with pytest.raises(ValueError, match="exactly one of num_frames or fps"):
        VideoSampling(num_frames=4, fps=1.0)
    with pytest.raises(MediaError, match="frame rate"):
        sample_indices(30, None, VideoSampling(num_frames=None, fps=1.0))


@pytest.mark.parametrize("decoder", available_decoders())
def test_decoders_return_the_sampled_frames(tmp_path: Path, decoder: str) -> None:
    video = MediaRef("video", write_video(tmp_path / "v.mp4"))
    frames = decode_video(video, VideoSampling(num_frames=8), decoder=decoder)  # type: ignore[arg-type]
    assert frames.shape == (8, 48, 64, 3) and frames.dtype == np.uint8
    assert frame_ids(frames) == [1, 5, 9, 13, 16, 20, 24, 28]
    from_bytes = decode_video(
        MediaRef("video", video.read_bytes()), VideoSampling(num_frames=8), decoder=decoder
    )  # type: ignore[arg-type]
    assert frame_ids(from_bytes) == frame_ids(frames)


def test_both_decoders_agree(tmp_path: Path) -> None:
    if len(available_decoders()) < 2:
        pytest.skip("needs torchcodec and PyAV")
    video = MediaRef("video", write_video(tmp_path / "v.mp4", n_frames=45))
    sampling = VideoSampling(num_frames=None, fps=3.0, max_side=32)
    a = decode_video(video, sampling, decoder="torchcodec")
    b = decode_video(video, sampling, decoder="pyav")
    assert a.shape == b.shape == (13, 24, 32, 3)  # 4.5 s at 3 fps, resized to 32 wide
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 2


def test_corrupt_video_names_the_file_and_the_decoder_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"garbage" * 100)
    with pytest.raises(MediaError, match=r"cannot decode .*broken\.mp4: "):
        decode_video(MediaRef("video", broken))


def test_frame_cache_decodes_a_video_once_for_many_questions(tmp_path: Path) -> None:
    cache = FrameCache()
    video = MediaRef("video", write_video(tmp_path / "v.mp4"))
    for _ in range(3):
        cache.frames(video, VideoSampling(num_frames=4))
    assert (cache.decodes, cache.hits) == (1, 2)
    cache.frames(video, VideoSampling(num_frames=6))
    assert cache.decodes == 2


def test_frame_cache_is_bounded_in_bytes(tmp_path: Path) -> None:
    videos = [MediaRef("video", write_video(tmp_path / f"v{i}.mp4", n_frames=10 + i)) for i in range(3)]
    one = 4 * 48 * 64 * 3
    cache = FrameCache(max_bytes=2 * one)
    for video in videos:
        cache.frames(video, VideoSampling(num_frames=4))
    cache.frames(videos[0], VideoSampling(num_frames=4))
    assert cache.decodes == 4  # the first video had been evicted


def test_the_sampling_is_part_of_the_cache_key(tmp_path: Path) -> None:
    video = MediaRef("video", write_video(tmp_path / "v.mp4"))

    def request(sampling: VideoSampling | None) -> Request:
        parts = (MediaPart(video, "video", sampling), TextPart("what happens?"))
        return Request(task="t", doc_id="0", messages=(Message("user", parts),))

    identity = {"backend": "x", "model": "m"}
    assert cache_key(identity, request(None)) == cache_key(identity, request(VideoSampling()))
    assert cache_key(identity, request(VideoSampling(num_frames=4))) != cache_key(identity, request(None))


def test_openai_backend_sends_video_as_frames(tmp_path: Path, openai_server) -> None:  # type: ignore[no-untyped-def]
    from pytest_lmms.models import create_backend

    video = MediaRef("video", write_video(tmp_path / "v.mp4"))
    parts = (MediaPart(video, "video", VideoSampling(num_frames=3)), TextPart("reply C"))
    client = create_backend("openai:m", {"base_url": openai_server.url})
    (out,) = client.generate([Request(task="t", doc_id="0", messages=(Message("user", parts),))])
    assert out.text == "C"  # type: ignore[union-attr]
    content = openai_server.bodies[0]["messages"][0]["content"]
    assert [p["type"] for p in content] == ["image_url", "image_url", "image_url", "text"]


def test_the_disk_cache_serves_another_process_and_survives_a_corrupt_entry(tmp_path: Path) -> None:
    pytest.importorskip("diskcache")
    video = MediaRef("video", write_video(tmp_path / "v.mp4"))
    first = FrameCache()
    first.use_disk(tmp_path / "frames")
    decoded = first.frames(video, VideoSampling(num_frames=4))
    first.use_disk(None)
    second = FrameCache()  # a new process: empty memory, same folder
    second.use_disk(tmp_path / "frames")
    again = second.frames(video, VideoSampling(num_frames=4))
    assert (second.decodes, second.disk_hits) == (0, 1)
    assert np.array_equal(again, decoded)
    key = second._disk_key(FrameCache.key(video, VideoSampling(num_frames=4)))
    second._disk.set(key, b"not an array")
    third = FrameCache()
    third.use_disk(tmp_path / "frames")
    assert frame_ids(third.frames(video, VideoSampling(num_frames=4))) == frame_ids(decoded)
    assert (third.decodes, third.disk_hits) == (1, 0)
    second.use_disk(None)
    third.use_disk(None)


def _video_request(doc_id: str, video: MediaRef) -> Request:
    part = MediaPart(video, "video", VideoSampling(num_frames=4))
    return Request("t", doc_id, (Message("user", (part, TextPart(f"question {doc_id}"))),))


def _wait_for(condition, what: str) -> None:  # type: ignore[no-untyped-def]
    import time

    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_the_prefetcher_decodes_ahead_once_per_video_and_stays_bounded(tmp_path: Path) -> None:
    from pytest_lmms.media import MediaPrefetcher

    cache = FrameCache()
    videos = [MediaRef("video", write_video(tmp_path / f"v{i}.mp4", n_frames=12 + i)) for i in range(3)]
    requests = [_video_request(f"{v}-{q}", video) for v, video in enumerate(videos) for q in range(3)]
    prefetcher = MediaPrefetcher(threads=2, cache=cache, max_ahead=1, stale_s=600)
    try:
        assert prefetcher.submit(requests) == 3  # nine questions, three videos
        _wait_for(lambda: prefetcher.decoded == 1, "the first decode")
        # one decoded video waits unused: nothing more is decoded until it is used
        assert cache.decodes == 1 and len(prefetcher._queue) == 2
        for request in requests:  # the backend reads every question's frames in order
            part = request.messages[0].content[0]
            assert isinstance(part, MediaPart)
            cache.frames(part.media, part.sampling)
        assert cache.decodes == 3
        assert prefetcher.submit(requests) == 0  # already seen
    finally:
        prefetcher.close()
    assert cache.on_use is None


def test_a_video_the_prefetcher_cannot_decode_is_left_to_the_backend(tmp_path: Path) -> None:
    from pytest_lmms.media import MediaPrefetcher

    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00" * 64)
    cache = FrameCache()
    prefetcher = MediaPrefetcher(threads=1, cache=cache)
    try:
        prefetcher.submit([_video_request("0", MediaRef("video", broken))])
        _wait_for(lambda: prefetcher.errors == 1, "the failed decode")
        with pytest.raises(MediaError, match="broken.mp4"):
            cache.frames(MediaRef("video", broken), VideoSampling(num_frames=4))
    finally:
        prefetcher.close()


def write_long_video(
    path: Path, n_frames: int = 1200, fps: int = 30, size: tuple[int, int] = (64, 32)
) -> Path:
    """Grey halves that spell the frame index: left (i % 50) * 5, right (i // 50) * 10;
    a keyframe every 30 frames."""
    width, height = size
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.options = {
            "qp": "0",
            "preset": "ultrafast",
            "g": "30",
            "keyint_min": "30",
            "sc_threshold": "0",
        }
        for i in range(n_frames):
            image = np.zeros((height, width, 3), dtype=np.uint8)
            image[:, : width // 2] = (i % 50) * 5
            image[:, width // 2 :] = (i // 50) * 10
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def long_ids(frames: np.ndarray) -> list[int]:
    half = frames.shape[2] // 2
    left, right = frames[:, :, 4 : half - 4], frames[:, :, half + 4 : -4]
    return [
        round(float(a.mean()) / 5) + 50 * round(float(b.mean()) / 10)
        for a, b in zip(left, right, strict=True)
    ]


def test_pyav_seeks_to_keyframes_and_finds_the_same_frames(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from pytest_lmms.media import _video

    video = MediaRef("video", write_long_video(tmp_path / "long.mp4"))  # a keyframe every 30
    sampling = VideoSampling(num_frames=4)
    expected = sample_indices(1200, 30.0, sampling)
    seeks: list[list[bool]] = []
    real = _video._pyav_seeking

    def counted(container, stream, wanted, plan, fps):  # type: ignore[no-untyped-def]
        seeks.append(plan)
        return real(container, stream, wanted, plan, fps)

    monkeypatch.setattr(_video, "_pyav_seeking", counted)
    seeking = decode_video(video, sampling, decoder="pyav")
    assert seeks == [[True, True, True, True]]  # each wanted frame is in another interval
    assert long_ids(seeking) == expected
    monkeypatch.setattr(_video, "SEEK_SLACK", 10**9)  # decode through instead
    sequential = decode_video(video, sampling, decoder="pyav")
    assert len(seeks) == 1 and long_ids(sequential) == expected
    if "torchcodec" in available_decoders():
        assert long_ids(decode_video(video, sampling, decoder="torchcodec")) == expected


def test_pyav_reads_the_keyframes_from_the_index(tmp_path: Path) -> None:
    from pytest_lmms.media._video import _stream_info

    with av.open(str(write_long_video(tmp_path / "long.mp4", n_frames=300))) as container:
        info = _stream_info(container.streams.video[0])
    assert (info.width, info.height, info.frames, info.fps) == (64, 32, 300, 30.0)
    assert info.keyframes == tuple(range(0, 300, 30)) and info.keyframe_interval == 30


@pytest.mark.parametrize(
    ("wanted", "keyframes", "seeks", "decoded"),
    [
        ([10, 100, 200], (0, 50, 100, 150), [False, True, True], 11 + 1 + 51),
        ([10, 12, 14], (0, 50), [False, False, False], 15),  # one interval: decode through
        ([3, 10], (0, 8), [False, False], 11),  # a seek would skip too few frames
        ([10, 600], (), [False, True], 11 + 101),  # no index: keyframes taken 250 apart
    ],
)
def test_seek_plan(wanted: list[int], keyframes: tuple[int, ...], seeks: list[bool], decoded: int) -> None:
    from pytest_lmms.media._video import seek_plan

    assert seek_plan(wanted, keyframes) == (seeks, decoded)


def _info(width: int, height: int, frames: int = 1800, keyframe_every: int = 50) -> VideoInfo:
    return VideoInfo(width, height, frames, 30.0, tuple(range(0, frames, keyframe_every)))


@pytest.mark.parametrize(
    ("info", "n", "expected"),
    [
        (_info(1280, 720), 8, "pyav"),  # sparse: one frame every 4.5 keyframe intervals
        (_info(1280, 720), 32, "pyav"),  # about one frame per interval
        (_info(1280, 720), 128, "torchcodec"),  # 3.6 per interval at 720p
        (_info(1920, 1080, frames=300), 32, "torchcodec"),
        (_info(426, 240), 128, "pyav"),  # small frames: PyAV at any density
        (_info(854, 480, frames=300), 128, "pyav"),
        (VideoInfo(1280, 720, 1800, 30.0), 128, "torchcodec"),  # no index: 250 apart
        (VideoInfo(1280, 720, 18000, 30.0), 32, "pyav"),
    ],
)
def test_the_default_decoder_rule(info: VideoInfo, n: int, expected: str) -> None:
    wanted = sample_indices(info.frames, info.fps, VideoSampling(num_frames=n))
    assert choose_decoder(info, wanted, ["torchcodec", "pyav"]) == expected
    assert choose_decoder(info, wanted, ["pyav"]) == "pyav"
    assert choose_decoder(info, wanted, ["torchcodec"]) == "torchcodec"


@pytest.mark.parametrize("n", [4, 40])
def test_the_default_returns_the_frames_of_both_decoders(tmp_path: Path, n: int) -> None:
    if len(available_decoders()) < 2:
        pytest.skip("needs torchcodec and PyAV")
    # 1280x720 so that dense sampling chooses torchcodec and sparse sampling PyAV
    video = MediaRef("video", write_long_video(tmp_path / "long.mp4", n_frames=240, size=(1280, 720)))
    sampling = VideoSampling(num_frames=n)
    chosen = auto_decoder(video, sampling)
    assert chosen == ("torchcodec" if n == 40 else "pyav")
    expected = sample_indices(240, 30.0, sampling)
    for decoder in ("auto", "torchcodec", "pyav"):
        assert long_ids(decode_video(video, sampling, decoder=decoder)) == expected, decoder  # type: ignore[arg-type]
