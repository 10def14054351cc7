"""One loopback port that plays API Gateway for the template's functions.

- HTTP API routes: each request becomes a payload 2.0 event (form bodies base64-encoded, as
  HTTP APIs do) for the function the template wires to that route.
- WebSocket API: `/relay` accepts WebSocket connections; the handshake becomes `$connect`
  (refused with 403 when the function says so), each text frame a `$default` invocation run
  concurrently and unordered like API Gateway's, the close `$disconnect`.
- `@connections`: `POST /@connections/{id}` is the management API that post_to_connection
  calls (AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI points here); a closed socket answers 410.
  `DELETE /@connections/{id}` (delete_connection) closes the socket.

One port serves all three so one tunnel exposes the whole bundle to Twilio.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import secrets
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from aiohttp import WSMsgType, web

from devtools.local.lambdas import LambdaContext

log = logging.getLogger("devtools.local.gateway")
Handler = Callable[[dict, Any], Any]
RELAY_PATH = "/relay"
RELAY_STAGE = RELAY_PATH.strip("/")
LOOPBACK = ("127.0.0.1", "::1")
# The names this machine's browser uses for the stack: any other Host is a page DNS-rebound to loopback.
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")
# What tunnels and proxies add to a request they forward (they connect from this machine too).
PROXY_HEADERS = ("X-Forwarded-For", "Forwarded", "X-Real-IP", "CF-Connecting-IP", "X-Forwarded-Host")


class Gateway:
    def __init__(
        self,
        http_routes: dict[tuple[str, str], tuple[str, Handler]],
        websocket_routes: dict[str, tuple[str, Handler]],
        host: str = "127.0.0.1",
        port: int = 0,
        extra_get: dict[str, Callable[[], Any]] | None = None,
    ) -> None:
        self._extra_get = extra_get or {}
        self._http = http_routes
        self._ws_routes = websocket_routes
        self._host, self._port = host, port
        self._sockets: dict[str, web.WebSocketResponse] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._failed: BaseException | None = None
        self.invocations: list[tuple[str, str, int]] = []  # (function, route, status) for tests and the console

    # -- lifecycle ----------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self._port}"

    @property
    def relay_url(self) -> str:
        return f"ws://{self._host}:{self._port}{RELAY_PATH}"

    def start(self) -> Gateway:
        self._thread = threading.Thread(target=self._serve, name="gateway", daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the local gateway did not start")
        if self._failed is not None:
            raise self._failed  # e.g. OSError: the port is taken
        return self

    def stop(self) -> None:
        if self._loop is None:
            return
        future = asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop)
        future.result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def _serve(self) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        app = web.Application(client_max_size=1024 * 1024)
        app.router.add_get(RELAY_PATH, self._websocket)
        app.router.add_post("/@connections/{connection_id}", self._post_to_connection)
        app.router.add_delete("/@connections/{connection_id}", self._close_connection)
        for method, path in self._http:
            app.router.add_route(method, path, self._http_request)
        for path in self._extra_get:
            app.router.add_get(path, self._extra)
        self._runner = web.AppRunner(app, access_log=None)
        self._loop.run_until_complete(self._runner.setup())
        site = web.TCPSite(self._runner, self._host, self._port)
        try:
            self._loop.run_until_complete(site.start())
        except BaseException as exc:
            self._failed = exc
            self._loop.run_until_complete(self._runner.cleanup())
            self._loop.close()
            self._loop = None
            self._ready.set()
            return
        self._port = site._server.sockets[0].getsockname()[1]  # the port chosen when 0 was asked for
        self._ready.set()
        self._loop.run_forever()

    async def _shutdown(self) -> None:
        for socket in list(self._sockets.values()):
            await socket.close()
        await self._runner.cleanup()

    async def _invoke(self, logical_id: str, handler: Handler, event: dict, route: str) -> Any:
        result = await asyncio.to_thread(handler, event, LambdaContext(function_name=logical_id))
        status = result.get("statusCode", 200) if isinstance(result, dict) else 200
        self.invocations.append((logical_id, route, status))
        return result

    # -- HTTP API -----------------------------------------------------------------------

    async def _http_request(self, request: web.Request) -> web.Response:
        logical_id, handler = self._http[(request.method, request.path)]
        body = await request.read()
        now = time.time()
        route_key = f"{request.method} {request.path}"
        event = {
            "version": "2.0",
            "routeKey": route_key,
            "rawPath": request.path,
            "rawQueryString": request.query_string,
            "headers": {k.lower(): v for k, v in request.headers.items()},
            "requestContext": {
                "accountId": "123456789012",
                "apiId": "local",
                "domainName": request.host,
                "http": {
                    "method": request.method,
                    "path": request.path,
                    "protocol": "HTTP/1.1",
                    "sourceIp": request.remote or "",
                    "userAgent": request.headers.get("User-Agent", ""),
                },
                "requestId": uuid.uuid4().hex[:16],
                "routeKey": route_key,
                "stage": "$default",
                "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)),
                "timeEpoch": int(now * 1000),
            },
            "body": base64.b64encode(body).decode(),
            "isBase64Encoded": True,
        }
        try:
            result = await self._invoke(logical_id, handler, event, route_key)
        except Exception:
            log.exception("%s raised", logical_id)
            return web.json_response({"message": "Internal Server Error"}, status=500)
        payload = result.get("body", "")
        if result.get("isBase64Encoded"):
            payload = base64.b64decode(payload)
        headers = {k: v for k, v in (result.get("headers") or {}).items() if k.lower() != "content-length"}
        return web.Response(status=result.get("statusCode", 200), body=payload, headers=headers)

    async def _extra(self, request: web.Request) -> web.Response:
        # The simulators' views (phone numbers, payloads, the desk's release token) are for this machine:
        # not a tunnel's visitors, nor a web page whose name was rebound to 127.0.0.1 (its Host says so).
        if (
            request.remote not in LOOPBACK
            or any(h in request.headers for h in PROXY_HEADERS)
            or not self._names_this_stack(request.headers.get("Host", ""))
        ):
            return web.json_response({"message": "Not Found"}, status=404)
        result = await asyncio.to_thread(self._extra_get[request.path])  # they may read moto: off the loop
        if isinstance(result, web.Response):  # a page (the desk), served as it is
            return result
        return web.json_response(result, dumps=lambda o: json.dumps(o, default=str))

    def _names_this_stack(self, host: str) -> bool:
        """`host` (a Host header) is a loopback name with this stack's port (or none, on port 80)."""
        try:
            where = urlsplit(f"//{host}")
            port = where.port
        except ValueError:
            return False
        return where.hostname in LOOPBACK_NAMES and (port or 80) == self._port and "@" not in host

    # -- WebSocket API ------------------------------------------------------------------

    def _ws_event(self, route: str, connection_id: str, request: web.Request, **extra: Any) -> dict[str, Any]:
        now = time.time()
        return {
            "requestContext": {
                "routeKey": route,
                "eventType": {"$connect": "CONNECT", "$disconnect": "DISCONNECT"}.get(route, "MESSAGE"),
                "stage": RELAY_STAGE,
                "domainName": request.host,
                "connectionId": connection_id,
                "apiId": "local",
                "requestId": uuid.uuid4().hex[:16],
                "requestTimeEpoch": int(now * 1000),
                "connectedAt": int(now * 1000),
                "messageDirection": "IN",
            },
            "isBase64Encoded": False,
            **extra,
        }

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        # API Gateway connection ids are base64-like and may end with "=": keep that sharp edge.
        connection_id = secrets.token_urlsafe(10)[:12] + "="
        if "$connect" in self._ws_routes:
            logical_id, handler = self._ws_routes["$connect"]
            headers = dict(request.headers)
            # As API Gateway does: the last value of each parameter, and every value.
            multi: dict[str, list[str]] = {}
            for name, value in request.query.items():
                multi.setdefault(name, []).append(value)
            event = self._ws_event(
                "$connect",
                connection_id,
                request,
                headers=headers,
                queryStringParameters={k: v[-1] for k, v in multi.items()} or None,
                multiValueQueryStringParameters=multi or None,
            )
            result = await self._invoke(logical_id, handler, event, "$connect")
            if (result or {}).get("statusCode", 200) != 200:
                return web.Response(status=result.get("statusCode", 403), text="Forbidden")
        socket = web.WebSocketResponse(autoping=True)
        await socket.prepare(request)
        self._sockets[connection_id] = socket
        pending: set[asyncio.Task] = set()
        try:
            async for message in socket:
                if message.type == WSMsgType.TEXT and "$default" in self._ws_routes:
                    logical_id, handler = self._ws_routes["$default"]
                    event = self._ws_event("$default", connection_id, request, body=message.data)
                    # Each frame is its own invocation, and they may overlap: as on API Gateway.
                    task = asyncio.create_task(self._invoke(logical_id, handler, event, "$default"))
                    pending.add(task)
                    task.add_done_callback(pending.discard)
        finally:
            self._sockets.pop(connection_id, None)
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
            if "$disconnect" in self._ws_routes:
                logical_id, handler = self._ws_routes["$disconnect"]
                await self._invoke(
                    logical_id, handler, self._ws_event("$disconnect", connection_id, request), "$disconnect"
                )
        return socket

    async def _post_to_connection(self, request: web.Request) -> web.Response:
        socket = self._sockets.get(request.match_info["connection_id"])
        data = await request.read()
        if socket is None or socket.closed:
            return web.json_response({"message": "Gone"}, status=410, headers={"x-amzn-ErrorType": "GoneException"})
        await socket.send_str(data.decode("utf-8"))
        return web.Response(status=200)

    async def _close_connection(self, request: web.Request) -> web.Response:
        socket = self._sockets.get(request.match_info["connection_id"])
        if socket is not None:
            await socket.close()
        return web.Response(status=204)
