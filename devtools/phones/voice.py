"""A phone call to a running stack, over real HTTP and a real WebSocket: `make call URL=...`.

    python -m devtools.phones.voice --url URL                  # interactive: type what the caller says
    python -m devtools.phones.voice --url URL --script FILE    # one line per turn, for demos and tests

Lines are spoken as `prompt` frames; `press 0` sends a DTMF digit, `interrupt <heard text>`
barges in, `hangup` ends the call. It prints every frame the product sends, and when an `end`
frame arrives it posts the `<Connect action>` callback with HandoffData, as Twilio does, and
prints the TwiML that routes the call.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, TextIO

from twilio.request_validator import RequestValidator

from devtools.phones.twilio_side import post_signed
from devtools.samples import sample
from devtools.samples.events import action_params, call_params

TURN_TIMEOUT_SECONDS = 20


@dataclass
class CallResult:
    frames: list[dict[str, Any]] = field(default_factory=list)
    twiml: list[str] = field(default_factory=list)
    handshake_status: int = 0

    @property
    def end(self) -> dict[str, Any] | None:
        return next((f for f in self.frames if f.get("type") == "end"), None)


async def place_call(
    lines: Iterable[str],
    out: TextIO,
    *,
    url: str,
    account_sid: str,
    auth_token: str,
    caller: str = sample.CUSTOMER_NUMBER,
    agent: str = sample.AGENT_NUMBER,
    signed_base: str | None = None,
    handshake_signature: str | None = None,
) -> CallResult:
    import aiohttp

    base, signed = url.rstrip("/"), (signed_base or url).rstrip("/")
    result = CallResult()
    call_sid = "CA" + uuid.uuid4().hex
    status, twiml = await asyncio.to_thread(
        post_signed,
        f"{base}/voice",
        call_params(account_sid=account_sid, call_sid=call_sid, caller=caller, agent=agent),
        auth_token,
        signed_url=f"{signed}/voice",
    )
    out.write(f"[twiml {status}] {twiml}\n")
    result.twiml.append(twiml)
    if status != 200:
        return result
    connect = ET.fromstring(twiml).find("Connect")  # noqa: S314 - the product's own TwiML
    relay = connect.find("ConversationRelay")
    relay_url, action_url = relay.get("url"), connect.get("action")
    parameters = {p.get("name"): p.get("value") for p in relay.findall("Parameter")}
    signature = (
        handshake_signature
        if handshake_signature is not None
        else (RequestValidator(auth_token).compute_signature(relay_url, {}))
    )

    async def session_ends(session_status: str, **extra: str) -> str:
        params = action_params(
            account_sid=account_sid,
            call_sid=call_sid,
            caller=caller,
            agent=agent,
            session_status=session_status,
            **extra,
        )
        code, body = await asyncio.to_thread(post_signed, action_url, params, auth_token)
        out.write(f"[action {session_status} -> {code}] {body}\n")
        result.twiml.append(body)
        return body

    async with aiohttp.ClientSession() as http:
        try:
            socket = await http.ws_connect(relay_url, headers={"X-Twilio-Signature": signature})
        except aiohttp.WSServerHandshakeError as refused:
            result.handshake_status = refused.status
            out.write(f"[handshake refused: HTTP {refused.status}]\n")
            return result
        result.handshake_status = 101
        async with socket:
            if relay.get("welcomeGreeting"):
                out.write(f"agent> {relay.get('welcomeGreeting')}   (welcome greeting)\n")
            await socket.send_json(
                {
                    "type": "setup",
                    "sessionId": "VX" + uuid.uuid4().hex,
                    "callSid": call_sid,
                    "from": caller,
                    "to": agent,
                    "direction": "inbound",
                    "callType": "PSTN",
                    "callStatus": "RINGING",
                    "accountSid": account_sid,
                    "customParameters": parameters,
                }
            )
            for line in lines:
                text = line.strip()
                if not text:
                    continue
                out.write(f"you> {text}\n")
                if text == "hangup":
                    break
                await socket.send_json(_frame_for(text))
                if text.startswith("interrupt"):
                    continue
                frames = await _read_turn(socket, result, out)
                if any(f.get("type") == "end" for f in frames):
                    await session_ends("ended", handoff_data=result.end["handoffData"])
                    return result
        await session_ends("completed")
    return result


def _frame_for(text: str) -> dict[str, Any]:
    if text.startswith("press "):
        return {"type": "dtmf", "digit": text.split(maxsplit=1)[1][:1]}
    if text.startswith("interrupt"):
        heard = text.removeprefix("interrupt").strip()
        return {"type": "interrupt", "utteranceUntilInterrupt": heard, "durationUntilInterruptMs": 800}
    return {"type": "prompt", "voicePrompt": text, "lang": "en-US", "last": True}


async def _read_turn(socket: Any, result: CallResult, out: TextIO) -> list[dict[str, Any]]:
    """Frames until the turn is over: a text with last=true (and an end, if one follows quickly)."""
    frames: list[dict[str, Any]] = []
    timeout = TURN_TIMEOUT_SECONDS
    while True:
        try:
            message = await socket.receive(timeout=timeout)
        except TimeoutError:
            break
        if message.type.name != "TEXT":
            break
        frame = json.loads(message.data)
        frames.append(frame)
        result.frames.append(frame)
        out.write(f"   [frame] {message.data}\n")
        if frame.get("type") == "end":
            break
        if frame.get("type") == "text" and frame.get("last"):
            out.write(f"agent> {''.join(f['token'] for f in frames if f.get('type') == 'text')}\n")
            timeout = 1.0  # an end frame may follow the last words
    return frames


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", required=True, help="a running stack's base URL (make local prints it)")
    parser.add_argument("--script", type=argparse.FileType("r"), help="one caller line per turn")
    parser.add_argument("--signed-url", help="the base URL Twilio would sign, when it differs (a tunnel)")
    args = parser.parse_args(argv)
    interactive = args.script is None and sys.stdin.isatty()
    if interactive:
        print("Speak as the caller (type a line). 'press 0', 'interrupt <heard>', 'hangup'. Ctrl-D hangs up.")
    source: Iterable[str] = args.script or sys.stdin
    if not interactive and args.script is None:
        source = sys.stdin.readlines() or ["What are your opening hours?", "I'd like to speak to a person"]
    result = asyncio.run(
        place_call(
            source,
            sys.stdout,
            url=args.url,
            signed_base=args.signed_url,
            account_sid=os.environ.get("TWILIO_ACCOUNT_SID", sample.ACCOUNT_SID),
            auth_token=os.environ.get("TWILIO_AUTH_TOKEN", sample.AUTH_TOKEN),
        )
    )
    print("\nhanded off" if result.end else "\ncall ended")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
