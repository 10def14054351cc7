"""A loopback stand-in for the Studio Executions API that records what it receives.

It answers like Twilio: 201 with an `FN...` execution, 409 with code 20409 while the
contact already has an active execution, 401 for wrong credentials, 400 for missing
fields. Tests script faults (429, 5xx, slow answers) with `fail_next`.
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl

from devtools.fakes.loopback import LoopbackServer, QuietHandler


@dataclass
class RecordedExecution:
    flow_sid: str
    to: str
    from_: str
    parameters: str
    username: str
    status: int
    sid: str = ""
    at: float = field(default_factory=time.time)

    @property
    def handoff_data(self) -> dict[str, Any]:
        return json.loads(self.parameters)["HandoffData"]


@dataclass
class ScriptedFault:
    status: int = 500
    body: dict[str, Any] = field(default_factory=dict)
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)


class StudioRecorder:
    def __init__(self, *, username: str, password: str, host: str = "127.0.0.1", port: int = 0) -> None:
        self.username, self.password = username, password
        self.requests: list[RecordedExecution] = []
        self.active: dict[tuple[str, str], str] = {}
        self.faults: list[ScriptedFault] = []
        self._lock = threading.Lock()
        recorder = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                recorder._handle_post(self)

            def do_GET(self) -> None:
                recorder._handle_get(self)

        self._loop = LoopbackServer(Handler, host, port)

    @property
    def base_url(self) -> str:
        return self._loop.url

    def start(self) -> StudioRecorder:
        self._loop.start()
        return self

    def stop(self) -> None:
        self._loop.stop()

    def __enter__(self) -> StudioRecorder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def fail_next(self, *faults: ScriptedFault) -> None:
        with self._lock:
            self.faults.extend(faults)

    def end_execution(self, to: str, flow_sid: str | None = None) -> None:
        """The contact's flow finished (as when the agent closes the task)."""
        with self._lock:
            for key in [k for k in self.active if k[1] == to and (flow_sid is None or k[0] == flow_sid)]:
                del self.active[key]

    @property
    def created(self) -> list[RecordedExecution]:
        return [r for r in self.requests if r.status == 201]

    def _handle_get(self, handler: BaseHTTPRequestHandler) -> None:
        rows = [
            {
                "flow": r.flow_sid,
                "to": r.to,
                "from": r.from_,
                "status": r.status,
                "sid": r.sid,
                "parameters": json.loads(r.parameters) if r.parameters.startswith("{") else r.parameters,
            }
            for r in self.requests
        ]
        self._send(handler, 200, {"executions": rows})

    def _handle_post(self, handler: BaseHTTPRequestHandler) -> None:
        parts = handler.path.split("?")[0].strip("/").split("/")
        if len(parts) != 4 or parts[0] != "v2" or parts[1] != "Flows" or parts[3] != "Executions":
            self._send(handler, 404, {"code": 20404, "message": "The requested resource was not found", "status": 404})
            return
        flow_sid = parts[2]
        length = int(handler.headers.get("Content-Length") or 0)
        form = dict(parse_qsl(handler.rfile.read(length).decode(), keep_blank_values=True))
        username, password = _basic_auth(handler.headers.get("Authorization", ""))
        with self._lock:
            fault = self.faults.pop(0) if self.faults else None
        if fault is not None:
            time.sleep(fault.delay)
            record = RecordedExecution(
                flow_sid, form.get("To", ""), form.get("From", ""), form.get("Parameters", ""), username, fault.status
            )
            with self._lock:
                self.requests.append(record)
            self._send(
                handler,
                fault.status,
                fault.body or {"status": fault.status, "message": "scripted fault"},
                fault.headers,
            )
            return
        status, body = self._execute(flow_sid, form, username, password)
        self._send(handler, status, body)

    def _execute(self, flow_sid: str, form: dict[str, str], username: str, password: str) -> tuple[int, dict]:
        record = RecordedExecution(
            flow_sid, form.get("To", ""), form.get("From", ""), form.get("Parameters", ""), username, 0
        )
        with self._lock:
            self.requests.append(record)
            if (username, password) != (self.username, self.password):
                record.status = 401
                return 401, {"code": 20003, "message": "Authenticate", "status": 401}
            if not record.to or not record.from_:
                record.status = 400
                return 400, {"code": 20001, "message": "Missing required parameter To or From", "status": 400}
            try:
                parameters = json.loads(record.parameters or "{}")
            except json.JSONDecodeError:
                record.status = 400
                return 400, {"code": 20001, "message": "Parameters must be a JSON string", "status": 400}
            key = (flow_sid, record.to)
            if key in self.active:
                record.status = 409
                return 409, {
                    "code": 20409,
                    "status": 409,
                    "message": f"Execution {self.active[key]} is already active for this contact",
                }
            record.status, record.sid = 201, "FN" + uuid.uuid4().hex
            self.active[key] = record.sid
        return 201, {
            "sid": record.sid,
            "account_sid": username,
            "flow_sid": flow_sid,
            "contact_channel_address": record.to,
            "status": "active",
            "context": {"flow": {"data": parameters}},
            "url": f"{self.base_url}/v2/Flows/{flow_sid}/Executions/{record.sid}",
        }

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, status: int, body: dict, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a scripted timeout): nothing to answer


def _basic_auth(header: str) -> tuple[str, str]:
    if not header.startswith("Basic "):
        return "", ""
    try:
        username, _, password = base64.b64decode(header[6:]).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return "", ""
    return username, password
