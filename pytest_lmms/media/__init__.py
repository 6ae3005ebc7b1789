"""Media: video frame sampling and decoding (torchcodec, PyAV), and the frame cache."""

from pytest_lmms.media._video import (
    FRAME_CACHE,
    FrameCache,
    Frames,
    MediaError,
    available_decoders,
    decode_video,
    frames_as_png,
    sample_indices,
    video_as_images,
)

__all__ = [
    "FRAME_CACHE",
    "FrameCache",
    "Frames",
    "MediaError",
    "available_decoders",
    "decode_video",
    "frames_as_png",
    "sample_indices",
    "video_as_images",
]
