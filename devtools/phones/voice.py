"""A phone call to a running stack, over real HTTP and a real WebSocket: `make call`.

    python -m devtools.phones.voice --local                    # the running `make local`: type what the caller says
    python -m devtools.phones.voice --url URL --script FILE    # one line per turn, for demos and tests
    ... --caller last                                          # the previous call's number (default: a new one)

Lines are spoken as `prompt` frames; `press 0` sends a DTMF digit, `interrupt <heard text>`
barges in, `hangup` ends the call. In a script, an `interrupt` line after a spoken line is sent
while the agent is answering it (after its first words arrive), as a caller talking over the
agent would. It prints every frame the product sends, and when an `end` frame arrives it posts
the `<Connect action>` callback with HandoffData, as Twilio does, and prints the TwiML that
routes the call.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import uuid
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, TextIO

from twilio.request_validator import RequestValidator

from devtools.cli import UserError, open_script, run
from devtools.local import state
from devtools.phones.twilio_side import post_signed
from devtools.samples import sample
from devtools.samples.events import action_params, call_params

TURN_TIMEOUT_SECONDS = 20
QUIET_SECONDS = 3  # how long a digit or an interrupt waits for frames that may never come


@dataclass
class CallResult:
    frames: list[dict[str, Any]] = field(default_factory=list)
    twiml: list[str] = field(default_factory=list)
    handshake_status: int = 0
    voice_status: int = 0  # what /voice answered

    @property
    def end(self) -> dict[str, Any] | None:
        return next((f for f in self.frames if f.get("type") == "end"), None)


async def place_call(
    lines: Iterable[str] | AsyncIterator[str],
    out: TextIO,
    *,
    url: str,
    account_sid: str,
    auth_token: str,
    caller: str = sample.CUSTOMER_NUMBER,
    agent: str = sample.AGENT_NUMBER,
    signed_base: str | None = None,
    handshake_signature: str | None = None,
    typed: bool = False,
    answered: Callable[[], None] | None = None,
) -> CallResult:
    """`typed`: a person types the lines at a terminal (prompted, not echoed, never read ahead).

    `answered` is called once the stack has answered the call (/voice with 200).
    """
    import aiohttp

    base, signed = url.rstrip("/"), (signed_base or url).rstrip("/")
    result = CallResult()
    call_sid = "CA" + uuid.uuid4().hex
    try:
        status, twiml = await asyncio.to_thread(
            post_signed,
            f"{base}/voice",
            call_params(account_sid=account_sid, call_sid=call_sid, caller=caller, agent=agent),
            auth_token,
            signed_url=f"{signed}/voice",
        )
    except OSError as exc:
        from devtools.phones.release import unreachable

        raise unreachable(base, exc) from exc
    out.write(f"[twiml {status}] {twiml}\n")
    result.twiml.append(twiml)
    result.voice_status = status
    if status != 200:
        return result
    if answered is not None:
        answered()
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
            turns = _Turns(lines, out, typed)
            while (text := await turns.next()) is not None:
                if text == "hangup":
                    break
                frame = _frame_for(text)
                await socket.send_json(frame)
                if frame["type"] == "interrupt":
                    out.write(f"   [interrupt] sent: the caller heard {frame['utteranceUntilInterrupt']!r}\n")
                    continue
                # Speech and 0 (a person, by the design) get a turn; another digit may get nothing.
                waited = TURN_TIMEOUT_SECONDS if frame.get("digit", "0") == "0" else QUIET_SECONDS
                barge_in = None if typed else turns.next_interrupt()
                frames = await _read_turn(socket, result, out, first_timeout=waited, barge_in=barge_in)
                if not frames:
                    out.write(f"   (nothing came back within {waited} s)\n")
                if barge_in is not None and "_line" in barge_in:  # the agent said nothing to talk over
                    out.write(f"you> {barge_in.pop('_line')}\n")
                    await socket.send_json(barge_in)
                    out.write(f"   [interrupt] sent: the caller heard {barge_in['utteranceUntilInterrupt']!r}\n")
                if any(f.get("type") == "end" for f in frames):
                    await session_ends("ended", handoff_data=result.end["handoffData"])
                    return result
        await session_ends("completed")
    return result


class _Turns:
    """The caller's lines, one turn at a time; a script can be read ahead for its interrupts."""

    def __init__(self, lines: Iterable[str] | AsyncIterator[str], out: TextIO, typed: bool) -> None:
        self._out, self._typed = out, typed
        self._typing: AsyncIterator[str] | None = lines if isinstance(lines, AsyncIterator) else None
        self._lines: Iterator[str] = iter(()) if self._typing is not None else iter(lines)
        self._ahead: list[str] = []

    async def next(self) -> str | None:
        """The next line that says something; None once the lines end (Ctrl-D at a terminal)."""
        while True:
            if self._typed:
                self._out.write("you> ")
                self._out.flush()
            try:
                if self._ahead:
                    line = self._ahead.pop(0)
                elif self._typing is not None:
                    line = await anext(self._typing)
                else:
                    line = next(self._lines)
            except (StopIteration, StopAsyncIteration):
                if self._typed:
                    self._out.write("\n")  # Ctrl-D leaves the cursor after the prompt
                return None
            if text := line.strip():
                if not self._typed:  # a terminal already shows what was typed
                    self._out.write(f"you> {text}\n")
                return text

    def next_interrupt(self) -> dict[str, Any] | None:
        """The interrupt frame that follows in the script, taken now to be sent during the reply."""
        if not self._ahead:
            for line in self._lines:
                if line.strip():
                    self._ahead.append(line)
                    break
        if self._ahead and self._ahead[0].strip().startswith("interrupt"):
            text = self._ahead.pop(0).strip()
            return _frame_for(text) | {"_line": text}
        return None


async def terminal_lines(fd: int) -> AsyncIterator[str]:
    """Lines typed at a terminal, read only once the loop sees one ready.

    A blocking read would hold the loop: Ctrl-C, which asyncio.run turns into cancelling the call,
    would wait for Enter, and the line typed after it would still be spoken to the agent.
    """
    loop = asyncio.get_running_loop()
    pending = b""
    while True:
        ready = loop.create_future()
        loop.add_reader(fd, _wake, ready)
        try:
            await ready
        finally:
            loop.remove_reader(fd)
        chunk = os.read(fd, 4096)  # a terminal hands over one line at a time
        if not chunk:  # Ctrl-D
            if pending:
                yield pending.decode(errors="replace")
            return
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            yield line.decode(errors="replace")


def _wake(ready: asyncio.Future) -> None:
    if not ready.done():
        ready.set_result(None)


def _frame_for(text: str) -> dict[str, Any]:
    if text.startswith("press "):
        return {"type": "dtmf", "digit": text.split(maxsplit=1)[1][:1]}
    if text.startswith("interrupt"):
        heard = text.removeprefix("interrupt").strip()
        return {"type": "interrupt", "utteranceUntilInterrupt": heard, "durationUntilInterruptMs": 800}
    return {"type": "prompt", "voicePrompt": text, "lang": "en-US", "last": True}


async def _read_turn(
    socket: Any,
    result: CallResult,
    out: TextIO,
    *,
    first_timeout: float = TURN_TIMEOUT_SECONDS,
    barge_in: dict[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """Frames until the turn is over: a text with last=true (and an end, if one follows quickly).

    `barge_in`: an interrupt frame to send as soon as the agent's first words arrive.
    """
    frames: list[dict[str, Any]] = []
    timeout = first_timeout
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
        if barge_in is not None and frame.get("type") == "text":
            line = barge_in.pop("_line")
            await socket.send_json(barge_in)
            out.write(f"you> {line}\n   [interrupt] sent while the agent was speaking\n")
            barge_in = None
        if frame.get("type") == "end":
            break
        if frame.get("type") == "text" and frame.get("last"):
            out.write(f"agent> {''.join(f['token'] for f in frames if f.get('type') == 'text')}\n")
            timeout = 1.0  # an end frame may follow the last words
        else:
            timeout = TURN_TIMEOUT_SECONDS
    return frames


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--url", help="a running stack's base URL")
    target.add_argument("--local", action="store_true", help="the running `make local` (its URL, or port 3000)")
    parser.add_argument("--script", help="one caller line per turn")
    parser.add_argument("--caller", help="the caller's number: E.164, 'new' (default) or 'last' (the previous call's)")
    parser.add_argument("--signed-url", help="the base URL Twilio would sign, when it differs (a tunnel)")
    args = parser.parse_args(argv)
    from devtools.phones import release as releasing

    script = open_script(args.script) if args.script else None
    base = releasing.stack_url(args.url)
    caller = state.choose_number("caller", args.caller)
    agent = releasing.agent_number(base)
    typed = script is None and sys.stdin.isatty()
    print(
        f"You are {caller}, calling the agent at {agent} through {base} (CALLER=last: this number again).", flush=True
    )
    if typed:
        print("Speak as the caller (type a line). 'press 0', 'interrupt <heard>', 'hangup'. Ctrl-D hangs up.")
    source: Iterable[str] | AsyncIterator[str] = script or sys.stdin
    if typed:
        source = terminal_lines(sys.stdin.fileno())
    elif script is None:
        source = sys.stdin.readlines() or ["What are your opening hours?", "I'd like to speak to a person"]
    result = asyncio.run(
        place_call(
            source,
            sys.stdout,
            url=base,
            signed_base=args.signed_url,
            account_sid=os.environ.get("TWILIO_ACCOUNT_SID", sample.ACCOUNT_SID),
            auth_token=os.environ.get("TWILIO_AUTH_TOKEN", sample.AUTH_TOKEN),
            caller=caller,
            agent=agent,
            typed=typed,
            answered=lambda: state.remember("caller", caller),  # CALLER=last: a number the stack has seen
        )
    )
    if result.voice_status != 200:
        raise UserError(
            f"the stack answered /voice with HTTP {result.voice_status}: its terminal (make local) says why"
        )
    if result.handshake_status != 101:
        raise UserError(
            f"the WebSocket handshake was refused (HTTP {result.handshake_status}): both sides need the same TWILIO_AUTH_TOKEN"
        )
    print("\nhanded off" if result.end else "\ncall ended")
    return 0


if __name__ == "__main__":
    sys.exit(run(main, "make call"))
