"""A loopback stand-in for the parts of Twilio's REST API the product and its tools use.

It serves IncomingPhoneNumbers list and update (the configure command) and Messages create
(the SMS a customer gets when their handoff failed) under /2010-04-01, checks basic auth, and
records every request; `http_client()` gives twilio-python a client that talks to it.
`fail_next_message(status, ...)` scripts answers of the Messages API (429, 5xx, slow).
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from twilio.http.http_client import TwilioHttpClient

from devtools.fakes.loopback import LoopbackServer, QuietHandler


class TwilioApiFake:
    def __init__(self, *, account_sid: str, auth_token: str) -> None:
        self.account_sid, self.auth_token = account_sid, auth_token
        self.numbers: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.messages: list[dict[str, str]] = []  # messages accepted (201), in order
        self._message_faults: list[tuple[int, dict[str, Any], float]] = []
        self._lock = threading.Lock()
        fake = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                fake._handle(self, "GET")

            def do_POST(self) -> None:
                fake._handle(self, "POST")

        self._loop = LoopbackServer(Handler).start()

    @property
    def base_url(self) -> str:
        return self._loop.url

    def stop(self) -> None:
        self._loop.stop()

    def add_number(self, phone_number: str, **fields: str) -> str:
        sid = "PN" + uuid.uuid4().hex
        self.numbers[sid] = {
            "sid": sid,
            "account_sid": self.account_sid,
            "phone_number": phone_number,
            "sms_url": "",
            "sms_method": "POST",
            "voice_url": "",
            "voice_method": "POST",
            **fields,
        }
        return sid

    def fail_next_message(self, status: int, body: dict[str, Any] | None = None, *, delay: float = 0.0) -> None:
        """The next Messages POST answers `status` (after `delay` seconds) and sends nothing."""
        with self._lock:
            self._message_faults.append((status, body or {"status": status, "message": "scripted fault"}, delay))

    def http_client(self) -> TwilioHttpClient:
        base = self.base_url

        class Loopback(TwilioHttpClient):
            def request(self, method, url, *args, **kwargs):  # type: ignore[override]
                parts = urlsplit(url)
                return super().request(
                    method, base + parts.path + (f"?{parts.query}" if parts.query else ""), *args, **kwargs
                )

        return Loopback()

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        url = urlsplit(handler.path)
        body = handler.rfile.read(int(handler.headers.get("Content-Length") or 0)).decode()
        form = dict(parse_qsl(body)) if method == "POST" else dict(parse_qsl(url.query))
        self.requests.append((method, url.path, form))
        expected = "Basic " + base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        if handler.headers.get("Authorization") != expected:
            return self._send(handler, 401, {"code": 20003, "message": "Authenticate", "status": 401})
        if method == "POST" and url.path == f"/2010-04-01/Accounts/{self.account_sid}/Messages.json":
            return self._message(handler, form)
        prefix = f"/2010-04-01/Accounts/{self.account_sid}/IncomingPhoneNumbers"
        if method == "GET" and url.path == prefix + ".json":
            matches = [n for n in self.numbers.values() if n["phone_number"] == form.get("PhoneNumber")]
            page = {
                "incoming_phone_numbers": matches,
                "next_page_uri": None,
                "page": 0,
                "page_size": 50,
                "start": 0,
                "end": max(len(matches) - 1, 0),
                "uri": url.path,
                "first_page_uri": url.path,
                "previous_page_uri": None,
            }
            return self._send(handler, 200, page)
        if method == "POST" and url.path.startswith(prefix + "/") and url.path.endswith(".json"):
            sid = url.path[len(prefix) + 1 : -len(".json")]
            if sid not in self.numbers:
                return self._send(handler, 404, {"code": 20404, "message": "not found", "status": 404})
            fields = {
                "SmsUrl": "sms_url",
                "SmsMethod": "sms_method",
                "VoiceUrl": "voice_url",
                "VoiceMethod": "voice_method",
            }
            for name, key in fields.items():
                if name in form:
                    self.numbers[sid][key] = form[name]
            return self._send(handler, 200, self.numbers[sid])
        return self._send(handler, 404, {"code": 20404, "message": "not found", "status": 404})

    def _message(self, handler: BaseHTTPRequestHandler, form: dict[str, str]) -> None:
        with self._lock:
            fault = self._message_faults.pop(0) if self._message_faults else None
        if fault is not None:
            time.sleep(fault[2])
            return self._send(handler, fault[0], fault[1])
        if not form.get("To") or not form.get("From") or not form.get("Body"):
            return self._send(handler, 400, {"code": 21604, "message": "A 'To', 'From' and 'Body' are required"})
        message = {
            "sid": "SM" + uuid.uuid4().hex,
            "account_sid": self.account_sid,
            "to": form["To"],
            "from": form["From"],
            "body": form["Body"],
            "status": "queued",
        }
        with self._lock:
            self.messages.append(message)
        return self._send(handler, 201, message)

    @staticmethod
    def _send(handler: BaseHTTPRequestHandler, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up waiting (a scripted slow answer)
