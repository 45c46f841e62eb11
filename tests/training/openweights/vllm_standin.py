"""A small stateful stand-in for vLLM's OpenAI-compatible server with runtime LoRA updates, on loopback.

It answers as vLLM does where Flywheel depends on it: a second load of a loaded name is a 400,
a load from a path that does not exist is a 400 too, unloading an unknown name is a 404, the
models list names the base model and every loaded adapter, and a chat completion must name a
loaded model. ``faults`` makes a path answer a server error, as a struggling server would.
"""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

BASE_MODEL = "tiny-qwen2"


class StandIn:
    def __init__(self) -> None:
        self.adapters: dict[str, str] = {}
        self.requests: list[tuple[str, dict[str, Any]]] = []
        self.faults: dict[str, int] = {}  # path -> the status it answers instead
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self.handler())
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"

    def start(self) -> "StandIn":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def answer(self, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        self.requests.append((path, body))
        if path in self.faults:
            return self.faults[path], {"error": {"message": "The server is overloaded."}}
        if path == "/v1/load_lora_adapter":
            return self.load(body)
        if path == "/v1/unload_lora_adapter":
            if self.adapters.pop(str(body.get("lora_name")), None) is None:
                return 404, {"error": {"message": f"The lora adapter '{body.get('lora_name')}' cannot be found."}}
            return 200, {}
        if path == "/v1/models":
            names = [BASE_MODEL, *self.adapters]
            return 200, {"object": "list", "data": [{"id": n, "object": "model", "owned_by": "vllm"} for n in names]}
        if path == "/v1/chat/completions":
            return self.chat(body)
        return 404, {"error": {"message": "not found"}}

    def load(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        name, path = str(body.get("lora_name")), str(body.get("lora_path"))
        if name in self.adapters:
            return 400, {"error": {"message": f"The lora adapter '{name}' has already been loaded."}}
        if not (Path(path) / "adapter_config.json").is_file():
            return 400, {"error": {"message": f"No adapter found at {path}."}}
        self.adapters[name] = path
        return 200, {}

    def chat(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        model = str(body.get("model"))
        if model not in self.adapters and model != BASE_MODEL:
            return 404, {"error": {"message": f"The model `{model}` does not exist."}}
        message = {"role": "assistant", "content": f"Subject: from {model}"}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        return 200, {"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": model, "choices": [choice]}

    def handler(self) -> type[BaseHTTPRequestHandler]:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def reply(self, body: dict[str, Any]) -> None:
                code, payload = standin.answer(self.path, body)
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self.reply({})

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.reply(json.loads(self.rfile.read(length) or b"{}"))

        return Handler
