"""``sglang``: launch SGLang's server (or attach with ``base_url``) and query it like ``openai``.

    --model=sglang:Qwen/Qwen2.5-VL-7B-Instruct --model-args tensor_parallel_size=2

sglang itself is never imported: the server is a subprocess (``executable``, default
``python -m sglang.launch_server``).
"""

from __future__ import annotations

import sys
from typing import ClassVar

from pytest_lmms.models._registry import register_model
from pytest_lmms.models._served import ServedBackend


@register_model("sglang")
class SGLangBackend(ServedBackend):
    name = "sglang"
    SERVER_FLAGS: ClassVar[dict[str, str]] = {
        "tensor_parallel_size": "--tp-size",
        "max_model_len": "--context-length",
        "gpu_memory_utilization": "--mem-fraction-static",
        "chat_template": "--chat-template",
        "dtype": "--dtype",
        "revision": "--revision",
        "trust_remote_code": "--trust-remote-code",
    }

    def command(self, port: int) -> list[str]:
        executable = self.launch_args.get("executable") or f"{sys.executable} -m sglang.launch_server"
        return [
            *executable.split(),
            "--model-path",
            self.model_id,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--served-model-name",
            self.model_id,
            *self.server_flags(),
        ]
