"""Writes events/: signed sample events for every function and the env.json they verify with.

    python -m devtools.samples.make_events          # rewrite events/
    python -m devtools.samples.make_events --check  # fail if events/ differs from what would be written

The samples are deterministic (fixed SIDs and times), so a test can hold them to this file.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from devtools.cli import run
from devtools.samples import sample
from devtools.samples.events import (
    DEFAULT_HOST,
    WS_DOMAIN,
    WS_STAGE,
    action_params,
    call_params,
    http_api_event,
    http_get_event,
    release_event,
    sms_params,
    ws_connect_event,
    ws_disconnect_event,
    ws_message_event,
)
from devtools.template import ROOT

EVENTS = ROOT / "events"
FIXED_TIME = 1_795_000_000.0  # 2026-11-18, any fixed instant will do
CONVERSATION_ID = "conv_0b1c0b1c0b1c0b1c0b1c0b1c0b1c0b1c"


def _transcript_token() -> str:
    """The sample conversation's transcript link token, issued at FIXED_TIME (long expired now)."""
    from agent_handoff.signing import Signer, signing_key
    from agent_handoff.transcript_link import DEFAULT_LIFETIME_SECONDS, PURPOSE

    return Signer(signing_key(None, sample.AUTH_TOKEN)).sign(
        PURPOSE, CONVERSATION_ID, expires_at=int(FIXED_TIME) + DEFAULT_LIFETIME_SECONDS, nonce="sample-link-0b1c0b1c"
    )


HANDOFF_PAYLOAD = {
    "conversationId": CONVERSATION_ID,
    "storeId": "",
    "profileId": "",
    "attributes": {
        "department": "support",
        "priority": "normal",
        "reason": "The customer asked to speak with a human agent.",
        "summary": "The customer said: \u201cI want to speak to a real person, please\u201d. "
        "The AI agent had not answered yet.",
        "transcriptUrl": f"https://{DEFAULT_HOST}/handoff/transcript?t={_transcript_token()}",
    },
}


def _sms(body: str, sid: str) -> dict[str, Any]:
    params = sms_params(
        account_sid=sample.ACCOUNT_SID, body=body, customer=sample.CUSTOMER_NUMBER, agent=sample.AGENT_NUMBER, sid=sid
    )
    return http_api_event("/sms", params, auth_token=sample.AUTH_TOKEN, at=FIXED_TIME, request_id="sample-" + sid[-8:])


def _release() -> dict[str, Any]:
    """What a Studio "Make HTTP Request" widget sends when the human conversation ends."""
    return release_event(
        sample.CUSTOMER_NUMBER, sample.AGENT_NUMBER, sample.RELEASE_TOKEN, at=FIXED_TIME, request_id="sample-release"
    )


def _transcript() -> dict[str, Any]:
    """A human opening the sample handoff's transcriptUrl: signed at FIXED_TIME, so it has expired (410)."""
    from agent_handoff.transcript_link import PATH, QUERY

    return http_get_event(PATH, query=f"{QUERY}={_transcript_token()}", at=FIXED_TIME, request_id="sample-transcript")


def _dispatch_stream() -> dict[str, Any]:
    handoff_id = "sms-SM" + "2" * 32
    image = {
        "pk": {"S": f"HANDOFF#{handoff_id}"},
        "kind": {"S": "handoff"},
        "handoffId": {"S": handoff_id},
        "channel": {"S": "sms"},
        "conversationKey": {"S": f"CONV#sms#{sample.CUSTOMER_NUMBER}#{sample.AGENT_NUMBER}"},
        "to": {"S": sample.CUSTOMER_NUMBER},
        "from": {"S": sample.AGENT_NUMBER},
        "payload": {"S": json.dumps(HANDOFF_PAYLOAD, separators=(",", ":"))},
        "status": {"S": "pending"},
        "deliveries": {"N": "0"},
        "createdAt": {"N": str(int(FIXED_TIME))},
        "expiresAt": {"N": str(int(FIXED_TIME) + 30 * 24 * 3600)},
        "promise": {"S": "handoff"},
        "promiseDue": {"N": str(int(FIXED_TIME) + 120)},
    }
    return {
        "Records": [
            {
                "eventID": "c81e728d9d4c2f636f067f89cc14862c",
                "eventName": "INSERT",
                "eventVersion": "1.1",
                "eventSource": "aws:dynamodb",
                "awsRegion": "us-east-1",
                "dynamodb": {
                    "ApproximateCreationDateTime": int(FIXED_TIME),
                    "Keys": {"pk": image["pk"]},
                    "NewImage": image,
                    "SequenceNumber": "111100000000000000000001",
                    "SizeBytes": 512,
                    "StreamViewType": "NEW_IMAGE",
                },
                "eventSourceARN": f"arn:aws:dynamodb:us-east-1:123456789012:table/{sample.TABLE_NAME}/stream/2026-11-18T00:00:00.000",
            }
        ]
    }


def _schedule() -> dict[str, Any]:
    """What EventBridge's `rate(1 minute)` rule sends the watchdog."""
    return {
        "version": "0",
        "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": "2026-11-18T20:26:40Z",
        "region": "us-east-1",
        "resources": ["arn:aws:events:us-east-1:123456789012:rule/ai-handoff-HandoffWatchdogFunctionEveryMinute"],
        "detail": {},
    }


CALL_SID = "CA" + "3" * 32
CONNECTION_ID = "L0SM9cOFvHcCIhw="
RELAY_URL = f"wss://{WS_DOMAIN}/{WS_STAGE}"


def sample_binding() -> str:
    """The sample call's socket binding, as IncomingCall would issue it at FIXED_TIME.

    It expires five minutes after FIXED_TIME, and stays valid for the sample forever: the relay
    checks a binding against the handshake's requestTimeEpoch (when API Gateway received it),
    which the sample pins at FIXED_TIME too. Through API Gateway that time is always the present.
    """
    from agent_handoff.signing import Signer, signing_key
    from agent_handoff.voice.binding import RelayBindings

    bindings = RelayBindings(Signer(signing_key(None, sample.AUTH_TOKEN)), clock=lambda: FIXED_TIME)
    return bindings.issue(CALL_SID, nonce="sample-binding-0b1c0b1c")


def _fixed(event: dict[str, Any]) -> dict[str, Any]:
    """Pin the request ids and times the event builders draw, so the files do not churn."""
    context = event["requestContext"]
    for key in ("extendedRequestId", "requestId"):
        if key in context:
            context[key] = "sample"
    for key in ("connectedAt", "requestTimeEpoch", "timeEpoch"):
        if key in context:
            context[key] = int(FIXED_TIME * 1000)
    for key in ("requestTime", "time"):
        if key in context:
            context[key] = "18/Nov/2026:20:26:40 +0000"
    return event


def _frame(message: dict[str, Any]) -> dict[str, Any]:
    return _fixed(ws_message_event(CONNECTION_ID, json.dumps(message)))


def _action(status: str, **extra: str) -> dict[str, Any]:
    params = action_params(
        account_sid=sample.ACCOUNT_SID,
        call_sid=CALL_SID,
        caller=sample.CUSTOMER_NUMBER,
        agent=sample.AGENT_NUMBER,
        session_status=status,
        session_id="VX" + "4" * 32,
        **extra,
    )
    return _fixed(http_api_event("/voice/action", params, auth_token=sample.AUTH_TOKEN, at=FIXED_TIME))


def _voice_events() -> dict[str, Any]:
    call = call_params(
        account_sid=sample.ACCOUNT_SID, call_sid=CALL_SID, caller=sample.CUSTOMER_NUMBER, agent=sample.AGENT_NUMBER
    )
    setup = {
        "type": "setup",
        "sessionId": "VX" + "4" * 32,
        "callSid": CALL_SID,
        "parentCallSid": "",
        "from": sample.CUSTOMER_NUMBER,
        "to": sample.AGENT_NUMBER,
        "forwardedFrom": "",
        "callerName": "",
        "direction": "inbound",
        "callType": "PSTN",
        "callStatus": "RINGING",
        "accountSid": sample.ACCOUNT_SID,
        "customParameters": {"conversationId": HANDOFF_PAYLOAD["conversationId"], "binding": sample_binding()},
    }
    return {
        "voice-incoming-call.json": _fixed(http_api_event("/voice", call, auth_token=sample.AUTH_TOKEN, at=FIXED_TIME)),
        "relay-connect.json": _fixed(
            ws_connect_event(
                CONNECTION_ID, auth_token=sample.AUTH_TOKEN, signed_url=f"{RELAY_URL}?binding={sample_binding()}"
            )
        ),
        "relay-setup.json": _frame(setup),
        "relay-prompt.json": _frame(
            {"type": "prompt", "voicePrompt": "What are your opening hours?", "lang": "en-US", "last": True}
        ),
        "relay-prompt-human.json": _frame(
            {"type": "prompt", "voicePrompt": "Can I talk to a person please?", "lang": "en-US", "last": True}
        ),
        "relay-interrupt.json": _frame(
            {"type": "interrupt", "utteranceUntilInterrupt": "We're open Monday", "durationUntilInterruptMs": 850}
        ),
        "relay-dtmf.json": _frame({"type": "dtmf", "digit": "0"}),
        "relay-disconnect.json": _fixed(ws_disconnect_event(CONNECTION_ID)),
        "voice-action-handoff.json": _action("ended", handoff_data=json.dumps(HANDOFF_PAYLOAD, separators=(",", ":"))),
        "voice-action-hangup.json": _action("completed"),
        "voice-action-failed.json": _action("failed", error_code="64105"),
    }


def build() -> dict[str, Any]:
    env = {
        "Parameters": {
            "TWILIO_ACCOUNT_SID": sample.ACCOUNT_SID,
            "TWILIO_AUTH_TOKEN": sample.AUTH_TOKEN,
            "HANDOFF_RELEASE_TOKEN": sample.RELEASE_TOKEN,
            "TWILIO_PHONE_NUMBER": sample.AGENT_NUMBER,
            "TWILIO_STUDIO_HANDOFF_FLOW_SID": sample.FLOW_SID,
            "SESSIONS_TABLE_NAME": sample.TABLE_NAME,
            "TWILIO_SECRET_ARN": "",
            "LLM_PROVIDER": "rules",
            "RELAY_WEBSOCKET_URL": RELAY_URL,
        },
    }
    return {
        "sms-message.json": _sms("What are your opening hours?", "SM" + "1" * 32),
        "sms-human.json": _sms("I want to speak to a real person, please", "SM" + "2" * 32),
        "dispatch-stream.json": _dispatch_stream(),
        "handoff-release.json": _release(),
        "handoff-transcript.json": _transcript(),
        "watchdog-schedule.json": _schedule(),
        **_voice_events(),
        "env.json": env,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when events/ is stale")
    args = parser.parse_args(argv)
    stale = []
    for name, content in build().items():
        path = EVENTS / name
        text = json.dumps(content, indent=2, sort_keys=False) + "\n"
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.parent.mkdir(exist_ok=True)
            path.write_text(text)
    if stale:
        print("events/ is stale, run `python -m devtools.samples.make_events`: " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main, "make events"))
