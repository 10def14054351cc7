"""Twilio ConversationRelay WebSocket messages: one model per wire message.

Inbound models are lenient (Twilio adds fields without notice); outbound models are strict,
because an invalid frame is dropped by Twilio with error 64107 and ten in a row end the call.
Every frame this product sends is built from these models and nothing else.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

# API Gateway's WebSocket message limit is 128 KB; nothing Twilio sends us comes close.
MAX_FRAME_BYTES = 64 * 1024


class _Inbound(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="allow")


class Setup(_Inbound):
    type: Literal["setup"]
    session_id: str = Field(alias="sessionId", min_length=1, max_length=128)
    call_sid: str = Field(alias="callSid", pattern=r"^CA[0-9a-fA-F]{32}$")
    account_sid: str = Field(alias="accountSid", pattern=r"^AC[0-9a-fA-F]{32}$")
    from_: str = Field("", alias="from", max_length=256)
    to: str = Field("", max_length=256)
    parent_call_sid: str = Field("", alias="parentCallSid", max_length=64)
    direction: str = Field("", max_length=32)
    custom_parameters: dict[str, Any] = Field(default_factory=dict, alias="customParameters")


class Prompt(_Inbound):
    type: Literal["prompt"]
    voice_prompt: str = Field(alias="voicePrompt", max_length=8_000)
    lang: str = Field("", max_length=32)
    last: bool = True


class Dtmf(_Inbound):
    type: Literal["dtmf"]
    digit: str = Field(pattern=r"^[0-9*#A-Dw]$")


class Interrupt(_Inbound):
    type: Literal["interrupt"]
    utterance_until_interrupt: str = Field("", alias="utteranceUntilInterrupt", max_length=8_000)
    duration_until_interrupt_ms: float = Field(0, alias="durationUntilInterruptMs", ge=0)

    @field_validator("duration_until_interrupt_ms", mode="before")
    @classmethod
    def _number_or_string(cls, value: Any) -> Any:
        # Twilio has sent it both as a number and as a string.
        return float(value) if isinstance(value, str) and value.strip() else value


class Error(_Inbound):
    type: Literal["error"]
    description: str = Field("", max_length=2_000)


class Info(_Inbound):
    type: Literal["info"]
    name: str = Field("", max_length=256)
    value: Any = None


Inbound = Annotated[Setup | Prompt | Dtmf | Interrupt | Error | Info, Field(discriminator="type")]
_INBOUND = TypeAdapter(Inbound)


class ProtocolError(ValueError):
    """A frame that is not a ConversationRelay message we can act on."""


def parse_inbound(body: str | bytes | None) -> Setup | Prompt | Dtmf | Interrupt | Error | Info:
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
    try:
        return _INBOUND.validate_python(data)
    except ValidationError as exc:
        fields = ", ".join(".".join(map(str, e["loc"][1:])) or "?" for e in exc.errors())
        raise ProtocolError(f"invalid {kind} message: {fields}") from None


class OutboundMessage(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid", frozen=True)

    def frame(self) -> str:
        return self.model_dump_json(by_alias=True, exclude_none=True)


class Text(OutboundMessage):
    type: Literal["text"] = "text"
    token: str
    last: bool = False
    lang: str | None = None
    interruptible: bool | None = None
    preemptible: bool | None = None


class End(OutboundMessage):
    type: Literal["end"] = "end"
    # A JSON *string*: ConversationRelay forwards it verbatim as HandoffData to the action URL.
    handoff_data: str | None = Field(None, alias="handoffData")


class Play(OutboundMessage):
    type: Literal["play"] = "play"
    source: str
    loop: int | None = None
    preemptible: bool | None = None
    interruptible: bool | None = None


class SendDigits(OutboundMessage):
    type: Literal["sendDigits"] = "sendDigits"
    digits: str = Field(pattern=r"^[0-9*#w]+$")


class Language(OutboundMessage):
    type: Literal["language"] = "language"
    tts_language: str | None = Field(None, alias="ttsLanguage")
    transcription_language: str | None = Field(None, alias="transcriptionLanguage")


Outbound = Annotated[Text | End | Play | SendDigits | Language, Field(discriminator="type")]
OUTBOUND = TypeAdapter(Outbound)


def validate_outbound(frame: str | bytes) -> Text | End | Play | SendDigits | Language:
    """Strictly parse a frame we would send (tests hold every captured frame to this)."""
    return OUTBOUND.validate_json(frame, strict=True)
