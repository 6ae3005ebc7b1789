"""Video frames: which to sample, decoding them (torchcodec or PyAV, whichever is faster for
the video and the frames asked, the other as the fallback), and a bounded in-process cache
so a video asked about by several questions is decoded once."""

from __future__ import annotations

import bisect
import io
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from pytest_lmms.types import MediaPart, MediaRef, VideoSampling

Frames = npt.NDArray[np.uint8]  # (n, height, width, 3), RGB
DecoderName = Literal["auto", "torchcodec", "pyav"]


class MediaError(RuntimeError):
    """A medium that cannot be read or decoded; the message names it and the decoder's error."""


def sample_indices(total_frames: int, average_fps: float | None, sampling: VideoSampling) -> list[int]:
    """Frame indices to decode, in increasing order.

    ``num_frames``: the centres of ``num_frames`` equal segments (every frame when the video
    is shorter), the last one moved to the final frame when ``force_last``. ``fps``: one
    frame every ``average_fps / fps`` frames from the first, thinned uniformly to at most
    ``max_frames``.
    """
    if total_frames <= 0:
        raise MediaError("the video has no frames")
    if sampling.num_frames is not None:
        n = min(sampling.num_frames, total_frames)
        indices = [int((i + 0.5) * total_frames / n) for i in range(n)]
        if sampling.force_last:
            indices[-1] = total_frames - 1
        return sorted(set(indices))
    assert sampling.fps is not None
    if not average_fps or average_fps <= 0:
        raise MediaError("fps sampling needs the video's frame rate, which it does not state")
    step = average_fps / sampling.fps
    indices = [int(i * step) for i in range(int(total_frames / step + 1e-9) or 1)]
    indices = [i for i in indices if i < total_frames]
    if len(indices) > sampling.max_frames:
        picks = np.linspace(0, len(indices) - 1, sampling.max_frames).round().astype(int)
        indices = [indices[i] for i in picks]
    return sorted(set(indices))


def _source(media: MediaRef) -> Any:
    return str(media.path) if media.path is not None else media.read_bytes()


def _decode_torchcodec(media: MediaRef, sampling: VideoSampling) -> Frames:
    from torchcodec.decoders import VideoDecoder

    # num_ffmpeg_threads=0 lets FFmpeg pick its thread count; "exact" seeking (a scan of the
    # packet index at open) was 30% faster than "approximate" for 32 of 300 frames at 720p,
    # as it seeks straight to the keyframe before each wanted frame
    decoder = VideoDecoder(_source(media), dimension_order="NHWC", seek_mode="exact", num_ffmpeg_threads=0)
    metadata = decoder.metadata
    total = metadata.num_frames if metadata.num_frames is not None else len(decoder)
    indices = sample_indices(int(total), metadata.average_fps, sampling)
    batch = decoder.get_frames_at(indices=indices)
    return np.ascontiguousarray(batch.data.numpy())


# Without a keyframe index, seek (rather than decode through) when the next wanted frame is
# this many frames ahead: x264's default keyframe interval, so a seek usually skips a GOP.
PYAV_SEEK_GAP = 250
# With the index, seek when that skips more than this many frames: a seek restarts the
# decoder's frame threads, which costs about as much as decoding a few frames.
SEEK_SLACK = 4


@dataclass(frozen=True, slots=True)
class VideoInfo:
    """What the container states about a video stream, read without decoding a frame."""

    width: int
    height: int
    frames: int  # 0 when the container does not state it
    fps: float | None
    # frame indices of the keyframes, from the container's index (MP4 sample table, MKV
    # cues); empty when the container has no index
    keyframes: tuple[int, ...] = ()

    @property
    def keyframe_interval(self) -> float | None:
        if len(self.keyframes) < 2 or not self.frames:
            return None
        return self.frames / len(self.keyframes)


def _stream_info(stream: Any) -> VideoInfo:
    fps = float(stream.average_rate) if stream.average_rate else None
    keyframes: tuple[int, ...] = ()
    if fps and stream.time_base:
        try:
            entries = stream.index_entries
            # index timestamps are decode times: counted from the first entry they give
            # presentation order for closed GOPs, whatever the B-frame delay
            origin = entries[0].timestamp if len(entries) else 0
            frame_ticks = 1 / (float(stream.time_base) * fps)
            keyframes = tuple(
                round((entry.timestamp - origin) / frame_ticks) for entry in entries if entry.is_keyframe
            )
        except Exception:  # noqa: BLE001 - an index PyAV cannot read: decode without one
            keyframes = ()
    return VideoInfo(int(stream.width), int(stream.height), int(stream.frames or 0), fps, keyframes)


def seek_plan(wanted: Sequence[int], keyframes: Sequence[int]) -> tuple[list[bool], int]:
    """Whether to seek before each wanted frame, and the frames decoded in all.

    A seek lands on the keyframe at or before the target and pays when it skips more than
    ``SEEK_SLACK`` frames the decoder would otherwise decode. Without a keyframe index the
    keyframes are taken ``PYAV_SEEK_GAP`` apart.
    """
    seeks: list[bool] = []
    decoded = 0
    position = -1  # the last frame decoded
    for target in wanted:
        keyframe = _keyframe_at_or_before(target, keyframes)
        seek = keyframe - position - 1 > SEEK_SLACK
        seeks.append(seek)
        decoded += target - (keyframe - 1 if seek else position)
        position = target
    return seeks, decoded


def _keyframe_at_or_before(target: int, keyframes: Sequence[int]) -> int:
    if not keyframes:
        return target - target % PYAV_SEEK_GAP
    return keyframes[max(bisect.bisect_right(keyframes, target) - 1, 0)]


class _NoTimestamps(Exception):
    """Frames without timestamps (or a seek that overshot): their index is unknown."""


def _decode_pyav(media: MediaRef, sampling: VideoSampling) -> Frames:
    import av

    source = str(media.path) if media.path is not None else io.BytesIO(media.read_bytes())
    with av.open(source, mode="r") as container:
        stream = container.streams.video[0]
        return _decode_pyav_open(container, stream, _stream_info(stream), sampling)


def _decode_pyav_open(container: Any, stream: Any, info: VideoInfo, sampling: VideoSampling) -> Frames:
    stream.thread_type = "AUTO"  # frame and slice threads: about 20% faster here
    total = info.frames
    if not total:  # containers that do not state a frame count: count by decoding
        for _ in container.decode(stream):
            total += 1
        container.seek(0)
    wanted = sample_indices(total, info.fps, sampling)
    frames: list[Frames] = []
    seeks, _ = seek_plan(wanted, info.keyframes)
    if info.fps and stream.time_base and any(seeks):
        try:
            frames = _pyav_seeking(container, stream, wanted, seeks, info.fps)
        except _NoTimestamps:
            container.seek(0)
            frames = []
    if not frames:
        frames = _pyav_sequential(container, stream, wanted)
    if not frames:
        raise MediaError("no frame could be decoded")
    return np.stack(frames)


def _pyav_sequential(container: Any, stream: Any, wanted: list[int]) -> list[Frames]:
    """Decode from the start, keeping the wanted frames (exact frame counting)."""
    wanted_set = set(wanted)
    frames: list[Frames] = []
    for index, frame in enumerate(container.decode(stream)):
        if index in wanted_set:
            frames.append(np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.uint8))
            if len(frames) == len(wanted):
                break
    return frames


def _pyav_seeking(
    container: Any, stream: Any, wanted: list[int], seeks: list[bool], fps: float
) -> list[Frames]:
    """Jump to the keyframe before a wanted frame where ``seeks`` says so, then decode up
    to it; a frame's index is its timestamp times the frame rate (constant-rate video)."""
    start = stream.start_time or 0
    seconds_per_tick = float(stream.time_base)
    frames: list[Frames] = []
    position = -1  # index of the last frame decoded
    decoded = iter(container.decode(stream))
    for target, seek in zip(wanted, seeks, strict=True):
        if seek:
            container.seek(start + int(target / fps / seconds_per_tick), stream=stream, backward=True)
            decoded = iter(container.decode(stream))
            position = -1
        for frame in decoded:
            if frame.pts is None:
                raise _NoTimestamps
            index = round((frame.pts - start) * seconds_per_tick * fps)
            if position < 0 and index > target:  # landed after the target: indices unknown
                raise _NoTimestamps
            position = index
            if position >= target:
                frames.append(np.asarray(frame.to_ndarray(format="rgb24"), dtype=np.uint8))
                break
    if len(frames) != len(wanted):
        raise _NoTimestamps
    return frames


def _resize(frames: Frames, max_side: int | None) -> Frames:
    if max_side is None or max(frames.shape[1:3]) <= max_side:
        return frames
    from PIL import Image

    height, width = frames.shape[1:3]
    scale = max_side / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.stack([np.asarray(Image.fromarray(f).resize(size, Image.Resampling.BICUBIC)) for f in frames])


def available_decoders() -> list[str]:
    found = []
    try:
        import torchcodec.decoders  # noqa: F401

        found.append("torchcodec")
    except Exception:  # noqa: BLE001 - a missing or broken install (FFmpeg libraries) alike
        pass
    try:
        import av  # noqa: F401

        found.append("pyav")
    except ImportError:
        pass
    return found


# The rule of decoder="auto", from benchmarks/perf/video_decode.py on 2 CPU cores (H.264,
# 240p to 1080p, 10 s to 300 s, keyframes every 50 and 164 frames on average, 8 to 128
# frames): both decoders seek to the keyframe before a wanted frame and decode from there,
# so they decode the same frames; what differs is the cost per frame. PyAV was as fast or
# faster (up to 1.5x) whenever at most about one frame is wanted per keyframe interval, and
# at every size up to 480p; torchcodec was faster (1.2x to 1.5x) at 720p and above when
# several frames are wanted per interval, where it converts a batch of large frames at once.
TORCHCODEC_MIN_PIXELS = 960 * 540
TORCHCODEC_MIN_FRAMES_PER_KEYFRAME = 2.0


def choose_decoder(info: VideoInfo, wanted: Sequence[int], available: Sequence[str]) -> str:
    """The faster of the available decoders for these frames of this video (the rule above)."""
    if "pyav" not in available or "torchcodec" not in available:
        return available[0]
    if not wanted:
        return "pyav"
    first, last = wanted[0], wanted[-1]
    if info.keyframes:  # the keyframe intervals the wanted frames fall in
        opening = _keyframe_at_or_before(first, info.keyframes)
        intervals = sum(1 for k in info.keyframes if opening <= k <= last)
    else:
        intervals = 1 + (last - first) // PYAV_SEEK_GAP
    per_keyframe = len(wanted) / max(intervals, 1)
    large = info.width * info.height >= TORCHCODEC_MIN_PIXELS
    return "torchcodec" if large and per_keyframe >= TORCHCODEC_MIN_FRAMES_PER_KEYFRAME else "pyav"


def _decode_auto(media: MediaRef, sampling: VideoSampling, available: Sequence[str]) -> tuple[str, Frames]:
    """Read the stream's metadata with PyAV (no frame decoded), choose the decoder, decode;
    the container stays open for PyAV so the choice costs one open of the file."""
    import av

    source = str(media.path) if media.path is not None else io.BytesIO(media.read_bytes())
    with av.open(source, mode="r") as container:
        stream = container.streams.video[0]
        info = _stream_info(stream)
        wanted = sample_indices(info.frames, info.fps, sampling) if info.frames else []
        name = choose_decoder(info, wanted, available) if wanted else "pyav"
        if name == "pyav":
            return name, _decode_pyav_open(container, stream, info, sampling)
    return name, _DECODERS[name](media, sampling)


_DECODERS = {"torchcodec": _decode_torchcodec, "pyav": _decode_pyav}


def decode_video(
    media: MediaRef, sampling: VideoSampling | None = None, decoder: DecoderName = "auto"
) -> Frames:
    """The sampled frames of a video as uint8 RGB, (n, height, width, 3).

    ``decoder="auto"`` decodes with the faster decoder for this video and these frames
    (``choose_decoder``) and falls back to the other one when it fails.
    """
    sampling = sampling or VideoSampling()
    names: list[str] = available_decoders() if decoder == "auto" else [decoder]
    if not names:
        raise MediaError("no video decoder: install torchcodec (with FFmpeg) or av (pip install av)")
    where = str(media.path) if media.path is not None else f"video {media.content_hash[:12]}"
    errors = []
    if decoder == "auto" and len(names) > 1:
        try:
            name, frames = _decode_auto(media, sampling, names)
            return _resize(frames, sampling.max_side)
        except Exception:  # noqa: BLE001 - the chosen decoder failed: try each, as named below
            pass
    for name in names:
        try:
            return _resize(_DECODERS[name](media, sampling), sampling.max_side)
        except MediaError as exc:
            errors.append(f"{name}: {exc}")
        except Exception as exc:  # noqa: BLE001 - the decoder's own error, named below
            errors.append(f"{name}: {type(exc).__name__}: {exc}")
    raise MediaError(f"cannot decode {where}: " + "; ".join(errors))


def auto_decoder(media: MediaRef, sampling: VideoSampling | None = None) -> str:
    """The decoder ``decode_video(decoder="auto")`` uses for these frames of this video."""
    import av

    names = available_decoders()
    source = str(media.path) if media.path is not None else io.BytesIO(media.read_bytes())
    with av.open(source, mode="r") as container:
        info = _stream_info(container.streams.video[0])
    wanted = sample_indices(info.frames, info.fps, sampling or VideoSampling()) if info.frames else []
    return choose_decoder(info, wanted, names) if wanted and len(names) > 1 else names[0]


class FrameCache:
    """Decoded frames by (content hash, sampling): an in-process LRU bounded by bytes, and
    optionally an on-disk cache (``diskcache``) shared by processes and kept across runs."""

    def __init__(self, max_bytes: int = 1 << 30) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple[str, tuple[Any, ...]], Frames] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()
        self._decoding: dict[tuple[str, tuple[Any, ...]], threading.Lock] = {}
        self._disk: Any = None
        self.hits = 0
        self.disk_hits = 0
        self.decodes = 0
        # called with the key of every frames() answered from memory (the prefetcher
        # learns that what it decoded ahead was used)
        self.on_use: Callable[[tuple[str, tuple[Any, ...]]], None] | None = None

    def __len__(self) -> int:
        """Decoded videos held in memory."""
        return len(self._items)

    def clear(self) -> None:
        """Forget the decoded frames held in memory (the disk cache, if any, is kept)."""
        with self._lock:
            self._items.clear()
            self._size = 0

    def use_disk(self, directory: str | Path | None, size_limit: int = 20 << 30) -> None:
        """Also keep frames in ``directory`` (None turns the disk cache off)."""
        if self._disk is not None:
            self._disk.close()
            self._disk = None
        if directory is not None:
            import diskcache

            self._disk = diskcache.Cache(str(directory), size_limit=size_limit)

    @staticmethod
    def key(media: MediaRef, sampling: VideoSampling | None = None) -> tuple[str, tuple[Any, ...]]:
        return (media.content_hash, tuple((sampling or VideoSampling()).as_dict().values()))

    def frames(
        self,
        media: MediaRef,
        sampling: VideoSampling | None = None,
        decoder: DecoderName = "auto",
        *,
        prefetch: bool = False,
    ) -> Frames:
        sampling = sampling or VideoSampling()
        key = self.key(media, sampling)
        with self._lock:
            found = self._get(key)
        if found is not None:
            if not prefetch and self.on_use is not None:
                self.on_use(key)
            return found
        with self._lock:
            gate = self._decoding.setdefault(key, threading.Lock())
            gate = self._decoding.setdefault(key, threading.Lock())
        with gate:  # two threads asking for one video decode it once
            with self._lock:
                found = self._get(key)
            if found is not None:
                if not prefetch and self.on_use is not None:
                    self.on_use(key)
                return found
            frames = self._from_disk(key)
            if frames is None:
                frames = decode_video(media, sampling, decoder)
                self._to_disk(key, frames)
                with self._lock:
                    self.decodes += 1
            frames.setflags(write=False)
            with self._lock:
                self._put(key, frames)
                self._decoding.pop(key, None)
            return frames

    def contains(self, media: MediaRef, sampling: VideoSampling | None = None) -> bool:
        key = self.key(media, sampling)
        with self._lock:
            return key in self._items

    def _disk_key(self, key: tuple[str, tuple[Any, ...]]) -> str:
        return f"frames/v1/{key[0]}/" + ",".join(map(str, key[1]))

    def _from_disk(self, key: tuple[str, tuple[Any, ...]]) -> Frames | None:
        if self._disk is None:
            return None
        try:
            stored = self._disk.get(self._disk_key(key))
            if stored is None:
                return None
            frames = np.load(io.BytesIO(stored), allow_pickle=False)
        except Exception:  # noqa: BLE001 - an unreadable entry is decoded again
            return None
        with self._lock:
            self.disk_hits += 1
        return np.asarray(frames, dtype=np.uint8)

    def _to_disk(self, key: tuple[str, tuple[Any, ...]], frames: Frames) -> None:
        if self._disk is None:
            return
        buffer = io.BytesIO()
        np.save(buffer, frames, allow_pickle=False)
        try:
            self._disk.set(self._disk_key(key), buffer.getvalue())
        except Exception as exc:  # noqa: BLE001 - a full or read-only disk must not fail a sample
            import warnings

            warnings.warn(f"frame cache: could not write to disk: {exc}", stacklevel=2)

    def _get(self, key: tuple[str, tuple[Any, ...]]) -> Frames | None:
        found = self._items.get(key)
        if found is not None:
            self._items.move_to_end(key)
            self.hits += 1
        return found

    def _put(self, key: tuple[str, tuple[Any, ...]], frames: Frames) -> None:
        if key in self._items:
            return
        self._items[key] = frames
        self._size += frames.nbytes
        while self._size > self.max_bytes and len(self._items) > 1:
            _, dropped = self._items.popitem(last=False)
            self._size -= dropped.nbytes


FRAME_CACHE = FrameCache()


def frames_as_png(frames: Frames) -> list[bytes]:
    from PIL import Image

    out = []
    for frame in frames:
        buffer = io.BytesIO()
        Image.fromarray(frame).save(buffer, format="PNG")
        out.append(buffer.getvalue())
    return out


def video_as_images(part: MediaPart) -> list[MediaPart]:
    """A video part as image parts, one per sampled frame (for backends that take images)."""
    frames = FRAME_CACHE.frames(part.media, part.sampling)
    pngs = frames_as_png(frames)
    return [MediaPart(MediaRef("image", png, mime="image/png"), "image") for png in pngs]
