"""A stand-in for ``vllm serve`` / ``sglang.launch_server``: the launch path without a GPU.

It accepts either command line, prints its arguments (so tests read them from the log),
and serves the fake OpenAI-compatible API with /health on the given port. Environment:
FAKE_SERVER_FAIL=1 exits with an error at start-up; FAKE_SERVER_DIE_AFTER=N exits after
answering N requests; FAKE_SERVER_PIDFILE=path records the process id; FAKE_SERVER_SLOW_START
sleeps that many seconds before listening.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fake_openai import FakeOpenAI  # noqa: E402


def main(argv: list[str]) -> None:
    print("fake model server argv:", " ".join(argv), flush=True)
    if os.environ.get("FAKE_SERVER_PIDFILE"):
        Path(os.environ["FAKE_SERVER_PIDFILE"]).write_text(str(os.getpid()))
    if os.environ.get("FAKE_SERVER_FAIL"):
        print("RuntimeError: CUDA out of memory (injected)", flush=True)
        sys.exit(3)
    time.sleep(float(os.environ.get("FAKE_SERVER_SLOW_START", "0")))
    port = int(argv[argv.index("--port") + 1])
    server = FakeOpenAI(port=port)
    die_after = int(os.environ.get("FAKE_SERVER_DIE_AFTER", "0"))
    if die_after:

        def maybe_die(seen: int) -> None:
            if seen >= die_after:
                print("fatal: engine died (injected)", flush=True)
                os._exit(9)

        server.on_request = maybe_die
    print(f"serving on {server.url}", flush=True)
    while True:
        time.sleep(3600)


if __name__ == "__main__":
    main(sys.argv[1:])
