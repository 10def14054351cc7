"""A loopback stand-in for the Studio Executions API that records what it receives.

It answers like Twilio (the shapes twilio-python's studio v2 client reads):
- POST /v2/Flows/{FW}/Executions: 201 with an `FN...` execution, 409 with code 20409 while the
  contact already has an active execution, 401 for wrong credentials, 400 for missing fields;
- POST /v2/Flows/{FW}/Executions/{FN} with Status=ended: ends it (404 for an unknown one);
- GET /v2/Flows/{FW}/Executions?[status=active|ended][&DateCreatedFrom=..][&DateCreatedTo=..]&PageSize=N[&Page=P]:
  one page of executions and a `meta.next_page_url` (there is no filter by contact, as in Studio);
- GET /v2/Flows/{FW}/Executions/{FN} and .../{FN}/Context: the execution and its context, with
  the Parameters as `context.flow.data`.
Any other GET lists what it received, for people and the simulators.

Tests script faults per operation with `fail_next(..., on="create"|"end"|"list"|"context")`,
make Studio act on a POST but answer late with `answer_delay`, and sprinkle 5xx over every
request with `server_errors(every=N)`.
"""

from __future__ import annotations

import base64
import json
import random
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

from devtools.fakes.loopback import LoopbackServer, QuietHandler

OPERATIONS = ("create", "end", "list", "context")


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
    state: str = "active"  # active | ended (for a created execution)

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
        self.requests: list[RecordedExecution] = []  # every create attempt, in order
        self.active: dict[tuple[str, str], str] = {}  # (flow, contact) -> execution sid
        self.ended: list[str] = []  # sids ended through the API, in order
        self.answer_delay = 0.0  # seconds a successful create waits before answering (it is created at once)
        self._executions: dict[str, RecordedExecution] = {}
        self._foreign_at: dict[str, float] = {}
        self._faults: dict[str, list[ScriptedFault]] = {op: [] for op in OPERATIONS}
        self._chaos: tuple[random.Random, int] | None = None
        self.chaos_faults = 0
        self._lock = threading.Lock()
        recorder = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                recorder._handle(self, "POST")

            def do_GET(self) -> None:
                recorder._handle(self, "GET")

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

    # -- scripting ----------------------------------------------------------------------

    def fail_next(self, *faults: ScriptedFault, on: str = "create") -> None:
        with self._lock:
            self._faults[on].extend(faults)

    def server_errors(self, *, every: int, seed: int = 0) -> None:
        """About one request in `every` (any operation) answers 503, as Studio does under strain."""
        self._chaos = (random.Random(seed), every)

    def end_execution(self, to: str, flow_sid: str | None = None) -> None:
        """The contact's flow finished (as when the agent closes the task)."""
        with self._lock:
            for key in [k for k in self.active if k[1] == to and (flow_sid is None or k[0] == flow_sid)]:
                self._end(self.active[key])

    def start_foreign(self, to: str, flow_sid: str) -> str:
        """An active execution this product did not start (a call in the flow): no HandoffData."""
        sid = "FN" + uuid.uuid4().hex
        with self._lock:
            self.active[(flow_sid, to)] = sid
            self._foreign_at[sid] = time.time()
        return sid

    @property
    def created(self) -> list[RecordedExecution]:
        return [r for r in self.requests if r.status == 201]

    def execution(self, sid: str) -> RecordedExecution | None:
        return self._executions.get(sid)

    # -- serving ------------------------------------------------------------------------

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        url = urlsplit(handler.path)
        parts = url.path.strip("/").split("/")
        is_api = len(parts) >= 4 and parts[0] == "v2" and parts[1] == "Flows" and parts[3] == "Executions"
        if method == "GET" and not is_api:
            return self._send(handler, 200, {"executions": self._debug_rows()})
        if not is_api or len(parts) > 6 or (len(parts) == 6 and parts[5] != "Context"):
            return self._send(handler, 404, {"code": 20404, "message": "The requested resource was not found"})
        flow_sid = parts[2]
        length = int(handler.headers.get("Content-Length") or 0)
        form = dict(parse_qsl(handler.rfile.read(length).decode(), keep_blank_values=True))
        query = dict(parse_qsl(url.query))
        operation = {
            ("POST", 4): "create",
            ("POST", 5): "end",
            ("GET", 4): "list",
            ("GET", 5): "context",
            ("GET", 6): "context",
        }.get((method, len(parts)))
        if operation is None:
            return self._send(handler, 405, {"code": 20004, "message": "Method not allowed"})
        fault = self._next_fault(operation)
        if fault is not None:
            time.sleep(fault.delay)
            if operation == "create":
                record = RecordedExecution(
                    flow_sid, form.get("To", ""), form.get("From", ""), form.get("Parameters", ""), "", fault.status
                )
                with self._lock:
                    self.requests.append(record)
            body = fault.body or {"status": fault.status, "message": "scripted fault"}
            return self._send(handler, fault.status, body, fault.headers)
        username, password = _basic_auth(handler.headers.get("Authorization", ""))
        if (username, password) != (self.username, self.password):
            if operation == "create":
                with self._lock:
                    self.requests.append(
                        RecordedExecution(flow_sid, form.get("To", ""), form.get("From", ""), "", username, 401)
                    )
            return self._send(handler, 401, {"code": 20003, "message": "Authenticate", "status": 401})
        if operation == "create":
            status, body = self._create(flow_sid, form, username)
            if status == 201 and self.answer_delay:
                time.sleep(self.answer_delay)
        elif operation == "end":
            status, body = self._update(flow_sid, parts[4], form)
        elif operation == "list":
            status, body = self._list(flow_sid, query)
        else:
            status, body = self._read(flow_sid, parts[4], context=len(parts) == 6)
        self._send(handler, status, body)

    def _next_fault(self, operation: str) -> ScriptedFault | None:
        with self._lock:
            if self._faults[operation]:
                return self._faults[operation].pop(0)
            if self._chaos is not None:
                rng, every = self._chaos
                if rng.random() < 1 / every:
                    self.chaos_faults += 1
                    return ScriptedFault(503, {"code": 20503, "message": "Service Unavailable", "status": 503})
        return None

    def _create(self, flow_sid: str, form: dict[str, str], username: str) -> tuple[int, dict]:
        record = RecordedExecution(
            flow_sid, form.get("To", ""), form.get("From", ""), form.get("Parameters", ""), username, 0
        )
        with self._lock:
            self.requests.append(record)
            if not record.to or not record.from_:
                record.status = 400
                return 400, {"code": 20001, "message": "Missing required parameter To or From", "status": 400}
            try:
                json.loads(record.parameters or "{}")
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
            self._executions[record.sid] = record
        return 201, self._resource(record)

    def _update(self, flow_sid: str, sid: str, form: dict[str, str]) -> tuple[int, dict]:
        if form.get("Status") != "ended":
            return 400, {"code": 20001, "message": "Status must be 'ended'", "status": 400}
        with self._lock:
            record = self._executions.get(sid)
            foreign = sid in self.active.values() and record is None
            if record is None and not foreign:
                return 404, {"code": 20404, "message": f"Execution {sid} was not found", "status": 404}
            self._end(sid)
            self.ended.append(sid)
        if record is None:
            return 200, {"sid": sid, "flow_sid": flow_sid, "status": "ended"}
        return 200, self._resource(record)

    def _list(self, flow_sid: str, query: dict[str, str]) -> tuple[int, dict]:
        size = max(1, min(int(query.get("PageSize", "50")), 1000))
        page = int(query.get("Page", "0"))
        since, until = _epoch(query.get("DateCreatedFrom"), 0.0), _epoch(query.get("DateCreatedTo"), float("inf"))
        with self._lock:
            rows = [
                self._summary(sid, flow, contact)
                for (flow, contact), sid in self.active.items()
                if flow == flow_sid and query.get("status") in (None, "active")
            ]
            if query.get("status") != "active":  # ended ones too, as Studio keeps them
                rows += [
                    self._summary(record.sid, flow_sid, record.to)
                    for record in self._executions.values()
                    if record.flow_sid == flow_sid
                    and record.state == "ended"
                    and query.get("status") in (None, "ended")
                ]
            rows = [row for row in rows if since <= self._created(row["sid"]) < until]
        chunk = rows[page * size : (page + 1) * size]
        next_url = None
        if (page + 1) * size < len(rows):
            following = urlencode({**query, "PageSize": size, "Page": page + 1})
            next_url = f"https://studio.twilio.com/v2/Flows/{flow_sid}/Executions?{following}"
        meta = {"key": "executions", "page": page, "page_size": size, "next_page_url": next_url}
        return 200, {"executions": chunk, "meta": meta}

    def _read(self, flow_sid: str, sid: str, *, context: bool) -> tuple[int, dict]:
        with self._lock:
            record = self._executions.get(sid)
            contact = next((c for (f, c), s in self.active.items() if s == sid and f == flow_sid), None)
        if record is None and contact is None:
            return 404, {"code": 20404, "message": f"Execution {sid} was not found", "status": 404}
        if not context:
            return 200, self._resource(record) if record else self._summary(sid, flow_sid, contact or "")
        data = json.loads(record.parameters or "{}") if record else {}
        body = {"flow": {"data": data}} if record else {"trigger": {"call": {"From": contact}}}
        return 200, {"context": body, "execution_sid": sid, "flow_sid": flow_sid}

    def _end(self, sid: str) -> None:
        for key in [k for k, v in self.active.items() if v == sid]:
            del self.active[key]
        if sid in self._executions:
            self._executions[sid].state = "ended"

    def _created(self, sid: str) -> float:
        record = self._executions.get(sid)
        return record.at if record is not None else self._foreign_at.get(sid, 0.0)

    def _summary(self, sid: str, flow_sid: str, contact: str) -> dict[str, Any]:
        record = self._executions.get(sid)
        created = datetime.fromtimestamp(self._created(sid), tz=UTC)
        return {
            "sid": sid,
            "flow_sid": flow_sid,
            "contact_channel_address": contact,
            "status": record.state if record is not None else "active",
            "date_created": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "url": f"{self.base_url}/v2/Flows/{flow_sid}/Executions/{sid}",
        }

    def _resource(self, record: RecordedExecution) -> dict[str, Any]:
        return {
            "sid": record.sid,
            "account_sid": record.username,
            "flow_sid": record.flow_sid,
            "contact_channel_address": record.to,
            "status": record.state,
            "context": {"flow": {"data": json.loads(record.parameters or "{}")}},
            "url": f"{self.base_url}/v2/Flows/{record.flow_sid}/Executions/{record.sid}",
        }

    def _debug_rows(self) -> list[dict[str, Any]]:
        return [
            {
                "flow": r.flow_sid,
                "to": r.to,
                "from": r.from_,
                "status": r.status,
                "sid": r.sid,
                "state": r.state if r.sid else "",
                "parameters": json.loads(r.parameters) if r.parameters.startswith("{") else r.parameters,
            }
            for r in self.requests
        ]

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


def _epoch(value: str | None, default: float) -> float:
    """Studio's ISO 8601 query times (DateCreatedFrom/To) as epoch seconds."""
    if not value:
        return default
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _basic_auth(header: str) -> tuple[str, str]:
    if not header.startswith("Basic "):
        return "", ""
    try:
        username, _, password = base64.b64decode(header[6:]).decode().partition(":")
    except (ValueError, UnicodeDecodeError):
        return "", ""
    return username, password
