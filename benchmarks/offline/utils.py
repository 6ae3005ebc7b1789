"""The offline shapes benchmark: documents, images and prompts, all generated deterministically.

Each image is rendered from its document (shape list, colours, positions), so the dataset
file holds only small JSON rows and every machine renders the same pixels.
``python benchmarks/offline/utils.py`` rewrites the ``shapes_*.jsonl`` files; a test
checks that the shipped files equal a fresh generation.
"""

from __future__ import annotations

import io
import json
import random
from pathlib import Path
from typing import Any

from pytest_lmms.types import MediaRef

SIZE = 96
COLORS = {"red": (220, 40, 40), "blue": (40, 80, 220), "green": (40, 170, 60), "yellow": (230, 200, 30)}
SHAPES = ("circle", "square", "triangle")
N_IMAGES = 40


def _place(rng: random.Random, n: int, radius: int) -> list[tuple[int, int]]:
    spots: list[tuple[int, int]] = []
    while len(spots) < n:
        x, y = rng.randint(radius + 2, SIZE - radius - 3), rng.randint(radius + 2, SIZE - radius - 3)
        if all((x - a) ** 2 + (y - b) ** 2 > (2 * radius + 3) ** 2 for a, b in spots):
            spots.append((x, y))
    return spots


def make_scene(index: int) -> dict[str, Any]:
    rng = random.Random(f"shapes-{index}")
    counts = {shape: rng.randint(0, 3) for shape in SHAPES}
    if sum(counts.values()) == 0:
        counts["circle"] = 1
    color = rng.choice(sorted(COLORS))
    objects = []
    spots = _place(rng, sum(counts.values()), radius=8)
    for shape in SHAPES:
        for _ in range(counts[shape]):
            x, y = spots.pop()
            objects.append({"shape": shape, "x": x, "y": y, "r": 8})
    return {"image_id": f"img{index:03d}", "color": color, "objects": objects, "counts": counts}


def render(scene: dict[str, Any]) -> bytes:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (SIZE, SIZE), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    fill = COLORS[scene["color"]]
    for obj in scene["objects"]:
        x, y, r = obj["x"], obj["y"], obj["r"]
        if obj["shape"] == "circle":
            draw.ellipse((x - r, y - r, x + r, y + r), fill=fill)
        elif obj["shape"] == "square":
            draw.rectangle((x - r, y - r, x + r, y + r), fill=fill)
        else:
            draw.polygon([(x, y - r), (x - r, y + r), (x + r, y + r)], fill=fill)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False)
    return buffer.getvalue()


def documents() -> list[dict[str, Any]]:
    docs = []
    for index in range(N_IMAGES):
        scene = make_scene(index)
        for shape in ("circle", "square"):
            docs.append(
                {
                    "id": f"{scene['image_id']}-count-{shape}",
                    "image_id": scene["image_id"],
                    "question_type": "count",
                    "shape": shape,
                    "answer": str(scene["counts"][shape]),
                    "scene": scene,
                }
            )
        colors = sorted(COLORS)
        docs.append(
            {
                "id": f"{scene['image_id']}-color",
                "image_id": scene["image_id"],
                "question_type": "color",
                "options": colors,
                "answer": "ABCD"[colors.index(scene["color"])],
                "scene": scene,
            }
        )
    return docs


def write(folder: Path) -> list[Path]:
    """Write ``shapes_count.jsonl`` and ``shapes_color.jsonl`` into ``folder``."""
    paths = []
    for kind in ("count", "color"):
        path = folder / f"shapes_{kind}.jsonl"
        with open(path, "w") as handle:
            for doc in documents():
                if doc["question_type"] == kind:
                    handle.write(json.dumps(doc, sort_keys=True) + "\n")
        paths.append(path)
    return paths


def image_of(doc: dict[str, Any]) -> MediaRef:
    scene = doc["scene"]
    return MediaRef("image", lambda: render(scene), mime="image/png")


def count_messages(doc: dict[str, Any]) -> list[dict[str, Any]]:
    question = f"How many {doc['shape']}s are in the image? Answer with a single number."
    content = [{"type": "image", "image": image_of(doc)}, {"type": "text", "text": question}]
    return [{"role": "user", "content": content}]


def color_messages(doc: dict[str, Any]) -> list[dict[str, Any]]:
    options = "\n".join(f"{letter}. {name}" for letter, name in zip("ABCD", doc["options"], strict=True))
    question = (
        "What color are the shapes in the image?\n"
        f"{options}\n"
        "Answer with the option's letter from the given choices directly."
    )
    content = [{"type": "image", "image": image_of(doc)}, {"type": "text", "text": question}]
    return [{"role": "user", "content": content}]


# ---- likelihood variants (shapes_ppl.yaml): the options' names are the continuations ----


def color_name_messages(doc: dict[str, Any]) -> list[dict[str, Any]]:
    question = "What color are the shapes in the image? Answer with the color's name."
    content = [{"type": "image", "image": image_of(doc)}, {"type": "text", "text": question}]
    return [{"role": "user", "content": content}]


def caption_messages(doc: dict[str, Any]) -> list[dict[str, Any]]:
    content = [{"type": "image", "image": image_of(doc)}, {"type": "text", "text": "Describe the image."}]
    return [{"role": "user", "content": content}]


def caption(doc: dict[str, Any]) -> str:
    """What the image holds, in words: the text whose perplexity shapes_caption_ppl measures."""
    counts = doc["scene"]["counts"]
    parts = [f"{counts[shape]} {shape}{'' if counts[shape] == 1 else 's'}" for shape in SHAPES]
    return f"{parts[0]}, {parts[1]} and {parts[2]}, all {doc['scene']['color']}."


if __name__ == "__main__":
    write(Path(__file__).parent)
