"""Settings read from the environment, validated once per cold start.

Every field is named by its environment variable (the names are a contract in DESIGN.md),
so a validation error can say exactly which variable is wrong and why.

Checked by hand rather than with pydantic: importing pydantic costs every cold start about a
fifth of a minimal DynamoDB-backed function (see `make bench`), for a dozen simple checks.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from .errors import ConfigError
from .payload_limits import ROUTING_ATTRIBUTES_MAX, width

Parse = Callable[[str], Any]

E164 = r"\+[1-9][0-9]{6,14}"


def text(pattern: str | None = None, *, min_length: int = 0, max_length: int | None = None, explain: str = "") -> Parse:
    """A string; `explain` is what the error calls the expected shape (never the value: it may be secret)."""
    compiled = re.compile(pattern) if pattern else None

    def parse(raw: str) -> str:
        if len(raw) < min_length:
            raise ValueError(f"must be at least {min_length} characters")
        if max_length is not None and len(raw) > max_length:
            raise ValueError(f"must be at most {max_length} characters")
        if compiled and not compiled.fullmatch(raw):
            raise ValueError("must be " + (explain or f"of the form {pattern}"))
        return raw

    return parse


def url(raw: str) -> str:
    """A base URL, stored without its trailing slash so paths can be appended."""
    if not re.fullmatch(r"https?://[^/\s]+(/\S*)?", raw):
        raise ValueError("must be an http(s):// URL with a host")
    return raw.rstrip("/")


def integer(*, minimum: int, maximum: int | None = None) -> Parse:
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError("must be a whole number") from None
        _in_range(value, minimum, maximum, inclusive_minimum=True)
        return value

    return parse


def seconds(*, above: float, maximum: float) -> Parse:
    def parse(raw: str) -> float:
        try:
            value = float(raw.strip())
        except ValueError:
            raise ValueError("must be a number of seconds") from None
        if value != value:  # NaN compares false with every bound
            raise ValueError("must be a number of seconds")
        _in_range(value, above, maximum, inclusive_minimum=False)
        return value

    return parse


def _in_range(value: float, minimum: float, maximum: float | None, *, inclusive_minimum: bool) -> None:
    if value < minimum or (not inclusive_minimum and value == minimum):
        raise ValueError(f"must be {'at least' if inclusive_minimum else 'greater than'} {minimum:g}")
    if maximum is not None and value > maximum:
        raise ValueError(f"must be at most {maximum:g}")


def choice(*allowed: str) -> Parse:
    def parse(raw: str) -> str:
        if raw not in allowed:
            raise ValueError("must be one of " + ", ".join(allowed))
        return raw

    return parse


def routing_attributes(raw: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ValueError(f'must be a JSON object, e.g. {{"department":"support"}} ({exc.msg})') from None
    if not isinstance(value, dict):
        raise ValueError("must be a JSON object, not " + type(value).__name__)
    if "reason" in value:
        raise ValueError("must not set 'reason': the agent's reason always fills it")
    for written in ("summary", "transcriptUrl"):
        if written in value:
            raise ValueError(f"must not set '{written}': the product fills it for the human agent")
    if width(value) > ROUTING_ATTRIBUTES_MAX:
        raise ValueError(
            f"must be at most {ROUTING_ATTRIBUTES_MAX} characters as JSON (non-ASCII counts as escaped), "
            "so that the reason still fits Flex's 1,024-character task attributes"
        )
    return value


def setting(variable: str, default: Any = None, parse: Parse = str, *, factory: Callable[[], Any] | None = None) -> Any:
    """A dataclass field that knows its environment variable and how to read it."""
    metadata = {"variable": variable, "parse": parse}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True)
class Settings:
    """All configuration of the product. Functions ask for the parts they need with `require`."""

    twilio_account_sid: str | None = setting(
        "TWILIO_ACCOUNT_SID", parse=text(r"AC[0-9a-fA-F]{32}", explain="an Account SID: AC and 32 hex digits")
    )
    twilio_auth_token: str | None = setting("TWILIO_AUTH_TOKEN", parse=text(min_length=16))
    twilio_api_key: str | None = setting(
        "TWILIO_API_KEY", parse=text(r"SK[0-9a-fA-F]{32}", explain="an API key SID: SK and 32 hex digits")
    )
    twilio_api_secret: str | None = setting("TWILIO_API_SECRET", parse=text(min_length=8))
    twilio_phone_number: str | None = setting(
        "TWILIO_PHONE_NUMBER", parse=text(E164, explain="an E.164 number such as +14155550100")
    )
    studio_flow_sid: str | None = setting(
        "TWILIO_STUDIO_HANDOFF_FLOW_SID", parse=text(r"FW[0-9a-fA-F]{32}", explain="a Flow SID: FW and 32 hex digits")
    )
    taskrouter_workflow_sid: str | None = setting(
        "TWILIO_TASKROUTER_WORKFLOW_SID",
        parse=text(r"WW[0-9a-fA-F]{32}", explain="a Workflow SID: WW and 32 hex digits"),
    )
    # RUF009 cannot see that `setting` returns a field with a default_factory.
    handoff_attributes: dict[str, Any] = setting("HANDOFF_ATTRIBUTES", parse=routing_attributes, factory=dict)  # noqa: RUF009
    memory_store_id: str = setting("TWILIO_MEMORY_STORE_ID", "")
    sessions_table_name: str | None = setting("SESSIONS_TABLE_NAME", parse=text(min_length=3, max_length=255))
    studio_base_url: str = setting("STUDIO_BASE_URL", "https://studio.twilio.com", url)
    public_base_url: str | None = setting("PUBLIC_BASE_URL", parse=url)
    # Where GET /handoff/transcript lives, for functions that cannot see the HTTP API's host (the relay).
    transcript_base_url: str | None = setting("TRANSCRIPT_BASE_URL", parse=url)
    transcript_link_seconds: int = setting("TRANSCRIPT_LINK_SECONDS", 24 * 3600, integer(minimum=300, maximum=2592000))
    dead_letter_queue_url: str | None = setting("DEAD_LETTER_QUEUE_URL", parse=url)

    llm_provider: str = setting("LLM_PROVIDER", "rules", choice("rules", "openai", "bedrock"))
    openai_base_url: str = setting("OPENAI_BASE_URL", "https://api.openai.com/v1", url)
    openai_api_key: str | None = setting("OPENAI_API_KEY")
    openai_model: str = setting("OPENAI_MODEL", "gpt-4o-mini")
    bedrock_model_id: str | None = setting("BEDROCK_MODEL_ID")
    llm_timeout_seconds: float = setting("LLM_TIMEOUT_SECONDS", 8.0, seconds(above=0, maximum=25))
    system_prompt: str | None = setting("AGENT_SYSTEM_PROMPT")

    history_limit: int = setting("HISTORY_LIMIT", 20, integer(minimum=2, maximum=200))
    session_ttl_seconds: int = setting("SESSION_TTL_SECONDS", 7 * 24 * 3600, integer(minimum=60))
    handoff_hold_seconds: int = setting("HANDOFF_HOLD_SECONDS", 24 * 3600, integer(minimum=60))
    handoff_hold_message: str = setting("HANDOFF_HOLD_MESSAGE", "", text(max_length=1600))
    handoff_reply_message: str = setting(
        "HANDOFF_REPLY_MESSAGE",
        "I'm connecting you with a member of our team. A person will follow up with you here shortly.",
        text(max_length=1600),
    )
    relay_websocket_url: str | None = setting(
        "RELAY_WEBSOCKET_URL", parse=text(r"wss?://[^?#\s]+", explain="a wss:// URL")
    )
    voice_welcome_greeting: str = setting(
        "VOICE_WELCOME_GREETING", "Hi! I'm the virtual assistant. How can I help you today?"
    )
    voice_language: str = setting(
        "VOICE_LANGUAGE", "en-US", text(r"[a-z]{2,3}(-[A-Za-z0-9]{2,8})*", explain="a language tag such as en-US")
    )
    voice_tts_voice: str | None = setting("VOICE_TTS_VOICE", parse=text(max_length=128))
    voice_tts_provider: str | None = setting("VOICE_TTS_PROVIDER", parse=text(max_length=64))
    voice_transcription_provider: str | None = setting("VOICE_TRANSCRIPTION_PROVIDER", parse=text(max_length=64))
    voice_handoff_reply_message: str = setting(
        "VOICE_HANDOFF_REPLY_MESSAGE",
        "Let me connect you with a member of our team. Please stay on the line.",
        text(max_length=1000),
    )
    handoff_release_token: str | None = setting("HANDOFF_RELEASE_TOKEN", parse=text(min_length=24))
    # Signs voice socket bindings (and other short-lived tokens); unset, a key derived from the auth token.
    signing_key: str | None = setting("SIGNING_KEY", parse=text(min_length=32))
    aws_read_timeout_seconds: float = setting("AWS_CLIENT_READ_TIMEOUT_SECONDS", 3.0, seconds(above=0, maximum=60))
    studio_max_attempts: int = setting("STUDIO_MAX_ATTEMPTS", 4, integer(minimum=1, maximum=10))
    dispatch_max_deliveries: int = setting("DISPATCH_MAX_DELIVERIES", 5, integer(minimum=1, maximum=50))
    handoff_dispatch_grace_seconds: int = setting(
        "HANDOFF_DISPATCH_GRACE_SECONDS", 120, integer(minimum=1, maximum=3600)
    )
    handoff_delivery_budget_seconds: int = setting(
        "HANDOFF_DELIVERY_BUDGET_SECONDS", 900, integer(minimum=60, maximum=24 * 3600)
    )
    handoff_failed_message: str = setting(
        "HANDOFF_FAILED_MESSAGE",
        "Sorry, we couldn't reach a member of our team right now. I can keep helping you here, "
        "or you can ask for a person again later.",
        text(max_length=1600),
    )
    twilio_api_base_url: str = setting("TWILIO_API_BASE_URL", "https://api.twilio.com", url)

    @classmethod
    def variables(cls) -> dict[str, str]:
        """Environment variable -> attribute, for every setting."""
        return {spec.metadata["variable"]: spec.name for spec in fields(cls)}

    @classmethod
    def from_mapping(cls, environ: Mapping[str, str]) -> Settings:
        values: dict[str, Any] = {}
        problems, phrases = [], []
        for spec in fields(cls):
            variable = spec.metadata["variable"]
            raw = environ.get(variable)
            # SAM passes unset parameters as empty strings: a blank variable means "use the default".
            if not isinstance(raw, str) or not raw.strip():
                continue
            try:
                values[spec.name] = spec.metadata["parse"](raw)
            except ValueError as exc:
                problems.append(f"{variable}: {exc}")
                phrases.append(f"{variable} {exc}")
        if problems:
            raise ConfigError("invalid configuration: " + "; ".join(problems), tuple(phrases))
        return cls(**values)

    def require(self, *variables: str) -> Settings:
        """Fail with every missing variable named, for the settings a function cannot run without."""
        attributes = self.variables()
        missing = [var for var in variables if getattr(self, attributes[var]) in (None, "")]
        if missing:
            raise ConfigError(
                "missing required environment variable(s): " + ", ".join(missing),
                tuple(f"{var} is required and not set" for var in missing),
            )
        return self

    def check_llm_fits(
        self, function_timeout_seconds: float, *, reserve_seconds: float, function: str = "the function"
    ) -> Settings:
        """Refuse a model-call budget that, with the fallback's reserve, cannot finish inside the function's timeout.

        Past its timeout the runtime stops the function mid-turn: the customer gets neither the
        answer nor the apology and handoff that a failed model call leads to.
        """
        if self.llm_provider != "rules" and self.llm_timeout_seconds + reserve_seconds > function_timeout_seconds:
            problem = (
                f"LLM_TIMEOUT_SECONDS ({self.llm_timeout_seconds:g} s) and the {reserve_seconds:g} s kept for the "
                f"apology and handoff do not fit in {function}'s Timeout ({function_timeout_seconds:g} s in "
                f"template.yaml): lower LLM_TIMEOUT_SECONDS to at most "
                f"{max(function_timeout_seconds - reserve_seconds, 0):g} or raise the Timeout"
            )
            raise ConfigError("invalid configuration: " + problem, (problem,))
        return self

    @property
    def rest_credentials(self) -> tuple[str, str]:
        """Basic-auth pair for Twilio REST calls: the API key when configured, else the account."""
        if self.twilio_api_key and self.twilio_api_secret:
            return self.twilio_api_key, self.twilio_api_secret
        self.require("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN")
        return self.twilio_account_sid, self.twilio_auth_token  # type: ignore[return-value]


def explain(error: ConfigError) -> str:
    """The error for people: every variable that is wrong and what it should be, on one line."""
    return "configuration problem: " + "; ".join(error.problems)
