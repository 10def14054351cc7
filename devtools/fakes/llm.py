"""A loopback OpenAI-compatible Chat Completions server that streams a scripted reply slowly.

It stands in for a real model in benchmarks and demos: each chunk arrives after `delay`
seconds, as tokens do from a real model, so time-to-first-word can be measured.
"""

from __future__ import annotations

import json
import time
from http.server import BaseHTTPRequestHandler

from devtools.fakes.loopback import LoopbackServer, QuietHandler

DEFAULT_REPLY = (
    "We're open Monday to Friday, from eight in the morning to six in the evening. "
    "On Saturdays we open from nine until one. Is there anything else I can help you with today?"
)


class StreamingLlmFake:
    def __init__(self, reply: str = DEFAULT_REPLY, *, delay: float = 0.02, words_per_chunk: int = 2) -> None:
        words = reply.split(" ")
        self.chunks = [" ".join(words[i : i + words_per_chunk]) + " " for i in range(0, len(words), words_per_chunk)]
        self.delay = delay
        fake = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if request.get("stream"):
                    fake._stream(self)
                else:
                    fake._whole(self)

        self._loop = LoopbackServer(Handler).start()

    @property
    def base_url(self) -> str:
        return f"{self._loop.url}/v1"

    def stop(self) -> None:
        self._loop.stop()

    def _stream(self, handler: BaseHTTPRequestHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.end_headers()
        for chunk in self.chunks:
            time.sleep(self.delay)
            data = {"choices": [{"index": 0, "delta": {"content": chunk}}]}
            handler.wfile.write(f"data: {json.dumps(data)}\n\n".encode())
            handler.wfile.flush()
        handler.wfile.write(b"data: [DONE]\n\n")

    def _whole(self, handler: BaseHTTPRequestHandler) -> None:
        time.sleep(self.delay * len(self.chunks))
        body = json.dumps({"choices": [{"message": {"role": "assistant", "content": "".join(self.chunks)}}]}).encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)
