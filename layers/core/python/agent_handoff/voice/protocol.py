"""ConversationRelay WebSocket messages: a class for each one Twilio sends and each one we send (text, end).

Inbound parsing is lenient about fields Twilio may add without notice and strict about the ones
we read; outbound messages check their fields when built, because an invalid frame is dropped
by Twilio with error 64107 and ten in a row end the call. Every frame this product sends is
built from these classes and nothing else; the tests hold each captured frame to an independent
strict schema (tests/relay_schema.py).

Checked by hand rather than with pydantic: the relay serves every frame of a call, and pydantic's
import and model building would add about a fifth of a minimal function to each cold start.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass
from typing import Any, ClassVar, NamedTuple

# API Gateway's WebSocket message limit is 128 KB; nothing Twilio sends us comes close.
MAX_FRAME_BYTES = 64 * 1024

_CALL_SID = re.compile(r"CA[0-9a-fA-F]{32}")
_ACCOUNT_SID = re.compile(r"AC[0-9a-fA-F]{32}")
_DIGIT = re.compile(r"[0-9*#A-Dw]")


class ProtocolError(ValueError):
    """A frame that is not a ConversationRelay message we can act on."""


# -- inbound ------------------------------------------------------------------------------
# NamedTuples: every cold start creates these classes, and a NamedTuple costs a tenth of a
# frozen dataclass to create. Outbound messages stay dataclasses, to check fields when built.


class Setup(NamedTuple):
    session_id: str
    call_sid: str
    account_sid: str
    custom_parameters: dict[str, Any]
    from_: str = ""
    to: str = ""
    parent_call_sid: str = ""
    direction: str = ""
    type: str = "setup"


class Prompt(NamedTuple):
    voice_prompt: str
    lang: str = ""
    last: bool = True
    type: str = "prompt"


class Dtmf(NamedTuple):
    digit: str
    type: str = "dtmf"


class Interrupt(NamedTuple):
    utterance_until_interrupt: str = ""
    duration_until_interrupt_ms: float = 0
    type: str = "interrupt"


class Error(NamedTuple):
    description: str = ""
    type: str = "error"


class Info(NamedTuple):
    name: str = ""
    value: Any = None
    type: str = "info"


Inbound = Setup | Prompt | Dtmf | Interrupt | Error | Info


class _Fields:
    """Reads a frame's fields, collecting the names of those that are wrong."""

    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data
        self.wrong: list[str] = []

    def text(
        self,
        key: str,
        *,
        default: str | None = "",
        min_length: int = 0,
        max_length: int | None = None,
        pattern: re.Pattern | None = None,
    ) -> str:
        """A string field; give either `max_length` or a `pattern` that fixes the length."""
        value = self._data.get(key, default)
        ok = (
            isinstance(value, str)
            and min_length <= len(value)
            and (max_length is None or len(value) <= max_length)
            and (pattern is None or pattern.fullmatch(value) is not None)
        )
        if not ok:
            self.wrong.append(key)
            return ""
        return value

    def flag(self, key: str, default: bool) -> bool:
        value = self._data.get(key, default)
        if not isinstance(value, bool):
            self.wrong.append(key)
            return default
        return value

    def milliseconds(self, key: str) -> float:
        value = self._data.get(key, 0)
        if isinstance(value, str) and value.strip():  # Twilio has sent it both as a number and as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
            self.wrong.append(key)
            return 0.0
        return float(value)

    def mapping(self, key: str) -> dict[str, Any]:
        value = self._data.get(key, {})
        if not isinstance(value, dict):
            self.wrong.append(key)
            return {}
        return value


def _read(kind: str, data: dict[str, Any]) -> Inbound:
    f = _Fields(data)
    message: Inbound
    if kind == "setup":
        message = Setup(
            session_id=f.text("sessionId", default=None, min_length=1, max_length=128),
            call_sid=f.text("callSid", default=None, pattern=_CALL_SID),
            account_sid=f.text("accountSid", default=None, pattern=_ACCOUNT_SID),
            from_=f.text("from", max_length=256),
            to=f.text("to", max_length=256),
            parent_call_sid=f.text("parentCallSid", max_length=64),
            direction=f.text("direction", max_length=32),
            custom_parameters=f.mapping("customParameters"),
        )
    elif kind == "prompt":
        message = Prompt(
            voice_prompt=f.text("voicePrompt", default=None, max_length=8_000),
            lang=f.text("lang", max_length=32),
            last=f.flag("last", True),
        )
    elif kind == "dtmf":
        message = Dtmf(digit=f.text("digit", default=None, pattern=_DIGIT))
    elif kind == "interrupt":
        message = Interrupt(
            utterance_until_interrupt=f.text("utteranceUntilInterrupt", max_length=8_000),
            duration_until_interrupt_ms=f.milliseconds("durationUntilInterruptMs"),
        )
    elif kind == "error":
        message = Error(description=f.text("description", max_length=2_000))
    else:
        message = Info(name=f.text("name", max_length=256), value=data.get("value"))
    if f.wrong:
        raise ProtocolError(f"invalid {kind} message: {', '.join(f.wrong)}")
    return message


def parse_inbound(body: str | bytes | None) -> Inbound:
    if body is None or not body:
        raise ProtocolError("empty frame")
    if len(body) > MAX_FRAME_BYTES:
        raise ProtocolError("frame too large")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ProtocolError("frame is not JSON (or nested beyond reason)") from None
    if not isinstance(data, dict):
        raise ProtocolError("frame is not a JSON object")
    kind = data.get("type")
    if kind not in ("setup", "prompt", "dtmf", "interrupt", "error", "info"):
        raise ProtocolError(f"unknown message type {str(kind)[:40]!r}")
    return _read(kind, data)


# -- outbound -----------------------------------------------------------------------------


@dataclass(frozen=True)
class OutboundMessage:
    type: ClassVar[str]
    # Python field name -> wire name, where they differ.
    _wire_names: ClassVar[dict[str, str]] = {}

    def __post_init__(self) -> None:
        problem = self._problem()
        if problem:
            raise ValueError(f"invalid {self.type} message: {problem}")

    def _problem(self) -> str:
        return ""

    def frame(self) -> str:
        """The wire JSON: `type` first, unset optional fields left out."""
        fields = {self._wire_names.get(k, k): v for k, v in asdict(self).items() if v is not None}
        return json.dumps({"type": self.type, **fields}, separators=(",", ":"), ensure_ascii=False)


def _optional(value: Any, kind: type) -> bool:
    return value is None or (isinstance(value, kind) and (kind is not int or not isinstance(value, bool)))


@dataclass(frozen=True)
class Text(OutboundMessage):
    type: ClassVar[str] = "text"
    token: str
    last: bool = False
    lang: str | None = None
    interruptible: bool | None = None
    preemptible: bool | None = None

    def _problem(self) -> str:
        if not isinstance(self.token, str):
            return "token must be a string"
        if not isinstance(self.last, bool):
            return "last must be a boolean"
        if not all(_optional(v, bool) for v in (self.interruptible, self.preemptible)) or not _optional(self.lang, str):
            return "lang must be a string, interruptible and preemptible booleans"
        return ""


@dataclass(frozen=True)
class End(OutboundMessage):
    type: ClassVar[str] = "end"
    _wire_names: ClassVar[dict[str, str]] = {"handoff_data": "handoffData"}
    # A JSON *string*: ConversationRelay forwards it verbatim as HandoffData to the action URL.
    handoff_data: str | None = None

    def _problem(self) -> str:
        return "" if _optional(self.handoff_data, str) else "handoffData must be a string"
