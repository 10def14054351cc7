"""Composition root: builds settings, clients and services once per cold start, lazily.

Nothing here runs at import time; each getter creates what it returns on first use and
keeps it for the warm invocations that follow. `reset()` forgets everything (tests).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from functools import cache, lru_cache, partial
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
    "SIGNING_KEY",
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


def environment_settings() -> Settings:
    """The settings from the environment alone, never the secret: what may be checked before a
    SnapStart snapshot (snapshot.py). Not kept: `settings()` is the one to use."""
    return Settings.from_mapping(dict(os.environ))


def in_lambda() -> bool:
    """Running in Lambda (or an emulator of it), where a process serves one function."""
    return bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME"))


def initialization_type() -> str:
    """How Lambda initialised this environment: on-demand, provisioned-concurrency or snap-start."""
    return os.environ.get("AWS_LAMBDA_INITIALIZATION_TYPE", "")


def _read_secret(secret_arn: str) -> dict[str, str]:
    import json

    from botocore.config import Config

    # One GetSecretValue per cold start (settings() keeps the result), straight through botocore:
    # Powertools' Parameters utility would import boto3 and itself on every cold start for it.
    config = Config(connect_timeout=1, read_timeout=3, retries={"mode": "standard", "total_max_attempts": 3})
    try:
        answer = aws_session().create_client("secretsmanager", config=config).get_secret_value(SecretId=secret_arn)
        value = json.loads(answer["SecretString"])
    except Exception as exc:  # no answer, no permission, no such secret, not JSON: all the same to the operator
        raise ConfigError(f"TWILIO_SECRET_ARN: cannot read the secret ({type(exc).__name__})") from None
    if not isinstance(value, dict):
        raise ConfigError("TWILIO_SECRET_ARN: the secret must be a JSON object of credentials")
    return {str(k): str(v) for k, v in value.items() if v not in (None, "")}


@cache
def aws_session() -> Any:
    """The session every AWS client is made from: botocore's own, not boto3's. Importing boto3 adds
    its resource layer and s3transfer to a cold start (about a quarter of a minimal function's, see
    docs/benchmarks.md) for clients that are botocore's anyway."""
    import botocore.session

    return botocore.session.get_session()


def preload_client(service: str) -> None:
    """Load what makes a `service` client slow to create (its model, endpoint rules) into the session,
    without resolving credentials: a throwaway client with placeholder keys, used for nothing."""
    session = aws_session()
    region = session.get_config_variable("region") or "us-east-1"
    placeholder = {"aws_access_key_id": "preload", "aws_secret_access_key": "preload"}  # not a credential
    session.create_client(service, region_name=region, **placeholder)


@cache
def aws_client(service: str) -> Any:
    from botocore.config import Config

    # Short timeouts and the SDK's standard retries (throttling included), inside Twilio's 15 s window.
    # total_max_attempts counts the first try; botocore's max_attempts counts only the retries.
    read_timeout = settings().aws_read_timeout_seconds
    # No client-side parameter validation: every request is built here, the service validates it
    # anyway, and botocore's pass walks each AttributeValue of a history (0.3 ms a write, more cold).
    config = Config(
        connect_timeout=1,
        read_timeout=read_timeout,
        retries={"mode": "standard", "total_max_attempts": 3},
        parameter_validation=False,
    )
    return aws_session().create_client(service, config=config)


@lru_cache(maxsize=1)
def session_store() -> Any:
    from .storage.session_store import SessionStore

    current = settings().require("SESSIONS_TABLE_NAME")
    return SessionStore(
        aws_client("dynamodb"),
        current.sessions_table_name,
        handoff_grace_seconds=current.handoff_dispatch_grace_seconds,
    )


def check_llm_budget(context: Any, *, reserve_seconds: float) -> None:
    """Once per cold start: one model call and the fallback's reserve fit in the function's timeout.

    Lambda names no variable for the timeout; the first invocation's remaining time, taken before
    it has spent any and rounded up to whole seconds (as timeouts are set), is the timeout itself.
    """
    remaining_ms = getattr(context, "get_remaining_time_in_millis", None)
    if callable(remaining_ms):
        _llm_budget_fits(math.ceil(remaining_ms() / 1000), reserve_seconds)


@lru_cache(maxsize=1)
def _llm_budget_fits(function_timeout_seconds: int, reserve_seconds: float) -> bool:
    settings().check_llm_fits(function_timeout_seconds, reserve_seconds=reserve_seconds)
    return True


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
        from botocore.config import Config

        from .agent.bedrock import BedrockConverseProvider

        current.require("BEDROCK_MODEL_ID")
        # One client, its read timeout the per-call cap; the provider bounds each call by the turn's deadline.
        # No retry: `max_attempts` would count retries (1 meant two calls); a retry cannot fit the budget.
        cap = current.llm_timeout_seconds
        config = Config(
            connect_timeout=min(3.0, cap), read_timeout=cap, retries={"mode": "standard", "total_max_attempts": 1}
        )
        return BedrockConverseProvider(
            client=aws_session().create_client("bedrock-runtime", config=config),
            model_id=current.bedrock_model_id,
            timeout_seconds=cap,
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
    return SmsService(session_store(), agent("SMS"), policy, links=transcript_links())


@lru_cache(maxsize=1)
def studio_client() -> Any:
    from .delivery.studio import StudioClient

    current = settings()
    return StudioClient(
        base_url=current.studio_base_url,
        credentials=current.rest_credentials,
        max_attempts=current.studio_max_attempts,
    )


@lru_cache(maxsize=1)
def customer_messages() -> Any:
    from .delivery.messages import TwilioMessages

    current = settings().require("TWILIO_ACCOUNT_SID")
    return TwilioMessages(
        base_url=current.twilio_api_base_url,
        account_sid=current.twilio_account_sid,
        credentials=current.rest_credentials,
    )


@lru_cache(maxsize=1)
def dispatcher() -> Any:
    from .delivery.dead_letters import SqsDeadLetters
    from .delivery.dispatch import HandoffDispatcher
    from .delivery.failure import HandoffFailures

    current = settings().require("TWILIO_STUDIO_HANDOFF_FLOW_SID", "DEAD_LETTER_QUEUE_URL")
    failures = HandoffFailures(
        session_store(),
        SqsDeadLetters(lambda: aws_client("sqs"), current.dead_letter_queue_url),
        customer_messages,
        notice=current.handoff_failed_message,
    )
    return HandoffDispatcher(
        session_store(),
        studio_client(),
        failures,
        flow_sid=current.studio_flow_sid,
        max_deliveries=current.dispatch_max_deliveries,
        budget_seconds=current.handoff_delivery_budget_seconds,
    )


def promise_keepers() -> list[Any]:
    """One keeper per kind of promise the watchdog keeps (the PromisesIndex's `promise` values).

    "handoff": SMS handoffs not delivered in time; "voice_end": a caller's `end` that no frame sent.
    """
    from .delivery.watchdog import HandoffKeeper
    from .voice.keeper import VoiceEndKeeper
    from .voice.promises import EndPromises
    from .voice.sender import ApiGatewaySender

    def sender_for(call: Any) -> Any:
        return ApiGatewaySender(management_client(call.endpoint), call.connection_id)

    return [
        HandoffKeeper(session_store(), dispatcher()),
        VoiceEndKeeper(call_store(), EndPromises(call_store()), sender_for),
    ]


@lru_cache(maxsize=1)
def watchdog() -> Any:
    from .delivery.watchdog import Watchdog

    return Watchdog(promise_keepers())


@lru_cache(maxsize=1)
def releaser() -> Any:
    from .delivery.release import Releaser

    current = settings().require("TWILIO_STUDIO_HANDOFF_FLOW_SID")
    return Releaser(session_store(), studio_client(), flow_sid=current.studio_flow_sid)


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
def signer() -> Any:
    """Signs short-lived tokens (voice socket bindings): SIGNING_KEY, else a key derived from the auth token."""
    from .signing import Signer, signing_key

    current = settings()
    if not current.signing_key:
        current.require("TWILIO_AUTH_TOKEN")
    return Signer(signing_key(current.signing_key, current.twilio_auth_token))


def relay_bindings() -> Any:
    from .voice.binding import RelayBindings

    return RelayBindings(signer())


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
    return VoiceCalls(call_store(), routing, relay_bindings(), links=transcript_links())


@lru_cache(maxsize=1)
def voice_relay() -> Any:
    from .voice.relay import RelayPolicy, VoiceRelay

    current = settings()
    policy = RelayPolicy(
        account_sid=current.twilio_account_sid,
        routing_attributes=current.handoff_attributes,
        memory_store_id=current.memory_store_id,
        history_limit=current.history_limit,
        transcript_base_url=transcript_base_url(),
        welcome_greeting=current.voice_welcome_greeting,
    )
    return VoiceRelay(call_store(), agent("VOICE"), policy, relay_bindings(), links=transcript_links())


@lru_cache(maxsize=1)
def transcript_links() -> Any:
    """Signs and checks transcript links, with the socket bindings' key under the links' own purpose."""
    from .transcript_link import TranscriptLinks

    return TranscriptLinks(signer(), settings().transcript_link_seconds)


def transcript_base_url(event: Any = None) -> str:
    """Where GET /handoff/transcript is served: PUBLIC_BASE_URL, else TRANSCRIPT_BASE_URL (the template
    gives it to functions that cannot see the HTTP API's host), else rebuilt from this request's URL."""
    current = settings()
    if current.public_base_url or current.transcript_base_url:
        return current.public_base_url or current.transcript_base_url
    if event is None:
        return ""
    from .webhooks.request import url_beside

    return url_beside(event, "")


@lru_cache(maxsize=1)
def transcript_service() -> Any:
    from .storage.transcripts import TranscriptStore
    from .transcript.service import TranscriptService

    current = settings().require("SESSIONS_TABLE_NAME")
    return TranscriptService(TranscriptStore(aws_client("dynamodb"), current.sessions_table_name), transcript_links())


@lru_cache(maxsize=8)
def management_client(endpoint_url: str) -> Any:
    """The @connections client. boto3's AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI wins when set (local runs)."""

    from botocore.config import Config

    # A post takes tens of milliseconds; these bound the longest one (about 12 s with retries),
    # which the `end` lease must outlast (voice/promises.py).
    config = Config(connect_timeout=1, read_timeout=2, retries={"mode": "standard", "max_attempts": 3})
    return _connections_client(endpoint_url, config)


@lru_cache(maxsize=8)
def urgent_management_client(endpoint_url: str) -> Any:
    """The @connections client for a turn's fallback, which works inside the handler's reserve:
    one attempt of 0.25 s connect + 0.5 s read per post (a post takes tens of milliseconds), so
    its two posts and three writes fit the reserve; a post that fails leaves the `end` owed."""
    from botocore.config import Config

    config = Config(connect_timeout=0.25, read_timeout=0.5, retries={"mode": "standard", "total_max_attempts": 1})
    return _connections_client(endpoint_url, config)


def _connections_client(endpoint_url: str, config: Any) -> Any:
    # From the session every other client shares (boto3 would be a first import inside the fallback's reserve).
    if os.environ.get("AWS_ENDPOINT_URL_APIGATEWAYMANAGEMENTAPI") or os.environ.get("AWS_ENDPOINT_URL"):
        return aws_session().create_client("apigatewaymanagementapi", config=config)
    return aws_session().create_client("apigatewaymanagementapi", endpoint_url=endpoint_url, config=config)


def llm_reserves() -> dict[str, float]:
    """The functions that run a model turn (template.yaml's logical ids) and what each handler keeps
    back from its Timeout besides one model call: what `check_llm_budget` is given at cold start."""
    from .sms.service import FALLBACK_RESERVE_SECONDS as SMS_RESERVE
    from .voice.relay import FALLBACK_RESERVE_SECONDS as VOICE_RESERVE

    return {"InboundSmsFunction": SMS_RESERVE, "VoiceRelayFunction": VOICE_RESERVE}


def check(function_timeouts: Mapping[str, float] | None = None) -> None:
    """Every check the functions make at cold start, at once: `make local` runs it before it listens.

    The settings' values first (all of them named in one ConfigError), then what each function's
    services require, built as a cold start builds them (clients are made, nothing is called).
    `function_timeouts`: each function's Timeout by logical id; the model-running ones among them
    get the LLM budget check their cold start makes (Lambda alone knows the Timeout there).
    """
    current = settings()
    problems: list[str] = []
    budgets = [
        partial(current.check_llm_fits, function_timeouts[name], reserve_seconds=reserve, function=name)
        for name, reserve in llm_reserves().items()
        if function_timeouts and name in function_timeouts
    ]
    builders = (lambda: current.require("TWILIO_AUTH_TOKEN"), sms_service, dispatcher, watchdog, releaser, voice_calls)
    for build in (*builders, voice_relay, transcript_service, *budgets):
        try:
            build()
        except ConfigError as exc:
            problems += [problem for problem in exc.problems if problem not in problems]
    if problems:
        raise ConfigError("configuration problems: " + "; ".join(problems), tuple(problems))


def reset() -> None:
    for getter in (
        aws_session,
        settings,
        signer,
        aws_client,
        session_store,
        sms_service,
        studio_client,
        customer_messages,
        dispatcher,
        watchdog,
        releaser,
        call_store,
        voice_calls,
        voice_relay,
        transcript_links,
        transcript_service,
        management_client,
        urgent_management_client,
        _llm_budget_fits,
    ):
        getter.cache_clear()
