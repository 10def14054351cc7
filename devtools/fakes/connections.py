"""A loopback stand-in for API Gateway's @connections management API.

`post_to_connection` from boto3 (pointed here with AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI)
lands in `frames`; a connection marked gone answers 410 GoneException as API Gateway does, and
`delete_connection` marks it gone (`deleted` lists them). An `on_frame` hook sees each frame
first: True delivers it, False means the socket is gone (410), and an HTTP status answers the
post with that error instead (429 LimitExceededException: throttled; 5xx: a server error), the
connection staying open, as API Gateway's are after one failed post.
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import unquote

from devtools.fakes.loopback import LoopbackServer, QuietHandler


class ConnectionsEndpoint:
    def __init__(
        self, host: str = "127.0.0.1", port: int = 0, on_frame: Callable[[str, bytes], bool | int] | None = None
    ):
        self.frames: dict[str, list[bytes]] = defaultdict(list)
        self.gone: set[str] = set()
        self.deleted: list[str] = []
        self.on_frame = on_frame
        self._lock = threading.Lock()
        endpoint = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                endpoint._post(self)

            def do_DELETE(self) -> None:
                endpoint._delete(self)

        self._loop = LoopbackServer(Handler, host, port)

    @property
    def url(self) -> str:
        return self._loop.url

    def start(self) -> ConnectionsEndpoint:
        self._loop.start()
        return self

    def stop(self) -> None:
        self._loop.stop()

    def __enter__(self) -> ConnectionsEndpoint:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def messages(self, connection_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [json.loads(frame) for frame in self.frames.get(connection_id, [])]

    def _connection_id(self, handler: BaseHTTPRequestHandler) -> str | None:
        path = handler.path.split("?", 1)[0]
        prefix = "/@connections/"
        index = path.find(prefix)
        return unquote(path[index + len(prefix) :]) if index >= 0 else None

    def _post(self, handler: BaseHTTPRequestHandler) -> None:
        connection_id = self._connection_id(handler)
        data = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        if connection_id is None:
            self._answer(handler, 404, {"message": "Not Found"}, "NotFoundException")
            return
        with self._lock:
            gone = connection_id in self.gone
        delivered = not gone and (self.on_frame(connection_id, data) if self.on_frame else True)
        if isinstance(delivered, int) and not isinstance(delivered, bool):
            error = "LimitExceededException" if delivered == 429 else "InternalServerErrorException"
            self._answer(handler, int(delivered), {"message": error}, error)
            return
        if not delivered:
            with self._lock:
                self.gone.add(connection_id)
            self._answer(handler, 410, {"message": "Gone"}, "GoneException")
            return
        with self._lock:
            self.frames[connection_id].append(data)
        self._answer(handler, 200, None, None)

    def _delete(self, handler: BaseHTTPRequestHandler) -> None:
        connection_id = self._connection_id(handler)
        with self._lock:
            self.gone.add(connection_id or "")
            self.deleted.append(connection_id or "")
        self._answer(handler, 204, None, None)

    @staticmethod
    def _answer(handler: BaseHTTPRequestHandler, status: int, body: dict | None, error_type: str | None) -> None:
        data = json.dumps(body).encode() if body is not None else b""
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        if error_type:
            handler.send_header("x-amzn-ErrorType", error_type)
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)
