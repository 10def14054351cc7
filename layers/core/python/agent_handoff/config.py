"""Settings read from the environment, validated once per cold start.

Every field is named by its environment variable (the names are a contract in DESIGN.md),
so a validation error can say exactly which variable is wrong and why.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import ConfigError

_SID_PATTERNS = {
    "TWILIO_ACCOUNT_SID": r"^AC[0-9a-fA-F]{32}$",
    "TWILIO_STUDIO_HANDOFF_FLOW_SID": r"^FW[0-9a-fA-F]{32}$",
    "TWILIO_TASKROUTER_WORKFLOW_SID": r"^WW[0-9a-fA-F]{32}$",
}
_E164 = r"^\+[1-9][0-9]{6,14}$"


class Settings(BaseModel):
    """All configuration of the product. Functions ask for the parts they need with `require`."""

    model_config = ConfigDict(populate_by_name=False, extra="ignore", frozen=True)

    twilio_account_sid: str | None = Field(
        None, alias="TWILIO_ACCOUNT_SID", pattern=_SID_PATTERNS["TWILIO_ACCOUNT_SID"]
    )
    twilio_auth_token: str | None = Field(None, alias="TWILIO_AUTH_TOKEN", min_length=16)
    twilio_api_key: str | None = Field(None, alias="TWILIO_API_KEY", pattern=r"^SK[0-9a-fA-F]{32}$")
    twilio_api_secret: str | None = Field(None, alias="TWILIO_API_SECRET", min_length=8)
    twilio_phone_number: str | None = Field(None, alias="TWILIO_PHONE_NUMBER", pattern=_E164)
    studio_flow_sid: str | None = Field(
        None, alias="TWILIO_STUDIO_HANDOFF_FLOW_SID", pattern=_SID_PATTERNS["TWILIO_STUDIO_HANDOFF_FLOW_SID"]
    )
    taskrouter_workflow_sid: str | None = Field(
        None, alias="TWILIO_TASKROUTER_WORKFLOW_SID", pattern=_SID_PATTERNS["TWILIO_TASKROUTER_WORKFLOW_SID"]
    )
    handoff_attributes: dict[str, Any] = Field(default_factory=dict, alias="HANDOFF_ATTRIBUTES")
    memory_store_id: str = Field("", alias="TWILIO_MEMORY_STORE_ID")
    sessions_table_name: str | None = Field(None, alias="SESSIONS_TABLE_NAME", min_length=3, max_length=255)
    studio_base_url: str = Field("https://studio.twilio.com", alias="STUDIO_BASE_URL", pattern=r"^https?://[^/\s]+")
    public_base_url: str | None = Field(None, alias="PUBLIC_BASE_URL", pattern=r"^https?://[^/\s]+")
    dead_letter_queue_url: str | None = Field(None, alias="DEAD_LETTER_QUEUE_URL", pattern=r"^https?://")

    llm_provider: Literal["rules", "openai", "bedrock"] = Field("rules", alias="LLM_PROVIDER")
    openai_base_url: str = Field("https://api.openai.com/v1", alias="OPENAI_BASE_URL", pattern=r"^https?://")
    openai_api_key: str | None = Field(None, alias="OPENAI_API_KEY")
    openai_model: str = Field("gpt-4o-mini", alias="OPENAI_MODEL", min_length=1)
    bedrock_model_id: str | None = Field(None, alias="BEDROCK_MODEL_ID", min_length=1)
    llm_timeout_seconds: float = Field(8.0, alias="LLM_TIMEOUT_SECONDS", gt=0, le=25)
    system_prompt: str | None = Field(None, alias="AGENT_SYSTEM_PROMPT")

    history_limit: int = Field(20, alias="HISTORY_LIMIT", ge=2, le=200)
    session_ttl_seconds: int = Field(7 * 24 * 3600, alias="SESSION_TTL_SECONDS", ge=60)
    handoff_hold_seconds: int = Field(24 * 3600, alias="HANDOFF_HOLD_SECONDS", ge=60)
    handoff_hold_message: str = Field("", alias="HANDOFF_HOLD_MESSAGE", max_length=1600)
    handoff_reply_message: str = Field(
        "I'm connecting you with a member of our team. A person will follow up with you here shortly.",
        alias="HANDOFF_REPLY_MESSAGE",
        min_length=1,
        max_length=1600,
    )
    relay_websocket_url: str | None = Field(None, alias="RELAY_WEBSOCKET_URL", pattern=r"^wss?://[^?#\s]+$")
    voice_welcome_greeting: str = Field(
        "Hi! I'm the virtual assistant. How can I help you today?", alias="VOICE_WELCOME_GREETING", min_length=1
    )
    voice_language: str = Field("en-US", alias="VOICE_LANGUAGE", pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$")
    voice_tts_voice: str | None = Field(None, alias="VOICE_TTS_VOICE", max_length=128)
    voice_tts_provider: str | None = Field(None, alias="VOICE_TTS_PROVIDER", max_length=64)
    voice_transcription_provider: str | None = Field(None, alias="VOICE_TRANSCRIPTION_PROVIDER", max_length=64)
    voice_handoff_reply_message: str = Field(
        "Let me connect you with a member of our team. Please stay on the line.",
        alias="VOICE_HANDOFF_REPLY_MESSAGE",
        min_length=1,
        max_length=1000,
    )
    handoff_release_token: str | None = Field(None, alias="HANDOFF_RELEASE_TOKEN", min_length=24)
    aws_read_timeout_seconds: float = Field(5.0, alias="AWS_CLIENT_READ_TIMEOUT_SECONDS", gt=0, le=60)
    studio_max_attempts: int = Field(4, alias="STUDIO_MAX_ATTEMPTS", ge=1, le=10)
    dispatch_max_deliveries: int = Field(5, alias="DISPATCH_MAX_DELIVERIES", ge=1, le=50)

    @field_validator("handoff_attributes", mode="before")
    @classmethod
    def _parse_attributes(cls, value: Any) -> Any:
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as exc:
                raise ValueError(f'must be a JSON object, e.g. {{"department":"support"}} ({exc.msg})') from None
        if not isinstance(value, dict):
            raise ValueError("must be a JSON object, not " + type(value).__name__)
        if "reason" in value:
            raise ValueError("must not set 'reason': the agent's reason always fills it")
        return value

    @field_validator("studio_base_url", "openai_base_url", "public_base_url", mode="after")
    @classmethod
    def _strip_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else value

    @classmethod
    def from_mapping(cls, environ: Mapping[str, str]) -> Settings:
        # SAM passes unset parameters as empty strings: a blank variable means "use the default".
        present = {name: value for name, value in environ.items() if isinstance(value, str) and value.strip()}
        try:
            return cls.model_validate(present)
        except ValidationError as exc:
            raise ConfigError(_describe(exc)) from None

    def require(self, *variables: str) -> Settings:
        """Fail with every missing variable named, for the settings a function cannot run without."""
        by_alias = {info.alias: name for name, info in type(self).model_fields.items()}
        missing = [var for var in variables if getattr(self, by_alias[var]) in (None, "")]
        if missing:
            raise ConfigError("missing required environment variable(s): " + ", ".join(missing))
        return self

    @property
    def rest_credentials(self) -> tuple[str, str]:
        """Basic-auth pair for Twilio REST calls: the API key when configured, else the account."""
        if self.twilio_api_key and self.twilio_api_secret:
            return self.twilio_api_key, self.twilio_api_secret
        self.require("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN")
        return self.twilio_account_sid, self.twilio_auth_token  # type: ignore[return-value]


def _describe(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors(include_url=False, include_input=False):
        variable = str(error["loc"][0]) if error["loc"] else "environment"
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{variable}: {message}")
    return "invalid configuration: " + "; ".join(problems)
