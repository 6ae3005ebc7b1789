"""The offline motion benchmark: short synthetic videos of a moving square, three questions
each (direction, colour, starting corner), generated deterministically.

``python benchmarks/offline/motion.py`` (needs PyAV) rewrites ``videos/*.mp4`` and
``motion.jsonl``; the videos are shipped, so running the task needs only a decoder.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

SIZE, FRAMES, FPS, SIDE = 64, 24, 8, 12
COLORS = {"red": (220, 40, 40), "blue": (40, 80, 220), "green": (40, 170, 60), "yellow": (230, 200, 30)}
DIRECTIONS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
CORNERS = ["top-left", "top-right", "bottom-left", "bottom-right"]
N_VIDEOS = 12
HERE = Path(__file__).parent


def scene(index: int) -> dict[str, Any]:
    rng = random.Random(f"motion-{index}")
    direction = sorted(DIRECTIONS)[index % 4]
    color = rng.choice(sorted(COLORS))
    dx, dy = DIRECTIONS[direction]
    travel = SIZE - SIDE - 8
    # start where the motion has room, in a corner chosen at random along the other axis
    x0 = 4 if dx > 0 else (SIZE - SIDE - 4 if dx < 0 else rng.choice([4, SIZE - SIDE - 4]))
    y0 = 4 if dy > 0 else (SIZE - SIDE - 4 if dy < 0 else rng.choice([4, SIZE - SIDE - 4]))
    corner = ("top" if y0 < SIZE / 2 else "bottom") + "-" + ("left" if x0 < SIZE / 2 else "right")
    return {
        "video_id": f"motion{index:02d}",
        "direction": direction,
        "color": color,
        "x0": x0,
        "y0": y0,
        "travel": travel,
        "corner": corner,
    }


def write_video(path: Path, spec: dict[str, Any]) -> None:
    import av
    import numpy as np

    dx, dy = DIRECTIONS[spec["direction"]]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = SIZE, SIZE, "yuv420p"
        stream.options = {"qp": "0", "preset": "ultrafast", "bf": "0"}
        for t in range(FRAMES):
            image = np.full((SIZE, SIZE, 3), 255, dtype=np.uint8)
            x = spec["x0"] + round(dx * spec["travel"] * t / (FRAMES - 1))
            y = spec["y0"] + round(dy * spec["travel"] * t / (FRAMES - 1))
            image[y : y + SIDE, x : x + SIDE] = COLORS[spec["color"]]
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def documents() -> list[dict[str, Any]]:
    docs = []
    for index in range(N_VIDEOS):
        spec = scene(index)
        video = f"videos/{spec['video_id']}.mp4"
        for kind, options, answer in (
            ("direction", sorted(DIRECTIONS), spec["direction"]),
            ("color", sorted(COLORS), spec["color"]),
            ("corner", CORNERS, spec["corner"]),
        ):
            docs.append(
                {
                    "id": f"{spec['video_id']}-{kind}",
                    "video_id": spec["video_id"],
                    "video": video,
                    "question_type": kind,
                    "options": options,
                    "answer": "ABCD"[options.index(answer)],
                }
            )
    return docs


QUESTIONS = {
    "direction": "In which direction does the square move?",
    "color": "What color is the moving square?",
    "corner": "In which corner of the frame does the square start?",
}


def motion_messages(doc: dict[str, Any]) -> list[dict[str, Any]]:
    from pytest_lmms.types import MediaPart, MediaRef, VideoSampling

    options = "\n".join(f"{letter}. {text}" for letter, text in zip("ABCD", doc["options"], strict=True))
    video = MediaPart(
        MediaRef("video", HERE / doc["video"], mime="video/mp4"), "video", VideoSampling(num_frames=4)
    )
    question = f"{QUESTIONS[doc['question_type']]}\n{options}\nAnswer with the option's letter from the given choices directly."
    return [{"role": "user", "content": [video, {"type": "text", "text": question}]}]


def write(folder: Path) -> None:
    (folder / "videos").mkdir(parents=True, exist_ok=True)
    for index in range(N_VIDEOS):
        spec = scene(index)
        write_video(folder / "videos" / f"{spec['video_id']}.mp4", spec)
    with open(folder / "motion.jsonl", "w") as handle:
        for doc in documents():
            handle.write(json.dumps(doc, sort_keys=True) + "\n")


if __name__ == "__main__":
    write(HERE)
