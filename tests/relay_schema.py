"""The ConversationRelay wire schema as strict pydantic models: the tests' independent oracle.

The product checks frames by hand (agent_handoff.voice.protocol, to keep pydantic off the
relay's cold start); these models are the specification those checks are held to. Every
frame a test captures must validate here, and the inbound parser must agree with INBOUND.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator


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
    last: bool = Field(True, strict=True)


class Dtmf(_Inbound):
    type: Literal["dtmf"]
    digit: str = Field(pattern=r"^[0-9*#A-Dw]$")


class Interrupt(_Inbound):
    type: Literal["interrupt"]
    utterance_until_interrupt: str = Field("", alias="utteranceUntilInterrupt", max_length=8_000)
    duration_until_interrupt_ms: float = Field(0, alias="durationUntilInterruptMs", ge=0, allow_inf_nan=False)

    @field_validator("duration_until_interrupt_ms", mode="before")
    @classmethod
    def _number_or_string(cls, value: Any) -> Any:
        # Twilio has sent it both as a number and as a string.
        if isinstance(value, str) and value.strip():
            try:
                return float(value)
            except ValueError:
                return value
        if isinstance(value, bool):
            raise ValueError("a boolean is not a duration")
        return value


class Error(_Inbound):
    type: Literal["error"]
    description: str = Field("", max_length=2_000)


class Info(_Inbound):
    type: Literal["info"]
    name: str = Field("", max_length=256)
    value: Any = None


Inbound = Annotated[Setup | Prompt | Dtmf | Interrupt | Error | Info, Field(discriminator="type")]
INBOUND = TypeAdapter(Inbound)


class OutboundMessage(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid", frozen=True)


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
    """Strictly parse a frame we would send."""
    return OUTBOUND.validate_json(frame, strict=True)
