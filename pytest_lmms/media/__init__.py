"""Media: video frame sampling and decoding (torchcodec, PyAV), the frame cache, audio."""

from pytest_lmms.media._audio import Samples, as_wav, decode_audio, decoded_cell_bytes, wav_bytes
from pytest_lmms.media._folders import media_folder
from pytest_lmms.media._lance import LanceError, LanceMediaStore, MediaEntry, PackSummary, pack
from pytest_lmms.media._prefetch import MediaPrefetcher
from pytest_lmms.media._video import (
    FRAME_CACHE,
    FrameCache,
    Frames,
    MediaError,
    VideoInfo,
    auto_decoder,
    available_decoders,
    choose_decoder,
    decode_video,
    frames_as_png,
    sample_indices,
    video_as_images,
)

__all__ = [
    "Samples",
    "as_wav",
    "decode_audio",
    "decoded_cell_bytes",
    "wav_bytes",
    "media_folder",
    "LanceError",
    "LanceMediaStore",
    "MediaEntry",
    "PackSummary",
    "pack",
    "FRAME_CACHE",
    "FrameCache",
    "Frames",
    "MediaError",
    "MediaPrefetcher",
    "VideoInfo",
    "auto_decoder",
    "available_decoders",
    "choose_decoder",
    "decode_video",
    "frames_as_png",
    "sample_indices",
    "video_as_images",
]
