"""Writes the Studio Flow that receives handoffs from both channels.

    python -m devtools.samples.studio_flow                      # rewrite studio/handoff-flow.json (placeholders)
    python -m devtools.samples.studio_flow --voice-url https://abc.execute-api.us-east-1.amazonaws.com/voice \\
        --workflow WW... --voice-channel TC... --sms-channel TC... > my-flow.json

SMS: the product starts an execution through the REST API; the flow reads
`{{flow.data.HandoffData...}}` and creates a Flex task.
Voice: the number's calls enter the flow, whose TwiML Redirect widget (`ai_agent`) hands the
call to the product's /voice URL with `FlowSid={{flow.flow_sid}}`. When the agent hands off,
the product resumes the flow at the widget's `return` transition with the payload in the
query string, read as `{{widgets.ai_agent.HandoffData}}` and `{{widgets.ai_agent.reason}}`.
Both routes give Flex the same task attributes; the human's context (`summary`, `transcriptUrl`)
is in `HandoffData.attributes`, where a Flex plugin or the task's info panel reads it.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from devtools.cli import run
from devtools.template import ROOT

FLOW_FILE = ROOT / "studio" / "handoff-flow.json"
PLACEHOLDERS = {
    "voice_url": "https://YOUR_HTTP_API.execute-api.YOUR_REGION.amazonaws.com/voice",
    "workflow": "WW_YOUR_TASKROUTER_WORKFLOW_SID",
    "voice_channel": "voice",
    "sms_channel": "sms",
}


def _state(name: str, kind: str, transitions: list[dict[str, str]], x: int, y: int, **properties: Any) -> dict:
    return {
        "name": name,
        "type": kind,
        "transitions": transitions,
        "properties": {"offset": {"x": x, "y": y}, **properties},
    }


def flow(*, voice_url: str, workflow: str, voice_channel: str, sms_channel: str) -> dict[str, Any]:
    # Values go in through `to_json`, which quotes and escapes them: nothing is copied into the JSON raw.
    # `summary` and `transcriptUrl` reach the task inside HandoffData (HandoffData.attributes.summary):
    # copied to the top level too they would count twice against Flex's 1,024 characters, which
    # with a 190-character link leaves no room for a summary (see payload_limits.py).
    sms_attributes = (
        '{"name": "{{contact.channel.address}}", "channelType": "sms", '
        '"reason": {{flow.data.HandoffData.attributes.reason | to_json}}, '
        '"conversationId": {{flow.data.HandoffData.conversationId | to_json}}, '
        '"HandoffData": {{flow.data.HandoffData | to_json}}}'
    )
    voice_attributes = (
        '{"type": "inbound", "name": "{{trigger.call.From}}", '
        '"reason": {{widgets.ai_agent.reason | to_json}}, '
        '"conversationId": {{widgets.ai_agent.conversationId | to_json}}, '
        '"HandoffData": {{widgets.ai_agent.HandoffData | default: "{}"}}}'
    )
    return {
        "description": "AI agent handoff to a human (SMS and voice), TAC-compatible",
        "states": [
            _state(
                "Trigger",
                "trigger",
                [
                    {"event": "incomingMessage"},
                    {"event": "incomingCall", "next": "ai_agent"},
                    {"event": "incomingConversationMessage"},
                    {"event": "incomingRequest", "next": "sms_to_flex"},
                    {"event": "incomingParent"},
                ],
                0,
                0,
            ),
            _state(
                "sms_to_flex",
                "send-to-flex",
                [{"event": "callComplete"}, {"event": "failedToEnqueue"}, {"event": "callFailure"}],
                -400,
                250,
                workflow=workflow,
                channel=sms_channel,
                attributes=sms_attributes,
                priority="0",
                timeout="3600",
            ),
            _state(
                "ai_agent",
                "add-twiml-redirect",
                [
                    {"event": "return", "next": "voice_to_flex"},
                    {"event": "timeout", "next": "apologise"},
                    {"event": "fail", "next": "apologise"},
                ],
                200,
                250,
                url=voice_url + "?FlowSid={{flow.flow_sid}}",
                method="POST",
                timeout="14400",
            ),
            _state(
                "apologise",
                "say-play",
                [{"event": "audioComplete", "next": "voice_to_flex"}],
                500,
                500,
                say="Sorry for the wait. Let me connect you with a member of our team.",
                loop=1,
            ),
            _state(
                "voice_to_flex",
                "send-to-flex",
                [{"event": "callComplete"}, {"event": "failedToEnqueue"}, {"event": "callFailure"}],
                200,
                750,
                workflow=workflow,
                channel=voice_channel,
                attributes=voice_attributes,
                priority="0",
                timeout="3600",
            ),
        ],
        "initial_state": "Trigger",
        "flags": {"allow_concurrent_calls": True},
    }


def render(**values: str) -> str:
    return json.dumps(flow(**{**PLACEHOLDERS, **{k: v for k, v in values.items() if v}}), indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--voice-url", help="the stack's VoiceWebhookUrl output")
    parser.add_argument("--workflow", help="the Flex TaskRouter Workflow SID (WW...)")
    parser.add_argument("--voice-channel", help="the voice Task Channel (SID or unique name)")
    parser.add_argument("--sms-channel", help="the SMS Task Channel (SID or unique name)")
    args = parser.parse_args(argv)
    values = {
        "voice_url": args.voice_url,
        "workflow": args.workflow,
        "voice_channel": args.voice_channel,
        "sms_channel": args.sms_channel,
    }
    if any(values.values()):
        sys.stdout.write(render(**values))
    else:
        FLOW_FILE.write_text(render())
    return 0


if __name__ == "__main__":
    raise SystemExit(run(main, "make flow"))
