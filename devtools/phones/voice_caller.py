"""A caller that plays Twilio's side of a ConversationRelay call, frame by frame.

It does what Twilio does: POSTs the signed Voice webhook, reads the TwiML, opens the
WebSocket with the handshake signed over the wss URL, sends `setup`, `prompt`, `dtmf` and
`interrupt` frames, reads the frames the product posts back, and POSTs the signed
`<Connect action>` callback when the session ends. Here the functions run in this process;
the frames come back through a loopback @connections endpoint.
"""

from __future__ import annotations

import json
import secrets
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any
from urllib.parse import urlsplit

from devtools.fakes.connections import ConnectionsEndpoint
from devtools.local.lambdas import LambdaContext, load_function
from devtools.samples.events import (
    action_params,
    call_params,
    http_api_event,
    ws_connect_event,
    ws_disconnect_event,
    ws_message_event,
)


@dataclass
class Functions:
    incoming_call: ModuleType
    voice_relay: ModuleType
    voice_action: ModuleType

    @classmethod
    def load(cls) -> Functions:
        return cls(load_function("incoming_call"), load_function("voice_relay"), load_function("voice_action"))


@dataclass
class VoiceCall:
    functions: Functions
    connections: ConnectionsEndpoint
    account_sid: str
    auth_token: str
    caller: str = "+14155550100"
    agent: str = "+14155550199"
    call_sid: str = field(default_factory=lambda: "CA" + uuid.uuid4().hex)
    # API Gateway connection ids are base64-like and often end with "=": keep that sharp edge.
    connection_id: str = field(default_factory=lambda: secrets.token_urlsafe(10)[:12] + "=")
    context: Any = field(default_factory=LambdaContext)
    relay_url: str = ""
    action_url: str = ""
    greeting: str | None = None
    parameters: dict[str, str] = field(default_factory=dict)
    twiml: list[str] = field(default_factory=list)
    session_id: str = field(default_factory=lambda: "VX" + uuid.uuid4().hex)
    # How the handshake is signed: over the wss URL with its query ("url"), or without it and
    # with the query's values as parameters ("params"); Twilio documents neither.
    signed_as: str = "url"
    handshake: dict[str, Any] | None = None  # the last $connect event, as API Gateway delivered it

    # -- the HTTP side ------------------------------------------------------------------

    def dial(self, query: str = "") -> dict[str, Any]:
        params = call_params(account_sid=self.account_sid, call_sid=self.call_sid, caller=self.caller, agent=self.agent)
        response = self.functions.incoming_call.handler(
            http_api_event("/voice", params, auth_token=self.auth_token, query=query), self.context
        )
        if response["statusCode"] == 200:
            if "<ConversationRelay" in response["body"]:
                self._read_connect(response["body"])
        return response

    def _read_connect(self, twiml: str) -> None:
        self.twiml.append(twiml)
        root = ET.fromstring(twiml)  # noqa: S314 - our own TwiML
        connect = root.find("Connect")
        relay = connect.find("ConversationRelay")
        self.action_url = connect.get("action")
        self.relay_url = relay.get("url")
        self.greeting = relay.get("welcomeGreeting")
        self.parameters = {p.get("name"): p.get("value") for p in relay.findall("Parameter")}

    def session_ends(self, status: str, *, handoff_data: str | None = None, error_code: str | None = None) -> str:
        """ConversationRelay's POST to the action URL; returns the TwiML that continues the call."""
        url = urlsplit(self.action_url)
        params = action_params(
            account_sid=self.account_sid,
            call_sid=self.call_sid,
            caller=self.caller,
            agent=self.agent,
            session_status=status,
            handoff_data=handoff_data,
            error_code=error_code,
            session_id=self.session_id,
        )
        event = http_api_event(url.path, params, auth_token=self.auth_token, host=url.netloc, query=url.query)
        response = self.functions.voice_action.handler(event, self.context)
        assert response["statusCode"] == 200, response
        self.twiml.append(response["body"])
        return response["body"]

    def finish(self) -> str:
        """After an `end` frame: Twilio ends the session and posts HandoffData verbatim."""
        end = self.end_message
        assert end is not None, "the product sent no end message"
        return self.session_ends("ended", handoff_data=end.get("handoffData"))

    def hang_up(self) -> str:
        self.disconnect()
        return self.session_ends("completed")

    def drop(self) -> str:
        """The socket died (Twilio reports 64105): the product must still look after the caller."""
        self.connections.gone.add(self.connection_id)
        self.disconnect()
        return self.session_ends("failed", error_code="64105")

    def reconnect_from(self, twiml: str) -> None:
        """Follow a fresh <Connect> from the action callback: new session, new socket, same call."""
        self._read_connect(twiml)
        self.connection_id = secrets.token_urlsafe(10)[:12] + "="
        self.session_id = "VX" + uuid.uuid4().hex

    # -- the WebSocket side -------------------------------------------------------------

    def _ws(self) -> tuple[str, str]:
        parts = urlsplit(self.relay_url)
        return parts.netloc, parts.path.strip("/")

    def connect(self, signature: str | None = None) -> int:
        """Open the socket on the wss URL of the TwiML, its query (the socket binding) included."""
        domain, stage = self._ws()
        event = ws_connect_event(
            self.connection_id,
            auth_token=self.auth_token,
            domain=domain,
            stage=stage,
            signed_url=self.relay_url,
            signature=signature,
            signed_as=self.signed_as,
        )
        self.handshake = event
        return self.functions.voice_relay.handler(event, self.context)["statusCode"]

    def send(self, message: dict[str, Any] | str) -> list[dict[str, Any]]:
        """Send one frame; returns the frames the product posted back while handling it."""
        before = len(self.frames)
        domain, stage = self._ws()
        body = message if isinstance(message, str) else json.dumps(message)
        response = self.functions.voice_relay.handler(
            ws_message_event(self.connection_id, body, domain=domain, stage=stage), self.context
        )
        assert response == {"statusCode": 200}, response
        return self.frames[before:]

    def setup(self) -> list[dict[str, Any]]:
        return self.send(
            {
                "type": "setup",
                "sessionId": self.session_id,
                "callSid": self.call_sid,
                "parentCallSid": "",
                "from": self.caller,
                "to": self.agent,
                "forwardedFrom": "",
                "callerName": "",
                "direction": "inbound",
                "callType": "PSTN",
                "callStatus": "RINGING",
                "accountSid": self.account_sid,
                "customParameters": dict(self.parameters),
            }
        )

    def say(self, text: str) -> list[dict[str, Any]]:
        return self.send({"type": "prompt", "voicePrompt": text, "lang": "en-US", "last": True})

    def press(self, digit: str) -> list[dict[str, Any]]:
        return self.send({"type": "dtmf", "digit": digit})

    def interrupt(self, heard: str, ms: int = 900) -> list[dict[str, Any]]:
        return self.send({"type": "interrupt", "utteranceUntilInterrupt": heard, "durationUntilInterruptMs": ms})

    def disconnect(self) -> None:
        domain, stage = self._ws()
        event = ws_disconnect_event(self.connection_id, domain=domain, stage=stage)
        self.functions.voice_relay.handler(event, self.context)

    @property
    def raw_frames(self) -> list[bytes]:
        return list(self.connections.frames.get(self.connection_id, []))

    @property
    def frames(self) -> list[dict[str, Any]]:
        return self.connections.messages(self.connection_id)

    @property
    def end_message(self) -> dict[str, Any] | None:
        return next((f for f in self.frames if f.get("type") == "end"), None)

    @staticmethod
    def spoken(frames: list[dict[str, Any]]) -> str:
        return "".join(f["token"] for f in frames if f.get("type") == "text")
