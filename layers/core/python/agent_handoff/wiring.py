"""Composition root: builds settings, clients and services once per cold start, lazily.

Nothing here runs at import time; each getter creates what it returns on first use and
keeps it for the warm invocations that follow. `reset()` forgets everything (tests).
"""

from __future__ import annotations

import os
from functools import cache, lru_cache
from typing import Any

from .config import Settings
from .errors import ConfigError

# Credentials that may live in the TWILIO_SECRET_ARN secret; a plain variable always wins.
SECRET_KEYS = (
    "TWILIO_ACCOUNT_SID",
    "TWILIO_AUTH_TOKEN",
    "TWILIO_API_KEY",
    "TWILIO_API_SECRET",
    "OPENAI_API_KEY",
    "HANDOFF_RELEASE_TOKEN",
)


@lru_cache(maxsize=1)
def settings() -> Settings:
    environ = dict(os.environ)
    secret_arn = environ.get("TWILIO_SECRET_ARN", "").strip()
    if secret_arn and not (environ.get("TWILIO_ACCOUNT_SID") and environ.get("TWILIO_AUTH_TOKEN")):
        for key, value in _read_secret(secret_arn).items():
            if key in SECRET_KEYS and not environ.get(key):
                environ[key] = value
    return Settings.from_mapping(environ)


def _read_secret(secret_arn: str) -> dict[str, str]:
    from aws_lambda_powertools.utilities.parameters import get_secret

    try:
        value = get_secret(secret_arn, transform="json", max_age=300)
    except Exception as exc:  # the Parameters utility wraps every failure in its own types
        raise ConfigError(f"TWILIO_SECRET_ARN: cannot read the secret ({type(exc).__name__})") from None
    if not isinstance(value, dict):
        raise ConfigError("TWILIO_SECRET_ARN: the secret must be a JSON object of credentials")
    return {str(k): str(v) for k, v in value.items() if v not in (None, "")}


@cache
def aws_client(service: str) -> Any:
    import boto3
    from botocore.config import Config

    # Short timeouts and the SDK's standard retries (throttling included), inside Twilio's 15 s window.
    read_timeout = settings().aws_read_timeout_seconds
    config = Config(connect_timeout=2, read_timeout=read_timeout, retries={"mode": "standard", "max_attempts": 4})
    return boto3.client(service, config=config)


@lru_cache(maxsize=1)
def session_store() -> Any:
    from .storage.session_store import SessionStore

    current = settings().require("SESSIONS_TABLE_NAME")
    return SessionStore(aws_client("dynamodb"), current.sessions_table_name)


def chat_provider(current: Settings) -> Any:
    if current.llm_provider == "openai":
        from .agent.openai_chat import OpenAIChatProvider

        return OpenAIChatProvider(
            base_url=current.openai_base_url,
            model=current.openai_model,
            api_key=current.openai_api_key,
            timeout_seconds=current.llm_timeout_seconds,
        )
    if current.llm_provider == "bedrock":
        import boto3
        from botocore.config import Config

        from .agent.bedrock import BedrockConverseProvider

        current.require("BEDROCK_MODEL_ID")
        config = Config(
            connect_timeout=3, read_timeout=current.llm_timeout_seconds, retries={"mode": "standard", "max_attempts": 1}
        )
        return BedrockConverseProvider(
            client=boto3.client("bedrock-runtime", config=config), model_id=current.bedrock_model_id
        )
    from .agent.rules import RulesProvider

    return RulesProvider()


def agent(channel: str) -> Any:
    from .agent.turn import Agent

    current = settings()
    reply = current.voice_handoff_reply_message if channel == "VOICE" else current.handoff_reply_message
    return Agent(chat_provider(current), channel=channel, handoff_reply=reply, system_prompt=current.system_prompt)


@lru_cache(maxsize=1)
def sms_service() -> Any:
    from .sms.service import SmsPolicy, SmsService

    current = settings()
    policy = SmsPolicy(
        routing_attributes=current.handoff_attributes,
        memory_store_id=current.memory_store_id,
        history_limit=current.history_limit,
        session_ttl_seconds=current.session_ttl_seconds,
        hold_seconds=current.handoff_hold_seconds,
        hold_message=current.handoff_hold_message,
    )
    return SmsService(session_store(), agent("SMS"), policy)


@lru_cache(maxsize=1)
def dispatcher() -> Any:
    from .delivery.dead_letters import SqsDeadLetters
    from .delivery.dispatch import HandoffDispatcher
    from .delivery.studio import StudioClient

    current = settings().require("TWILIO_STUDIO_HANDOFF_FLOW_SID", "DEAD_LETTER_QUEUE_URL")
    studio = StudioClient(
        base_url=current.studio_base_url,
        credentials=current.rest_credentials,
        max_attempts=current.studio_max_attempts,
    )
    return HandoffDispatcher(
        session_store(),
        studio,
        SqsDeadLetters(lambda: aws_client("sqs"), current.dead_letter_queue_url),
        flow_sid=current.studio_flow_sid,
        max_deliveries=current.dispatch_max_deliveries,
    )


@lru_cache(maxsize=1)
def call_store() -> Any:
    from .storage.call_store import CallStore

    current = settings().require("SESSIONS_TABLE_NAME")
    return CallStore(aws_client("dynamodb"), current.sessions_table_name)


def relay_options(current: Settings) -> Any:
    from .voice.twiml import RelayOptions

    current.require("RELAY_WEBSOCKET_URL")
    return RelayOptions(
        websocket_url=current.relay_websocket_url,
        language=current.voice_language,
        welcome_greeting=current.voice_welcome_greeting,
        voice=current.voice_tts_voice,
        tts_provider=current.voice_tts_provider,
        transcription_provider=current.voice_transcription_provider,
    )


@lru_cache(maxsize=1)
def voice_calls() -> Any:
    from .voice.calls import VoiceCalls, VoiceRouting

    current = settings().require("TWILIO_ACCOUNT_SID")
    routing = VoiceRouting(
        account_sid=current.twilio_account_sid,
        relay=relay_options(current),
        routing_attributes=current.handoff_attributes,
        memory_store_id=current.memory_store_id,
        handoff_flow_sid=current.studio_flow_sid,
        taskrouter_workflow_sid=current.taskrouter_workflow_sid,
    )
    return VoiceCalls(call_store(), routing)


@lru_cache(maxsize=1)
def voice_relay() -> Any:
    from .voice.relay import RelayPolicy, VoiceRelay

    current = settings()
    policy = RelayPolicy(
        account_sid=current.twilio_account_sid,
        routing_attributes=current.handoff_attributes,
        memory_store_id=current.memory_store_id,
        history_limit=current.history_limit,
    )
    return VoiceRelay(call_store(), agent("VOICE"), policy)


@lru_cache(maxsize=8)
def management_client(endpoint_url: str) -> Any:
    """The @connections client. boto3's AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI wins when set (local runs)."""

    import boto3
    from botocore.config import Config

    config = Config(connect_timeout=2, read_timeout=5, retries={"mode": "standard", "max_attempts": 3})
    if os.environ.get("AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI") or os.environ.get("AWS_ENDPOINT_URL"):
        return boto3.client("apigatewaymanagementapi", config=config)
    return boto3.client("apigatewaymanagementapi", endpoint_url=endpoint_url, config=config)


def check() -> None:
    """Every check the functions make at cold start, at once: `make local` runs it before it listens.

    The settings' values first (all of them named in one ConfigError), then what each function's
    services require, built as a cold start builds them (clients are made, nothing is called).
    """
    current = settings()
    problems: list[str] = []
    for build in (lambda: current.require("TWILIO_AUTH_TOKEN"), sms_service, dispatcher, voice_calls, voice_relay):
        try:
            build()
        except ConfigError as exc:
            problems += [problem for problem in exc.problems if problem not in problems]
    if problems:
        raise ConfigError("configuration problems: " + "; ".join(problems), tuple(problems))


def reset() -> None:
    for getter in (
        settings,
        aws_client,
        session_store,
        sms_service,
        dispatcher,
        call_store,
        voice_calls,
        voice_relay,
        management_client,
    ):
        getter.cache_clear()
