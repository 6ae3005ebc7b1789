"""The cost of multiple choice by likelihood on the embedded tiny model, with and without
context sharing.

    python benchmarks/perf/loglikelihood.py [--docs 16] [--options 4] [--image-side 224] [--repeats 3]

Each document is an image and a question, with N options (a few tokens each). With context
sharing (the hf backend's default) the context, image tokens included, runs through the
model once per document and only the options' tokens run again, batched over the repeated
key/value cache; with ``share_context=false`` each option is one full forward pass over
context + option. Prints the best-of-``repeats`` wall time of each, the ratio, and the largest
difference between the two sets of log-probabilities (they must agree). Runs offline, on CPU.
"""

from __future__ import annotations

import argparse
import io
import os
import time
from pathlib import Path

from pytest_lmms.types import MediaPart, MediaRef, Message, Request, TextPart

WORDS = ("red", "dark blue", "a green square", "yellow circles", "white", "two black dots", "grey", "pink")


def image(side: int, seed: int) -> bytes:
    from PIL import Image

    colour = ((seed * 67) % 256, (seed * 131) % 256, (seed * 29) % 256)
    buffer = io.BytesIO()
    Image.new("RGB", (side, side), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def requests(docs: int, options: int, side: int) -> list[Request]:
    out = []
    for doc in range(docs):
        parts = (MediaPart(MediaRef("image", image(side, doc))), TextPart(f"Question {doc}: what is shown?"))
        messages = (Message("user", parts),)
        for option in range(options):
            continuation = WORDS[option % len(WORDS)]
            out.append(Request("perf", str(doc), messages, kind="loglikelihood", continuation=continuation))
    return out


def timed(share: bool, batch: list[Request], repeats: int) -> tuple[float, list[float]]:
    from pytest_lmms.models.hf import HFBackend

    backend = HFBackend("tiny-qwen2-vl", share_context=str(share).lower(), batch_size="64")
    backend.generate(batch[:1])  # load the model outside the timing
    best = float("inf")
    values: list[float] = []
    for _ in range(repeats):
        started = time.perf_counter()
        answers = backend.generate(batch)
        best = min(best, time.perf_counter() - started)
        values = [a.logprob for a in answers if not isinstance(a, BaseException) and a.logprob is not None]
    backend.close()
    if len(values) != len(batch):
        raise SystemExit("some requests failed")
    return best, values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=16)
    parser.add_argument("--options", type=int, default=4)
    parser.add_argument("--image-side", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from pytest_lmms.models._tiny import tiny_model_path

    print(f"tiny model: {Path(tiny_model_path()).name}")
    batch = requests(args.docs, args.options, args.image_side)
    shared, shared_values = timed(True, batch, args.repeats)
    alone, alone_values = timed(False, batch, args.repeats)
    difference = max(abs(a - b) for a, b in zip(shared_values, alone_values, strict=True))
    pairs = len(batch)
    print(f"{args.docs} documents x {args.options} options ({pairs} pairs), images {args.image_side} px")
    print(f"context shared:         {shared:.3f} s  ({1000 * shared / pairs:.2f} ms per pair)")
    print(f"independent passes:     {alone:.3f} s  ({1000 * alone / pairs:.2f} ms per pair)")
    print(f"ratio independent/shared: {alone / shared:.2f}x")
    print(f"largest log-probability difference: {difference:.2e} nats")


if __name__ == "__main__":
    main()
