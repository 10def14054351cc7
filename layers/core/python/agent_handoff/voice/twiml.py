"""Voice TwiML, built with twilio's own classes: ConversationRelay, and the ways to a human."""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import urlencode

from twilio.twiml.voice_response import VoiceResponse

from ..handoff import HandoffPayload
from ..payload_limits import enqueue_task_attributes
from .binding import PARAMETER as BINDING_PARAMETER

TWILIO_WEBHOOKS_BASE = "https://webhooks.twilio.com"


@dataclass(frozen=True)
class RelayOptions:
    websocket_url: str
    language: str
    welcome_greeting: str
    voice: str | None = None
    tts_provider: str | None = None
    transcription_provider: str | None = None


def connect_relay(
    *, action_url: str, options: RelayOptions, parameters: dict[str, str], binding: str, greet: bool = True
) -> str:
    """`<Connect action><ConversationRelay>`; data rides in `<Parameter>`. The socket binding rides
    in both: the wss query (`$connect` sees it) and a `<Parameter>` (`setup` repeats it)."""
    response = VoiceResponse()
    connect = response.connect(action=action_url, method="POST")
    attributes = {
        "url": f"{options.websocket_url}?{urlencode({BINDING_PARAMETER: binding})}",
        "language": options.language,
        "dtmf_detection": True,
        "interruptible": "any",
    }
    if greet:
        attributes["welcome_greeting"] = options.welcome_greeting
    for name, value in (
        ("voice", options.voice),
        ("tts_provider", options.tts_provider),
        ("transcription_provider", options.transcription_provider),
    ):
        if value:
            attributes[name] = value
    relay = connect.conversation_relay(**attributes)
    for name, value in {**parameters, BINDING_PARAMETER: binding}.items():
        relay.parameter(name=name, value=value)
    return str(response)


def resume_studio_flow(*, account_sid: str, flow_sid: str, payload: HandoffPayload) -> str:
    """Back to the Studio flow whose TwiML Redirect widget sent the call here (its `return` transition).

    Each query parameter is readable in the flow as `{{widgets.<widget>.<name>}}`.
    """
    query = urlencode({"FlowEvent": "return", **_flat(payload.fitted())})
    return _redirect(f"{TWILIO_WEBHOOKS_BASE}/v1/Accounts/{account_sid}/Flows/{flow_sid}?{query}")


def start_studio_flow(*, account_sid: str, flow_sid: str, payload: HandoffPayload) -> str:
    """Into the handoff flow's incoming-call trigger: a fresh execution for the live call."""
    query = urlencode({"Trigger": "incomingCall", **_flat(payload.fitted())})
    return _redirect(f"{TWILIO_WEBHOOKS_BASE}/v1/Accounts/{account_sid}/Flows/{flow_sid}?{query}")


def enqueue_to_flex(*, workflow_sid: str, payload: HandoffPayload, caller: str) -> str:
    """Straight to Flex: a TaskRouter task whose attributes carry the payload, within Flex's limit."""
    attributes = enqueue_task_attributes(payload.fitted(caller).wire(), caller)
    response = VoiceResponse()
    enqueue = response.enqueue(workflow_sid=workflow_sid)
    enqueue.task(json.dumps(attributes, separators=(",", ":")))
    return str(response)


def say_and_hang_up(text: str, language: str) -> str:
    response = VoiceResponse()
    response.say(text, language=language)
    response.hangup()
    return str(response)


def empty() -> str:
    return str(VoiceResponse())


def _redirect(url: str) -> str:
    response = VoiceResponse()
    response.redirect(url, method="POST")
    return str(response)


def _flat(payload: HandoffPayload) -> dict[str, str]:
    return {
        "HandoffData": payload.to_json(),
        "reason": str(payload.attributes.get("reason", "")),
        "conversationId": payload.conversation_id,
    }
