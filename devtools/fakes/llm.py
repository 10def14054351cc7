"""Loopback OpenAI-compatible Chat Completions servers.

`StreamingLlmFake` stands in for a real model in benchmarks and demos: each chunk arrives after
`delay` seconds, as tokens do from a real model, so time-to-first-word can be measured.
`ScriptedLlmFake` plays exact answers (malformed ones, trickling ones) for fault tests.
"""

from __future__ import annotations

import json
import time
from http.server import BaseHTTPRequestHandler
from typing import Any, NamedTuple

from devtools.fakes.loopback import LoopbackServer, QuietHandler

DEFAULT_REPLY = (
    "We're open Monday to Friday, from eight in the morning to six in the evening. "
    "On Saturdays we open from nine until one. Is there anything else I can help you with today?"
)


class StreamingLlmFake:
    """`first_delay`: the time to the first chunk, when it differs from `delay` (a model's time to
    first token). `timings` has, per request: when it arrived and when each chunk was written
    (time.perf_counter), for measuring what the relay adds on either side of the model."""

    def __init__(
        self,
        reply: str = DEFAULT_REPLY,
        *,
        delay: float = 0.02,
        words_per_chunk: int = 2,
        first_delay: float | None = None,
    ) -> None:
        words = reply.split(" ")
        self.chunks = [" ".join(words[i : i + words_per_chunk]) + " " for i in range(0, len(words), words_per_chunk)]
        self.delay = delay
        self.first_delay = delay if first_delay is None else first_delay
        self.timings: list[tuple[float, list[float]]] = []
        fake = self

        class Handler(QuietHandler):
            def setup(self) -> None:
                super().setup()
                self.rfile = _Stamped(self.rfile)

            def do_POST(self) -> None:
                arrived = self.rfile.first_line_at
                request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                self.rfile.first_line_at = None
                fake.timings.append((arrived, []))
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
        written = self.timings[-1][1]
        for i, chunk in enumerate(self.chunks):
            time.sleep(self.first_delay if i == 0 else self.delay)
            data = {"choices": [{"index": 0, "delta": {"content": chunk}}]}
            handler.wfile.write(f"data: {json.dumps(data)}\n\n".encode())
            handler.wfile.flush()
            written.append(time.perf_counter())
        handler.wfile.write(b"data: [DONE]\n\n")

    def _whole(self, handler: BaseHTTPRequestHandler) -> None:
        time.sleep(self.delay * len(self.chunks))
        body = json.dumps({"choices": [{"message": {"role": "assistant", "content": "".join(self.chunks)}}]}).encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)


class _Stamped:
    """A request stream that notes when a request's first line came in: its arrival, before the
    server spends any time parsing headers."""

    def __init__(self, raw: Any) -> None:
        self._raw = raw
        self.first_line_at: float | None = None

    def readline(self, *args: Any) -> bytes:
        line = self._raw.readline(*args)
        if self.first_line_at is None:
            self.first_line_at = time.perf_counter()
        return line

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


class LlmAnswer(NamedTuple):
    """One scripted answer: raw bytes, sent `piece` bytes at a time with `dribble` seconds between pieces."""

    body: bytes
    status: int = 200
    content_type: str = "application/json"
    dribble: float = 0.0
    piece: int = 16

    @classmethod
    def json(cls, answer: Any, **kwargs: Any) -> LlmAnswer:
        return cls(json.dumps(answer).encode(), **kwargs)

    @classmethod
    def sse(cls, *chunks: Any, done: bool = True, **kwargs: Any) -> LlmAnswer:
        """Server-sent events, one `data:` line per chunk; with `dribble`, one chunk at a time."""
        lines = [f"data: {json.dumps(chunk)}\n\n".encode() for chunk in chunks]
        if done:
            lines.append(b"data: [DONE]\n\n")
        piece = max((len(line) for line in lines), default=1)
        return cls(b"".join(lines), content_type="text/event-stream", piece=kwargs.pop("piece", piece), **kwargs)


class ScriptedLlmFake:
    """A loopback OpenAI-compatible endpoint that plays scripted answers, the last one repeated.

    It records every request body, so a test can count model calls. A client that gives up
    mid-answer leaves the server writing into a closed socket, which it ignores.
    """

    def __init__(self, *answers: LlmAnswer) -> None:
        self.answers = list(answers)
        self.requests: list[dict] = []
        fake = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                fake.requests.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                answer = fake.answers.pop(0) if len(fake.answers) > 1 else fake.answers[0]
                try:
                    self.send_response(answer.status)
                    self.send_header("Content-Type", answer.content_type)
                    self.send_header("Content-Length", str(len(answer.body)))
                    self.end_headers()
                    for start in range(0, len(answer.body), answer.piece):
                        if answer.dribble and start:
                            time.sleep(answer.dribble)
                        self.wfile.write(answer.body[start : start + answer.piece])
                        self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self._loop = LoopbackServer(Handler).start()

    @property
    def base_url(self) -> str:
        return f"{self._loop.url}/v1"

    def stop(self) -> None:
        self._loop.stop()

    def __enter__(self) -> ScriptedLlmFake:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
