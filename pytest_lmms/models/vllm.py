"""``vllm``: launch ``vllm serve`` (or attach with ``base_url``) and query it like ``openai``.

    --model=vllm:Qwen/Qwen2.5-VL-7B-Instruct --model-args tensor_parallel_size=2,max_model_len=32768

vllm itself is never imported: the server is a subprocess (``executable``, default
``vllm``).
"""

from __future__ import annotations

from typing import ClassVar

from pytest_lmms.models._registry import register_model
from pytest_lmms.models._served import ServedBackend


@register_model("vllm")
class VLLMBackend(ServedBackend):
    name = "vllm"
    SERVER_FLAGS: ClassVar[dict[str, str]] = {
        "tensor_parallel_size": "--tensor-parallel-size",
        "pipeline_parallel_size": "--pipeline-parallel-size",
        "max_model_len": "--max-model-len",
        "gpu_memory_utilization": "--gpu-memory-utilization",
        "max_num_seqs": "--max-num-seqs",
        "limit_mm_per_prompt": "--limit-mm-per-prompt",
        "chat_template": "--chat-template",
        "dtype": "--dtype",
        "revision": "--revision",
        "trust_remote_code": "--trust-remote-code",
    }

    def command(self, port: int) -> list[str]:
        executable = self.launch_args.get("executable", "vllm")
        return [
            *executable.split(),
            "serve",
            self.model_id,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--served-model-name",
            self.model_id,
            *self.server_flags(),
        ]
