"""A stand-in for an OpenAI-compatible chat-completions server (http.server in a thread) for judge tests."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Reply = tuple[int, Any]
"""(HTTP status, JSON body or a reply text to wrap as a chat completion)."""


def completion(text: str) -> dict[str, Any]:
    return {"id": "x", "object": "chat.completion",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}


@contextmanager
def stub_server(respond: Callable[[dict[str, Any]], Reply], delay_s: float = 0.0) -> Iterator[tuple[str, list]]:
    """Serve POST /v1/chat/completions with `respond(request_json)`; yields (base URL, seen requests)."""
    seen: list[dict[str, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append({"path": self.path, "headers": dict(self.headers), "json": body})
            if delay_s:
                time.sleep(delay_s)
            status, payload = respond(body)
            data = json.dumps(completion(payload) if isinstance(payload, str) else payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", seen
    finally:
        server.shutdown()
        server.server_close()
